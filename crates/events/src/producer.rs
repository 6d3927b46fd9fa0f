//! The producer every service publishes through (seed 002's producer library, built for real).
//!
//! `publish` sends an event to its topic, keyed by its partition key, with the standard
//! headers, and waits for the broker's acknowledgement. Retriable failures (timeouts, leader
//! changes, a full queue) are retried with exponential backoff and jitter up to `retry_max`;
//! then, and at once for failures that retrying cannot fix, the record goes to the DLQ topic in
//! seed 002's format. Nothing is dropped silently: if the DLQ cannot take it either, the caller
//! gets the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use serde_json::json;

use crate::backoff::Backoff;
use crate::headers::{self, header};
use crate::routing::TopicRouter;
use crate::{Event, EventsError, KafkaConfig, ProducerSettings};

/// What the cluster said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub brokers: usize,
    pub topics: usize,
}

/// A message to send: topic, key, payload, headers.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: String,
    /// A partition of its own choosing (replaying a record where it was); by key when `None`.
    pub partition: Option<i32>,
    /// The key as bytes, exactly as it should arrive; `None` for an unkeyed message.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
}

/// Where a record ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// On its topic, acknowledged by all in-sync replicas.
    Published {
        partition: i32,
        offset: i64,
        attempts: u32,
    },
    /// Not deliverable to its topic; stored in the DLQ topic with the reason.
    DeadLettered { reason: String, attempts: u32 },
}

/// Why a publish failed: the record is neither on its topic nor in the DLQ.
#[derive(Debug, thiserror::Error)]
#[error("could not publish to {topic} ({reason}), nor to the DLQ {dlq_topic}: {dlq_error}")]
pub struct PublishError {
    pub topic: String,
    pub reason: String,
    pub dlq_topic: String,
    pub dlq_error: KafkaError,
}

/// Why `deliver` failed: the record is not on its topic (and nowhere else).
#[derive(Debug, thiserror::Error)]
#[error("could not publish to {topic} after {attempts} attempt(s): {error}")]
pub struct DeliveryError {
    pub topic: String,
    pub attempts: u32,
    pub error: KafkaError,
}

impl DeliveryError {
    /// The broker (or librdkafka) refused the record as larger than it takes; sending it again
    /// unchanged cannot succeed.
    pub fn is_too_large(&self) -> bool {
        is_too_large(&self.error)
    }
}

/// The broker (or librdkafka) refused a record as larger than it takes.
fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// Counts since start (seed 002's `GetStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// librdkafka's callbacks for the producer: errors are logged as by default, and the last
/// authentication or TLS failure is kept, so a health check that cannot reach the cluster can
/// say why (a wrong password looks like an unreachable broker otherwise).
#[derive(Debug, Default)]
pub struct ProducerClientContext {
    /// The last such failure, shared with the `Producer`.
    auth_failure: Arc<Mutex<Option<AuthFailure>>>,
}

/// An authentication or TLS failure librdkafka reported: when, and its description (which
/// never includes the password).
#[derive(Debug, Clone)]
struct AuthFailure {
    at: Instant,
    reason: String,
}

/// How long an authentication failure explains a failing health check. librdkafka reconnects
/// at least every `reconnect.backoff.max.ms` (10 s) and reports a repeated failure at least
/// every 30 s (it folds identical errors in between), so a failure older than this was not the
/// last word; an outage since then is reported as such.
const AUTH_FAILURE_RELEVANCE: Duration = Duration::from_secs(60);

impl ClientContext for ProducerClientContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(%error, reason, "librdkafka error");
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) {
            *self.auth_failure.lock().expect("auth failure lock") = Some(AuthFailure {
                at: Instant::now(),
                reason: reason.to_owned(),
            });
        }
    }
}

