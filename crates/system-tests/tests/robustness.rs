//! Inputs that used to break the pipelines, against the real services, broker and database:
//! text PostgreSQL cannot store, a client retry of an activity event, a record too large for
//! its dead letter, a runaway of invalid records, events of a newer producer, and SIGTERM while
//! a batch waits in its retry back-off.

use std::time::Duration;

use events::rdkafka::Message as _;
use events::testing::{TestTopic, message_count, read_from_start};
use repo::testing::TestDatabase;
use serde_json::{Value, json};
use system_tests::{
    ActivityStack, RegistrationStack, SmtpSink, WaitlistStack, activity, call, count, header,
    owned, registration, start_gateway, wait_until,
};

const PATIENCE: Duration = Duration::from_secs(120);

/// Asserts a 422 `validation_failed` naming `field`.
fn assert_refused(what: &str, (status, body): &(u16, Value), field: &str) {
    assert_eq!(*status, 422, "{what}: {body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("U+0000")),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_text_is_refused_with_its_field_on_every_route() {
    let db = TestDatabase::new().await;
    let registrations = TestTopic::create("user.registration", 1).await;
    let activity_topic = TestTopic::create("user-activity-logs", 1).await;
    let domain_events = TestTopic::create("domain-events", 1).await;
    let (gateway, api) = start_gateway(owned(&[
        ("DATABASE_SCHEMA", db.schema()),
        ("REGISTRATION_TOPIC", &registrations.name),
        ("ACTIVITY_TOPIC", &activity_topic.name),
        ("DOMAIN_EVENTS_TOPIC", &domain_events.name),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
    ]))
    .await;
    let http = system_tests::operator_http(&api, db.schema()).await;
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{api}{path}")).json(&body);
        async move { call(request).await }
    };
    let user = json!({"email": "ok@example.com", "password": "password123", "consent": true});
    let with = |key: &str, value: &str| {
        let mut body = user.clone();
        body[key] = json!(value);
        body
    };

    let cases = [
        (
            "/api/v1/activity-logs",
            json!({"userId": "u1", "activityType": "login", "metadata": {"note": "a\u{0}b"}}),
            "metadata.note",
        ),
        (
            "/api/v1/activity-logs",
            json!({"userId": "u\u{0}1", "activityType": "login"}),
            "userId",
        ),
        (
            "/api/v1/activity-logs/batch",
            json!({"events": [
                {"userId": "u1", "activityType": "login"},
                {"userId": "u1", "activityType": "login", "version": "1.0\u{0}"}
            ]}),
            "events[1].version",
        ),
        (
            "/api/v1/auth/register-async",
            with("email", "a\u{0}@example.com"),
            "email",
        ),
        (
            "/api/v1/auth/register-sync",
            with("password", "password\u{0}123"),
            "password",
        ),
        (
            "/api/v1/auth/register-async-bulk",
            json!({"users": [user.clone(), with("email", "b\u{0}@example.com")]}),
            "users[1].email",
        ),
        (
            "/api/v1/campaigns",
            json!({"name": "Launch\u{0}", "points_per_referral": 1}),
            "name",
        ),
        (
            "/api/v1/campaigns",
            json!({"name": "Launch", "points_per_referral": 1,
                   "reward_tiers": [{"name": "Sticker\u{0}", "referral_threshold": 1, "delivery": "email"}]}),
            "reward_tiers[0].name",
        ),
        (
            "/api/v1/campaigns",
            json!({"name": "Launch", "points_per_referral": 1,
                   "reward_tiers": [{"name": "Hook", "referral_threshold": 1, "delivery": "webhook",
                                     "webhook_url": "https://example.com/\u{0}"}]}),
            "reward_tiers[0].webhook_url",
        ),
        // A key holding NUL is named with the character escaped.
        (
            "/api/v1/activity-logs",
            json!({"userId": "u1", "activityType": "login", "metadata": {"k\u{0}": 1}}),
            "metadata.k\\u0000",
        ),
    ];
    for (path, body, field) in cases {
        let answer = post(path, body).await;
        assert_refused(path, &answer, field);
    }

    // A campaign to sign up to, then a referral code and an email with NUL.
    let (status, campaign) = post(
        "/api/v1/campaigns",
        json!({"name": "Launch", "points_per_referral": 1}),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let signups = format!(
        "/api/v1/campaigns/{}/signups",
        campaign["id"].as_str().unwrap()
    );
    let answer = post(
        &signups,
        json!({"email": "bob@example.com", "referral_code": "abc\u{0}"}),
    )
    .await;
    assert_refused("signup", &answer, "referral_code");
    let answer = post(&signups, json!({"email": "bob\u{0}@example.com"})).await;
    assert_refused("signup", &answer, "email");
    let verify = format!(
        "/api/v1/campaigns/{}/verify",
        campaign["id"].as_str().unwrap()
    );
    let answer = post(&verify, json!({"token": "t\u{0}"})).await;
    assert_refused("verify", &answer, "token");

    // In the URL: a path segment and a query parameter.
    let answer = call(http.get(format!("{api}/api/v1/users/u%001/activity-logs"))).await;
    assert_refused("path", &answer, "path");
    let answer = call(http.get(format!(
        "{api}/api/v1/users/u1/activity-logs?activityType=login%00&limit=5"
    )))
    .await;
    assert_refused("query", &answer, "activityType");
    let answer = call(http.get(format!("{api}/api/v1/campaigns/x%00"))).await;
    assert_refused("campaign path", &answer, "path");

    // Nothing of it reached a topic, and nothing was a 500.
    for topic in [&registrations, &activity_topic] {
        assert_eq!(message_count(topic), 0, "{}", topic.name);
    }
    assert!(
        !gateway.logs().contains("internal error"),
        "{}",
        gateway.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn records_with_nul_are_rejected_at_once_by_every_consumer() {
    // The activity-log-processor: rejected as invalid, never retried, the others stored.
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    let mut bad = activity("u1", "evt-3", "login");
    bad["version"] = json!("1.0\u{0}");
    let mut bad_metadata = activity("u2", "evt-4", "login");
    bad_metadata["metadata"]["note"] = json!("a\u{0}b");
    stack
        .produce(&[
            activity("u1", "evt-1", "login"),
            activity("u1", "evt-2", "page_view"),
            bad,
            bad_metadata,
        ])
        .await;
    stack.wait_stored(2, &processor).await;
    let dead = read_from_start(&stack.dlq.name, 2).await;
    for message in &dead {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(value["error"]["code"], "VALIDATION_ERROR", "{value}");
        assert_eq!(value["error"]["retryCount"], 0, "not retried: {value}");
        assert!(
            value["error"]["message"]
                .as_str()
                .unwrap()
                .contains("U+0000"),
            "{value}"
        );
    }
    assert_eq!(stack.stored().await, 2);

    // The registration-batcher: dead-lettered to the retry topic's DLQ at once.
    let registrations = RegistrationStack::new().await;
    let batcher = registrations.start_batcher(&[]).await;
    let mut message = registration("nul@example.com");
    message.password.push('\u{0}');
    let good = registration("fine@example.com");
    registrations.produce(&[message, good]).await;
    wait_until(
        "the good registration stored",
        PATIENCE,
        || batcher.logs(),
        || async { registrations.count("SELECT count(*) AS n FROM users").await == 1 },
    )
    .await;
    let dead = read_from_start(&registrations.retry_topic.name, 1).await;
    assert_eq!(header(&dead[0], "error_code"), Some("malformed_message"));
    assert!(header(&dead[0], "error_message").is_some_and(|m| m.contains("U+0000")));

    // A waitlist worker: `invalid_text`, at once.
    let waitlist = WaitlistStack::new().await;
    let worker = waitlist
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let event = json!({
        "id": uuid::Uuid::new_v4(), "type": "referral.verified", "campaign_id": "c\u{0}",
        "account_id": "c", "timestamp": chrono::Utc::now(), "version": "1.0",
        "data": {"referral_id": "r", "referrer_id": "a", "referred_id": "b",
                 "campaign_id": "c\u{0}", "points_per_referral": 1}
    });
    waitlist.produce(&event).await;
    let dead = read_from_start(&waitlist.dlq.name, 1).await;
    assert_eq!(
        header(&dead[0], "error_code"),
        Some("invalid_text"),
        "{}",
        worker.logs()
    );
    assert_eq!(header(&dead[0], "attempt_count"), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_retry_of_an_event_id_is_stored_once() {
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    let (_gateway, api) = start_gateway(owned(&[
        ("DATABASE_SCHEMA", stack.db.schema()),
        ("ACTIVITY_TOPIC", &stack.topic.name),
    ]))
    .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let post = |body: Value| {
        let request = http.post(format!("{api}/api/v1/activity-logs")).json(&body);
        async move { call(request).await }
    };
    // A retry a second later without a timestamp (the gateway stamps each), then with explicit
    // timestamps: the same, and a day earlier (another partition of the table).
    let event = json!({"userId": "u4", "activityType": "login", "eventId": "evt_1"});
    assert_eq!(post(event.clone()).await.0, 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(post(event.clone()).await.0, 202);
    let now = chrono::Utc::now();
    for at in [now, now, now - chrono::Duration::days(1)] {
        let mut retry = event.clone();
        retry["timestamp"] = json!(at.to_rfc3339());
        assert_eq!(post(retry).await.0, 202);
    }
    // Another user's evt_1 is another event; a later one shows that the retries were handled.
    assert_eq!(
        post(json!({"userId": "u5", "activityType": "login", "eventId": "evt_1"}))
            .await
            .0,
        202
    );
    assert_eq!(
        post(json!({"userId": "u4", "activityType": "logout", "eventId": "evt_2"}))
            .await
            .0,
        202
    );
    stack.wait_stored(3, &processor).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, page) = call(http.get(format!("{api}/api/v1/users/u4/activity-logs"))).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["events"]
        .as_array()
        .expect("a page of events")
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_2", "evt_1"], "{page}");
    assert_eq!(stack.stored().await, 3);

    // Bounds PostgreSQL cannot compare with are what they say, not a 500.
    for (query, events) in [
        ("from=-9999-01-01T00:00:00Z", 2),
        ("to=-9999-01-01T00:00:00Z", 0),
        ("from=%2B99999-01-01T00:00:00Z", 0),
    ] {
        let (status, page) =
            call(http.get(format!("{api}/api/v1/users/u4/activity-logs?{query}"))).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(
            page["events"].as_array().unwrap().len(),
            events,
            "{query}: {page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_its_dead_letter_is_trimmed_and_the_consumers_go_on() {
    // 300,000 bytes of 0x01: in the processor's JSON dead letter each byte becomes six.
    let stack = ActivityStack::new().await;
    let mut processor = stack.start_processor().await;
    stack.produce_raw("u1", &vec![1u8; 300_000]).await;
    stack.produce(&[activity("u1", "evt-after", "login")]).await;
    stack.wait_stored(1, &processor).await;
    let dead = read_from_start(&stack.dlq.name, 1).await;
    assert_eq!(header(&dead[0], "value_truncated"), Some("true"));
    assert_eq!(header(&dead[0], "original_value_bytes"), Some("300000"));
    let value: Value = serde_json::from_slice(dead[0].payload().unwrap()).unwrap();
    assert_eq!(value["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(value["originalValueTruncated"], true);
    let (status, body) = processor.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    processor.wait_ready().await;

    // The registration-batcher's dead letters keep the original value as it was: one near the
    // broker's limit is cut to KAFKA_DLQ_MAX_RECORD_BYTES (900 kB) and says so.
    let registrations = RegistrationStack::new().await;
    let batcher = registrations.start_batcher(&[]).await;
    registrations.produce_raw("big", &vec![b'x'; 990_000]).await;
    registrations
        .produce(&[registration("after@example.com")])
        .await;
    wait_until(
        "the later registration stored",
        PATIENCE,
        || batcher.logs(),
        || async { registrations.count("SELECT count(*) AS n FROM users").await == 1 },
    )
    .await;
    let dead = read_from_start(&registrations.retry_topic.name, 1).await;
    assert_eq!(header(&dead[0], "error_code"), Some("malformed_message"));
    assert_eq!(header(&dead[0], "value_truncated"), Some("true"));
    assert_eq!(header(&dead[0], "original_value_bytes"), Some("990000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_of_invalid_records_stops_the_processor_and_readyz_says_why() {
    let stack = ActivityStack::new().await;
    let alerts = TestTopic::create("system-events", 1).await;
    let processor = stack
        .start_processor_with(&[
            ("KAFKA_DLQ_LIMIT_MIN_COUNT", "5"),
            ("SYSTEM_EVENTS_TOPIC", &alerts.name),
            ("ALERT_CHECK_INTERVAL", "500ms"),
        ])
        .await;
    let invalid: Vec<Value> = (0..30)
        .map(|i| activity("u1", &format!("evt-{i}"), "teleport"))
        .collect();
    stack.produce(&invalid).await;
    wait_until(
        "/readyz to say stalled",
        PATIENCE,
        || processor.logs(),
        || async { processor.get("/readyz").await.0 == 503 },
    )
    .await;
    let (_, body) = processor.get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "stalled", "{body}");
    assert!(
        body["checks"]["consumer"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("dead-letter limit")),
        "{body}"
    );
    wait_until(
        "the metric to say so",
        PATIENCE,
        || processor.logs(),
        || async {
            let (_, metrics) = processor.get("/metrics").await;
            metrics
                .lines()
                .any(|l| l.starts_with("kafka_consumer_dlq_limit_reached") && l.ends_with(" 1"))
        },
    )
    .await;
    assert!(
        message_count(&stack.dlq) < 30,
        "the topic did not move to the DLQ"
    );
    // Whoever watches system-events hears of it, every field of the alert there.
    let alert = read_from_start(&alerts.name, 1).await;
    assert_eq!(header(&alert[0], "event_type"), Some("system.alert"));
    let alert: Value = serde_json::from_slice(alert[0].payload().unwrap()).unwrap();
    assert_eq!(alert["type"], "system.alert", "{alert}");
    let data = &alert["data"];
    let mut keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alert_id",
            "alert_time",
            "alert_type",
            "component",
            "message",
            "metadata",
            "resolved",
            "service",
            "severity"
        ],
        "{data}"
    );
    assert_eq!(data["alert_type"], "dlq_limit_reached");
    assert_eq!(data["severity"], "critical");
    assert_eq!(data["service"], "activity-log-processor");
    assert_eq!(data["component"], format!("consumer {}", stack.group));
    assert_eq!(data["metadata"]["group_id"], stack.group.as_str());
    assert_eq!(data["resolved"], false);
    assert!(
        data["message"]
            .as_str()
            .is_some_and(|m| m.contains("dead-letter limit")),
        "{data}"
    );
    let exited = processor.terminate().await;
    assert_eq!(exited.status.code(), Some(0), "{}", exited.logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_a_newer_producer_are_read_or_skipped_never_dead_lettered() {
    let stack = WaitlistStack::new().await;
    let smtp = SmtpSink::start().await;
    let smtp_env = [("SMTP_URL", smtp.url())];
    let smtp_env: Vec<(&str, &str)> = smtp_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let emailer = stack
        .start_worker("email-worker", "email-workers", &smtp_env)
        .await;
    let positioner = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let rewarder = stack
        .start_worker("reward-worker", "reward-workers", &smtp_env)
        .await;
    let logs = || {
        format!(
            "{}\n{}\n{}",
            emailer.logs(),
            positioner.logs(),
            rewarder.logs()
        )
    };
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let (status, campaign) = call(
        http.post(format!("{api}/api/v1/campaigns"))
            .json(&json!({"name": "Newer", "points_per_referral": 1})),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let campaign_id = campaign["id"].as_str().unwrap();
    let (status, ann) = call(
        http.post(format!("{api}/api/v1/campaigns/{campaign_id}/signups"))
            .json(&json!({"email": "ann@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{ann}");
    let emails_to_ann = || {
        smtp.messages()
            .iter()
            .filter(|m| m.contains("ann@example.com"))
            .count()
    };
    wait_until("Ann's first emails", PATIENCE, logs, || async {
        emails_to_ann() >= 2
    })
    .await;
    let first = emails_to_ann();

    // Ann's user.signed_up again as a newer producer writes it: new ID, one more field in the
    // envelope and in data.
    let signed_up = read_from_start(&stack.topic.name, 1).await;
    let mut again: Value = serde_json::from_slice(signed_up[0].payload().unwrap()).unwrap();
    assert_eq!(again["type"], "user.signed_up");
    again["id"] = json!(uuid::Uuid::new_v4());
    again["version"] = json!("1.1");
    again["trace_origin"] = json!("web");
    again["data"]["utm_source"] = json!("newsletter");
    let mut referral = again.clone();
    referral["id"] = json!(uuid::Uuid::new_v4());
    referral["type"] = json!("referral.created");
    referral["data"] = json!({"referral_id": uuid::Uuid::new_v4(), "referrer_id": ann["participant_id"],
        "referred_id": uuid::Uuid::new_v4(), "campaign_id": campaign_id, "channel": "twitter"});
    let mut updated = again.clone();
    updated["id"] = json!(uuid::Uuid::new_v4());
    updated["type"] = json!("campaign.updated");
    updated["data"] = json!({"campaign_id": campaign_id, "name": "Renamed"});
    for event in [&updated, &referral, &again] {
        stack.produce(event).await;
    }
    wait_until(
        "the newer user.signed_up to send its emails",
        PATIENCE,
        logs,
        || async { emails_to_ann() >= 2 * first },
    )
    .await;
    // Every group has handled all of it (their lag is 0), with no dead letter.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(message_count(&stack.dlq), 0, "{}", logs());
    for worker in [&emailer, &positioner, &rewarder] {
        let (_, metrics) = worker.get("/metrics").await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("domain_events_skipped_total")
                    && l.contains("unknown_type")
                    && l.ends_with(" 1")),
            "campaign.updated counted as skipped:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_batch_retry_back_off_exits_cleanly_and_leaves_the_event_for_later() {
    let stack = ActivityStack::new().await;
    // The database refuses one event as a busy server would (a lock timeout: worth retrying).
    {
        let mut conn = stack.db.database().connection().await.unwrap();
        use diesel_async::RunQueryDsl as _;
        diesel::sql_query(
            "CREATE FUNCTION refuse_stuck() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id = 'evt-stuck' THEN
                     RAISE EXCEPTION 'canceling statement due to lock timeout';
                 END IF;
                 RETURN NEW;
             END $$",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        diesel::sql_query(
            "CREATE TRIGGER refuse_stuck BEFORE INSERT ON activity_event_keys
             FOR EACH ROW EXECUTE FUNCTION refuse_stuck()",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let processor = stack.start_processor().await;
    stack
        .produce(&[
            activity("u1", "evt-1", "login"),
            activity("u1", "evt-stuck", "login"),
            activity("u1", "evt-2", "login"),
        ])
        .await;
    // The others are stored once the batch is split; the stuck one backs off: 100 ms, then
    // doubling, so a few seconds on it spends nearly all its time in a back-off of seconds.
    stack.wait_stored(2, &processor).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let exited = processor.terminate().await;
    assert_eq!(exited.status.code(), Some(0), "{}", exited.logs);
    assert!(!exited.logs.contains("abandoning"), "{}", exited.logs);
    assert_eq!(message_count(&stack.dlq), 0, "not dead-lettered");

    // Once the database takes it, the next member stores it: it was not committed.
    {
        let mut conn = stack.db.database().connection().await.unwrap();
        use diesel_async::RunQueryDsl as _;
        diesel::sql_query("DROP TRIGGER refuse_stuck ON activity_event_keys")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let processor = stack.start_processor().await;
    stack.wait_stored(3, &processor).await;
    assert_eq!(
        count(
            &stack.db,
            "SELECT count(*) AS n FROM activity_logs WHERE event_id = 'evt-stuck'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_is_one_user_whatever_its_spelling() {
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let http = reqwest::Client::new();
    let register = |email: &str| {
        let request = http
            .post(format!("{api}/api/v1/auth/register-sync"))
            .json(&json!({"email": email, "password": "password123", "consent": true}));
        async move { call(request).await }
    };
    // Precomposed é, then e + U+0301; an internationalized domain, then its ASCII form.
    for (first, second, stored) in [
        (
            "jos\u{e9}@example.com",
            "jose\u{301}@example.com",
            "jos\u{e9}@example.com",
        ),
        (
            "ann@b\u{fc}cher.example",
            "Ann@XN--BCHER-KVA.example",
            "ann@xn--bcher-kva.example",
        ),
    ] {
        let (status, body) = register(first).await;
        assert_eq!(status, 201, "{first}: {body}");
        assert_eq!(body["email"], stored, "stored in canonical form");
        let (status, body) = register(second).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("already_registered")),
            "{second}: {body}"
        );
    }
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_the_mailer_cannot_send_to_are_refused_on_every_route() {
    let stack = WaitlistStack::new().await;
    let registrations = TestTopic::create("user.registration", 1).await;
    let (_gateway, api) = stack
        .start_gateway(&[
            ("REGISTRATION_TOPIC", &registrations.name),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
        ])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let post = |path: String, body: Value| {
        let request = http.post(format!("{api}{path}")).json(&body);
        async move { call(request).await }
    };
    let (status, campaign) = post(
        "/api/v1/campaigns".into(),
        json!({"name": "Mail", "points_per_referral": 1}),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let signups = format!(
        "/api/v1/campaigns/{}/signups",
        campaign["id"].as_str().unwrap()
    );
    for address in ["ann.@example.com", "a..b@example.com", "a(b)@example.com"] {
        let user = json!({"email": address, "password": "password123", "consent": true});
        for (path, body, field) in [
            (signups.clone(), json!({"email": address}), "email"),
            ("/api/v1/auth/register-async".into(), user.clone(), "email"),
            ("/api/v1/auth/register-sync".into(), user.clone(), "email"),
            (
                "/api/v1/auth/register-async-bulk".into(),
                json!({"users": [user.clone()]}),
                "users[0].email",
            ),
            (
                "/api/v1/campaigns".into(),
                json!({"name": "N", "points_per_referral": 1, "notify_email": address}),
                "notify_email",
            ),
        ] {
            let (status, body) = post(path.clone(), body).await;
            assert_eq!(status, 422, "{address} on {path}: {body}");
            assert_eq!(body["error"]["field"], field, "{address} on {path}: {body}");
        }
    }
    assert_eq!(message_count(&registrations), 0);
    assert_eq!(
        stack.count("SELECT count(*) AS n FROM participants").await,
        0
    );
}
