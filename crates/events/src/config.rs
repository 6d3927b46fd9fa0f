use std::time::Duration;

use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

/// How to reach the Kafka cluster. Built from `KAFKA_*` environment variables by the service
/// runtime; see the workspace README for the variables and their defaults.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers. Locally `127.0.0.1:9092`.
    pub brokers: Vec<String>,
    /// Shown in broker logs and quotas; the service name unless set.
    pub client_id: String,
    pub security: KafkaSecurity,
    pub producer: ProducerSettings,
}

/// How the producer batches, retries and dead-letters (seed 002's `KAFKA_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// Retries after the first attempt, for retriable failures (`KAFKA_RETRY_MAX`).
    pub retry_max: u32,
    /// First retry delay; doubles per retry, with jitter (`KAFKA_RETRY_BACKOFF`).
    pub retry_backoff: Duration,
    /// Longest retry delay (`KAFKA_RETRY_BACKOFF_MAX`).
    pub retry_backoff_max: Duration,
    /// Most messages per batch to a partition (`KAFKA_FLUSH_MESSAGES`, librdkafka
    /// `batch.num.messages`).
    pub flush_messages: usize,
    /// Most bytes per batch (`KAFKA_FLUSH_BYTES`, librdkafka `batch.size`).
    pub flush_bytes: usize,
    /// How long a batch may wait to fill (`KAFKA_FLUSH_TIMEOUT`, librdkafka `linger.ms`).
    pub flush_timeout: Duration,
    /// How long one attempt may take before it counts as failed (`KAFKA_DELIVERY_TIMEOUT`,
    /// librdkafka `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Where records that could not be delivered go (`KAFKA_DLQ_TOPIC`).
    pub dlq_topic: String,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            retry_max: 3,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
            flush_messages: 1000,
            flush_bytes: 1_048_576,
            // Seed 002's example batches for 1 s; an HTTP request waiting on its publish should
            // not. 10 ms still batches well under load.
            flush_timeout: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(30),
            dlq_topic: "events-dlq".to_owned(),
        }
    }
}

/// Authentication and encryption. Plaintext locally; SASL_SSL (SCRAM or PLAIN) in production.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`; librdkafka's default when unset.
    pub protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<SecretString>,
    /// CA bundle to verify the brokers' certificates with; the system store when unset.
    pub ssl_ca_location: Option<String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers
                .into()
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: client_id.into(),
            security: KafkaSecurity::default(),
            producer: ProducerSettings::default(),
        }
    }

    /// The producer's settings: the shared ones, plus idempotence, always on (`acks=all`, no
    /// duplicates or reordering on librdkafka's own retries), lz4 compression and seed 002's
    /// batching.
    pub fn producer_client_config(&self) -> ClientConfig {
        let settings = &self.producer;
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("batch.num.messages", settings.flush_messages.to_string())
            .set("batch.size", settings.flush_bytes.to_string())
            .set("linger.ms", settings.flush_timeout.as_millis().to_string())
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            );
        config
    }

    /// The settings every client shares. Producers and consumers add their own on top.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            // Resolve broker names to IPv4 as well as IPv6, and fail over between them.
            .set("broker.address.family", "any");
        let security = &self.security;
        let settings = [
            ("security.protocol", security.protocol.as_deref()),
            ("sasl.mechanism", security.sasl_mechanism.as_deref()),
            ("sasl.username", security.sasl_username.as_deref()),
            (
                "sasl.password",
                security
                    .sasl_password
                    .as_ref()
                    .map(ExposeSecret::expose_secret),
            ),
            ("ssl.ca.location", security.ssl_ca_location.as_deref()),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                config.set(key, value);
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_split_and_trimmed() {
        let config = KafkaConfig::new(" a:9092, b:9093 ,", "svc");
        assert_eq!(config.brokers, ["a:9092", "b:9093"]);
        let client = config.client_config();
        assert_eq!(client.get("bootstrap.servers"), Some("a:9092,b:9093"));
        assert_eq!(client.get("client.id"), Some("svc"));
        assert_eq!(client.get("security.protocol"), None);
    }

    #[test]
    fn security_settings_reach_librdkafka() {
        let mut config = KafkaConfig::new("a:9092", "svc");
        config.security = KafkaSecurity {
            protocol: Some("SASL_SSL".into()),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("user".into()),
            sasl_password: Some("secret".to_owned().into()),
            ssl_ca_location: Some("/etc/ca.pem".into()),
        };
        let client = config.client_config();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("user"));
        assert_eq!(client.get("sasl.password"), Some("secret"));
        assert_eq!(client.get("ssl.ca.location"), Some("/etc/ca.pem"));
        // The password never shows in debug output.
        assert!(!format!("{config:?}").contains("secret"));
    }
}
