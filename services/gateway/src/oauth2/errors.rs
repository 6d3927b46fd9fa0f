//! The error answers of the OAuth2 endpoints, in the shape RFC 6749 section 5.2 gives them
//! (`{"error", "error_description"}`), which OAuth2 client libraries parse: the token,
//! revocation and introspection endpoints answer only in this shape; `userinfo` (a protected
//! resource) adds RFC 6750's `WWW-Authenticate`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorCode};

/// The `error` codes of RFC 6749 section 5.2, RFC 6750 section 3.1 and RFC 7009 section 2.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OAuthErrorCode {
    /// A parameter is missing, repeated, malformed or unsupported (400).
    InvalidRequest,
    /// Client authentication failed: unknown client, wrong secret, none given (401).
    InvalidClient,
    /// The code or refresh token is invalid, expired, revoked, used, or was issued to another
    /// client or redirect URI, or the PKCE verifier does not match (400).
    InvalidGrant,
    /// The client is not registered for this grant type (400).
    UnauthorizedClient,
    /// The server does not support this grant type (400).
    UnsupportedGrantType,
    /// The scope is unknown, or more than the client or grant has (400).
    InvalidScope,
    /// The access token is unknown, expired or revoked (401, `userinfo`).
    InvalidToken,
    /// The access token lacks the scope the resource needs (403, `userinfo`).
    InsufficientScope,
    /// The server cannot answer now: a database or hashing pool is overloaded (503).
    TemporarilyUnavailable,
    /// An internal error (500).
    ServerError,
}

impl OAuthErrorCode {
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

/// The body of an OAuth2 error answer (RFC 6749 section 5.2).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_grant", "error_description": "the code is unknown, expired or used"}))]
pub(crate) struct OAuthErrorBody {
    pub(crate) error: OAuthErrorCode,
    /// For the developer of the client, not for its users.
    pub(crate) error_description: String,
}

/// An OAuth2 error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub(crate) struct OAuthError {
    pub(crate) code: OAuthErrorCode,
    pub(crate) description: String,
    /// The client tried HTTP Basic authentication: a 401 names that scheme (RFC 6749 5.2).
    pub(crate) basic: bool,
}

impl OAuthError {
    pub(crate) fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            basic: false,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, description)
    }

    pub(crate) fn invalid_client() -> Self {
        Self::new(
            OAuthErrorCode::InvalidClient,
            "client authentication failed",
        )
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        match self.code {
            OAuthErrorCode::InvalidClient => {
                let scheme = if self.basic {
                    "Basic realm=\"oauth2\""
                } else {
                    "Basic realm=\"oauth2\", Bearer"
                };
                response.insert_header((header::WWW_AUTHENTICATE, scheme));
            }
            OAuthErrorCode::InvalidToken | OAuthErrorCode::InsufficientScope => {
                let value = format!("Bearer error=\"{}\"", self.code.as_str());
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            OAuthErrorCode::TemporarilyUnavailable => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(5)));
            }
            _ => {}
        }
        response.json(OAuthErrorBody {
            error: self.code,
            error_description: self.description.clone(),
        })
    }
}

/// The API's errors of the parts OAuth2 shares with accounts: unavailability and internal
/// errors keep their meaning, a throttled or refused sign-in is an `invalid_grant`.
impl From<ApiError> for OAuthError {
    fn from(error: ApiError) -> Self {
        let code = match error.code {
            ErrorCode::Busy | ErrorCode::DatabaseUnavailable | ErrorCode::QueueUnavailable => {
                OAuthErrorCode::TemporarilyUnavailable
            }
            ErrorCode::InternalError => OAuthErrorCode::ServerError,
            ErrorCode::InvalidToken | ErrorCode::Unauthenticated => OAuthErrorCode::InvalidToken,
            _ => OAuthErrorCode::InvalidGrant,
        };
        Self::new(code, error.message)
    }
}

impl From<repo::RepoError> for OAuthError {
    fn from(error: repo::RepoError) -> Self {
        ApiError::from(error).into()
    }
}
