//! Consumer groups as an operator sees them: their members, their committed offsets against
//! the end of each partition (lag), and moving a stopped group's offsets for a replay.
//!
//! Every function here blocks on the network (librdkafka's synchronous calls, each bounded by
//! `timeout`); call them from `tokio::task::spawn_blocking` in async code.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{EventsError, KafkaConfig};

/// One partition of a group: how far the group got and how far the partition goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next record it will read); `None` if it has none.
    pub committed: Option<i64>,
    /// The oldest offset the partition still holds.
    pub start: i64,
    /// The offset the next record written will get (the high watermark).
    pub end: i64,
    /// Records the group has still to read: `end - committed`, or `end - start` without a
    /// committed offset (the system's groups then start at the earliest).
    pub lag: i64,
}

/// A consumer group as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupDescription {
    pub group: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead`, …
    pub state: String,
    /// `client_id@host` of each member.
    pub members: Vec<String>,
}

/// A client that reads offsets as `group` (librdkafka needs a group ID for that) without ever
/// joining it: it neither subscribes nor commits unless asked to.
fn client(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer, EventsError> {
    kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(EventsError::Config)
}

/// The topics of the cluster, without Kafka's internal ones (`__consumer_offsets`, …), with
/// their partition counts.
pub fn topics(kafka: &KafkaConfig, timeout: Duration) -> Result<Vec<(String, i32)>, EventsError> {
    let consumer = client(kafka, "platform-admin")?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(EventsError::Unavailable)?;
    let mut topics: Vec<(String, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__") && t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    topics.sort();
    Ok(topics)
}

/// The partitions of `topic`; an error if the topic does not exist.
pub fn partitions(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, EventsError> {
    let consumer = client(kafka, "platform-admin")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(EventsError::Unavailable)?;
    let missing = || EventsError::Invalid(format!("topic {topic:?} does not exist"));
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    match found.error() {
        None if !found.partitions().is_empty() => {}
        None | Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            return Err(missing());
        }
        // Not authorized, no leader yet, …: the topic may well exist.
        Some(error) => {
            return Err(EventsError::Unavailable(
                rdkafka::error::KafkaError::MetadataFetch(error.into()),
            ));
        }
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}

/// The consumer groups the cluster knows, with their state and members; only `group` when
/// given (then an empty list if the broker does not know it).
pub fn describe_groups(
    kafka: &KafkaConfig,
    group: Option<&str>,
    timeout: Duration,
) -> Result<Vec<GroupDescription>, EventsError> {
    let consumer = client(kafka, "platform-admin")?;
    let list = consumer
        .fetch_group_list(group, timeout)
        .map_err(EventsError::Unavailable)?;
    let mut groups: Vec<GroupDescription> = list
        .groups()
        .iter()
        .filter(|g| g.state() != "Dead")
        .map(|g| GroupDescription {
            group: g.name().to_owned(),
            state: g.state().to_owned(),
            members: g
                .members()
                .iter()
                .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
                .collect(),
        })
        .collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(groups)
}

/// The lag of `group` on every partition of `topics` (each partition, committed offset or
/// not), or, when `topics` is `None`, on every partition of the topics where the group has a
/// committed offset on some partition.
pub fn group_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: Option<&[String]>,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, EventsError> {
    GroupProbe::new(kafka, group)?.lag(topics, timeout)
}

/// A client that reads a group's committed offsets and the partitions' ends, kept for
/// repeated reads (a service reports its group's lag every few seconds with one).
pub struct GroupProbe {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for GroupProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupProbe").finish_non_exhaustive()
    }
}

impl GroupProbe {
    pub fn new(kafka: &KafkaConfig, group: &str) -> Result<Self, EventsError> {
        Ok(Self {
            consumer: client(kafka, group)?,
        })
    }

    /// See [`group_lag`].
    pub fn lag(
        &self,
        topics: Option<&[String]>,
        timeout: Duration,
    ) -> Result<Vec<PartitionLag>, EventsError> {
        let consumer = &self.consumer;
        // Never assigned anything: polling only drains librdkafka's event queue (errors logged
        // during a broker outage), which would otherwise grow.
        let _ = consumer.poll(Duration::ZERO);
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(EventsError::Unavailable)?;
        let mut list = TopicPartitionList::new();
        for topic in metadata.topics() {
            let wanted = match topics {
                Some(topics) => topics.iter().any(|t| t == topic.name()),
                None => !topic.name().starts_with("__"),
            };
            if wanted && topic.error().is_none() {
                for partition in topic.partitions() {
                    list.add_partition(topic.name(), partition.id());
                }
            }
        }
        if list.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = consumer
            .committed_offsets(list, timeout)
            .map_err(EventsError::Unavailable)?;
        // Without a topic list: the topics where the group committed on some partition, each
        // with all its partitions (one added since, or not yet reached, lags too).
        let group_topics: std::collections::HashSet<String> = committed
            .elements()
            .iter()
            .filter(|e| matches!(e.offset(), Offset::Offset(_)))
            .map(|e| e.topic().to_owned())
            .collect();
        let mut lags = Vec::new();
        for element in committed.elements() {
            let committed = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            if topics.is_none() && !group_topics.contains(element.topic()) {
                continue;
            }
            let (start, end) = consumer
                .fetch_watermarks(element.topic(), element.partition(), timeout)
                .map_err(EventsError::Unavailable)?;
            lags.push(PartitionLag {
                topic: element.topic().to_owned(),
                partition: element.partition(),
                committed,
                start,
                end,
                lag: (end - committed.unwrap_or(start).max(start)).max(0),
            });
        }
        lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(lags)
    }
}

/// For each partition of `topic`: the offset of the first record at or after `at_millis`
/// (milliseconds since the Unix epoch, by the records' timestamps: the broker's
/// offset-for-time lookup), or the partition's end when every record is older.
pub fn offsets_for_time(
    kafka: &KafkaConfig,
    topic: &str,
    at_millis: i64,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, EventsError> {
    if at_millis < 0 {
        return Err(EventsError::Invalid(
            "a time before 1970 has no offset".into(),
        ));
    }
    let consumer = client(kafka, "platform-admin")?;
    let mut list = TopicPartitionList::new();
    for partition in partitions(kafka, topic, timeout)? {
        list.add_partition_offset(topic, partition, Offset::Offset(at_millis))
            .map_err(EventsError::Unavailable)?;
    }
    let found = consumer
        .offsets_for_times(list, timeout)
        .map_err(EventsError::Unavailable)?;
    let mut offsets = Vec::new();
    for element in found.elements() {
        if let Err(error) = element.error() {
            return Err(EventsError::Unavailable(error));
        }
        let offset = match element.offset() {
            Offset::Offset(offset) => offset,
            // No record at or after the time: the end.
            _ => {
                consumer
                    .fetch_watermarks(topic, element.partition(), timeout)
                    .map_err(EventsError::Unavailable)?
                    .1
            }
        };
        offsets.push((element.partition(), offset));
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Commits `offsets` (topic, partition, offset) for `group` from outside it. The broker takes
/// such a commit only while the group has no members, so a member that joined since the caller
/// checked makes this fail rather than be overruled.
pub fn commit_group_offsets(
    kafka: &KafkaConfig,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> Result<(), EventsError> {
    let consumer = client(kafka, group)?;
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(EventsError::Unavailable)?;
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .map_err(EventsError::Unavailable)
}
