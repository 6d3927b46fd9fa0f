//! Retries failed registrations from the dead-letter topic (seed 000).
//!
//! Consumer group `dlq-retrier` on `user.registration.dlq`. It starts, connects to PostgreSQL and the broker,
//! serves the operations endpoints and stops cleanly; its message handling arrives with the
//! registration issue.

use std::process::ExitCode;

use service_runtime::ConsumerConfig;

fn main() -> ExitCode {
    service_runtime::run_service("dlq-retrier", |ctx| async move {
        let defaults = ConsumerConfig {
            group_id: "dlq-retrier".into(),
            topic: "user.registration.dlq".into(),
            worker_pool_size: 1,
        };
        let consumer = ConsumerConfig::from_env(&ctx.env, defaults)?;
        tracing::info!(?consumer, "configured");
        ctx.shutdown.cancelled().await;
        Ok(())
    })
}
