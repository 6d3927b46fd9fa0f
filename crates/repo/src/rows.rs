//! Rows as diesel reads them, and their conversion into domain records. A stored value that no
//! longer validates (edited by hand, say) surfaces as `RepoError::Database` instead of a panic.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::{
    CredentialHistory, Email, OAuth2AccessToken, OAuth2AuditLog, OAuth2AuthorizationCode,
    OAuth2Client, OAuth2RefreshToken, OAuth2Scope, OAuth2UserConsent, OAuthAccount, Phone,
    SnowflakeId, TokenHash, User, UserCredential, UserStatus,
};
use uuid::Uuid;

use crate::RepoError;
use crate::schema::*;

fn corrupt(what: impl std::fmt::Display) -> RepoError {
    RepoError::Database(format!("stored value does not validate: {what}"))
}

/// A stored address as it was accepted: the rules only ever tighten, and a row written under
/// older ones (before the data migration reached it) must still read.
fn email(value: Option<String>) -> Result<Option<Email>, RepoError> {
    Ok(value.map(|v| Email::parse(&v).unwrap_or_else(|_| Email::stored(v))))
}

fn phone(value: Option<String>) -> Result<Option<Phone>, RepoError> {
    value.map(|v| Phone::parse(&v).map_err(corrupt)).transpose()
}

fn hash(value: String) -> Result<TokenHash, RepoError> {
    TokenHash::from_hex(&value).map_err(corrupt)
}

fn optional_hash(value: Option<String>) -> Result<Option<TokenHash>, RepoError> {
    value.map(hash).transpose()
}

