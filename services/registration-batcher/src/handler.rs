//! One batch of `user.registration` messages: decoded, written with one `register` call, and
//! each message's outcome turned into what the consumer runtime should do with it.
//!
//! - malformed (not JSON, wrong fields): rejected, so the runtime dead-letters it to
//!   `user.registration.dlq` with the reason in its headers;
//! - the database unreachable: `unavailable`, so the runtime holds the batch and pauses;
//! - a lock or statement timeout while the database is up: the batch is retried one request at
//!   a time, to find the requests that fail, `TRANSIENT_RETRY_ATTEMPTS` times each, and those
//!   still failing go to the retry queue with `retry_count` 0 and the reason;
//! - anything else unexpected: `retry`, the runtime's retry policy and then its DLQ.

use std::time::Duration;

use async_trait::async_trait;
use domain::RegistrationMessage;
use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::{BatchHandler, HandlerError};
use registration::{RegistrationWriter, WriteError, Written};

#[derive(Debug)]
pub(crate) struct RegistrationBatches {
    pub(crate) writer: RegistrationWriter,
    /// The consumer group, an attribute of the messages' spans.
    pub(crate) group_id: String,
    pub(crate) transient_attempts: u32,
}

fn to_handler_error(error: WriteError) -> HandlerError {
    match error {
        WriteError::Unavailable(reason) => {
            HandlerError::unavailable("database_unavailable", reason)
        }
        WriteError::Transient(reason) => HandlerError::retry("database_transient", reason),
        WriteError::Failed(reason) => HandlerError::retry("write_failed", reason),
    }
}

#[async_trait]
impl BatchHandler for RegistrationBatches {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        let decoded: Vec<Result<RegistrationMessage, HandlerError>> =
            messages.iter().map(registration::decode_message).collect();
        let requests: Vec<RegistrationMessage> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().cloned())
            .collect();
        // Each request's user.registered continues the trace of the request that queued it.
        let spans: Vec<tracing::Span> = messages
            .iter()
            .zip(&decoded)
            .filter(|(_, decoded)| decoded.is_ok())
            .map(|(message, _)| events::headers::message_span(&self.group_id, message))
            .collect();
        let mut written = self
            .writer
            .write_traced(&requests, &spans)
            .await
            .into_iter();
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut requests = requests.iter();
        for (message, decoded) in messages.iter().zip(decoded) {
            let outcome = match decoded {
                Err(rejected) => Err(rejected),
                Ok(_) => {
                    let request = requests.next().expect("one request per decoded message");
                    match written.next().expect("one result per request") {
                        Ok(written) => {
                            log_written(request, &written);
                            Ok(())
                        }
                        Err(WriteError::Transient(reason)) => {
                            self.isolate(request, message, reason).await
                        }
                        Err(other) => Err(to_handler_error(other)),
                    }
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

impl RegistrationBatches {
    /// Writes one request of a batch that failed transiently on its own, a few times, then
    /// sends it to the retry queue if it still fails.
    async fn isolate(
        &self,
        request: &RegistrationMessage,
        message: &OwnedMessage,
        mut reason: String,
    ) -> Result<(), HandlerError> {
        for attempt in 1..=self.transient_attempts {
            match self
                .writer
                .write(std::slice::from_ref(request))
                .await
                .remove(0)
            {
                Ok(written) => {
                    log_written(request, &written);
                    return Ok(());
                }
                Err(WriteError::Transient(again)) => {
                    reason = again;
                    tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt - 1)).await;
                }
                Err(other) => return Err(to_handler_error(other)),
            }
        }
        self.writer
            .send_to_retry_queue(request, message.headers(), 0, &reason)
            .await
            .map_err(to_handler_error)
    }
}

fn log_written(request: &RegistrationMessage, written: &Written) {
    match written {
        Written::Completed(user_id) => {
            tracing::debug!(request_id = %request.request_id, %user_id, "registration completed");
        }
        Written::Refused { code, message } => {
            tracing::info!(request_id = %request.request_id, code, message, "registration refused");
        }
    }
}
