//! `Authorization: Bearer <access token>` (RFC 6750 section 2.1): the extractor every endpoint
//! that acts as a signed-in user takes.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, dev::Payload, web};
use domain::UserId;
use domain::accounts::SecretToken;
use uuid::Uuid;

use super::AccountsApi;
use crate::errors::{ApiError, ErrorCode};

/// The signed-in user of a request, from a live first-party access token. Missing: 401
/// `unauthenticated`; unknown, expired or revoked (sign-out, a reused refresh token, a password
/// reset, a deletion): 401 `invalid_token`. Both with `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignedIn {
    pub(crate) user_id: UserId,
    pub(crate) session_id: Uuid,
}

/// The token of an `Authorization` value: the `Bearer` scheme (any case) and a token of the
/// form this API issues (64 hexadecimal characters). `None` when there is no such header.
pub(crate) fn bearer_token(request: &HttpRequest) -> Result<Option<SecretToken>, ApiError> {
    let Some(token) = bearer_credential(request)? else {
        return Ok(None);
    };
    SecretToken::parse(&token)
        .map(Some)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "the access token is not valid"))
}

/// The credential of an `Authorization: Bearer <credential>` header (RFC 6750 section 2.1),
/// trimmed, whatever its form; `None` when there is no such header or it is empty. One header
/// only, of the `Bearer` scheme (any case): else 401 `unauthenticated`; not text: 401
/// `invalid_token`.
pub(crate) fn bearer_credential(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = request.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "send one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidToken, "the access token is not valid"))?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "the Authorization header must use the Bearer scheme",
        ));
    }
    Ok(Some(token.trim().to_owned()))
}

impl FromRequest for SignedIn {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Routes of the signed-in user were authenticated by `access::enforce` already.
        if let Some(crate::access::Principal::User(signed_in)) =
            request.extensions().get::<crate::access::Principal>()
        {
            let signed_in = *signed_in;
            return Box::pin(async move { Ok(signed_in) });
        }
        let api = request.app_data::<web::Data<AccountsApi>>().cloned();
        let request = request.clone();
        Box::pin(async move {
            let api = api.ok_or_else(|| ApiError::internal("accounts are not configured"))?;
            match crate::access::principal(&request, &api).await? {
                crate::access::Principal::User(signed_in) => Ok(signed_in),
                _ => Err(ApiError::new(
                    ErrorCode::InvalidToken,
                    "the access token is unknown, expired or revoked",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn parse(value: Option<&str>) -> Result<Option<String>, ErrorCode> {
        let mut request = TestRequest::default();
        if let Some(value) = value {
            request = request.insert_header((header::AUTHORIZATION, value));
        }
        bearer_token(&request.to_http_request())
            .map(|token| token.map(|t| t.expose().to_owned()))
            .map_err(|e| e.code)
    }

    #[test]
    fn only_bearer_tokens_of_our_form_are_looked_up() {
        let token = "ab".repeat(32);
        assert_eq!(parse(None), Ok(None));
        assert_eq!(
            parse(Some(&format!("Bearer {token}"))),
            Ok(Some(token.clone()))
        );
        assert_eq!(
            parse(Some(&format!("bearer {}", token.to_uppercase()))),
            Ok(Some(token.clone())),
            "the scheme is case-insensitive (RFC 9110), the hex too"
        );
        for other_scheme in [format!("Basic {token}"), "Basic".to_owned()] {
            assert_eq!(parse(Some(&other_scheme)), Err(ErrorCode::Unauthenticated));
        }
        assert_eq!(
            parse(Some("")),
            Ok(None),
            "an empty header is no credential"
        );
        let twice = TestRequest::default()
            .append_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .append_header((header::AUTHORIZATION, "Bearer junk"))
            .to_http_request();
        assert_eq!(
            bearer_token(&twice).map_err(|e| e.code),
            Err(ErrorCode::Unauthenticated),
            "two headers are refused, whichever comes first"
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer abc",
            "Bearer \u{e9}",
            &format!("Bearer {token}0"),
        ] {
            assert_eq!(parse(Some(bad)), Err(ErrorCode::InvalidToken), "{bad:?}");
        }
    }
}