/// The service's Kafka producer. Cheap to clone: clones share one librdkafka producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<ProducerClientContext>,
    /// The last authentication or TLS failure the context saw (see `ProducerClientContext`).
    auth_failure: Arc<Mutex<Option<AuthFailure>>>,
    settings: ProducerSettings,
    backoff: Backoff,
    router: Arc<TopicRouter>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether trying again may succeed: the broker was unreachable, slow, or changing leaders.
pub fn is_retriable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageTimedOut
                | QueueFull
                | RequestTimedOut
                | NetworkException
                | LeaderNotAvailable
                | NotLeaderForPartition
                // Stale metadata: Kafka's own clients retry it too.
                | UnknownTopicOrPartition
                | BrokerNotAvailable
                | BrokerTransportFailure
                | AllBrokersDown
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | NotCoordinator
                | CoordinatorLoadInProgress
                | KafkaStorageError
                | OperationTimedOut
        )
    )
}

impl Producer {
    /// Creates the producer. librdkafka connects in the background, so this succeeds while the
    /// brokers are still starting; `health_check` tells when they answer.
    pub fn connect(config: &KafkaConfig) -> Result<Self, EventsError> {
        let context = ProducerClientContext::default();
        let auth_failure = context.auth_failure.clone();
        let inner = config
            .producer_client_config()
            .create_with_context(context)
            .map_err(EventsError::Config)?;
        let settings = config.producer.clone();
        Ok(Self {
            inner,
            auth_failure,
            backoff: Backoff::new(settings.retry_backoff, settings.retry_backoff_max),
            settings,
            router: Arc::new(TopicRouter::default()),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The event-type-to-topic map, changeable at runtime.
    pub fn router(&self) -> &TopicRouter {
        &self.router
    }

    /// Publishes one event and waits for it to be acknowledged or dead-lettered.
    pub async fn publish(&self, event: &Event) -> Result<Delivery, PublishError> {
        self.send(self.record_for(event)).await
    }

    /// Publishes events concurrently (all enqueued at once, so librdkafka batches them) and
    /// returns one outcome per event, in order.
    pub async fn publish_batch(&self, events: &[Event]) -> Vec<Result<Delivery, PublishError>> {
        join_all(events.iter().map(|event| self.publish(event))).await
    }

    /// The record an event becomes: its topic, partition key, JSON and headers.
    pub fn record_for(&self, event: &Event) -> OutgoingRecord {
        OutgoingRecord {
            topic: self.router.topic_for(event.event_type()),
            partition: None,
            key: Some(event.partition_key().into_bytes()),
            payload: event.to_json(),
            headers: headers::event_headers(event),
        }
    }

    /// Sends any record with the retry and DLQ policy.
    pub async fn send(&self, record: OutgoingRecord) -> Result<Delivery, PublishError> {
        let first_attempt = Utc::now();
        match self.deliver_with_retries(&record).await {
            Ok(delivery) => Ok(delivery),
            Err(DeliveryError {
                error, attempts, ..
            }) => {
                self.dead_letter(&record, &error, attempts, first_attempt)
                    .await
            }
        }
    }

    /// Sends a record to its topic with the retry policy and nothing else: `Ok` only once the
    /// topic acknowledged it. For writers that keep what was not published and try it again
    /// (the outbox relay, the batcher, the gateway's 503), and for dead letters themselves.
    ///
    /// # Errors
    /// [`DeliveryError`] after a failure retrying cannot fix or the last retry.
    pub async fn deliver(&self, record: OutgoingRecord) -> Result<Delivery, DeliveryError> {
        self.deliver_with_retries(&record).await
    }

    /// Publishes one event like [`Producer::deliver`]: acknowledged by its topic, or an error.
    ///
    /// # Errors
    /// [`DeliveryError`] as `deliver`.
    pub async fn deliver_event(&self, event: &Event) -> Result<Delivery, DeliveryError> {
        self.deliver(self.record_for(event)).await
    }

    #[tracing::instrument(
        name = "kafka.publish",
        skip_all,
        fields(
            otel.name = %format_args!("{} publish", record.topic),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %record.topic,
        )
    )]
    async fn deliver_with_retries(
        &self,
        record: &OutgoingRecord,
    ) -> Result<Delivery, DeliveryError> {
        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            match self.send_once(record).await {
                Ok((partition, offset)) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kafka_messages_sent_total", "topic" => record.topic.clone())
                        .increment(1);
                    return Ok(Delivery::Published {
                        partition,
                        offset,
                        attempts: attempt,
                    });
                }
                Err(error) if is_retriable(&error) && attempt <= self.settings.retry_max => {
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kafka_retry_attempts_total", "topic" => record.topic.clone()).increment(1);
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(kafka.topic = %record.topic, attempt, %error, delay_ms = delay.as_millis() as u64, "publish failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => break error,
            }
        };
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kafka_messages_failed_total", "topic" => record.topic.clone())
            .increment(1);
        Err(DeliveryError {
            topic: record.topic.clone(),
            attempts: attempt,
            error,
        })
    }

    async fn send_once(&self, record: &OutgoingRecord) -> Result<(i32, i64), KafkaError> {
        let mut future_record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&record.topic)
            .payload(&record.payload)
            .headers(record.headers.clone());
        if let Some(key) = &record.key {
            future_record = future_record.key(key);
        }
        if let Some(partition) = record.partition {
            future_record = future_record.partition(partition);
        }
        // Wait up to the delivery timeout for room in librdkafka's queue.
        let delivery = self.inner.send(
            future_record,
            Timeout::After(self.settings.delivery_timeout),
        );
        delivery
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(error, _)| error)
    }

    /// Stores the record in the DLQ topic (the `dlq_record` value), under its original key, with its
    /// headers plus `original_topic` and `failure_reason`. An event too large for the DLQ is cut
    /// (`event_truncated` and `original_value_bytes` headers too); if the broker still refuses
    /// the record as too large, it is sent once more with neither the event nor the original
    /// headers (`event_dropped`).
    async fn dead_letter(
        &self,
        record: &OutgoingRecord,
        error: &KafkaError,
        attempts: u32,
        first_attempt: DateTime<Utc>,
    ) -> Result<Delivery, PublishError> {
        let reason = error.to_string();
        let size = record.payload.len().to_string();
        let (value, cut) = dlq_value(record, &reason, attempts, first_attempt, Utc::now());
        let mut dlq_headers = record
            .headers
            .clone()
            .insert(header("original_topic", &record.topic))
            .insert(header("failure_reason", &reason));
        if cut {
            dlq_headers = dlq_headers
                .insert(header("event_truncated", "true"))
                .insert(header("original_value_bytes", &size));
        }
        let mut sent = self.send_dlq(record, &value, dlq_headers).await;
        if let Err(error) = &sent
            && is_too_large(error)
        {
            let empty = OutgoingRecord {
                payload: Vec::new(),
                ..record.clone()
            };
            let (value, _) = dlq_value(&empty, &reason, attempts, first_attempt, Utc::now());
            let headers = OwnedHeaders::new()
                .insert(header("original_topic", &record.topic))
                .insert(header("failure_reason", &reason))
                .insert(header("event_dropped", "true"))
                .insert(header("original_value_bytes", &size));
            sent = self.send_dlq(record, &value, headers).await;
        }
        match sent {
            Ok(()) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                metrics::gauge!("kafka_dead_letter_queue_size").increment(1.0);
                tracing::error!(kafka.topic = %record.topic, attempts, %reason, "publish failed; record dead-lettered");
                Ok(Delivery::DeadLettered { reason, attempts })
            }
            Err(dlq_error) => Err(PublishError {
                topic: record.topic.clone(),
                reason,
                dlq_topic: self.settings.dlq_topic.clone(),
                dlq_error,
            }),
        }
    }

    async fn send_dlq(
        &self,
        record: &OutgoingRecord,
        value: &Vec<u8>,
        headers: OwnedHeaders,
    ) -> Result<(), KafkaError> {
        let mut dlq: FutureRecord<'_, Vec<u8>, Vec<u8>> =
            FutureRecord::to(&self.settings.dlq_topic)
                .payload(value)
                .headers(headers);
        if let Some(key) = &record.key {
            dlq = dlq.key(key);
        }
        self.inner
            .send(dlq, Timeout::After(self.settings.delivery_timeout))
            .await
            .map(drop)
            .map_err(|(error, _)| error)
    }

    /// Asks the cluster for its metadata (brokers and topics). Publishes nothing.
    ///
    /// # Errors
    /// `Authentication` when the cluster did not answer and librdkafka reported a refused
    /// credential or TLS handshake within the last minute (and after the last successful check),
    /// `Unavailable` when it did not answer in `timeout` otherwise.
    pub async fn health_check(&self, timeout: Duration) -> Result<ClusterInfo, EventsError> {
        let (producer, auth_failure) = (self.inner.clone(), self.auth_failure.clone());
        // librdkafka's metadata call blocks the calling thread.
        tokio::task::spawn_blocking(move || {
            let result = producer.client().fetch_metadata(None, timeout);
            let mut auth_failure = auth_failure.lock().expect("auth failure lock");
            match result {
                Ok(metadata) => {
                    // Whatever failed before has been fixed.
                    *auth_failure = None;
                    Ok(ClusterInfo {
                        brokers: metadata.brokers().len(),
                        topics: metadata.topics().len(),
                    })
                }
                Err(error) => Err(match auth_failure.as_ref() {
                    Some(failure) if failure.at.elapsed() < AUTH_FAILURE_RELEVANCE => {
                        EventsError::Authentication(failure.reason.clone())
                    }
                    _ => EventsError::Unavailable(error),
                }),
            }
        })
        .await
        .expect("the metadata task does not panic")
    }

    pub fn stats(&self) -> ProducerStats {
        let c = &self.counters;
        ProducerStats {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
        }
    }

    /// Waits up to `deadline` for every message in flight to be delivered.
    pub async fn close(&self, deadline: Duration) -> Result<(), EventsError> {
        let producer = self.inner.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(deadline)))
            .await
            .expect("the flush task does not panic")
            .map_err(EventsError::Unavailable)
    }

    /// The underlying rdkafka producer, for code with needs of its own.
    pub fn rdkafka(&self) -> &FutureProducer<ProducerClientContext> {
        &self.inner
    }
}

