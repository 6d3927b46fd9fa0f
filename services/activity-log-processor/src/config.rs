//! The processor's own variables (the shared ones are in `service_runtime::config`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ACTIVITY_DLQ_TOPIC` | `user-activity-logs-dlq` | where invalid and failing events go (seed 004's format) |
//! | `BATCH_MAX_SIZE` | `500` | events per insert statement at most |
//! | `BATCH_LINGER` | `10ms` | flush this long after a batch's first event when no batch is being written; one filling during a write goes as soon as that write ends |
//! | `BATCH_MAX_WAIT` | `1s` | flush this long after a batch's first event at the latest |
//! | `BATCH_IDLE_TIMEOUT` | `200ms` | flush when no event came for this long |
//! | `ACTIVITY_RETENTION` | `30d` | partitions older than this are dropped; older events are refused |
//! | `ACTIVITY_PARTITIONS_AHEAD` | `7` | daily partitions kept ready ahead of today |
//! | `PARTITION_MAINTENANCE_INTERVAL` | `1h` | how often partitions are created and dropped |
//! | `ANALYTICS_TOPIC` | `user-activity-analytics` | where analytics rule matches go |
//! | `ANALYTICS_WINDOW` | `5m` | the rules' time window |
//! | `ANALYTICS_FAILED_LOGINS` | `5` | failed logins from one IP in the window that raise an alert |
//! | `ANALYTICS_LOGIN_IPS` | `3` | distinct login IPs of one user in the window that raise an alert |

use std::time::Duration;

use events::BatchPolicy;

use crate::analytics::AnalyticsRules;
use service_runtime::{ConfigError, ConsumerConfig, Env};

#[derive(Debug, Clone)]
pub(crate) struct ProcessorConfig {
    pub(crate) consumer: ConsumerConfig,
    pub(crate) dlq_topic: String,
    pub(crate) batch: BatchPolicy,
    pub(crate) retention: Duration,
    pub(crate) partitions_ahead: u32,
    pub(crate) maintenance_interval: Duration,
    pub(crate) analytics: AnalyticsRules,
}

impl ProcessorConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            consumer: ConsumerConfig::from_env(
                env,
                ConsumerConfig {
                    group_id: "user-activity-processor".into(),
                    topic: "user-activity-logs".into(),
                    worker_pool_size: 1,
                },
            )?,
            dlq_topic: env.string("ACTIVITY_DLQ_TOPIC", "user-activity-logs-dlq"),
            batch: BatchPolicy {
                max_messages: env.parse("BATCH_MAX_SIZE", 500usize)?.max(1),
                linger: env.duration("BATCH_LINGER", Duration::from_millis(10))?,
                max_wait: env.duration("BATCH_MAX_WAIT", Duration::from_secs(1))?,
                idle: env.duration("BATCH_IDLE_TIMEOUT", Duration::from_millis(200))?,
            },
            retention: env.duration("ACTIVITY_RETENTION", Duration::from_secs(30 * 24 * 3600))?,
            partitions_ahead: env.parse("ACTIVITY_PARTITIONS_AHEAD", 7u32)?,
            maintenance_interval: env
                .duration("PARTITION_MAINTENANCE_INTERVAL", Duration::from_secs(3600))?,
            analytics: AnalyticsRules {
                topic: env.string("ANALYTICS_TOPIC", "user-activity-analytics"),
                window: env.duration("ANALYTICS_WINDOW", Duration::from_secs(300))?,
                failed_logins: env.parse("ANALYTICS_FAILED_LOGINS", 5i64)?.max(1),
                login_ips: env.parse("ANALYTICS_LOGIN_IPS", 3i64)?.max(2),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_seed_004() {
        let config = ProcessorConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.consumer.group_id, "user-activity-processor");
        assert_eq!(config.consumer.topic, "user-activity-logs");
        assert_eq!(config.dlq_topic, "user-activity-logs-dlq");
        assert_eq!(config.retention, Duration::from_secs(30 * 24 * 3600));
    }
}
