#![doc = include_str!("../README.md")]

mod service;

pub use service::{WriterConfig, WriterLease, start_writer};

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use domain::{RegistrationMessage, UserId};
use events::envelope::UserRegistered;
use events::headers::header;
use events::rdkafka::message::OwnedHeaders;
use events::{Event, EventBuilder, OutgoingRecord, Producer};
use repo::{PendingRegistration, Refusal, RegistrationOutcome, Registrations, RepoError};
use service_runtime::snowflake_ids::IdGenerator;
use tracing::Instrument as _;

/// The registration request a `user.registration` (or its DLQ's) record carries. Refused for
/// the DLQ at once, with code `malformed_message`: a record with no value or one that is not a
/// request, and one holding text PostgreSQL cannot store (U+0000), which no retry can store.
pub fn decode_message(
    message: &events::rdkafka::message::OwnedMessage,
) -> Result<RegistrationMessage, events::HandlerError> {
    use events::HandlerError;
    use events::rdkafka::Message as _;
    let payload = message
        .payload()
        .ok_or_else(|| HandlerError::reject("malformed_message", "the message has no value"))?;
    let request = serde_json::from_slice(payload).map_err(|error| {
        HandlerError::reject(
            "malformed_message",
            format!("not a registration message: {error}"),
        )
    })?;
    domain::text::check_json_bytes(payload)
        .map_err(|nul| HandlerError::reject("malformed_message", nul.to_string()))?;
    Ok(request)
}

/// What became of a request that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The user exists (now or from an earlier delivery) and `user.registered` is published.
    Completed(UserId),
    /// Refused for good and recorded `failed` (now or earlier).
    Refused { code: String, message: String },
}

/// Why a request was not written; nothing about it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The database is unreachable: hold the request until it is back.
    Unavailable(String),
    /// A lock or statement timeout, a deadlock: worth a few more tries.
    Transient(String),
    /// Anything else (an unexpected database error, `user.registered` not publishable). The
    /// outcome may be stored; a retry finds it and only publishes again.
    Failed(String),
}

impl WriteError {
    pub fn reason(&self) -> &str {
        match self {
            Self::Unavailable(reason) | Self::Transient(reason) | Self::Failed(reason) => reason,
        }
    }
}

impl From<RepoError> for WriteError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::Unavailable(reason) => Self::Unavailable(reason),
            RepoError::Transient(reason) => Self::Transient(reason),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// Writes registration requests and publishes what follows from them.
#[derive(Debug, Clone)]
pub struct RegistrationWriter {
    registrations: Registrations,
    producer: Producer,
    ids: Arc<IdGenerator>,
    events: EventBuilder,
    retry_topic: String,
}

impl RegistrationWriter {
    /// `retry_topic` is `user.registration.dlq`, where requests wait for the dlq-retrier.
    pub fn new(
        registrations: Registrations,
        producer: Producer,
        ids: Arc<IdGenerator>,
        source: &str,
        retry_topic: impl Into<String>,
    ) -> Self {
        Self {
            registrations,
            producer,
            ids,
            events: EventBuilder::new(source),
            retry_topic: retry_topic.into(),
        }
    }

    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    /// Writes `messages` as one batch; one result per message, in order.
    pub async fn write(
        &self,
        messages: &[RegistrationMessage],
    ) -> Vec<Result<Written, WriteError>> {
        self.write_traced(messages, &[]).await
    }

