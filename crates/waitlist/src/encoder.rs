//! Domain facts as seed 003's events: the outbox rows the repository writes.

use domain::waitlist::WaitlistEvent;
use events::envelope::{
    CampaignMilestoneReached, EventBuilder, EventPayload, ReferralCreated, ReferralVerified,
    RewardEarned, UserSignedUp, UserVerified,
};
use repo::waitlist::{OutboxEncoder, OutboxMessage};

/// Builds each event with a fresh ID and the time, for `topic`, keyed by its campaign.
#[derive(Debug, Clone)]
pub struct DomainEventEncoder {
    topic: String,
    builder: EventBuilder,
}

impl DomainEventEncoder {
    pub fn new(topic: impl Into<String>, source: &str) -> Self {
        Self {
            topic: topic.into(),
            builder: EventBuilder::new(source),
        }
    }
}

/// The seed 003 payload of a fact.
fn payload(event: &WaitlistEvent) -> EventPayload {
    match event.clone() {
        WaitlistEvent::SignedUp {
            participant_id,
            campaign_id,
            email,
        } => UserSignedUp {
            user_id: participant_id.to_string(),
            campaign_id: campaign_id.to_string(),
            email,
        }
        .into(),
        WaitlistEvent::ReferralCreated {
            referral_id,
            referrer_id,
            referred_id,
            campaign_id,
        } => ReferralCreated {
            referral_id: referral_id.to_string(),
            referrer_id: referrer_id.to_string(),
            referred_id: referred_id.to_string(),
            campaign_id: campaign_id.to_string(),
        }
        .into(),
        WaitlistEvent::Verified {
            participant_id,
            campaign_id,
            email,
        } => UserVerified {
            user_id: participant_id.to_string(),
            campaign_id: campaign_id.to_string(),
            email,
        }
        .into(),
        WaitlistEvent::ReferralVerified {
            referral_id,
            referrer_id,
            referred_id,
            campaign_id,
            points_per_referral,
        } => ReferralVerified {
            referral_id: referral_id.to_string(),
            referrer_id: referrer_id.to_string(),
            referred_id: referred_id.to_string(),
            campaign_id: campaign_id.to_string(),
            points_per_referral,
        }
        .into(),
        WaitlistEvent::RewardEarned {
            user_reward_id,
            participant_id,
            campaign_id,
            reward_id,
        } => RewardEarned {
            user_reward_id: user_reward_id.to_string(),
            user_id: participant_id.to_string(),
            campaign_id: campaign_id.to_string(),
            reward_id: reward_id.to_string(),
        }
        .into(),
        WaitlistEvent::MilestoneReached {
            campaign_id,
            participant_count,
        } => CampaignMilestoneReached {
            campaign_id: campaign_id.to_string(),
            milestone: domain::waitlist::milestone_name(participant_count),
            participant_count,
        }
        .into(),
    }
}

impl OutboxEncoder for DomainEventEncoder {
    fn encode(&self, event: &WaitlistEvent) -> OutboxMessage {
        let event = self.builder.build(payload(event));
        OutboxMessage {
            topic: self.topic.clone(),
            key: event.partition_key(),
            payload: serde_json::to_value(&event).expect("events always serialize"),
            traceparent: events::headers::current_traceparent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use events::Event;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn facts_become_seed_003_events_keyed_by_campaign() {
        let campaign_id = Uuid::new_v4();
        let encoder = DomainEventEncoder::new("domain-events", "gateway");
        let message = encoder.encode(&WaitlistEvent::MilestoneReached {
            campaign_id,
            participant_count: 1000,
        });
        assert_eq!(message.topic, "domain-events");
        assert_eq!(message.key, campaign_id.to_string());
        let event: Event = serde_json::from_value(message.payload.clone()).unwrap();
        assert_eq!(event.event_type(), "campaign.milestone_reached");
        assert_eq!(message.payload["account_id"], campaign_id.to_string());
        assert_eq!(message.payload["data"]["milestone"], "1000_participants");
        assert_eq!(message.payload["data"]["participant_count"], 1000);
    }
}
