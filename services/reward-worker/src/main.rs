//! Delivers the rewards participants earn (seed 003).
//!
//! Consumer group `reward-workers` on `domain-events`, `KAFKA_WORKER_POOL_SIZE` (10) handlers.
//! On `reward.earned` it reads the reward's delivery record (created `pending` with the event)
//! and delivers by email or webhook (`delivery`); the record ends `delivered`, or `failed` after
//! `REWARD_MAX_ATTEMPTS` tries or a permanent refusal, when the event also goes to
//! `waitlist.dlq` with the reason. A delivered or failed reward is never tried again, so a
//! replayed event delivers nothing twice; only its dead letter redriven by an operator
//! (`platform-admin dlq redrive`, the record's `redrive_count` header) reopens a failed one. Webhooks go to public addresses only (`egress`).

mod config;
mod delivery;
mod egress;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use events::{Backoff, RetryPolicy};
use repo::Waitlist;
use waitlist::{Mailer, Templates};

use crate::config::RewardWorkerConfig;
use crate::delivery::RewardHandler;

fn main() -> ExitCode {
    service_runtime::run_service("reward-worker", |ctx| async move {
        let config = RewardWorkerConfig::from_env(&ctx.env)?;
        let mailer = Mailer::new(&config.mailer).context("setting up email sending")?;
        tracing::info!(?config, transport = mailer.kind(), "configured");
        let handler = RewardHandler {
            waitlist: Waitlist::new(ctx.database.clone()),
            mailer,
            templates: Templates::load(config.mailer.templates_dir.as_deref())
                .context("loading the email templates")?,
            http: webhook_client(&config).context("building the HTTP client")?,
            allow_private_networks: config.allow_private_networks,
            max_attempts: config.max_attempts,
        };
        let retry = RetryPolicy {
            max_attempts: config.max_attempts,
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
        };
        waitlist::worker::consume(&ctx, &config.worker, retry, handler)
            .await
            .context("consuming domain events")
    })
}

/// The webhook client: bounded in time, never following redirects (a redirect could lead to an
/// address the checks refuse), never through a proxy from the environment (`HTTP_PROXY` and
/// the like: the checks would then see the proxy's address, not the receiver's), and resolving
/// host names to public addresses only unless private networks are allowed.
fn webhook_client(config: &RewardWorkerConfig) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(config.webhook_timeout)
        .connect_timeout(config.webhook_timeout)
        .user_agent("waitlist-reward-worker/1")
        .redirect(reqwest::redirect::Policy::none());
    if config.allow_private_networks {
        builder.build()
    } else {
        builder
            .dns_resolver(Arc::new(egress::PublicOnlyResolver))
            .build()
    }
}
