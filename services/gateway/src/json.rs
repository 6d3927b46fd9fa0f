//! The API's JSON body extractor: `web::Json`'s checks (content type, `MAX_BODY_BYTES`, the
//! API's error shape through `JsonConfig`), plus a refusal of text PostgreSQL cannot store.
//!
//! A body holding U+0000 (written `\u0000` in JSON) anywhere, in a value or a key, is answered
//! 422 `validation_failed` with the path of that value as `field` (`users[2].email`,
//! `metadata.note`), on every route, before any handler sees it.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::errors::{ApiError, json_error};

/// A request body of type `T`, read as JSON.
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

impl<T> Json<T> {
    pub(crate) fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Syntax, size and content type first, as `web::Json` checks them; no value is built.
        let raw = web::Json::<Box<RawValue>>::from_request(request, payload);
        let request = request.clone();
        Box::pin(async move {
            let raw = raw.await?.into_inner();
            domain::text::check_json_bytes(raw.get().as_bytes())
                .map_err(|nul| ApiError::invalid(nul.path.clone(), nul.to_string()))?;
            serde_json::from_str(raw.get())
                .map(Json)
                .map_err(|error| json_error(JsonPayloadError::Deserialize(error), &request))
        })
    }
}

/// Middleware: a URL whose path or query decodes to U+0000 (`%00`) is answered 422 with `field`
/// naming the query parameter, or `path`, before routing.
pub(crate) async fn refuse_nul_in_url(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if let Some(field) = nul_in_url(request.uri()) {
        let message =
            format!("{field} contains the character U+0000 (NUL), which cannot be stored");
        return Err(ApiError::invalid(field, message).into());
    }
    next.call(request).await
}

fn holds_nul(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

fn nul_in_url(uri: &actix_web::http::Uri) -> Option<String> {
    if holds_nul(uri.path()) {
        return Some("path".into());
    }
    let query = uri.query()?;
    query.split('&').find(|pair| holds_nul(pair)).map(|pair| {
        let key = pair.split('=').next().unwrap_or_default();
        if key.is_empty() || holds_nul(key) {
            "query".to_owned()
        } else {
            key.to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(uri: &str) -> Option<String> {
        nul_in_url(&uri.parse().unwrap())
    }

    #[test]
    fn nul_in_the_url_is_named() {
        assert_eq!(
            field("/api/v1/users/u%001/activity-logs").as_deref(),
            Some("path")
        );
        assert_eq!(
            field("/api/v1/users/u1/activity-logs?activityType=a%00&limit=2").as_deref(),
            Some("activityType")
        );
        assert_eq!(field("/x?%00=1").as_deref(), Some("query"));
        assert_eq!(field("/x?a=%2500"), None, "an escaped percent sign is text");
        assert_eq!(field("/api/v1/campaigns?limit=10"), None);
    }
}
