//! Recalculates waitlist positions when referrals verify (seed 003).
//!
//! Consumer group `position-workers` on `domain-events`. It starts, connects to PostgreSQL and the broker,
//! serves the operations endpoints and stops cleanly; its message handling arrives with the
//! waitlist issue.

use std::process::ExitCode;

use service_runtime::ConsumerConfig;

fn main() -> ExitCode {
    service_runtime::run_service("position-worker", |ctx| async move {
        let defaults = ConsumerConfig {
            group_id: "position-workers".into(),
            topic: "domain-events".into(),
            worker_pool_size: 1,
        };
        let consumer = ConsumerConfig::from_env(&ctx.env, defaults)?;
        tracing::info!(?consumer, "configured");
        ctx.shutdown.cancelled().await;
        Ok(())
    })
}
