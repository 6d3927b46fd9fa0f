//! The API's request extractors: [`Json`] for bodies and [`QueryParams`] for query strings, both
//! typed, both answering in the API's error shape with the path of the value at fault.
//!
//! [`Json`] keeps `web::Json`'s checks (content type, `MAX_BODY_BYTES`, through `JsonConfig`),
//! refuses text PostgreSQL cannot store, then deserializes `T`:
//!
//! - not JSON: 400 `invalid_json`; JSON but not an object where one is taken: 400 `invalid_body`;
//! - a field the type does not have: 422 `unknown_field` (`users[2].admin`);
//! - a field missing or of the wrong type: 422 `validation_failed` (`users[2].password`);
//! - U+0000 (written `\u0000` in JSON) anywhere, in a value or a key: 422 `validation_failed`
//!   naming that value (`metadata.note`), before any handler sees it.
//!
//! [`QueryParams`] answers 400 `invalid_query` naming the parameter (`limit`, `cursor`).

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::{LocalBoxFuture, Ready, ready};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::errors::{ApiError, ErrorCode};

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
        let refused = plain_json_refusal(request);
        let timeout = request
            .app_data::<BodyReadTimeout>()
            .map_or(BodyReadTimeout::default().0, |timeout| timeout.0);
        // Syntax, size and content type first, as `web::Json` checks them; no value is built.
        let raw = web::Json::<Box<RawValue>>::from_request(request, payload);
        Box::pin(async move {
            if let Some(refusal) = refused {
                return Err(refusal.into());
            }
            // A client that sends its body slowly, or never, does not hold the connection.
            let raw = tokio::time::timeout(timeout, raw)
                .await
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::RequestTimeout,
                        format!("the body did not arrive within {}s", timeout.as_secs_f64()),
                    )
                })??
                .into_inner();
            Ok(Json(parse_body(raw.get())?))
        })
    }
}

/// How long a request body may take to arrive (`BODY_READ_TIMEOUT`), as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub(crate) std::time::Duration);

impl Default for BodyReadTimeout {
    fn default() -> Self {
        Self(std::time::Duration::from_secs(10))
    }
}

/// 415 unless the body is plain, UTF-8 JSON: no `Content-Encoding` but `identity` (the gateway
/// does not decompress), one `Content-Type`, no charset but UTF-8 (RFC 8259 section 8.1).
fn plain_json_refusal(request: &HttpRequest) -> Option<ApiError> {
    use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
    let headers = request.headers();
    let encoded = headers
        .get_all(CONTENT_ENCODING)
        .any(|encoding| !encoding.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Some(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must not be compressed (no Content-Encoding but identity)",
        ));
    }
    let content_types: Vec<_> = headers.get_all(CONTENT_TYPE).collect();
    let other_charset = content_types.iter().any(|value| {
        value.to_str().map_or(true, |value| {
            value.split(';').skip(1).any(|parameter| {
                parameter.split_once('=').is_some_and(|(name, charset)| {
                    name.trim().eq_ignore_ascii_case("charset")
                        && !charset
                            .trim()
                            .trim_matches('"')
                            .eq_ignore_ascii_case("utf-8")
                })
            })
        })
    });
    if content_types.len() > 1 || other_charset {
        return Some(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON in UTF-8, with one Content-Type",
        ));
    }
    None
}

/// `T` from a JSON text already known to be JSON, or the API error naming the value at fault.
pub(crate) fn parse_body<T: DeserializeOwned>(json: &str) -> Result<T, ApiError> {
    domain::text::check_json_bytes(json.as_bytes())
        .map_err(|nul| ApiError::invalid(nul.path.clone(), nul.to_string()))?;
    // Every body of the API is an object (serde would also take a struct as an array).
    if !json.trim_start().starts_with('{') {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = field_path(error.path());
        let inner = error.into_inner();
        // The text is JSON (checked before): serde_json calls some wrong types a syntax error
        // (`null` where an enum is expected), and they are wrong values like any other.
        let message = if inner.is_syntax() {
            "has the wrong type".to_owned()
        } else {
            without_position(&inner.to_string())
        };
        refusal(&path, &message, ErrorCode::InvalidBody)
    })
}

/// The query string as `T`.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T> Deref for QueryParams<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for QueryParams<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            parse_query(request.query_string())
                .map(QueryParams)
                .map_err(Into::into),
        )
    }
}

/// `T` from a query string, or 400 `invalid_query` naming the parameter.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = field_path(error.path());
        let message = error.into_inner().to_string();
        let mut answer = refusal(&path, &message, ErrorCode::InvalidQuery);
        answer.code = ErrorCode::InvalidQuery;
        answer.retry_after = None;
        answer
    })
}

/// The path `serde_path_to_error` tracked, as the API names fields: `users[3].phone`, empty for
/// the whole body.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    field
}

