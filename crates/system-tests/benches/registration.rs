//! Registration benchmarks (issue #5), each beside a baseline measured in the same run:
//!
//! 1. registration-batcher: users/s from a pre-filled `user.registration` topic into
//!    PostgreSQL, beside `COPY` of the same rows (users, credentials, outcomes).
//! 2. gateway: async registrations/s under load with OWASP Argon2id parameters, beside the raw
//!    Argon2id hash rate on the same cores; p50/p99 latency.
//! 3. end to end: from `202` to `completed`, p50/p99, at low and at high load.
//!
//! Run with `make bench` (release binaries of the gateway and the batcher are built first).

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use domain::{NodeId, RegistrationMessage, SnowflakeGenerator};
use futures::StreamExt as _;
use repo::testing::TestDatabase;
use serde_json::{Value, json};
use system_tests::{CopyClient, RegistrationStack, registration};
use uuid::Uuid;

const BATCHER_USERS: usize = 200_000;
const GATEWAY_REQUESTS: usize = 600;
const LOW_LOAD_REQUESTS: usize = 20;
const HIGH_LOAD_REQUESTS: usize = 1_000;
const CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("registration benchmarks on {cores} cores (release build)\n");
    batcher_against_copy().await;
    gateway_and_end_to_end(cores).await;
}

async fn batcher_against_copy() {
    let stack = RegistrationStack::new().await;
    let messages: Vec<RegistrationMessage> = (0..BATCHER_USERS)
        .map(|i| registration(&format!("bench-{i}@example.com")))
        .collect();
    for chunk in messages.chunks(1000) {
        stack.produce(chunk).await;
    }
    let batcher = stack.start_batcher(&[]).await;
    stack
        .wait_until_finished(BATCHER_USERS as i64, Duration::from_secs(300), &[&batcher])
        .await;
    // The batcher's working time, by the database's clock: first claim to last outcome.
    let span = stack
        .count(
            "SELECT (EXTRACT(EPOCH FROM max(updated_at) - min(created_at)) * 1000000)::int8 AS n \
             FROM registration_requests",
        )
        .await;
    let batcher_secs = span as f64 / 1e6;
    // The time spent in the writer (one transaction per batch, then user.registered published).
    let (_, metrics) = batcher.get("/metrics").await;
    let seconds = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}_sum ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let write_secs = seconds("registration_write_duration_seconds");
    let transaction_secs = seconds("registration_transaction_duration_seconds");
    batcher.terminate().await;

    let copy_secs = copy_same_rows(&messages).await.as_secs_f64();
    let rate = |secs: f64| BATCHER_USERS as f64 / secs;
    let row = |name: &str, secs: f64| {
        println!("   {name:<44} {:>9.0} users/s  ({secs:.2} s)", rate(secs));
    };
    println!(
        "1. registration-batcher vs COPY: {BATCHER_USERS} registrations from a pre-filled topic"
    );
    row(
        "batcher, topic to table (first claim to last)",
        batcher_secs,
    );
    row(
        "  of which in the writer (transactions + events)",
        write_secs,
    );
    row("  of which in PostgreSQL transactions", transaction_secs);
    row("COPY of the same rows (baseline)", copy_secs);
    println!(
        "   ratio to COPY: {:.3} topic to table, {:.3} writer, {:.3} transactions\n",
        rate(batcher_secs) / rate(copy_secs),
        rate(write_secs) / rate(copy_secs),
        rate(transaction_secs) / rate(copy_secs)
    );
}

/// `COPY` of the rows the batcher writes (user, credential, outcome), in batches of 1000.
async fn copy_same_rows(messages: &[RegistrationMessage]) -> Duration {
    let db = TestDatabase::with_pool_size(1).await;
    let client = CopyClient::connect(&db).await;
    let ids = SnowflakeGenerator::new(NodeId::new(7).expect("node"));
    let started = Instant::now();
    for batch in messages.chunks(1000) {
        let (mut users, mut credentials, mut outcomes) =
            (String::new(), String::new(), String::new());
        for message in batch {
            let id = ids.generate();
            let email = message.email.as_deref().unwrap_or_default();
            users.push_str(&format!("{id},{email},,false,false,true\n"));
            credentials.push_str(&format!("{id},\"{}\"\n", message.password));
            outcomes.push_str(&format!("{},completed,{id}\n", message.request_id));
        }
        for (statement, rows) in [
            (
                "COPY users (id, email, phone, is_email_verified, is_phone_verified, consent) FROM STDIN (FORMAT csv)",
                users,
            ),
            (
                "COPY user_credentials (user_id, password_hash) FROM STDIN (FORMAT csv)",
                credentials,
            ),
            (
                "COPY registration_requests (request_id, status, user_id) FROM STDIN (FORMAT csv)",
                outcomes,
            ),
        ] {
            client.copy(statement, rows).await;
        }
    }
    started.elapsed()
}

