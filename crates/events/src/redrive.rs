//! Dead letters read back, for an operator to list, inspect and redrive.
//!
//! The system writes four kinds of dead letter, and [`DeadLetter::parse`] reads each:
//!
//! | format | written by | where it came from | why it failed |
//! |---|---|---|---|
//! | [`Format::Headers`] | the consumer runtime (`waitlist.dlq`, `events-dlq`, malformed registrations) | `original_topic`, `original_partition`, `original_offset`, `consumer_group` headers | `error_code`, `error_message`, `attempt_count`, `failed_at` headers |
//! | [`Format::ErrorInValue`] | the activity-log processor (`user-activity-logs-dlq`) | the same headers, and `originalTopic`/`originalPartition`/`originalOffset` | the value's `error {code, message, timestamp, retryCount}` |
//! | [`Format::ProducerEnvelope`] | the producer, for a record it could not deliver (`events-dlq`) | the value's `topic` | the value's `failure_reason`, `attempt_count`, `first_attempt`, `last_attempt`; the record is the value's `event` |
//! | [`Format::RegistrationRetry`] | the registration writer (`user.registration.dlq`, the retry queue) | the registration topic | the value's `failure_reason` and `retry_count` |
//!
//! A redrive ([`DeadLetter::redrive_record`]) sends the original record back to its original
//! topic: its original key, value and headers (the dead-letter headers removed), plus
//! [`REDRIVE_COUNT`] (one more than the dead letter had), [`REDRIVEN_FROM`] (`topic/partition/offset`
//! of the dead letter) and, when one consumer group failed it, [`REDRIVE_GROUP`]: the consumer
//! runtime of every other group on that topic skips the record, so a redrive reprocesses it only
//! where it failed.

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use serde_json::{Value, json};

use crate::OutgoingRecord;
use crate::consumer::dead_letter as dl;

/// How many times the record was redriven before, on a redriven record (a decimal number).
pub const REDRIVE_COUNT: &str = "redrive_count";
/// The consumer group a redriven record is for; other groups on its topic skip it.
pub const REDRIVE_GROUP: &str = "redrive_group";
/// `topic/partition/offset` of the dead letter a redriven record was sent from.
pub const REDRIVEN_FROM: &str = "redriven_from";

/// Headers a dead letter adds to the original record, removed again when it is redriven.
const FAILURE_HEADERS: &[&str] = &[
    dl::ORIGINAL_TOPIC,
    dl::ORIGINAL_PARTITION,
    dl::ORIGINAL_OFFSET,
    dl::ERROR_CODE,
    dl::ERROR_MESSAGE,
    dl::ATTEMPT_COUNT,
    dl::FAILED_AT,
    dl::CONSUMER_GROUP,
    dl::ORIGINAL_TOPIC_CAMEL,
    dl::ORIGINAL_PARTITION_CAMEL,
    dl::ORIGINAL_OFFSET_CAMEL,
    dl::VALUE_TRUNCATED,
    dl::ORIGINAL_VALUE_BYTES,
    dl::VALUE_DROPPED,
    dl::ORIGINAL_HEADERS_DROPPED,
    "failure_reason",
    "event_truncated",
    "event_dropped",
];

/// `headers` without what a dead letter or a redrive added, but with the redrive count: for a
/// record that goes on to another queue (the registration retry queue), so that a redriven
/// request that fails again still counts its redrives.
pub fn carried_headers<H: Headers>(headers: Option<&H>) -> OwnedHeaders {
    let mut carried = OwnedHeaders::new();
    for header in headers.iter().flat_map(|h| h.iter()) {
        if !FAILURE_HEADERS.contains(&header.key) && header.key != REDRIVE_GROUP {
            carried = carried.insert(header);
        }
    }
    carried
}

/// Which writer's format a dead letter is in (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Headers,
    ErrorInValue,
    ProducerEnvelope,
    RegistrationRetry,
    /// Not a dead letter this system writes; listed, never redriven.
    Unknown,
}

