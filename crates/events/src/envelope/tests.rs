use serde_json::{Value, json};

use super::*;

/// Seed 003's examples, verbatim, plus the schema version.
fn documented(event_type: &str, data: Value) -> Value {
    json!({
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "type": event_type,
        "account_id": "campaign-uuid",
        "campaign_id": "campaign-uuid",
        "data": data,
        "timestamp": "2025-01-01T12:00:00Z",
        "version": "1.0"
    })
}

fn seed_003_examples() -> Vec<Value> {
    vec![
        documented(
            "user.signed_up",
            json!({"user_id": "user-uuid", "campaign_id": "campaign-uuid", "email": "user@example.com"}),
        ),
        documented(
            "user.verified",
            json!({"user_id": "user-uuid", "campaign_id": "campaign-uuid", "email": "user@example.com"}),
        ),
        documented(
            "referral.created",
            json!({"referral_id": "referral-uuid", "referrer_id": "user-uuid", "referred_id": "user-uuid", "campaign_id": "campaign-uuid"}),
        ),
        documented(
            "referral.verified",
            json!({"referral_id": "referral-uuid", "referrer_id": "user-uuid", "referred_id": "user-uuid", "campaign_id": "campaign-uuid", "points_per_referral": 1}),
        ),
        documented(
            "reward.earned",
            json!({"user_reward_id": "user-reward-uuid", "user_id": "user-uuid", "campaign_id": "campaign-uuid", "reward_id": "reward-uuid"}),
        ),
        documented(
            "campaign.milestone_reached",
            json!({"campaign_id": "campaign-uuid", "milestone": "1000_participants", "participant_count": 1000}),
        ),
    ]
}

#[test]
fn domain_events_match_the_documents_field_for_field() {
    for example in seed_003_examples() {
        let event: Event = serde_json::from_value(example.clone()).unwrap();
        assert_eq!(event.event_type(), example["type"]);
        // Serializing gives back exactly the document's JSON: no field more, none less.
        assert_eq!(serde_json::to_value(&event).unwrap(), example);
    }
}

#[test]
fn unknown_types_and_misshapen_data_are_rejected_and_extra_fields_ignored() {
    let mut unknown = documented("user.teleported", json!({}));
    assert!(serde_json::from_value::<Event>(unknown.take()).is_err());
    let missing = documented("reward.earned", json!({"user_id": "u", "campaign_id": "c"}));
    assert!(serde_json::from_value::<Event>(missing).is_err());
    // A field a newer producer added is ignored.
    let extra = documented(
        "user.verified",
        json!({"user_id": "u", "campaign_id": "c", "email": "e", "x": 1}),
    );
    let event = serde_json::from_value::<Event>(extra).unwrap();
    assert_eq!(event.event_type(), "user.verified");
}

#[test]
fn the_builder_stamps_id_time_version_source_and_correlation() {
    let builder = EventBuilder::new("gateway").with_correlation_id("req-42");
    let signed_up = UserSignedUp {
        user_id: "u1".into(),
        campaign_id: "c1".into(),
        email: "a@b.io".into(),
    };
    let first = builder.build(signed_up.clone());
    let second = builder.build(signed_up);
    assert_ne!(first.id, second.id);
    assert_eq!(first.version, SCHEMA_VERSION);
    assert_eq!(
        (first.source.as_deref(), first.correlation_id.as_deref()),
        (Some("gateway"), Some("req-42"))
    );
    assert_eq!(
        (first.campaign_id.as_deref(), first.account_id.as_deref()),
        (Some("c1"), Some("c1"))
    );
    assert_eq!(first.partition_key(), "c1");
    // Source and correlation travel in headers, not in the JSON.
    let json = serde_json::to_value(&first).unwrap();
    assert!(json.get("source").is_none() && json.get("correlation_id").is_none());
    let back = Event::from_json(&first.to_json()).unwrap();
    assert_eq!(back.payload, first.payload);
}

#[test]
fn business_events_carry_no_campaign_and_are_keyed_by_user() {
    let builder = EventBuilder::new("registration-batcher");
    let registered = builder.build(UserRegistered {
        user_id: "123".into(),
        email: Some("a@b.io".into()),
        phone: None,
        first_name: None,
        last_name: None,
        registration_time: "2025-01-01T12:00:00Z".parse().unwrap(),
        ip_address: None,
        registration_source: "async".into(),
        email_verified: false,
        organization_id: None,
    });
    assert_eq!(registered.partition_key(), "123");
    let json = serde_json::to_value(&registered).unwrap();
    assert_eq!(json["type"], "user.registered");
    assert_eq!(json["data"]["user_id"], "123");
    assert!(json.get("campaign_id").is_none() && json.get("account_id").is_none());
    assert!(
        json["data"].get("phone").is_none(),
        "unset optional fields are omitted"
    );

    let alert = builder.build(SystemAlert {
        alert_id: "a1".into(),
        alert_type: "error".into(),
        service: "api-gateway".into(),
        component: "auth".into(),
        message: "High error rate".into(),
        severity: "high".into(),
        alert_time: Utc::now(),
        metadata: [("error_rate".to_owned(), json!(0.15))].into(),
        resolved: false,
    });
    assert_eq!(
        alert.partition_key(),
        alert.id.to_string(),
        "no user: keyed by event ID"
    );
}

#[test]
fn newer_producers_events_are_read_or_recognised_as_unknown() {
    // One more field in data (a minor version's addition) is ignored.
    let referral = json!({
        "id": "0195f0a4-5c4e-7000-8000-000000000001", "type": "referral.created",
        "campaign_id": "c1", "account_id": "c1", "timestamp": "2026-11-30T12:00:00Z",
        "version": "1.1", "trace_origin": "somewhere",
        "data": {"referral_id": "r", "referrer_id": "a", "referred_id": "b",
                 "campaign_id": "c1", "channel": "twitter"}
    });
    let Decoded::Event(event) = Event::decode(referral.to_string().as_bytes()).unwrap() else {
        panic!("a known type")
    };
    assert_eq!(event.event_type(), "referral.created");
    assert!(event.is_readable_version());

    // A type this version does not know is named, not an error.
    let mut updated = referral.clone();
    updated["type"] = json!("campaign.updated");
    assert_eq!(
        Event::decode(updated.to_string().as_bytes()).unwrap(),
        Decoded::UnknownType {
            event_type: "campaign.updated".into()
        }
    );

    // A known type with a missing field, or not an event at all, is an error.
    let mut broken = referral.clone();
    broken["data"]
        .as_object_mut()
        .unwrap()
        .remove("referrer_id");
    assert!(Event::decode(broken.to_string().as_bytes()).is_err());
    assert!(Event::decode(b"garbage").is_err());
    assert!(Event::decode(br#"{"type": 7}"#).is_err());

    // A new major version whose data no longer has this version's shape is named as such.
    let mut v2_shape = broken.clone();
    v2_shape["version"] = json!("2.0");
    assert_eq!(
        Event::decode(v2_shape.to_string().as_bytes()).unwrap(),
        Decoded::OtherMajorVersion {
            event_type: "referral.created".into(),
            version: "2.0".into()
        }
    );
    // A new major version is not read as this one.
    let mut v2 = referral;
    v2["version"] = json!("2.0");
    let Decoded::Event(event) = Event::decode(v2.to_string().as_bytes()).unwrap() else {
        panic!("a known type")
    };
    assert!(!event.is_readable_version());
}
