//! The broker is real: messages produced with rdkafka come back through a consumer group, and
//! the offsets the group commits decide where the next member of the group starts.

use std::collections::BTreeMap;
use std::time::Duration;

use events::Producer;
use events::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use events::rdkafka::message::Message;
use events::rdkafka::producer::FutureRecord;
use events::rdkafka::{Offset, TopicPartitionList};
use events::testing::{TestTopic, test_kafka_config, unique_name};
use futures::StreamExt;

/// A group member that starts at the earliest offset when its group has committed nothing, and
/// commits only when told to.
fn group_member(group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = test_kafka_config()
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Reads `count` messages as (key, value) pairs; gives up after a minute so a broken broker
/// fails the test instead of hanging it.
async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<(String, String)> {
    let mut stream = consumer.stream();
    let mut received = Vec::new();
    while received.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", received.len()))
            .unwrap()
            .unwrap();
        let text = |bytes: Option<&[u8]>| String::from_utf8(bytes.unwrap().to_vec()).unwrap();
        received.push((text(message.key()), text(message.payload())));
    }
    received
}

async fn produce(producer: &Producer, topic: &str, key: &str, value: &str) {
    producer
        .rdkafka()
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_round_trip_through_a_consumer_group_that_commits() {
    let topic = TestTopic::create("roundtrip", 3).await;
    let group = unique_name("roundtrip-group");
    let broker = Producer::connect(&test_kafka_config()).unwrap();
    let cluster = broker.health_check(Duration::from_secs(10)).await.unwrap();
    assert!(cluster.brokers >= 1);

    for i in 0..30 {
        produce(
            &broker,
            &topic.name,
            &format!("user-{}", i % 5),
            &format!("message-{i}"),
        )
        .await;
    }

    let first = group_member(&group, &topic.name);
    let mut received = receive(&first, 30).await;
    first.commit_consumer_state(CommitMode::Sync).unwrap();

    // Everything arrived, and per key in the order produced.
    received.sort_by_key(|(_, value)| value["message-".len()..].parse::<u32>().unwrap());
    let expected: Vec<_> = (0..30)
        .map(|i| (format!("user-{}", i % 5), format!("message-{i}")))
        .collect();
    assert_eq!(received, expected);

    // The group's committed offsets cover every message: 30 across the three partitions (a
    // partition no key hashed to has nothing to commit).
    let mut partitions = TopicPartitionList::new();
    for partition in 0..topic.partitions {
        partitions.add_partition(&topic.name, partition);
    }
    let committed = first
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    let committed: BTreeMap<i32, i64> = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => (e.partition(), offset),
            Offset::Invalid => (e.partition(), 0),
            other => panic!(
                "partition {} has an unexpected commit: {other:?}",
                e.partition()
            ),
        })
        .collect();
    assert_eq!(
        committed.values().sum::<i64>(),
        30,
        "committed: {committed:?}"
    );
    drop(first);

    // A new member of the group starts after the commit: it sees only what came later.
    produce(&broker, &topic.name, "user-9", "after-commit").await;
    let second = group_member(&group, &topic.name);
    assert_eq!(
        receive(&second, 1).await,
        [("user-9".to_owned(), "after-commit".to_owned())]
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_fails_when_no_broker_listens() {
    let producer = Producer::connect(&events::KafkaConfig::new("127.0.0.1:1", "tests")).unwrap();
    let error = producer
        .health_check(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, events::EventsError::Unavailable(_)),
        "{error}"
    );
}