/// One record of a dead-letter topic, read back.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When the dead letter was written (the record's timestamp).
    pub timestamp: Option<DateTime<Utc>>,
    pub format: Format,
    pub key: Option<Vec<u8>>,
    /// Every header, in order, as stored.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
    /// Where the record goes back to; `None` when the dead letter does not say.
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    /// The consumer group that failed it (consumer dead letters only).
    pub consumer_group: Option<String>,
    /// A short code: the handler's (`malformed_message`, `VALIDATION_ERROR`, …), `publish_failed`
    /// for a record the producer could not deliver, `registration_failed` for a registration in
    /// the retry queue, `unknown` otherwise.
    pub error_code: String,
    pub error_message: Option<String>,
    /// Attempts made before it was dead-lettered (retries of the retry queue included).
    pub attempts: Option<u32>,
    /// How often it was redriven before.
    pub redrive_count: u32,
    /// Why the original record cannot be rebuilt from it, if it cannot (a value cut to fit).
    pub incomplete: Option<String>,
}

/// Why a dead letter is not redriven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("redriven {count} times already (the limit is {max})")]
    TooManyRedrives { count: u32, max: u32 },
    #[error("the original record cannot be rebuilt: {0}")]
    Incomplete(String),
    #[error("the dead letter does not say where it came from")]
    NoOriginalTopic,
    #[error("not a dead letter this system writes")]
    UnknownFormat,
}

impl Refusal {
    /// A stable code for reports: `too_many_redrives`, `incomplete`, `no_original_topic`,
    /// `unknown_format`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyRedrives { .. } => "too_many_redrives",
            Self::Incomplete(_) => "incomplete",
            Self::NoOriginalTopic => "no_original_topic",
            Self::UnknownFormat => "unknown_format",
        }
    }
}

