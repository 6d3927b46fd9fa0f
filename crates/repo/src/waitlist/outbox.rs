//! The transactional outbox: events written with the change that caused them, relayed to Kafka
//! afterwards. One relay works at a time (a transaction-level advisory lock), reading rows in id
//! order and deleting those it published, so events go out in the order they were written and
//! none is lost when a relay dies: its rows stay until another relay publishes them (at least
//! once; consumers are idempotent).

use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::waitlist::WaitlistEvent;

use super::{OutboxEncoder, Waitlist};
use crate::{RepoError, RepoResult};

/// The relay's advisory lock, as the arguments of `pg_*advisory*lock`: one key for "the outbox
/// relay" and one for the schema, so deployments that share a database in different schemas
/// (`DATABASE_SCHEMA`) relay independently. The two-key form never meets the one-key locks of
/// the position recalculation.
pub(crate) const RELAY_LOCK_KEYS: &str =
    "hashtext('waitlist outbox relay'), hashtext(current_schema())";

/// An event to publish: the topic, the partition key, the JSON, and the W3C `traceparent` of
/// the work that caused it (the relayed record continues that trace).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub topic: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub traceparent: Option<String>,
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Text, column_name = message_key)]
    pub key: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub traceparent: Option<String>,
}

/// What one relay round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Another relay holds the lock.
    Busy,
    /// Rows read, and how many of them were published and deleted.
    Relayed { read: usize, published: usize },
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

pub(super) async fn insert_outbox(
    conn: &mut AsyncPgConnection,
    events: &[WaitlistEvent],
    encoder: &dyn OutboxEncoder,
) -> Result<(), diesel::result::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let messages: Vec<OutboxMessage> = events.iter().map(|e| encoder.encode(e)).collect();
    sql_query(
        "INSERT INTO outbox_events (topic, message_key, payload, traceparent)
         SELECT t, k, p, tp
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) WITH ORDINALITY AS m(t, k, p, tp, n)
         ORDER BY n",
    )
    .bind::<Array<Text>, _>(messages.iter().map(|m| m.topic.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(messages.iter().map(|m| m.key.clone()).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(messages.iter().map(|m| m.payload.clone()).collect::<Vec<_>>())
    .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(
        messages.into_iter().map(|m| m.traceparent).collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

impl Waitlist {
    /// One relay round: takes the relay lock (or returns `Busy`), reads up to `limit` rows in id
    /// order, hands them to `publish`, which returns the IDs it published, and deletes those,
    /// all in one transaction. Rows not returned stay for the next round.
    pub async fn relay_outbox<F, Fut>(&self, limit: i64, publish: F) -> RepoResult<RelayOutcome>
    where
        F: FnOnce(Vec<OutboxRow>) -> Fut + Send,
        Fut: Future<Output = Vec<i64>> + Send,
    {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async move |conn| {
            let lock: Locked = sql_query(format!(
                "SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEYS}) AS locked"
            ))
            .get_result(conn)
            .await?;
            if !lock.locked {
                return Ok(RelayOutcome::Busy);
            }
            let rows: Vec<OutboxRow> = sql_query(
                "SELECT id, topic, message_key, payload, traceparent FROM outbox_events ORDER BY id LIMIT $1",
            )
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?;
            let read = rows.len();
            if read == 0 {
                return Ok(RelayOutcome::Relayed { read, published: 0 });
            }
            let published = publish(rows).await;
            sql_query("DELETE FROM outbox_events WHERE id = ANY($1)")
                .bind::<Array<BigInt>, _>(&published)
                .execute(conn)
                .await?;
            Ok(RelayOutcome::Relayed {
                read,
                published: published.len(),
            })
        })
        .await
    }
}
