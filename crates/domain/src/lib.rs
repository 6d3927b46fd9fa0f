#![doc = include_str!("../README.md")]

pub mod accounts;
mod activity;
mod oauth;
mod registration;
mod snowflake;
pub mod text;
mod users;
mod values;
pub mod waitlist;

pub use activity::{
    ACTIVITY_TYPES, ActivityEvent, MAX_CLOCK_SKEW, MAX_ID_LENGTH, MAX_METADATA_BYTES,
};
pub use oauth::{
    OAuth2AccessToken, OAuth2AuditLog, OAuth2AuthorizationCode, OAuth2Client, OAuth2RefreshToken,
    OAuth2Scope, OAuth2UserConsent, OAuthAccount,
};
pub use registration::{RegistrationMessage, RegistrationRecord, RegistrationStatus};
pub use snowflake::{NodeId, NodeIdError, SnowflakeGenerator, SnowflakeId};
pub use users::{
    CredentialHistory, NewUser, User, UserCredential, UserId, UserProfile, UserStatus,
    UserWithCredential, VerificationStatus,
};
pub use values::{Email, Identifier, InvalidValue, Phone, TokenHash};
