//! Producer and consumer throughput of this crate beside plain rdkafka (`BaseProducer` and
//! `BaseConsumer`, no wrapper of ours): the same messages against the same broker in one run.
//!
//! Run with `make bench` (or `cargo bench -p system-tests --bench events_throughput` with the
//! stack up); rows 5 and 6 of the summary table.
//! The machines are shared and noisy: read the ratios, not the absolute figures. Each round
//! uses fresh topics (deleted afterwards) of 200,000 messages; the median round is reported.

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::envelope::ReferralVerified;
use events::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use events::rdkafka::message::OwnedMessage;
use events::rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use events::testing::{TestTopic, test_kafka_config, unique_name};
use events::{
    ConsumerSettings, Event, EventBuilder, EventConsumer, Handler, HandlerError, KafkaConfig,
    Producer,
};
use system_tests::bench::{self, median};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 200_000;
const ROUNDS: usize = 3;
/// A hang guard: a round that has not finished by then is reported as failed.
const GIVE_UP: Duration = Duration::from_secs(120);

/// Both sides use the same client settings: the production defaults.
fn config() -> KafkaConfig {
    test_kafka_config()
}

fn events() -> Vec<Event> {
    let builder = EventBuilder::new("bench");
    (0..MESSAGES)
        .map(|i| {
            builder.build(ReferralVerified {
                referral_id: format!("referral-{i}"),
                referrer_id: "referrer".into(),
                referred_id: "referred".into(),
                campaign_id: format!("campaign-{}", i % 100),
                points_per_referral: 1,
            })
        })
        .collect()
}

async fn ours_produce(topic: &str, events: &[Event]) -> Duration {
    let producer = Producer::connect(&config()).unwrap();
    producer
        .router()
        .set_topic_mapping("referral.verified", topic);
    let started = Instant::now();
    for outcome in producer.publish_batch(events).await {
        outcome.unwrap();
    }
    started.elapsed()
}

fn plain_produce(topic: &str, events: &[Event]) -> Duration {
    let producer: BaseProducer = config().producer_client_config().create().unwrap();
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.partition_key(), e.to_json()))
        .collect();
    let started = Instant::now();
    for (key, payload) in &records {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(GIVE_UP).unwrap();
    started.elapsed()
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

#[async_trait]
impl Handler for Count {
    async fn handle(&self, _message: &OwnedMessage) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn ours_consume(topic: &str) -> Option<Duration> {
    let mut settings = ConsumerSettings::new(unique_name("bench-ours"), &[topic], "unused-dlq");
    settings.worker_pool_size = 10;
    let consumer =
        EventConsumer::new(&config(), settings, Producer::connect(&config()).unwrap()).unwrap();
    let count = Count::default();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(consumer.run(count.clone(), shutdown.clone()));
    while count.0.load(Ordering::Relaxed) < MESSAGES && started.elapsed() < GIVE_UP {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    (count.0.load(Ordering::Relaxed) >= MESSAGES).then_some(elapsed)
}

fn plain_consume(topic: &str) -> Option<Duration> {
    let consumer: BaseConsumer = config()
        .client_config()
        .set("group.id", unique_name("bench-plain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut received = 0;
    while received < MESSAGES && started.elapsed() < GIVE_UP {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap();
            received += 1;
        }
    }
    let elapsed = started.elapsed();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    (received >= MESSAGES).then_some(elapsed)
}

fn rate(elapsed: Duration) -> f64 {
    MESSAGES as f64 / elapsed.as_secs_f64()
}

fn report(row: u32, what: &str, ours: Vec<Duration>, plain: Vec<Duration>) {
    println!(
        "  {what} ({} and {} of {ROUNDS} rounds completed)",
        ours.len(),
        plain.len()
    );
    let (Some(ours), Some(plain)) = (median(&ours), median(&plain)) else {
        println!("    no complete round to compare");
        return;
    };
    println!(
        "    {:<26} {:>9.0} msg/s  ({:.3} s)",
        "events crate",
        rate(ours),
        ours.as_secs_f64()
    );
    println!(
        "    {:<26} {:>9.0} msg/s  ({:.3} s)",
        "plain rdkafka (baseline)",
        rate(plain),
        plain.as_secs_f64()
    );
    let ratio = rate(ours) / rate(plain);
    println!("    ratio events / plain: {ratio:.2}");
    bench::record(&bench::spec(row).row(
        format!("{} msg/s", bench::thousands(rate(ours))),
        format!("{} msg/s (plain rdkafka)", bench::thousands(rate(plain))),
        Some(ratio),
        ratio >= 0.9,
        format!("{MESSAGES} events of ~250 bytes, 3 partitions; median of {ROUNDS} rounds"),
    ));
}

#[tokio::main]
async fn main() {
    let events = events();
    let (mut produce_ours, mut produce_plain, mut consume_ours, mut consume_plain) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let ours_topic = TestTopic::create("bench-ours", 3).await;
        let plain_topic = TestTopic::create("bench-plain", 3).await;
        produce_ours.push(ours_produce(&ours_topic.name, &events).await);
        let (name, batch) = (plain_topic.name.clone(), events.clone());
        produce_plain.push(
            tokio::task::spawn_blocking(move || plain_produce(&name, &batch))
                .await
                .unwrap(),
        );
        // Each consumer reads the topic its own side produced, in a group of its own.
        consume_ours.extend(ours_consume(&ours_topic.name).await);
        let name = plain_topic.name.clone();
        consume_plain.extend(
            tokio::task::spawn_blocking(move || plain_consume(&name))
                .await
                .unwrap(),
        );
    }
    println!(
        "events throughput: {MESSAGES} events of ~250 bytes per round, 100 keys, 3 partitions"
    );
    report(5, "produce, acknowledged", produce_ours, produce_plain);
    report(
        6,
        "consume, no-op handler, pool of 10, committing",
        consume_ours,
        consume_plain,
    );
}
