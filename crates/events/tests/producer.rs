//! The producer against the real broker: routing, keys and headers, batches, the DLQ, and what
//! the caller sees when nothing can be delivered.

use std::time::Duration;

use events::envelope::{ReferralVerified, UserSignedUp};
use events::headers::{self, header_str};
use events::rdkafka::Message;
use events::rdkafka::message::OwnedHeaders;
use events::testing::{TestTopic, read_from_start, test_kafka_config};
use events::{Delivery, EventBuilder, KafkaConfig, OutgoingRecord, Producer};
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;

fn signed_up(campaign: &str, user: &str) -> UserSignedUp {
    UserSignedUp {
        user_id: user.into(),
        campaign_id: campaign.into(),
        email: format!("{user}@example.com"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_go_to_their_topic_keyed_with_headers_and_trace_context() {
    let topic = TestTopic::create("domain", 3).await;
    let producer = Producer::connect(&test_kafka_config()).unwrap();
    producer
        .router()
        .set_topic_mapping("user.signed_up", &topic.name);

    // Inside an OpenTelemetry-backed span, the message carries its traceparent.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("signup");
    let expected_traceparent = span
        .in_scope(headers::current_traceparent)
        .expect("a span context");

    let event = EventBuilder::new("gateway")
        .with_correlation_id("req-7")
        .build(signed_up("campaign-1", "u1"));
    let delivery = {
        let _entered = span.enter();
        producer.publish(&event).await.unwrap()
    };
    assert!(
        matches!(delivery, Delivery::Published { attempts: 1, .. }),
        "{delivery:?}"
    );

    let message = read_from_start(&topic.name, 1).await.remove(0);
    assert_eq!(
        message.key(),
        Some(&b"campaign-1"[..]),
        "domain events are keyed by campaign"
    );
    let body: events::Event = events::Event::from_json(message.payload().unwrap()).unwrap();
    assert_eq!((body.id, &body.payload), (event.id, &event.payload));
    let headers = message.headers().unwrap();
    assert_eq!(
        header_str(headers, "message_id"),
        Some(event.id.to_string().as_str())
    );
    assert_eq!(header_str(headers, "event_type"), Some("user.signed_up"));
    assert_eq!(header_str(headers, "correlation_id"), Some("req-7"));
    assert_eq!(header_str(headers, "source"), Some("gateway"));
    assert!(header_str(headers, "produced_at").is_some());
    assert_eq!(
        header_str(headers, "traceparent"),
        Some(expected_traceparent.as_str())
    );
    assert_eq!(producer.stats().sent, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_delivered_whole_and_in_order_per_key() {
    let topic = TestTopic::create("batch", 4).await;
    let producer = Producer::connect(&test_kafka_config()).unwrap();
    producer
        .router()
        .set_topic_mapping("referral.verified", &topic.name);
    let builder = EventBuilder::new("test");
    let events: Vec<_> = (0..200)
        .map(|i| {
            builder.build(ReferralVerified {
                referral_id: format!("{i}"),
                referrer_id: "r".into(),
                referred_id: "d".into(),
                campaign_id: format!("campaign-{}", i % 7),
                points_per_referral: 1,
            })
        })
        .collect();
    let outcomes = producer.publish_batch(&events).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Delivery::Published { .. })))
    );
    producer.close(Duration::from_secs(10)).await.unwrap();

    let messages = read_from_start(&topic.name, 200).await;
    for campaign in 0..7 {
        let key = format!("campaign-{campaign}");
        let sequence: Vec<u32> = messages
            .iter()
            .filter(|m| m.key() == Some(key.as_bytes()))
            .map(|m| {
                match events::Event::from_json(m.payload().unwrap())
                    .unwrap()
                    .payload
                {
                    events::EventPayload::ReferralVerified(r) => r.referral_id.parse().unwrap(),
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect();
        assert!(
            sequence.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {sequence:?}"
        );
        assert_eq!(
            sequence.len(),
            (0..200).filter(|i| i % 7 == campaign).count()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_cannot_be_delivered_lands_in_the_dlq_at_once_with_the_reason() {
    let topic = TestTopic::create("target", 1).await;
    let dlq = TestTopic::create("dlq", 1).await;
    let mut config = test_kafka_config();
    config.producer.dlq_topic = dlq.name.clone();
    let producer = Producer::connect(&config).unwrap();
    let record = |topic: &str, partition| OutgoingRecord {
        topic: topic.to_owned(),
        partition,
        key: Some(b"user-1".to_vec()),
        payload: br#"{"id":"e1","type":"user.registered"}"#.to_vec(),
        headers: OwnedHeaders::new(),
    };
    // Let the producer learn both topics, so the failure below is decided locally.
    producer.send(record(&topic.name, None)).await.unwrap();
    producer.send(record(&dlq.name, None)).await.unwrap();

    // Partition 7 of a one-partition topic: retrying cannot help, so it is dead-lettered at once.
    let delivery = producer.send(record(&topic.name, Some(7))).await.unwrap();
    let Delivery::DeadLettered { reason, attempts } = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(attempts, 1, "not retried: {reason}");

    let message = read_from_start(&dlq.name, 2).await.remove(1);
    assert_eq!(message.key(), Some(&b"user-1"[..]));
    let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(
        value["event"],
        serde_json::json!({"id": "e1", "type": "user.registered"})
    );
    assert_eq!(value["topic"], topic.name.as_str());
    assert_eq!(value["failure_reason"], reason.as_str());
    assert_eq!(value["attempt_count"], 1);
    assert!(value["first_attempt"].is_string() && value["last_attempt"].is_string());
    let headers = message.headers().unwrap();
    assert_eq!(
        header_str(headers, "original_topic"),
        Some(topic.name.as_str())
    );
    let stats = producer.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.dead_lettered, stats.retried),
        (2, 1, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_its_topic_lands_in_the_dlq_cut_to_fit() {
    let topic = TestTopic::create("target", 1).await;
    let dlq = TestTopic::create("dlq", 1).await;
    let mut config = test_kafka_config();
    config.producer.dlq_topic = dlq.name.clone();
    let producer = Producer::connect(&config).unwrap();
    // 1.2 MB of text: over the producer's limit for any topic, its own DLQ included.
    let payload = vec![b'x'; 1_200_000];
    let delivery = producer
        .send(OutgoingRecord {
            topic: topic.name.clone(),
            partition: None,
            key: Some(b"user-1".to_vec()),
            payload: payload.clone(),
            headers: OwnedHeaders::new(),
        })
        .await
        .expect("dead-lettered, not lost");
    assert!(
        matches!(delivery, Delivery::DeadLettered { .. }),
        "{delivery:?}"
    );
    let message = read_from_start(&dlq.name, 1).await.remove(0);
    let headers = message.headers().unwrap();
    assert_eq!(header_str(headers, "event_truncated"), Some("true"));
    assert_eq!(header_str(headers, "original_value_bytes"), Some("1200000"));
    let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(value["event_truncated"], true);
    assert_eq!(value["event_bytes"], 1_200_000);
    assert!(value["event"].as_str().unwrap().starts_with("xxx"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_broker_the_caller_gets_the_error_after_backing_off() {
    let mut config = KafkaConfig::new("127.0.0.1:1", "tests");
    config.producer.delivery_timeout = Duration::from_millis(500);
    config.producer.retry_max = 2;
    config.producer.retry_backoff = Duration::from_millis(50);
    let producer = Producer::connect(&config).unwrap();
    let event = EventBuilder::new("test").build(signed_up("c", "u"));
    let error = producer.publish(&event).await.unwrap_err();
    assert!(error.to_string().contains("nor to the DLQ"), "{error}");
    let stats = producer.stats();
    assert_eq!(
        (stats.retried, stats.failed, stats.sent, stats.dead_lettered),
        (2, 1, 0, 0)
    );
}
