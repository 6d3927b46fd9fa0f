//! What the system says about itself, read where its users read it: the business events on
//! `api-events`, `error-events` and `system-events`, the per-route metrics, and traces that
//! cross services, exported over OTLP to a loopback receiver.

use std::time::Duration;

use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::testing::{TestTopic, read_from_start, read_until};
use serde_json::{Value, json};
use system_tests::{
    ActivityStack, OtlpReceiver, ReceivedSpan, RegistrationStack, SmtpSink, WaitlistStack, call,
    header, owned, start_gateway,
};

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
    let http = system_tests::operator_http(&api, stack.db.schema()).await;

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

    // The gateway's own start-up probes of the document are requests too, and so is the token
    // request of the test's client: left out here.
    let ours = |message: &OwnedMessage| {
        !["/api/v1/openapi.json", "/oauth2/token"].contains(
            &json_of(message)["data"]["path"]
                .as_str()
                .unwrap_or_default(),
        )
    };
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
    assert_eq!(
        data["error_message"], "no such route or resource",
        "what the code means, nothing the caller sent"
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
        metrics.lines().any(|line| line
            .starts_with("http_server_request_duration_seconds_bucket{")
            && line.contains("route=\"/api/v1/activity-logs\"")
            && line.contains("le=\"0.005\"")),
        "a latency histogram with buckets, by route:\n{metrics}"
    );
    // Methods outside the standard ones are one label value, not one each.
    let (status, _) = call(http.request(
        reqwest::Method::from_bytes(b"FOO1").unwrap(),
        format!("{api}/api/v1/activity-logs"),
    ))
    .await;
    assert_eq!(status, 405);
    let (_, metrics) = gateway.get("/metrics").await;
    assert!(!metrics.contains("FOO1"), "{metrics}");
    assert!(metrics.contains("method=\"_OTHER\""), "{metrics}");
}

/// The spans of one trace, `(service, name)`, once every service has flushed them.
fn trace_of(spans: &[ReceivedSpan], trace_id: &str) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .map(|span| (span.service.clone(), span.name.clone()))
        .collect();
    names.sort();
    names
}

fn assert_in_trace(trace: &[(String, String)], service: &str, name: &str) {
    assert!(
        trace.iter().any(|(s, n)| s == service && n == name),
        "no {service} span {name:?} in the trace: {trace:#?}"
    );
}

