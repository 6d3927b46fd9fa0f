//! Writes queued registrations to PostgreSQL in batches (seed 000).
//!
//! Consumer group `registration-batcher` on `user.registration`. It starts, connects to PostgreSQL and the broker,
//! serves the operations endpoints and stops cleanly; its message handling arrives with the
//! registration issue.

use std::process::ExitCode;

use service_runtime::ConsumerConfig;

fn main() -> ExitCode {
    service_runtime::run_service("registration-batcher", |ctx| async move {
        let defaults = ConsumerConfig {
            group_id: "registration-batcher".into(),
            topic: "user.registration".into(),
            worker_pool_size: 1,
        };
        let consumer = ConsumerConfig::from_env(&ctx.env, defaults)?;
        tracing::info!(?consumer, "configured");
        ctx.shutdown.cancelled().await;
        Ok(())
    })
}
