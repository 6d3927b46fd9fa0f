//! Waitlist campaigns (seeds 001 and 003): what a campaign is made of, the position formula and
//! the fraud rules a referral passes before it counts. No I/O: the repository stores these, the
//! gateway validates requests with them, the tests and benchmarks compute positions with them.

mod campaign;
mod events;
mod fraud;
mod positions;
pub mod webhook_address;

pub use campaign::{
    CampaignStatus, DeliveryMethod, InvalidCampaign, MAX_MILESTONES, MAX_REWARD_TIERS, NewCampaign,
    NewRewardTier, milestone_name,
};
pub use events::{WaitlistEvent, new_referral_code};
pub use fraud::{FraudReason, FraudRules, SignupFacts, canonical_email, is_disposable_domain};
pub use positions::{Standing, positions, score};
