use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};

use crate::{EventsError, KafkaConfig};

/// What the cluster said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub brokers: usize,
    pub topics: usize,
}

/// A service's connection to the Kafka cluster. Cheap to clone: clones share one client.
///
/// It wraps a producer because every service publishes (events, or dead letters); the events
/// issue builds the publishing API on top of it.
#[derive(Clone)]
pub struct Broker {
    producer: Arc<FutureProducer>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// Creates the client. librdkafka connects in the background, so this succeeds while the
    /// brokers are still starting; `ping` tells when they answer.
    pub fn connect(config: &KafkaConfig) -> Result<Self, EventsError> {
        let producer: FutureProducer = config
            .client_config()
            .create()
            .map_err(EventsError::Config)?;
        Ok(Self {
            producer: Arc::new(producer),
        })
    }

    /// Asks the cluster for its metadata (brokers and topics). Publishes nothing.
    pub async fn ping(&self, timeout: Duration) -> Result<ClusterInfo, EventsError> {
        let producer = self.producer.clone();
        // librdkafka's metadata call blocks the calling thread.
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(None, timeout)
                .map_err(EventsError::Unavailable)?;
            Ok(ClusterInfo {
                brokers: metadata.brokers().len(),
                topics: metadata.topics().len(),
            })
        })
        .await
        .expect("the metadata task does not panic")
    }

    /// The underlying producer, for the publishing code built on it.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }
}
