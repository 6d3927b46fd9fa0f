//! User activity logs (seed 004) in the daily-partitioned `activity_logs` table: batches stored
//! with one statement, idempotent on the event ID per user (`activity_event_keys`); read back per user, newest first, with a
//! cursor; partitions created ahead and dropped after the retention.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Date, Integer, Jsonb, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use domain::ActivityEvent;

use crate::schema::activity_logs;
use crate::{Database, RepoError, RepoResult};

/// Where a page of results ends: the last row's time and event ID. Opaque to clients (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCursor {
    pub occurred_at: DateTime<Utc>,
    pub event_id: String,
}

impl ActivityCursor {
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "{}|{}",
            self.occurred_at.timestamp_micros(),
            self.event_id
        ))
    }

    /// The cursor `encode` wrote; `None` for anything else (a time outside the years 1 to
    /// 9999 included, which no stored event has).
    pub fn decode(text: &str) -> Option<Self> {
        let decoded = String::from_utf8(hex::decode(text).ok()?).ok()?;
        let (micros, event_id) = decoded.split_once('|')?;
        let occurred_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        let (earliest, latest) = storable_range();
        if occurred_at < earliest || occurred_at > latest || event_id.contains('\0') {
            return None;
        }
        Some(Self {
            occurred_at,
            event_id: event_id.to_owned(),
        })
    }
}

/// The times a query compares with: the years 1 to 9999 (seconds since 1970 of their first and
/// last second), well inside what PostgreSQL handles.
fn storable_range() -> (DateTime<Utc>, DateTime<Utc>) {
    const EARLIEST: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LATEST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let at = |seconds| DateTime::from_timestamp(seconds, 0).expect("within chrono's range");
    (at(EARLIEST), at(LATEST))
}

/// What to read: one user's events, optionally in `[from, to)` and of one type, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    pub user_id: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub activity_type: Option<String>,
    pub limit: usize,
    pub after: Option<ActivityCursor>,
}

/// A page of events and, when there are more, the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityPage {
    pub events: Vec<ActivityEvent>,
    pub next: Option<ActivityCursor>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = activity_logs)]
struct ActivityRow {
    event_id: String,
    user_id: String,
    activity_type: String,
    occurred_at: DateTime<Utc>,
    metadata: serde_json::Value,
    version: String,
}

impl From<ActivityRow> for ActivityEvent {
    fn from(row: ActivityRow) -> Self {
        Self {
            user_id: row.user_id,
            activity_type: row.activity_type,
            timestamp: row.occurred_at,
            metadata: match row.metadata {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            event_id: row.event_id,
            version: row.version,
        }
    }
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Made {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// Activity logs on PostgreSQL. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct ActivityLogs {
    database: Database,
}

impl ActivityLogs {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Creates the daily partitions of `[from, from + days)` that do not exist yet; how many
    /// it created.
    #[tracing::instrument(name = "db.ensure_partitions", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn ensure_partitions(&self, from: NaiveDate, days: u32) -> RepoResult<u32> {
        self.partition_function(
            "SELECT activity_logs_create_partitions($1, $2) AS n",
            from,
            Some(days),
        )
        .await
    }

    /// Drops the daily partitions of days before `day`; how many it dropped.
    #[tracing::instrument(name = "db.drop_partitions_before", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn drop_partitions_before(&self, day: NaiveDate) -> RepoResult<u32> {
        self.partition_function("SELECT activity_logs_drop_partitions($1) AS n", day, None)
            .await
    }

    async fn partition_function(
        &self,
        sql: &str,
        day: NaiveDate,
        days: Option<u32>,
    ) -> RepoResult<u32> {
        let mut conn = self.database.connection().await?;
        let query = diesel::sql_query(sql).bind::<Date, _>(day);
        let made: Made = match days {
            Some(days) => {
                query
                    .bind::<Integer, _>(i32::try_from(days).unwrap_or(i32::MAX))
                    .get_result(&mut *conn)
                    .await?
            }
            None => query.get_result(&mut *conn).await?,
        };
        Ok(u32::try_from(made.n).unwrap_or_default())
    }

