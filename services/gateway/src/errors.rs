//! The one error shape of the API: `{"error": {"code", "message", "field"?}}`, with a stable
//! machine-readable `code` (one of [`ErrorCode`], which also fixes the HTTP status) and a
//! message for people. A 5xx never says more than its code: the details go to the log.
//!
//! Errors of the repository, the domain and the hashing pool convert into [`ApiError`], so
//! handlers use `?`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use repo::RepoError;
use serde::Serialize;
use utoipa::ToSchema;

/// The stable error codes of the API, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the body is JSON, but not an object of the endpoint's kind.
    InvalidBody,
    /// 400: a query parameter is unknown or does not parse.
    InvalidQuery,
    /// 422: a value is missing or wrong; `field` names it.
    ValidationFailed,
    /// 422: the body has a field the endpoint does not take; `field` names it.
    UnknownField,
    /// 422: more users than `BULK_MAX_USERS` in one bulk registration.
    BulkTooLarge,
    /// 422: more events than `ACTIVITY_BATCH_MAX` in one batch.
    BatchTooLarge,
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 408: the body did not arrive within `BODY_READ_TIMEOUT`.
    RequestTimeout,
    /// 404: no such route, or a path segment that is no ID this API gave out.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 404: no registration request with that ID.
    RegistrationNotFound,
    /// 404: no campaign with that ID.
    CampaignNotFound,
    /// 404: no participant with that ID in the campaign.
    ParticipantNotFound,
    /// 409: the email or phone is already registered.
    AlreadyRegistered,
    /// 409: the email is already on the campaign's waitlist.
    AlreadySignedUp,
    /// 409: the campaign does not take signups (paused or ended).
    CampaignNotActive,
    /// 401: the request needs `Authorization: Bearer <access token>` and has none.
    Unauthenticated,
    /// 401: the access token is unknown, expired or revoked (RFC 6750 `invalid_token`).
    InvalidToken,
    /// 403: the token is valid but not of the kind, the user or the owner the route admits.
    Forbidden,
    /// 403: the token does not carry the scope the route needs (RFC 6750 `insufficient_scope`).
    InsufficientScope,
    /// 401: the identifier or the password is wrong (which of the two is not said).
    InvalidCredentials,
    /// 400: the refresh token is unknown, expired, revoked or already used (RFC 6749
    /// `invalid_grant`).
    InvalidGrant,
    /// No identity provider of that name is configured (404).
    ProviderNotFound,
    /// A provider's callback without the flow this browser started (400).
    InvalidState,
    /// The identity provider refused the sign-in or answered wrongly (400).
    ProviderError,
    /// The identity provider cannot be reached (503).
    ProviderUnavailable,
    /// The provider's email address belongs to an account not linked to it (409).
    AccountExists,
    /// The provider account is linked to another user, or the user has another of that provider (409).
    AlreadyLinked,
    /// No account of that provider is linked to the user (404).
    NotLinked,
    /// Unlinking would leave the account no way to sign in (409).
    LastSignInMethod,
    /// The change needs a sign-in of the last few minutes (403).
    RecentSignInRequired,
    /// No such OAuth2 client among the signed-in user's (404).
    ClientNotFound,
    /// No live consent of the signed-in user to that client (404).
    ConsentNotFound,
    /// 400: the emailed or texted token or code is unknown, used or expired.
    InvalidOrExpiredToken,
    /// 403: the account was deleted; it can be restored through the link mailed at deletion.
    AccountDeleted,
    /// 403: the account is suspended.
    AccountSuspended,
    /// 403: sign-in requires a verified email or phone, and this one is not verified yet.
    IdentifierNotVerified,
    /// 403: the password given to confirm a change is wrong (the session is fine).
    WrongPassword,
    /// 403: the password was invalidated; set a new one through a password reset.
    PasswordResetRequired,
    /// 422: the new password is the current one or one of the last `PASSWORD_HISTORY`.
    PasswordReused,
    /// 429: too many attempts; `Retry-After` says when to try again.
    TooManyRequests,
    /// 503: too many passwords are being hashed; `Retry-After` says when to try again.
    Busy,
    /// 503: the broker does not take the request right now.
    QueueUnavailable,
    /// 503: the database is unreachable or busy.
    DatabaseUnavailable,
    /// 500: something failed that the client cannot fix; the details are in the log.
    InternalError,
}

