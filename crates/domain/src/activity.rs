//! User activity events (seed 004): what the gateway accepts, the topic carries and the
//! activity-log-processor stores.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::InvalidValue;

/// The activity types the pipeline knows. Anything else is refused at the gateway and
/// dead-lettered by the processor.
pub const ACTIVITY_TYPES: &[&str] = &[
    "login",
    "logout",
    "login_failed",
    "signup",
    "password_change",
    "password_reset",
    "email_verified",
    "profile_update",
    "settings_change",
    "page_view",
    "click",
    "search",
    "purchase",
    "download",
    "upload",
    "api_call",
    "session_start",
    "session_end",
];

/// Longest `userId`, `eventId` and `sessionId`, in bytes.
pub const MAX_ID_LENGTH: usize = 128;
/// Largest `metadata`, as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// How far in the future a timestamp may be (clock skew between clients and us).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// One activity event, in seed 004's value shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEvent {
    pub user_id: String,
    pub activity_type: String,
    pub timestamp: DateTime<Utc>,
    /// `ipAddress`, `userAgent`, `sessionId`, and whatever else the client sends.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub event_id: String,
    pub version: String,
}

impl ActivityEvent {
    /// Checks what storage and reading rely on: known type, sane timestamp (not older than
    /// `max_age`, not in the future beyond clock skew), bounded sizes.
    pub fn validate(&self, now: DateTime<Utc>, max_age: Duration) -> Result<(), InvalidValue> {
        let invalid = |field: &'static str, reason: String| Err(InvalidValue { field, reason });
        // Text PostgreSQL cannot store, in any field.
        for (field, value) in [
            ("userId", &self.user_id),
            ("eventId", &self.event_id),
            ("activityType", &self.activity_type),
            ("version", &self.version),
        ] {
            if let Err(nul) = crate::text::check_str(field, value) {
                return invalid(field, nul.to_string());
            }
        }
        if let Err(nul) = crate::text::check_members("metadata", &self.metadata) {
            return invalid("metadata", nul.to_string());
        }
        for (field, value) in [("userId", &self.user_id), ("eventId", &self.event_id)] {
            if value.trim().is_empty() || value.len() > MAX_ID_LENGTH {
                return invalid(field, format!("must be 1 to {MAX_ID_LENGTH} bytes"));
            }
        }
        if !ACTIVITY_TYPES.contains(&self.activity_type.as_str()) {
            return invalid(
                "activityType",
                format!("unknown activity type {:?}", self.activity_type),
            );
        }
        if self.timestamp > now + MAX_CLOCK_SKEW {
            return invalid("timestamp", "is in the future".into());
        }
        if self.timestamp < now - max_age {
            return invalid(
                "timestamp",
                format!("is older than {} days", max_age.num_days()),
            );
        }
        if self.version.trim().is_empty() || self.version.len() > 16 {
            return invalid("version", "must be 1 to 16 bytes".into());
        }
        let metadata_bytes = serde_json::to_vec(&self.metadata).map_or(usize::MAX, |v| v.len());
        if metadata_bytes > MAX_METADATA_BYTES {
            return invalid(
                "metadata",
                format!("is larger than {MAX_METADATA_BYTES} bytes"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(now: DateTime<Utc>) -> ActivityEvent {
        serde_json::from_value(serde_json::json!({
            "userId": "user123",
            "activityType": "login",
            "timestamp": now.to_rfc3339(),
            "metadata": {"ipAddress": "192.168.1.1", "userAgent": "Mozilla/5.0", "sessionId": "sess_abc123"},
            "eventId": "evt_1234567890",
            "version": "1.0"
        }))
        .expect("seed 004's value shape")
    }

    #[test]
    fn seed_004s_value_round_trips() {
        let now = Utc::now();
        let value = serde_json::to_value(event(now)).unwrap();
        assert_eq!(value["userId"], "user123");
        assert_eq!(value["metadata"]["sessionId"], "sess_abc123");
        assert_eq!(value["eventId"], "evt_1234567890");
        assert!(event(now).validate(now, Duration::days(30)).is_ok());
    }

    #[test]
    fn bad_events_name_their_field() {
        let now = Utc::now();
        let field = |change: fn(&mut ActivityEvent)| {
            let mut e = event(now);
            change(&mut e);
            e.validate(now, Duration::days(30)).unwrap_err().field
        };
        assert_eq!(
            field(|e| e.activity_type = "teleport".into()),
            "activityType"
        );
        assert_eq!(field(|e| e.timestamp += Duration::hours(1)), "timestamp");
        assert_eq!(field(|e| e.timestamp -= Duration::days(31)), "timestamp");
        assert_eq!(field(|e| e.user_id = String::new()), "userId");
        assert_eq!(field(|e| e.event_id = "x".repeat(129)), "eventId");
        assert_eq!(field(|e| e.version = "1.0\0".into()), "version");
        assert_eq!(field(|e| e.user_id = "u\0".into()), "userId");
        assert_eq!(
            field(|e| {
                e.metadata
                    .insert("note".into(), serde_json::json!(["ok", "a\0b"]));
            }),
            "metadata"
        );
        assert_eq!(
            field(|e| {
                e.metadata
                    .insert("blob".into(), Value::String("x".repeat(9000)));
            }),
            "metadata"
        );
    }
}
