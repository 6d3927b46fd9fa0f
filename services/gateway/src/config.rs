//! The gateway's own variables (the shared ones are in `service_runtime::config`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR` | `0.0.0.0:8080` | where the API listens |
//! | `HTTP_WORKERS` | the number of cores | actix-web worker threads |
//! | `MAX_BODY_BYTES` | `1048576` | largest request body |
//! | `BODY_READ_TIMEOUT` | `10s` | how long a request body may take to arrive; slower is 408 |
//! | `REGISTRATION_TOPIC` | `user.registration` | where async registrations are queued |
//! | `REGISTRATION_PENDING_WINDOW` | `7d` | how long an accepted request without an outcome reads as `processing` (the topic's retention) |
//! | `BULK_MAX_USERS` | `1000` | most users per bulk registration |
//! | `PASSWORD_MIN_LENGTH`, `PASSWORD_MAX_LENGTH` | `8`, `128` | password length bounds, in characters |
//! | `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM` | `19456`, `2`, `1` | Argon2id cost (OWASP) |
//! | `HASH_WORKERS` | the CPUs the container may use, fewer if a quarter of its memory limit cannot hold that many Argon2 buffers | hashes computed at once |
//! | `HASH_QUEUE_CAPACITY` | `2000` | hashes waiting or running before requests get 503 |
//! | `HASH_BULK_SHARE` | `50` | percent (1 to 100) of the queue places and of the workers bulk registrations may take; `BULK_MAX_USERS` must fit in its share of the queue |
//! | `ACTIVITY_TOPIC` | `user-activity-logs` | where activity events are published |
//! | `ACTIVITY_BATCH_MAX` | `100` | most events per batch request |
//! | `ACTIVITY_RETENTION` | `30d` | events older than this are refused (the processor's retention) |
//! | `DOMAIN_EVENTS_TOPIC` | `domain-events` | where the waitlist's domain events are relayed |
//! | `VERIFICATION_SECRET` | required | signs email-verification tokens (HMAC-SHA256), at least 32 bytes, not a placeholder; the email-worker's must be the same |
//! | `WAITLIST_PUBLIC_URL` | `http://127.0.0.1:3000` | the waitlist's web pages, for referral links |
//! | `SIGNUP_IP_LIMIT` | `10` | signups from one IP per window above which referrals are flagged |
//! | `SIGNUP_IP_WINDOW` | `1h` | the window of that rule |
//! | `TRUSTED_PROXIES` | empty | comma-separated networks (CIDR) or addresses of the reverse proxies in front of the gateway; from a peer among them the client IP is the right-most `X-Forwarded-For` entry not among them (see `client_ip`). Empty: the header is ignored |
//! | `WEBHOOK_ALLOW_PRIVATE_NETWORKS` | `false` | accept reward webhook URLs whose host is a loopback, private or other non-public IP (local development; the reward-worker has the same setting) |
//! | `API_EVENTS_TOPIC`, `ERROR_EVENTS_TOPIC` | `api-events`, `error-events` | where `api.request` and `api.error` events go |
//! | `API_EVENTS_SAMPLE_RATE` | `1` | the share of requests published as `api.request` to `api-events`, 0 to 1 |
//! | `API_ERROR_EVENTS_FOR_CLIENT_ERRORS` | `true` | also publish `api.error` for 4xx answers other than validation errors (5xx always) |
//! | `API_EVENTS_BUFFER` | `10000` | API events waiting for the broker; more are dropped and counted |
//! | `OUTBOX_BATCH` | `500` | outbox events relayed per round |
//! | `OUTBOX_POLL_INTERVAL` | `500ms` | how often the relay looks for events written elsewhere |
//! | `SNOWFLAKE_NODE_ID` | leased | user IDs of `register-sync` (see `service_runtime::snowflake_ids`) |
//!
//! Accounts (sign-in, sessions, throttling, deletion) have theirs in `accounts::AccountsConfig`,
//! the OAuth2 provider in `oauth2::OAuth2Config`, the rate limits (`RATE_LIMIT_*`) in
//! `access::RateLimits`.

use std::net::SocketAddr;
use std::time::Duration;

