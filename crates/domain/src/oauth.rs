//! Linked social logins (OAuth accounts) and our own OAuth2 authorization server's records.
//! Tokens, codes and client secrets appear only as `TokenHash`es.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{TokenHash, UserId};

/// A social login linked to a user: one per provider per user, one user per provider account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthAccount {
    pub id: Uuid,
    pub user_id: UserId,
    pub provider: String,
    pub provider_uid: String,
    pub email: Option<String>,
    pub access_token_hash: Option<TokenHash>,
    pub refresh_token_hash: Option<TokenHash>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An application allowed to ask users for access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Client {
    pub id: Uuid,
    pub client_id: String,
    /// `None` for public clients (no secret).
    pub client_secret_hash: Option<TokenHash>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub owner_user_id: Option<UserId>,
    pub is_confidential: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2AuthorizationCode {
    pub code_hash: TokenHash,
    pub client_id: String,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The grant (session) the code starts: its tokens are tagged with it, and replaying the
    /// code revokes it.
    pub session_id: Option<Uuid>,
    /// The OpenID Connect `nonce` of the authorization request, echoed in the ID token.
    pub nonce: Option<String>,
    /// When the user authenticated (the ID token's `auth_time`).
    pub auth_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2AccessToken {
    pub token_hash: TokenHash,
    pub client_id: String,
    /// `None` for tokens of the client-credentials grant.
    pub user_id: Option<UserId>,
    /// The first-party sign-in session the token belongs to, if any.
    pub session_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2RefreshToken {
    pub token_hash: TokenHash,
    pub access_token_hash: Option<TokenHash>,
    pub client_id: String,
    pub user_id: UserId,
    /// The first-party sign-in session the token belongs to, if any.
    pub session_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2UserConsent {
    pub user_id: UserId,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Scope {
    pub name: String,
    pub description: String,
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuth2AuditLog {
    pub id: i64,
    pub event_type: String,
    pub client_id: Option<String>,
    pub user_id: Option<UserId>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}