/// The last value of header `key`, as text: a dead letter of a dead letter carries each of its
/// headers once per hop, and the last is the newest.
fn last_header<'a>(headers: &'a [(String, Option<Vec<u8>>)], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl DeadLetter {
    /// Reads a dead-letter record. `registration_topic` is where registrations of the retry
    /// queue go back to (their records do not name it).
    pub fn parse(message: &OwnedMessage, registration_topic: &str) -> Self {
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let value = message.payload().map(<[u8]>::to_vec);
        let json: Option<serde_json::Map<String, Value>> = value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            .and_then(|v| match v {
                Value::Object(object) => Some(object),
                _ => None,
            });
        let mut letter = Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
            format: Format::Unknown,
            key: message.key().map(<[u8]>::to_vec),
            original_topic: None,
            original_partition: None,
            original_offset: None,
            consumer_group: None,
            error_code: "unknown".into(),
            error_message: None,
            attempts: None,
            redrive_count: last_header(&headers, REDRIVE_COUNT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            incomplete: None,
            headers,
            value,
        };
        let h = |key: &str| last_header(&letter.headers, key).map(str::to_owned);
        let has = |object: &serde_json::Map<String, Value>, keys: &[&str]| {
            keys.iter().all(|k| object.contains_key(*k))
        };
        if let Some(group) = h(dl::CONSUMER_GROUP) {
            letter.format = if h(dl::ORIGINAL_TOPIC_CAMEL).is_some() {
                Format::ErrorInValue
            } else {
                Format::Headers
            };
            letter.consumer_group = Some(group);
            letter.original_topic = h(dl::ORIGINAL_TOPIC);
            letter.original_partition = h(dl::ORIGINAL_PARTITION).and_then(|p| p.parse().ok());
            letter.original_offset = h(dl::ORIGINAL_OFFSET).and_then(|o| o.parse().ok());
            letter.error_code = h(dl::ERROR_CODE).unwrap_or_else(|| "unknown".into());
            letter.error_message = h(dl::ERROR_MESSAGE);
            letter.attempts = h(dl::ATTEMPT_COUNT).and_then(|n| n.parse().ok());
            if h(dl::VALUE_DROPPED).is_some() {
                letter.incomplete = Some("the value was left out to fit the topic".into());
            } else if h(dl::VALUE_TRUNCATED).is_some() {
                letter.incomplete = Some("the value was cut to fit the topic".into());
            } else if h(dl::ORIGINAL_HEADERS_DROPPED).is_some_and(|n| n != "0") {
                letter.incomplete =
                    Some("the original headers were left out to fit the topic".into());
            }
        } else if let Some(object) = json
            .as_ref()
            .filter(|o| has(o, &["topic", "failure_reason", "attempt_count", "event"]))
        {
            letter.format = Format::ProducerEnvelope;
            letter.original_topic = object["topic"].as_str().map(str::to_owned);
            letter.error_code = "publish_failed".into();
            letter.error_message = object["failure_reason"].as_str().map(str::to_owned);
            letter.attempts = object["attempt_count"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok());
            if object.get("event_truncated") == Some(&Value::Bool(true))
                || h("event_truncated").is_some()
                || h("event_dropped").is_some()
            {
                letter.incomplete = Some("the event was cut to fit the topic".into());
            }
        } else if let Some(object) = json
            .as_ref()
            .filter(|o| has(o, &["request_id", "retry_count"]))
        {
            letter.format = Format::RegistrationRetry;
            letter.original_topic = Some(registration_topic.to_owned());
            letter.error_code = "registration_failed".into();
            letter.error_message = object
                .get("failure_reason")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| h("failure_reason"));
            // The tries of the retry queue, and the first one.
            letter.attempts = object["retry_count"]
                .as_u64()
                .and_then(|n| u32::try_from(n + 1).ok());
        }
        if letter.format == Format::ErrorInValue
            && let Some(object) = &json
        {
            if let Some(error) = object.get("error").and_then(Value::as_object) {
                if let Some(code) = error.get("code").and_then(Value::as_str) {
                    letter.error_code = code.to_owned();
                }
                if let Some(message) = error.get("message").and_then(Value::as_str) {
                    letter.error_message = Some(message.to_owned());
                }
            }
            if object.get("originalValueTruncated") == Some(&Value::Bool(true)) {
                letter.incomplete = Some("the value was cut to fit the topic".into());
            } else if object
                .get("originalValue")
                .and_then(Value::as_str)
                .is_some_and(|v| v.contains('\u{FFFD}'))
            {
                letter.incomplete = Some("the value was not UTF-8 and was stored as text".into());
            }
        }
        letter
    }

    /// `topic/partition/offset` of the dead letter: its identity in the redrive ledger.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// `<group>/<topic>/<partition>/<offset>` of the record a consumer group failed: the same
    /// record dead-lettered twice (a member that stopped before committing, the next one
    /// dead-lettering it again) is redriven once. `None` for the other formats.
    pub fn original_id(&self) -> Option<String> {
        Some(format!(
            "{}/{}/{}/{}",
            self.consumer_group.as_ref()?,
            self.original_topic.as_ref()?,
            self.original_partition?,
            self.original_offset?
        ))
    }

    /// For a registration of the retry queue, its request ID: the queue holds one record per
    /// try of a request, and only the newest of them is redriven.
    pub fn supersede_key(&self) -> Option<String> {
        (self.format == Format::RegistrationRetry)
            .then(|| {
                let value: Value = serde_json::from_slice(self.value.as_deref()?).ok()?;
                value["request_id"].as_str().map(str::to_owned)
            })
            .flatten()
    }

    /// The original value, rebuilt from the dead letter.
    pub fn original_value(&self) -> Result<Vec<u8>, Refusal> {
        if let Some(reason) = &self.incomplete {
            return Err(Refusal::Incomplete(reason.clone()));
        }
        let value = self.value.clone().unwrap_or_default();
        match self.format {
            Format::Unknown => Err(Refusal::UnknownFormat),
            Format::Headers | Format::RegistrationRetry => Ok(value),
            Format::ErrorInValue => {
                let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&value) else {
                    return Err(Refusal::Incomplete(
                        "the value is not the JSON it wrote".into(),
                    ));
                };
                object.remove("error");
                if object.len() == 1
                    && let Some(Value::String(original)) = object.get("originalValue")
                {
                    return Ok(original.clone().into_bytes());
                }
                Ok(serde_json::to_vec(&object).expect("JSON values serialize"))
            }
            Format::ProducerEnvelope => {
                let Ok(envelope) = serde_json::from_slice::<Value>(&value) else {
                    return Err(Refusal::UnknownFormat);
                };
                match (&envelope["event"], envelope["event_encoding"].as_str()) {
                    (Value::String(hex_text), Some("hex")) => {
                        decode_hex(hex_text).ok_or_else(|| {
                            Refusal::Incomplete("the event's hex encoding is broken".into())
                        })
                    }
                    (Value::String(text), _) => Ok(text.clone().into_bytes()),
                    (event, _) => Ok(serde_json::to_vec(event).expect("JSON values serialize")),
                }
            }
        }
    }

    /// The record that sends the dead letter back to its original topic (see the module
    /// documentation), unless it was redriven `max_redrives` times already or cannot be
    /// rebuilt.
    pub fn redrive_record(&self, max_redrives: u32) -> Result<OutgoingRecord, Refusal> {
        if self.redrive_count >= max_redrives {
            return Err(Refusal::TooManyRedrives {
                count: self.redrive_count,
                max: max_redrives,
            });
        }
        let payload = self.original_value()?;
        let topic = self
            .original_topic
            .clone()
            .ok_or(Refusal::NoOriginalTopic)?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &self.headers {
            if !FAILURE_HEADERS.contains(&key.as_str())
                && ![REDRIVE_COUNT, REDRIVE_GROUP, REDRIVEN_FROM].contains(&key.as_str())
            {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                });
            }
        }
        headers = headers
            .insert(crate::headers::header(
                REDRIVE_COUNT,
                &(self.redrive_count + 1).to_string(),
            ))
            .insert(crate::headers::header(REDRIVEN_FROM, &self.id()));
        if let Some(group) = &self.consumer_group {
            headers = headers.insert(crate::headers::header(REDRIVE_GROUP, group));
        }
        Ok(OutgoingRecord {
            topic,
            partition: None,
            key: self.key.clone(),
            payload,
            headers,
        })
    }

    /// A summary for listings: where it came from, why it failed, how often it was redriven.
    /// The error message is cut to 500 characters.
    pub fn summary(&self) -> Value {
        json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "format": self.format,
            "key": self.key.as_deref().map(printable),
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "consumer_group": self.consumer_group,
            "error_code": self.error_code,
            "error_message": self.error_message.as_deref().map(|m| cut(m, 500)),
            "attempts": self.attempts,
            "redrive_count": self.redrive_count,
            "redriven_from": last_header(&self.headers, REDRIVEN_FROM),
            "incomplete": self.incomplete,
        })
    }

    /// Everything: the summary, the whole error message, every header, the value (JSON when it
    /// is JSON, text when UTF-8, else `hex:` and hex digits), and what a redrive would send or
    /// why it would not.
    pub fn details(&self, max_redrives: u32) -> Value {
        let mut details = self.summary();
        details["error_message"] = json!(self.error_message);
        details["original_id"] = json!(self.original_id());
        details["headers"] = self
            .headers
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v.as_deref().map(printable)}))
            .collect();
        details["value"] = self
            .value
            .as_deref()
            .map_or(Value::Null, |v| redacted(json_or_text(v)));
        details["redrive"] = match self.redrive_record(max_redrives) {
            Ok(record) => json!({
                "topic": record.topic,
                "key": record.key.as_deref().map(printable),
                "value": redacted(json_or_text(&record.payload)),
                "headers": record.headers.iter()
                    .map(|h| json!({"key": h.key, "value": h.value.map(printable)}))
                    .collect::<Vec<_>>(),
            }),
            Err(refusal) => json!({"refused": refusal.code(), "reason": refusal.to_string()}),
        };
        details
    }
}

