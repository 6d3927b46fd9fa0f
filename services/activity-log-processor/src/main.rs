//! Stores user activity logs in PostgreSQL, dead-lettering bad ones (seed 004).
//!
//! Consumer group `user-activity-processor` on `user-activity-logs`: batches stored with one
//! insert statement each, idempotent on the event ID, offsets committed after the write
//! (`handler`). Invalid events go to `user-activity-logs-dlq` at once with
//! `error {code, message, timestamp, retryCount}` in the value and `originalTopic`,
//! `originalPartition`, `originalOffset` headers; database failures are retried (3 quick tries,
//! then backing off up to 5 minutes) before the DLQ; while the database is unreachable the
//! processor holds its batch and pauses. A maintenance task keeps daily partitions ready ahead
//! and drops those past the retention. Rule matches go to `user-activity-analytics`
//! (`analytics`).

mod analytics;
mod config;
mod handler;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use events::consumer::dead_letter::DeadLetterFormat;
use events::{Backoff, EventConsumer, RetryPolicy};
use repo::ActivityLogs;
use service_runtime::CancellationToken;

use crate::analytics::Analytics;
use crate::config::ProcessorConfig;
use crate::handler::ActivityBatches;

fn main() -> ExitCode {
    service_runtime::run_service("activity-log-processor", |ctx| async move {
        let config = ProcessorConfig::from_env(&ctx.env)?;
        tracing::info!(?config, "configured");
        let logs = ActivityLogs::new(ctx.database.clone());
        let retention =
            chrono::Duration::from_std(config.retention).context("ACTIVITY_RETENTION")?;

        let mut settings = ctx.consumer_settings(
            &config.consumer.group_id,
            &[config.consumer.topic.as_str()],
            &config.dlq_topic,
        )?;
        settings.dead_letter_format = DeadLetterFormat::ErrorInValue;
        // 100, 200, 400 ms, then doubling up to 5 minutes: 12 tries in all.
        settings.retry = RetryPolicy {
            max_attempts: 12,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(300)),
        };
        let consumer = EventConsumer::new(&ctx.config.kafka, settings, ctx.producer.clone())
            .context("joining the consumer group")?;
        ctx.watch_consumer(&consumer)?;
        let handler = ActivityBatches {
            logs: logs.clone(),
            retention,
            ready_days: Mutex::new(HashSet::new()),
            analytics: Analytics {
                rules: config.analytics.clone(),
                logs: logs.clone(),
                producer: ctx.producer.clone(),
            },
        };

        let stop = CancellationToken::new();
        let maintenance = tokio::spawn(maintain_partitions(logs, config.clone(), stop.clone()));
        let consuming = tokio::spawn(consumer.run_batches(handler, config.batch, stop.clone()));
        ctx.mark_started();
        ctx.shutdown.cancelled().await;
        stop.cancel();
        consuming.await.context("consumer task")??;
        maintenance.await.context("partition maintenance task")?;
        Ok(())
    })
}

/// Creates the daily partitions from yesterday to `ACTIVITY_PARTITIONS_AHEAD` days ahead and
/// drops those past the retention, at start and every `PARTITION_MAINTENANCE_INTERVAL`.
async fn maintain_partitions(logs: ActivityLogs, config: ProcessorConfig, stop: CancellationToken) {
    let retention_days = i64::try_from(config.retention.as_secs() / 86_400).unwrap_or(i64::MAX);
    loop {
        let today = Utc::now().date_naive();
        let created = logs
            .ensure_partitions(today - chrono::Days::new(1), config.partitions_ahead + 2)
            .await;
        let dropped = logs
            .drop_partitions_before(today - chrono::Duration::days(retention_days))
            .await;
        match (created, dropped) {
            (Ok(created), Ok(dropped)) => {
                tracing::info!(created, dropped, "activity log partitions maintained");
            }
            (created, dropped) => {
                tracing::warn!(
                    ?created,
                    ?dropped,
                    "activity log partition maintenance failed; will retry"
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.maintenance_interval) => {}
        }
    }
}
