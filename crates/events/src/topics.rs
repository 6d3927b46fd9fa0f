//! The topic specification and its idempotent application to a cluster.
//!
//! Topics are declared once, in `deploy/topics.toml`, with their production settings. The local
//! stack, the Kubernetes topic job and docker-compose all apply that one file, with a cap on the
//! replication factor where the cluster has fewer brokers than production.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::{EventsError, KafkaConfig};

/// The whole specification file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSpec {
    /// `min.insync.replicas` for every topic (capped at each topic's replication factor).
    pub min_insync_replicas: u16,
    #[serde(rename = "topic")]
    pub topics: Vec<TopicSpec>,
}

/// One topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u16,
    pub replication_factor: u16,
    /// How long messages are kept, as `7d`, `24h`, `365d`.
    #[serde(with = "humantime_duration")]
    pub retention: Duration,
    /// `delete`, `compact`, or `compact,delete`.
    pub cleanup_policy: String,
    /// Who writes it, who reads it.
    pub description: String,
}

mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

impl TopicsSpec {
    pub fn load(path: &Path) -> Result<Self, EventsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EventsError::TopicSpec(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, EventsError> {
        let spec: Self = toml::from_str(text).map_err(|e| EventsError::TopicSpec(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    fn validate(&self) -> Result<(), EventsError> {
        let invalid =
            |name: &str, why: &str| EventsError::TopicSpec(format!("topic {name:?}: {why}"));
        let mut seen = HashSet::new();
        for topic in &self.topics {
            let name = topic.name.as_str();
            let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if name.is_empty() || name.len() > 249 || !name.chars().all(legal) {
                return Err(invalid(name, "names are 1 to 249 of [a-zA-Z0-9._-]"));
            }
            if !seen.insert(name) {
                return Err(invalid(name, "declared twice"));
            }
            if topic.partitions == 0 || topic.replication_factor == 0 {
                return Err(invalid(
                    name,
                    "partitions and replication_factor must be at least 1",
                ));
            }
            if !matches!(
                topic.cleanup_policy.as_str(),
                "delete" | "compact" | "compact,delete"
            ) {
                return Err(invalid(
                    name,
                    "cleanup_policy is delete, compact or compact,delete",
                ));
            }
        }
        Ok(())
    }
}

/// What `ensure_topics` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    /// It existed with at least the declared partitions; nothing was changed.
    Unchanged,
    /// It existed with fewer partitions; partitions were added up to the declared count.
    PartitionsAdded {
        from: usize,
        to: usize,
    },
}

/// Creates every declared topic that does not exist, and adds partitions to existing topics
/// that have fewer than declared. Never deletes or shrinks anything, so it can run on every
/// start. `max_replication_factor` caps the declared factor for clusters smaller than
/// production (1 for the single local broker).
pub async fn ensure_topics(
    config: &KafkaConfig,
    spec: &TopicsSpec,
    max_replication_factor: u16,
) -> Result<Vec<(String, TopicOutcome)>, EventsError> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config()
        .create()
        .map_err(EventsError::Config)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let existing = partition_counts(&admin)?;

    let settings: Vec<TopicSettings> = spec
        .topics
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .map(|t| TopicSettings::new(t, spec.min_insync_replicas, max_replication_factor))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = settings.iter().map(TopicSettings::as_new_topic).collect();
    let mut outcomes = HashMap::new();
    if !new_topics.is_empty() {
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(EventsError::Unavailable)?;
        for result in results {
            match result {
                Ok(name) => outcomes.insert(name, TopicOutcome::Created),
                // Created by someone else since we looked: that is fine.
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    outcomes.insert(name, TopicOutcome::Unchanged)
                }
                Err((topic, code)) => {
                    return Err(EventsError::TopicCreation {
                        topic,
                        reason: code.to_string(),
                    });
                }
            };
        }
    }

    let grow: Vec<NewPartitions<'_>> = spec
        .topics
        .iter()
        .filter_map(|t| {
            let current = *existing.get(&t.name)?;
            (current < usize::from(t.partitions))
                .then(|| NewPartitions::new(&t.name, t.partitions.into()))
        })
        .collect();
    if !grow.is_empty() {
        for name in add_partitions(&admin, &grow, &options).await? {
            let to = spec.topic(&name).map_or(0, |t| t.partitions.into());
            let from = existing[&name];
            outcomes.insert(name, TopicOutcome::PartitionsAdded { from, to });
        }
    }

    Ok(spec
        .topics
        .iter()
        .map(|t| {
            let outcome = outcomes.remove(&t.name).unwrap_or(TopicOutcome::Unchanged);
            (t.name.clone(), outcome)
        })
        .collect())
}

/// Adds partitions; the names of the topics that grew.
///
/// # Errors
/// `Unavailable` when the cluster cannot be reached, `TopicCreation` naming the first topic the
/// broker refused to grow.
async fn add_partitions(
    admin: &AdminClient<DefaultClientContext>,
    grow: &[NewPartitions<'_>],
    options: &AdminOptions,
) -> Result<Vec<String>, EventsError> {
    let results = admin
        .create_partitions(grow, options)
        .await
        .map_err(EventsError::Unavailable)?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(name) => Ok(name),
            Err((topic, code)) => Err(EventsError::TopicCreation {
                topic,
                reason: format!("adding partitions: {code}"),
            }),
        })
        .collect()
}

