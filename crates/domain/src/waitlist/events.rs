//! What happened in a campaign, as the repository records it in the outbox. Each fact becomes
//! one of seed 003's domain events (the events crate holds their JSON shapes).

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitlistEvent {
    SignedUp {
        participant_id: Uuid,
        campaign_id: Uuid,
        email: String,
    },
    ReferralCreated {
        referral_id: Uuid,
        referrer_id: Uuid,
        referred_id: Uuid,
        campaign_id: Uuid,
    },
    Verified {
        participant_id: Uuid,
        campaign_id: Uuid,
        email: String,
    },
    ReferralVerified {
        referral_id: Uuid,
        referrer_id: Uuid,
        referred_id: Uuid,
        campaign_id: Uuid,
        points_per_referral: i32,
    },
    RewardEarned {
        user_reward_id: Uuid,
        participant_id: Uuid,
        campaign_id: Uuid,
        reward_id: Uuid,
    },
    MilestoneReached {
        campaign_id: Uuid,
        participant_count: i64,
    },
}

impl WaitlistEvent {
    /// Every waitlist event belongs to a campaign, its partition key.
    pub fn campaign_id(&self) -> Uuid {
        match self {
            Self::SignedUp { campaign_id, .. }
            | Self::ReferralCreated { campaign_id, .. }
            | Self::Verified { campaign_id, .. }
            | Self::ReferralVerified { campaign_id, .. }
            | Self::RewardEarned { campaign_id, .. }
            | Self::MilestoneReached { campaign_id, .. } => *campaign_id,
        }
    }
}

/// Letters and digits without look-alikes (no 0/O, 1/I/L, U).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh random referral code: 8 characters of a 30-letter alphabet (about 39 bits). Codes are
/// unique per campaign; the repository draws again on the rare collision.
pub fn new_referral_code() -> String {
    let random = Uuid::new_v4().as_u128();
    (0..8)
        .map(|i| {
            let index = (random >> (i * 8)) % CODE_ALPHABET.len() as u128;
            char::from(CODE_ALPHABET[usize::try_from(index).unwrap_or_default()])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referral_codes_are_eight_unambiguous_characters() {
        let codes: std::collections::HashSet<String> =
            (0..1000).map(|_| new_referral_code()).collect();
        assert_eq!(codes.len(), 1000);
        for code in &codes {
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
        }
    }
}
