//! The event envelope and its typed payloads.
//!
//! On the wire an event is the JSON of the documents: seed 003's domain-event envelope
//! (`id`, `type`, `account_id`, `campaign_id`, `data`, `timestamp`) plus a schema `version`;
//! seed 002's business events use the same envelope without the campaign fields. Who produced
//! the event and the correlation ID travel in Kafka headers (see `headers`), not in the JSON,
//! so the JSON stays exactly the documented shape.

mod business;
mod domain_events;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use business::{
    ApiError, ApiRequest, SystemAlert, UserDeleted, UserEmailChangeRequested,
    UserIdentifierChanged, UserLoggedIn, UserLoggedOut, UserPasswordChanged,
    UserPasswordResetRequested, UserRegistered, UserTokenRefreshed, UserVerificationRequested,
};
pub use domain_events::{
    CampaignMilestoneReached, ReferralCreated, ReferralVerified, RewardEarned, UserSignedUp,
    UserVerified,
};

/// The schema version stamped on events this code produces.
pub const SCHEMA_VERSION: &str = "1.0";

/// An event: envelope fields plus a typed payload (`type` and `data` on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    #[serde(flatten)]
    pub payload: EventPayload,
    /// Seed 003: the account the campaign belongs to (the campaign ID where accounts are not
    /// modelled). Absent on business events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub version: String,
    /// The producing service; carried in the `source` header.
    #[serde(skip)]
    pub source: Option<String>,
    /// Ties together the events of one request; carried in the `correlation_id` header.
    #[serde(skip)]
    pub correlation_id: Option<String>,
}

/// Every event type the system knows, with its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    #[serde(rename = "user.logged_in")]
    UserLoggedIn(UserLoggedIn),
    #[serde(rename = "user.registered")]
    UserRegistered(UserRegistered),
    #[serde(rename = "user.logged_out")]
    UserLoggedOut(UserLoggedOut),
    #[serde(rename = "user.token_refreshed")]
    UserTokenRefreshed(UserTokenRefreshed),
    #[serde(rename = "user.verification_requested")]
    UserVerificationRequested(UserVerificationRequested),
    #[serde(rename = "user.password_reset_requested")]
    UserPasswordResetRequested(UserPasswordResetRequested),
    #[serde(rename = "user.password_changed")]
    UserPasswordChanged(UserPasswordChanged),
    #[serde(rename = "user.identifier_changed")]
    UserIdentifierChanged(UserIdentifierChanged),
    #[serde(rename = "user.email_change_requested")]
    UserEmailChangeRequested(UserEmailChangeRequested),
    #[serde(rename = "user.deleted")]
    UserDeleted(UserDeleted),
    #[serde(rename = "api.request")]
    ApiRequest(ApiRequest),
    #[serde(rename = "api.error")]
    ApiError(ApiError),
    #[serde(rename = "system.alert")]
    SystemAlert(SystemAlert),
    #[serde(rename = "user.signed_up")]
    UserSignedUp(UserSignedUp),
    #[serde(rename = "user.verified")]
    UserVerified(UserVerified),
    #[serde(rename = "referral.created")]
    ReferralCreated(ReferralCreated),
    #[serde(rename = "referral.verified")]
    ReferralVerified(ReferralVerified),
    #[serde(rename = "reward.earned")]
    RewardEarned(RewardEarned),
    #[serde(rename = "campaign.milestone_reached")]
    CampaignMilestoneReached(CampaignMilestoneReached),
}

