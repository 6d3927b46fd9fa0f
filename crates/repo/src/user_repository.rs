//! The `UserRepository` contract of seed 000, in Rust: every method, `async`, typed errors.
//!
//! Where the Go contract passed a token, code or secret, this one takes its `TokenHash`, so
//! clear values never reach the database layer. Look-ups hide soft-deleted users, and return
//! tokens, codes and consents only while they are valid (not revoked, used or expired).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CredentialHistory, Email, Identifier, NewUser, OAuth2AccessToken, OAuth2AuditLog,
    OAuth2AuthorizationCode, OAuth2Client, OAuth2RefreshToken, OAuth2Scope, OAuth2UserConsent,
    OAuthAccount, Phone, TokenHash, User, UserCredential, UserId, UserProfile, UserStatus,
    UserWithCredential, VerificationStatus,
};
use uuid::Uuid;

use crate::RepoError;

pub type RepoResult<T> = Result<T, RepoError>;

#[async_trait]
pub trait UserRepository: Send + Sync {
    // --- Users ----------------------------------------------------------------------------

    /// Creates users with their password credentials in one statement. Returns one result per
    /// input, in input order: a duplicate email or phone (against live users, or an earlier row
    /// of the same batch) fails that row only; the others are created.
    async fn create_users(&self, users: &[NewUser]) -> RepoResult<Vec<RepoResult<User>>>;
    async fn get_user_by_id(&self, user_id: UserId) -> RepoResult<UserProfile>;
    /// The live user with this email (any case) or phone, with their credential.
    async fn get_user_by_identifier(
        &self,
        identifier: &Identifier,
    ) -> RepoResult<UserWithCredential>;
    /// A user (soft-deleted ones too) and their credentials.
    async fn get_user_with_credentials(
        &self,
        user_id: UserId,
    ) -> RepoResult<(User, Vec<UserCredential>)>;
    /// The live users among `user_ids`; unknown IDs are left out.
    async fn get_users_by_ids(&self, user_ids: &[UserId]) -> RepoResult<Vec<UserProfile>>;
    async fn get_users_by_identifiers(
        &self,
        identifiers: &[Identifier],
    ) -> RepoResult<Vec<UserWithCredential>>;
    async fn identifier_exists(&self, identifier: &Identifier) -> RepoResult<bool>;
    async fn user_exists_by_id(&self, user_id: UserId) -> RepoResult<bool>;
    /// Sets a new email; it is unverified until verified again.
    async fn update_email(&self, user_id: UserId, new_email: &Email) -> RepoResult<()>;
    async fn update_phone(
        &self,
        user_id: UserId,
        new_phone: &Phone,
        is_phone_verified: bool,
    ) -> RepoResult<()>;

    // --- Credentials ------------------------------------------------------------------------

    /// Replaces the password hash, keeping the old one in the history, and lifts an
    /// invalidation.
    async fn update_password(&self, user_id: UserId, new_hash: &str) -> RepoResult<()>;
    /// The most recent `limit` former password hashes, newest first.
    async fn get_credential_history(
        &self,
        user_id: UserId,
        limit: i64,
    ) -> RepoResult<Vec<CredentialHistory>>;
    /// Marks the credential invalid: the password no longer signs in until it is changed.
    async fn invalidate_all_credentials(&self, user_id: UserId) -> RepoResult<()>;
    async fn mark_credential_as_verified(&self, user_id: UserId) -> RepoResult<()>;

    // --- Verification -----------------------------------------------------------------------

