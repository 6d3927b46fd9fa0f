//! The operator's commands against the real broker and PostgreSQL: `platform-admin dlq`
//! (list, redrive, resumed after a crash), `platform-admin replay` (a projection rebuilt from
//! its topic, by offset and by time) and `platform-admin lag`, and the lag gauge every member of
//! a group exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use events::rdkafka::consumer::{BaseConsumer, Consumer as _};
use events::rdkafka::error::KafkaError;
use events::rdkafka::message::OwnedMessage;
use events::rdkafka::{Offset, TopicPartitionList};
use events::testing::{TestTopic, message_count, test_kafka_config};
use serde_json::Value;
use system_tests::{
    ActivityStack, CopyClient, RegistrationStack, activity, header, platform_admin,
    platform_admin_json_lines, registration, wait_until,
};
use tokio::io::AsyncBufReadExt as _;

const PATIENCE: Duration = Duration::from_secs(120);

/// Every committed record of `topic`, read to its end (aborted transactions' records are not
/// among them).
async fn read_all(topic: &TestTopic) -> Vec<OwnedMessage> {
    let (name, partitions) = (topic.name.clone(), topic.partitions);
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = test_kafka_config()
            .client_config()
            .set("group.id", "operations-test-reader")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .expect("reader");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition_offset(&name, partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let (mut open, mut records) = (partitions, Vec::new());
        let started = std::time::Instant::now();
        while open > 0 {
            assert!(started.elapsed() < PATIENCE, "{name} not read to its end");
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) => records.push(message.detach()),
                Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
                Some(Err(error)) => panic!("reading {name}: {error}"),
                None => {}
            }
        }
        records
    })
    .await
    .unwrap()
}