/// The largest DLQ record value `dlq_record` writes, in bytes: below the broker's default
/// `message.max.bytes` (1 MiB), with room for the headers.
pub const MAX_DLQ_VALUE_BYTES: usize = 900_000;

/// Seed 002's DLQ record: `event`, `topic`, `failure_reason`, `attempt_count`, `first_attempt`,
/// `last_attempt`. A JSON payload is embedded as JSON; any other payload as text, or as hex with
/// `event_encoding: "hex"` when it is not UTF-8, so nothing is lost. A record that would be
/// larger than [`MAX_DLQ_VALUE_BYTES`] carries the start of the payload as text instead (bytes
/// that are not UTF-8 replaced by U+FFFD), with `event_truncated: true` and `event_bytes` (the
/// payload's size), so that the DLQ takes it.
pub fn dlq_record(
    record: &OutgoingRecord,
    reason: &str,
    attempts: u32,
    first_attempt: DateTime<Utc>,
    last_attempt: DateTime<Utc>,
) -> Vec<u8> {
    dlq_value(record, reason, attempts, first_attempt, last_attempt).0
}

/// `dlq_record`'s value, and whether the event in it was cut.
fn dlq_value(
    record: &OutgoingRecord,
    reason: &str,
    attempts: u32,
    first_attempt: DateTime<Utc>,
    last_attempt: DateTime<Utc>,
) -> (Vec<u8>, bool) {
    let mut value = json!({
        "topic": record.topic,
        "failure_reason": reason,
        "attempt_count": attempts,
        "first_attempt": first_attempt,
        "last_attempt": last_attempt,
    });
    let object = value.as_object_mut().expect("an object");
    match serde_json::from_slice::<serde_json::Value>(&record.payload) {
        Ok(event) => {
            object.insert("event".into(), event);
        }
        Err(_) => match std::str::from_utf8(&record.payload) {
            Ok(text) => {
                object.insert("event".into(), text.into());
            }
            Err(_) => {
                object.insert("event".into(), hex_encode(&record.payload).into());
                object.insert("event_encoding".into(), "hex".into());
            }
        },
    }
    let whole = serde_json::to_vec(&value).expect("JSON values serialize");
    if whole.len() <= MAX_DLQ_VALUE_BYTES {
        return (whole, false);
    }
    let object = value.as_object_mut().expect("an object");
    object.insert("event_truncated".into(), true.into());
    object.insert("event_bytes".into(), record.payload.len().into());
    object.remove("event_encoding");
    // Escaping can make a byte six; halve the prefix until the record fits.
    let mut keep = MAX_DLQ_VALUE_BYTES.min(record.payload.len());
    loop {
        let prefix = String::from_utf8_lossy(&record.payload[..keep]).into_owned();
        value["event"] = prefix.into();
        let trimmed = serde_json::to_vec(&value).expect("JSON values serialize");
        if trimmed.len() <= MAX_DLQ_VALUE_BYTES || keep == 0 {
            return (trimmed, true);
        }
        keep /= 2;
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_record_is_cut_to_fit_the_dlq() {
        let first = Utc::now();
        for payload in [
            vec![1u8; 1_200_000],
            vec![b'x'; 990_000],
            vec![0xffu8; 600_000],
        ] {
            let value = dlq_record(&record(&payload), "Message size too large", 1, first, first);
            assert!(value.len() <= MAX_DLQ_VALUE_BYTES, "{}", value.len());
            let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
            assert_eq!(value["event_truncated"], true);
            assert_eq!(value["event_bytes"], payload.len());
            assert!(!value["event"].as_str().unwrap().is_empty());
            assert_eq!(value["topic"], "user-events");
        }
        let small = dlq_record(&record(b"{}"), "x", 1, first, first);
        let small: serde_json::Value = serde_json::from_slice(&small).unwrap();
        assert!(small.get("event_truncated").is_none());
    }

    fn record(payload: &[u8]) -> OutgoingRecord {
        OutgoingRecord {
            topic: "user-events".into(),
            partition: None,
            key: Some(b"k".to_vec()),
            payload: payload.to_vec(),
            headers: OwnedHeaders::new(),
        }
    }

    #[test]
    fn dlq_records_follow_seed_002() {
        let first: DateTime<Utc> = "2024-01-15T10:00:00Z".parse().unwrap();
        let last: DateTime<Utc> = "2024-01-15T10:01:30Z".parse().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&dlq_record(
            &record(br#"{"id":"e1"}"#),
            "broker not available",
            3,
            first,
            last,
        ))
        .unwrap();
        assert_eq!(
            value,
            json!({
                "event": {"id": "e1"},
                "topic": "user-events",
                "failure_reason": "broker not available",
                "attempt_count": 3,
                "first_attempt": "2024-01-15T10:00:00Z",
                "last_attempt": "2024-01-15T10:01:30Z"
            })
        );
        let binary: serde_json::Value =
            serde_json::from_slice(&dlq_record(&record(&[0xff, 0x00]), "x", 1, first, last))
                .unwrap();
        assert_eq!(
            (binary["event"].as_str(), binary["event_encoding"].as_str()),
            (Some("ff00"), Some("hex"))
        );
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(
                is_retriable(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidMessage,
        ] {
            assert!(
                !is_retriable(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
    }
}
