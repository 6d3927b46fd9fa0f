//! The batcher's own variables (shared ones: `service_runtime::config`, the registration ones:
//! `registration::WriterConfig`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BATCH_MAX_SIZE` | `1000` | flush at this many messages |
//! | `BATCH_LINGER` | `10ms` | flush this long after a batch's first message when no batch is being written; one filling during a write goes as soon as that write ends (so batches grow with the load) |
//! | `BATCH_MAX_WAIT` | `5s` | flush this long after a batch's first message at the latest |
//! | `BATCH_IDLE_TIMEOUT` | `500ms` | flush when no message came for this long |
//! | `TRANSIENT_RETRY_ATTEMPTS` | `3` | tries of a request hit by a lock or statement timeout before it goes to the retry queue |

use events::BatchPolicy;
use registration::WriterConfig;
use service_runtime::{ConfigError, ConsumerConfig, Env};

#[derive(Debug, Clone)]
pub(crate) struct BatcherConfig {
    pub(crate) consumer: ConsumerConfig,
    pub(crate) batch: BatchPolicy,
    pub(crate) writer: WriterConfig,
    pub(crate) transient_attempts: u32,
}

impl BatcherConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = BatchPolicy::default();
        Ok(Self {
            consumer: ConsumerConfig::from_env(
                env,
                ConsumerConfig {
                    group_id: "registration-batcher".into(),
                    topic: "user.registration".into(),
                    worker_pool_size: 1,
                },
            )?,
            batch: BatchPolicy {
                max_messages: env.parse("BATCH_MAX_SIZE", defaults.max_messages)?.max(1),
                linger: env.duration("BATCH_LINGER", defaults.linger)?,
                max_wait: env.duration("BATCH_MAX_WAIT", defaults.max_wait)?,
                idle: env.duration("BATCH_IDLE_TIMEOUT", defaults.idle)?,
            },
            writer: WriterConfig::from_env(env)?,
            transient_attempts: env.parse("TRANSIENT_RETRY_ATTEMPTS", 3u32)?.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = BatcherConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.batch, BatchPolicy::default());
        assert_eq!(config.consumer.topic, "user.registration");
        assert_eq!(config.writer.retry_topic, "user.registration.dlq");
        assert_eq!(config.transient_attempts, 3);

        let config = BatcherConfig::from_env(&Env::from_pairs([
            ("BATCH_MAX_SIZE", "50"),
            ("BATCH_LINGER", "0s"),
            ("BATCH_MAX_WAIT", "2s"),
            ("BATCH_IDLE_TIMEOUT", "100ms"),
        ]))
        .unwrap();
        assert_eq!(
            config.batch,
            BatchPolicy {
                max_messages: 50,
                linger: Duration::ZERO,
                max_wait: Duration::from_secs(2),
                idle: Duration::from_millis(100),
            }
        );
    }
}
