//! Which topic an event type goes to: seed 002's defaults for business events, `domain-events`
//! for seed 003's, `default-events` for anything else; changeable at runtime
//! (`set_topic_mapping`, seed 002's `SetTopicMapping`).

use std::collections::HashMap;
use std::sync::RwLock;

/// Where unmapped event types go.
pub const DEFAULT_TOPIC: &str = "default-events";

const DEFAULTS: &[(&str, &str)] = &[
    ("user.logged_in", "user-events"),
    ("user.registered", "user-events"),
    ("user.logged_out", "user-events"),
    ("user.token_refreshed", "auth-events"),
    // The account events the email-worker acts on, keyed by user like the others.
    ("user.verification_requested", "user-events"),
    ("user.password_reset_requested", "user-events"),
    ("user.password_changed", "user-events"),
    ("user.identifier_changed", "user-events"),
    ("user.email_change_requested", "user-events"),
    ("user.deleted", "user-events"),
    ("api.request", "api-events"),
    ("api.error", "error-events"),
    ("system.alert", "system-events"),
    ("user.signed_up", "domain-events"),
    ("user.verified", "domain-events"),
    ("referral.created", "domain-events"),
    ("referral.verified", "domain-events"),
    ("reward.earned", "domain-events"),
    ("campaign.milestone_reached", "domain-events"),
];

/// The event types whose default topic is `topic` (`user-events` → `user.logged_in`, …), for
/// a service that moves them all to a topic of its configuration.
pub fn types_routed_to(topic: &str) -> impl Iterator<Item = &'static str> + '_ {
    DEFAULTS
        .iter()
        .filter(move |(_, default)| *default == topic)
        .map(|(event_type, _)| *event_type)
}

#[derive(Debug)]
pub struct TopicRouter {
    topics: RwLock<HashMap<String, String>>,
}

impl Default for TopicRouter {
    fn default() -> Self {
        let topics = DEFAULTS
            .iter()
            .map(|(t, topic)| ((*t).to_owned(), (*topic).to_owned()))
            .collect();
        Self {
            topics: RwLock::new(topics),
        }
    }
}

impl TopicRouter {
    pub fn topic_for(&self, event_type: &str) -> String {
        let topics = self.topics.read().expect("topic map lock");
        topics
            .get(event_type)
            .cloned()
            .unwrap_or_else(|| DEFAULT_TOPIC.to_owned())
    }

    pub fn set_topic_mapping(&self, event_type: &str, topic: &str) {
        let mut topics = self.topics.write().expect("topic map lock");
        topics.insert(event_type.to_owned(), topic.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_seed_002_and_can_be_changed() {
        let router = TopicRouter::default();
        assert_eq!(router.topic_for("user.logged_in"), "user-events");
        assert_eq!(router.topic_for("user.token_refreshed"), "auth-events");
        let user_events: Vec<_> = types_routed_to("user-events").collect();
        assert!(user_events.contains(&"user.logged_in"));
        assert!(user_events.contains(&"user.deleted"));
        assert!(!user_events.contains(&"user.token_refreshed"));
        assert_eq!(
            types_routed_to("auth-events").collect::<Vec<_>>(),
            ["user.token_refreshed"]
        );
        assert_eq!(router.topic_for("api.error"), "error-events");
        assert_eq!(router.topic_for("reward.earned"), "domain-events");
        assert_eq!(router.topic_for("custom.event"), "default-events");
        router.set_topic_mapping("custom.event", "custom-topic");
        assert_eq!(router.topic_for("custom.event"), "custom-topic");
    }
}
