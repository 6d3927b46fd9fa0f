//! Our OAuth2 authorization server's records: clients, codes, tokens, consents, scopes, audit.
//! "Valid" means not revoked, not used and not expired; look-ups return only valid records.

use chrono::Utc;
use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{
    OAuth2AccessToken, OAuth2AuditLog, OAuth2AuthorizationCode, OAuth2Client, OAuth2RefreshToken,
    OAuth2Scope, OAuth2UserConsent, TokenHash, UserId,
};

use crate::rows::{
    AccessTokenRow, AuditLogRow, AuthorizationCodeRow, ConsentRow, OAuth2ClientRow,
    RefreshTokenRow, ScopeRow, convert_all,
};
use crate::schema::{
    oauth2_access_tokens as access, oauth2_audit_logs as audit,
    oauth2_authorization_codes as codes, oauth2_clients as clients,
    oauth2_refresh_tokens as refresh, oauth2_scopes as scopes, oauth2_user_consents as consents,
};
use crate::{RepoError, RepoResult};

fn none_matched(updated: usize, entity: &'static str, key: impl ToString) -> RepoResult<()> {
    if updated == 0 {
        Err(RepoError::not_found(entity, key))
    } else {
        Ok(())
    }
}

// --- Clients ----------------------------------------------------------------------------------

fn check_client(client: &OAuth2Client) -> RepoResult<()> {
    if client.client_id.trim().is_empty() || client.name.trim().is_empty() {
        return Err(RepoError::InvalidInput(
            "client_id and name are required".into(),
        ));
    }
    if client.is_confidential && client.client_secret_hash.is_none() {
        return Err(RepoError::InvalidInput(
            "a confidential client needs a secret".into(),
        ));
    }
    Ok(())
}