impl ErrorCode {
    /// What the code means, in words that hold for every request: for the `api.error` events,
    /// which must not carry what the caller sent (IDs, paths, addresses).
    pub(crate) fn summary(self) -> &'static str {
        match self {
            Self::InvalidJson => "the body is not JSON",
            Self::InvalidBody => "the body is not an object of the endpoint's kind",
            Self::InvalidQuery => "a query parameter is unknown or does not parse",
            Self::ValidationFailed => "a value is missing or wrong",
            Self::UnknownField => "the body has a field the endpoint does not take",
            Self::BulkTooLarge => "too many users in one bulk registration",
            Self::BatchTooLarge => "too many events in one batch",
            Self::PayloadTooLarge => "the body is too large",
            Self::UnsupportedMediaType => "the body is not plain JSON",
            Self::RequestTimeout => "the body came too slowly",
            Self::NotFound => "no such route or resource",
            Self::MethodNotAllowed => "the route does not take this method",
            Self::RegistrationNotFound => "no such registration request",
            Self::CampaignNotFound => "no such campaign",
            Self::ParticipantNotFound => "no such participant in the campaign",
            Self::AlreadyRegistered => "the email or phone is already registered",
            Self::AlreadySignedUp => "the email is already on the waitlist",
            Self::CampaignNotActive => "the campaign does not take signups",
            Self::Unauthenticated => "the request needs a bearer access token",
            Self::InvalidToken => "the access token is unknown, expired or revoked",
            Self::Forbidden => "the caller may not do this",
            Self::InsufficientScope => "the access token does not carry the scope this needs",
            Self::InvalidCredentials => "the identifier or the password is wrong",
            Self::InvalidGrant => "the refresh token is unknown, expired, revoked or used",
            Self::InvalidOrExpiredToken => "the token or code is unknown, used or expired",
            Self::ClientNotFound => "no such OAuth2 client of the signed-in user",
            Self::ProviderNotFound => "no such identity provider",
            Self::InvalidState => "no sign-in with the provider was started in this browser",
            Self::ProviderError => "the identity provider refused or answered wrongly",
            Self::ProviderUnavailable => "the identity provider cannot be reached",
            Self::AccountExists => "the email address has an account not linked to the provider",
            Self::AlreadyLinked => "the provider account is linked elsewhere",
            Self::NotLinked => "no account of the provider is linked",
            Self::LastSignInMethod => "the account's last way to sign in",
            Self::RecentSignInRequired => "the change needs a recent sign-in",
            Self::ConsentNotFound => "no live consent to that client",
            Self::AccountDeleted => "the account was deleted",
            Self::AccountSuspended => "the account is suspended",
            Self::IdentifierNotVerified => "the email or phone is not verified",
            Self::PasswordResetRequired => "the password must be reset",
            Self::WrongPassword => "the password given to confirm a change is wrong",
            Self::PasswordReused => "the password was used before",
            Self::TooManyRequests => "too many attempts",
            Self::Busy => "too many passwords are being hashed",
            Self::QueueUnavailable => "the broker does not take the request",
            Self::DatabaseUnavailable => "the database is unreachable or busy",
            Self::InternalError => "an internal error",
        }
    }

    /// The code as the API writes it (`validation_failed`): its serde name.
    pub(crate) fn as_str(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => name,
            _ => unreachable!("a unit variant serializes as its name"),
        }
    }

    /// The HTTP status this code is answered with.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson
            | Self::InvalidBody
            | Self::InvalidQuery
            | Self::InvalidGrant
            | Self::InvalidOrExpiredToken
            | Self::InvalidState
            | Self::ProviderError => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::AccountDeleted
            | Self::AccountSuspended
            | Self::IdentifierNotVerified
            | Self::PasswordResetRequired
            | Self::WrongPassword
            | Self::RecentSignInRequired
            | Self::Forbidden
            | Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::ValidationFailed
            | Self::UnknownField
            | Self::BulkTooLarge
            | Self::BatchTooLarge
            | Self::PasswordReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound
            | Self::RegistrationNotFound
            | Self::CampaignNotFound
            | Self::ParticipantNotFound
            | Self::ClientNotFound
            | Self::ConsentNotFound
            | Self::ProviderNotFound
            | Self::NotLinked => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyRegistered
            | Self::AlreadySignedUp
            | Self::CampaignNotActive
            | Self::AccountExists
            | Self::AlreadyLinked
            | Self::LastSignInMethod => StatusCode::CONFLICT,
            Self::Busy
            | Self::QueueUnavailable
            | Self::DatabaseUnavailable
            | Self::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "email is not an email address", "field": "email"}}))]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    pub(crate) code: ErrorCode,
    /// For people; may change between versions.
    pub(crate) message: String,
    /// The path of the value at fault (`email`, `users[3].phone`, `limit`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
    /// Seconds, for `Retry-After` on 503s.
    pub(crate) retry_after: Option<u32>,
    /// More header fields of the answer (a 429's `RateLimit` fields).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: code
                .status()
                .eq(&StatusCode::SERVICE_UNAVAILABLE)
                .then_some(5),
            headers: Vec::new(),
        }
    }

    /// The answer carries these header fields too.
    pub(crate) fn with_rate_limit(mut self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        self.headers = headers;
        self
    }

    /// 422 `validation_failed`: `field` (`email`, `users[3].phone`) is missing or wrong.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_field(field)
    }

    /// 500: logged in full, answered with a generic message.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(ErrorCode::InternalError, "an internal error occurred")
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The same error about a value inside `prefix` (`users[3].` + `email`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        if let Some(field) = &self.field {
            self.field = Some(format!("{prefix}{field}"));
        }
        self
    }

    /// Seconds for `Retry-After` (503s carry 5 unless told otherwise).
    pub(crate) fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The status it is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        // RFC 6750 section 3: a 401 names the scheme, and why a token was refused.
        if let Some(challenge) = crate::access::www_authenticate(self.code) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        let mut response = response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                field: self.field.clone(),
            },
        });
        // For the request middleware's `api.error` events.
        response.extensions_mut().insert(self.clone());
        response
    }
}

