//! One batch of `user-activity-logs` messages: decoded and validated, then stored with one
//! insert statement. Invalid events (text PostgreSQL cannot store among them) are rejected:
//! dead-lettered at once, the error inside the value and the origin in headers. An unreachable
//! database holds the batch; a failed statement is narrowed down by the consumer runtime, which
//! splits the batch until the events that cause the failure are alone: those are dead-lettered,
//! the others stored once. A busy database (lock timeout, deadlock) gets the batch again whole
//! after a back-off.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use domain::ActivityEvent;
use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::{BatchHandler, HandlerError};
use repo::{ActivityLogs, RepoError};

use crate::analytics::Analytics;

#[derive(Debug)]
pub(crate) struct ActivityBatches {
    pub(crate) logs: ActivityLogs,
    pub(crate) retention: chrono::Duration,
    /// Days whose partition is known to exist, so a batch checks only new days.
    pub(crate) ready_days: Mutex<HashSet<NaiveDate>>,
    pub(crate) analytics: Analytics,
}

fn decode(
    message: &OwnedMessage,
    now: chrono::DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<ActivityEvent, HandlerError> {
    let payload = message
        .payload()
        .ok_or_else(|| HandlerError::reject("VALIDATION_ERROR", "the message has no value"))?;
    let event: ActivityEvent = serde_json::from_slice(payload).map_err(|error| {
        HandlerError::reject(
            "VALIDATION_ERROR",
            format!("not an activity event: {error}"),
        )
    })?;
    event
        .validate(now, retention)
        .map_err(|invalid| HandlerError::reject("VALIDATION_ERROR", invalid.to_string()))?;
    Ok(event)
}

/// A failed insert of `events` events. A lock or statement timeout or a deadlock says nothing
/// about the events: the consumer runtime tries the batch again whole after a back-off. Any
/// other failure of a statement of several is narrowed down (the runtime splits the batch until
/// the events that cause it are alone); an event that fails alone for a reason other than the
/// database's state is rejected at once, as trying again cannot change it (a systematic
/// failure trips the consumer's dead-letter limit instead of emptying the topic).
fn to_handler_error(error: RepoError, events: usize) -> HandlerError {
    match error {
        RepoError::Unavailable(reason) => HandlerError::unavailable("DATABASE_UNAVAILABLE", reason),
        RepoError::Transient(reason) => HandlerError::transient("DATABASE_BUSY", reason),
        other if events == 1 => HandlerError::reject(
            "VALIDATION_ERROR",
            format!("the database refused the event: {other}"),
        ),
        other => HandlerError::retry("DATABASE_ERROR", other),
    }
}

#[async_trait]
impl BatchHandler for ActivityBatches {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        let now = Utc::now();
        let decoded: Vec<Result<ActivityEvent, HandlerError>> = messages
            .iter()
            .map(|m| decode(m, now, self.retention))
            .collect();
        let events: Vec<ActivityEvent> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().cloned())
            .collect();
        let stored = match self.ensure_partitions(&events).await {
            Ok(()) => {
                let started = std::time::Instant::now();
                let inserted = self.logs.insert_batch(&events).await;
                metrics::histogram!("activity_logs_insert_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                inserted
            }
            Err(error) => Err(error),
        };
        let outcome = match stored {
            Ok(new) => {
                metrics::counter!("activity_logs_stored_total").increment(new.len() as u64);
                metrics::counter!("activity_logs_duplicates_total")
                    .increment((events.len() - new.len()) as u64);
                if let Err(error) = self.analytics.evaluate(&new).await {
                    tracing::warn!(%error, "analytics rules not evaluated for this batch");
                }
                Ok(())
            }
            Err(error) => Err(to_handler_error(error, events.len())),
        };
        decoded
            .into_iter()
            .map(|d| match d {
                Err(rejected) => Err(rejected),
                Ok(_) => outcome.clone(),
            })
            .collect()
    }
}

impl ActivityBatches {
    async fn ensure_partitions(&self, events: &[ActivityEvent]) -> Result<(), RepoError> {
        let days: HashSet<NaiveDate> = events.iter().map(|e| e.timestamp.date_naive()).collect();
        let missing: Vec<NaiveDate> = {
            let ready = self
                .ready_days
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            days.into_iter()
                .filter(|day| !ready.contains(day))
                .collect()
        };
        for day in missing {
            self.logs.ensure_partitions(day, 1).await?;
            self.ready_days
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(day);
        }
        Ok(())
    }
}
