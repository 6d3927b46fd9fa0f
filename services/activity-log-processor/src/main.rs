//! Stores user activity logs in PostgreSQL, dead-lettering bad ones (seed 004).
//!
//! Consumer group `user-activity-processor` on `user-activity-logs`. It starts, connects to PostgreSQL and the broker,
//! serves the operations endpoints and stops cleanly; its message handling arrives with the
//! activity log issue.

use std::process::ExitCode;

use service_runtime::ConsumerConfig;

fn main() -> ExitCode {
    service_runtime::run_service("activity-log-processor", |ctx| async move {
        let defaults = ConsumerConfig {
            group_id: "user-activity-processor".into(),
            topic: "user-activity-logs".into(),
            worker_pool_size: 1,
        };
        let consumer = ConsumerConfig::from_env(&ctx.env, defaults)?;
        tracing::info!(?consumer, "configured");
        ctx.shutdown.cancelled().await;
        Ok(())
    })
}