fn the<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .rev()
        .find(|l| l.get(key).is_some())
        .unwrap_or_else(|| panic!("no line with {key:?} in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_dead_lettered_in_an_incident_are_redriven_and_complete() {
    let stack = RegistrationStack::new().await;
    let ledger = TestTopic::create("dead-letter-redrives", 1).await;
    let sql = CopyClient::connect(&stack.db).await;
    // The incident: every insert into users waits for a lock and gives up (SQLSTATE 55P03),
    // a transient failure, through every retry.
    sql.client()
        .batch_execute(
            "CREATE FUNCTION incident() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'could not obtain lock on users' USING ERRCODE = 'lock_not_available'; END $$;
             CREATE TRIGGER incident BEFORE INSERT ON users FOR EACH STATEMENT EXECUTE FUNCTION incident();",
        )
        .await
        .unwrap();
    let batcher = stack
        .start_batcher(&[("TRANSIENT_RETRY_ATTEMPTS", "1")])
        .await;
    let retrier = stack.start_retrier(&[]).await;
    let requests: Vec<_> = (0..5)
        .map(|i| registration(&format!("incident{i}@example.com")))
        .collect();
    stack.produce(&requests).await;
    let exhausted =
        "SELECT count(*) AS n FROM registration_requests WHERE error_code = 'retries_exhausted'";
    wait_until(
        "the requests to run out of retries",
        PATIENCE,
        || format!("{}\n{}", batcher.logs(), retrier.logs()),
        || async { stack.count(exhausted).await == 5 },
    )
    .await;
    // A request per try in the retry queue: the batcher's, then the retrier's two.
    assert_eq!(message_count(&stack.retry_topic), 15);

    let env = [
        ("REGISTRATION_TOPIC", stack.topic.name.as_str()),
        ("REGISTRATION_DLQ_TOPIC", stack.retry_topic.name.as_str()),
        ("DLQ_REDRIVE_LEDGER_TOPIC", ledger.name.as_str()),
    ];
    let schema = stack.db.schema();
    let dlq = stack.retry_topic.name.as_str();
    let listed = platform_admin_json_lines(schema, &["dlq", "list", "--topic", dlq], &env).await;
    let summary = the(&listed, "summary");
    assert_eq!(summary["dead_letters"], 15, "{listed:#?}");
    assert_eq!(summary["by_error_code"]["registration_failed"], 15);
    let letter = &listed[0];
    assert_eq!(letter["format"], "registration_retry");
    assert_eq!(letter["original_topic"], stack.topic.name);
    assert!(
        letter["error_message"]
            .as_str()
            .unwrap()
            .contains("could not obtain lock"),
        "{letter}"
    );
    let shown = platform_admin_json_lines(
        schema,
        &[
            "dlq",
            "show",
            "--topic",
            dlq,
            "--partition",
            &letter["partition"].to_string(),
            "--offset",
            &letter["offset"].to_string(),
        ],
        &env,
    )
    .await;
    assert_eq!(shown[0]["redrive"]["topic"], stack.topic.name, "{shown:#?}");
    assert!(
        shown[0]["value"]["email"]
            .as_str()
            .is_some_and(|email| email.starts_with("incident")),
        "{shown:#?}"
    );

    // The fix.
    sql.client()
        .batch_execute("DROP TRIGGER incident ON users")
        .await
        .unwrap();
    // A request that completed, whose try is still in the retry queue (as one that succeeds on
    // a retry leaves it): not a dead letter, never redriven.
    let completed_one = registration("fine@example.com");
    stack.produce(std::slice::from_ref(&completed_one)).await;
    let completed = "SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'";
    wait_until(
        "the new request to complete",
        PATIENCE,
        || batcher.logs(),
        || async { stack.count(completed).await == 1 },
    )
    .await;
    let mut its_retry = completed_one.clone();
    its_retry.retry_count = 1;
    stack.produce_to(&stack.retry_topic, &[its_retry]).await;

    // A dry run sends nothing: the newest try of each request would go, the older ones not.
    let dry = platform_admin_json_lines(
        schema,
        &["dlq", "redrive", "--topic", dlq, "--dry-run"],
        &env,
    )
    .await;
    let audit = &the(&dry, "audit")["audit"];
    assert_eq!(
        (
            &audit["would_send"],
            &audit["superseded"],
            &audit["not_dead"],
            &audit["sent"]
        ),
        (&5.into(), &10.into(), &1.into(), &0.into()),
        "{dry:#?}"
    );
    assert_eq!(message_count(&stack.topic), 6);
    assert_eq!(message_count(&ledger), 0);

    let run = platform_admin_json_lines(schema, &["dlq", "redrive", "--topic", dlq], &env).await;
    let audit = &the(&run, "audit")["audit"];
    assert_eq!(
        (&audit["sent"], &audit["superseded"]),
        (&5.into(), &10.into()),
        "{run:#?}"
    );
    wait_until(
        "the redriven requests to complete",
        PATIENCE,
        || batcher.logs(),
        || async { stack.count(completed).await == 6 },
    )
    .await;
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 6);
    let redriven: Vec<_> = read_all(&stack.topic)
        .await
        .into_iter()
        .filter(|m| header(m, "redrive_count") == Some("1"))
        .collect();
    assert_eq!(
        redriven.len(),
        5,
        "each request once, with its redrive count"
    );

    // Run again: everything was dealt with; nothing is sent twice.
    let again = platform_admin_json_lines(schema, &["dlq", "redrive", "--topic", dlq], &env).await;
    let audit = &the(&again, "audit")["audit"];
    assert_eq!(
        (
            &audit["sent"],
            &audit["already_redriven"],
            &audit["not_dead"]
        ),
        (&0.into(), &15.into(), &1.into()),
        "{again:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_events_dead_lettered_for_a_bug_are_redriven_once_even_after_a_crash() {
    let stack = ActivityStack::new().await;
    let ledger = TestTopic::create("dead-letter-redrives", 1).await;
    let sql = CopyClient::connect(&stack.db).await;
    // The bug: a rule that refuses a valid activity type.
    sql.client()
        .batch_execute(
            "ALTER TABLE activity_logs ADD CONSTRAINT purchase_bug CHECK (activity_type <> 'purchase')",
        )
        .await
        .unwrap();
    let processor = stack
        .start_processor_with(&[("KAFKA_DLQ_LIMIT_RATIO", "2")])
        .await;
    let mut events: Vec<Value> = (0..120)
        .map(|i| activity(&format!("user{}", i % 7), &format!("evt_p{i}"), "purchase"))
        .collect();
    events.extend((0..20).map(|i| activity(&format!("user{i}"), &format!("evt_l{i}"), "login")));
    stack.produce(&events).await;
    stack.wait_stored(20, &processor).await;
    wait_until(
        "the purchases to be dead-lettered",
        PATIENCE,
        || processor.logs(),
        || async { message_count(&stack.dlq) == 120 },
    )
    .await;
    sql.client()
        .batch_execute("ALTER TABLE activity_logs DROP CONSTRAINT purchase_bug")
        .await
        .unwrap();

    let env = [
        ("ACTIVITY_DLQ_TOPIC", stack.dlq.name.as_str()),
        ("DLQ_REDRIVE_LEDGER_TOPIC", ledger.name.as_str()),
    ];
    let schema = stack.db.schema();
    let dlq = stack.dlq.name.as_str();
    let listed = platform_admin_json_lines(
        schema,
        &[
            "dlq",
            "list",
            "--topic",
            dlq,
            "--summary",
            "--group",
            &stack.group,
        ],
        &env,
    )
    .await;
    assert_eq!(listed.len(), 1, "only the counts: {listed:#?}");
    assert_eq!(listed[0]["dead_letters"], 120);
    assert_eq!(listed[0]["by_group"][&stack.group], 120);
    let codes = listed[0]["by_error_code"].as_object().unwrap();
    assert_eq!(codes.len(), 1, "{codes:?}");

    // A redrive killed half-way: one record per transaction, killed after 30 were printed.
    let mut child =
        tokio::process::Command::new(service_runtime::testing::workspace_binary("platform-admin"))
            .args(["dlq", "redrive", "--topic", dlq, "--batch-size", "1"])
            .envs(service_runtime::testing::base_env())
            .env("DATABASE_SCHEMA", schema)
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = 0;
    while printed < 30 {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("a line before the end");
        printed += usize::from(line.contains("\"sent\""));
    }
    child.kill().await.unwrap();

    let resumed =
        platform_admin_json_lines(schema, &["dlq", "redrive", "--topic", dlq], &env).await;
    let audit = &the(&resumed, "audit")["audit"];
    let (sent, before) = (
        audit["sent"].as_u64().unwrap(),
        audit["already_redriven"].as_u64().unwrap(),
    );
    assert_eq!(sent + before, 120, "{audit}");
    assert!(
        (29..120).contains(&before),
        "the first run was cut off half-way: {audit}"
    );
    stack.wait_stored(140, &processor).await;

    // Each dead letter went back exactly once; each event is stored once.
    let redriven: Vec<String> = read_all(&stack.topic)
        .await
        .iter()
        .filter_map(|m| header(m, "redriven_from").map(str::to_owned))
        .collect();
    assert_eq!(redriven.len(), 120);
    assert_eq!(redriven.iter().collect::<BTreeSet<_>>().len(), 120);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.stored().await, 140);
    let purchases = "SELECT count(*) AS n FROM activity_logs WHERE activity_type = 'purchase'";
    assert_eq!(system_tests::count(&stack.db, purchases).await, 120);
}

