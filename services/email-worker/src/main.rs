//! Sends the waitlist's emails in reaction to domain events (seed 003).
//!
//! Consumer group `email-workers` on `domain-events`. It starts, connects to PostgreSQL and the broker,
//! serves the operations endpoints and stops cleanly; its message handling arrives with the
//! waitlist issue.

use std::process::ExitCode;

use service_runtime::ConsumerConfig;

fn main() -> ExitCode {
    service_runtime::run_service("email-worker", |ctx| async move {
        let defaults = ConsumerConfig {
            group_id: "email-workers".into(),
            topic: "domain-events".into(),
            worker_pool_size: 10,
        };
        let consumer = ConsumerConfig::from_env(&ctx.env, defaults)?;
        tracing::info!(?consumer, "configured");
        ctx.shutdown.cancelled().await;
        Ok(())
    })
}
