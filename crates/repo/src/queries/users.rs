//! Users: creation in batches, look-ups, contact changes, verification flags, deletion.

use std::collections::HashMap;

use diesel::dsl::now;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{
    Email, Identifier, NewUser, Phone, SnowflakeId, User, UserId, UserStatus, UserWithCredential,
    VerificationStatus,
};

use crate::rows::{CredentialRow, UserRow, convert_all};
use crate::schema::{user_credentials, users};
use crate::{RepoError, RepoResult};

diesel::define_sql_function! {
    /// PostgreSQL's `lower`, for the case-insensitive email look-ups the unique index serves.
    fn lower(text: Nullable<Text>) -> Nullable<Text>;
}

type Live = diesel::dsl::IsNull<users::deleted_at>;

fn live() -> Live {
    users::deleted_at.is_null()
}

type LiveUser =
    diesel::dsl::Filter<diesel::dsl::Filter<users::table, diesel::dsl::Eq<users::id, i64>>, Live>;
type LiveUsers = diesel::dsl::Filter<
    diesel::dsl::Filter<users::table, diesel::dsl::EqAny<users::id, Vec<i64>>>,
    Live,
>;

/// The user with this ID, unless soft-deleted.
fn live_user(id: UserId) -> LiveUser {
    users::table
        .filter(users::id.eq(id.as_i64()))
        .filter(live())
}

/// The users with these IDs, except soft-deleted ones.
fn live_users(ids: &[UserId]) -> LiveUsers {
    let ids: Vec<i64> = ids.iter().map(|id| id.as_i64()).collect();
    users::table.filter(users::id.eq_any(ids)).filter(live())
}

/// One result row of the batch insert: whether the input row was created and, if not, what it
/// collided with before the statement ran.
#[derive(QueryableByName)]
struct InsertOutcome {
    #[diesel(sql_type = Bool)]
    created: bool,
    #[diesel(sql_type = Bool)]
    id_taken: bool,
    #[diesel(sql_type = Bool)]
    email_taken: bool,
    #[diesel(sql_type = Bool)]
    phone_taken: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Users and credentials from parallel arrays, inserted by one statement: seven array
/// parameters whatever the batch size, so PostgreSQL's 65,535-parameter limit never applies.
/// `ON CONFLICT DO NOTHING` skips rows that collide with a live user or an earlier row of the
/// batch; the final SELECT reports, per input row, what happened. All parts of the statement see
/// the same snapshot, so the `*_taken` flags describe the table before this batch.
const INSERT_USERS: &str = "
WITH input AS (
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::bool[], $7::text[])
        WITH ORDINALITY AS t(id, email, phone, is_email_verified, is_phone_verified, consent, password_hash, ord)
),
inserted AS (
    INSERT INTO users (id, email, phone, is_email_verified, is_phone_verified, consent)
    SELECT id, email, phone, is_email_verified, is_phone_verified, consent FROM input ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, created_at
),
credentials AS (
    INSERT INTO user_credentials (user_id, password_hash)
    SELECT input.id, input.password_hash FROM input JOIN inserted USING (id)
)
SELECT inserted.id IS NOT NULL AS created,
       inserted.created_at,
       -- Why a row was skipped: probed for skipped rows only.
       CASE WHEN inserted.id IS NULL
            THEN EXISTS (SELECT 1 FROM users u WHERE u.id = input.id)
            ELSE FALSE END AS id_taken,
       CASE WHEN inserted.id IS NULL AND input.email IS NOT NULL
            THEN EXISTS (SELECT 1 FROM users u
                         WHERE u.deleted_at IS NULL AND lower(u.email) = lower(input.email))
            ELSE FALSE END AS email_taken,
       CASE WHEN inserted.id IS NULL AND input.phone IS NOT NULL
            THEN EXISTS (SELECT 1 FROM users u WHERE u.deleted_at IS NULL AND u.phone = input.phone)
            ELSE FALSE END AS phone_taken
FROM input LEFT JOIN inserted USING (id)
ORDER BY input.ord";

