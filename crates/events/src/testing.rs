//! A topic and a consumer group of its own for each test, so tests run in parallel against one
//! broker (the approach of Sentry's arroyo `testutils`).

use std::time::Duration;

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;

use crate::KafkaConfig;

/// The broker tests use when `KAFKA_BROKERS` is not set: the one `make test` starts.
pub const DEFAULT_TEST_BROKERS: &str = "127.0.0.1:9092";

/// Client configuration for tests: `KAFKA_BROKERS`, or the local broker.
pub fn test_kafka_config() -> KafkaConfig {
    let brokers =
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_TEST_BROKERS.to_owned());
    let mut config = KafkaConfig::new(brokers, "tests");
    // Tests start many producers at once, which the local broker cannot take with idempotence.
    config.producer.idempotence = false;
    config
}

/// The first `count` messages of `topic`, read from its start by a group of their own. Gives up
/// after a minute without a message (a hang guard), naming how many arrived.
pub async fn read_from_start(topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = test_kafka_config()
        .client_config()
        .set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let mut messages = Vec::new();
    while messages.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(60), stream.next()).await;
        let message = next
            .unwrap_or_else(|_| panic!("only {} of {count} messages on {topic}", messages.len()));
        messages.push(
            message
                .expect("a message")
                .expect("no consume error")
                .detach(),
        );
    }
    messages
}

/// A name no other test uses: `<prefix>-<uuid>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A freshly created topic with a unique name. Tests never delete their topics: deleting a
/// topic in the local broker (Tansu 0.6) disturbs the metadata of other topics in use, and the
/// broker's data lives in the throw-away `.stack/` folder anyway.
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
        wait_until_visible(&config, &name, partitions).await;
        Self { name, partitions }
    }
}

/// Waits until a new client sees the topic with all its partitions: producing to a topic the
/// broker has not finished creating is a race the local broker handles badly.
async fn wait_until_visible(config: &KafkaConfig, name: &str, partitions: i32) {
    let client: BaseConsumer = config.client_config().create().expect("metadata client");
    for _ in 0..300 {
        let visible = client
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .is_ok_and(|metadata| {
                metadata.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                })
            });
        if visible {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {name} did not become visible");
}

fn admin(config: &KafkaConfig) -> AdminClient<DefaultClientContext> {
    config.client_config().create().expect("admin client")
}

/// How many messages `topic` holds: the sum of its partitions' high watermarks.
pub fn message_count(topic: &TestTopic) -> i64 {
    let client: BaseConsumer = test_kafka_config()
        .client_config()
        .create()
        .expect("watermark client");
    (0..topic.partitions)
        .map(|partition| {
            // The local broker can be slow to answer under load: a few patient tries.
            let mut tries = 0;
            loop {
                tries += 1;
                match client.fetch_watermarks(&topic.name, partition, Duration::from_secs(20)) {
                    Ok((low, high)) => break high - low,
                    Err(error) if tries < 3 => {
                        eprintln!("watermarks of {}: {error}; trying again", topic.name);
                    }
                    Err(error) => panic!("watermarks of {}: {error}", topic.name),
                }
            }
        })
        .sum()
}