/// A repository failure: 503 `database_unavailable` with `Retry-After` while the database is
/// unreachable or busy, otherwise 500.
impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::Unavailable(_) | RepoError::Transient(_) => {
                tracing::warn!(%error, "database unavailable");
                Self::new(
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable; try again",
                )
            }
            other => Self::internal(other),
        }
    }
}

/// A value the domain refuses: 422 naming its field.
impl From<domain::InvalidValue> for ApiError {
    fn from(error: domain::InvalidValue) -> Self {
        Self::invalid(error.field, error.to_string())
    }
}

/// A campaign the domain refuses: 422 naming the field (`reward_tiers[1].name`).
impl From<domain::waitlist::InvalidCampaign> for ApiError {
    fn from(error: domain::waitlist::InvalidCampaign) -> Self {
        Self::invalid(error.field, error.reason)
    }
}

/// The answer to any path the API does not serve.
pub(crate) async fn route_not_found(request: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.path()),
    )
    .error_response()
}

/// The answer to a served path asked with a method it does not take.
pub(crate) fn method_not_allowed(request: &actix_web::HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not take {}", request.path(), request.method()),
    )
}

/// Bodies refused before a handler runs (bad JSON, wrong content type, too large), in the
/// API's error shape.
pub(crate) fn json_error(
    error: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api_error = match &error {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        ),
        E::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ),
        E::Deserialize(inner) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {inner}"),
        ),
        E::Payload(_) => ApiError::new(
            ErrorCode::InvalidBody,
            "the body could not be read (cut short or badly chunked)",
        ),
        other => ApiError::new(ErrorCode::InvalidBody, other.to_string()),
    };
    api_error.into()
}

/// Path segments that do not parse (`/registrations/not-a-uuid`), in the API's error shape.
pub(crate) fn path_error(
    error: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    // Not the library's own words ("Path deserialize error: …"): what it means to the caller.
    let _ = error;
    ApiError::new(
        ErrorCode::NotFound,
        "no such resource: a path segment is not an ID this API gives out",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_with_their_status() {
        let answer = ApiError::invalid("users[3].phone", "phone is not a phone number");
        let body = serde_json::to_value(ErrorBody {
            error: ErrorDetail {
                code: answer.code,
                message: answer.message.clone(),
                field: answer.field.clone(),
            },
        })
        .unwrap();
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["field"], "users[3].phone");
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let busy = ApiError::new(ErrorCode::QueueUnavailable, "later");
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            busy.retry_after,
            Some(5),
            "every 503 says when to come back"
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::DatabaseUnavailable).unwrap(),
            "database_unavailable"
        );
    }
}
