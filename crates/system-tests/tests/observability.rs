//! What the system says about itself, read where its users read it: the business events on
//! `api-events`, `error-events` and `system-events`, the per-route metrics, and traces that
//! cross services, exported over OTLP to a loopback receiver.

use std::time::Duration;

use events::rdkafka::Message as _;
use events::rdkafka::consumer::{Consumer as _, StreamConsumer};
use events::rdkafka::message::OwnedMessage;
use events::testing::{TestTopic, read_from_start, test_kafka_config, unique_name};
use serde_json::{Value, json};
use system_tests::{ActivityStack, call, header, owned, start_gateway};

/// Records of `topic` from its start, until `enough` says so (a minute at most).
async fn read_until(topic: &str, enough: impl Fn(&[OwnedMessage]) -> bool) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = test_kafka_config()
        .client_config()
        .set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = Vec::new();
    while !enough(&messages) {
        let next = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{} messages on {topic}, not enough", messages.len()));
        messages.push(next.expect("a message").detach());
    }
    messages
}

/// The JSON of a record.
fn json_of(message: &OwnedMessage) -> Value {
    serde_json::from_slice(message.payload().expect("a value")).expect("JSON")
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_an_api_request_event_and_refusals_api_errors() {
    let stack = ActivityStack::new().await;
    let requests = TestTopic::create("api-events", 1).await;
    let errors = TestTopic::create("error-events", 1).await;
    let (gateway, api) = start_gateway(owned(&[
        ("DATABASE_SCHEMA", stack.db.schema()),
        ("ACTIVITY_TOPIC", &stack.topic.name),
        ("API_EVENTS_TOPIC", &requests.name),
        ("ERROR_EVENTS_TOPIC", &errors.name),
    ]))
    .await;
    let http = reqwest::Client::new();

    let body = json!({"userId": "user-obs", "activityType": "login"}).to_string();
    let accepted = http
        .post(format!("{api}/api/v1/activity-logs"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-accepted-1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(
        accepted.headers()["x-request-id"],
        "req-accepted-1",
        "the caller's request ID is kept"
    );
    let accepted_size = accepted.content_length().unwrap();
    // A validation error: an api.request, no api.error.
    let (status, _) = call(
        http.post(format!("{api}/api/v1/activity-logs"))
            .json(&json!({"userId": "", "activityType": "login"})),
    )
    .await;
    assert_eq!(status, 422);
    // Refusals that are not validation errors: both events.
    let not_found = http
        .get(format!("{api}/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    let not_found_id = not_found.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, _) = call(http.delete(format!("{api}/api/v1/activity-logs"))).await;
    assert_eq!(status, 405);

    // The gateway's own start-up probes of the document are requests too: left out here.
    let ours = |message: &OwnedMessage| json_of(message)["data"]["path"] != "/api/v1/openapi.json";
    let request_events: Vec<OwnedMessage> = read_until(&requests.name, |messages| {
        messages.iter().filter(|m| ours(m)).count() >= 4
    })
    .await
    .into_iter()
    .filter(ours)
    .collect();
    let events: Vec<Value> = request_events.iter().map(json_of).collect();
    let first = &events[0];
    assert_eq!(
        keys(first),
        ["data", "id", "timestamp", "type", "version"],
        "{first}"
    );
    assert_eq!(first["type"], "api.request");
    assert_eq!(first["version"], "1.0");
    let data = &first["data"];
    assert_eq!(
        keys(data),
        [
            "duration",
            "ip_address",
            "method",
            "path",
            "request_id",
            "request_size",
            "request_time",
            "response_size",
            "status_code",
        ],
        "user_id is left out until requests are authenticated: {data}"
    );
    assert_eq!(data["request_id"], "req-accepted-1");
    assert_eq!(data["method"], "POST");
    assert_eq!(data["path"], "/api/v1/activity-logs", "the route template");
    assert_eq!(data["status_code"], 202);
    assert!(data["duration"].is_u64(), "milliseconds: {data}");
    assert_eq!(data["ip_address"], "127.0.0.1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(data["request_time"].as_str().unwrap()).is_ok(),
        "{data}"
    );
    assert_eq!(data["request_size"], body.len() as u64);
    assert_eq!(data["response_size"], accepted_size);
    assert_eq!(
        header(&request_events[0], "event_type"),
        Some("api.request")
    );
    assert_eq!(header(&request_events[0], "source"), Some("gateway"));
    assert_eq!(
        header(&request_events[0], "correlation_id"),
        Some("req-accepted-1"),
        "the request ID ties a request's events together"
    );
    let answered: Vec<(u64, &str)> = events
        .iter()
        .map(|e| {
            (
                e["data"]["status_code"].as_u64().unwrap(),
                e["data"]["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            (202, "/api/v1/activity-logs"),
            (422, "/api/v1/activity-logs"),
            (404, "unmatched"),
            (405, "/api/v1/activity-logs"),
        ]
    );

    let error_events = read_from_start(&errors.name, 2).await;
    let errors_json: Vec<Value> = error_events.iter().map(json_of).collect();
    let not_found_event = &errors_json[0];
    assert_eq!(not_found_event["type"], "api.error");
    assert_eq!(
        keys(&not_found_event["data"]),
        [
            "error_code",
            "error_message",
            "error_time",
            "error_type",
            "method",
            "path",
            "request_id",
            "status_code",
        ]
    );
    let data = &not_found_event["data"];
    assert_eq!(data["request_id"], not_found_id.as_str());
    assert_eq!(data["method"], "GET");
    assert_eq!(data["status_code"], 404);
    assert_eq!(data["error_type"], "client_error");
    assert_eq!(data["error_code"], "not_found");
    assert!(
        data["error_message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );
    assert_eq!(errors_json[1]["data"]["error_code"], "method_not_allowed");
    assert_eq!(errors_json[1]["data"]["status_code"], 405);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        events::testing::message_count(&errors),
        2,
        "the validation error is not an api.error"
    );

    // Per-route metrics, by template and status.
    let (status, metrics) = gateway.get("/metrics").await;
    assert_eq!(status, 200);
    let line = |route: &str, method: &str, code: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("http_server_requests_total{")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains(&format!("method=\"{method}\""))
                    && line.contains(&format!("status=\"{code}\""))
            })
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(
        line("/api/v1/activity-logs", "POST", "202").as_deref(),
        Some("1")
    );
    assert_eq!(
        line("/api/v1/activity-logs", "POST", "422").as_deref(),
        Some("1")
    );
    assert!(
        metrics.contains("http_server_request_duration_seconds_bucket{")
            || metrics.contains("http_server_request_duration_seconds{"),
        "a latency histogram"
    );
}