impl EventPayload {
    /// The `type` of the event, as on the wire.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserLoggedIn(_) => "user.logged_in",
            Self::UserRegistered(_) => "user.registered",
            Self::UserLoggedOut(_) => "user.logged_out",
            Self::UserTokenRefreshed(_) => "user.token_refreshed",
            Self::UserVerificationRequested(_) => "user.verification_requested",
            Self::UserPasswordResetRequested(_) => "user.password_reset_requested",
            Self::UserPasswordChanged(_) => "user.password_changed",
            Self::UserIdentifierChanged(_) => "user.identifier_changed",
            Self::UserEmailChangeRequested(_) => "user.email_change_requested",
            Self::UserDeleted(_) => "user.deleted",
            Self::ApiRequest(_) => "api.request",
            Self::ApiError(_) => "api.error",
            Self::SystemAlert(_) => "system.alert",
            Self::UserSignedUp(_) => "user.signed_up",
            Self::UserVerified(_) => "user.verified",
            Self::ReferralCreated(_) => "referral.created",
            Self::ReferralVerified(_) => "referral.verified",
            Self::RewardEarned(_) => "reward.earned",
            Self::CampaignMilestoneReached(_) => "campaign.milestone_reached",
        }
    }

    /// The campaign of a domain event (seed 003); `None` for business events.
    pub fn campaign_id(&self) -> Option<&str> {
        match self {
            Self::UserSignedUp(e) => Some(&e.campaign_id),
            Self::UserVerified(e) => Some(&e.campaign_id),
            Self::ReferralCreated(e) => Some(&e.campaign_id),
            Self::ReferralVerified(e) => Some(&e.campaign_id),
            Self::RewardEarned(e) => Some(&e.campaign_id),
            Self::CampaignMilestoneReached(e) => Some(&e.campaign_id),
            _ => None,
        }
    }

    /// The user a business event is about, if any.
    fn user_id(&self) -> Option<&str> {
        match self {
            Self::UserLoggedIn(e) => Some(&e.user_id),
            Self::UserRegistered(e) => Some(&e.user_id),
            Self::UserLoggedOut(e) => Some(&e.user_id),
            Self::UserTokenRefreshed(e) => Some(&e.user_id),
            Self::UserVerificationRequested(e) => Some(&e.user_id),
            Self::UserPasswordResetRequested(e) => Some(&e.user_id),
            Self::UserPasswordChanged(e) => Some(&e.user_id),
            Self::UserIdentifierChanged(e) => Some(&e.user_id),
            Self::UserEmailChangeRequested(e) => Some(&e.user_id),
            Self::UserDeleted(e) => Some(&e.user_id),
            Self::ApiRequest(e) => e.user_id.as_deref(),
            _ => None,
        }
    }
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    /// The partition key: the campaign for domain events, so one campaign's events stay in
    /// order (seed 003); the user for user events (seed 002); otherwise the event ID.
    pub fn partition_key(&self) -> String {
        self.payload
            .campaign_id()
            .or_else(|| self.payload.user_id())
            .map_or_else(|| self.id.to_string(), str::to_owned)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events always serialize")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Reads an event a producer of this or a newer version wrote: fields this version does
    /// not know are ignored, and an event whose `type` this version does not know is
    /// [`Decoded::UnknownType`] (for the consumer to skip) rather than an error.
    ///
    /// # Errors
    /// The JSON is not an event: not JSON, a missing envelope field, or a known type whose
    /// data lacks a field or has one of the wrong type.
    pub fn decode(bytes: &[u8]) -> Result<Decoded, serde_json::Error> {
        match serde_json::from_slice::<Self>(bytes) {
            Ok(event) => Ok(Decoded::Event(Box::new(event))),
            Err(error) => {
                #[derive(Deserialize)]
                struct Head {
                    #[serde(rename = "type")]
                    event_type: String,
                    #[serde(default)]
                    version: Option<String>,
                }
                match serde_json::from_slice::<Head>(bytes) {
                    Ok(head) if !EVENT_TYPES.contains(&head.event_type.as_str()) => {
                        Ok(Decoded::UnknownType {
                            event_type: head.event_type,
                        })
                    }
                    // A known type in the shape of another major version.
                    Ok(Head {
                        event_type,
                        version: Some(version),
                    }) if major(&version) != major(SCHEMA_VERSION) => {
                        Ok(Decoded::OtherMajorVersion {
                            event_type,
                            version,
                        })
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Whether this version can read the event's schema: the same major `version` (a minor
    /// version only adds fields). A missing or unparsable major counts as unreadable.
    pub fn is_readable_version(&self) -> bool {
        major(&self.version) == major(SCHEMA_VERSION)
    }
}

/// The major schema version this code reads (`1` of `1.0`): events of the same major version
/// only add fields.
pub fn readable_major() -> &'static str {
    major(SCHEMA_VERSION)
}

/// The major part of a `major.minor` version.
fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or_default().trim()
}

/// What [`Event::decode`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(Box<Event>),
    /// A `type` this version does not know (a newer producer's), with its name.
    UnknownType {
        event_type: String,
    },
    /// A known `type` whose data this version cannot read, of another major `version`.
    OtherMajorVersion {
        event_type: String,
        version: String,
    },
}

/// Every event `type` this version reads.
pub const EVENT_TYPES: &[&str] = &[
    "user.logged_in",
    "user.registered",
    "user.logged_out",
    "user.token_refreshed",
    "user.verification_requested",
    "user.password_reset_requested",
    "user.password_changed",
    "user.identifier_changed",
    "user.email_change_requested",
    "user.deleted",
    "api.request",
    "api.error",
    "system.alert",
    "user.signed_up",
    "user.verified",
    "referral.created",
    "referral.verified",
    "reward.earned",
    "campaign.milestone_reached",
];

/// Stamps events with what every event carries: a fresh ID, the time, the schema version, the
/// producing service and the correlation ID (seed 002's `EventBuilder`).
#[derive(Debug, Clone)]
pub struct EventBuilder {
    source: String,
    correlation_id: Option<String>,
}

impl EventBuilder {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            correlation_id: None,
        }
    }

    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    pub fn build(&self, payload: impl Into<EventPayload>) -> Event {
        let payload = payload.into();
        let campaign_id = payload.campaign_id().map(str::to_owned);
        Event {
            id: Uuid::new_v4(),
            // Seed 003 sets account_id to the campaign where accounts are not modelled.
            account_id: campaign_id.clone(),
            campaign_id,
            payload,
            timestamp: Utc::now(),
            version: SCHEMA_VERSION.to_owned(),
            source: Some(self.source.clone()),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

macro_rules! payload_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for EventPayload {
            fn from(data: $variant) -> Self {
                Self::$variant(data)
            }
        }
    )*};
}
payload_from!(
    UserLoggedIn,
    UserRegistered,
    UserLoggedOut,
    UserTokenRefreshed,
    UserVerificationRequested,
    UserPasswordResetRequested,
    UserPasswordChanged,
    UserIdentifierChanged,
    UserEmailChangeRequested,
    UserDeleted,
    ApiRequest,
    ApiError,
    SystemAlert,
    UserSignedUp,
    UserVerified,
    ReferralCreated,
    ReferralVerified,
    RewardEarned,
    CampaignMilestoneReached
);

#[cfg(test)]
mod tests;
