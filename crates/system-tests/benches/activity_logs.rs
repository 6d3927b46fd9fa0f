//! Activity log benchmark (rows 4 and 13 of the summary table): events/s from a pre-filled
//! `user-activity-logs` topic into PostgreSQL by the activity-log-processor, beside `COPY` of the
//! same rows into the same tables (the events and their idempotency keys) in the same run;
//! median of `ROUNDS` rounds, each on a fresh schema and topic. Also the processor's peak RSS.
//!
//! Run with `make bench` (a release binary of the processor is built first).

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use chrono::Utc;
use repo::ActivityLogs;
use repo::testing::TestDatabase;
use serde_json::Value;
use system_tests::bench::{self, median, thousands};
use system_tests::{ActivityStack, CopyClient, activity, count};

const EVENTS: usize = 200_000;
const ROUNDS: usize = 3;

fn events(round: usize) -> Vec<Value> {
    (0..EVENTS)
        .map(|i| {
            activity(
                &format!("user{}", i % 5000),
                &format!("bench-{round}-{i}"),
                "page_view",
            )
        })
        .collect()
}

/// One round: seconds topic to table, seconds in insert statements, peak RSS in bytes.
async fn processor_round(events: &[Value]) -> (f64, f64, Option<u64>) {
    let stack = ActivityStack::new().await;
    for chunk in events.chunks(5000) {
        stack.produce(chunk).await;
    }
    let processor = stack.start_processor().await;
    bench::wait_for_counter(
        &processor,
        "activity_logs_stored_total",
        EVENTS as f64,
        Duration::from_secs(120),
    )
    .await;
    let span_micros = count(
        &stack.db,
        "SELECT (EXTRACT(EPOCH FROM max(stored_at) - min(stored_at)) * 1000000)::int8 AS n FROM activity_logs",
    )
    .await;
    let (_, metrics) = processor.get("/metrics").await;
    let insert_secs: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("activity_logs_insert_duration_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .expect("activity_logs_insert_duration_seconds in /metrics");
    let rss = processor.pid().and_then(bench::peak_rss_bytes);
    processor.terminate().await;
    (span_micros as f64 / 1e6, insert_secs, rss)
}

#[tokio::main]
async fn main() {
    println!(
        "activity-log-processor vs COPY: {EVENTS} events from a pre-filled topic, {ROUNDS} rounds (release build)"
    );
    let (mut topic, mut inserts, mut copies, mut rss) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let events = events(round);
        let (span, insert, peak) = processor_round(&events).await;
        let copy = copy_same_rows(&events).await.as_secs_f64();
        println!(
            "   round {round}: topic to table {span:.2} s, insert statements {insert:.2} s, COPY {copy:.2} s"
        );
        topic.push(span);
        inserts.push(insert);
        copies.push(copy);
        rss.extend(peak);
    }
    let rate = |secs: f64| EVENTS as f64 / secs;
    let (topic, inserts, copy) = (
        median(&topic).expect("rounds"),
        median(&inserts).expect("rounds"),
        median(&copies).expect("rounds"),
    );
    println!(
        "   insert statements alone: {} events/s, ratio to COPY {:.2}",
        thousands(rate(inserts)),
        rate(inserts) / rate(copy)
    );
    let ratio = rate(topic) / rate(copy);
    bench::record(&bench::spec(4).row(
        format!("{} events/s", thousands(rate(topic))),
        format!("{} events/s (COPY)", thousands(rate(copy))),
        Some(ratio),
        ratio >= 0.7,
        format!(
            "{EVENTS} events of 5,000 users pre-filled on 3 partitions, first to last stored row by PostgreSQL's clock, median of {ROUNDS} rounds; COPY (CSV) of the events and their keys in batches of 500"
        ),
    ));
    if let Some(peak) = rss.iter().copied().max() {
        let mib = peak as f64 / (1024.0 * 1024.0);
        bench::record(&bench::spec(13).row(
            format!("{mib:.0} MiB"),
            "—".into(),
            None,
            mib <= 64.0,
            "VmHWM of the activity-log-processor after storing 200,000 events; the highest of the rounds",
        ));
    }
}

/// `COPY` of the same events into a fresh schema's `activity_logs` and of their keys into
/// `activity_event_keys`, in batches of 500 (the processor's batch size).
async fn copy_same_rows(events: &[Value]) -> Duration {
    let db = TestDatabase::with_pool_size(1).await;
    ActivityLogs::new(db.database().clone())
        .ensure_partitions(Utc::now().date_naive() - chrono::Days::new(1), 3)
        .await
        .expect("partitions");
    let client = CopyClient::connect(&db).await;
    let started = Instant::now();
    for batch in events.chunks(500) {
        let (mut rows, mut keys) = (String::new(), String::new());
        for event in batch {
            let metadata = event["metadata"].to_string().replace('"', "\"\"");
            let (event_id, user_id, timestamp) = (
                event["eventId"].as_str().expect("eventId"),
                event["userId"].as_str().expect("userId"),
                event["timestamp"].as_str().expect("timestamp"),
            );
            rows.push_str(&format!(
                "{event_id},{user_id},{},{timestamp},\"{metadata}\",{}\n",
                event["activityType"].as_str().expect("type"),
                event["version"].as_str().expect("version"),
            ));
            keys.push_str(&format!("{user_id},{event_id},{timestamp}\n"));
        }
        let copied = client
            .copy(
                "COPY activity_event_keys (user_id, event_id, occurred_at) FROM STDIN (FORMAT csv)",
                keys,
            )
            .await;
        assert_eq!(copied as usize, batch.len());
        let copied = client
            .copy(
                "COPY activity_logs (event_id, user_id, activity_type, occurred_at, metadata, version) FROM STDIN (FORMAT csv)",
                rows,
            )
            .await;
        assert_eq!(copied as usize, batch.len());
    }
    started.elapsed()
}
