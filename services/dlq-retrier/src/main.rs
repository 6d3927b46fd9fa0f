//! Retries failed registrations from the retry queue (seed 000).
//!
//! Consumer group `dlq-retrier` on `user.registration.dlq`: each request is tried again no
//! earlier than `RETRY_DELAY` after it failed, at most `MAX_RETRIES` times (`handler`). Messages
//! that are not registration requests (the batcher dead-letters malformed ones here) go on to
//! `KAFKA_DLQ_TOPIC` with the reason.

mod config;
mod handler;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use events::{Backoff, EventConsumer, RetryPolicy};

use crate::config::RetrierConfig;
use crate::handler::RetryHandler;

fn main() -> ExitCode {
    service_runtime::run_service("dlq-retrier", |ctx| async move {
        let config = RetrierConfig::from_env(&ctx.env)?;
        tracing::info!(?config, "configured");
        let (writer, lease) = registration::start_writer(&ctx, &config.writer).await?;

        let mut settings = ctx.consumer_settings(
            &config.consumer.group_id,
            &[config.consumer.topic.as_str()],
            &ctx.config.kafka.producer.dlq_topic,
        )?;
        settings.worker_pool_size = config.consumer.worker_pool_size;
        settings.retry = RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        };
        let consumer = EventConsumer::new(&ctx.config.kafka, settings, ctx.producer.clone())
            .context("joining the consumer group")?;
        ctx.watch_consumer(&consumer)?;
        let handler = RetryHandler {
            writer,
            retry_delay: config.retry_delay,
            max_retries: config.max_retries,
        };
        ctx.mark_started();

        lease
            .consume_until_stopped(&ctx.shutdown, |stop| consumer.run(handler, stop))
            .await
    })
}