use domain::waitlist::FraudRules;
use secrecy::SecretString;
use service_runtime::{ConfigError, Env};
use waitlist::RelayConfig;

use crate::accounts::AccountsConfig;
use crate::client_ip::TrustedProxies;
use crate::hashing::HashParams;
use crate::oauth2::OAuth2Config;
use crate::observe::ApiEventsConfig;
use crate::registration::validation::PasswordRules;

#[derive(Debug, Clone)]
pub(crate) struct GatewayConfig {
    pub(crate) http_addr: SocketAddr,
    pub(crate) http_workers: usize,
    /// How long requests in flight may take once shutdown starts; under `SHUTDOWN_TIMEOUT`.
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) registration_topic: String,
    pub(crate) pending_window: Duration,
    pub(crate) bulk_max_users: usize,
    pub(crate) password_rules: PasswordRules,
    pub(crate) hash_params: HashParams,
    pub(crate) hash_workers: usize,
    pub(crate) hash_queue_capacity: usize,
    pub(crate) hash_bulk_share: u8,
    pub(crate) rate_limits: crate::access::RateLimits,
    pub(crate) activity_topic: String,
    pub(crate) activity_batch_max: usize,
    pub(crate) activity_retention: Duration,
    pub(crate) domain_events_topic: String,
    pub(crate) verification_secret: SecretString,
    pub(crate) public_url: String,
    pub(crate) fraud: FraudRules,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) allow_private_webhooks: bool,
    pub(crate) relay: RelayConfig,
    pub(crate) api_events: ApiEventsConfig,
    pub(crate) accounts: AccountsConfig,
    pub(crate) oauth2: OAuth2Config,
    /// Providers users may sign in with (`federation`).
    pub(crate) identity_providers: Vec<crate::federation::ProviderConfig>,
}