/// Keys whose values are secrets (a registration's password hash, a campaign's webhook
/// secret), shown as `[redacted]`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "client_secret",
    "webhook_secret",
];

fn redacted(mut value: Value) -> Value {
    match &mut value {
        Value::String(text) => *text = redacted_text(text),
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                *field = if SECRET_KEYS.contains(&key.as_str()) && !field.is_null() {
                    Value::String("[redacted]".into())
                } else {
                    redacted(std::mem::take(field))
                };
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = redacted(std::mem::take(item));
            }
        }
        _ => {}
    }
    value
}

/// `text` (a value that is not JSON, cut short or malformed) with the string value after each
/// `"<secret key>":` and every password hash in PHC form (`$argon2…$…`) replaced by
/// `[redacted]`.
fn redacted_text(text: &str) -> String {
    let mut text = text.to_owned();
    for key in SECRET_KEYS {
        let quoted = format!("\"{key}\"");
        let mut from = 0;
        while let Some(found) = text[from..].find(&quoted) {
            let after_key = from + found + quoted.len();
            let rest = &text[after_key..];
            let trimmed = rest.trim_start();
            let Some(value) = trimmed.strip_prefix(':').map(str::trim_start) else {
                from = after_key;
                continue;
            };
            let Some(inner) = value.strip_prefix('"') else {
                from = after_key;
                continue;
            };
            let start = text.len() - inner.len();
            // Up to the next quote not escaped by a backslash, or the end.
            let mut end = text.len();
            let mut escaped = false;
            for (i, c) in inner.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = start + i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            text.replace_range(start..end, "[redacted]");
            from = start + "[redacted]".len();
        }
    }
    redacted_hashes(&text)
}