/// Creates users with their credentials in one round trip; one result per input row.
pub(crate) async fn insert_users(
    conn: &mut AsyncPgConnection,
    new_users: &[NewUser],
) -> RepoResult<Vec<RepoResult<User>>> {
    if new_users.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewUser) -> Option<String>| new_users.iter().map(f).collect::<Vec<_>>();
    let outcomes: Vec<InsertOutcome> = diesel::sql_query(INSERT_USERS)
        .bind::<Array<BigInt>, _>(new_users.iter().map(|u| u.id.as_i64()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(column(|u| {
            u.email.as_ref().map(|e| e.as_str().to_owned())
        }))
        .bind::<Array<Nullable<Text>>, _>(column(|u| {
            u.phone.as_ref().map(|p| p.as_str().to_owned())
        }))
        .bind::<Array<Bool>, _>(
            new_users
                .iter()
                .map(|u| u.is_email_verified)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(
            new_users
                .iter()
                .map(|u| u.is_phone_verified)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(new_users.iter().map(|u| u.consent).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            new_users
                .iter()
                .map(|u| u.password_hash.clone())
                .collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    if outcomes.len() != new_users.len() {
        return Err(RepoError::Database(format!(
            "batch insert reported {} outcomes for {} rows",
            outcomes.len(),
            new_users.len()
        )));
    }
    let mut first_row_with = HashMap::new();
    Ok(new_users
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(row, (new_user, outcome))| {
            // Remember where each identifier first appeared, to name the row a duplicate repeats.
            let keys = batch_keys(new_user);
            let earlier = keys.iter().find_map(|key| first_row_with.get(key).copied());
            for key in keys {
                first_row_with.entry(key).or_insert(row);
            }
            describe_outcome(new_user, &outcome, earlier)
        })
        .collect())
}

/// The values of a new user that must be unique: its ID, lowercased email and phone.
fn batch_keys(user: &NewUser) -> Vec<String> {
    let mut keys = vec![format!("id:{}", user.id)];
    keys.extend(
        user.email
            .as_ref()
            .map(|e| format!("email:{}", e.as_str().to_lowercase())),
    );
    keys.extend(user.phone.as_ref().map(|p| format!("phone:{}", p.as_str())));
    keys
}

fn describe_outcome(
    user: &NewUser,
    outcome: &InsertOutcome,
    earlier_row: Option<usize>,
) -> RepoResult<User> {
    if outcome.created {
        let created_at = outcome.created_at.unwrap_or_else(chrono::Utc::now);
        return Ok(User {
            id: user.id,
            email: user.email.clone(),
            phone: user.phone.clone(),
            is_email_verified: user.is_email_verified,
            is_phone_verified: user.is_phone_verified,
            consent: user.consent,
            status: UserStatus::Active,
            status_changed_at: created_at,
            created_at,
            updated_at: created_at,
            deleted_at: None,
        });
    }
    let reason = if outcome.email_taken {
        "email is already registered".to_owned()
    } else if outcome.phone_taken {
        "phone is already registered".to_owned()
    } else if outcome.id_taken {
        format!("user ID {} already exists", user.id)
    } else if let Some(row) = earlier_row {
        format!("duplicates row {row} of the same batch")
    } else {
        "conflicts with another user".to_owned()
    };
    Err(RepoError::Conflict(reason))
}

pub(crate) async fn find_user(
    conn: &mut AsyncPgConnection,
    id: UserId,
    only_live: bool,
) -> RepoResult<User> {
    let mut query = users::table
        .filter(users::id.eq(id.as_i64()))
        .select(UserRow::as_select())
        .into_boxed();
    if only_live {
        query = query.filter(live());
    }
    let row = query.first(conn).await.optional()?;
    row.ok_or_else(|| RepoError::not_found("user", id))?
        .try_into()
}

pub(crate) async fn users_by_ids(
    conn: &mut AsyncPgConnection,
    ids: &[UserId],
) -> RepoResult<Vec<User>> {
    let rows = live_users(ids)
        .order(users::id)
        .select(UserRow::as_select())
        .load(conn)
        .await?;
    convert_all(rows)
}

/// Live users matching any of the identifiers, with their credentials, in one query.
pub(crate) async fn users_by_identifiers(
    conn: &mut AsyncPgConnection,
    identifiers: &[Identifier],
) -> RepoResult<Vec<UserWithCredential>> {
    let mut emails = Vec::new();
    let mut phones = Vec::new();
    for identifier in identifiers {
        match identifier {
            Identifier::Email(email) => emails.push(email.as_str().to_lowercase()),
            Identifier::Phone(phone) => phones.push(phone.as_str().to_owned()),
        }
    }
    let rows: Vec<(UserRow, Option<CredentialRow>)> = users::table
        .left_join(user_credentials::table)
        .filter(live())
        .filter(
            lower(users::email)
                .eq_any(emails)
                .or(users::phone.eq_any(phones)),
        )
        .order(users::id)
        .select((UserRow::as_select(), Option::<CredentialRow>::as_select()))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(user, credential)| {
            Ok(UserWithCredential {
                user: user.try_into()?,
                credential: credential.map(Into::into),
            })
        })
        .collect()
}

pub(crate) async fn user_by_identifier(
    conn: &mut AsyncPgConnection,
    identifier: &Identifier,
) -> RepoResult<UserWithCredential> {
    let found = users_by_identifiers(conn, std::slice::from_ref(identifier)).await?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| RepoError::not_found("user", identifier_text(identifier)))
}

fn identifier_text(identifier: &Identifier) -> String {
    match identifier {
        Identifier::Email(email) => email.to_string(),
        Identifier::Phone(phone) => phone.to_string(),
    }
}

pub(crate) async fn identifier_exists(
    conn: &mut AsyncPgConnection,
    identifier: &Identifier,
) -> RepoResult<bool> {
    let query = users::table.filter(live()).into_boxed();
    let query = match identifier {
        Identifier::Email(email) => query.filter(lower(users::email).eq(lower(email.as_str()))),
        Identifier::Phone(phone) => query.filter(users::phone.eq(phone.as_str())),
    };
    Ok(diesel::select(diesel::dsl::exists(query))
        .get_result(conn)
        .await?)
}

pub(crate) async fn user_exists(conn: &mut AsyncPgConnection, id: UserId) -> RepoResult<bool> {
    let query = users::table
        .filter(users::id.eq(id.as_i64()))
        .filter(live());
    Ok(diesel::select(diesel::dsl::exists(query))
        .get_result(conn)
        .await?)
}

/// Fails with `NotFound` when an update matched no live user.
fn expect_one(updated: usize, id: UserId) -> RepoResult<()> {
    if updated == 0 {
        Err(RepoError::not_found("user", id))
    } else {
        Ok(())
    }
}

pub(crate) async fn update_email(
    conn: &mut AsyncPgConnection,
    id: UserId,
    email: &Email,
) -> RepoResult<()> {
    let updated = diesel::update(live_user(id))
        .set((
            users::email.eq(email.as_str()),
            users::is_email_verified.eq(false),
        ))
        .execute(conn)
        .await?;
    expect_one(updated, id)
}

pub(crate) async fn update_phone(
    conn: &mut AsyncPgConnection,
    id: UserId,
    phone: &Phone,
    verified: bool,
) -> RepoResult<()> {
    let updated = diesel::update(live_user(id))
        .set((
            users::phone.eq(phone.as_str()),
            users::is_phone_verified.eq(verified),
        ))
        .execute(conn)
        .await?;
    expect_one(updated, id)
}

pub(crate) async fn verification_statuses(
    conn: &mut AsyncPgConnection,
    ids: &[UserId],
) -> RepoResult<Vec<VerificationStatus>> {
    let rows: Vec<(i64, bool, bool)> = live_users(ids)
        .order(users::id)
        .select((
            users::id,
            users::is_email_verified,
            users::is_phone_verified,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email_verified, phone_verified)| VerificationStatus {
            user_id: SnowflakeId::from_i64(id),
            email_verified,
            phone_verified,
        })
        .collect())
}

