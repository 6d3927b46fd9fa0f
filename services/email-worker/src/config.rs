//! The email-worker's variables: `waitlist::worker` (consumer), `waitlist::mailer` (sending),
//! and:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `VERIFICATION_SECRET` | required | signs verification tokens (HMAC-SHA256), at least 32 bytes, not a placeholder; the gateway's must be the same |
//! | `EMAIL_MAX_ATTEMPTS` | `8` | tries per event (backing off from 0.5 s to 1 min) before `waitlist.dlq` |
//! | `ACCOUNT_EVENTS_TOPIC` | `user-events` | the account events read beside the domain events (`user.registered`, `user.verification_requested`, …) |
//! | `ACCOUNTS_PUBLIC_URL` | `http://127.0.0.1:3000` | the app's pages, for the links in account emails (`/verify-email?token=…`, `/reset-password?token=…`, `/restore-account?token=…`) |
//! | `EMAIL_VERIFICATION_TTL` | `24h` | life of an email-verification link |
//! | `PHONE_CODE_TTL` | `10m` | life of a texted verification code |
//! | `PASSWORD_RESET_TTL` | `1h` | life of a password-reset link |
//!
//! Text messages go through `waitlist::texts` (`SMS_OUTBOX_DIR`).

use std::time::Duration;

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
    pub(crate) accounts: AccountEmailConfig,
}

/// How the account messages are made.
#[derive(Debug, Clone)]
pub(crate) struct AccountEmailConfig {
    pub(crate) topic: String,
    pub(crate) public_url: String,
    pub(crate) email_verification_ttl: Duration,
    pub(crate) phone_code_ttl: Duration,
    pub(crate) password_reset_ttl: Duration,
}

impl EmailWorkerConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            worker: WorkerConfig::from_env(env, "email-workers", 10)?,
            mailer: MailerConfig::from_env(env)?,
            verification_secret: env.required_signing_key("VERIFICATION_SECRET")?,
            max_attempts: env.parse("EMAIL_MAX_ATTEMPTS", 8u32)?.max(1),
            accounts: AccountEmailConfig {
                topic: env.string("ACCOUNT_EVENTS_TOPIC", "user-events"),
                public_url: env
                    .string("ACCOUNTS_PUBLIC_URL", "http://127.0.0.1:3000")
                    .trim_end_matches('/')
                    .to_owned(),
                email_verification_ttl: env
                    .duration("EMAIL_VERIFICATION_TTL", Duration::from_secs(24 * 3600))?,
                phone_code_ttl: env.duration("PHONE_CODE_TTL", Duration::from_secs(600))?,
                password_reset_ttl: env
                    .duration("PASSWORD_RESET_TTL", Duration::from_secs(3600))?,
            },
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
        assert_eq!(config.accounts.topic, "user-events");
        assert_eq!(config.accounts.phone_code_ttl, Duration::from_secs(600));
    }
}
