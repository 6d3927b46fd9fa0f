//! Registration end to end (issue #5): the gateway, the registration-batcher and the
//! dlq-retrier as processes, on the real PostgreSQL and broker.

use std::collections::HashMap;
use std::time::Duration;

use domain::RegistrationMessage;
use events::consumer::dead_letter;
use events::rdkafka::Message as _;
use events::testing::{message_count, read_from_start};
use futures::StreamExt as _;
use serde_json::{Value, json};
use service_runtime::testing::ChaosProxy;
use system_tests::{RegistrationStack, header, registration, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_async_and_a_bulk_of_a_thousand_all_complete_once() {
    let stack = RegistrationStack::new().await;
    let batcher = stack.start_batcher(&[]).await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;

    let singles = futures::stream::iter(0..1000)
        .map(|i| {
            let http = &http;
            let api = &api;
            async move {
                let response = http
                    .post(format!("{api}/api/v1/auth/register-async"))
                    .json(&json!({"email": format!("async-{i}@example.com"), "password": "password123", "consent": true}))
                    .send()
                    .await
                    .expect("POST register-async");
                assert_eq!(response.status(), 202);
                let body: Value = response.json().await.expect("JSON");
                assert_eq!(body["status"], "processing");
                assert_eq!(body["message"], "registration request accepted");
                body["request_id"].as_str().expect("request_id").to_owned()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<String>>()
        .await;

    // The last user of the bulk repeats the first one's email (in another case).
    let mut users: Vec<Value> = (0..1000)
        .map(|i| json!({"email": format!("bulk-{i}@example.com"), "password": "password123", "consent": true}))
        .collect();
    users[999]["email"] = json!("BULK-0@example.com");
    let response = http
        .post(format!("{api}/api/v1/auth/register-async-bulk"))
        .json(&json!({ "users": users }))
        .send()
        .await
        .expect("POST register-async-bulk");
    assert_eq!(response.status(), 202);
    let bulk: Value = response.json().await.expect("JSON");
    assert_eq!(bulk["count"], 1000);
    assert_eq!(bulk["status"], "processing");
    let bulk_ids: Vec<String> = bulk["request_ids"]
        .as_array()
        .expect("request_ids")
        .iter()
        .map(|id| id.as_str().expect("string").to_owned())
        .collect();
    assert_eq!(bulk_ids.len(), 1000);

    stack
        .wait_until_finished(2000, PATIENCE, &[&batcher, &gateway])
        .await;

    // The status endpoint agrees with the database, request by request.
    let all_ids: Vec<String> = singles.iter().chain(&bulk_ids).cloned().collect();
    let statuses: Vec<(String, Value)> = futures::stream::iter(all_ids)
        .map(|id| {
            let http = &http;
            let api = &api;
            async move {
                let body: Value = http
                    .get(format!("{api}/api/v1/auth/registrations/{id}"))
                    .send()
                    .await
                    .expect("GET status")
                    .json()
                    .await
                    .expect("JSON");
                (id, body)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let by_id: HashMap<String, Value> = statuses.into_iter().collect();
    let failed: Vec<(&String, &Value)> = by_id
        .iter()
        .filter(|(_, s)| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "exactly the duplicate fails: {failed:?}");
    let (failed_id, failed_status) = failed[0];
    assert!(
        failed_id == &bulk_ids[0] || failed_id == &bulk_ids[999],
        "the failure is one of the two bulk-0 requests"
    );
    assert_eq!(failed_status["error"]["code"], "already_registered");
    let reason = failed_status["error"]["message"]
        .as_str()
        .expect("a reason");
    assert!(
        reason.contains("already registered") || reason.contains("duplicates row"),
        "{reason}"
    );
    for (id, status) in &by_id {
        if id != failed_id {
            assert_eq!(status["status"], "completed", "{id}: {status}");
            assert!(
                status["user_id"].as_str().is_some_and(|u| !u.is_empty()),
                "{status}"
            );
        }
    }

    // Each user exists once.
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 1999);
    assert_eq!(
        stack
            .count("SELECT count(DISTINCT lower(email)) AS n FROM users")
            .await,
        1999
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) AS n FROM user_credentials WHERE password_hash LIKE '$argon2id$%'"
            )
            .await,
        1999
    );
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        1999
    );
    assert!(
        message_count(&stack.events_topic) >= 1999,
        "a user.registered per user"
    );
    assert_eq!(
        message_count(&stack.retry_topic),
        0,
        "nothing needed a retry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_dead_lettered_and_the_stream_flows_on() {
    let stack = RegistrationStack::new().await;
    let batcher = stack.start_batcher(&[]).await;
    stack.produce_raw("junk", b"not json at all").await;
    stack
        .produce_raw("wrong", br#"{"email": 5, "password": true}"#)
        .await;
    let good: Vec<RegistrationMessage> = (0..5)
        .map(|i| registration(&format!("fine-{i}@example.com")))
        .collect();
    stack.produce(&good).await;

    stack.wait_until_finished(5, PATIENCE, &[&batcher]).await;
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        5
    );
    let dead = read_from_start(&stack.retry_topic.name, 2).await;
    let mut payloads: Vec<Vec<u8>> = dead
        .iter()
        .map(|m| m.payload().unwrap_or_default().to_vec())
        .collect();
    payloads.sort();
    assert_eq!(
        payloads,
        [
            b"not json at all".to_vec(),
            br#"{"email": 5, "password": true}"#.to_vec()
        ]
    );
    for message in &dead {
        assert_eq!(
            header(message, dead_letter::ERROR_CODE),
            Some("malformed_message")
        );
        assert_eq!(
            header(message, dead_letter::ORIGINAL_TOPIC),
            Some(stack.topic.name.as_str())
        );
        assert!(header(message, dead_letter::ORIGINAL_OFFSET).is_some());
        assert!(
            header(message, dead_letter::ERROR_MESSAGE)
                .is_some_and(|m| m.contains("not a registration message"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_timeout_goes_through_the_retry_queue_and_a_lasting_one_ends_failed() {
    let stack = RegistrationStack::new().await;
    // `flaky` hits a lock timeout on its first two inserts, `doomed` on every one. A sequence,
    // because it counts even in a rolled-back transaction.
    let mut conn = stack.db.database().connection().await.expect("connection");
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut *conn,
        "CREATE SEQUENCE flaky_tries;
         CREATE FUNCTION lock_trouble() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.email = 'doomed@example.com'
                OR (NEW.email = 'flaky@example.com' AND nextval('flaky_tries') <= 2) THEN
                 RAISE EXCEPTION 'canceling statement due to lock timeout'
                     USING ERRCODE = 'lock_not_available';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER lock_trouble BEFORE INSERT ON users
             FOR EACH ROW EXECUTE FUNCTION lock_trouble();",
    )
    .await
    .expect("install the trigger");
    drop(conn);

    // One try in the batch, one alone: then the retry queue.
    let batcher = stack
        .start_batcher(&[("TRANSIENT_RETRY_ATTEMPTS", "1")])
        .await;
    let retrier = stack.start_retrier(&[]).await;
    let flaky = registration("flaky@example.com");
    let doomed = registration("doomed@example.com");
    // Two rounds, so that doomed's failure never aborts a batch before flaky's trigger runs:
    // flaky then fails exactly in its batch and alone, and completes on the retrier's try.
    let mut batch: Vec<RegistrationMessage> = (0..10)
        .map(|i| registration(&format!("calm-{i}@example.com")))
        .collect();
    batch.push(flaky.clone());
    stack.produce(&batch).await;
    stack
        .wait_until_finished(11, PATIENCE, &[&batcher, &retrier])
        .await;
    stack.produce(std::slice::from_ref(&doomed)).await;

    stack
        .wait_until_finished(12, PATIENCE, &[&batcher, &retrier])
        .await;
    let registrations = repo::Registrations::new(stack.db.database().clone());
    let status = async |id: uuid::Uuid| {
        registrations
            .find(id)
            .await
            .expect("find")
            .expect("a record")
    };
    let flaky_record = status(flaky.request_id).await;
    assert_eq!(
        flaky_record.status,
        domain::RegistrationStatus::Completed,
        "{flaky_record:?}"
    );
    let doomed_record = status(doomed.request_id).await;
    assert_eq!(
        doomed_record.status,
        domain::RegistrationStatus::Failed,
        "{doomed_record:?}"
    );
    assert_eq!(
        doomed_record.error_code.as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(doomed_record.retry_count, 3);
    assert!(
        doomed_record
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("lock timeout"))
    );
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        11
    );

    // On the queue: flaky once; doomed after the batcher and after tries 1 and 2.
    let queued = read_from_start(&stack.retry_topic.name, 4).await;
    let mut seen: Vec<(String, u32)> = queued
        .iter()
        .map(|m| {
            let message: RegistrationMessage =
                serde_json::from_slice(m.payload().expect("value")).expect("seed 000 shape");
            assert!(
                message
                    .failure_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("lock timeout"))
            );
            (message.email.expect("email"), message.retry_count)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("doomed@example.com".to_owned(), 0),
            ("doomed@example.com".to_owned(), 1),
            ("doomed@example.com".to_owned(), 2),
            ("flaky@example.com".to_owned(), 0),
        ]
    );
    let (_, metrics) = retrier.get("/metrics").await;
    assert!(
        metrics.contains("registrations_retries_exhausted_total 1"),
        "{metrics}"
    );
    let exited = retrier.terminate().await;
    assert!(
        exited.logs.contains(&doomed.request_id.to_string())
            && exited.logs.contains("failed for good"),
        "an error log names the request:\n{}",
        exited.logs
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_holds_the_stream_and_loses_nothing() {
    let stack = RegistrationStack::new().await;
    let proxy = ChaosProxy::start("127.0.0.1:5432".parse().expect("address")).await;
    let url = repo::testing::test_database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let batcher = stack
        .start_batcher(&[
            ("DATABASE_URL", &url),
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_POOL_TIMEOUT", "1s"),
        ])
        .await;

    let first: Vec<RegistrationMessage> = (0..200)
        .map(|i| registration(&format!("before-{i}@example.com")))
        .collect();
    stack.produce(&first).await;
    stack.wait_until_finished(200, PATIENCE, &[&batcher]).await;

    // The database goes away for 30 s while registrations keep coming.
    proxy.cut();
    for round in 0..6 {
        let during: Vec<RegistrationMessage> = (0..50)
            .map(|i| registration(&format!("during-{round}-{i}@example.com")))
            .collect();
        stack.produce(&during).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    proxy.restore();
    let after: Vec<RegistrationMessage> = (0..200)
        .map(|i| registration(&format!("after-{i}@example.com")))
        .collect();
    stack.produce(&after).await;

    stack.wait_until_finished(700, PATIENCE, &[&batcher]).await;
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        700,
        "nothing failed"
    );
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 700);
    assert_eq!(
        message_count(&stack.retry_topic),
        0,
        "no dead letters from an outage"
    );
    let exited = batcher.terminate().await;
    assert!(
        exited.logs.contains("dependency unavailable"),
        "the outage was seen:\n{}",
        exited.logs
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batcher_killed_mid_stream_and_restarted_completes_everything_once() {
    let stack = RegistrationStack::new().await;
    let messages: Vec<RegistrationMessage> = (0..10_000)
        .map(|i| registration(&format!("user-{i}@example.com")))
        .collect();
    let batcher = stack.start_batcher(&[]).await;
    for chunk in messages.chunks(1000) {
        stack.produce(chunk).await;
    }
    // Kill it once a good part is written, while it is still writing.
    loop {
        let done = stack
            .count("SELECT count(*) AS n FROM registration_requests")
            .await;
        if done >= 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = batcher.kill().await;
    let at_kill = stack
        .count("SELECT count(*) AS n FROM registration_requests")
        .await;
    assert!(
        at_kill < 10_000,
        "killed before the end ({at_kill} written)\n{logs}"
    );

    // Restarted at once, as Kubernetes restarts a killed container: the new member's join
    // starts a rebalance, which the coordinator completes once the killed member's session
    // ends, and the new member resumes from the last committed offsets.
    let batcher = stack.start_batcher(&[]).await;
    stack
        .wait_until_finished(10_000, PATIENCE, &[&batcher])
        .await;
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        10_000
    );
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 10_000);
    assert_eq!(message_count(&stack.retry_topic), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_attempted_while_the_database_is_down_does_not_count() {
    let stack = RegistrationStack::new().await;
    let proxy = ChaosProxy::start("127.0.0.1:5432".parse().expect("address")).await;
    let url = repo::testing::test_database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    // Had a try during the outage counted, the request would have gone back on the queue with
    // retry_count 1.
    let retrier = stack
        .start_retrier(&[
            ("DATABASE_URL", &url),
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_POOL_TIMEOUT", "1s"),
        ])
        .await;
    proxy.cut();
    let mut queued = registration("patient@example.com");
    queued.failure_reason = Some("canceling statement due to lock timeout".into());
    stack
        .produce_to(&stack.retry_topic, std::slice::from_ref(&queued))
        .await;
    // Due after 1 s; the retrier meets the outage and holds the request. Restored only once it
    // has, and after a few more tries that must not count either.
    wait_until(
        "the retrier to meet the outage",
        PATIENCE,
        || retrier.logs(),
        || async { retrier.logs().contains("dependency unavailable") },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();

    stack.wait_until_finished(1, PATIENCE, &[&retrier]).await;
    let record = repo::Registrations::new(stack.db.database().clone())
        .find(queued.request_id)
        .await
        .expect("find")
        .expect("a record");
    retrier.terminate().await;
    assert_eq!(
        record.status,
        domain::RegistrationStatus::Completed,
        "{record:?}"
    );
    assert_eq!(record.retry_count, 0, "{record:?}");
    assert_eq!(message_count(&stack.retry_topic), 1, "never queued again");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_reports_what_the_gateway_did() {
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let batcher = stack.start_batcher(&[]).await;
    let output =
        tokio::process::Command::new(service_runtime::testing::workspace_binary("loadgen"))
            .args([
                "--url",
                api.as_str(),
                "--rate",
                "20",
                "--concurrency",
                "8",
                "--duration",
                "2s",
                "--follow",
                "--json",
            ])
            .output()
            .await
            .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        batcher.logs()
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
    let requests = summary["requests"].as_u64().unwrap();
    assert!(requests > 0, "{summary}");
    // Every request accepted, every registration followed to its stored user, all counted.
    assert_eq!(summary["by_status"], json!({"202": requests}), "{summary}");
    assert_eq!(
        summary["outcomes"],
        json!({"completed": requests}),
        "{summary}"
    );
    assert_eq!(summary["answer_latency"]["count"], requests);
    assert_eq!(summary["completion_latency"]["count"], requests);
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        requests as i64
    );
    assert!(summary["answer_latency"]["p99_ms"].as_f64().unwrap() > 0.0);

    // A gateway that is not there: a clear error, not a run of failures.
    let nowhere =
        tokio::process::Command::new(service_runtime::testing::workspace_binary("loadgen"))
            .args(["--url", "http://127.0.0.1:9", "--duration", "1s"])
            .output()
            .await
            .expect("loadgen runs");
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("does not answer"));
}