    async fn get_email_verification_status(&self, user_id: UserId) -> RepoResult<bool>;
    async fn get_phone_verification_status(&self, user_id: UserId) -> RepoResult<bool>;
    /// `(email_verified, phone_verified)`.
    async fn get_both_verification_statuses(&self, user_id: UserId) -> RepoResult<(bool, bool)>;
    async fn get_verification_statuses(
        &self,
        user_ids: &[UserId],
    ) -> RepoResult<Vec<VerificationStatus>>;
    async fn update_email_verification_status(
        &self,
        user_id: UserId,
        verified: bool,
    ) -> RepoResult<()>;
    /// Returns how many users were updated.
    async fn update_email_verification_statuses(
        &self,
        user_ids: &[UserId],
        verified: bool,
    ) -> RepoResult<u64>;
    async fn update_phone_verification_status(
        &self,
        user_id: UserId,
        verified: bool,
    ) -> RepoResult<()>;
    async fn update_phone_verification_statuses(
        &self,
        user_ids: &[UserId],
        verified: bool,
    ) -> RepoResult<u64>;
    async fn update_both_verification_statuses(
        &self,
        user_id: UserId,
        email_verified: bool,
        phone_verified: bool,
    ) -> RepoResult<()>;

    // --- Deletion ---------------------------------------------------------------------------

    /// Keeps the row, marks it deleted: invisible to look-ups, its email and phone free again.
    async fn soft_delete_user(&self, user_id: UserId) -> RepoResult<()>;
    async fn soft_delete_users(&self, user_ids: &[UserId]) -> RepoResult<u64>;
    /// Undoes a soft delete; `Conflict` when a live user has taken the email or phone since.
    async fn restore_user(&self, user_id: UserId) -> RepoResult<()>;
    /// All or nothing: `Conflict` (and nothing restored) when any email or phone is taken.
    async fn restore_users(&self, user_ids: &[UserId]) -> RepoResult<u64>;
    /// Removes the user and everything that belongs to them, for good.
    async fn delete_user(&self, user_id: UserId) -> RepoResult<()>;
    async fn delete_users(&self, user_ids: &[UserId]) -> RepoResult<u64>;
    /// Permanently deletes up to `batch_size` users that have had `status` for more than
    /// `grace_period_days` days; returns how many.
    async fn batch_delete_by_status(
        &self,
        status: UserStatus,
        batch_size: i64,
        grace_period_days: i32,
    ) -> RepoResult<u64>;
    /// Permanently deletes every user soft-deleted more than `grace_period_days` days ago.
    async fn permanently_delete_users(&self, grace_period_days: i32) -> RepoResult<u64>;

    // --- Linked social logins ---------------------------------------------------------------

    async fn create_oauth_account(&self, account: &OAuthAccount) -> RepoResult<()>;
    async fn check_oauth_account_exists(&self, user_id: UserId, provider: &str)
    -> RepoResult<bool>;
    async fn count_oauth_accounts_by_provider(&self, provider: &str) -> RepoResult<i64>;
    async fn find_by_provider_uid(
        &self,
        provider: &str,
        provider_uid: &str,
    ) -> RepoResult<OAuthAccount>;
    async fn get_oauth_account_by_id(&self, id: Uuid) -> RepoResult<OAuthAccount>;
    async fn get_oauth_accounts_by_user_id(&self, user_id: UserId)
    -> RepoResult<Vec<OAuthAccount>>;
    /// The `limit` most recently linked accounts, newest first.
    async fn get_recent_oauth_links(&self, limit: i64) -> RepoResult<Vec<OAuthAccount>>;
    async fn get_user_id_by_provider_uid(
        &self,
        provider: &str,
        provider_uid: &str,
    ) -> RepoResult<UserId>;
    async fn unlink_oauth_account(&self, user_id: UserId, provider: &str) -> RepoResult<()>;
    async fn update_oauth_account_metadata(
        &self,
        id: Uuid,
        metadata: &serde_json::Value,
    ) -> RepoResult<()>;
    /// Stores the provider's new tokens, hashed; `None` leaves a value as it is.
    async fn update_oauth_tokens(
        &self,
        provider: &str,
        provider_uid: &str,
        access_token: Option<&TokenHash>,
        refresh_token: Option<&TokenHash>,
        expires_at: Option<DateTime<Utc>>,
    ) -> RepoResult<()>;

    // --- OAuth2 clients ---------------------------------------------------------------------