/// The trace ID of a `traceparent` header value.
fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).expect("a traceparent")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_runs_from_a_registration_request_through_the_batcher_to_user_registered() {
    let otlp = OtlpReceiver::start().await;
    let stack = RegistrationStack::new().await;
    let telemetry = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
        ("LOG_FORMAT", "json"),
    ];
    let (gateway, api) = stack.start_gateway(&telemetry).await;
    let mut batcher_env = telemetry.to_vec();
    batcher_env.push(("RUST_LOG", "info,registration_batcher=debug"));
    let batcher = stack.start_batcher(&batcher_env).await;
    let http = reqwest::Client::new();

    // The caller's own trace, continued by everything that follows.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (status, body) = call(
        http.post(format!("{api}/api/v1/auth/register-async"))
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .json(
                &json!({"email": "traced@example.com", "password": "long enough", "consent": true}),
            ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let queued = read_from_start(&stack.topic.name, 1).await;
    let traceparent = header(&queued[0], "traceparent").expect("the queued request's traceparent");
    assert_eq!(trace_id_of(traceparent), trace_id);
    let registered = read_from_start(&stack.events_topic.name, 1).await;
    let traceparent =
        header(&registered[0], "traceparent").expect("user.registered carries a traceparent");
    assert_eq!(
        trace_id_of(traceparent),
        trace_id,
        "user.registered continues the request's trace"
    );

    // SIGTERM flushes the spans still buffered.
    assert!(gateway.terminate().await.status.success());
    let batcher = batcher.terminate().await;
    assert!(batcher.status.success());
    let batcher_logs = batcher.logs;
    let spans = otlp.spans();
    let trace = trace_of(&spans, trace_id);
    let request = spans
        .iter()
        .find(|s| s.trace_id == trace_id && s.name == "POST /api/v1/auth/register-async")
        .unwrap_or_else(|| panic!("no request span: {trace:#?}"));
    assert_eq!(request.service, "gateway");
    assert_eq!(
        request.parent_span_id, caller_span,
        "the caller's span is its parent"
    );
    assert_in_trace(&trace, "gateway", "password.hash");
    assert_in_trace(&trace, "gateway", &format!("{} publish", stack.topic.name));
    assert_in_trace(
        &trace,
        "registration-batcher",
        &format!("{} process batch", stack.topic.name),
    );
    assert_in_trace(&trace, "registration-batcher", "registration.write");
    assert_in_trace(&trace, "registration-batcher", "db.register");
    assert_in_trace(
        &trace,
        "registration-batcher",
        &format!("{} publish", stack.events_topic.name),
    );
    // The batcher's log lines inside the trace say so.
    assert!(
        batcher_logs
            .lines()
            .any(|line| line.contains("registration completed") && line.contains(trace_id)),
        "no log line of the batcher carries the trace ID:\n{batcher_logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_runs_from_a_waitlist_signup_through_the_outbox_to_the_email_sent() {
    let otlp = OtlpReceiver::start().await;
    let stack = WaitlistStack::new().await;
    let smtp = SmtpSink::start().await;
    let telemetry = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())];
    let (gateway, api) = stack.start_gateway(&telemetry).await;
    let smtp_url = smtp.url();
    let emailer = stack
        .start_worker(
            "email-worker",
            "email-workers",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
                ("SMTP_URL", &smtp_url),
            ],
        )
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let (status, campaign) = call(
        http.post(format!("{api}/api/v1/campaigns"))
            .json(&json!({"name": "Traced launch"})),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let campaign_id = campaign["id"].as_str().unwrap();

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let (status, body) = call(
        http.post(format!("{api}/api/v1/campaigns/{campaign_id}/signups"))
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .json(&json!({"email": "traced@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    system_tests::wait_until(
        "the welcome and verification emails",
        Duration::from_secs(60),
        || emailer.logs(),
        || async { smtp.messages().len() >= 2 },
    )
    .await;

    assert!(gateway.terminate().await.status.success());
    assert!(emailer.terminate().await.status.success());
    let spans = otlp.spans();
    let trace = trace_of(&spans, trace_id);
    assert_in_trace(
        &trace,
        "gateway",
        "POST /api/v1/campaigns/{campaign_id}/signups",
    );
    assert_in_trace(&trace, "gateway", "db.sign_up");
    assert_in_trace(&trace, "gateway", "outbox.relay");
    assert_in_trace(&trace, "gateway", &format!("{} publish", stack.topic.name));
    assert_in_trace(
        &trace,
        "email-worker",
        &format!("{} process", stack.topic.name),
    );
    assert_in_trace(&trace, "email-worker", "email.send");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_always_api_errors_and_the_rest_is_configurable() {
    let stack = ActivityStack::new().await;
    let requests = TestTopic::create("api-events", 1).await;
    let errors = TestTopic::create("error-events", 1).await;
    let proxy =
        service_runtime::testing::ChaosProxy::start("127.0.0.1:5432".parse().expect("address"))
            .await;
    let url = repo::testing::test_database_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
    let (_gateway, api) = start_gateway(owned(&[
        ("DATABASE_URL", &url),
        ("DATABASE_SCHEMA", stack.db.schema()),
        ("DATABASE_CONNECT_TIMEOUT", "1s"),
        ("DATABASE_POOL_TIMEOUT", "1s"),
        ("API_EVENTS_TOPIC", &requests.name),
        ("ERROR_EVENTS_TOPIC", &errors.name),
        ("API_EVENTS_SAMPLE_RATE", "0"),
        ("API_ERROR_EVENTS_FOR_CLIENT_ERRORS", "false"),
    ]))
    .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    // A client error: no api.error when they are turned off.
    let (status, _) = call(http.get(format!("{api}/api/v1/nothing-here"))).await;
    assert_eq!(status, 404);
    // The database is gone: 503, an api.error whatever the settings.
    proxy.cut();
    let answer = http
        .get(format!("{api}/api/v1/users/u1/activity-logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let request_id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    proxy.restore();

    let error = json_of(&read_from_start(&errors.name, 1).await[0]);
    let data = &error["data"];
    assert_eq!(error["type"], "api.error", "{error}");
    assert_eq!(data["request_id"], request_id.as_str(), "{error}");
    assert_eq!(data["path"], "/api/v1/users/{userId}/activity-logs");
    assert_eq!(data["status_code"], 503);
    assert_eq!(data["error_type"], "server_error");
    assert_eq!(data["error_code"], "database_unavailable");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        events::testing::message_count(&errors),
        1,
        "the 404 made no api.error"
    );
    assert_eq!(
        events::testing::message_count(&requests),
        0,
        "a sample rate of 0 publishes no api.request"
    );
}
