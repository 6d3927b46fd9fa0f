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
    KafkaConfig::new(brokers, "tests")
}

/// The first `count` messages of `topic`, read from its start by a group of their own. Gives up
/// after a minute without a message (a hang guard), naming how many arrived.
pub async fn read_from_start(topic: &str, count: usize) -> Vec<OwnedMessage> {
    read_until(topic, |messages| messages.len() >= count).await
}

/// The messages of `topic` from its start, read by a group of their own until `enough` says so
/// of those read. Gives up after a minute without a message (a hang guard), naming how many
/// arrived.
pub async fn read_until(
    topic: &str,
    enough: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
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
    while !enough(&messages) {
        let next = tokio::time::timeout(Duration::from_secs(60), stream.next()).await;
        let message = next.unwrap_or_else(|_| {
            panic!(
                "only {} messages on {topic}, and none for a minute",
                messages.len()
            )
        });
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

/// A freshly created topic with a unique name, deleted again when dropped (at the end of the
/// test that made it), so that the broker's disk holds only the topics of running tests.
#[derive(Debug)]
pub struct TestTopic {
    pub name: String,
    pub partitions: i32,
    /// The cluster it lives on.
    pub kafka: KafkaConfig,
}

impl TestTopic {
    /// Creates the topic on the test broker (`test_kafka_config`), one replica, and waits until
    /// its metadata is visible. Panics with a clear message when the broker is not reachable.
    pub async fn create(prefix: &str, partitions: i32) -> Self {
        Self::create_on(&test_kafka_config(), prefix, partitions, 1).await
    }

    /// Creates the topic on the cluster `config` reaches, with `replication` replicas and, when
    /// there are several, `min.insync.replicas` one less (2 of 3, as in production).
    pub async fn create_on(
        config: &KafkaConfig,
        prefix: &str,
        partitions: i32,
        replication: i32,
    ) -> Self {
        let name = unique_name(prefix);
        let admin = admin(config);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let min_isr = (replication - 1).max(1).to_string();
        let results = admin
            .create_topics(
                &[
                    NewTopic::new(&name, partitions, TopicReplication::Fixed(replication))
                        .set("min.insync.replicas", &min_isr),
                ],
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
        wait_until_visible(config, &name, partitions).await;
        Self {
            name,
            partitions,
            kafka: config.clone(),
        }
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: delete from a thread of its own.
        // A topic left behind (the broker unreachable, say) costs only disk, so errors are
        // reported, not raised.
        let (name, kafka) = (self.name.clone(), self.kafka.clone());
        let deleted = std::thread::spawn(move || {
            let admin = admin(&kafka);
            let options = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(10)))
                .request_timeout(Some(Duration::from_secs(10)));
            futures::executor::block_on(admin.delete_topics(&[&name], &options))
                .map_err(|e| format!("{name}: {e}"))
                .and_then(|results| {
                    results
                        .into_iter()
                        .try_for_each(|r| r.map(drop).map_err(|(t, c)| format!("{t}: {c}")))
                })
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("could not delete test topic {error}");
        }
    }
}

/// Waits until a new client sees the topic with all its partitions, so that a test's first
/// produce or subscription does not race the topic's creation.
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
    let client: BaseConsumer = topic
        .kafka
        .client_config()
        .create()
        .expect("watermark client");
    (0..topic.partitions)
        .map(|partition| {
            // A broker busy with many tests at once can be slow to answer: a few patient tries.
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
