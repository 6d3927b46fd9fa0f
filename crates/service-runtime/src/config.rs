//! The configuration every service shares, read from environment variables. This module is the
//! one place that lists them, with their defaults; each service adds its own in its `config.rs`.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | required | `postgres://user:password@host:port/database` |
//! | `DATABASE_POOL_SIZE` | `10` | most connections in the pool |
//! | `DATABASE_POOL_TIMEOUT` | `5s` | wait for a free connection |
//! | `DATABASE_CONNECT_TIMEOUT` | `5s` | opening one connection |
//! | `DATABASE_STATEMENT_TIMEOUT` | `30s` | server-side limit per statement |
//! | `DATABASE_SCHEMA` | unset (`public`) | schema to work in (`search_path`); tests use one per test |
//! | `KAFKA_BROKERS` | required | comma-separated `host:port` list |
//! | `KAFKA_CLIENT_ID` | the service name | client ID shown to the brokers |
//! | `KAFKA_SECURITY_PROTOCOL` | unset (plaintext) | `SASL_SSL`, `SSL`, `SASL_PLAINTEXT` |
//! | `KAFKA_SASL_MECHANISM` | unset | `SCRAM-SHA-512`, `SCRAM-SHA-256`, `PLAIN` |
//! | `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` | unset | SASL credentials |
//! | `KAFKA_SSL_CA_LOCATION` | unset (system store) | CA bundle for the brokers' certificates |
//! | `KAFKA_RETRY_MAX` | `3` | publish retries after the first attempt (retriable failures) |
//! | `KAFKA_RETRY_BACKOFF` | `100ms` | first retry delay; doubles per retry, with jitter |
//! | `KAFKA_RETRY_BACKOFF_MAX` | `10s` | longest retry delay |
//! | `KAFKA_FLUSH_MESSAGES` | `1000` | most messages per producer batch |
//! | `KAFKA_FLUSH_BYTES` | `1048576` | most bytes per producer batch |
//! | `KAFKA_FLUSH_TIMEOUT` | `10ms` | how long a producer batch waits to fill |
//! | `KAFKA_DELIVERY_TIMEOUT` | `30s` | how long one publish attempt may take |
//! | `KAFKA_DLQ_TOPIC` | `events-dlq` | where undeliverable records go |
//! | `OPS_ADDR` | `0.0.0.0:9090` | where `/healthz`, `/readyz` and `/metrics` are served |
//! | `SHUTDOWN_TIMEOUT` | `8s` | how long in-flight work may take after SIGTERM |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//! | `RUST_LOG` | `info` | log filter, e.g. `info,rdkafka=warn` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | unset (no export) | OTLP/HTTP collector, e.g. `http://otel-collector:4318` |
//! | `OTEL_SERVICE_NAME` | the service name | service name on exported spans |
//!
//! Kafka consumers (every service but the gateway) also read, with defaults per service:
//!
//! | variable | meaning |
//! |---|---|
//! | `KAFKA_CONSUMER_GROUP` | the consumer group (`email-workers`, `user-activity-processor`, …) |
//! | `KAFKA_TOPIC` | the topic it consumes (`domain-events`, `user.registration`, …) |
//! | `KAFKA_WORKER_POOL_SIZE` | handlers in flight at once (messages of one key stay in order) |

use std::net::SocketAddr;
use std::time::Duration;

use events::{KafkaConfig, KafkaSecurity, ProducerSettings};
use repo::DatabaseConfig;

use crate::telemetry::{LogFormat, TelemetryConfig};
use crate::{ConfigError, Env};

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub ops_addr: SocketAddr,
    pub shutdown_timeout: Duration,
}

impl CommonConfig {
    pub fn from_env(env: &Env, service_name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            database: database_config(env, service_name)?,
            kafka: kafka_config(env, service_name)?,
            ops_addr: env.parse("OPS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9090)))?,
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(8))?,
        })
    }
}

/// `DATABASE_*` variables.
pub fn database_config(env: &Env, service_name: &str) -> Result<DatabaseConfig, ConfigError> {
    let defaults = DatabaseConfig::new(String::new(), service_name);
    Ok(DatabaseConfig {
        url: env.required_secret("DATABASE_URL")?,
        pool_size: env.parse("DATABASE_POOL_SIZE", defaults.pool_size)?,
        pool_wait_timeout: env.duration("DATABASE_POOL_TIMEOUT", defaults.pool_wait_timeout)?,
        connect_timeout: env.duration("DATABASE_CONNECT_TIMEOUT", defaults.connect_timeout)?,
        statement_timeout: env
            .duration("DATABASE_STATEMENT_TIMEOUT", defaults.statement_timeout)?,
        search_path: env.optional("DATABASE_SCHEMA"),
        ..defaults
    })
}