/// Which verification flags to set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VerificationChange {
    pub(crate) email: Option<bool>,
    pub(crate) phone: Option<bool>,
}

impl VerificationChange {
    pub(crate) fn email(verified: bool) -> Self {
        Self {
            email: Some(verified),
            phone: None,
        }
    }

    pub(crate) fn phone(verified: bool) -> Self {
        Self {
            email: None,
            phone: Some(verified),
        }
    }
}

/// Sets the given flags on the live users among `ids`, in one statement; returns the count.
pub(crate) async fn set_verification(
    conn: &mut AsyncPgConnection,
    ids: &[UserId],
    change: VerificationChange,
) -> RepoResult<u64> {
    #[derive(AsChangeset)]
    #[diesel(table_name = users)]
    struct Flags {
        is_email_verified: Option<bool>,
        is_phone_verified: Option<bool>,
    }
    let flags = Flags {
        is_email_verified: change.email,
        is_phone_verified: change.phone,
    };
    let updated = diesel::update(live_users(ids))
        .set(flags)
        .execute(conn)
        .await?;
    Ok(updated as u64)
}

pub(crate) async fn soft_delete(conn: &mut AsyncPgConnection, ids: &[UserId]) -> RepoResult<u64> {
    let updated = diesel::update(live_users(ids))
        .set((
            users::deleted_at.eq(now),
            users::status.eq(UserStatus::Deleted.as_str()),
            users::status_changed_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(updated as u64)
}

/// Restores soft-deleted users; a unique-index violation (the email or phone was taken since)
/// fails the whole statement with `Conflict`.
pub(crate) async fn restore(conn: &mut AsyncPgConnection, ids: &[UserId]) -> RepoResult<u64> {
    let ids: Vec<i64> = ids.iter().map(|id| id.as_i64()).collect();
    let updated = diesel::update(
        users::table
            .filter(users::id.eq_any(ids))
            .filter(users::deleted_at.is_not_null()),
    )
    .set((
        users::deleted_at.eq(None::<chrono::DateTime<chrono::Utc>>),
        users::status.eq(UserStatus::Active.as_str()),
        users::status_changed_at.eq(now),
    ))
    .execute(conn)
    .await
    .map_err(|error| match RepoError::from(error) {
        RepoError::Conflict(what) => RepoError::Conflict(format!(
            "a live user has taken the email or phone since: {what}"
        )),
        other => other,
    })?;
    Ok(updated as u64)
}

pub(crate) async fn delete(conn: &mut AsyncPgConnection, ids: &[UserId]) -> RepoResult<u64> {
    let ids: Vec<i64> = ids.iter().map(|id| id.as_i64()).collect();
    Ok(diesel::delete(users::table.filter(users::id.eq_any(ids)))
        .execute(conn)
        .await? as u64)
}

pub(crate) async fn delete_by_status(
    conn: &mut AsyncPgConnection,
    status: UserStatus,
    batch_size: i64,
    grace_period_days: i32,
) -> RepoResult<u64> {
    if batch_size <= 0 || grace_period_days < 0 {
        return Err(RepoError::InvalidInput(
            "batch size must be positive and the grace period not negative".into(),
        ));
    }
    // Oldest first, so repeated runs work through the backlog in order.
    let deleted = diesel::sql_query(
        "DELETE FROM users WHERE id IN (
             SELECT id FROM users
             WHERE status = $1 AND status_changed_at < now() - make_interval(days => $2)
             ORDER BY status_changed_at
             LIMIT $3)",
    )
    .bind::<Text, _>(status.as_str())
    .bind::<diesel::sql_types::Integer, _>(grace_period_days)
    .bind::<BigInt, _>(batch_size)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

pub(crate) async fn delete_soft_deleted(
    conn: &mut AsyncPgConnection,
    grace_period_days: i32,
) -> RepoResult<u64> {
    if grace_period_days < 0 {
        return Err(RepoError::InvalidInput(
            "the grace period must not be negative".into(),
        ));
    }
    let deleted =
        diesel::sql_query("DELETE FROM users WHERE deleted_at < now() - make_interval(days => $1)")
            .bind::<diesel::sql_types::Integer, _>(grace_period_days)
            .execute(conn)
            .await?;
    Ok(deleted as u64)
}
