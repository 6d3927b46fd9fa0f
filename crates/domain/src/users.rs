//! Users, their credentials and the views of them the contract returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Email, Phone, SnowflakeId};

/// A user's ID: a Snowflake ID, so user IDs sort by sign-up time. JSON string.
pub type UserId = SnowflakeId;

/// Where a user is in their life cycle. `BatchDeleteByStatus` removes users of one status once
/// they have stayed in it longer than a grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Registered, not yet verified.
    Pending,
    Suspended,
    /// Soft-deleted: kept, restorable, invisible to look-ups.
    Deleted,
}

impl UserStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Pending, Self::Suspended, Self::Deleted]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A user as stored. At least one of `email` and `phone` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub is_email_verified: bool,
    pub is_phone_verified: bool,
    pub consent: bool,
    pub status: UserStatus,
    /// When `status` last changed; `BatchDeleteByStatus` measures its grace period from here.
    pub status_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What is needed to create a user: the ID (from the Snowflake generator), the contact, the
/// flags, and the password hash (Argon2id, computed by the caller; never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub is_email_verified: bool,
    pub is_phone_verified: bool,
    pub consent: bool,
    pub password_hash: String,
}

/// The current password credential of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCredential {
    pub user_id: UserId,
    pub password_hash: String,
    pub is_verified: bool,
    /// Set by `InvalidateAllCredentials`: the password no longer signs in until it is changed.
    pub invalidated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user with their credential, for sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserWithCredential {
    pub user: User,
    pub credential: Option<UserCredential>,
}

/// What may be shown about a user: no credential, no deletion details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: UserId,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub is_email_verified: bool,
    pub is_phone_verified: bool,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserProfile {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            phone: user.phone,
            is_email_verified: user.is_email_verified,
            is_phone_verified: user.is_phone_verified,
            status: user.status,
            created_at: user.created_at,
        }
    }
}

/// A password hash a user had before, kept so a password cannot be reused and changes can be
/// audited. `replaced_at` is when it stopped being current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialHistory {
    pub id: i64,
    pub user_id: UserId,
    pub password_hash: String,
    pub replaced_at: DateTime<Utc>,
}

/// Both verification flags of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationStatus {
    pub user_id: UserId,
    pub email_verified: bool,
    pub phone_verified: bool,
}
