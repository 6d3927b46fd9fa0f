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

/// Set on a dead letter whose value was cut to fit `dead_letter_max_bytes`: `"true"`.
pub const VALUE_TRUNCATED: &str = "value_truncated";
/// The size of the original value in bytes, on a dead letter whose value was cut or dropped.
pub const ORIGINAL_VALUE_BYTES: &str = "original_value_bytes";
/// Set on a dead letter whose value was left out entirely: `"true"`.
pub const VALUE_DROPPED: &str = "value_dropped";
/// How many of the original headers were left out to make the dead letter fit.
pub const ORIGINAL_HEADERS_DROPPED: &str = "original_headers_dropped";

/// The longest `error_message` header, in bytes; a longer message is cut (at a character
/// boundary) and ends in `…`.
const MAX_ERROR_MESSAGE_BYTES: usize = 8 * 1024;
/// Room left for what librdkafka adds to a record (its header framing, timestamps).
const RECORD_OVERHEAD: usize = 512;

/// How much of the original value a dead letter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValuePolicy {
    /// All of it if the record fits in `max_bytes`, otherwise as much as fits.
    FitTo { max_bytes: usize },
    /// None, nor the original headers (after the broker refused the trimmed record as too
    /// large).
    Drop,
}

pub(crate) fn dead_letter_record(
    message: &OwnedMessage,
    error: &HandlerError,
    attempts: u32,
    group_id: &str,
    dlq_topic: &str,
    format: DeadLetterFormat,
    policy: ValuePolicy,
) -> OutgoingRecord {
    let (partition, offset, attempt_count) = (
        message.partition().to_string(),
        message.offset().to_string(),
        attempts.to_string(),
    );
    let failed_at = crate::headers::now_rfc3339();
    let error_message = cut_at_char(&error.message, MAX_ERROR_MESSAGE_BYTES);
    let error = &HandlerError {
        kind: error.kind,
        code: cut_at_char(&error.code, 256),
        message: error_message,
    };
    let mut ours: Vec<(&str, String)> = vec![
        (ORIGINAL_TOPIC, message.topic().to_owned()),
        (ORIGINAL_PARTITION, partition.clone()),
        (ORIGINAL_OFFSET, offset.clone()),
        (ERROR_CODE, error.code.clone()),
        (ERROR_MESSAGE, error.message.clone()),
        (ATTEMPT_COUNT, attempt_count),
        (FAILED_AT, failed_at.clone()),
        (CONSUMER_GROUP, group_id.to_owned()),
    ];
    if format == DeadLetterFormat::ErrorInValue {
        ours.push((ORIGINAL_TOPIC_CAMEL, message.topic().to_owned()));
        ours.push((ORIGINAL_PARTITION_CAMEL, partition));
        ours.push((ORIGINAL_OFFSET_CAMEL, offset));
    }
    let original_headers: Vec<(String, Option<Vec<u8>>)> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let key = message.key().map(<[u8]>::to_vec);
    let original = message.payload().unwrap_or_default();

    let size_of_ours: usize = ours.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 128;
    let size_of_originals: usize = original_headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let key_len = key.as_ref().map_or(0, Vec::len);
    let build_value = |original: &[u8]| match format {
        DeadLetterFormat::Headers => original.to_vec(),
        DeadLetterFormat::ErrorInValue => value_with_error(original, error, attempts, &failed_at),
    };

    let (payload, keep_original_headers) = match policy {
        ValuePolicy::Drop => {
            ours.push((VALUE_DROPPED, "true".into()));
            ours.push((ORIGINAL_VALUE_BYTES, original.len().to_string()));
            (build_value(b""), false)
        }
        ValuePolicy::FitTo { max_bytes } => {
            let whole = build_value(original);
            let fixed = RECORD_OVERHEAD + key_len + size_of_ours;
            if fixed + size_of_originals + whole.len() <= max_bytes {
                (whole, true)
            } else {
                // Original headers go first only when they alone leave no room for a value.
                let keep_headers = fixed + size_of_originals + max_bytes / 4 <= max_bytes;
                let budget = max_bytes
                    .saturating_sub(fixed)
                    .saturating_sub(if keep_headers { size_of_originals } else { 0 });
                if whole.len() <= budget {
                    // Without the original headers, the value fits whole.
                    (whole, keep_headers)
                } else {
                    ours.push((VALUE_TRUNCATED, "true".into()));
                    ours.push((ORIGINAL_VALUE_BYTES, original.len().to_string()));
                    (
                        trimmed_value(original, format, error, attempts, &failed_at, budget),
                        keep_headers,
                    )
                }
            }
        }
    };
    let mut headers = OwnedHeaders::new();
    if keep_original_headers {
        for (k, v) in &original_headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: v.as_deref(),
            });
        }
    } else {
        ours.push((ORIGINAL_HEADERS_DROPPED, original_headers.len().to_string()));
    }
    for (k, v) in &ours {
        headers = headers.insert(header(k, v));
    }
    OutgoingRecord {
        topic: dlq_topic.to_owned(),
        partition: None,
        key,
        payload,
        headers,
    }
}

