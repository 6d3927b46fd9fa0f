//! Seed 003's domain events: what happened in a waitlist campaign. Field names as documented.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSignedUp {
    pub user_id: String,
    pub campaign_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserVerified {
    pub user_id: String,
    pub campaign_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralCreated {
    pub referral_id: String,
    pub referrer_id: String,
    pub referred_id: String,
    pub campaign_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralVerified {
    pub referral_id: String,
    pub referrer_id: String,
    pub referred_id: String,
    pub campaign_id: String,
    /// Positions the referrer gains per verified referral.
    pub points_per_referral: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardEarned {
    pub user_reward_id: String,
    pub user_id: String,
    pub campaign_id: String,
    pub reward_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignMilestoneReached {
    pub campaign_id: String,
    /// E.g. `1000_participants`.
    pub milestone: String,
    pub participant_count: i64,
}