impl GatewayConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // The standard library counts the CPUs of the container's quota (cgroup `cpu.max`),
        // not the node's cores.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let password = PasswordRules::default();
        let hash = HashParams {
            memory_kib: env.parse("ARGON2_MEMORY_KIB", HashParams::default().memory_kib)?,
            iterations: env.parse("ARGON2_ITERATIONS", HashParams::default().iterations)?,
            parallelism: env.parse("ARGON2_PARALLELISM", HashParams::default().parallelism)?,
        };
        let hash_workers = default_hash_workers(cores, container_memory_limit(), hash.memory_kib);
        let config = Self {
            http_addr: env.parse("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            http_workers: env.parse("HTTP_WORKERS", cores)?.max(1),
            shutdown_grace: Duration::from_secs(5),
            max_body_bytes: env.parse("MAX_BODY_BYTES", 1024 * 1024)?,
            body_read_timeout: env.duration("BODY_READ_TIMEOUT", Duration::from_secs(10))?,
            registration_topic: env.string("REGISTRATION_TOPIC", "user.registration"),
            pending_window: env.duration(
                "REGISTRATION_PENDING_WINDOW",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            bulk_max_users: env.parse("BULK_MAX_USERS", 1000)?.max(1),
            password_rules: PasswordRules {
                min_length: env.parse("PASSWORD_MIN_LENGTH", password.min_length)?,
                max_length: env.parse("PASSWORD_MAX_LENGTH", password.max_length)?,
            },
            hash_params: hash,
            hash_workers: env.parse("HASH_WORKERS", hash_workers)?.max(1),
            hash_queue_capacity: env.parse("HASH_QUEUE_CAPACITY", 2000)?.max(1),
            hash_bulk_share: env.parse("HASH_BULK_SHARE", 50u8)?.clamp(1, 100),
            rate_limits: crate::access::RateLimits::from_env(env)?,
            activity_topic: env.string("ACTIVITY_TOPIC", "user-activity-logs"),
            activity_batch_max: env.parse("ACTIVITY_BATCH_MAX", 100)?.max(1),
            activity_retention: env
                .duration("ACTIVITY_RETENTION", Duration::from_secs(30 * 24 * 3600))?,
            domain_events_topic: env.string("DOMAIN_EVENTS_TOPIC", "domain-events"),
            verification_secret: env.required_signing_key("VERIFICATION_SECRET")?,
            public_url: waitlist::links::public_url_from_env(env),
            fraud: FraudRules {
                max_signups_per_ip: env.parse("SIGNUP_IP_LIMIT", 10i64)?.max(1),
                ip_window: env.duration("SIGNUP_IP_WINDOW", Duration::from_secs(3600))?,
            },
            trusted_proxies: TrustedProxies::parse(&env.string("TRUSTED_PROXIES", "")).map_err(
                |reason| ConfigError::Invalid {
                    name: "TRUSTED_PROXIES".into(),
                    value: env.string("TRUSTED_PROXIES", ""),
                    reason,
                },
            )?,
            allow_private_webhooks: env.parse("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
            relay: RelayConfig {
                batch: env.parse("OUTBOX_BATCH", 500i64)?.max(1),
                poll_interval: env.duration("OUTBOX_POLL_INTERVAL", Duration::from_millis(500))?,
            },
            api_events: ApiEventsConfig {
                requests_topic: env.string("API_EVENTS_TOPIC", "api-events"),
                errors_topic: env.string("ERROR_EVENTS_TOPIC", "error-events"),
                sample_rate: env.parse("API_EVENTS_SAMPLE_RATE", 1.0)?,
                buffer: env.parse("API_EVENTS_BUFFER", 10_000usize)?.max(1),
                client_errors: env.parse("API_ERROR_EVENTS_FOR_CLIENT_ERRORS", true)?,
            },
            accounts: AccountsConfig::from_env(env)?,
            oauth2: OAuth2Config::from_env(env)?,
            identity_providers: crate::federation::providers_from_env(env)?,
        };
        if !(0.0..=1.0).contains(&config.api_events.sample_rate) {
            return Err(ConfigError::Invalid {
                name: "API_EVENTS_SAMPLE_RATE".into(),
                value: config.api_events.sample_rate.to_string(),
                reason: "must be 0 to 1".into(),
            });
        }
        if let Some(value) = env.optional("TRUST_X_FORWARDED_FOR") {
            // The old switch believed the header's left-most entry, which the client writes.
            return Err(ConfigError::Invalid {
                name: "TRUST_X_FORWARDED_FOR".into(),
                value,
                reason: "is no longer read: list your proxies' networks in TRUSTED_PROXIES".into(),
            });
        }
        if config.password_rules.min_length > config.password_rules.max_length {
            return Err(ConfigError::Invalid {
                name: "PASSWORD_MIN_LENGTH".into(),
                value: config.password_rules.min_length.to_string(),
                reason: "is larger than PASSWORD_MAX_LENGTH".into(),
            });
        }
        if config.bulk_max_users
            > (config.hash_queue_capacity * usize::from(config.hash_bulk_share) / 100).max(1)
        {
            return Err(ConfigError::Invalid {
                name: "BULK_MAX_USERS".into(),
                value: config.bulk_max_users.to_string(),
                reason: "is larger than the bulk lane (HASH_BULK_SHARE percent of HASH_QUEUE_CAPACITY), so a full bulk request could never be hashed".into(),
            });
        }
        Ok(config)
    }
}

/// Hashes at once by default: one per CPU, but no more than a quarter of the memory limit
/// (bytes) holds at `memory_kib` KiB each, and at least one.
fn default_hash_workers(cores: usize, memory_limit: Option<u64>, memory_kib: u32) -> usize {
    let by_memory = memory_limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit / 4 / (u64::from(memory_kib.max(1)) * 1024)).unwrap_or(usize::MAX)
    });
    cores.min(by_memory).max(1)
}

