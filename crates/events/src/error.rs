use rdkafka::error::KafkaError;

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The client could not be created from the configuration (a typo in a setting, a missing
    /// certificate file): fix the configuration.
    #[error("invalid Kafka client configuration: {0}")]
    Config(#[source] KafkaError),
    /// The brokers did not answer in time or refused the request. Usually retryable.
    #[error("Kafka broker unavailable: {0}")]
    Unavailable(#[source] KafkaError),
    /// The brokers refused the client's credentials (SASL) or the TLS handshake failed: the
    /// client keeps trying, but nothing gets through until the configuration is fixed. Holds
    /// librdkafka's own description, which never includes the password.
    #[error("Kafka authentication failed: {0}")]
    Authentication(String),
    /// The broker refused to create a topic.
    #[error("cannot create topic {topic}: {reason}")]
    TopicCreation { topic: String, reason: String },
    /// The topic specification file is missing or malformed.
    #[error("invalid topic specification: {0}")]
    TopicSpec(String),
    /// A request the cluster cannot serve as asked (a topic that does not exist).
    #[error("{0}")]
    Invalid(String),
}
