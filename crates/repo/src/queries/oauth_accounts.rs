//! Social logins linked to users.

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{OAuthAccount, SnowflakeId, TokenHash, UserId};
use uuid::Uuid;

use crate::rows::{OAuthAccountRow, convert_all};
use crate::schema::oauth_accounts;
use crate::{RepoError, RepoResult};

pub(crate) async fn create(conn: &mut AsyncPgConnection, account: &OAuthAccount) -> RepoResult<()> {
    let mut row = OAuthAccountRow::from(account);
    row.created_at = Utc::now();
    row.updated_at = row.created_at;
    diesel::insert_into(oauth_accounts::table)
        .values(row)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn exists_for_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    provider: &str,
) -> RepoResult<bool> {
    let query = oauth_accounts::table
        .filter(oauth_accounts::user_id.eq(user_id.as_i64()))
        .filter(oauth_accounts::provider.eq(provider));
    Ok(diesel::select(diesel::dsl::exists(query))
        .get_result(conn)
        .await?)
}

pub(crate) async fn count_by_provider(
    conn: &mut AsyncPgConnection,
    provider: &str,
) -> RepoResult<i64> {
    Ok(oauth_accounts::table
        .filter(oauth_accounts::provider.eq(provider))
        .count()
        .get_result(conn)
        .await?)
}

pub(crate) async fn by_provider_uid(
    conn: &mut AsyncPgConnection,
    provider: &str,
    uid: &str,
) -> RepoResult<OAuthAccount> {
    let row = oauth_accounts::table
        .filter(oauth_accounts::provider.eq(provider))
        .filter(oauth_accounts::provider_uid.eq(uid))
        .select(OAuthAccountRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("oauth account", format!("{provider}:{uid}")))?
        .try_into()
}

pub(crate) async fn by_id(conn: &mut AsyncPgConnection, id: Uuid) -> RepoResult<OAuthAccount> {
    let row = oauth_accounts::table
        .find(id)
        .select(OAuthAccountRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.ok_or_else(|| RepoError::not_found("oauth account", id))?
        .try_into()
}

pub(crate) async fn by_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
) -> RepoResult<Vec<OAuthAccount>> {
    let rows = oauth_accounts::table
        .filter(oauth_accounts::user_id.eq(user_id.as_i64()))
        .order(oauth_accounts::provider)
        .select(OAuthAccountRow::as_select())
        .load(conn)
        .await?;
    convert_all(rows)
}

pub(crate) async fn recent(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> RepoResult<Vec<OAuthAccount>> {
    if limit <= 0 {
        return Err(RepoError::InvalidInput("limit must be positive".into()));
    }
    let rows = oauth_accounts::table
        .order((oauth_accounts::created_at.desc(), oauth_accounts::id))
        .limit(limit)
        .select(OAuthAccountRow::as_select())
        .load(conn)
        .await?;
    convert_all(rows)
}

pub(crate) async fn user_id_by_provider_uid(
    conn: &mut AsyncPgConnection,
    provider: &str,
    uid: &str,
) -> RepoResult<UserId> {
    let user_id: Option<i64> = oauth_accounts::table
        .filter(oauth_accounts::provider.eq(provider))
        .filter(oauth_accounts::provider_uid.eq(uid))
        .select(oauth_accounts::user_id)
        .first(conn)
        .await
        .optional()?;
    user_id
        .map(SnowflakeId::from_i64)
        .ok_or_else(|| RepoError::not_found("oauth account", format!("{provider}:{uid}")))
}

pub(crate) async fn unlink(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    provider: &str,
) -> RepoResult<()> {
    let deleted = diesel::delete(
        oauth_accounts::table
            .filter(oauth_accounts::user_id.eq(user_id.as_i64()))
            .filter(oauth_accounts::provider.eq(provider)),
    )
    .execute(conn)
    .await?;
    if deleted == 0 {
        return Err(RepoError::not_found(
            "oauth account",
            format!("{user_id}:{provider}"),
        ));
    }
    Ok(())
}

pub(crate) async fn update_metadata(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    metadata: &serde_json::Value,
) -> RepoResult<()> {
    let updated = diesel::update(oauth_accounts::table.find(id))
        .set(oauth_accounts::metadata.eq(metadata))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(RepoError::not_found("oauth account", id));
    }
    Ok(())
}

/// The token columns to change; `None` fields are left as they are.
#[derive(AsChangeset)]
#[diesel(table_name = oauth_accounts)]
struct TokenChanges {
    access_token_hash: Option<String>,
    refresh_token_hash: Option<String>,
    token_expires_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

pub(crate) async fn update_tokens(
    conn: &mut AsyncPgConnection,
    provider: &str,
    uid: &str,
    access_token: Option<&TokenHash>,
    refresh_token: Option<&TokenHash>,
    expires_at: Option<DateTime<Utc>>,
) -> RepoResult<()> {
    let changes = TokenChanges {
        access_token_hash: access_token.map(|h| h.as_str().to_owned()),
        refresh_token_hash: refresh_token.map(|h| h.as_str().to_owned()),
        token_expires_at: expires_at,
        updated_at: Utc::now(),
    };
    let updated = diesel::update(
        oauth_accounts::table
            .filter(oauth_accounts::provider.eq(provider))
            .filter(oauth_accounts::provider_uid.eq(uid)),
    )
    .set(changes)
    .execute(conn)
    .await?;
    if updated == 0 {
        return Err(RepoError::not_found(
            "oauth account",
            format!("{provider}:{uid}"),
        ));
    }
    Ok(())
}

/// Forgets provider tokens that have expired; returns how many accounts held some.
pub(crate) async fn forget_expired_tokens(conn: &mut AsyncPgConnection) -> RepoResult<u64> {
    let updated =
        diesel::update(oauth_accounts::table.filter(oauth_accounts::token_expires_at.lt(now)))
            .set((
                oauth_accounts::access_token_hash.eq(None::<String>),
                oauth_accounts::refresh_token_hash.eq(None::<String>),
                oauth_accounts::token_expires_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)
            .await?;
    Ok(updated as u64)
}
