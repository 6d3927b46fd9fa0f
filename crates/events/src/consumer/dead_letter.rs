//! The dead-letter record of a consumed message: its original key, value and headers, plus
//! headers saying where it came from and why it failed.

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};

use super::HandlerError;
use crate::OutgoingRecord;
use crate::headers::header;

pub const ORIGINAL_TOPIC: &str = "original_topic";
pub const ORIGINAL_PARTITION: &str = "original_partition";
pub const ORIGINAL_OFFSET: &str = "original_offset";
pub const ERROR_CODE: &str = "error_code";
pub const ERROR_MESSAGE: &str = "error_message";
pub const ATTEMPT_COUNT: &str = "attempt_count";
pub const FAILED_AT: &str = "failed_at";
pub const CONSUMER_GROUP: &str = "consumer_group";

pub(crate) fn dead_letter_record(
    message: &OwnedMessage,
    error: &HandlerError,
    attempts: u32,
    group_id: &str,
    dlq_topic: &str,
) -> OutgoingRecord {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let (partition, offset, attempts) = (
        message.partition().to_string(),
        message.offset().to_string(),
        attempts.to_string(),
    );
    let failed_at = crate::headers::now_rfc3339();
    let headers = headers
        .insert(header(ORIGINAL_TOPIC, message.topic()))
        .insert(header(ORIGINAL_PARTITION, &partition))
        .insert(header(ORIGINAL_OFFSET, &offset))
        .insert(header(ERROR_CODE, &error.code))
        .insert(header(ERROR_MESSAGE, &error.message))
        .insert(header(ATTEMPT_COUNT, &attempts))
        .insert(header(FAILED_AT, &failed_at))
        .insert(header(CONSUMER_GROUP, group_id));
    OutgoingRecord {
        topic: dlq_topic.to_owned(),
        partition: None,
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}