/// `TEXT[]` columns are nullable per element to diesel; ours never hold NULLs.
pub(crate) fn strings(values: Vec<Option<String>>) -> Vec<String> {
    values.into_iter().flatten().collect()
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) is_email_verified: bool,
    pub(crate) is_phone_verified: bool,
    pub(crate) consent: bool,
    pub(crate) status: String,
    pub(crate) status_changed_at: DateTime<Utc>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = RepoError;
    fn try_from(row: UserRow) -> Result<Self, RepoError> {
        Ok(User {
            id: SnowflakeId::from_i64(row.id),
            email: email(row.email)?,
            phone: phone(row.phone)?,
            is_email_verified: row.is_email_verified,
            is_phone_verified: row.is_phone_verified,
            consent: row.consent,
            status: UserStatus::parse(&row.status).ok_or_else(|| corrupt(&row.status))?,
            status_changed_at: row.status_changed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = user_credentials, check_for_backend(diesel::pg::Pg))]
pub(crate) struct CredentialRow {
    user_id: i64,
    password_hash: String,
    is_verified: bool,
    invalidated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CredentialRow> for UserCredential {
    fn from(row: CredentialRow) -> Self {
        UserCredential {
            user_id: SnowflakeId::from_i64(row.user_id),
            password_hash: row.password_hash,
            is_verified: row.is_verified,
            invalidated_at: row.invalidated_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = credential_history, check_for_backend(diesel::pg::Pg))]
pub(crate) struct CredentialHistoryRow {
    id: i64,
    user_id: i64,
    password_hash: String,
    replaced_at: DateTime<Utc>,
}

impl From<CredentialHistoryRow> for CredentialHistory {
    fn from(row: CredentialHistoryRow) -> Self {
        CredentialHistory {
            id: row.id,
            user_id: SnowflakeId::from_i64(row.user_id),
            password_hash: row.password_hash,
            replaced_at: row.replaced_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_accounts, check_for_backend(diesel::pg::Pg))]
pub(crate) struct OAuthAccountRow {
    pub(crate) id: Uuid,
    pub(crate) user_id: i64,
    pub(crate) provider: String,
    pub(crate) provider_uid: String,
    pub(crate) email: Option<String>,
    pub(crate) access_token_hash: Option<String>,
    pub(crate) refresh_token_hash: Option<String>,
    pub(crate) token_expires_at: Option<DateTime<Utc>>,
    pub(crate) metadata: serde_json::Value,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl TryFrom<OAuthAccountRow> for OAuthAccount {
    type Error = RepoError;
    fn try_from(row: OAuthAccountRow) -> Result<Self, RepoError> {
        Ok(OAuthAccount {
            id: row.id,
            user_id: SnowflakeId::from_i64(row.user_id),
            provider: row.provider,
            provider_uid: row.provider_uid,
            email: row.email,
            access_token_hash: optional_hash(row.access_token_hash)?,
            refresh_token_hash: optional_hash(row.refresh_token_hash)?,
            token_expires_at: row.token_expires_at,
            metadata: row.metadata,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl From<&OAuthAccount> for OAuthAccountRow {
    fn from(account: &OAuthAccount) -> Self {
        OAuthAccountRow {
            id: account.id,
            user_id: account.user_id.as_i64(),
            provider: account.provider.clone(),
            provider_uid: account.provider_uid.clone(),
            email: account.email.clone(),
            access_token_hash: account
                .access_token_hash
                .as_ref()
                .map(|h| h.as_str().to_owned()),
            refresh_token_hash: account
                .refresh_token_hash
                .as_ref()
                .map(|h| h.as_str().to_owned()),
            token_expires_at: account.token_expires_at,
            metadata: account.metadata.clone(),
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth2_clients, check_for_backend(diesel::pg::Pg))]
pub(crate) struct OAuth2ClientRow {
    pub(crate) id: Uuid,
    pub(crate) client_id: String,
    pub(crate) client_secret_hash: Option<String>,
    pub(crate) name: String,
    pub(crate) redirect_uris: Vec<Option<String>>,
    pub(crate) grant_types: Vec<Option<String>>,
    pub(crate) scopes: Vec<Option<String>>,
    pub(crate) owner_user_id: Option<i64>,
    pub(crate) is_confidential: bool,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

fn nullable(values: &[String]) -> Vec<Option<String>> {
    values.iter().cloned().map(Some).collect()
}

impl TryFrom<OAuth2ClientRow> for OAuth2Client {
    type Error = RepoError;
    fn try_from(row: OAuth2ClientRow) -> Result<Self, RepoError> {
        Ok(OAuth2Client {
            id: row.id,
            client_id: row.client_id,
            client_secret_hash: optional_hash(row.client_secret_hash)?,
            name: row.name,
            redirect_uris: strings(row.redirect_uris),
            grant_types: strings(row.grant_types),
            scopes: strings(row.scopes),
            owner_user_id: row.owner_user_id.map(SnowflakeId::from_i64),
            is_confidential: row.is_confidential,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl From<&OAuth2Client> for OAuth2ClientRow {
    fn from(client: &OAuth2Client) -> Self {
        OAuth2ClientRow {
            id: client.id,
            client_id: client.client_id.clone(),
            client_secret_hash: client
                .client_secret_hash
                .as_ref()
                .map(|h| h.as_str().to_owned()),
            name: client.name.clone(),
            redirect_uris: nullable(&client.redirect_uris),
            grant_types: nullable(&client.grant_types),
            scopes: nullable(&client.scopes),
            owner_user_id: client.owner_user_id.map(SnowflakeId::as_i64),
            is_confidential: client.is_confidential,
            created_at: client.created_at,
            updated_at: client.updated_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth2_authorization_codes, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AuthorizationCodeRow {
    code_hash: String,
    client_id: String,
    user_id: i64,
    redirect_uri: String,
    scopes: Vec<Option<String>>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    session_id: Option<Uuid>,
    nonce: Option<String>,
    auth_time: Option<DateTime<Utc>>,
}

impl TryFrom<AuthorizationCodeRow> for OAuth2AuthorizationCode {
    type Error = RepoError;
    fn try_from(row: AuthorizationCodeRow) -> Result<Self, RepoError> {
        Ok(OAuth2AuthorizationCode {
            code_hash: hash(row.code_hash)?,
            client_id: row.client_id,
            user_id: SnowflakeId::from_i64(row.user_id),
            redirect_uri: row.redirect_uri,
            scopes: strings(row.scopes),
            code_challenge: row.code_challenge,
            code_challenge_method: row.code_challenge_method,
            expires_at: row.expires_at,
            used_at: row.used_at,
            created_at: row.created_at,
            session_id: row.session_id,
            nonce: row.nonce,
            auth_time: row.auth_time,
        })
    }
}

impl From<&OAuth2AuthorizationCode> for AuthorizationCodeRow {
    fn from(code: &OAuth2AuthorizationCode) -> Self {
        AuthorizationCodeRow {
            code_hash: code.code_hash.as_str().to_owned(),
            client_id: code.client_id.clone(),
            user_id: code.user_id.as_i64(),
            redirect_uri: code.redirect_uri.clone(),
            scopes: nullable(&code.scopes),
            code_challenge: code.code_challenge.clone(),
            code_challenge_method: code.code_challenge_method.clone(),
            expires_at: code.expires_at,
            used_at: code.used_at,
            created_at: code.created_at,
            session_id: code.session_id,
            nonce: code.nonce.clone(),
            auth_time: code.auth_time,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth2_access_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AccessTokenRow {
    token_hash: String,
    client_id: String,
    user_id: Option<i64>,
    scopes: Vec<Option<String>>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    session_id: Option<Uuid>,
}

impl TryFrom<AccessTokenRow> for OAuth2AccessToken {
    type Error = RepoError;
    fn try_from(row: AccessTokenRow) -> Result<Self, RepoError> {
        Ok(OAuth2AccessToken {
            token_hash: hash(row.token_hash)?,
            client_id: row.client_id,
            user_id: row.user_id.map(SnowflakeId::from_i64),
            session_id: row.session_id,
            scopes: strings(row.scopes),
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        })
    }
}

impl From<&OAuth2AccessToken> for AccessTokenRow {
    fn from(token: &OAuth2AccessToken) -> Self {
        AccessTokenRow {
            token_hash: token.token_hash.as_str().to_owned(),
            client_id: token.client_id.clone(),
            user_id: token.user_id.map(SnowflakeId::as_i64),
            scopes: nullable(&token.scopes),
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            created_at: token.created_at,
            session_id: token.session_id,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth2_refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct RefreshTokenRow {
    token_hash: String,
    access_token_hash: Option<String>,
    client_id: String,
    user_id: i64,
    scopes: Vec<Option<String>>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    session_id: Option<Uuid>,
}

impl TryFrom<RefreshTokenRow> for OAuth2RefreshToken {
    type Error = RepoError;
    fn try_from(row: RefreshTokenRow) -> Result<Self, RepoError> {
        Ok(OAuth2RefreshToken {
            token_hash: hash(row.token_hash)?,
            access_token_hash: optional_hash(row.access_token_hash)?,
            client_id: row.client_id,
            user_id: SnowflakeId::from_i64(row.user_id),
            session_id: row.session_id,
            scopes: strings(row.scopes),
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        })
    }
}

impl From<&OAuth2RefreshToken> for RefreshTokenRow {
    fn from(token: &OAuth2RefreshToken) -> Self {
        RefreshTokenRow {
            token_hash: token.token_hash.as_str().to_owned(),
            access_token_hash: token
                .access_token_hash
                .as_ref()
                .map(|h| h.as_str().to_owned()),
            client_id: token.client_id.clone(),
            user_id: token.user_id.as_i64(),
            scopes: nullable(&token.scopes),
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            created_at: token.created_at,
            session_id: token.session_id,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth2_user_consents, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ConsentRow {
    pub(crate) user_id: i64,
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<Option<String>>,
    pub(crate) granted_at: DateTime<Utc>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

impl From<ConsentRow> for OAuth2UserConsent {
    fn from(row: ConsentRow) -> Self {
        OAuth2UserConsent {
            user_id: SnowflakeId::from_i64(row.user_id),
            client_id: row.client_id,
            scopes: strings(row.scopes),
            granted_at: row.granted_at,
            revoked_at: row.revoked_at,
        }
    }
}

impl From<&OAuth2UserConsent> for ConsentRow {
    fn from(consent: &OAuth2UserConsent) -> Self {
        ConsentRow {
            user_id: consent.user_id.as_i64(),
            client_id: consent.client_id.clone(),
            scopes: nullable(&consent.scopes),
            granted_at: consent.granted_at,
            revoked_at: consent.revoked_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = oauth2_scopes, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ScopeRow {
    name: String,
    description: String,
    is_default: bool,
}

impl From<ScopeRow> for OAuth2Scope {
    fn from(row: ScopeRow) -> Self {
        OAuth2Scope {
            name: row.name,
            description: row.description,
            is_default: row.is_default,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = oauth2_audit_logs, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AuditLogRow {
    id: i64,
    event_type: String,
    client_id: Option<String>,
    user_id: Option<i64>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    success: bool,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<AuditLogRow> for OAuth2AuditLog {
    fn from(row: AuditLogRow) -> Self {
        OAuth2AuditLog {
            id: row.id,
            event_type: row.event_type,
            client_id: row.client_id,
            user_id: row.user_id.map(SnowflakeId::from_i64),
            ip_address: row.ip_address,
            user_agent: row.user_agent,
            success: row.success,
            details: row.details,
            created_at: row.created_at,
        }
    }
}

/// Converts every row, failing on the first that does not validate.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, RepoError>
where
    T: TryFrom<R, Error = RepoError>,
{
    rows.into_iter().map(T::try_from).collect()
}
