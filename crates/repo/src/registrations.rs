//! Asynchronous registrations: users created in batches together with the outcome of each
//! request, so that a replayed request creates nobody twice and its status can be read back.
//!
//! `register` runs one transaction per batch: it claims the requests, writing each one's row as
//! `completed` with the ID of the user it is about to create (`completed` and `failed` rows are
//! final and are not claimed again), creates the users of the claimed requests with the
//! one-statement batch insert, and sets the few whose user could not be created `failed`. Each
//! outcome row is written once in the usual case: two statements between `BEGIN` and `COMMIT`.
//! A concurrent claim of the same request ID (a zombie member after a rebalance) waits on the
//! row lock and then finds the first one's final outcome.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{NewUser, RegistrationRecord, RegistrationStatus, User, UserId};
use uuid::Uuid;

use crate::queries::users::insert_users;
use crate::schema::registration_requests;
use crate::{Database, RepoError, RepoResult};

/// A request ready to be written: its ID and the user it asks for.
#[derive(Debug, Clone)]
pub struct PendingRegistration {
    pub request_id: Uuid,
    pub user: NewUser,
}

/// What `register` did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The user was created now.
    Created(User),
    /// An earlier delivery of the same request created this user.
    AlreadyCompleted(UserId),
    /// Refused for good (already registered, a duplicate within the batch); recorded `failed`.
    Refused { code: String, message: String },
    /// An earlier delivery was refused or ran out of retries.
    AlreadyFailed { code: String, message: String },
}

/// Why a request failed for good, as stored and as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub request_id: Uuid,
    pub code: String,
    pub message: String,
    pub retry_count: u32,
}

/// Registration outcomes on PostgreSQL. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct Registrations {
    database: Database,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = registration_requests)]
