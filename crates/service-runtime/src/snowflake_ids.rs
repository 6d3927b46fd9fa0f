//! Where a service's Snowflake IDs come from: `SNOWFLAKE_NODE_ID` when set (a fixed node ID per
//! process, e.g. from a StatefulSet ordinal), otherwise a node ID leased from PostgreSQL, renewed
//! in the background and released on shutdown, so that `kubectl scale` never gives two replicas
//! the same node ID. A database that is unreachable when the lease is first taken delays the
//! start; it does not stop the service.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SNOWFLAKE_NODE_ID` | unset (lease one) | fixed node ID, 0 to 1023 |
//! | `SNOWFLAKE_LEASE_TTL` | `30s` | how long a lease lasts without renewal |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use domain::{NodeId, SnowflakeGenerator, SnowflakeId};
use repo::node_lease::NodeLease;
use repo::{Database, RepoError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Env;

/// The service's ID generator, and the lease behind it if there is one.
#[derive(Debug)]
pub struct SnowflakeIds {
    generator: Arc<IdGenerator>,
    lease: Option<LeaseKeeper>,
}

#[derive(Debug)]
struct LeaseKeeper {
    stop: CancellationToken,
    task: JoinHandle<NodeLease>,
}

impl SnowflakeIds {
    /// Takes `SNOWFLAKE_NODE_ID`, or leases a node ID as `holder`. Should the lease be lost (not
    /// renewed for a whole TTL, or taken over), `on_lost` is cancelled: the service must stop
    /// rather than risk generating IDs another process also generates.
    pub async fn start(
        env: &Env,
        database: &Database,
        holder: &str,
        on_lost: CancellationToken,
    ) -> anyhow::Result<Self> {
        if let Some(node_id) = env.optional("SNOWFLAKE_NODE_ID") {
            let node_id: NodeId = node_id.parse().context("SNOWFLAKE_NODE_ID")?;
            tracing::info!(
                node_id = node_id.get(),
                "Snowflake node ID from SNOWFLAKE_NODE_ID"
            );
            return Ok(Self {
                generator: Arc::new(IdGenerator::new(node_id)),
                lease: None,
            });
        }
        let ttl = env.duration("SNOWFLAKE_LEASE_TTL", Duration::from_secs(30))?;
        let lease = acquire_when_reachable(database, holder, ttl).await?;
        tracing::info!(
            node_id = lease.node_id().get(),
            ?ttl,
            "leased a Snowflake node ID"
        );
        let generator = Arc::new(IdGenerator::new(lease.node_id()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_renewed(
            lease,
            generator.clone(),
            stop.clone(),
            on_lost,
        ));
        Ok(Self {
            generator,
            lease: Some(LeaseKeeper { stop, task }),
        })
    }

    pub fn generator(&self) -> Arc<IdGenerator> {
        self.generator.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.generator.node_id()
    }

    /// Stops renewing and releases the lease, freeing the node ID at once.
    pub async fn stop(self) {
        let Some(keeper) = self.lease else { return };
        keeper.stop.cancel();
        match keeper.task.await {
            Ok(lease) => {
                let node_id = lease.node_id();
                match lease.release().await {
                    Ok(()) => {
                        tracing::info!(node_id = node_id.get(), "released the Snowflake node ID");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not release the Snowflake node ID; it expires on its own");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the lease renewal task failed");
            }
        }
    }
}

/// Snowflake IDs from a node ID, handed out only while that node ID is known to be this
/// process's.
#[derive(Debug)]
pub struct IdGenerator {
    generator: SnowflakeGenerator,
    confirmed: AtomicBool,
}

impl IdGenerator {
    fn new(node_id: NodeId) -> Self {
        Self {
            generator: SnowflakeGenerator::new(node_id),
            confirmed: AtomicBool::new(true),
        }
    }

    /// A new ID, or `None` while the lease is unconfirmed (the database was unreachable for a
    /// whole TTL, so another process may have taken the node ID). Callers treat that as the
    /// database being unavailable: they could not write the ID anyway.
    pub fn generate(&self) -> Option<SnowflakeId> {
        self.confirmed
            .load(Ordering::Acquire)
            .then(|| self.generator.generate())
    }

    pub fn node_id(&self) -> NodeId {
        self.generator.node_id()
    }
}

/// Renews every third of the TTL. A failed renewal is retried at the next tick; once a whole
/// TTL has passed since the last success, IDs are withheld until a renewal succeeds again (the
/// lease is still this process's). When another process holds the lease, it is lost for good.
async fn keep_renewed(
    lease: NodeLease,
    generator: Arc<IdGenerator>,
    stop: CancellationToken,
    on_lost: CancellationToken,
) -> NodeLease {
    let every = lease.ttl() / 3;
    let mut renewed_at = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return lease,
            () = tokio::time::sleep(every) => {}
        }
        match lease.renew().await {
            Ok(()) => {
                renewed_at = Instant::now();
                if !generator.confirmed.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        node_id = lease.node_id().get(),
                        "Snowflake node lease confirmed again; IDs resume"
                    );
                }
            }
            Err(RepoError::Conflict(reason)) => {
                tracing::error!(node_id = lease.node_id().get(), %reason, "Snowflake node lease lost; stopping");
                on_lost.cancel();
                return lease;
            }
            Err(error) if renewed_at.elapsed() >= lease.ttl() => {
                if generator.confirmed.swap(false, Ordering::AcqRel) {
                    tracing::error!(%error, "could not renew the Snowflake node lease for a whole TTL; withholding IDs until it is renewed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not renew the Snowflake node lease; will retry");
            }
        }
    }
}

/// Takes a lease, waiting (with backoff) while PostgreSQL is unreachable: a service that starts
/// during a database outage, or sees one between its readiness check and its lease, waits for
/// the database like every other dependency instead of exiting.
async fn acquire_when_reachable(
    database: &Database,
    holder: &str,
    ttl: Duration,
) -> anyhow::Result<NodeLease> {
    let backoff = events::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match NodeLease::acquire(database, holder, ttl).await {
            Ok(lease) => return Ok(lease),
            Err(error @ (RepoError::Unavailable(_) | RepoError::Transient(_))) => {
                let delay = backoff.delay(attempt);
                tracing::warn!(%error, attempt, delay_ms = delay.as_millis() as u64, "cannot lease a Snowflake node ID yet; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("leasing a Snowflake node ID"),
        }
    }
}