async fn counts_by_type(stack: &ActivityStack) -> BTreeMap<String, i64> {
    let sql = CopyClient::connect(&stack.db).await;
    sql.client()
        .query(
            "SELECT activity_type, count(*) FROM activity_logs GROUP BY activity_type",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn total(lines: &[Value], key: &str) -> i64 {
    lines.iter().filter_map(|l| l[key].as_i64()).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_activity_store_is_rebuilt_by_replaying_its_topic() {
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    let types = ["login", "logout", "purchase", "page_view"];
    let first: Vec<Value> = (0..30)
        .map(|i| {
            activity(
                &format!("user{}", i % 5),
                &format!("evt_a{i}"),
                types[i % 4],
            )
        })
        .collect();
    stack.produce(&first).await;
    stack.wait_stored(30, &processor).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second: Vec<Value> = (0..20)
        .map(|i| {
            activity(
                &format!("user{}", i % 5),
                &format!("evt_b{i}"),
                types[i % 3],
            )
        })
        .collect();
    stack.produce(&second).await;
    stack.wait_stored(50, &processor).await;
    let before = counts_by_type(&stack).await;

    let schema = stack.db.schema();
    let (group, topic) = (stack.group.as_str(), stack.topic.name.as_str());
    let replay = |to: &'static [&'static str]| {
        let mut args = vec!["replay", "--group", group, "--topic", topic];
        args.extend_from_slice(to);
        args
    };
    // Not while a member is consuming.
    let (moved, _, stderr) = platform_admin(schema, &replay(&["--to-earliest"]), &[]).await;
    assert!(!moved && stderr.contains("active member"), "{stderr}");
    processor.terminate().await;

    // From a point in time: only the second batch, by the broker's offset-for-time lookup.
    let mut args = replay(&["--dry-run", "--to-time"]);
    args.push(&between);
    let plan = platform_admin_json_lines(schema, &args, &[]).await;
    assert_eq!(total(&plan, "to_process"), 20, "{plan:#?}");
    assert_eq!(the(&plan, "moved")["moved"], false);
    // The same in a separate replay group, for real: it has the second batch to read.
    let rebuild = format!("{group}-rebuild");
    let moved = platform_admin_json_lines(
        schema,
        &[
            "replay",
            "--group",
            &rebuild,
            "--topic",
            topic,
            "--to-time",
            &between,
        ],
        &[],
    )
    .await;
    assert_eq!(the(&moved, "moved")["moved"], true, "{moved:#?}");
    let lag = platform_admin_json_lines(schema, &["lag", "--group", &rebuild], &[]).await;
    assert_eq!(the(&lag, "total_lag")["total_lag"], 20, "{lag:#?}");
    // An offset per partition: every partition named, as the group has none committed yet.
    let fresh = format!("{group}-fresh");
    let (named_one, _, stderr) = platform_admin(
        schema,
        &[
            "replay",
            "--group",
            &fresh,
            "--topic",
            topic,
            "--to-offset",
            "0:0",
        ],
        &[],
    )
    .await;
    assert!(
        !named_one && stderr.contains("no committed offset"),
        "{stderr}"
    );
    let plan = platform_admin_json_lines(
        schema,
        &[
            "replay",
            "--group",
            &fresh,
            "--topic",
            topic,
            "--dry-run",
            "--to-offset",
            "0:1",
            "--to-offset",
            "1:0",
            "--to-offset",
            "2:0",
        ],
        &[],
    )
    .await;
    let ends: i64 = plan.iter().filter_map(|l| l["end"].as_i64()).sum();
    assert_eq!(total(&plan, "to_process"), ends - 1, "{plan:#?}");

    // The projection is lost (the events and the keys that deduplicate them); the whole
    // topic rebuilds it.
    CopyClient::connect(&stack.db)
        .await
        .client()
        .batch_execute("DELETE FROM activity_logs; DELETE FROM activity_event_keys")
        .await
        .unwrap();
    let plan = platform_admin_json_lines(schema, &replay(&["--to-earliest"]), &[]).await;
    assert_eq!(total(&plan, "to_process"), 50, "{plan:#?}");
    assert_eq!(the(&plan, "moved")["moved"], true);
    let lag = platform_admin_json_lines(schema, &["lag", "--group", group], &[]).await;
    assert_eq!(the(&lag, "total_lag")["total_lag"], 50, "{lag:#?}");
    let typo = format!("{group}-typo");
    let (known, _, stderr) = platform_admin(schema, &["lag", "--group", &typo], &[]).await;
    assert!(!known && stderr.contains("knows no group"), "{stderr}");
    assert_eq!(the(&lag, "total_lag")["members"], 0);

    let processor = stack.start_processor().await;
    stack.wait_stored(50, &processor).await;
    assert_eq!(counts_by_type(&stack).await, before);
    wait_until(
        "the group to catch up",
        PATIENCE,
        || processor.logs(),
        || async {
            let lag = platform_admin_json_lines(schema, &["lag", "--group", group], &[]).await;
            the(&lag, "total_lag")["total_lag"] == 0
        },
    )
    .await;
}

/// The value of the first sample of `metric` whose labels contain all of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until `member` reports `lag` as its group's lag on partition 0 (and, when `ready`,
/// `service_ready 1`).
async fn wait_for_group_lag(
    member: &service_runtime::testing::ServiceProcess,
    group: &str,
    lag: f64,
    ready: bool,
) {
    let group_label = format!("group=\"{group}\"");
    wait_until(
        &format!("the member to report a group lag of {lag}"),
        PATIENCE,
        || member.logs(),
        || async {
            let (_, metrics) = member.get("/metrics").await;
            sample(
                &metrics,
                "kafka_consumer_group_lag",
                &[&group_label, "partition=\"0\""],
            ) == Some(lag)
                && (!ready || metrics.lines().any(|l| l == "service_ready 1"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_member_reports_its_groups_lag_idle_or_not() {
    let stack = ActivityStack::new().await;
    let one_partition = TestTopic::create("user-activity-logs", 1).await;
    let env = [
        ("KAFKA_TOPIC", one_partition.name.as_str()),
        ("KAFKA_LAG_REPORT_INTERVAL", "1s"),
    ];
    let first = stack.start_processor_with(&env).await;
    let second = stack.start_processor_with(&env).await;
    for member in [&first, &second] {
        wait_for_group_lag(member, &stack.group, 0.0, true).await;
    }
    // The table locked: the holder's write waits, nothing is committed, and both members,
    // the idle one too, report the lag of what was produced meanwhile.
    let sql = CopyClient::connect(&stack.db).await;
    sql.client()
        .batch_execute("BEGIN; LOCK TABLE activity_logs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let events: Vec<Value> = (0..10)
        .map(|i| activity("lagging", &format!("evt_lag{i}"), "login"))
        .collect();
    let producer = test_kafka_config();
    let producer: events::rdkafka::producer::FutureProducer =
        producer.producer_client_config().create().unwrap();
    for event in &events {
        producer
            .send(
                events::rdkafka::producer::FutureRecord::to(&one_partition.name)
                    .key("lagging")
                    .payload(&serde_json::to_vec(event).unwrap()),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    for member in [&first, &second] {
        wait_for_group_lag(member, &stack.group, 10.0, false).await;
    }
    sql.client().batch_execute("COMMIT").await.unwrap();
    stack.wait_stored(10, &first).await;
    // Stored and committed: both report it gone.
    for member in [&first, &second] {
        wait_for_group_lag(member, &stack.group, 0.0, false).await;
    }
}
