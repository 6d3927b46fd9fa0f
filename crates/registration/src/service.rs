//! Setting a writer up inside a service: the variables both registration services read, and the
//! Snowflake node ID the users' IDs come from.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `REGISTRATION_DLQ_TOPIC` | `user.registration.dlq` | where requests wait for a retry (and malformed messages go) |
//! | `USER_EVENTS_TOPIC` | the router's (`user-events`) | where `user.registered` is published |
//! | `SNOWFLAKE_NODE_ID` | leased from PostgreSQL | see `service_runtime::snowflake_ids` |

use std::future::Future;

use anyhow::Context as _;
use events::EventsError;
use repo::Registrations;
use service_runtime::snowflake_ids::SnowflakeIds;
use service_runtime::{CancellationToken, ConfigError, Env, ServiceContext};

use crate::RegistrationWriter;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    pub retry_topic: String,
    pub user_events_topic: Option<String>,
}

impl WriterConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            retry_topic: env.string("REGISTRATION_DLQ_TOPIC", "user.registration.dlq"),
            user_events_topic: env.optional("USER_EVENTS_TOPIC"),
        })
    }
}

/// The node ID a writer's user IDs come from, and the signal that its lease was lost.
#[derive(Debug)]
pub struct WriterLease {
    ids: SnowflakeIds,
    lost: CancellationToken,
}

impl WriterLease {
    /// Runs the consumer loop `consume` (stopped through the token it is given) until `shutdown`
    /// or until the node ID's lease is lost; then stops it and frees the node ID. Fails if the
    /// lease was lost: the service must not go on generating IDs another process may generate.
    pub async fn consume_until_stopped<F, Fut>(
        self,
        shutdown: &CancellationToken,
        consume: F,
    ) -> anyhow::Result<()>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), EventsError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let consuming = tokio::spawn(consume(stop.clone()));
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.lost.cancelled() => tracing::error!("lost the Snowflake node ID lease; stopping"),
        }
        stop.cancel();
        consuming.await.context("consumer task")??;
        self.ids.stop().await;
        anyhow::ensure!(
            !self.lost.is_cancelled(),
            "lost the Snowflake node ID lease"
        );
        Ok(())
    }
}

/// A writer for the service of `ctx`, with a Snowflake node ID of its own.
pub async fn start_writer(
    ctx: &ServiceContext,
    config: &WriterConfig,
) -> anyhow::Result<(RegistrationWriter, WriterLease)> {
    let lost = CancellationToken::new();
    let ids = SnowflakeIds::start(&ctx.env, &ctx.database, ctx.name, lost.clone())
        .await
        .context("Snowflake node ID")?;
    if let Some(topic) = &config.user_events_topic {
        ctx.producer
            .router()
            .set_topic_mapping("user.registered", topic);
    }
    let writer = RegistrationWriter::new(
        Registrations::new(ctx.database.clone()),
        ctx.producer.clone(),
        ids.generator(),
        ctx.name,
        config.retry_topic.clone(),
    );
    Ok((writer, WriterLease { ids, lost }))
}
