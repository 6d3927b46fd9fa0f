//! A topic and a consumer group of its own for each test, so tests run in parallel against one
//! broker (the approach of Sentry's arroyo `testutils`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::KafkaConfig;

/// The broker tests use when `KAFKA_BROKERS` is not set: the one `make test` starts.
pub const DEFAULT_TEST_BROKERS: &str = "127.0.0.1:9092";

/// Client configuration for tests: `KAFKA_BROKERS`, or the local broker.
pub fn test_kafka_config() -> KafkaConfig {
    let brokers =
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_TEST_BROKERS.to_owned());
    KafkaConfig::new(brokers, "tests")
}

/// A name no other test uses: `<prefix>-<uuid>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A freshly created topic with a unique name, deleted again on `delete`.
#[derive(Debug)]
pub struct TestTopic {
    pub name: String,
    pub partitions: i32,
}

impl TestTopic {
    /// Creates the topic and waits until its metadata is visible. Panics with a clear message when
    /// the broker is not reachable.
    pub async fn create(prefix: &str, partitions: i32) -> Self {
        let config = test_kafka_config();
        let name = unique_name(prefix);
        let admin = admin(&config);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach the broker at {:?} ({e}); run `make test`",
                    config.brokers
                )
            });
        for result in results {
            result.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code}"));
        }
        Self { name, partitions }
    }

    /// Deletes the topic, so repeated test runs do not fill the broker.
    pub async fn delete(self) {
        delete_topic(&self.name).await;
    }
}

/// Deletes a topic a test created; a failure only leaves a stray topic behind.
pub async fn delete_topic(name: &str) {
    let admin = admin(&test_kafka_config());
    let _ = admin.delete_topics(&[name], &AdminOptions::new()).await;
}

fn admin(config: &KafkaConfig) -> AdminClient<DefaultClientContext> {
    config.client_config().create().expect("admin client")
}