/// serde's message, without serde_json's `at line 1 column 42`.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The API error for serde's `message` about the value at `path`.
fn refusal(path: &str, message: &str, whole_body: ErrorCode) -> ApiError {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = quoted_after(message, "missing field `") {
        return ApiError::invalid(join(name), format!("{name} is required"));
    }
    if let Some(name) = quoted_after(message, "duplicate field `") {
        return ApiError::invalid(join(name), format!("{name} is given more than once"));
    }
    if let Some(name) = quoted_after(message, "unknown field `") {
        // serde's path already ends at the unknown key.
        let field = if path.ends_with(name) {
            path.to_owned()
        } else {
            join(name)
        };
        let expected = message
            .split_once(", expected ")
            .map(|(_, expected)| format!("; expected {expected}"))
            .unwrap_or_default();
        return ApiError::new(
            ErrorCode::UnknownField,
            format!("unknown field {name:?}{expected}"),
        )
        .with_field(field);
    }
    if path.is_empty() {
        let what = if whole_body == ErrorCode::InvalidBody {
            "the body must be a JSON object"
        } else {
            "the query does not parse"
        };
        return ApiError::new(whole_body, format!("{what}: {message}"));
    }
    ApiError::invalid(path, format!("{path}: {message}"))
}

fn quoted_after<'m>(message: &'m str, opening: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(opening)?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Middleware: a URL whose path or query decodes to U+0000 (`%00`) is answered 422 with `field`
/// naming the query parameter, or `path`, before routing. (An answer, not an error: the
/// middleware around it sees and records it like any other.)
pub(crate) async fn refuse_nul_in_url(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    if let Some(field) = nul_in_url(request.uri()) {
        let message =
            format!("{field} contains the character U+0000 (NUL), which cannot be stored");
        let answer = actix_web::ResponseError::error_response(&ApiError::invalid(field, message));
        return Ok(request.into_response(answer).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
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
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct User {
        email: String,
        consent: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Bulk {
        users: Vec<User>,
    }

    fn refused(json: &str) -> (ErrorCode, Option<String>) {
        let error = parse_body::<Bulk>(json).unwrap_err();
        (error.code, error.field)
    }

    #[test]
    fn body_errors_name_the_value_at_fault() {
        let ok = r#"{"email": "a@example.com", "consent": true}"#;
        assert_eq!(
            refused(&format!(
                r#"{{"users": [{ok}, {{"email": "b@example.com"}}]}}"#
            )),
            (ErrorCode::ValidationFailed, Some("users[1].consent".into()))
        );
        assert_eq!(
            refused(&format!(
                r#"{{"users": [{ok}, {{"email": 1, "consent": true}}]}}"#
            )),
            (ErrorCode::ValidationFailed, Some("users[1].email".into()))
        );
        assert_eq!(
            refused(&format!(
                r#"{{"users": [{ok}, {ok}, {{"email": "c@example.com", "consent": true, "admin": true}}]}}"#
            )),
            (ErrorCode::UnknownField, Some("users[2].admin".into()))
        );
        assert_eq!(
            refused(r#"{"users": {}}"#),
            (ErrorCode::ValidationFailed, Some("users".into()))
        );
        assert_eq!(refused("[1]"), (ErrorCode::InvalidBody, None));
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Status {
            Active,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WithEnum {
            status: Status,
        }
        for wrong in [
            r#"{"status": null}"#,
            r#"{"status": 1}"#,
            r#"{"status": []}"#,
        ] {
            let error = parse_body::<WithEnum>(wrong).unwrap_err();
            assert_eq!(
                (error.code, error.field.as_deref()),
                (ErrorCode::ValidationFailed, Some("status")),
                "{wrong}"
            );
        }
        assert_eq!(
            refused(r#"{"users": [], "users": []}"#),
            (ErrorCode::ValidationFailed, Some("users".into()))
        );
        assert_eq!(
            refused("{}"),
            (ErrorCode::ValidationFailed, Some("users".into()))
        );
        assert_eq!(
            refused(r#"{"users": [{"email": "a\u0000", "consent": true}]}"#),
            (ErrorCode::ValidationFailed, Some("users[0].email".into()))
        );
        let message = parse_body::<Bulk>(r#"{"users": [{"email": 1, "consent": true}]}"#)
            .unwrap_err()
            .message;
        assert!(!message.contains("line 1"), "{message}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        cursor: Option<String>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let error = parse_query::<Page>("limit=abc").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            (ErrorCode::InvalidQuery, Some("limit"))
        );
        let error = parse_query::<Page>("limit=5&sort=asc").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            (ErrorCode::InvalidQuery, Some("sort"))
        );
        assert_eq!(parse_query::<Page>("limit=5").unwrap().limit, Some(5));
        let error = parse_query::<Page>("limit=1&limit=2").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            (ErrorCode::InvalidQuery, Some("limit"))
        );
        assert!(!error.message.contains("body"), "{}", error.message);
    }

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
