//! Seed 003's domain events: what happened in a waitlist campaign. Field names as documented.
//! Fields a newer producer adds are ignored when reading (a minor schema version adds fields;
//! only a new major version may remove or change them).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSignedUp {
    pub user_id: String,
    pub campaign_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserVerified {
    pub user_id: String,
    pub campaign_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralCreated {
    pub referral_id: String,
    pub referrer_id: String,
    pub referred_id: String,
    pub campaign_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralVerified {
    pub referral_id: String,
    pub referrer_id: String,
    pub referred_id: String,
    pub campaign_id: String,
    /// Positions the referrer gains per verified referral.
    pub points_per_referral: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardEarned {
    pub user_reward_id: String,
    pub user_id: String,
    pub campaign_id: String,
    pub reward_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignMilestoneReached {
    pub campaign_id: String,
    /// E.g. `1000_participants`.
    pub milestone: String,
    pub participant_count: i64,
}