pub(crate) async fn create_client(
    conn: &mut AsyncPgConnection,
    client: &OAuth2Client,
) -> RepoResult<OAuth2Client> {
    check_client(client)?;
    let mut row = OAuth2ClientRow::from(client);
    row.created_at = Utc::now();
    row.updated_at = row.created_at;
    let row = diesel::insert_into(clients::table)
        .values(row)
        .returning(OAuth2ClientRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

pub(crate) async fn client_by_client_id(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> RepoResult<OAuth2Client> {
    let row = clients::table
        .filter(clients::client_id.eq(client_id))
        .select(OAuth2ClientRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("oauth2 client", client_id))?
        .try_into()
}

pub(crate) async fn clients_by_owner(
    conn: &mut AsyncPgConnection,
    owner: UserId,
) -> RepoResult<Vec<OAuth2Client>> {
    let rows = clients::table
        .filter(clients::owner_user_id.eq(owner.as_i64()))
        .order((clients::created_at, clients::client_id))
        .select(OAuth2ClientRow::as_select())
        .load(conn)
        .await?;
    convert_all(rows)
}

pub(crate) async fn update_client(
    conn: &mut AsyncPgConnection,
    client: &OAuth2Client,
) -> RepoResult<OAuth2Client> {
    check_client(client)?;
    let row = OAuth2ClientRow::from(client);
    let updated = diesel::update(clients::table.filter(clients::client_id.eq(&client.client_id)))
        .set((
            clients::name.eq(row.name),
            clients::redirect_uris.eq(row.redirect_uris),
            clients::grant_types.eq(row.grant_types),
            clients::scopes.eq(row.scopes),
            clients::is_confidential.eq(row.is_confidential),
        ))
        .returning(OAuth2ClientRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    updated
        .ok_or_else(|| RepoError::not_found("oauth2 client", &client.client_id))?
        .try_into()
}

pub(crate) async fn set_client_secret(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    hash: &TokenHash,
) -> RepoResult<()> {
    let updated = diesel::update(clients::table.filter(clients::client_id.eq(client_id)))
        .set(clients::client_secret_hash.eq(hash.as_str()))
        .execute(conn)
        .await?;
    none_matched(updated, "oauth2 client", client_id)
}

pub(crate) async fn delete_client(conn: &mut AsyncPgConnection, client_id: &str) -> RepoResult<()> {
    let deleted = diesel::delete(clients::table.filter(clients::client_id.eq(client_id)))
        .execute(conn)
        .await?;
    none_matched(deleted, "oauth2 client", client_id)
}

// --- Authorization codes ----------------------------------------------------------------------

pub(crate) async fn create_code(
    conn: &mut AsyncPgConnection,
    code: &OAuth2AuthorizationCode,
) -> RepoResult<()> {
    diesel::insert_into(codes::table)
        .values(AuthorizationCodeRow::from(code))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn valid_code(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> RepoResult<OAuth2AuthorizationCode> {
    let row = codes::table
        .find(hash.as_str())
        .filter(codes::used_at.is_null())
        .filter(codes::expires_at.gt(now))
        .select(AuthorizationCodeRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("authorization code", "(hash)"))?
        .try_into()
}

/// One conditional UPDATE: of two concurrent redemptions, exactly one succeeds.
pub(crate) async fn use_code(conn: &mut AsyncPgConnection, hash: &TokenHash) -> RepoResult<()> {
    let updated = diesel::update(
        codes::table
            .find(hash.as_str())
            .filter(codes::used_at.is_null())
            .filter(codes::expires_at.gt(now)),
    )
    .set(codes::used_at.eq(now))
    .execute(conn)
    .await?;
    if updated == 1 {
        return Ok(());
    }
    let exists: bool = diesel::select(diesel::dsl::exists(codes::table.find(hash.as_str())))
        .get_result(conn)
        .await?;
    if exists {
        Err(RepoError::Conflict(
            "authorization code already used or expired".into(),
        ))
    } else {
        Err(RepoError::not_found("authorization code", "(hash)"))
    }
}

// --- Access and refresh tokens ----------------------------------------------------------------

pub(crate) async fn create_access_token(
    conn: &mut AsyncPgConnection,
    token: &OAuth2AccessToken,
) -> RepoResult<()> {
    diesel::insert_into(access::table)
        .values(AccessTokenRow::from(token))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn valid_access_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> RepoResult<OAuth2AccessToken> {
    let row = access::table
        .find(hash.as_str())
        .filter(access::revoked_at.is_null())
        .filter(access::expires_at.gt(now))
        .select(AccessTokenRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("access token", "(hash)"))?
        .try_into()
}

pub(crate) async fn revoke_access_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> RepoResult<()> {
    let updated = diesel::update(access::table.find(hash.as_str()))
        .set(access::revoked_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(revoked_at, now())")))
        .execute(conn)
        .await?;
    none_matched(updated, "access token", "(hash)")
}

pub(crate) async fn revoke_access_tokens_of(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> RepoResult<u64> {
    let updated = diesel::update(
        access::table
            .filter(access::user_id.eq(user_id.as_i64()))
            .filter(access::revoked_at.is_null()),
    )
    .set(access::revoked_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated as u64)
}

pub(crate) async fn create_refresh_token(
    conn: &mut AsyncPgConnection,
    token: &OAuth2RefreshToken,
) -> RepoResult<()> {
    diesel::insert_into(refresh::table)
        .values(RefreshTokenRow::from(token))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn valid_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> RepoResult<OAuth2RefreshToken> {
    let row = refresh::table
        .find(hash.as_str())
        .filter(refresh::revoked_at.is_null())
        .filter(refresh::expires_at.gt(now))
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("refresh token", "(hash)"))?
        .try_into()
}

pub(crate) async fn revoke_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> RepoResult<()> {
    let updated = diesel::update(refresh::table.find(hash.as_str()))
        .set(refresh::revoked_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(revoked_at, now())")))
        .execute(conn)
        .await?;
    none_matched(updated, "refresh token", "(hash)")
}

pub(crate) async fn revoke_refresh_tokens_of(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> RepoResult<u64> {
    let updated = diesel::update(
        refresh::table
            .filter(refresh::user_id.eq(user_id.as_i64()))
            .filter(refresh::revoked_at.is_null()),
    )
    .set(refresh::revoked_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated as u64)
}

/// Deletes expired codes, access tokens and refresh tokens; returns how many in all.
pub(crate) async fn delete_expired(conn: &mut AsyncPgConnection) -> RepoResult<u64> {
    let codes = diesel::delete(codes::table.filter(codes::expires_at.lt(now)))
        .execute(conn)
        .await?;
    let access = diesel::delete(access::table.filter(access::expires_at.lt(now)))
        .execute(conn)
        .await?;
    let refresh = diesel::delete(refresh::table.filter(refresh::expires_at.lt(now)))
        .execute(conn)
        .await?;
    Ok((codes + access + refresh) as u64)
}

// --- Consents ---------------------------------------------------------------------------------

pub(crate) async fn grant_consent(
    conn: &mut AsyncPgConnection,
    consent: &OAuth2UserConsent,
) -> RepoResult<()> {
    let mut row = ConsentRow::from(consent);
    row.revoked_at = None;
    let scopes = consent.scopes.iter().cloned().map(Some).collect::<Vec<_>>();
    diesel::insert_into(consents::table)
        .values(row)
        .on_conflict((consents::user_id, consents::client_id))
        .do_update()
        .set((
            consents::scopes.eq(scopes),
            consents::granted_at.eq(now),
            consents::revoked_at.eq(None::<chrono::DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn active_consent(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    client_id: &str,
) -> RepoResult<OAuth2UserConsent> {
    let row = consents::table
        .find((user_id.as_i64(), client_id))
        .filter(consents::revoked_at.is_null())
        .select(ConsentRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row
        .ok_or_else(|| RepoError::not_found("consent", format!("{user_id}:{client_id}")))?
        .into())
}

pub(crate) async fn active_consents(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> RepoResult<Vec<OAuth2UserConsent>> {
    let rows = consents::table
        .filter(consents::user_id.eq(user_id.as_i64()))
        .filter(consents::revoked_at.is_null())
        .order(consents::client_id)
        .select(ConsentRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn revoke_consent(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    client_id: &str,
) -> RepoResult<()> {
    let updated = diesel::update(
        consents::table
            .find((user_id.as_i64(), client_id))
            .filter(consents::revoked_at.is_null()),
    )
    .set(consents::revoked_at.eq(now))
    .execute(conn)
    .await?;
    none_matched(updated, "consent", format!("{user_id}:{client_id}"))
}

pub(crate) async fn revoke_all_consents(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> RepoResult<u64> {
    let updated = diesel::update(
        consents::table
            .filter(consents::user_id.eq(user_id.as_i64()))
            .filter(consents::revoked_at.is_null()),
    )
    .set(consents::revoked_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated as u64)
}

// --- Scopes and audit log ---------------------------------------------------------------------

pub(crate) async fn all_scopes(conn: &mut AsyncPgConnection) -> RepoResult<Vec<OAuth2Scope>> {
    let rows = scopes::table
        .order(scopes::name)
        .select(ScopeRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn append_audit_log(
    conn: &mut AsyncPgConnection,
    log: &OAuth2AuditLog,
) -> RepoResult<OAuth2AuditLog> {
    if log.event_type.trim().is_empty() {
        return Err(RepoError::InvalidInput("event_type is required".into()));
    }
    let row = diesel::insert_into(audit::table)
        .values((
            audit::event_type.eq(&log.event_type),
            audit::client_id.eq(&log.client_id),
            audit::user_id.eq(log.user_id.map(|id| id.as_i64())),
            audit::ip_address.eq(&log.ip_address),
            audit::user_agent.eq(&log.user_agent),
            audit::success.eq(log.success),
            audit::details.eq(&log.details),
        ))
        .returning(AuditLogRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into())
}

pub(crate) async fn audit_logs(
    conn: &mut AsyncPgConnection,
    limit: i64,
    offset: i64,
) -> RepoResult<Vec<OAuth2AuditLog>> {
    if limit <= 0 || offset < 0 {
        return Err(RepoError::InvalidInput(
            "limit must be positive and offset not negative".into(),
        ));
    }
    let rows = audit::table
        .order((audit::created_at.desc(), audit::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(AuditLogRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
