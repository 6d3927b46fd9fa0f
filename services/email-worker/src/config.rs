//! The email-worker's variables: `waitlist::worker` (consumer), `waitlist::mailer` (sending),
//! and:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `VERIFICATION_SECRET` | required | signs verification tokens (HMAC-SHA256), at least 32 bytes, not a placeholder; the gateway's must be the same |
//! | `EMAIL_MAX_ATTEMPTS` | `8` | tries per event (backing off from 0.5 s to 1 min) before `waitlist.dlq` |

use secrecy::SecretString;
use service_runtime::{ConfigError, Env};
use waitlist::MailerConfig;
use waitlist::worker::WorkerConfig;

#[derive(Debug, Clone)]
pub(crate) struct EmailWorkerConfig {
    pub(crate) worker: WorkerConfig,
    pub(crate) mailer: MailerConfig,
    pub(crate) verification_secret: SecretString,
    pub(crate) max_attempts: u32,
}

impl EmailWorkerConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            worker: WorkerConfig::from_env(env, "email-workers", 10)?,
            mailer: MailerConfig::from_env(env)?,
            verification_secret: env.required_signing_key("VERIFICATION_SECRET")?,
            max_attempts: env.parse("EMAIL_MAX_ATTEMPTS", 8u32)?.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = "9c1e5a7b3d2f4e6a8b0c1d3e5f7a9b2c4d6e8f0a";

    #[test]
    fn defaults_follow_seed_003() {
        let config =
            EmailWorkerConfig::from_env(&Env::from_pairs([("VERIFICATION_SECRET", TEST_KEY)]))
                .unwrap();
        assert_eq!(config.worker.consumer.group_id, "email-workers");
        assert_eq!(config.worker.consumer.topic, "domain-events");
        assert_eq!(config.worker.consumer.worker_pool_size, 10);
        assert_eq!(config.worker.dlq_topic, "waitlist.dlq");
        assert!(config.mailer.smtp_url.is_none());
    }
}
