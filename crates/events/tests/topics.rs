//! `ensure_topics` against the real broker: creates what is missing, leaves what exists, grows
//! partitions, and never fails because a topic is already there.

use std::time::Duration;

use events::rdkafka::consumer::{BaseConsumer, Consumer};
use events::testing::{test_kafka_config, unique_name};
use events::topics::{TopicOutcome, TopicsSpec, ensure_topics};

fn spec(name: &str, partitions: u16) -> TopicsSpec {
    TopicsSpec::parse(&format!(
        "min_insync_replicas = 2\n\
         [[topic]]\nname = \"{name}\"\npartitions = {partitions}\nreplication_factor = 3\n\
         retention = \"2d\"\ncleanup_policy = \"delete\"\ndescription = \"test\"\n"
    ))
    .unwrap()
}

fn partitions_of(topic: &str) -> usize {
    let consumer: BaseConsumer = test_kafka_config().client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0].partitions().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_once_then_leaves_alone_then_grows() {
    let config = test_kafka_config();
    let name = unique_name("spec-topic");

    let outcome = ensure_topics(&config, &spec(&name, 2), 1).await.unwrap();
    assert_eq!(outcome, [(name.clone(), TopicOutcome::Created)]);
    assert_eq!(partitions_of(&name), 2);

    let outcome = ensure_topics(&config, &spec(&name, 2), 1).await.unwrap();
    assert_eq!(outcome, [(name.clone(), TopicOutcome::Unchanged)]);

    // More partitions declared than the topic has: the broker adds them.
    let outcome = ensure_topics(&config, &spec(&name, 4), 1).await.unwrap();
    assert_eq!(
        outcome,
        [(
            name.clone(),
            TopicOutcome::PartitionsAdded { from: 2, to: 4 }
        )]
    );
    assert_eq!(partitions_of(&name), 4);

    // Fewer partitions in the spec than in the cluster: nothing shrinks.
    let outcome = ensure_topics(&config, &spec(&name, 1), 1).await.unwrap();
    assert_eq!(outcome, [(name.clone(), TopicOutcome::Unchanged)]);
    assert_eq!(partitions_of(&name), 4);
}
