//! What the consumer tests share.

use std::collections::HashMap;
use std::time::Duration;

use events::rdkafka::consumer::{BaseConsumer, Consumer};
use events::rdkafka::{Offset, TopicPartitionList};
use events::testing::test_kafka_config;
use events::{Backoff, ConsumerSettings, RetryPolicy};

/// Settings for a test consumer: three attempts with back-offs of milliseconds, commits every
/// 200 ms.
pub(crate) fn settings(topic: &str, group: &str, dlq: &str) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(group, &[topic], dlq);
    settings.retry = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
    };
    settings.commit_interval = Duration::from_millis(200);
    settings
}

/// Waits (at most a minute: a hang guard) until `done` holds.
pub(crate) async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

/// The group's committed position per partition.
pub(crate) fn committed(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = test_kafka_config()
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    list.elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    0
                },
            )
        })
        .collect()
}
