//! The retrier's own variables (shared ones: `service_runtime::config`, the registration ones:
//! `registration::WriterConfig`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `RETRY_DELAY` | `5s` | a request is tried again no earlier than this after it failed |
//! | `MAX_RETRIES` | `3` | tries before a request is marked `failed` for good |

use std::time::Duration;

use registration::WriterConfig;
use service_runtime::{ConfigError, ConsumerConfig, Env};

#[derive(Debug, Clone)]
pub(crate) struct RetrierConfig {
    pub(crate) consumer: ConsumerConfig,
    pub(crate) writer: WriterConfig,
    pub(crate) retry_delay: Duration,
    pub(crate) max_retries: u32,
}

impl RetrierConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            consumer: ConsumerConfig::from_env(
                env,
                ConsumerConfig {
                    group_id: "dlq-retrier".into(),
                    topic: "user.registration.dlq".into(),
                    worker_pool_size: 10,
                },
            )?,
            writer: WriterConfig::from_env(env)?,
            retry_delay: env.duration("RETRY_DELAY", Duration::from_secs(5))?,
            max_retries: env.parse("MAX_RETRIES", 3u32)?.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_seed_000s_and_can_be_overridden() {
        let config = RetrierConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(
            (config.retry_delay, config.max_retries),
            (Duration::from_secs(5), 3)
        );
        assert_eq!(config.consumer.topic, "user.registration.dlq");
        let config = RetrierConfig::from_env(&Env::from_pairs([
            ("RETRY_DELAY", "1s"),
            ("MAX_RETRIES", "5"),
        ]))
        .unwrap();
        assert_eq!(
            (config.retry_delay, config.max_retries),
            (Duration::from_secs(1), 5)
        );
    }
}