    /// Stores a batch with one statement, idempotent on the event ID per user: an event whose
    /// `(user_id, event_id)` is already stored, whatever its time (a replay, a client's retry
    /// that got a new timestamp), is skipped, and so is a repeat within the batch (the first
    /// stays). Returns the events that were new, in input order. Every event's day must have
    /// its partition (`ensure_partitions`).
    ///
    /// # Errors
    /// As the database answers; the statement is all or nothing.
    #[tracing::instrument(name = "db.insert_batch", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn insert_batch(&self, events: &[ActivityEvent]) -> RepoResult<Vec<ActivityEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&ActivityEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let mut conn = self.database.connection().await?;
        // The key row and the event are written together: a key never exists without its event.
        let inserted: Vec<Inserted> = diesel::sql_query(
            "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::text[])
                     WITH ORDINALITY AS t(event_id, user_id, activity_type, occurred_at, metadata, version, ord)
             ), first AS (
                 SELECT DISTINCT ON (user_id, event_id) * FROM input ORDER BY user_id, event_id, ord
             ), keys AS (
                 INSERT INTO activity_event_keys (user_id, event_id, occurred_at)
                 SELECT user_id, event_id, occurred_at FROM first
                 ON CONFLICT DO NOTHING
                 RETURNING user_id, event_id
             )
             INSERT INTO activity_logs (event_id, user_id, activity_type, occurred_at, metadata, version)
             SELECT f.event_id, f.user_id, f.activity_type, f.occurred_at, f.metadata, f.version
             FROM first f JOIN keys k USING (user_id, event_id)
             ON CONFLICT DO NOTHING
             RETURNING user_id, event_id",
        )
        .bind::<Array<Text>, _>(column(|e| e.event_id.clone()))
        .bind::<Array<Text>, _>(column(|e| e.user_id.clone()))
        .bind::<Array<Text>, _>(column(|e| e.activity_type.clone()))
        .bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.timestamp).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(
            events
                .iter()
                .map(|e| serde_json::Value::Object(e.metadata.clone()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(column(|e| e.version.clone()))
        .load(&mut *conn)
        .await?;
        let mut new: std::collections::HashSet<(String, String)> = inserted
            .into_iter()
            .map(|row| (row.user_id, row.event_id))
            .collect();
        Ok(events
            .iter()
            .filter(|e| new.remove(&(e.user_id.clone(), e.event_id.clone())))
            .cloned()
            .collect())
    }

    /// Failed logins from `ip` since `since` (the analytics rule on repeated failures).
    #[tracing::instrument(name = "db.failed_logins_from_ip", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn failed_logins_from_ip(&self, ip: &str, since: DateTime<Utc>) -> RepoResult<i64> {
        let mut conn = self.database.connection().await?;
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM activity_logs
             WHERE activity_type = 'login_failed' AND metadata->>'ipAddress' = $1 AND occurred_at >= $2",
        )
        .bind::<Text, _>(ip)
        .bind::<Timestamptz, _>(since)
        .get_result(&mut *conn)
        .await?;
        Ok(count.n)
    }

    /// Distinct IPs `user_id` logged in from since `since`, not counting the events `except`
    /// (the analytics rule on logins from many IPs).
    #[tracing::instrument(name = "db.login_ips_of_user", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn login_ips_of_user(
        &self,
        user_id: &str,
        since: DateTime<Utc>,
        except: &[String],
    ) -> RepoResult<i64> {
        let mut conn = self.database.connection().await?;
        let count: Count = diesel::sql_query(
            "SELECT count(DISTINCT metadata->>'ipAddress') AS n FROM activity_logs
             WHERE user_id = $1 AND activity_type = 'login' AND occurred_at >= $2
               AND metadata ? 'ipAddress' AND NOT (event_id = ANY($3))",
        )
        .bind::<Text, _>(user_id)
        .bind::<Timestamptz, _>(since)
        .bind::<Array<Text>, _>(except)
        .get_result(&mut *conn)
        .await?;
        Ok(count.n)
    }

    /// One page of a user's events, newest first (ties by event ID, descending). Bounds
    /// outside the years 1 to 9999 (PostgreSQL cannot compare with times before 4713 BC) are
    /// taken as what they mean: a `from` before year 1 or a `to` after 9999 bounds nothing; a
    /// `from` after 9999 or a `to` before year 1 leaves nothing.
    #[tracing::instrument(name = "db.list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn list(&self, query: &ActivityQuery) -> RepoResult<ActivityPage> {
        if query.limit == 0 {
            return Err(RepoError::InvalidInput("limit must be at least 1".into()));
        }
        let (earliest, latest) = storable_range();
        let nothing = ActivityPage {
            events: Vec::new(),
            next: None,
        };
        if query.from.is_some_and(|from| from > latest) || query.to.is_some_and(|to| to < earliest)
        {
            return Ok(nothing);
        }
        let from = query.from.filter(|from| *from >= earliest);
        let to = query.to.filter(|to| *to <= latest);
        let mut sql = activity_logs::table
            .filter(activity_logs::user_id.eq(&query.user_id))
            .select(ActivityRow::as_select())
            .order((
                activity_logs::occurred_at.desc(),
                activity_logs::event_id.desc(),
            ))
            .limit(
                i64::try_from(query.limit)
                    .unwrap_or(i64::MAX)
                    .saturating_add(1),
            )
            .into_boxed();
        if let Some(from) = from {
            sql = sql.filter(activity_logs::occurred_at.ge(from));
        }
        if let Some(to) = to {
            sql = sql.filter(activity_logs::occurred_at.lt(to));
        }
        if let Some(activity_type) = &query.activity_type {
            sql = sql.filter(activity_logs::activity_type.eq(activity_type.clone()));
        }
        if let Some(after) = &query.after {
            sql = sql.filter(
                activity_logs::occurred_at
                    .lt(after.occurred_at)
                    .or(activity_logs::occurred_at
                        .eq(after.occurred_at)
                        .and(activity_logs::event_id.lt(after.event_id.clone()))),
            );
        }
        let mut conn = self.database.connection().await?;
        let mut rows: Vec<ActivityRow> = sql.load(&mut *conn).await?;
        let more = rows.len() > query.limit;
        rows.truncate(query.limit);
        let next = more.then(|| {
            let last = rows.last().expect("a full page has a last row");
            ActivityCursor {
                occurred_at: last.occurred_at,
                event_id: last.event_id.clone(),
            }
        });
        Ok(ActivityPage {
            events: rows.into_iter().map(Into::into).collect(),
            next,
        })
    }
}