async fn gateway_and_end_to_end(cores: usize) {
    let stack = RegistrationStack::new().await;
    let batcher = stack.start_batcher(&[]).await;
    // OWASP's parameters, as in production.
    let (gateway, api) = stack
        .start_gateway(&[("ARGON2_MEMORY_KIB", "19456"), ("ARGON2_ITERATIONS", "2")])
        .await;
    let http = reqwest::Client::new();

    let raw = raw_hash_rate(cores, GATEWAY_REQUESTS);
    let (under_load, _) = load(&http, &api, "load", GATEWAY_REQUESTS, CONCURRENCY).await;
    println!(
        "2. gateway register-async under load: {GATEWAY_REQUESTS} requests, {CONCURRENCY} at a time, Argon2id m=19456 t=2 p=1"
    );
    println!(
        "   {:<34} {:>9.0} requests/s  (p50 {:.0} ms, p99 {:.0} ms)",
        "gateway", under_load.rate, under_load.p50_ms, under_load.p99_ms
    );
    println!(
        "   {:<34} {:>9.0} hashes/s",
        format!("raw Argon2id on {cores} threads (baseline)"),
        raw
    );
    println!(
        "   ratio gateway / raw hashing: {:.2}\n",
        under_load.rate / raw
    );

    // Low load: one request at a time with pauses; high load: as fast as the gateway takes them.
    let low = load_paced(&http, &api, LOW_LOAD_REQUESTS, Duration::from_secs(1)).await;
    let (_, high) = load(&http, &api, "high", HIGH_LOAD_REQUESTS, CONCURRENCY).await;
    let expected = (GATEWAY_REQUESTS + LOW_LOAD_REQUESTS + HIGH_LOAD_REQUESTS) as i64;
    stack
        .wait_until_finished(expected, Duration::from_secs(300), &[&batcher, &gateway])
        .await;
    let low = end_to_end(&stack, &low).await;
    let high = end_to_end(&stack, &high).await;
    println!("3. end to end, 202 to completed (batches: 1000 messages, 5 s max wait, 500 ms idle)");
    println!(
        "   low load  ({LOW_LOAD_REQUESTS} requests, 1/s, each batch flushed when idle): p50 {:>6.0} ms, p99 {:>6.0} ms",
        low.0, low.1
    );
    println!(
        "   high load ({HIGH_LOAD_REQUESTS} requests, {CONCURRENCY} at a time, batches flushed at max wait): p50 {:>6.0} ms, p99 {:>6.0} ms",
        high.0, high.1
    );
    gateway.terminate().await;
    batcher.terminate().await;
}

fn raw_hash_rate(threads: usize, hashes: usize) -> f64 {
    let params = Params::new(19456, 2, 1, None).expect("params");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let params = params.clone();
            scope.spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                for _ in 0..hashes / threads {
                    let salt = SaltString::generate(&mut OsRng);
                    argon2.hash_password(b"password123", &salt).expect("hash");
                }
            });
        }
    });
    (hashes / threads * threads) as f64 / started.elapsed().as_secs_f64()
}

struct Load {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// An accepted request: its ID and when the 202 arrived.
type Accepted = (Uuid, DateTime<Utc>);

async fn register(http: &reqwest::Client, api: &str, email: String) -> (Duration, Accepted) {
    let started = Instant::now();
    let response = http
        .post(format!("{api}/api/v1/auth/register-async"))
        .json(&json!({"email": email, "password": "password123", "consent": true}))
        .send()
        .await
        .expect("POST");
    let accepted_at = Utc::now();
    assert_eq!(
        response.status(),
        202,
        "the benchmark stays under the hashing queue's capacity"
    );
    let body: Value = response.json().await.expect("JSON");
    let request_id = body["request_id"]
        .as_str()
        .expect("request_id")
        .parse()
        .expect("uuid");
    (started.elapsed(), (request_id, accepted_at))
}

async fn load(
    http: &reqwest::Client,
    api: &str,
    tag: &str,
    requests: usize,
    concurrency: usize,
) -> (Load, Vec<Accepted>) {
    let started = Instant::now();
    let results: Vec<(Duration, Accepted)> = futures::stream::iter(0..requests)
        .map(|i| register(http, api, format!("{tag}-{i}@example.com")))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<f64> = results
        .iter()
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let load = Load {
        rate: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    };
    (load, results.into_iter().map(|(_, a)| a).collect())
}

async fn load_paced(
    http: &reqwest::Client,
    api: &str,
    requests: usize,
    every: Duration,
) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    for i in 0..requests {
        accepted.push(register(http, api, format!("low-{i}@example.com")).await.1);
        tokio::time::sleep(every).await;
    }
    accepted
}

#[derive(QueryableByName)]
struct Finished {
    #[diesel(sql_type = SqlUuid)]
    request_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

/// p50 and p99 of accepted → completed, in ms (the outcome's `updated_at` is when the batch
/// committed; the same machine's clock).
async fn end_to_end(stack: &RegistrationStack, accepted: &[Accepted]) -> (f64, f64) {
    let ids: Vec<Uuid> = accepted.iter().map(|(id, _)| *id).collect();
    let mut conn = stack.db.database().connection().await.expect("connection");
    let finished: Vec<Finished> = diesel::sql_query(
        "SELECT request_id, updated_at FROM registration_requests WHERE request_id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
    .load(&mut *conn)
    .await
    .expect("outcomes");
    let done: std::collections::HashMap<Uuid, DateTime<Utc>> = finished
        .into_iter()
        .map(|f| (f.request_id, f.updated_at))
        .collect();
    let mut latencies: Vec<f64> = accepted
        .iter()
        .map(|(id, at)| (done[id] - *at).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}
