//! The dead-letter record of a consumed message: its original key, value and headers, plus
//! headers saying where it came from and why it failed. With `DeadLetterFormat::ErrorInValue`
//! (seed 004's DLQ) the value also carries `error {code, message, timestamp, retryCount}` and the
//! headers `originalTopic`, `originalPartition`, `originalOffset`.

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

/// Seed 004's header names.
pub const ORIGINAL_TOPIC_CAMEL: &str = "originalTopic";
pub const ORIGINAL_PARTITION_CAMEL: &str = "originalPartition";
pub const ORIGINAL_OFFSET_CAMEL: &str = "originalOffset";

/// How a dead letter says why it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadLetterFormat {
    /// The original value unchanged; the reason in headers.
    #[default]
    Headers,
    /// Seed 004: the reason also in the value (a JSON object gains `error`; anything else is
    /// wrapped as `{"originalValue": "...", "error": ...}`) and camelCase origin headers.
    ErrorInValue,
}

pub(crate) fn dead_letter_record(
    message: &OwnedMessage,
    error: &HandlerError,
    attempts: u32,
    group_id: &str,
    dlq_topic: &str,
    format: DeadLetterFormat,
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
    let (partition, offset, attempt_count) = (
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
        .insert(header(ATTEMPT_COUNT, &attempt_count))
        .insert(header(FAILED_AT, &failed_at))
        .insert(header(CONSUMER_GROUP, group_id));
    let original = message.payload().unwrap_or_default();
    let (payload, headers) = match format {
        DeadLetterFormat::Headers => (original.to_vec(), headers),
        DeadLetterFormat::ErrorInValue => (
            value_with_error(original, error, attempts, &failed_at),
            headers
                .insert(header(ORIGINAL_TOPIC_CAMEL, message.topic()))
                .insert(header(ORIGINAL_PARTITION_CAMEL, &partition))
                .insert(header(ORIGINAL_OFFSET_CAMEL, &offset)),
        ),
    };
    OutgoingRecord {
        topic: dlq_topic.to_owned(),
        partition: None,
        key: message.key().map(<[u8]>::to_vec),
        payload,
        headers,
    }
}

fn value_with_error(
    original: &[u8],
    error: &HandlerError,
    attempts: u32,
    failed_at: &str,
) -> Vec<u8> {
    let details = serde_json::json!({
        "code": error.code,
        "message": error.message,
        "timestamp": failed_at,
        "retryCount": attempts.saturating_sub(1),
    });
    let value = match serde_json::from_slice::<serde_json::Value>(original) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("error".into(), details);
            serde_json::Value::Object(object)
        }
        _ => serde_json::json!({
            "originalValue": String::from_utf8_lossy(original),
            "error": details,
        }),
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004s_value_gains_the_error_and_non_json_is_wrapped() {
        let error = HandlerError::reject("VALIDATION_ERROR", "Invalid activity type");
        let value: serde_json::Value = serde_json::from_slice(&value_with_error(
            br#"{"userId":"u1","activityType":"teleport"}"#,
            &error,
            1,
            "2024-01-12T10:30:05Z",
        ))
        .unwrap();
        assert_eq!(value["userId"], "u1");
        assert_eq!(
            value["error"],
            serde_json::json!({"code": "VALIDATION_ERROR", "message": "Invalid activity type",
                               "timestamp": "2024-01-12T10:30:05Z", "retryCount": 0})
        );
        let wrapped: serde_json::Value =
            serde_json::from_slice(&value_with_error(b"garbage", &error, 4, "t")).unwrap();
        assert_eq!(wrapped["originalValue"], "garbage");
        assert_eq!(wrapped["error"]["retryCount"], 3);
    }
}