/// The longest prefix of the original whose dead-letter value fits in `budget` bytes. A value
/// with the error inside (`ErrorInValue`) becomes `{"originalValue": "<prefix as text>", "originalValueTruncated":
/// true, "error": …}` (JSON escaping can grow a byte to six, hence the search).
fn trimmed_value(
    original: &[u8],
    format: DeadLetterFormat,
    error: &HandlerError,
    attempts: u32,
    failed_at: &str,
    budget: usize,
) -> Vec<u8> {
    match format {
        DeadLetterFormat::Headers => original[..budget.min(original.len())].to_vec(),
        DeadLetterFormat::ErrorInValue => {
            let mut keep = budget.min(original.len());
            loop {
                let prefix = String::from_utf8_lossy(&original[..keep]);
                let value = serde_json::to_vec(&serde_json::json!({
                    "originalValue": prefix,
                    "originalValueTruncated": true,
                    "error": error_details(error, attempts, failed_at),
                }))
                .expect("JSON values serialize");
                if value.len() <= budget || keep == 0 {
                    return value;
                }
                keep = keep.min(budget) / 2;
            }
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn cut_at_char(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn error_details(error: &HandlerError, attempts: u32, failed_at: &str) -> serde_json::Value {
    serde_json::json!({
        "code": error.code,
        "message": error.message,
        "timestamp": failed_at,
        "retryCount": attempts.saturating_sub(1),
    })
}

fn value_with_error(
    original: &[u8],
    error: &HandlerError,
    attempts: u32,
    failed_at: &str,
) -> Vec<u8> {
    let details = error_details(error, attempts, failed_at);
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

    fn message(value: &[u8], headers: usize) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for i in 0..headers {
            h = h.insert(header(&format!("h{i}"), &"v".repeat(1000)));
        }
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(b"key".to_vec()),
            "user-activity-logs".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            42,
            Some(h),
        )
    }

    fn size(record: &OutgoingRecord) -> usize {
        record.key.as_ref().map_or(0, Vec::len)
            + record.payload.len()
            + record
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }

    fn header_of<'a>(record: &'a OutgoingRecord, key: &str) -> Option<&'a str> {
        crate::headers::header_str(&record.headers, key)
    }

    #[test]
    fn oversized_dead_letters_are_trimmed_to_fit_and_say_so() {
        let error = HandlerError::reject("VALIDATION_ERROR", "x".repeat(100_000));
        // 300,000 bytes of 0x01: six bytes each once escaped into JSON.
        let value = vec![1u8; 300_000];
        for format in [DeadLetterFormat::Headers, DeadLetterFormat::ErrorInValue] {
            let record = dead_letter_record(
                &message(&value, 0),
                &error,
                1,
                "g",
                "dlq",
                format,
                ValuePolicy::FitTo { max_bytes: 100_000 },
            );
            assert!(size(&record) <= 100_000, "{format:?}: {}", size(&record));
            assert_eq!(header_of(&record, VALUE_TRUNCATED), Some("true"));
            assert_eq!(header_of(&record, ORIGINAL_VALUE_BYTES), Some("300000"));
            assert!(header_of(&record, ERROR_MESSAGE).unwrap().ends_with('…'));
            assert!(!record.payload.is_empty(), "{format:?} keeps a prefix");
            if format == DeadLetterFormat::ErrorInValue {
                let value: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
                assert_eq!(value["originalValueTruncated"], true);
                assert_eq!(value["error"]["code"], "VALIDATION_ERROR");
            }
        }
        // A small one is whole, without the markers.
        let record = dead_letter_record(
            &message(b"{}", 2),
            &error,
            1,
            "g",
            "dlq",
            DeadLetterFormat::Headers,
            ValuePolicy::FitTo { max_bytes: 100_000 },
        );
        assert_eq!(record.payload, b"{}");
        assert_eq!(header_of(&record, VALUE_TRUNCATED), None);
        assert!(header_of(&record, "h1").is_some());

        // Headers too large to keep: left out and counted.
        let record = dead_letter_record(
            &message(b"{}", 150),
            &error,
            1,
            "g",
            "dlq",
            DeadLetterFormat::Headers,
            ValuePolicy::FitTo { max_bytes: 100_000 },
        );
        assert!(size(&record) <= 100_000);
        assert_eq!(header_of(&record, ORIGINAL_HEADERS_DROPPED), Some("150"));
        assert_eq!(record.payload, b"{}", "the value was not cut");
        assert_eq!(header_of(&record, VALUE_TRUNCATED), None);

        // Dropped: no value, the size kept.
        let record = dead_letter_record(
            &message(&value, 0),
            &error,
            1,
            "g",
            "dlq",
            DeadLetterFormat::Headers,
            ValuePolicy::Drop,
        );
        assert!(record.payload.is_empty());
        assert_eq!(header_of(&record, VALUE_DROPPED), Some("true"));
        assert_eq!(header_of(&record, ORIGINAL_VALUE_BYTES), Some("300000"));
    }
}