struct RegistrationRow {
    request_id: Uuid,
    status: String,
    user_id: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    retry_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RegistrationRow> for RegistrationRecord {
    type Error = RepoError;

    fn try_from(row: RegistrationRow) -> Result<Self, RepoError> {
        Ok(Self {
            request_id: row.request_id,
            status: RegistrationStatus::parse(&row.status).ok_or_else(|| {
                RepoError::Database(format!("unknown registration status {:?}", row.status))
            })?,
            user_id: row.user_id.map(UserId::from_i64),
            error_code: row.error_code,
            error_message: row.error_message,
            retry_count: u32::try_from(row.retry_count).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Claims the request IDs that have no final outcome yet and records each one `completed` with
/// the user it is about to create, in one write per request; returns the claimed IDs. The few
/// whose user cannot be created are set `failed` afterwards by `RECORD_FAILED`, in the same
/// transaction. A request that ran out of retries (`failed` with `retries_exhausted`: the
/// database or the broker failed it, not its data) is claimed again: it comes back only when an
/// operator redrives it from the retry queue, and then it is written like a new one.
const CLAIM: &str = "
INSERT INTO registration_requests AS r (request_id, status, user_id)
SELECT u.request_id, 'completed', u.user_id FROM unnest($1::uuid[], $2::int8[]) AS u(request_id, user_id)
ON CONFLICT (request_id) DO UPDATE
    SET status = 'completed', user_id = excluded.user_id, error_code = NULL, error_message = NULL
    WHERE r.status = 'processing' OR r.error_code = 'retries_exhausted'
RETURNING request_id";

/// Sets claimed requests whose user could not be created `failed`, from parallel arrays.
const RECORD_FAILED: &str = "
UPDATE registration_requests r
SET status = 'failed', user_id = NULL, error_code = u.code, error_message = u.message
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(request_id, code, message)
WHERE r.request_id = u.request_id";

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    request_id: Uuid,
}

impl Registrations {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Writes a batch of requests in one transaction; one outcome per input, in order. A request
    /// ID that appears twice gets the outcome of its first appearance. `Err` means nothing was
    /// written: `Unavailable` when the database is unreachable, `Transient` for a lock or
    /// statement timeout worth another try.
    #[tracing::instrument(name = "db.register", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn register(
        &self,
        requests: &[PendingRegistration],
    ) -> RepoResult<Vec<RegistrationOutcome>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut first_of: HashMap<Uuid, usize> = HashMap::new();
        let unique: Vec<&PendingRegistration> = requests
            .iter()
            .filter(|r| {
                let next = first_of.len();
                *first_of.entry(r.request_id).or_insert(next) == next
            })
            .collect();
        let mut conn = self.database.connection().await?;
        let outcomes = conn
            .transaction::<_, RepoError, _>(async |conn| {
                register_in_transaction(conn, &unique).await
            })
            .await?;
        Ok(requests
            .iter()
            .map(|r| outcomes[first_of[&r.request_id]].clone())
            .collect())
    }

    /// Records requests that failed for good before reaching the database (invalid data, out of
    /// retries). A request that already has a final outcome keeps it, but one that ran out of
    /// retries takes the new failure.
    #[tracing::instrument(name = "db.record_failures", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn record_failures(&self, refusals: &[Refusal]) -> RepoResult<()> {
        if refusals.is_empty() {
            return Ok(());
        }
        let mut conn = self.database.connection().await?;
        diesel::sql_query(
            "INSERT INTO registration_requests AS r
                 (request_id, status, error_code, error_message, retry_count)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int4[])
                 AS u(request_id, status, error_code, error_message, retry_count)
             ON CONFLICT (request_id) DO UPDATE
                 SET status = 'failed', error_code = excluded.error_code,
                     error_message = excluded.error_message, retry_count = excluded.retry_count
                 WHERE r.status = 'processing' OR r.error_code = 'retries_exhausted'",
        )
        .bind::<Array<SqlUuid>, _>(refusals.iter().map(|r| r.request_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(vec!["failed"; refusals.len()])
        .bind::<Array<Text>, _>(refusals.iter().map(|r| r.code.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            refusals
                .iter()
                .map(|r| r.message.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<diesel::sql_types::Integer>, _>(
            refusals
                .iter()
                .map(|r| i32::try_from(r.retry_count).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Notes that a try failed for a transient reason and the request waits for a retry: it
    /// stays `processing`, with the reason and the number of retries so far.
    #[tracing::instrument(name = "db.record_retry", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn record_retry(
        &self,
        request_id: Uuid,
        retry_count: u32,
        reason: &str,
    ) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        diesel::sql_query(
            "INSERT INTO registration_requests AS r
                 (request_id, status, error_code, error_message, retry_count)
             VALUES ($1, 'processing', 'retrying', $2, $3)
             ON CONFLICT (request_id) DO UPDATE
                 SET status = 'processing', error_code = 'retrying',
                     error_message = excluded.error_message, retry_count = excluded.retry_count
                 WHERE r.status = 'processing' OR r.error_code = 'retries_exhausted'",
        )
        .bind::<SqlUuid, _>(request_id)
        .bind::<Text, _>(reason)
        .bind::<diesel::sql_types::Integer, _>(i32::try_from(retry_count).unwrap_or(i32::MAX))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// `(status, error_code)` of each of `request_ids` that has a row: `processing` (waiting or
    /// retrying), `completed`, or `failed` with its code (`retries_exhausted` among them).
    #[tracing::instrument(name = "db.statuses", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn statuses(
        &self,
        request_ids: &[Uuid],
    ) -> RepoResult<HashMap<Uuid, (String, Option<String>)>> {
        let mut conn = self.database.connection().await?;
        let rows: Vec<(Uuid, String, Option<String>)> = registration_requests::table
            .filter(registration_requests::request_id.eq_any(request_ids))
            .select((
                registration_requests::request_id,
                registration_requests::status,
                registration_requests::error_code,
            ))
            .load(&mut *conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, status, code)| (id, (status, code)))
            .collect())
    }

    /// The stored outcome of a request, if it has one yet.
    #[tracing::instrument(name = "db.find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn find(&self, request_id: Uuid) -> RepoResult<Option<RegistrationRecord>> {
        let mut conn = self.database.connection().await?;
        registration_requests::table
            .find(request_id)
            .select(RegistrationRow::as_select())
            .first(&mut *conn)
            .await
            .optional()?
            .map(TryInto::try_into)
            .transpose()
    }
}

async fn register_in_transaction(
    conn: &mut AsyncPgConnection,
    requests: &[&PendingRegistration],
) -> RepoResult<Vec<RegistrationOutcome>> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.request_id).collect();
    let user_ids: Vec<i64> = requests.iter().map(|r| r.user.id.as_i64()).collect();
    let claimed: Vec<Claimed> = diesel::sql_query(CLAIM)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<BigInt>, _>(&user_ids)
        .load(conn)
        .await?;
    let claimed: std::collections::HashSet<Uuid> =
        claimed.into_iter().map(|c| c.request_id).collect();

    // Requests an earlier delivery finished: their final outcome (none, usually).
    let mut finished: HashMap<Uuid, RegistrationRow> = HashMap::new();
    if claimed.len() < ids.len() {
        let rows: Vec<RegistrationRow> = registration_requests::table
            .filter(
                registration_requests::request_id
                    .eq_any(ids.iter().filter(|id| !claimed.contains(id))),
            )
            .select(RegistrationRow::as_select())
            .load(conn)
            .await?;
        finished.extend(rows.into_iter().map(|r| (r.request_id, r)));
    }

    let to_create: Vec<&PendingRegistration> = requests
        .iter()
        .copied()
        .filter(|r| claimed.contains(&r.request_id))
        .collect();
    let new_users: Vec<NewUser> = to_create.iter().map(|r| r.user.clone()).collect();
    let created = insert_users(conn, &new_users).await?;

    let mut failed = FailedColumns::default();
    let mut created_by_request: HashMap<Uuid, RegistrationOutcome> = HashMap::new();
    for (request, result) in to_create.iter().zip(created) {
        let outcome = match result {
            Ok(user) => RegistrationOutcome::Created(user),
            Err(RepoError::Conflict(reason)) => {
                let code = "already_registered";
                failed.push(request.request_id, code, &reason);
                RegistrationOutcome::Refused {
                    code: code.into(),
                    message: reason,
                }
            }
            Err(other) => return Err(other),
        };
        created_by_request.insert(request.request_id, outcome);
    }
    failed.write(conn).await?;

    requests
        .iter()
        .map(|r| {
            if let Some(outcome) = created_by_request.remove(&r.request_id) {
                return Ok(outcome);
            }
            let row = finished.remove(&r.request_id).ok_or_else(|| {
                RepoError::Database(format!(
                    "request {} was neither claimed nor found",
                    r.request_id
                ))
            })?;
            Ok(match (row.status.as_str(), row.user_id) {
                ("completed", Some(user_id)) => {
                    RegistrationOutcome::AlreadyCompleted(UserId::from_i64(user_id))
                }
                _ => RegistrationOutcome::AlreadyFailed {
                    code: row.error_code.unwrap_or_default(),
                    message: row.error_message.unwrap_or_default(),
                },
            })
        })
        .collect()
}

/// The claimed requests whose user could not be created, as the parallel arrays of
/// `RECORD_FAILED`.
#[derive(Default)]
struct FailedColumns {
    request_ids: Vec<Uuid>,
    codes: Vec<&'static str>,
    messages: Vec<String>,
}

impl FailedColumns {
    fn push(&mut self, request_id: Uuid, code: &'static str, message: &str) {
        self.request_ids.push(request_id);
        self.codes.push(code);
        self.messages.push(message.to_owned());
    }

    async fn write(self, conn: &mut AsyncPgConnection) -> RepoResult<()> {
        if self.request_ids.is_empty() {
            return Ok(());
        }
        diesel::sql_query(RECORD_FAILED)
            .bind::<Array<SqlUuid>, _>(self.request_ids)
            .bind::<Array<Text>, _>(self.codes)
            .bind::<Array<Text>, _>(self.messages)
            .execute(conn)
            .await?;
        Ok(())
    }
}
