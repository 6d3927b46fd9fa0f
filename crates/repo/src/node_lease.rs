//! Snowflake node IDs leased from PostgreSQL, so that replicas of a service (scaled by
//! `kubectl scale`, with no stable ordinal) never generate IDs with the same node ID.
//!
//! A lease lasts `ttl` and must be renewed before it runs out (`renew`, every `ttl / 3` is a good
//! rhythm); a process that dies stops renewing, and its node ID becomes free once the lease
//! expires. `release` frees it at once on a clean shutdown. A process whose renewal fails with
//! `Conflict` has lost its lease and must stop generating IDs.

use std::time::Duration;

use diesel::sql_types::{Double, SmallInt, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use domain::NodeId;

use crate::{Database, RepoError, RepoResult};

/// How many times to try when another process takes the free node ID we picked.
const ATTEMPTS: usize = 20;

const ACQUIRE: &str = "
INSERT INTO snowflake_node_leases AS lease (node_id, holder, expires_at)
SELECT n, $1, now() + make_interval(secs => $2)
FROM generate_series(0, 1023) AS n
WHERE NOT EXISTS (
    SELECT 1 FROM snowflake_node_leases taken WHERE taken.node_id = n AND taken.expires_at > now()
)
ORDER BY n
LIMIT 1
ON CONFLICT (node_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE lease.expires_at <= now()
RETURNING node_id";

#[derive(QueryableByName)]
struct Leased {
    #[diesel(sql_type = SmallInt)]
    node_id: i16,
}

/// A node ID held by this process.
#[derive(Debug)]
pub struct NodeLease {
    database: Database,
    node_id: NodeId,
    holder: String,
    ttl: Duration,
}

impl NodeLease {
    /// Leases the lowest free node ID. `holder` names this process in the table (host, pid).
    pub async fn acquire(database: &Database, holder: &str, ttl: Duration) -> RepoResult<Self> {
        let mut conn = database.connection().await?;
        for _ in 0..ATTEMPTS {
            let leased: Option<Leased> = diesel::sql_query(ACQUIRE)
                .bind::<Text, _>(holder)
                .bind::<Double, _>(ttl.as_secs_f64())
                .get_result(&mut conn)
                .await
                .optional()?;
            if let Some(leased) = leased {
                let node_id = u16::try_from(leased.node_id)
                    .ok()
                    .and_then(|id| NodeId::new(id).ok())
                    .ok_or_else(|| {
                        RepoError::Database(format!(
                            "leased node ID {} is out of range",
                            leased.node_id
                        ))
                    })?;
                return Ok(Self {
                    database: database.clone(),
                    node_id,
                    holder: holder.to_owned(),
                    ttl,
                });
            }
            let free: i64 = diesel::sql_query(
                "SELECT count(*) AS node_id FROM generate_series(0, 1023) n WHERE NOT EXISTS \
                 (SELECT 1 FROM snowflake_node_leases l WHERE l.node_id = n AND l.expires_at > now())",
            )
            .get_result::<FreeCount>(&mut conn)
            .await?
            .free;
            if free == 0 {
                return Err(RepoError::Conflict(
                    "all 1024 Snowflake node IDs are leased".into(),
                ));
            }
            // Someone else took the one we picked; try the next free one.
        }
        Err(RepoError::Conflict(
            "could not lease a node ID: too much contention".into(),
        ))
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Extends the lease by `ttl` from now. `Conflict` when it expired and was taken by another
    /// process: this process must stop generating IDs.
    pub async fn renew(&self) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        let renewed = diesel::sql_query(
            "UPDATE snowflake_node_leases SET expires_at = now() + make_interval(secs => $3) \
             WHERE node_id = $1 AND holder = $2",
        )
        .bind::<SmallInt, _>(self.node_id.get() as i16)
        .bind::<Text, _>(&self.holder)
        .bind::<Double, _>(self.ttl.as_secs_f64())
        .execute(&mut conn)
        .await?;
        if renewed == 0 {
            return Err(RepoError::Conflict(format!(
                "the lease on node ID {} was lost",
                self.node_id
            )));
        }
        Ok(())
    }

    /// Frees the node ID at once.
    pub async fn release(self) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        diesel::sql_query("DELETE FROM snowflake_node_leases WHERE node_id = $1 AND holder = $2")
            .bind::<SmallInt, _>(self.node_id.get() as i16)
            .bind::<Text, _>(&self.holder)
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

#[derive(QueryableByName)]
struct FreeCount {
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = node_id)]
    free: i64,
}
