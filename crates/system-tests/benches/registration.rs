//! Registration benchmarks, each beside a baseline measured in the same run (rows 1–3, 7–9, 12
//! and 14 of the summary table):
//!
//! 1. 200,000 registrations in batches of 1000, beside `COPY` of the same rows (users,
//!    credentials, outcomes) into a fresh schema, median of `ROUNDS` rounds: the batcher's
//!    PostgreSQL part alone (`Registrations::register`, one transaction per batch), the whole
//!    writer (`RegistrationWriter::write`, with every `user.registered` acknowledged by the
//!    broker), each called in this process with nothing else running; and the
//!    registration-batcher service from a pre-filled `user.registration` topic to the table, by
//!    the database's clock.
//! 2. gateway: `register-async` at saturation, driven by `loadgen` (the load generator users
//!    run against their own deployment), with OWASP Argon2id parameters, beside the raw Argon2id
//!    hash rate on the same cores; then at 80% of that rate, open loop, following each request
//!    to `completed`: answer and end-to-end p99.
//! 3. memory: the peak resident set of the batcher and of the gateway.
//!
//! Run with `make bench` (release binaries of the gateway, the batcher and loadgen are built
//! first).

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::{NodeId, RegistrationMessage, SnowflakeGenerator};
use events::Producer;
use events::testing::{TestTopic, test_kafka_config};
use registration::{RegistrationWriter, Written};
use repo::testing::TestDatabase;
use repo::{PendingRegistration, RegistrationOutcome, Registrations};
use serde_json::Value;
use service_runtime::snowflake_ids::SnowflakeIds;
use service_runtime::testing::workspace_binary;
use service_runtime::{CancellationToken, Env};
use system_tests::bench::{self, median, thousands};
use system_tests::{CopyClient, RegistrationStack, registration};

const BATCHER_USERS: usize = 200_000;
const ROUNDS: usize = 3;
/// Argon2id as in production (OWASP): 19 MiB, 2 iterations, 1 lane.
const ARGON2_MEMORY_KIB: u32 = 19_456;
const ARGON2_ITERATIONS: u32 = 2;
/// Each loadgen run at saturation, and the run at 80% of it.
const SATURATION_RUN: &str = "10s";
const PACED_RUN: &str = "20s";
const MIB: f64 = 1024.0 * 1024.0;

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("registration benchmarks on {cores} cores (release build)\n");
    batcher_against_copy().await;
    gateway_and_end_to_end(cores).await;
}

/// One round of the batcher: seconds in transactions, in the writer, topic to table; and the
/// batcher's peak RSS in bytes.
struct BatcherRound {
    transactions: f64,
    writer: f64,
    topic_to_table: f64,
    peak_rss: Option<u64>,
}

async fn batcher_round(round: usize) -> BatcherRound {
    let stack = RegistrationStack::new().await;
    let messages = messages(round);
    for chunk in messages.chunks(5000) {
        stack.produce(chunk).await;
    }
    let batcher = stack.start_batcher(&[]).await;
    bench::wait_for_counter(
        &batcher,
        "registrations_created_total",
        BATCHER_USERS as f64,
        Duration::from_secs(120),
    )
    .await;
    // Topic to table by the database's clock: the first claim to the last batch's.
    let span = stack
        .count(
            "SELECT (EXTRACT(EPOCH FROM max(updated_at) - min(created_at)) * 1000000)::int8 AS n \
             FROM registration_requests",
        )
        .await;
    let (_, metrics) = batcher.get("/metrics").await;
    let seconds = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}_sum ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let peak_rss = batcher.pid().and_then(bench::peak_rss_bytes);
    let round = BatcherRound {
        transactions: seconds("registration_transaction_duration_seconds"),
        writer: seconds("registration_write_duration_seconds"),
        topic_to_table: span as f64 / 1e6,
        peak_rss,
    };
    batcher.terminate().await;
    round
}