/// `KAFKA_*` client variables.
pub fn kafka_config(env: &Env, service_name: &str) -> Result<KafkaConfig, ConfigError> {
    let brokers = env.required("KAFKA_BROKERS")?;
    let mut config = KafkaConfig::new(brokers, env.string("KAFKA_CLIENT_ID", service_name));
    if config.brokers.is_empty() {
        return Err(ConfigError::Invalid {
            name: "KAFKA_BROKERS".into(),
            value: env.string("KAFKA_BROKERS", ""),
            reason: "no broker address in the list".into(),
        });
    }
    config.security = KafkaSecurity {
        protocol: env.optional("KAFKA_SECURITY_PROTOCOL"),
        sasl_mechanism: env.optional("KAFKA_SASL_MECHANISM"),
        sasl_username: env.optional("KAFKA_SASL_USERNAME"),
        sasl_password: env.secret("KAFKA_SASL_PASSWORD"),
        ssl_ca_location: env.optional("KAFKA_SSL_CA_LOCATION"),
    };
    let defaults = ProducerSettings::default();
    config.producer = ProducerSettings {
        retry_max: env.parse("KAFKA_RETRY_MAX", defaults.retry_max)?,
        retry_backoff: env.duration("KAFKA_RETRY_BACKOFF", defaults.retry_backoff)?,
        retry_backoff_max: env.duration("KAFKA_RETRY_BACKOFF_MAX", defaults.retry_backoff_max)?,
        flush_messages: env.parse("KAFKA_FLUSH_MESSAGES", defaults.flush_messages)?,
        flush_bytes: env.parse("KAFKA_FLUSH_BYTES", defaults.flush_bytes)?,
        flush_timeout: env.duration("KAFKA_FLUSH_TIMEOUT", defaults.flush_timeout)?,
        delivery_timeout: env.duration("KAFKA_DELIVERY_TIMEOUT", defaults.delivery_timeout)?,
        dlq_topic: env.string("KAFKA_DLQ_TOPIC", &defaults.dlq_topic),
    };
    Ok(config)
}

/// Where a consuming service reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub group_id: String,
    pub topic: String,
    pub worker_pool_size: usize,
}

impl ConsumerConfig {
    /// Reads `KAFKA_CONSUMER_GROUP`, `KAFKA_TOPIC` and `KAFKA_WORKER_POOL_SIZE`, falling back to
    /// the service's documented defaults.
    pub fn from_env(env: &Env, defaults: ConsumerConfig) -> Result<Self, ConfigError> {
        let worker_pool_size = env.parse("KAFKA_WORKER_POOL_SIZE", defaults.worker_pool_size)?;
        if worker_pool_size == 0 {
            return Err(ConfigError::Invalid {
                name: "KAFKA_WORKER_POOL_SIZE".into(),
                value: "0".into(),
                reason: "at least one worker is needed".into(),
            });
        }
        Ok(Self {
            group_id: env
                .optional("KAFKA_CONSUMER_GROUP")
                .unwrap_or(defaults.group_id),
            topic: env.optional("KAFKA_TOPIC").unwrap_or(defaults.topic),
            worker_pool_size,
        })
    }
}

