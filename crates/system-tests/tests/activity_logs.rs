//! The activity-log-processor as a process (issue #6): events from the topic stored once, invalid
//! ones dead-lettered in seed 004's format, nothing lost or doubled across a SIGKILL.

use std::time::Duration;

use chrono::Utc;
use events::rdkafka::Message as _;

use events::testing::read_from_start;
use serde_json::{Value, json};
use system_tests::{
    ActivityStack, activity, call, count, header, owned, start_gateway, wait_until,
};

#[tokio::test(flavor = "multi_thread")]
async fn events_are_stored_once_and_invalid_ones_dead_lettered_in_seed_004s_format() {
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    let first = activity("user1", "evt-1", "login");
    let mut values = vec![
        first.clone(),
        activity("user1", "evt-2", "page_view"),
        activity("user2", "evt-3", "logout"),
        activity("user1", "evt-4", "teleport"),
    ];
    stack.produce(&values).await;
    stack.wait_stored(3, &processor).await;

    // The same event again (a replay): still stored once.
    values.truncate(1);
    stack.produce(&values).await;
    stack.produce(&[activity("user3", "evt-5", "signup")]).await;
    stack.wait_stored(4, &processor).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.stored().await, 4, "evt-1 stored once");
    assert_eq!(
        count(
            &stack.db,
            "SELECT count(*) AS n FROM activity_logs WHERE event_id = 'evt-1'"
        )
        .await,
        1
    );

    let dead = read_from_start(&stack.dlq.name, 1).await;
    let value: Value = serde_json::from_slice(dead[0].payload().expect("value")).expect("JSON");
    assert_eq!(value["eventId"], "evt-4");
    assert_eq!(value["activityType"], "teleport");
    assert_eq!(value["error"]["code"], "VALIDATION_ERROR");
    assert!(
        value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown activity type"))
    );
    assert!(value["error"]["timestamp"].as_str().is_some());
    assert_eq!(value["error"]["retryCount"], 0);
    assert_eq!(
        header(&dead[0], "originalTopic"),
        Some(stack.topic.name.as_str())
    );
    assert!(header(&dead[0], "originalPartition").is_some_and(|p| p.parse::<i32>().is_ok()));
    assert!(header(&dead[0], "originalOffset").is_some_and(|o| o.parse::<i64>().is_ok()));
    assert_eq!(header(&dead[0], "source"), Some("api"));
    assert_eq!(dead[0].key(), Some(b"user1".as_slice()));

    let exited = processor.terminate().await;
    assert_eq!(exited.status.code(), Some(0), "{}", exited.logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_processor_killed_mid_stream_loses_and_doubles_nothing() {
    let stack = ActivityStack::new().await;
    let values: Vec<Value> = (0..3000)
        .map(|i| activity(&format!("user{}", i % 50), &format!("evt-{i}"), "page_view"))
        .collect();
    stack.produce(&values).await;
    let processor = stack.start_processor().await;
    while stack.stored().await < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    processor.kill().await;
    assert!(stack.stored().await < 3000, "killed mid-stream");
    // Restarted at once: the rebalance its join starts hands over the killed member's
    // partitions once that member's session has ended.
    let processor = stack.start_processor().await;
    stack.wait_stored(3000, &processor).await;
    assert_eq!(
        count(
            &stack.db,
            "SELECT count(DISTINCT event_id) AS n FROM activity_logs"
        )
        .await,
        3000
    );
    assert_eq!(stack.stored().await, 3000, "none stored twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_posted_over_http_read_back_newest_first_page_by_page() {
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    let (_gateway, api) = start_gateway(owned(&[
        ("DATABASE_SCHEMA", stack.db.schema()),
        ("ACTIVITY_TOPIC", &stack.topic.name),
        ("ACTIVITY_BATCH_MAX", "10"),
    ]))
    .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;

    // One at a time, then a batch, all for user-a, with increasing timestamps.
    let base = Utc::now() - chrono::Duration::minutes(30);
    let at = |i: i64| (base + chrono::Duration::seconds(i)).to_rfc3339();
    let (status, body) = call(http.post(format!("{api}/api/v1/activity-logs")).json(
        &json!({"userId": "user-a", "activityType": "login", "timestamp": at(0),
                      "metadata": {"ipAddress": "10.1.1.1", "sessionId": "s1"}}),
    ))
    .await;
    assert_eq!(status, 202);
    let first_id = body["eventId"]
        .as_str()
        .expect("a generated eventId")
        .to_owned();
    let batch: Vec<Value> = (1..=9)
        .map(|i| json!({"userId": "user-a", "activityType": "page_view", "timestamp": at(i), "eventId": format!("evt-{i}")}))
        .chain([json!({"userId": "user-b", "activityType": "logout", "timestamp": at(5)})])
        .collect();
    let (status, body) = call(
        http.post(format!("{api}/api/v1/activity-logs/batch"))
            .json(&json!({ "events": batch })),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["count"], 10);
    stack.wait_stored(11, &processor).await;

    // Pages of 4, newest first: evt-9 … evt-1, then the first login.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/api/v1/users/user-a/activity-logs?limit=4");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (_, page) = call(http.get(&url)).await;
        for event in page["events"].as_array().expect("events") {
            seen.push(event["eventId"].as_str().expect("eventId").to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (1..=9).rev().map(|i| format!("evt-{i}")).collect();
    expected.push(first_id);
    assert_eq!(seen, expected);

    let (_, logins) = call(http.get(format!(
        "{api}/api/v1/users/user-a/activity-logs?type=login"
    )))
    .await;
    assert_eq!(logins["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(logins["events"][0]["metadata"]["ipAddress"], "10.1.1.1");

    // Bad input: 4xx with the one error shape, naming the field.
    for (path, body, status, field) in [
        (
            "activity-logs",
            json!({"userId": "u", "activityType": "teleport"}),
            422,
            "activityType",
        ),
        (
            "activity-logs",
            json!({"userId": "u", "activityType": "login", "timestamp": at(100_000)}),
            422,
            "timestamp",
        ),
        (
            "activity-logs",
            json!({"userId": "", "activityType": "login"}),
            422,
            "userId",
        ),
        (
            "activity-logs/batch",
            json!({"events": vec![json!({"userId": "u", "activityType": "login"}); 11]}),
            422,
            "events",
        ),
        (
            "activity-logs/batch",
            json!({"events": [{"userId": "u", "activityType": "login"}, {"userId": "u", "activityType": "nope"}]}),
            422,
            "events[1].activityType",
        ),
    ] {
        let (got, error) = call(http.post(format!("{api}/api/v1/{path}")).json(&body)).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    for query in ["limit=0", "limit=abc", "cursor=zz", "since=yesterday"] {
        let (status, error) =
            call(http.get(format!("{api}/api/v1/users/user-a/activity-logs?{query}"))).await;
        assert!((400..500).contains(&status), "{query}: {status}");
        assert!(error["error"]["code"].is_string(), "{query}: {error}");
    }
}

fn from_ip(user: &str, event_id: &str, activity_type: &str, ip: &str) -> Value {
    let mut value = activity(user, event_id, activity_type);
    value["metadata"]["ipAddress"] = json!(ip);
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_rules_fire_for_a_burst_of_failed_logins_and_not_for_normal_traffic() {
    let stack = ActivityStack::new().await;
    let processor = stack.start_processor().await;
    // Normal traffic: each user logs in from their own IP, fails once, browses.
    let mut normal = Vec::new();
    for user in 0..10 {
        let ip = format!("10.0.0.{user}");
        normal.push(from_ip(
            &format!("user{user}"),
            &format!("n-login-{user}"),
            "login",
            &ip,
        ));
        normal.push(from_ip(
            &format!("user{user}"),
            &format!("n-fail-{user}"),
            "login_failed",
            &ip,
        ));
        normal.push(from_ip(
            &format!("user{user}"),
            &format!("n-view-{user}"),
            "page_view",
            &ip,
        ));
    }
    stack.produce(&normal).await;
    stack.wait_stored(30, &processor).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        events::testing::message_count(&stack.analytics),
        0,
        "normal traffic is quiet"
    );

    // A burst: 6 failed logins from one IP against several accounts (threshold 5), and one
    // user logging in from 3 IPs (threshold 3).
    let mut burst: Vec<Value> = (0..6)
        .map(|i| {
            from_ip(
                &format!("victim{}", i % 3),
                &format!("b-fail-{i}"),
                "login_failed",
                "203.0.113.7",
            )
        })
        .collect();
    for (i, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        burst.push(from_ip("roamer", &format!("b-login-{i}"), "login", ip));
    }
    stack.produce(&burst).await;
    stack.wait_stored(39, &processor).await;

    let alerts = read_from_start(&stack.analytics.name, 2).await;
    // Each fires once, when its count crosses the threshold (the burst may span batches).
    let mut seen: Vec<(String, String)> = alerts
        .iter()
        .map(|m| {
            let alert: Value = serde_json::from_slice(m.payload().expect("value")).expect("JSON");
            assert_eq!(alert["windowSeconds"], 300);
            let rule = alert["rule"].as_str().expect("rule").to_owned();
            let threshold = if rule == "repeated_failed_logins" {
                5
            } else {
                3
            };
            assert!(
                alert["count"].as_i64().expect("count") >= threshold,
                "{alert}"
            );
            (
                rule,
                String::from_utf8_lossy(m.key().expect("key")).into_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("logins_from_many_ips".to_owned(), "roamer".to_owned()),
            (
                "repeated_failed_logins".to_owned(),
                "203.0.113.7".to_owned()
            ),
        ]
    );
    // A replay of the burst stores nothing new and fires nothing.
    stack.produce(&burst).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events::testing::message_count(&stack.analytics), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_is_down_the_processor_holds_and_dead_letters_nothing() {
    let stack = ActivityStack::new().await;
    let proxy =
        service_runtime::testing::ChaosProxy::start("127.0.0.1:5432".parse().expect("address"))
            .await;
    let url = repo::testing::test_database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let alerts = events::testing::TestTopic::create("system-events", 1).await;
    let processor = stack
        .start_processor_with(&[
            ("DATABASE_URL", &url),
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_POOL_TIMEOUT", "1s"),
            // Held this long, the consumer counts as stalled: an alert, then its resolution.
            ("KAFKA_STALL_AFTER", "2s"),
            ("SYSTEM_EVENTS_TOPIC", &alerts.name),
            ("ALERT_CHECK_INTERVAL", "500ms"),
        ])
        .await;
    let before: Vec<Value> = (0..100)
        .map(|i| activity("u1", &format!("before-{i}"), "page_view"))
        .collect();
    stack.produce(&before).await;
    stack.wait_stored(100, &processor).await;

    proxy.cut();
    let during: Vec<Value> = (0..200)
        .map(|i| activity(&format!("u{}", i % 7), &format!("during-{i}"), "click"))
        .collect();
    stack.produce(&during).await;
    wait_until(
        "the processor to meet the outage",
        Duration::from_secs(120),
        || processor.logs(),
        || async { processor.logs().contains("dependency unavailable") },
    )
    .await;
    // A few more held tries, none of which may write or dead-letter anything.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(stack.stored().await, 100, "nothing written while down");
    proxy.restore();

    stack.wait_stored(300, &processor).await;
    assert_eq!(
        events::testing::message_count(&stack.dlq),
        0,
        "an outage makes no dead letters"
    );
    // system-events heard that the consumer stalled, and that it recovered.
    let raised_and_resolved: Vec<Value> = read_from_start(&alerts.name, 2)
        .await
        .iter()
        .map(|m| serde_json::from_slice(events::rdkafka::Message::payload(m).unwrap()).unwrap())
        .collect();
    let (raised, resolved) = (
        &raised_and_resolved[0]["data"],
        &raised_and_resolved[1]["data"],
    );
    assert_eq!(raised["alert_type"], "consumer_stalled", "{raised}");
    assert_eq!(raised["severity"], "error");
    assert_eq!(raised["resolved"], false);
    assert_eq!(resolved["alert_type"], "consumer_stalled", "{resolved}");
    assert_eq!(resolved["resolved"], true);
    assert_eq!(
        resolved["alert_id"], raised["alert_id"],
        "one alert, raised then resolved"
    );
    let exited = processor.terminate().await;
    assert!(
        exited.logs.contains("dependency unavailable"),
        "{}",
        exited.logs
    );
}
