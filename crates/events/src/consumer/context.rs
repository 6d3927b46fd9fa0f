//! librdkafka callbacks: commit what is done when partitions are revoked, and report consumer
//! lag from librdkafka's statistics.

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{OffsetTracker, Partition};

#[derive(Debug)]
pub(crate) struct RuntimeContext {
    pub(crate) group_id: String,
    pub(crate) tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for RuntimeContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, topic_stats) in &statistics.topics {
            for (partition, stats) in &topic_stats.partitions {
                // -1 is librdkafka's "unknown"; partition -1 is its internal "unassigned".
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!(
                        "kafka_consumer_lag",
                        "group" => self.group_id.clone(),
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for RuntimeContext {
    /// Before partitions go to another member, commit how far this one got, synchronously, so
    /// the new owner starts right after the last finished message.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let partitions: Vec<Partition> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let commits = self
            .tracker
            .lock()
            .expect("offset tracker lock")
            .release(&partitions);
        if commits.is_empty() {
            return;
        }
        match commit_list(&commits) {
            Ok(list) => {
                if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
                    tracing::warn!(%error, "commit on revoke failed; the new owner may redo some messages");
                }
            }
            Err(error) => tracing::warn!(%error, "could not build the commit on revoke"),
        }
        tracing::info!(group = %self.group_id, partitions = partitions.len(), "partitions revoked");
    }
}

pub(crate) fn commit_list(
    commits: &[(Partition, i64)],
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), position) in commits {
        list.add_partition_offset(topic, *partition, Offset::Offset(*position))?;
    }
    Ok(list)
}