    /// As [`RegistrationWriter::write`], with each message's `user.registered` published
    /// inside `spans[i]`, the span of the record it came in (see `events::headers::message_span`),
    /// so the event's `traceparent` continues that request's trace rather than the batch's.
    /// Messages without a span publish in the current one.
    #[tracing::instrument(
        name = "registration.write",
        skip_all,
        fields(otel.kind = "internal", registrations = messages.len())
    )]
    pub async fn write_traced(
        &self,
        messages: &[RegistrationMessage],
        spans: &[tracing::Span],
    ) -> Vec<Result<Written, WriteError>> {
        let started = Instant::now();
        let mut results: Vec<Option<Result<Written, WriteError>>> = vec![None; messages.len()];
        let mut pending = Vec::new();
        let mut pending_index = Vec::new();
        let mut refusals = Vec::new();
        let mut refused_index = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let Some(id) = self.ids.generate() else {
                let error =
                    WriteError::Unavailable("the Snowflake node lease is not confirmed".into());
                results[index] = Some(Err(error));
                continue;
            };
            match message.to_new_user(id) {
                Ok(user) => {
                    pending.push(PendingRegistration {
                        request_id: message.request_id,
                        user,
                    });
                    pending_index.push(index);
                }
                Err(invalid) => {
                    refusals.push(Refusal {
                        request_id: message.request_id,
                        code: "invalid_request".into(),
                        message: invalid.to_string(),
                        retry_count: message.retry_count,
                    });
                    refused_index.push(index);
                }
            }
        }

        let recorded = self.registrations.record_failures(&refusals).await;
        for (refusal, index) in refusals.into_iter().zip(refused_index) {
            results[index] = Some(match &recorded {
                Ok(()) => {
                    count_refused(&refusal.code);
                    Ok(Written::Refused {
                        code: refusal.code,
                        message: refusal.message,
                    })
                }
                Err(error) => Err(error.clone().into()),
            });
        }

        let transaction_started = Instant::now();
        let registered = self.registrations.register(&pending).await;
        metrics::histogram!("registration_transaction_duration_seconds")
            .record(transaction_started.elapsed().as_secs_f64());
        match registered {
            Ok(outcomes) => {
                let mut to_publish = Vec::new();
                for (outcome, index) in outcomes.into_iter().zip(pending_index) {
                    let message = &messages[index];
                    results[index] = Some(match outcome {
                        RegistrationOutcome::Created(user) => {
                            metrics::counter!("registrations_created_total").increment(1);
                            to_publish.push((index, self.user_registered(message, user.id)));
                            Ok(Written::Completed(user.id))
                        }
                        RegistrationOutcome::AlreadyCompleted(user_id) => {
                            metrics::counter!("registrations_replayed_total").increment(1);
                            // Published again: the first delivery may have stopped before it.
                            to_publish.push((index, self.user_registered(message, user_id)));
                            Ok(Written::Completed(user_id))
                        }
                        RegistrationOutcome::Refused { code, message } => {
                            count_refused(&code);
                            Ok(Written::Refused { code, message })
                        }
                        RegistrationOutcome::AlreadyFailed { code, message } => {
                            metrics::counter!("registrations_replayed_total").increment(1);
                            Ok(Written::Refused { code, message })
                        }
                    });
                }
                let events: Vec<Event> =
                    to_publish.iter().map(|(_, event)| event.clone()).collect();
                // Only an acknowledgement of the user events topic counts: a request whose event
                // is not there is retried (the user exists; the retry only publishes).
                let deliveries = futures::future::join_all(events.iter().zip(&to_publish).map(
                    |(event, (index, _))| {
                        let span = spans
                            .get(*index)
                            .cloned()
                            .unwrap_or_else(tracing::Span::current);
                        self.producer.deliver_event(event).instrument(span)
                    },
                ))
                .await;
                for ((index, _), delivery) in to_publish.into_iter().zip(deliveries) {
                    if let Err(error) = delivery {
                        results[index] = Some(Err(WriteError::Failed(format!(
                            "user.registered not published: {error}"
                        ))));
                    }
                }
            }
            Err(error) => {
                let error = WriteError::from(error);
                for index in pending_index {
                    results[index] = Some(Err(error.clone()));
                }
            }
        }
        metrics::histogram!("registration_write_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        results
            .into_iter()
            .map(|result| result.expect("every message has a result"))
            .collect()
    }

    /// Puts a request on the retry queue (`user.registration.dlq`) with `retry_count` tries made
    /// and the reason of the last failure, and marks it `processing` with that reason. The
    /// record keeps the headers of the one it came in (`carried`: trace context, redrive count;
    /// not the failure headers of a dead letter) and adds `failure_reason`. An error means it is
    /// not queued and the caller must not let the message go.
    pub async fn send_to_retry_queue(
        &self,
        message: &RegistrationMessage,
        carried: Option<&OwnedHeaders>,
        retry_count: u32,
        reason: &str,
    ) -> Result<(), WriteError> {
        let mut queued = message.clone();
        queued.retry_count = retry_count;
        queued.failure_reason = Some(reason.to_owned());
        let record = OutgoingRecord {
            topic: self.retry_topic.clone(),
            partition: None,
            key: Some(message.request_id.to_string().into_bytes()),
            payload: serde_json::to_vec(&queued).expect("registration messages serialize"),
            headers: events::redrive::carried_headers(carried)
                .insert(header("failure_reason", reason)),
        };
        if let Err(error) = self.producer.deliver(record).await {
            return Err(WriteError::Failed(error.to_string()));
        }
        metrics::counter!("registrations_queued_for_retry_total").increment(1);
        tracing::warn!(request_id = %message.request_id, retry_count, reason, "registration queued for retry");
        // The queue holds it now; the status note is for people asking, not for correctness.
        if let Err(error) = self
            .registrations
            .record_retry(message.request_id, retry_count, reason)
            .await
        {
            tracing::warn!(request_id = %message.request_id, %error, "could not note the retry");
        }
        Ok(())
    }

    /// Records that a request failed for good after its last retry.
    pub async fn give_up(
        &self,
        message: &RegistrationMessage,
        tries: u32,
        reason: &str,
    ) -> Result<(), WriteError> {
        self.registrations
            .record_failures(&[Refusal {
                request_id: message.request_id,
                code: "retries_exhausted".into(),
                message: format!("failed {tries} retries; last: {reason}"),
                retry_count: tries,
            }])
            .await?;
        metrics::counter!("registrations_retries_exhausted_total").increment(1);
        tracing::error!(request_id = %message.request_id, tries, reason, "registration failed for good after its last retry");
        Ok(())
    }

    /// `user.registered` for a created user. Its event ID is the request ID, so a replay
    /// publishes the same event again rather than a second one.
    fn user_registered(&self, message: &RegistrationMessage, user_id: UserId) -> Event {
        let registered_at = DateTime::<Utc>::from_timestamp_millis(user_id.unix_millis() as i64)
            .unwrap_or_else(Utc::now);
        let mut event = self.events.build(UserRegistered::through_api(
            user_id.to_string(),
            message.email.clone(),
            message.phone.clone(),
            message.is_email_verified,
            registered_at,
        ));
        event.id = message.request_id;
        event
    }
}

fn count_refused(code: &str) {
    metrics::counter!("registrations_refused_total", "code" => code.to_owned()).increment(1);
}
