//! `UserRepository` on PostgreSQL: each method takes a pooled connection and runs the query
//! function of `queries` that does the work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CredentialHistory, Email, Identifier, NewUser, OAuth2AccessToken, OAuth2AuditLog,
    OAuth2AuthorizationCode, OAuth2Client, OAuth2RefreshToken, OAuth2Scope, OAuth2UserConsent,
    OAuthAccount, Phone, TokenHash, User, UserCredential, UserId, UserProfile, UserStatus,
    UserWithCredential, VerificationStatus,
};
use uuid::Uuid;

use crate::queries::users::VerificationChange;
use crate::queries::{credentials, oauth_accounts, oauth2, users};
use crate::user_repository::{RepoResult, UserRepository};
use crate::{Database, DbConnection, RepoError};

/// The PostgreSQL implementation. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    database: Database,
}

impl PgUserRepository {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    async fn conn(&self) -> RepoResult<DbConnection> {
        Ok(self.database.connection().await?)
    }
}

fn only(updated: u64, user_id: UserId) -> RepoResult<()> {
    if updated == 0 {
        Err(RepoError::not_found("user", user_id))
    } else {
        Ok(())
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    #[tracing::instrument(name = "db.create_users", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", users = new_users.len()))]
    async fn create_users(&self, new_users: &[NewUser]) -> RepoResult<Vec<RepoResult<User>>> {
        users::insert_users(&mut *self.conn().await?, new_users).await
    }

    async fn get_user_by_id(&self, user_id: UserId) -> RepoResult<UserProfile> {
        users::find_user(&mut *self.conn().await?, user_id, true)
            .await
            .map(Into::into)
    }

    async fn get_user_by_identifier(
        &self,
        identifier: &Identifier,
    ) -> RepoResult<UserWithCredential> {
        users::user_by_identifier(&mut *self.conn().await?, identifier).await
    }

    async fn get_user_with_credentials(
        &self,
        user_id: UserId,
    ) -> RepoResult<(User, Vec<UserCredential>)> {
        let mut conn = self.conn().await?;
        let user = users::find_user(&mut conn, user_id, false).await?;
        Ok((user, credentials::credentials_of(&mut conn, user_id).await?))
    }

    async fn get_users_by_ids(&self, user_ids: &[UserId]) -> RepoResult<Vec<UserProfile>> {
        let found = users::users_by_ids(&mut *self.conn().await?, user_ids).await?;
        Ok(found.into_iter().map(Into::into).collect())
    }

    async fn get_users_by_identifiers(
        &self,
        identifiers: &[Identifier],
    ) -> RepoResult<Vec<UserWithCredential>> {
        users::users_by_identifiers(&mut *self.conn().await?, identifiers).await
    }

    async fn identifier_exists(&self, identifier: &Identifier) -> RepoResult<bool> {
        users::identifier_exists(&mut *self.conn().await?, identifier).await
    }

    async fn user_exists_by_id(&self, user_id: UserId) -> RepoResult<bool> {
        users::user_exists(&mut *self.conn().await?, user_id).await
    }

    async fn update_email(&self, user_id: UserId, new_email: &Email) -> RepoResult<()> {
        users::update_email(&mut *self.conn().await?, user_id, new_email).await
    }

    async fn update_phone(
        &self,
        user_id: UserId,
        new_phone: &Phone,
        is_phone_verified: bool,
    ) -> RepoResult<()> {
        users::update_phone(
            &mut *self.conn().await?,
            user_id,
            new_phone,
            is_phone_verified,
        )
        .await
    }

    async fn update_password(&self, user_id: UserId, new_hash: &str) -> RepoResult<()> {
        credentials::update_password(&mut *self.conn().await?, user_id, new_hash).await
    }

    async fn get_credential_history(
        &self,
        user_id: UserId,
        limit: i64,
    ) -> RepoResult<Vec<CredentialHistory>> {
        credentials::history(&mut *self.conn().await?, user_id, limit).await
    }

    async fn invalidate_all_credentials(&self, user_id: UserId) -> RepoResult<()> {
        credentials::invalidate(&mut *self.conn().await?, user_id).await
    }

    async fn mark_credential_as_verified(&self, user_id: UserId) -> RepoResult<()> {
        credentials::mark_verified(&mut *self.conn().await?, user_id).await
    }

    async fn get_email_verification_status(&self, user_id: UserId) -> RepoResult<bool> {
        Ok(self.get_both_verification_statuses(user_id).await?.0)
    }

    async fn get_phone_verification_status(&self, user_id: UserId) -> RepoResult<bool> {
        Ok(self.get_both_verification_statuses(user_id).await?.1)
    }

    async fn get_both_verification_statuses(&self, user_id: UserId) -> RepoResult<(bool, bool)> {
        let statuses = users::verification_statuses(&mut *self.conn().await?, &[user_id]).await?;
        let status = statuses
            .first()
            .ok_or_else(|| RepoError::not_found("user", user_id))?;
        Ok((status.email_verified, status.phone_verified))
    }

    async fn get_verification_statuses(
        &self,
        user_ids: &[UserId],
    ) -> RepoResult<Vec<VerificationStatus>> {
        users::verification_statuses(&mut *self.conn().await?, user_ids).await
    }

    async fn update_email_verification_status(
        &self,
        user_id: UserId,
        verified: bool,
    ) -> RepoResult<()> {
        let updated = users::set_verification(
            &mut *self.conn().await?,
            &[user_id],
            VerificationChange::email(verified),
        )
        .await?;
        only(updated, user_id)
    }

    async fn update_email_verification_statuses(
        &self,
        user_ids: &[UserId],
        verified: bool,
    ) -> RepoResult<u64> {
        users::set_verification(
            &mut *self.conn().await?,
            user_ids,
            VerificationChange::email(verified),
        )
        .await
    }

    async fn update_phone_verification_status(
        &self,
        user_id: UserId,
        verified: bool,
    ) -> RepoResult<()> {
        let updated = users::set_verification(
            &mut *self.conn().await?,
            &[user_id],
            VerificationChange::phone(verified),
        )
        .await?;
        only(updated, user_id)
    }

    async fn update_phone_verification_statuses(
        &self,
        user_ids: &[UserId],
        verified: bool,
    ) -> RepoResult<u64> {
        users::set_verification(
            &mut *self.conn().await?,
            user_ids,
            VerificationChange::phone(verified),
        )
        .await
    }

    async fn update_both_verification_statuses(
        &self,
        user_id: UserId,
        email_verified: bool,
        phone_verified: bool,
    ) -> RepoResult<()> {
        let change = VerificationChange {
            email: Some(email_verified),
            phone: Some(phone_verified),
        };
        let updated = users::set_verification(&mut *self.conn().await?, &[user_id], change).await?;
        only(updated, user_id)
    }

    async fn soft_delete_user(&self, user_id: UserId) -> RepoResult<()> {
        only(
            users::soft_delete(&mut *self.conn().await?, &[user_id]).await?,
            user_id,
        )
    }

    async fn soft_delete_users(&self, user_ids: &[UserId]) -> RepoResult<u64> {
        users::soft_delete(&mut *self.conn().await?, user_ids).await
    }

    async fn restore_user(&self, user_id: UserId) -> RepoResult<()> {
        only(
            users::restore(&mut *self.conn().await?, &[user_id]).await?,
            user_id,
        )
    }

    async fn restore_users(&self, user_ids: &[UserId]) -> RepoResult<u64> {
        users::restore(&mut *self.conn().await?, user_ids).await
    }

    async fn delete_user(&self, user_id: UserId) -> RepoResult<()> {
        only(
            users::delete(&mut *self.conn().await?, &[user_id]).await?,
            user_id,
        )
    }

    async fn delete_users(&self, user_ids: &[UserId]) -> RepoResult<u64> {
        users::delete(&mut *self.conn().await?, user_ids).await
    }

    async fn batch_delete_by_status(
        &self,
        status: UserStatus,
        batch_size: i64,
        grace_period_days: i32,
    ) -> RepoResult<u64> {
        users::delete_by_status(
            &mut *self.conn().await?,
            status,
            batch_size,
            grace_period_days,
        )
        .await
    }

    async fn permanently_delete_users(&self, grace_period_days: i32) -> RepoResult<u64> {
        users::delete_soft_deleted(&mut *self.conn().await?, grace_period_days).await
    }

    async fn create_oauth_account(&self, account: &OAuthAccount) -> RepoResult<()> {
        oauth_accounts::create(&mut *self.conn().await?, account).await
    }

    async fn check_oauth_account_exists(
        &self,
        user_id: UserId,
        provider: &str,
    ) -> RepoResult<bool> {
        oauth_accounts::exists_for_user(&mut *self.conn().await?, user_id, provider).await
    }

    async fn count_oauth_accounts_by_provider(&self, provider: &str) -> RepoResult<i64> {
        oauth_accounts::count_by_provider(&mut *self.conn().await?, provider).await
    }

    async fn find_by_provider_uid(
        &self,
        provider: &str,
        provider_uid: &str,
    ) -> RepoResult<OAuthAccount> {
        oauth_accounts::by_provider_uid(&mut *self.conn().await?, provider, provider_uid).await
    }

    async fn get_oauth_account_by_id(&self, id: Uuid) -> RepoResult<OAuthAccount> {
        oauth_accounts::by_id(&mut *self.conn().await?, id).await
    }

    async fn get_oauth_accounts_by_user_id(
        &self,
        user_id: UserId,
    ) -> RepoResult<Vec<OAuthAccount>> {
        oauth_accounts::by_user(&mut *self.conn().await?, user_id).await
    }

    async fn get_recent_oauth_links(&self, limit: i64) -> RepoResult<Vec<OAuthAccount>> {
        oauth_accounts::recent(&mut *self.conn().await?, limit).await
    }

    async fn get_user_id_by_provider_uid(
        &self,
        provider: &str,
        provider_uid: &str,
    ) -> RepoResult<UserId> {
        oauth_accounts::user_id_by_provider_uid(&mut *self.conn().await?, provider, provider_uid)
            .await
    }

    async fn unlink_oauth_account(&self, user_id: UserId, provider: &str) -> RepoResult<()> {
        oauth_accounts::unlink(&mut *self.conn().await?, user_id, provider).await
    }

    async fn update_oauth_account_metadata(
        &self,
        id: Uuid,
        metadata: &serde_json::Value,
    ) -> RepoResult<()> {
        oauth_accounts::update_metadata(&mut *self.conn().await?, id, metadata).await
    }

    async fn update_oauth_tokens(
        &self,
        provider: &str,
        provider_uid: &str,
        access_token: Option<&TokenHash>,
        refresh_token: Option<&TokenHash>,
        expires_at: Option<DateTime<Utc>>,
    ) -> RepoResult<()> {
        let mut conn = self.conn().await?;
        oauth_accounts::update_tokens(
            &mut conn,
            provider,
            provider_uid,
            access_token,
            refresh_token,
            expires_at,
        )
        .await
    }

    async fn create_oauth2_client(&self, client: &OAuth2Client) -> RepoResult<OAuth2Client> {
        oauth2::create_client(&mut *self.conn().await?, client).await
    }

    async fn get_oauth2_client_by_client_id(&self, client_id: &str) -> RepoResult<OAuth2Client> {
        oauth2::client_by_client_id(&mut *self.conn().await?, client_id).await
    }

    async fn get_oauth2_clients_by_owner(&self, owner: UserId) -> RepoResult<Vec<OAuth2Client>> {
        oauth2::clients_by_owner(&mut *self.conn().await?, owner).await
    }

    async fn update_oauth2_client(&self, client: &OAuth2Client) -> RepoResult<OAuth2Client> {
        oauth2::update_client(&mut *self.conn().await?, client).await
    }

    async fn regenerate_client_secret(
        &self,
        client_id: &str,
        new_secret_hash: &TokenHash,
    ) -> RepoResult<()> {
        oauth2::set_client_secret(&mut *self.conn().await?, client_id, new_secret_hash).await
    }

    async fn delete_oauth2_client(&self, client_id: &str) -> RepoResult<()> {
        oauth2::delete_client(&mut *self.conn().await?, client_id).await
    }

    async fn create_authorization_code(&self, code: &OAuth2AuthorizationCode) -> RepoResult<()> {
        oauth2::create_code(&mut *self.conn().await?, code).await
    }

    async fn get_authorization_code(
        &self,
        code_hash: &TokenHash,
    ) -> RepoResult<OAuth2AuthorizationCode> {
        oauth2::valid_code(&mut *self.conn().await?, code_hash).await
    }

    async fn mark_authorization_code_as_used(&self, code_hash: &TokenHash) -> RepoResult<()> {
        oauth2::use_code(&mut *self.conn().await?, code_hash).await
    }

    async fn create_access_token(&self, token: &OAuth2AccessToken) -> RepoResult<()> {
        oauth2::create_access_token(&mut *self.conn().await?, token).await
    }

    async fn get_access_token_by_hash(
        &self,
        token_hash: &TokenHash,
    ) -> RepoResult<OAuth2AccessToken> {
        oauth2::valid_access_token(&mut *self.conn().await?, token_hash).await
    }

    async fn revoke_access_token(&self, token_hash: &TokenHash) -> RepoResult<()> {
        oauth2::revoke_access_token(&mut *self.conn().await?, token_hash).await
    }

    async fn revoke_access_tokens_by_user(&self, user_id: UserId) -> RepoResult<u64> {
        oauth2::revoke_access_tokens_of(&mut *self.conn().await?, user_id).await
    }

    async fn create_refresh_token(&self, token: &OAuth2RefreshToken) -> RepoResult<()> {
        oauth2::create_refresh_token(&mut *self.conn().await?, token).await
    }

    async fn get_refresh_token_by_hash(
        &self,
        token_hash: &TokenHash,
    ) -> RepoResult<OAuth2RefreshToken> {
        oauth2::valid_refresh_token(&mut *self.conn().await?, token_hash).await
    }

    async fn revoke_refresh_token(&self, token_hash: &TokenHash) -> RepoResult<()> {
        oauth2::revoke_refresh_token(&mut *self.conn().await?, token_hash).await
    }

    async fn revoke_refresh_tokens_by_user(&self, user_id: UserId) -> RepoResult<u64> {
        oauth2::revoke_refresh_tokens_of(&mut *self.conn().await?, user_id).await
    }

    async fn cleanup_expired_tokens(&self) -> RepoResult<u64> {
        oauth_accounts::forget_expired_tokens(&mut *self.conn().await?).await
    }

    async fn cleanup_expired_oauth2_tokens(&self) -> RepoResult<u64> {
        oauth2::delete_expired(&mut *self.conn().await?).await
    }

    async fn create_user_consent(&self, consent: &OAuth2UserConsent) -> RepoResult<()> {
        oauth2::grant_consent(&mut *self.conn().await?, consent).await
    }

    async fn get_user_consent(
        &self,
        user_id: UserId,
        client_id: &str,
    ) -> RepoResult<OAuth2UserConsent> {
        oauth2::active_consent(&mut *self.conn().await?, user_id, client_id).await
    }

    async fn get_user_consents(&self, user_id: UserId) -> RepoResult<Vec<OAuth2UserConsent>> {
        oauth2::active_consents(&mut *self.conn().await?, user_id).await
    }

    async fn revoke_user_consent(&self, user_id: UserId, client_id: &str) -> RepoResult<()> {
        oauth2::revoke_consent(&mut *self.conn().await?, user_id, client_id).await
    }

    async fn revoke_all_user_consents(&self, user_id: UserId) -> RepoResult<u64> {
        oauth2::revoke_all_consents(&mut *self.conn().await?, user_id).await
    }

    async fn get_all_scopes(&self) -> RepoResult<Vec<OAuth2Scope>> {
        oauth2::all_scopes(&mut *self.conn().await?).await
    }

    async fn create_oauth2_audit_log(&self, log: &OAuth2AuditLog) -> RepoResult<OAuth2AuditLog> {
        oauth2::append_audit_log(&mut *self.conn().await?, log).await
    }

    async fn get_oauth2_audit_logs(
        &self,
        limit: i64,
        offset: i64,
    ) -> RepoResult<Vec<OAuth2AuditLog>> {
        oauth2::audit_logs(&mut *self.conn().await?, limit, offset).await
    }
}