/// The memory limit of the container (cgroup v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), in bytes; `None` when there is none.
fn container_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?
        .trim()
        .parse::<u64>()
        .ok()?;
    // cgroup v1 writes "no limit" as a number near `i64::MAX`.
    (limit < 1 << 60).then_some(limit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_workers_fit_the_containers_cpus_and_memory() {
        use super::default_hash_workers;
        let mib = 1024 * 1024;
        assert_eq!(default_hash_workers(4, None, 19456), 4);
        // 512 MiB: a quarter holds six 19 MiB buffers.
        assert_eq!(default_hash_workers(16, Some(512 * mib), 19456), 6);
        assert_eq!(default_hash_workers(2, Some(512 * mib), 19456), 2);
        assert_eq!(default_hash_workers(8, Some(32 * mib), 19456), 1);
    }

    use super::*;

    const TEST_KEY: &str = "9c1e5a7b3d2f4e6a8b0c1d3e5f7a9b2c4d6e8f0a";

    #[test]
    fn defaults_follow_the_issue_and_owasp() {
        let config = GatewayConfig::from_env(&Env::from_pairs([
            ("VERIFICATION_SECRET", TEST_KEY),
            ("OAUTH2_KEY_SECRET", TEST_KEY),
        ]))
        .unwrap();
        assert_eq!(config.bulk_max_users, 1000);
        assert_eq!(config.registration_topic, "user.registration");
        assert_eq!(config.hash_params, HashParams::default());
        assert_eq!(config.password_rules, PasswordRules::default());
        assert_eq!(config.domain_events_topic, "domain-events");
        assert_eq!(config.fraud.max_signups_per_ip, 10);
        assert!(!config.allow_private_webhooks);
        assert_eq!(config.oauth2.issuer, "http://127.0.0.1:8080");
        assert_eq!(config.oauth2.code_ttl, Duration::from_secs(60));
    }

    #[test]
    fn the_oauth2_key_secret_is_required_and_the_issuer_an_http_url() {
        let env = Env::from_pairs([("VERIFICATION_SECRET", TEST_KEY)]);
        let error = GatewayConfig::from_env(&env).unwrap_err().to_string();
        assert!(error.contains("OAUTH2_KEY_SECRET"), "{error}");
        for issuer in [
            "ftp://id.example.com",
            "https://id.example.com/?a=b",
            "https://id.example.com/auth",
            "not a url",
        ] {
            let env = Env::from_pairs([
                ("VERIFICATION_SECRET", TEST_KEY),
                ("OAUTH2_KEY_SECRET", TEST_KEY),
                ("OAUTH2_ISSUER", issuer),
            ]);
            let error = GatewayConfig::from_env(&env).unwrap_err().to_string();
            assert!(error.contains("OAUTH2_ISSUER"), "{error}");
        }
        let env = Env::from_pairs([
            ("VERIFICATION_SECRET", TEST_KEY),
            ("OAUTH2_KEY_SECRET", TEST_KEY),
            ("OAUTH2_ISSUER", "https://id.example.com/"),
        ]);
        let config = GatewayConfig::from_env(&env).unwrap();
        assert_eq!(config.oauth2.issuer, "https://id.example.com");
    }

    #[test]
    fn the_verification_secret_is_required_and_never_a_placeholder() {
        assert!(GatewayConfig::from_env(&Env::from_pairs::<&str, &str>([])).is_err());
        // What the Kubernetes base and docker-compose used to ship.
        for placeholder in ["change-me", "local-development-only"] {
            let env = Env::from_pairs([("VERIFICATION_SECRET", placeholder)]);
            let error = GatewayConfig::from_env(&env).unwrap_err().to_string();
            assert!(error.contains("VERIFICATION_SECRET"), "{error}");
        }
    }

    #[test]
    fn trusted_proxies_are_networks_and_the_old_switch_is_refused() {
        let env = Env::from_pairs([
            ("VERIFICATION_SECRET", TEST_KEY),
            ("OAUTH2_KEY_SECRET", TEST_KEY),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        ]);
        let config = GatewayConfig::from_env(&env).unwrap();
        assert_eq!(
            config.trusted_proxies,
            TrustedProxies::parse("10.0.0.0/8,127.0.0.1/32").unwrap()
        );
        for (name, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("TRUST_X_FORWARDED_FOR", "true"),
        ] {
            let env = Env::from_pairs([
                ("VERIFICATION_SECRET", TEST_KEY),
                ("OAUTH2_KEY_SECRET", TEST_KEY),
                (name, value),
            ]);
            let error = GatewayConfig::from_env(&env).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn inconsistent_password_bounds_are_refused() {
        let env = Env::from_pairs([
            ("VERIFICATION_SECRET", TEST_KEY),
            ("PASSWORD_MIN_LENGTH", "20"),
            ("PASSWORD_MAX_LENGTH", "10"),
        ]);
        assert!(GatewayConfig::from_env(&env).is_err());
    }
}
