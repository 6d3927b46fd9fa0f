//! Setting a writer up inside a service: the variables both registration services read, and the
//! Snowflake node ID the users' IDs come from.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `REGISTRATION_DLQ_TOPIC` | `user.registration.dlq` | where requests wait for a retry (and malformed messages go) |
//! | `USER_EVENTS_TOPIC` | the router's (`user-events`) | where `user.registered` is published |
//! | `SNOWFLAKE_NODE_ID` | leased from PostgreSQL | see `service_runtime::snowflake_ids` |

use anyhow::Context as _;
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

/// A writer for the service of `ctx`, with a Snowflake node ID of its own. `lease_lost` is
/// cancelled if the node ID's lease is lost; the service must then stop. Stop the returned
/// `SnowflakeIds` on the way out to free the node ID at once.
pub async fn start_writer(
    ctx: &ServiceContext,
    config: &WriterConfig,
    lease_lost: CancellationToken,
) -> anyhow::Result<(RegistrationWriter, SnowflakeIds)> {
    let ids = SnowflakeIds::start(&ctx.env, &ctx.database, ctx.name, lease_lost)
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
    Ok((writer, ids))
}