/// Topic name to partition count, for every topic in the cluster.
fn partition_counts(
    admin: &AdminClient<DefaultClientContext>,
) -> Result<HashMap<String, usize>, EventsError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(EventsError::Unavailable)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect())
}

/// The owned strings a `NewTopic` borrows.
struct TopicSettings<'a> {
    spec: &'a TopicSpec,
    replication_factor: i32,
    retention_ms: String,
    min_insync_replicas: String,
}

impl<'a> TopicSettings<'a> {
    fn new(spec: &'a TopicSpec, min_insync_replicas: u16, max_replication_factor: u16) -> Self {
        let replication_factor = spec.replication_factor.min(max_replication_factor.max(1));
        Self {
            spec,
            replication_factor: replication_factor.into(),
            retention_ms: spec.retention.as_millis().to_string(),
            // With fewer replicas than this, producers using acks=all could never write.
            min_insync_replicas: min_insync_replicas
                .min(replication_factor)
                .max(1)
                .to_string(),
        }
    }

    fn as_new_topic(&self) -> NewTopic<'_> {
        NewTopic::new(
            &self.spec.name,
            self.spec.partitions.into(),
            TopicReplication::Fixed(self.replication_factor),
        )
        .set("retention.ms", &self.retention_ms)
        .set("cleanup.policy", &self.spec.cleanup_policy)
        .set("min.insync.replicas", &self.min_insync_replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_FILE: &str = include_str!("../../../deploy/topics.toml");

    #[test]
    fn the_deployed_spec_is_valid_and_names_the_documented_topics() {
        let spec = TopicsSpec::parse(SPEC_FILE).unwrap();
        for name in [
            "user.registration",
            "user.registration.dlq",
            "domain-events",
            "waitlist.dlq",
            "user-activity-logs",
            "user-activity-logs-dlq",
            "user-activity-analytics",
            "user-events",
            "auth-events",
            "api-events",
            "error-events",
            "system-events",
            "default-events",
            "events-dlq",
        ] {
            assert!(
                spec.topic(name).is_some(),
                "{name} is missing from deploy/topics.toml"
            );
        }
        let registration = spec.topic("user.registration").unwrap();
        assert_eq!(registration.partitions, 6);
        assert_eq!(registration.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(
            spec.topic("user.registration.dlq").unwrap().retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            spec.topic("user-activity-analytics").unwrap().retention,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn bad_specs_are_rejected_with_the_topic_named() {
        let topic = |name: &str, partitions: u16, cleanup: &str| {
            format!(
                "min_insync_replicas = 2\n[[topic]]\nname = \"{name}\"\npartitions = {partitions}\n\
                 replication_factor = 3\nretention = \"1d\"\ncleanup_policy = \"{cleanup}\"\n\
                 description = \"x\"\n"
            )
        };
        let error = |text: &str| TopicsSpec::parse(text).unwrap_err().to_string();
        assert!(error(&topic("bad name", 1, "delete")).contains("\"bad name\""));
        assert!(error(&topic("t", 0, "delete")).contains("at least 1"));
        assert!(error(&topic("t", 1, "shred")).contains("cleanup_policy"));
        let twice = format!(
            "{}{}",
            topic("t", 1, "delete"),
            topic("t", 1, "delete").replace("min_insync_replicas = 2\n", "")
        );
        assert!(error(&twice).contains("declared twice"));
        assert!(error(&topic("t", 1, "delete").replace("1d", "soon")).contains("retention"));
    }

    #[test]
    fn replication_is_capped_and_min_insync_follows() {
        let spec = TopicsSpec::parse(SPEC_FILE).unwrap();
        let topic = spec.topic("user.registration").unwrap();
        let local = TopicSettings::new(topic, 2, 1);
        assert_eq!(
            (local.replication_factor, local.min_insync_replicas.as_str()),
            (1, "1")
        );
        let production = TopicSettings::new(topic, 2, 3);
        assert_eq!(
            (
                production.replication_factor,
                production.min_insync_replicas.as_str()
            ),
            (3, "2")
        );
        assert_eq!(local.retention_ms, (7 * 86_400_000u64).to_string());
    }
}
