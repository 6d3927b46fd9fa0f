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
use events::{Backoff, ConsumerSettings, EventConsumer, RetryPolicy};
use service_runtime::CancellationToken;

use crate::config::BatcherConfig;
use crate::handler::RegistrationBatches;

fn main() -> ExitCode {
    service_runtime::run_service("registration-batcher", |ctx| async move {
        let config = BatcherConfig::from_env(&ctx.env)?;
        tracing::info!(?config, "configured");
        let lease_lost = CancellationToken::new();
        let (writer, ids) =
            registration::start_writer(&ctx, &config.writer, lease_lost.clone()).await?;

        let mut settings = ConsumerSettings::new(
            &config.consumer.group_id,
            &[config.consumer.topic.as_str()],
            &config.writer.retry_topic,
        );
        settings.max_in_flight = config.batch.max_messages * 2;
        settings.shutdown_timeout = ctx.config.shutdown_timeout;
        // Unexpected failures: a few quick tries. Outages: checked again every 5 s at most.
        settings.retry = RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        };
        let consumer = EventConsumer::new(&ctx.config.kafka, settings, ctx.producer.clone())
            .context("joining the consumer group")?;
        let handler = RegistrationBatches {
            writer,
            transient_attempts: config.transient_attempts,
        };

        let stop = CancellationToken::new();
        let consuming = tokio::spawn(consumer.run_batches(handler, config.batch, stop.clone()));
        tokio::select! {
            () = ctx.shutdown.cancelled() => {}
            () = lease_lost.cancelled() => tracing::error!("lost the Snowflake node ID lease; stopping"),
        }
        stop.cancel();
        consuming.await.context("consumer task")??;
        ids.stop().await;
        anyhow::ensure!(
            !lease_lost.is_cancelled(),
            "lost the Snowflake node ID lease"
        );
        Ok(())
    })
}
