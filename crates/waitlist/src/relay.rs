//! The outbox relay: publishes the domain events the repository wrote with their changes.
//!
//! Runs in every gateway; the repository's relay lock lets one publish at a time, in id order.
//! A round publishes up to `batch` rows concurrently (librdkafka batches them), deletes those
//! that were acknowledged (or dead-lettered by the producer, with the reason), and keeps the
//! rest for the next round. Rounds run back to back while there is a backlog, and otherwise
//! when a request signals new rows (`notifier`) or every `poll_interval`, which covers rows
//! written by other replicas and rows left by a relay that died.

use std::sync::Arc;
use std::time::Duration;

use events::{Backoff, Event, OutgoingRecord, Producer, headers};
use repo::Waitlist;
use repo::waitlist::{OutboxRow, RelayOutcome};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub batch: i64,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct OutboxRelay {
    waitlist: Waitlist,
    producer: Producer,
    config: RelayConfig,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    pub fn new(waitlist: Waitlist, producer: Producer, config: RelayConfig) -> Self {
        Self {
            waitlist,
            producer,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Call after committing outbox rows, to relay them now rather than at the next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Relays until `stop`; a round in progress finishes first.
    pub async fn run(self, stop: CancellationToken) {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut failures = 0;
        loop {
            let wait = match self.round().await {
                Ok(RelayOutcome::Relayed { read, published }) if read > 0 && published == read => {
                    failures = 0;
                    continue;
                }
                Ok(RelayOutcome::Relayed { read, .. }) if read > 0 => {
                    failures += 1;
                    backoff.delay(failures)
                }
                Ok(_) => {
                    failures = 0;
                    self.config.poll_interval
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "outbox relay round failed; will retry");
                    backoff.delay(failures)
                }
            };
            tokio::select! {
                () = stop.cancelled() => {
                    // What the last requests wrote goes out now rather than with another replica.
                    if let Err(error) = self.round().await {
                        tracing::warn!(%error, "last outbox relay round failed");
                    }
                    return;
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round; public for tests.
    pub async fn round(&self) -> Result<RelayOutcome, repo::RepoError> {
        let producer = self.producer.clone();
        let outcome = self
            .waitlist
            .relay_outbox(self.config.batch, move |rows| publish(producer, rows))
            .await?;
        if let RelayOutcome::Relayed { published, .. } = outcome {
            metrics::counter!("waitlist_outbox_relayed_total").increment(published as u64);
        }
        Ok(outcome)
    }
}

/// Publishes the rows (in outbox order, all at once so librdkafka batches them); returns the IDs
/// that are done. A row the topic did not acknowledge (refused, or no answer) stays in the
/// outbox for the next round, and so do the later rows of its key, so that a campaign's events
/// reach the topic in order once more (consumers are idempotent; a copy that went out this round
/// is read twice). A row never counts as published because a copy went somewhere else.
async fn publish(producer: Producer, rows: Vec<OutboxRow>) -> Vec<i64> {
    let sends = rows.iter().map(|row| {
        let producer = producer.clone();
        // Each event goes out in the trace of the request that wrote it.
        let span = tracing::info_span!(
            "outbox.relay",
            otel.kind = "internal",
            outbox_id = row.id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        headers::continue_trace(&span, row.traceparent.as_deref());
        let record = span.in_scope(|| record_for(row));
        async move { producer.deliver(record).await }.instrument(span)
    });
    let outcomes = futures::future::join_all(sends).await;
    let mut held_keys = std::collections::HashSet::new();
    let mut done = Vec::with_capacity(rows.len());
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Ok(_) if !held_keys.contains(row.key.as_str()) => done.push(row.id),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(outbox_id = row.id, %error, "outbox event not published; kept, with the later events of its key");
                held_keys.insert(row.key.as_str());
            }
        }
    }
    done
}

/// The record of a row: its JSON exactly as stored, its key, and the event's headers.
fn record_for(row: &OutboxRow) -> OutgoingRecord {
    let payload = serde_json::to_vec(&row.payload).expect("JSON values serialize");
    let headers = match serde_json::from_slice::<Event>(&payload) {
        Ok(mut event) => {
            event.source = Some("gateway".into());
            headers::event_headers(&event)
        }
        Err(_) => events::rdkafka::message::OwnedHeaders::new(),
    };
    OutgoingRecord {
        topic: row.topic.clone(),
        partition: None,
        key: Some(row.key.clone().into_bytes()),
        payload,
        headers,
    }
}
