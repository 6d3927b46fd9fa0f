//! Waitlist campaigns on PostgreSQL (seeds 001 and 003).
//!
//! Every state change runs in one transaction together with the outbox rows of the domain
//! events it causes (`outbox_events`), so an event is published if and only if its change
//! committed. Signups of one campaign are serialized by the campaign row's lock: that is what
//! gives every participant a distinct original position (the signup order) and makes the
//! "already signed up" and referral-code checks race-free. The gateway relays the outbox to
//! Kafka (`Waitlist::relay_outbox`); the workers read the same tables.

mod campaigns;
mod notifications;
mod outbox;
mod positions;
mod signups;

use chrono::{DateTime, Utc};
use domain::waitlist::{CampaignStatus, FraudRules, WaitlistEvent};
use uuid::Uuid;

use crate::{Database, RepoError};

pub use campaigns::{CampaignChange, ChangeOutcome};
pub use notifications::{EmailClaim, RewardDelivery};
#[cfg(feature = "testing")]
pub(crate) use outbox::RELAY_LOCK_KEYS;
pub use outbox::{OutboxMessage, OutboxRow, RelayOutcome};
pub use positions::{MOVE_LIMIT, Recalculation};

/// Turns a domain fact into its outbox row; the events crate knows the JSON shapes, so the
/// service layer provides this.
pub trait OutboxEncoder: Send + Sync {
    fn encode(&self, event: &WaitlistEvent) -> OutboxMessage;
}

/// Waitlist storage. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct Waitlist {
    database: Database,
}

impl Waitlist {
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardTier {
    pub id: Uuid,
    pub name: String,
    pub referral_threshold: i32,
    /// `email` or `webhook`.
    pub delivery_method: String,
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    pub participant_count: i64,
    pub reached_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub points_per_referral: i32,
    pub participant_count: i64,
    pub notify_email: Option<String>,
    /// The user who created it; `None` for campaigns only platform admins manage.
    pub owner_user_id: Option<domain::UserId>,
    pub reward_tiers: Vec<RewardTier>,
    pub milestones: Vec<Milestone>,
    pub created_at: DateTime<Utc>,
}

/// A reward a participant earned, with how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarnedReward {
    pub id: Uuid,
    pub tier_id: Uuid,
    pub name: String,
    pub referral_threshold: i32,
    pub delivery_status: String,
    pub earned_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub email: String,
    pub referral_code: String,
    pub original_position: i64,
    pub position: i64,
    pub verified_referral_count: i32,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Filled by `participant`; empty elsewhere.
    pub rewards: Vec<EarnedReward>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardEntry {
    pub position: i64,
    pub participant_id: Uuid,
    pub email: String,
    pub verified_referral_count: i32,
}

/// A signup as the gateway hands it over.
#[derive(Debug, Clone)]
pub struct NewSignup {
    pub campaign_id: Uuid,
    pub email: domain::Email,
    pub referral_code: Option<String>,
    /// The client's address, for the IP rule; `None` when unknown.
    pub ip: Option<String>,
    pub rules: FraudRules,
}

/// What a signup created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUp {
    pub participant: Participant,
    pub referral: Option<CreatedReferral>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedReferral {
    pub id: Uuid,
    pub referrer_id: Uuid,
    /// `pending`, or `flagged` with `fraud_reason`.
    pub status: String,
    pub fraud_reason: Option<String>,
}

/// Why a signup was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("no such campaign")]
    CampaignNotFound,
    #[error("the campaign is {0}, not active")]
    CampaignNotActive(CampaignStatus),
    #[error(
        "this email address, or another that reaches the same mailbox, has already signed up for the campaign"
    )]
    AlreadySignedUp,
    #[error("no participant of this campaign has this referral code")]
    UnknownReferralCode,
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<diesel::result::Error> for SignupError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Repo(error.into())
    }
}

/// What a verification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Verified now; `referral_counted` when it counted for a referrer.
    Verified { referral_counted: bool },
    /// Verified before: nothing changed, no events.
    AlreadyVerified,
}