async fn batcher_against_copy() {
    println!(
        "1. registrations vs COPY: {BATCHER_USERS} registrations in batches of 1000, {ROUNDS} rounds"
    );
    let (mut transactions, mut writer, mut topic, mut copy, mut rss) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let register = register_directly(round).await;
        let write = write_directly(round).await;
        let measured = batcher_round(round).await;
        let copied = copy_same_rows(round).await.as_secs_f64();
        println!(
            "   round {round}: register {register:.2} s, writer {write:.2} s, batcher topic to table {:.2} s (of which transactions {:.2} s, writer {:.2} s), COPY {copied:.2} s",
            measured.topic_to_table, measured.transactions, measured.writer
        );
        transactions.push(register);
        writer.push(write);
        topic.push(measured.topic_to_table);
        copy.push(copied);
        rss.extend(measured.peak_rss);
    }
    let rate = |secs: f64| BATCHER_USERS as f64 / secs;
    let copy = median(&copy).expect("rounds");
    let copy_rate = rate(copy);
    for (row, secs, target, note) in [
        (
            1,
            median(&transactions).expect("rounds"),
            0.8,
            "`Registrations::register` called with 200 batches of 1000 on a fresh schema, nothing else running",
        ),
        (
            2,
            median(&writer).expect("rounds"),
            0.6,
            "`RegistrationWriter::write` called with 200 batches of 1000 on a fresh schema, each batch's 1000 `user.registered` acknowledged by the broker (acks=all)",
        ),
    ] {
        let ratio = rate(secs) / copy_rate;
        bench::record(&bench::spec(row).row(
            format!("{} users/s", thousands(rate(secs))),
            format!("{} users/s (COPY)", thousands(copy_rate)),
            Some(ratio),
            ratio >= target,
            format!("{note}; median of {ROUNDS} rounds; COPY (CSV) of users, credentials and outcomes in batches of 1000 into a fresh schema"),
        ));
    }
    let topic = median(&topic).expect("rounds");
    let ratio = rate(topic) / copy_rate;
    bench::record(&bench::spec(3).row(
        format!("{} users/s", thousands(rate(topic))),
        format!("{} users/s (COPY)", thousands(copy_rate)),
        Some(ratio),
        ratio >= 0.5 && rate(topic) >= 30_000.0,
        format!("the registration-batcher (release build) on 200,000 messages pre-filled on 6 partitions, first claim to last outcome by PostgreSQL's clock; median of {ROUNDS} rounds"),
    ));
    if let Some(peak) = rss.iter().copied().max() {
        let mib = peak as f64 / MIB;
        bench::record(&bench::spec(12).row(
            format!("{mib:.0} MiB"),
            "—".into(),
            None,
            mib <= 64.0,
            "VmHWM of the registration-batcher after writing 200,000 registrations; the highest of the rounds",
        ));
    }
    println!();
}

fn messages(round: usize) -> Vec<RegistrationMessage> {
    (0..BATCHER_USERS)
        .map(|i| registration(&format!("bench-{round}-{i}@example.com")))
        .collect()
}

/// Seconds `Registrations::register` takes for the round's registrations, in batches of 1000.
async fn register_directly(round: usize) -> f64 {
    let db = TestDatabase::new().await;
    let registrations = Registrations::new(db.database().clone());
    let ids = SnowflakeGenerator::new(NodeId::new(11).expect("node"));
    let batches: Vec<Vec<PendingRegistration>> = messages(round)
        .chunks(1000)
        .map(|batch| {
            batch
                .iter()
                .map(|message| PendingRegistration {
                    request_id: message.request_id,
                    user: message.to_new_user(ids.generate()).expect("a valid user"),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in &batches {
        let outcomes = registrations.register(batch).await.expect("register");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, RegistrationOutcome::Created(_)))
        );
    }
    started.elapsed().as_secs_f64()
}

/// Seconds `RegistrationWriter::write` takes for the round's registrations, in batches of
/// 1000, publishing to a fresh topic.
async fn write_directly(round: usize) -> f64 {
    let db = TestDatabase::new().await;
    let events_topic = TestTopic::create("bench-user-events", 1).await;
    let retry_topic = TestTopic::create("bench-registration-retry", 1).await;
    let producer = Producer::connect(&test_kafka_config()).expect("producer");
    producer
        .router()
        .set_topic_mapping("user.registered", &events_topic.name);
    let ids = SnowflakeIds::start(
        &Env::from_pairs([("SNOWFLAKE_NODE_ID", "12")]),
        db.database(),
        "bench",
        CancellationToken::new(),
    )
    .await
    .expect("IDs");
    let writer = RegistrationWriter::new(
        Registrations::new(db.database().clone()),
        producer,
        ids.generator(),
        "bench",
        &retry_topic.name,
    );
    let messages = messages(round);
    let started = Instant::now();
    for batch in messages.chunks(1000) {
        let written = writer.write(batch).await;
        assert!(
            written
                .iter()
                .all(|w| matches!(w, Ok(Written::Completed(_))))
        );
    }
    started.elapsed().as_secs_f64()
}

/// `COPY` of the rows the batcher writes (user, credential, outcome), in batches of 1000, into
/// a fresh schema.
async fn copy_same_rows(round: usize) -> Duration {
    let messages = messages(round);
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

/// Hashes per second of raw Argon2id on `threads` threads, `per_thread` hashes each.
fn raw_hash_rate(threads: usize, per_thread: usize) -> f64 {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, 1, None).expect("params");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let params = params.clone();
            scope.spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                for _ in 0..per_thread {
                    let salt = SaltString::generate(&mut OsRng);
                    argon2.hash_password(b"password123", &salt).expect("hash");
                }
            });
        }
    });
    (per_thread * threads) as f64 / started.elapsed().as_secs_f64()
}

