//! Writes queued registrations to PostgreSQL in batches (seed 000).
//!
//! Consumer group `registration-batcher` on `user.registration`; batches flushed at 1000
//! messages, 5 s or 500 ms idle (`config`), each written with one `register` call (`handler`).
//! Offsets are committed only once each message of a batch is written, refused for good, or
//! queued for retry on `user.registration.dlq`.

mod config;
mod handler;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use events::{Backoff, EventConsumer, RetryPolicy};

use crate::config::BatcherConfig;
use crate::handler::RegistrationBatches;

fn main() -> ExitCode {
    service_runtime::run_service("registration-batcher", |ctx| async move {
        let config = BatcherConfig::from_env(&ctx.env)?;
        tracing::info!(?config, "configured");
        let (writer, lease) = registration::start_writer(&ctx, &config.writer).await?;

        let mut settings = ctx.consumer_settings(
            &config.consumer.group_id,
            &[config.consumer.topic.as_str()],
            &config.writer.retry_topic,
        )?;
        // Unexpected failures: a few quick tries. Outages: checked again every 5 s at most.
        settings.retry = RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        };
        let consumer = EventConsumer::new(&ctx.config.kafka, settings, ctx.producer.clone())
            .context("joining the consumer group")?;
        ctx.watch_consumer(&consumer)?;
        let handler = RegistrationBatches {
            writer,
            group_id: config.consumer.group_id.clone(),
            transient_attempts: config.transient_attempts,
        };
        ctx.mark_started();

        lease
            .consume_until_stopped(&ctx.shutdown, |stop| {
                consumer.run_batches(handler, config.batch, stop)
            })
            .await
    })
}
