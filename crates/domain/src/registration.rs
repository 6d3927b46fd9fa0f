//! Asynchronous registration (seed 000): the message the gateway puts on `user.registration`,
//! and what became of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Email, InvalidValue, NewUser, Phone, UserId};

/// One registration request on `user.registration` and `user.registration.dlq`, keyed by
/// `request_id`, in seed 000's shape. `password` is the Argon2id hash in PHC format: the
/// plaintext never leaves the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationMessage {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: String,
    pub consent: bool,
    #[serde(default)]
    pub is_email_verified: bool,
    #[serde(default)]
    pub is_phone_verified: bool,
    pub request_id: Uuid,
    /// Tries the dlq-retrier has made so far.
    #[serde(default)]
    pub retry_count: u32,
    /// Why the last try failed; set on the DLQ.
    #[serde(default)]
    pub failure_reason: Option<String>,
}

impl RegistrationMessage {
    /// The user this message asks for, with `id`. Refuses what the gateway would have refused,
    /// and a password that is not an Argon2id hash, so nothing but a hash is ever stored.
    pub fn to_new_user(&self, id: UserId) -> Result<NewUser, InvalidValue> {
        let email = self.email.as_deref().map(Email::parse).transpose()?;
        let phone = self.phone.as_deref().map(Phone::parse).transpose()?;
        if email.is_none() && phone.is_none() {
            return Err(InvalidValue {
                field: "email",
                reason: "one of email and phone is required".into(),
            });
        }
        if !self.password.starts_with("$argon2id$") {
            return Err(InvalidValue {
                field: "password",
                reason: "is not an Argon2id hash".into(),
            });
        }
        Ok(NewUser {
            id,
            email,
            phone,
            is_email_verified: self.is_email_verified,
            is_phone_verified: self.is_phone_verified,
            consent: self.consent,
            password_hash: self.password.clone(),
        })
    }
}

/// Where a registration request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    /// Accepted, not yet written (or waiting for a retry).
    Processing,
    /// The user exists.
    Completed,
    /// Refused for good: already registered, invalid, or out of retries.
    Failed,
}

impl RegistrationStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Processing, Self::Completed, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// The stored outcome of one registration request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub request_id: Uuid,
    pub status: RegistrationStatus,
    pub user_id: Option<UserId>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> RegistrationMessage {
        serde_json::from_str(
            r#"{"email":"user@example.com","phone":null,"password":"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                "consent":true,"is_email_verified":false,"is_phone_verified":false,
                "request_id":"0195f6f5-7b4e-7c3a-9d2e-3f4a5b6c7d8e","retry_count":0,"failure_reason":null}"#,
        )
        .expect("seed 000's message shape")
    }

    #[test]
    fn seed_000s_shape_round_trips_with_every_field() {
        let value = serde_json::to_value(message()).expect("serialize");
        let mut keys: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "consent",
                "email",
                "failure_reason",
                "is_email_verified",
                "is_phone_verified",
                "password",
                "phone",
                "request_id",
                "retry_count"
            ]
        );
    }

    #[test]
    fn a_valid_message_becomes_a_new_user() {
        let id = UserId::from_i64(42);
        let user = message().to_new_user(id).expect("valid");
        assert_eq!(user.email.expect("email").as_str(), "user@example.com");
        assert_eq!(user.id, id);
        assert!(user.consent);
    }

    #[test]
    fn a_plaintext_password_or_no_contact_is_refused() {
        let mut plain = message();
        plain.password = "hunter22".into();
        let error = plain.to_new_user(UserId::from_i64(1)).unwrap_err();
        assert_eq!(error.field, "password");

        let mut nobody = message();
        nobody.email = None;
        assert!(nobody.to_new_user(UserId::from_i64(1)).is_err());

        let mut bad_phone = message();
        bad_phone.phone = Some("12345".into());
        assert_eq!(
            bad_phone
                .to_new_user(UserId::from_i64(1))
                .unwrap_err()
                .field,
            "phone"
        );
    }
}
