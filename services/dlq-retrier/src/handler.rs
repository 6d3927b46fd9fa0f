//! One request from `user.registration.dlq`: wait until its retry is due, try it, and then
//! complete it, queue it again with one more try counted, or give up and mark it `failed`.
//!
//! The wait happens in the handler, on the consumer runtime's worker pool, while the runtime
//! keeps polling: heartbeats and rebalances go on. A try made while the database is unreachable
//! does not count: the runtime holds the message until the database is back.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::{Handler, HandlerError};
use registration::{RegistrationWriter, WriteError, Written};

#[derive(Debug)]
pub(crate) struct RetryHandler {
    pub(crate) writer: RegistrationWriter,
    pub(crate) retry_delay: Duration,
    pub(crate) max_retries: u32,
}

#[async_trait]
impl Handler for RetryHandler {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let request = registration::decode_message(message)?;
        wait_until_due(message, self.retry_delay).await;

        let try_number = request.retry_count + 1;
        metrics::counter!("registration_retries_total").increment(1);
        let failure = match self
            .writer
            .write(std::slice::from_ref(&request))
            .await
            .remove(0)
        {
            Ok(Written::Completed(user_id)) => {
                metrics::counter!("registration_retries_succeeded_total").increment(1);
                tracing::info!(request_id = %request.request_id, %user_id, try_number, "registration completed on retry");
                return Ok(());
            }
            Ok(Written::Refused { code, message }) => {
                tracing::info!(request_id = %request.request_id, code, message, "registration refused on retry");
                return Ok(());
            }
            Err(WriteError::Unavailable(reason)) => {
                return Err(HandlerError::unavailable("database_unavailable", reason));
            }
            Err(WriteError::Transient(reason) | WriteError::Failed(reason)) => reason,
        };
        let outcome = if try_number >= self.max_retries {
            self.writer.give_up(&request, try_number, &failure).await
        } else {
            self.writer
                .send_to_retry_queue(&request, message.headers(), try_number, &failure)
                .await
        };
        outcome.map_err(|error| match error {
            WriteError::Unavailable(reason) => {
                HandlerError::unavailable("database_unavailable", reason)
            }
            other => HandlerError::retry("retry_bookkeeping_failed", other.reason()),
        })
    }
}

/// Sleeps until `delay` after the message was queued (its timestamp); at once if that is past
/// or the message has no timestamp.
async fn wait_until_due(message: &OwnedMessage, delay: Duration) {
    let Some(queued_at) = message.timestamp().to_millis() else {
        return;
    };
    let due = queued_at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let wait = due - Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    }
}