/// Logging and tracing settings; read before anything else so that later errors can be logged.
pub fn telemetry_config(env: &Env, service_name: &str) -> Result<TelemetryConfig, ConfigError> {
    Ok(TelemetryConfig {
        log_format: env.parse("LOG_FORMAT", LogFormat::Text)?,
        log_filter: env.string("RUST_LOG", "info"),
        otlp_endpoint: env.optional("OTEL_EXPORTER_OTLP_ENDPOINT"),
        service_name: env.string("OTEL_SERVICE_NAME", service_name),
        log_to_stderr: false,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
            ("KAFKA_BROKERS", "127.0.0.1:9092"),
        ]
    }

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let config = CommonConfig::from_env(&Env::from_pairs(minimal()), "svc").unwrap();
        assert_eq!(
            config.database.url.expose_secret(),
            "postgres://u:p@127.0.0.1:5432/db"
        );
        assert_eq!(config.database.application_name, "svc");
        assert_eq!(config.database.pool_size, 10);
        assert_eq!(config.kafka.brokers, ["127.0.0.1:9092"]);
        assert_eq!(config.kafka.client_id, "svc");
        assert_eq!(config.ops_addr, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(config.shutdown_timeout, Duration::from_secs(8));
        // The password in the URL never reaches debug output.
        assert!(!format!("{config:?}").contains("u:p@"));
    }

    #[test]
    fn every_variable_is_read() {
        let mut pairs = minimal();
        pairs.extend([
            ("DATABASE_POOL_SIZE", "3"),
            ("DATABASE_POOL_TIMEOUT", "1s"),
            ("DATABASE_CONNECT_TIMEOUT", "2s"),
            ("DATABASE_STATEMENT_TIMEOUT", "3s"),
            ("KAFKA_CLIENT_ID", "client"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "user"),
            ("KAFKA_SASL_PASSWORD", "pw"),
            ("KAFKA_SSL_CA_LOCATION", "/ca.pem"),
            ("KAFKA_RETRY_MAX", "5"),
            ("KAFKA_RETRY_BACKOFF", "50ms"),
            ("KAFKA_FLUSH_MESSAGES", "100"),
            ("KAFKA_FLUSH_TIMEOUT", "1s"),
            ("KAFKA_DLQ_TOPIC", "my-dlq"),
            ("OPS_ADDR", "127.0.0.1:9999"),
            ("SHUTDOWN_TIMEOUT", "3s"),
        ]);
        let config = CommonConfig::from_env(&Env::from_pairs(pairs), "svc").unwrap();
        assert_eq!(config.database.pool_size, 3);
        assert_eq!(config.database.pool_wait_timeout, Duration::from_secs(1));
        assert_eq!(config.database.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.database.statement_timeout, Duration::from_secs(3));
        assert_eq!(config.kafka.client_id, "client");
        let client = config.kafka.client_config();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.password"), Some("pw"));
        assert_eq!(client.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(config.ops_addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(config.shutdown_timeout, Duration::from_secs(3));
        let producer = &config.kafka.producer;
        assert_eq!(
            (producer.retry_max, producer.retry_backoff),
            (5, Duration::from_millis(50))
        );
        assert_eq!(
            (producer.flush_messages, producer.dlq_topic.as_str()),
            (100, "my-dlq")
        );
        let client = config.kafka.producer_client_config();
        assert_eq!(client.get("linger.ms"), Some("1000"));
        assert_eq!(client.get("batch.num.messages"), Some("100"));
        assert_eq!(
            (client.get("enable.idempotence"), client.get("acks")),
            (Some("true"), Some("all"))
        );
    }

    #[test]
    fn consumer_settings_default_per_service_and_can_be_overridden() {
        let defaults = ConsumerConfig {
            group_id: "email-workers".into(),
            topic: "domain-events".into(),
            worker_pool_size: 10,
        };
        let config = ConsumerConfig::from_env(&Env::default(), defaults.clone()).unwrap();
        assert_eq!(config, defaults);
        let env = Env::from_pairs([("KAFKA_WORKER_POOL_SIZE", "20"), ("KAFKA_TOPIC", "t")]);
        let config = ConsumerConfig::from_env(&env, defaults.clone()).unwrap();
        assert_eq!((config.worker_pool_size, config.topic.as_str()), (20, "t"));
        let env = Env::from_pairs([("KAFKA_WORKER_POOL_SIZE", "0")]);
        assert!(ConsumerConfig::from_env(&env, defaults).is_err());
    }

    #[test]
    fn missing_and_malformed_variables_are_named() {
        let error = CommonConfig::from_env(&Env::from_pairs([("KAFKA_BROKERS", "b:1")]), "svc")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable DATABASE_URL is required"
        );

        let mut pairs = minimal();
        pairs.push(("OPS_ADDR", "not-an-address"));
        let error = CommonConfig::from_env(&Env::from_pairs(pairs), "svc").unwrap_err();
        assert!(error.to_string().contains("OPS_ADDR"), "{error}");

        let mut pairs = minimal();
        pairs.push(("LOG_FORMAT", "xml"));
        let error = telemetry_config(&Env::from_pairs(pairs), "svc").unwrap_err();
        assert!(error.to_string().contains("LOG_FORMAT"), "{error}");
    }
}
