//! The reward-worker's variables: `waitlist::worker` (consumer), `waitlist::mailer` (email
//! rewards), and:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `REWARD_MAX_ATTEMPTS` | `5` | delivery tries before the reward is `failed` and the event goes to `waitlist.dlq` |
//! | `REWARD_RETRY_BACKOFF` | `1s` | wait before the second try, doubling after each failure… |
//! | `REWARD_RETRY_BACKOFF_MAX` | `1m` | …up to this |
//! | `WEBHOOK_TIMEOUT` | `10s` | how long a webhook receiver may take to connect and answer |
//! | `WEBHOOK_ALLOW_PRIVATE_NETWORKS` | `false` | deliver webhooks to loopback, private and other non-public addresses (local development; see `egress`) |

use std::time::Duration;

use service_runtime::{ConfigError, Env};
use waitlist::MailerConfig;
use waitlist::worker::WorkerConfig;

#[derive(Debug, Clone)]
pub(crate) struct RewardWorkerConfig {
    pub(crate) worker: WorkerConfig,
    pub(crate) mailer: MailerConfig,
    pub(crate) max_attempts: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) webhook_timeout: Duration,
    pub(crate) allow_private_networks: bool,
}

impl RewardWorkerConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            worker: WorkerConfig::from_env(env, "reward-workers", 10)?,
            mailer: MailerConfig::from_env(env)?,
            max_attempts: env.parse("REWARD_MAX_ATTEMPTS", 5u32)?.max(1),
            retry_backoff: env.duration("REWARD_RETRY_BACKOFF", Duration::from_secs(1))?,
            retry_backoff_max: env.duration("REWARD_RETRY_BACKOFF_MAX", Duration::from_secs(60))?,
            webhook_timeout: env.duration("WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            allow_private_networks: env.parse("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_seed_003() {
        let config = RewardWorkerConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.worker.consumer.group_id, "reward-workers");
        assert_eq!(config.worker.consumer.worker_pool_size, 10);
        assert_eq!(config.worker.dlq_topic, "waitlist.dlq");
        assert_eq!(config.max_attempts, 5);
        assert!(
            !config.allow_private_networks,
            "webhooks go to public addresses only"
        );
    }
}
