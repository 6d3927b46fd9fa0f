//! Password credentials and their history.

use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{CredentialHistory, UserCredential, UserId};

use crate::queries::users::find_user;
use crate::rows::{CredentialHistoryRow, CredentialRow};
use crate::schema::{credential_history, user_credentials};
use crate::{RepoError, RepoResult};

pub(crate) async fn credentials_of(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> RepoResult<Vec<UserCredential>> {
    let rows = user_credentials::table
        .filter(user_credentials::user_id.eq(id.as_i64()))
        .select(CredentialRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// In one transaction: the current hash goes to the history, the new one replaces it, and an
/// invalidation is lifted. A user without a credential (signed up through a social login) gets
/// one.
pub(crate) async fn update_password(
    conn: &mut AsyncPgConnection,
    id: UserId,
    new_hash: &str,
) -> RepoResult<()> {
    if new_hash.is_empty() {
        return Err(RepoError::InvalidInput("the password hash is empty".into()));
    }
    let new_hash = new_hash.to_owned();
    conn.transaction::<_, RepoError, _>(async |conn| {
        find_user(conn, id, true).await?;
        let current: Option<String> = user_credentials::table
            .filter(user_credentials::user_id.eq(id.as_i64()))
            .select(user_credentials::password_hash)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        if let Some(old_hash) = current {
            diesel::insert_into(credential_history::table)
                .values((
                    credential_history::user_id.eq(id.as_i64()),
                    credential_history::password_hash.eq(old_hash),
                ))
                .execute(conn)
                .await?;
        }
        diesel::insert_into(user_credentials::table)
            .values((
                user_credentials::user_id.eq(id.as_i64()),
                user_credentials::password_hash.eq(&new_hash),
            ))
            .on_conflict(user_credentials::user_id)
            .do_update()
            .set((
                user_credentials::password_hash.eq(&new_hash),
                user_credentials::invalidated_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

pub(crate) async fn history(
    conn: &mut AsyncPgConnection,
    id: UserId,
    limit: i64,
) -> RepoResult<Vec<CredentialHistory>> {
    if limit <= 0 {
        return Err(RepoError::InvalidInput("limit must be positive".into()));
    }
    let rows = credential_history::table
        .filter(credential_history::user_id.eq(id.as_i64()))
        .order((
            credential_history::replaced_at.desc(),
            credential_history::id.desc(),
        ))
        .limit(limit)
        .select(CredentialHistoryRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

fn expect_credential(updated: usize, id: UserId) -> RepoResult<()> {
    if updated == 0 {
        Err(RepoError::not_found("credential", id))
    } else {
        Ok(())
    }
}

pub(crate) async fn invalidate(conn: &mut AsyncPgConnection, id: UserId) -> RepoResult<()> {
    let updated =
        diesel::update(user_credentials::table.filter(user_credentials::user_id.eq(id.as_i64())))
            .set(user_credentials::invalidated_at.eq(now))
            .execute(conn)
            .await?;
    expect_credential(updated, id)
}

pub(crate) async fn mark_verified(conn: &mut AsyncPgConnection, id: UserId) -> RepoResult<()> {
    let updated =
        diesel::update(user_credentials::table.filter(user_credentials::user_id.eq(id.as_i64())))
            .set(user_credentials::is_verified.eq(true))
            .execute(conn)
            .await?;
    expect_credential(updated, id)
}
