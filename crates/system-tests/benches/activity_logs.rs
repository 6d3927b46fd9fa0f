//! Activity log benchmark (issue #6): events/s from a pre-filled `user-activity-logs` topic into
//! PostgreSQL by the activity-log-processor, beside `COPY` of the same rows in the same run.
//!
//! Run with `make bench` (a release binary of the processor is built first).

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use chrono::Utc;
use repo::ActivityLogs;
use repo::testing::TestDatabase;
use serde_json::Value;
use system_tests::{ActivityStack, CopyClient, activity, count};

const EVENTS: usize = 10_000;

#[tokio::main]
async fn main() {
    let stack = ActivityStack::new().await;
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            activity(
                &format!("user{}", i % 500),
                &format!("bench-{i}"),
                "page_view",
            )
        })
        .collect();
    for chunk in events.chunks(1000) {
        stack.produce(chunk).await;
    }
    let processor = stack.start_processor().await;
    stack.wait_stored(EVENTS as i64, &processor).await;
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
    processor.terminate().await;

    let copy_secs = copy_same_rows(&events).await.as_secs_f64();
    let topic_secs = span_micros as f64 / 1e6;
    let rate = |secs: f64| EVENTS as f64 / secs;
    let row = |name: &str, secs: f64| {
        println!("   {name:<46} {:>9.0} events/s  ({secs:.2} s)", rate(secs));
    };
    println!(
        "activity-log-processor vs COPY: {EVENTS} events from a pre-filled topic (release build)"
    );
    row("processor, topic to table (first to last row)", topic_secs);
    row("  of which in insert statements", insert_secs);
    row("COPY of the same rows (baseline)", copy_secs);
    println!(
        "   ratio to COPY: {:.3} topic to table, {:.3} insert statements",
        rate(topic_secs) / rate(copy_secs),
        rate(insert_secs) / rate(copy_secs)
    );
}

/// `COPY` of the same events into a fresh schema's `activity_logs`, in batches of 500 (the
/// processor's batch size).
async fn copy_same_rows(events: &[Value]) -> Duration {
    let db = TestDatabase::with_pool_size(1).await;
    ActivityLogs::new(db.database().clone())
        .ensure_partitions(Utc::now().date_naive() - chrono::Days::new(1), 3)
        .await
        .expect("partitions");
    let client = CopyClient::connect(&db).await;
    let started = Instant::now();
    for batch in events.chunks(500) {
        let mut rows = String::new();
        for event in batch {
            let metadata = event["metadata"].to_string().replace('"', "\"\"");
            rows.push_str(&format!(
                "{},{},{},{},\"{metadata}\",{}\n",
                event["eventId"].as_str().expect("eventId"),
                event["userId"].as_str().expect("userId"),
                event["activityType"].as_str().expect("type"),
                event["timestamp"].as_str().expect("timestamp"),
                event["version"].as_str().expect("version"),
            ));
        }
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