/// `text` with every password hash in PHC form (`$argon2…$…`) replaced by `[redacted]`.
fn redacted_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$argon2") {
        out.push_str(&rest[..start]);
        out.push_str("[redacted]");
        let hash = &rest[start..];
        let end = hash
            .find(|c: char| c == '"' || c == '\\' || c.is_whitespace())
            .unwrap_or(hash.len());
        rest = &hash[end..];
    }
    out.push_str(rest);
    out
}

/// Text when UTF-8, else `hex:` and the bytes in hex.
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!(
            "hex:{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(printable(bytes)))
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HandlerError;
    use crate::consumer::dead_letter::{DeadLetterFormat, ValuePolicy, dead_letter_record};
    use crate::headers::{header, header_str};

    fn stored(record: &OutgoingRecord, topic: &str, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(record.payload.clone()),
            record.key.clone(),
            topic.into(),
            rdkafka::Timestamp::CreateTime(1_700_000_000_000),
            1,
            offset,
            Some(record.headers.clone()),
        )
    }

    fn original(value: &[u8]) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(b"campaign-1".to_vec()),
            "domain-events".into(),
            rdkafka::Timestamp::NotAvailable,
            4,
            77,
            Some(OwnedHeaders::new().insert(header("traceparent", "00-abc"))),
        )
    }

    fn dead_letter(message: &OwnedMessage, format: DeadLetterFormat) -> OutgoingRecord {
        dead_letter_record(
            message,
            &HandlerError::reject("VALIDATION_ERROR", "bad field"),
            2,
            "position-workers",
            "waitlist.dlq",
            format,
            ValuePolicy::FitTo { max_bytes: 900_000 },
        )
    }

    #[test]
    fn a_consumer_dead_letter_redrives_to_its_topic_for_its_group_only() {
        let record = dead_letter(&original(br#"{"a":1}"#), DeadLetterFormat::Headers);
        let letter = DeadLetter::parse(&stored(&record, "waitlist.dlq", 9), "user.registration");
        assert_eq!(letter.format, Format::Headers);
        assert_eq!(letter.original_topic.as_deref(), Some("domain-events"));
        assert_eq!(
            (letter.original_partition, letter.original_offset),
            (Some(4), Some(77))
        );
        assert_eq!(letter.consumer_group.as_deref(), Some("position-workers"));
        assert_eq!(letter.error_code, "VALIDATION_ERROR");
        assert_eq!(letter.attempts, Some(2));

        let redriven = letter.redrive_record(3).unwrap();
        assert_eq!(redriven.topic, "domain-events");
        assert_eq!(redriven.key.as_deref(), Some(&b"campaign-1"[..]));
        assert_eq!(redriven.payload, br#"{"a":1}"#);
        let h = &redriven.headers;
        assert_eq!(header_str(h, "traceparent"), Some("00-abc"));
        assert_eq!(header_str(h, REDRIVE_COUNT), Some("1"));
        assert_eq!(header_str(h, REDRIVE_GROUP), Some("position-workers"));
        assert_eq!(header_str(h, REDRIVEN_FROM), Some("waitlist.dlq/1/9"));
        assert_eq!(
            header_str(h, dl::ERROR_CODE),
            None,
            "dead-letter headers removed"
        );
        assert_eq!(
            letter.original_id().as_deref(),
            Some("position-workers/domain-events/4/77")
        );

        // Failing again, it comes back with its count; at the limit it is refused.
        let again = dead_letter(
            &stored(&redriven, "domain-events", 80),
            DeadLetterFormat::Headers,
        );
        let mut letter = DeadLetter::parse(&stored(&again, "waitlist.dlq", 10), "x");
        assert_eq!(letter.redrive_count, 1);
        assert_eq!(letter.original_offset, Some(80));
        letter.redrive_count = 3;
        assert_eq!(
            letter.redrive_record(3).unwrap_err().code(),
            "too_many_redrives"
        );
    }

    #[test]
    fn an_activity_dead_letter_gives_back_its_value_without_the_error() {
        let value = br#"{"userId":"u1","activityType":"teleport"}"#;
        let record = dead_letter(&original(value), DeadLetterFormat::ErrorInValue);
        let letter = DeadLetter::parse(&stored(&record, "user-activity-logs-dlq", 0), "x");
        assert_eq!(letter.format, Format::ErrorInValue);
        assert_eq!(letter.error_message.as_deref(), Some("bad field"));
        let back: Value = serde_json::from_slice(&letter.original_value().unwrap()).unwrap();
        assert_eq!(back, json!({"userId": "u1", "activityType": "teleport"}));
        // Not JSON: wrapped, and unwrapped again.
        let record = dead_letter(&original(b"not json"), DeadLetterFormat::ErrorInValue);
        let letter = DeadLetter::parse(&stored(&record, "user-activity-logs-dlq", 1), "x");
        assert_eq!(letter.original_value().unwrap(), b"not json");
    }

    #[test]
    fn a_cut_dead_letter_is_never_redriven() {
        let big = vec![b'x'; 200_000];
        for format in [DeadLetterFormat::Headers, DeadLetterFormat::ErrorInValue] {
            let record = dead_letter_record(
                &original(&big),
                &HandlerError::reject("too_large", "x"),
                1,
                "g",
                "dlq",
                format,
                ValuePolicy::FitTo { max_bytes: 100_000 },
            );
            let letter = DeadLetter::parse(&stored(&record, "dlq", 0), "x");
            assert_eq!(letter.redrive_record(3).unwrap_err().code(), "incomplete");
        }
    }

    #[test]
    fn a_producer_envelope_gives_back_the_event() {
        let event = OutgoingRecord {
            topic: "user-events".into(),
            partition: None,
            key: Some(b"u1".to_vec()),
            payload: br#"{"type":"user.registered"}"#.to_vec(),
            headers: OwnedHeaders::new().insert(header("event_type", "user.registered")),
        };
        let at = Utc::now();
        let value = crate::producer::dlq_record(&event, "broker down", 4, at, at);
        let record = OutgoingRecord {
            topic: "events-dlq".into(),
            payload: value,
            headers: event
                .headers
                .clone()
                .insert(header("original_topic", "user-events"))
                .insert(header("failure_reason", "broker down")),
            ..event.clone()
        };
        let letter = DeadLetter::parse(&stored(&record, "events-dlq", 3), "x");
        assert_eq!(letter.format, Format::ProducerEnvelope);
        assert_eq!(letter.error_code, "publish_failed");
        assert_eq!(letter.attempts, Some(4));
        let redriven = letter.redrive_record(3).unwrap();
        assert_eq!(redriven.topic, "user-events");
        assert_eq!(redriven.payload, event.payload);
        assert_eq!(
            header_str(&redriven.headers, "event_type"),
            Some("user.registered")
        );
        assert_eq!(header_str(&redriven.headers, "failure_reason"), None);
        assert_eq!(header_str(&redriven.headers, REDRIVE_GROUP), None);

        // Not UTF-8: hex in the envelope, bytes again on the way back.
        let binary = OutgoingRecord {
            payload: vec![0xff, 0x00, 0x10],
            ..event
        };
        let record = OutgoingRecord {
            payload: crate::producer::dlq_record(&binary, "x", 1, at, at),
            ..binary.clone()
        };
        let letter = DeadLetter::parse(&stored(&record, "events-dlq", 4), "x");
        assert_eq!(letter.original_value().unwrap(), vec![0xff, 0x00, 0x10]);
    }

    #[test]
    fn a_registration_of_the_retry_queue_goes_back_to_the_registration_topic() {
        let record = OutgoingRecord {
            topic: "user.registration.dlq".into(),
            partition: None,
            key: Some(b"0190".to_vec()),
            payload: br#"{"request_id":"0190","email":"a@b.c","retry_count":2,"failure_reason":"timeout"}"#.to_vec(),
            headers: OwnedHeaders::new().insert(header("failure_reason", "timeout")),
        };
        let letter = DeadLetter::parse(
            &stored(&record, "user.registration.dlq", 5),
            "user.registration",
        );
        assert_eq!(letter.format, Format::RegistrationRetry);
        assert_eq!(letter.supersede_key().as_deref(), Some("0190"));
        assert_eq!(letter.attempts, Some(3));
        assert_eq!(letter.error_message.as_deref(), Some("timeout"));
        let redriven = letter.redrive_record(3).unwrap();
        assert_eq!(redriven.topic, "user.registration");
        assert_eq!(redriven.payload, record.payload);
        assert_eq!(header_str(&redriven.headers, "failure_reason"), None);
        assert_eq!(letter.original_id(), None);
        let secret = OutgoingRecord {
            payload: br#"{"request_id":"0191","password":"$argon2id$x","retry_count":0}"#.to_vec(),
            ..record.clone()
        };
        let details = DeadLetter::parse(&stored(&secret, "q", 6), "r").details(3);
        assert_eq!(details["value"]["password"], "[redacted]");
        assert_eq!(details["redrive"]["value"]["password"], "[redacted]");
        // Not JSON (cut short): the hash is found in the text.
        let broken = OutgoingRecord {
            payload: br#"{"email":"a@b.c","password":"$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA","consent":true"#.to_vec(),
            ..record.clone()
        };
        let shown = DeadLetter::parse(&stored(&broken, "q", 7), "r").details(3)["value"].clone();
        assert_eq!(
            shown,
            r#"{"email":"a@b.c","password":"[redacted]","consent":true"#
        );
        assert_eq!(
            redacted_text(r#"{"password" : "hunter\"22", "x":1, "client_secret":"s3"#),
            r#"{"password" : "[redacted]", "x":1, "client_secret":"[redacted]"#
        );

        let unknown = OutgoingRecord {
            payload: b"hello".to_vec(),
            headers: OwnedHeaders::new(),
            ..record
        };
        let letter = DeadLetter::parse(&stored(&unknown, "x", 0), "user.registration");
        assert_eq!(letter.format, Format::Unknown);
        assert_eq!(
            letter.redrive_record(3).unwrap_err().code(),
            "unknown_format"
        );
    }
}
