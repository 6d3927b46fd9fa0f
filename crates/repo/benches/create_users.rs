//! `create_users` in batches of 1000 against PostgreSQL's own `COPY` of the same rows into the
//! same tables (users and user_credentials), measured in one run on one database.
//!
//! Run with `make bench` (or `cargo bench -p repo --bench create_users` with the stack up).
//! The machines are shared and noisy: read the ratio, not the absolute figures. Rounds alternate
//! between the two methods, each into a fresh schema, and the median round is reported.

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::{Email, NewUser, NodeId, SnowflakeGenerator};
use futures::SinkExt;
use repo::testing::{TestDatabase, test_database_url};
use repo::{PgUserRepository, UserRepository};

const BATCH: usize = 1000;
const BATCHES: usize = 20;
const ROUNDS: usize = 5;

fn users(ids: &SnowflakeGenerator, round: usize) -> Vec<NewUser> {
    (0..BATCH * BATCHES)
        .map(|i| NewUser {
            id: ids.generate(),
            email: Some(Email::parse(&format!("bench{round}-{i}@example.com")).unwrap()),
            phone: None,
            is_email_verified: false,
            is_phone_verified: false,
            consent: true,
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${i:032}"),
        })
        .collect()
}

async fn with_create_users(users: &[NewUser]) -> Duration {
    let db = TestDatabase::with_pool_size(1).await;
    let repo = PgUserRepository::new(db.database().clone());
    let started = Instant::now();
    for batch in users.chunks(BATCH) {
        let results = repo.create_users(batch).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
    }
    started.elapsed()
}

async fn with_copy(users: &[NewUser]) -> Duration {
    let db = TestDatabase::with_pool_size(1).await;
    let (client, connection) = tokio_postgres::connect(&test_database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path = \"{}\"", db.schema()))
        .await
        .unwrap();
    let started = Instant::now();
    for batch in users.chunks(BATCH) {
        let mut user_rows = String::new();
        let mut credential_rows = String::new();
        for user in batch {
            let email = user.email.as_ref().map_or("", |e| e.as_str());
            user_rows.push_str(&format!("{},{email},,false,false,true\n", user.id));
            credential_rows.push_str(&format!("{},\"{}\"\n", user.id, user.password_hash));
        }
        let copy = |statement: &'static str, rows: String| {
            let client = &client;
            async move {
                let sink = client.copy_in(statement).await.unwrap();
                futures::pin_mut!(sink);
                sink.send(Bytes::from(rows)).await.unwrap();
                sink.finish().await.unwrap()
            }
        };
        let copied = copy(
            "COPY users (id, email, phone, is_email_verified, is_phone_verified, consent) FROM STDIN (FORMAT csv)",
            user_rows,
        )
        .await;
        copy(
            "COPY user_credentials (user_id, password_hash) FROM STDIN (FORMAT csv)",
            credential_rows,
        )
        .await;
        assert_eq!(copied as usize, batch.len());
    }
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let ids = SnowflakeGenerator::new(NodeId::new(1).unwrap());
    let rows = BATCH * BATCHES;
    let (mut ours, mut copy) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let data = users(&ids, round);
        ours.push(with_create_users(&data).await);
        copy.push(with_copy(&data).await);
    }
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let (ours, copy) = (median(ours), median(copy));
    println!(
        "create_users vs COPY: {BATCHES} batches of {BATCH} rows (users + credentials), median of {ROUNDS} rounds"
    );
    println!(
        "  {:<28} {:>10.0} rows/s  ({:.3} s)",
        "UserRepository::create_users",
        rate(ours),
        ours.as_secs_f64()
    );
    println!(
        "  {:<28} {:>10.0} rows/s  ({:.3} s)",
        "COPY (baseline)",
        rate(copy),
        copy.as_secs_f64()
    );
    println!(
        "  ratio create_users / COPY: {:.2}",
        rate(ours) / rate(copy)
    );
}