    async fn create_oauth2_client(&self, client: &OAuth2Client) -> RepoResult<OAuth2Client>;
    async fn get_oauth2_client_by_client_id(&self, client_id: &str) -> RepoResult<OAuth2Client>;
    async fn get_oauth2_clients_by_owner(&self, owner: UserId) -> RepoResult<Vec<OAuth2Client>>;
    /// Updates name, redirect URIs, grant types, scopes and confidentiality.
    async fn update_oauth2_client(&self, client: &OAuth2Client) -> RepoResult<OAuth2Client>;
    async fn regenerate_client_secret(
        &self,
        client_id: &str,
        new_secret_hash: &TokenHash,
    ) -> RepoResult<()>;
    async fn delete_oauth2_client(&self, client_id: &str) -> RepoResult<()>;

    // --- Authorization codes and tokens -----------------------------------------------------

    async fn create_authorization_code(&self, code: &OAuth2AuthorizationCode) -> RepoResult<()>;
    /// The code while it is unused and unexpired.
    async fn get_authorization_code(
        &self,
        code_hash: &TokenHash,
    ) -> RepoResult<OAuth2AuthorizationCode>;
    /// Marks the code used, once: a second call is a `Conflict`, so a code cannot be redeemed
    /// twice even by concurrent requests.
    async fn mark_authorization_code_as_used(&self, code_hash: &TokenHash) -> RepoResult<()>;
    async fn create_access_token(&self, token: &OAuth2AccessToken) -> RepoResult<()>;
    /// The token while it is unrevoked and unexpired.
    async fn get_access_token_by_hash(
        &self,
        token_hash: &TokenHash,
    ) -> RepoResult<OAuth2AccessToken>;
    async fn revoke_access_token(&self, token_hash: &TokenHash) -> RepoResult<()>;
    async fn revoke_access_tokens_by_user(&self, user_id: UserId) -> RepoResult<u64>;
    async fn create_refresh_token(&self, token: &OAuth2RefreshToken) -> RepoResult<()>;
    async fn get_refresh_token_by_hash(
        &self,
        token_hash: &TokenHash,
    ) -> RepoResult<OAuth2RefreshToken>;
    async fn revoke_refresh_token(&self, token_hash: &TokenHash) -> RepoResult<()>;
    async fn revoke_refresh_tokens_by_user(&self, user_id: UserId) -> RepoResult<u64>;
    /// Forgets expired provider tokens of linked social logins; returns how many accounts.
    async fn cleanup_expired_tokens(&self) -> RepoResult<u64>;
    /// Deletes expired authorization codes, access tokens and refresh tokens; returns how many.
    async fn cleanup_expired_oauth2_tokens(&self) -> RepoResult<u64>;

    // --- Consents, scopes, audit ------------------------------------------------------------

    /// Grants (or grants again, after a revocation) the client the consent's scopes.
    async fn create_user_consent(&self, consent: &OAuth2UserConsent) -> RepoResult<()>;
    /// The consent while it is not revoked.
    async fn get_user_consent(
        &self,
        user_id: UserId,
        client_id: &str,
    ) -> RepoResult<OAuth2UserConsent>;
    async fn get_user_consents(&self, user_id: UserId) -> RepoResult<Vec<OAuth2UserConsent>>;
    async fn revoke_user_consent(&self, user_id: UserId, client_id: &str) -> RepoResult<()>;
    async fn revoke_all_user_consents(&self, user_id: UserId) -> RepoResult<u64>;
    async fn get_all_scopes(&self) -> RepoResult<Vec<OAuth2Scope>>;
    /// Stores the entry; `id` and `created_at` of the input are ignored and set by the database.
    async fn create_oauth2_audit_log(&self, log: &OAuth2AuditLog) -> RepoResult<OAuth2AuditLog>;
    /// Newest first.
    async fn get_oauth2_audit_logs(
        &self,
        limit: i64,
        offset: i64,
    ) -> RepoResult<Vec<OAuth2AuditLog>>;
}
