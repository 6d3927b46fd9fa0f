//! Seed 002's business events, as its producer library builds them. Optional fields are
//! omitted from the JSON when unset.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    pub user_id: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub login_time: DateTime<Utc>,
    pub session_id: String,
    #[serde(default)]
    pub remember_me: bool,
    pub login_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub registration_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    pub registration_source: String,
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}

impl UserRegistered {
    /// A user registered through this system's API: `registration_source` `api`, no name,
    /// organization or IP.
    pub fn through_api(
        user_id: String,
        email: Option<String>,
        phone: Option<String>,
        email_verified: bool,
        registration_time: DateTime<Utc>,
    ) -> Self {
        Self {
            user_id,
            email,
            phone,
            first_name: None,
            last_name: None,
            registration_time,
            ip_address: None,
            registration_source: "api".into(),
            email_verified,
            organization_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoggedOut {
    pub user_id: String,
    pub session_id: String,
    pub logout_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTokenRefreshed {
    pub user_id: String,
    pub session_id: String,
    pub refreshed_at: DateTime<Utc>,
}

/// A verification message is wanted for the user's email address or phone number (asked again,
/// after the first one that `user.registered` brought). The email-worker sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserVerificationRequested {
    pub user_id: String,
    /// `email` or `phone`: which one to verify; its value is the user's current one.
    pub channel: String,
    pub requested_at: DateTime<Utc>,
}

/// A password reset was asked for an existing account; the email-worker mails the reset link.
/// The event carries no token: the worker issues it, so no secret sits on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordResetRequested {
    pub user_id: String,
    pub requested_at: DateTime<Utc>,
}

/// The user changed their password, signed in or by a reset; the old address is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordChanged {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `change` (signed in, with the current password) or `reset` (by the emailed link).
    pub method: String,
    pub changed_at: DateTime<Utc>,
}

/// The user's email address or phone number changed: the new one is unverified until
/// confirmed, and the old one (if any) is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIdentifierChanged {
    pub user_id: String,
    /// `email` or `phone`.
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_value: Option<String>,
    pub new_value: String,
    pub changed_at: DateTime<Utc>,
}

/// The user asked to change their email address to `new_email`: the email-worker mails a
/// confirmation link there; following it makes the change (then `user.identifier_changed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEmailChangeRequested {
    pub user_id: String,
    pub new_email: String,
    /// The session that asked: the link is made only while it is live, so a sign-out
    /// everywhere or a password reset cancels a change the worker has not reached yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub requested_at: DateTime<Utc>,
}

/// The user deleted their account (a soft delete); until `restore_until` it can be restored
/// through the link mailed to `email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub deleted_at: DateTime<Utc>,
    pub restore_until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status_code: u16,
    /// Milliseconds.
    pub duration: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    pub request_time: DateTime<Utc>,
    pub response_size: u64,
    pub request_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status_code: u16,
    pub error_type: String,
    pub error_message: String,
    pub error_code: String,
    pub error_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemAlert {
    pub alert_id: String,
    pub alert_type: String,
    pub service: String,
    pub component: String,
    pub message: String,
    pub severity: String,
    pub alert_time: DateTime<Utc>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub resolved: bool,
}