/// Runs the release `loadgen` against `api`; its JSON summary.
async fn loadgen(api: &str, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(workspace_binary("loadgen"))
        .args(["--url", api, "--json"])
        .args(args)
        .output()
        .await
        .expect("run loadgen");
    assert!(
        output.status.success(),
        "loadgen {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("loadgen's JSON summary")
}

fn number(summary: &Value, pointer: &str) -> f64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} in {summary}"))
}

async fn gateway_and_end_to_end(cores: usize) {
    let stack = RegistrationStack::new().await;
    let batcher = stack.start_batcher(&[]).await;
    let memory = ARGON2_MEMORY_KIB.to_string();
    let iterations = ARGON2_ITERATIONS.to_string();
    let (gateway, api) = stack
        .start_gateway(&[
            ("ARGON2_MEMORY_KIB", memory.as_str()),
            ("ARGON2_ITERATIONS", iterations.as_str()),
        ])
        .await;
    println!(
        "2. gateway register-async, Argon2id m={ARGON2_MEMORY_KIB} t={ARGON2_ITERATIONS} p=1, driven by loadgen"
    );

    // One hash alone, and the cores' rate, before and after each loadgen round.
    let one_hash = {
        let mut samples: Vec<f64> = (0..5).map(|_| 1.0 / raw_hash_rate(1, 4)).collect();
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let (mut raw, mut saturated) = (vec![raw_hash_rate(cores, 20)], vec![]);
    for _ in 0..ROUNDS {
        let run = loadgen(&api, &["--concurrency", "64", "--duration", SATURATION_RUN]).await;
        let rate = number(&run, "/accepted_per_s");
        println!(
            "   saturation: {rate:.1} accepted/s, answers by status {}",
            run["by_status"]
        );
        saturated.push(rate);
        raw.push(raw_hash_rate(cores, 20));
    }
    let raw = median(&raw).expect("rounds");
    let saturation = median(&saturated).expect("rounds");
    let gateway_rss = gateway.pid().and_then(bench::peak_rss_bytes);
    let ratio = saturation / raw;
    bench::record(&bench::spec(7).row(
        format!("{saturation:.1} registrations/s"),
        format!("{raw:.1} hashes/s (raw Argon2id, {cores} threads)"),
        Some(ratio),
        ratio >= 0.9,
        format!(
            "loadgen, 64 connections, {SATURATION_RUN} per round, median of {ROUNDS} rounds; the gateway, the batcher, PostgreSQL, the broker and loadgen share the {cores} cores"
        ),
    ));

    let paced = (saturation * 0.8).floor().max(1.0) as u32;
    let run = loadgen(
        &api,
        &[
            "--rate",
            &paced.to_string(),
            "--concurrency",
            "1024",
            "--duration",
            PACED_RUN,
            "--follow",
        ],
    )
    .await;
    println!(
        "   at 80%: {paced}/s asked, {:.1} accepted/s, answers by status {}, outcomes {}",
        number(&run, "/accepted_per_s"),
        run["by_status"],
        run["outcomes"]
    );
    let answer_p99 = number(&run, "/answer_latency/p99_ms");
    let hash_ms = one_hash * 1000.0;
    bench::record(&bench::spec(8).row(
        format!(
            "{answer_p99:.0} ms p99 ({:.1}x one hash)",
            answer_p99 / hash_ms
        ),
        format!("{hash_ms:.0} ms (one hash alone)"),
        None,
        answer_p99 <= 5.0 * hash_ms,
        format!(
            "loadgen --rate {paced} (80% of saturation), {PACED_RUN}, open loop, request to answer"
        ),
    ));
    let completed_p99 = number(&run, "/completion_latency/p99_ms");
    let unfinished = run
        .pointer("/outcomes/unfinished")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    bench::record(&bench::spec(9).row(
        format!("{completed_p99:.0} ms p99"),
        "—".into(),
        None,
        completed_p99 <= 1000.0 && unfinished == 0,
        format!(
            "the same run: request to status `completed`, polled every 25 ms by loadgen --follow (p50 {:.0} ms); {unfinished} unfinished",
            number(&run, "/completion_latency/p50_ms")
        ),
    ));
    if let Some(peak) = gateway_rss {
        let mib = peak as f64 / MIB;
        bench::record(&bench::spec(14).row(
            format!("{mib:.0} MiB"),
            "—".into(),
            None,
            mib <= 256.0,
            "VmHWM of the gateway after the saturation rounds (Argon2 buffers of every hash worker included)",
        ));
    }
    gateway.terminate().await;
    batcher.terminate().await;
}
