//! The gateway's registration API over HTTP: every kind of bad input gets its 4xx and the one
//! error shape, the synchronous path, the status endpoint, back-pressure and the OpenAPI
//! document.

use serde_json::{Value, json};
use system_tests::RegistrationStack;
use uuid::Uuid;

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Answer {
        status,
        body,
        retry_after,
    }
}

/// Asserts the error shape, status, code and (if given) field.
fn assert_error(answer: &Answer, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["code"], code, "{}", answer.body);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.body
    );
    assert_eq!(error["field"].as_str(), field, "{}", answer.body);
    assert_eq!(
        answer.body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_of_every_kind_gets_its_4xx_and_one_error_shape() {
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack
        .start_gateway(&[("MAX_BODY_BYTES", "4096"), ("BULK_MAX_USERS", "3")])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let single = format!("{api}/api/v1/auth/register-async");
    let bulk = format!("{api}/api/v1/auth/register-async-bulk");
    let ok = json!({"email": "ok@example.com", "password": "password123", "consent": true});
    let with = |key: &str, value: Value| {
        let mut body = ok.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = ok.clone();
        body.as_object_mut().expect("object").remove(key);
        body
    };
    let post = |url: &str, body: Value| http.post(url).json(&body);

    let answer = send(
        http.post(&single)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_error(&answer, 400, "invalid_json", None);
    let answer = send(
        http.post(&single)
            .header("content-type", "text/plain")
            .body("email=a"),
    )
    .await;
    assert_error(&answer, 415, "unsupported_media_type", None);
    let answer = send(post(
        &single,
        with("email", json!(format!("{}@example.com", "a".repeat(5000)))),
    ))
    .await;
    assert_error(&answer, 413, "payload_too_large", None);
    let answer = send(post(&single, json!(["a list"]))).await;
    assert_error(&answer, 400, "invalid_body", None);
    let answer = send(post(&single, with("is_admin", json!(true)))).await;
    assert_error(&answer, 422, "unknown_field", Some("is_admin"));
    let answer = send(post(&single, with("email", json!("not-an-email")))).await;
    assert_error(&answer, 422, "validation_failed", Some("email"));
    let answer = send(post(&single, with("phone", json!("555-0100")))).await;
    assert_error(&answer, 422, "validation_failed", Some("phone"));
    let answer = send(post(&single, without("email"))).await;
    assert_error(&answer, 422, "validation_failed", Some("email"));
    let answer = send(post(&single, with("password", json!("short")))).await;
    assert_error(&answer, 422, "validation_failed", Some("password"));
    let answer = send(post(&single, with("password", json!("p".repeat(129))))).await;
    assert_error(&answer, 422, "validation_failed", Some("password"));
    let answer = send(post(&single, without("password"))).await;
    assert_error(&answer, 422, "validation_failed", Some("password"));
    let answer = send(post(&single, without("consent"))).await;
    assert_error(&answer, 422, "validation_failed", Some("consent"));
    let answer = send(post(&single, with("consent", json!("yes")))).await;
    assert_error(&answer, 422, "validation_failed", Some("consent"));

    let answer = send(post(&bulk, json!({"users": [ok, ok, ok, ok]}))).await;
    assert_error(&answer, 422, "bulk_too_large", Some("users"));
    let answer = send(post(&bulk, json!({"users": []}))).await;
    assert_error(&answer, 422, "validation_failed", Some("users"));
    let answer = send(post(&bulk, json!({"users": [ok, with("email", json!(7))]}))).await;
    assert_error(&answer, 422, "validation_failed", Some("users[1].email"));
    let answer = send(post(&bulk, json!({"people": [ok]}))).await;
    assert_error(&answer, 422, "unknown_field", Some("people"));

    let answer = send(http.get(format!("{api}/api/v1/auth/registrations/not-a-uuid"))).await;
    assert_error(&answer, 404, "not_found", None);
    let answer = send(http.get(format!(
        "{api}/api/v1/auth/registrations/{}",
        Uuid::new_v4()
    )))
    .await;
    assert_error(&answer, 404, "registration_not_found", None);
    let answer = send(http.get(format!("{api}/api/v1/nothing-here"))).await;
    assert_error(&answer, 404, "not_found", None);
    // A served path asked with another method: 405 with the methods it takes.
    let response = http.delete(&single).send().await.expect("request");
    assert_eq!(
        response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("POST".to_owned())
    );
    let answer = send(http.delete(&single)).await;
    assert_error(&answer, 405, "method_not_allowed", None);
    let answer = send(http.put(format!("{api}/api/v1/campaigns/{}/signups", Uuid::now_v7()))).await;
    assert_error(&answer, 405, "method_not_allowed", None);

    // A HEAD is its GET without the body.
    let head = http
        .head(format!("{api}/api/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    // A compressed body is refused, not read as if it were plain.
    let answer = send(
        http.post(&single)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body("{}"),
    )
    .await;
    assert_error(&answer, 415, "unsupported_media_type", None);
    // So is one that hides its encoding behind an identity, or says it is not UTF-8.
    for headers in [
        vec![
            ("content-type", "application/json"),
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ],
        vec![("content-type", "application/json; charset=utf-16")],
    ] {
        let mut request = http.post(&single).body("{}");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        assert_error(&send(request).await, 415, "unsupported_media_type", None);
    }
    // A query parameter given twice is named.
    let answer = send(http.get(format!("{api}/api/v1/campaigns?limit=1&limit=2"))).await;
    assert_error(&answer, 400, "invalid_query", Some("limit"));

    // Nothing invalid was queued.
    assert_eq!(events::testing::message_count(&stack.topic), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sync_path_creates_at_once_and_refuses_a_second_registration() {
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let http = reqwest::Client::new();
    let url = format!("{api}/api/v1/auth/register-sync");
    let body = json!({"email": "sync@example.com", "password": "password123", "consent": true});

    let created = send(http.post(&url).json(&body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["email"], "sync@example.com");
    let user_id: i64 = created.body["user_id"]
        .as_str()
        .expect("a string ID")
        .parse()
        .expect("a Snowflake ID");
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) AS n FROM users WHERE id = {user_id}"
            ))
            .await,
        1
    );

    let again =
        send(http.post(&url).json(
            &json!({"email": "SYNC@example.com", "password": "password456", "consent": true}),
        ))
        .await;
    assert_error(&again, 409, "already_registered", None);

    let phone = send(
        http.post(&url)
            .json(&json!({"phone": "+14155550100", "password": "password123", "consent": false})),
    )
    .await;
    assert_eq!(phone.status, 201, "{}", phone.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_request_reads_processing_until_it_has_an_outcome() {
    let stack = RegistrationStack::new().await;
    // No batcher: the request stays queued.
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let http = reqwest::Client::new();
    let accepted = send(
        http.post(format!("{api}/api/v1/auth/register-async"))
            .json(&json!({"phone": "+447700900123", "password": "password123", "consent": true})),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let request_id = accepted.body["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    let status = send(http.get(format!("{api}/api/v1/auth/registrations/{request_id}"))).await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.body,
        json!({"request_id": request_id, "status": "processing"})
    );

    // The message on the topic: seed 000's shape, keyed by the request ID, with a hash only.
    let queued = events::testing::read_from_start(&stack.topic.name, 1).await;
    use events::rdkafka::Message as _;
    assert_eq!(queued[0].key(), Some(request_id.as_bytes()));
    let message: Value = serde_json::from_slice(queued[0].payload().expect("value")).expect("JSON");
    assert_eq!(message["request_id"], request_id);
    assert_eq!(message["phone"], "+447700900123");
    assert_eq!(message["email"], Value::Null);
    assert_eq!(message["retry_count"], 0);
    assert_eq!(message["consent"], true);
    let password = message["password"].as_str().expect("password");
    assert!(password.starts_with("$argon2id$"), "{password}");
    assert!(!String::from_utf8_lossy(queued[0].payload().expect("value")).contains("password123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_hashing_pool_answers_503_with_retry_after() {
    let stack = RegistrationStack::new().await;
    // Slow hashes, one at a time, one waiting at most.
    let (_gateway, api) = stack
        .start_gateway(&[
            ("ARGON2_MEMORY_KIB", "65536"),
            ("ARGON2_ITERATIONS", "8"),
            ("HASH_WORKERS", "1"),
            ("HASH_QUEUE_CAPACITY", "1"),
            ("BULK_MAX_USERS", "1"),
        ])
        .await;
    let http = reqwest::Client::new();
    let url = format!("{api}/api/v1/auth/register-async");
    let requests = (0..6).map(|i| {
        send(http.post(&url).json(&json!({"email": format!("load-{i}@example.com"), "password": "password123", "consent": true})))
    });
    let answers = futures::future::join_all(requests).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(accepted >= 1, "some get through");
    assert!(!refused.is_empty(), "the rest are refused, not queued");
    assert_eq!(accepted + refused.len(), 6);
    for answer in refused {
        assert_error(answer, 503, "busy", None);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_endpoint() {
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let http = reqwest::Client::new();
    let document = send(http.get(format!("{api}/api/v1/openapi.json"))).await;
    assert_eq!(document.status, 200);
    assert_eq!(document.body["openapi"], "3.1.0");
    let paths = document.body["paths"].as_object().expect("paths");
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let url = format!(
                "{api}{}",
                path.replace("{request_id}", &Uuid::now_v7().to_string())
                    .replace("{userId}", "user1")
                    .replace("{campaign_id}", &Uuid::now_v7().to_string())
                    .replace("{participant_id}", &Uuid::now_v7().to_string())
                    .replace("{client_id}", "no-such-client")
                    .replace("{provider}", "no-such-provider")
            );
            let request = match method.as_str() {
                "get" => http.get(&url),
                "post" => http.post(&url).json(&json!({})),
                "put" => http.put(&url).json(&json!({})),
                "patch" => http.patch(&url).json(&json!({})),
                "delete" => http.delete(&url),
                other => panic!("undocumented method {other}"),
            };
            let answer = send(request).await;
            assert!(
                !(answer.status == 404 && answer.body["error"]["code"] == "not_found"),
                "{method} {path} is documented but not served"
            );
        }
    }
    for served in [
        "/api/v1/auth/register-async",
        "/api/v1/auth/register-async-bulk",
        "/api/v1/auth/register-sync",
        "/api/v1/auth/registrations/{request_id}",
        "/api/v1/openapi.json",
        "/api/v1/activity-logs",
        "/api/v1/activity-logs/batch",
        "/api/v1/users/{userId}/activity-logs",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{campaign_id}",
        "/api/v1/campaigns/{campaign_id}/signups",
        "/api/v1/campaigns/{campaign_id}/signups/{participant_id}",
        "/api/v1/campaigns/{campaign_id}/verify",
        "/api/v1/campaigns/{campaign_id}/leaderboard",
        "/api/v1/campaigns/{campaign_id}/public",
        "/api/v1/campaigns/{campaign_id}/me",
        "/api/v1/admin/oauth2/audit-log",
        "/api/v1/auth/sign-in",
        "/api/v1/auth/refresh",
        "/api/v1/auth/sign-out",
        "/api/v1/auth/sign-out-everywhere",
        "/api/v1/auth/verify-email",
        "/api/v1/auth/verify-phone",
        "/api/v1/auth/resend-verification",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/api/v1/auth/restore",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/email",
        "/api/v1/me/phone",
        "/api/v1/me/deletion",
        "/api/v1/me/consents",
        "/api/v1/auth/providers",
        "/api/v1/auth/providers/{provider}/authorize",
        "/api/v1/auth/providers/{provider}/callback",
        "/api/v1/me/providers",
        "/api/v1/me/providers/{provider}",
        "/api/v1/me/consents/{client_id}",
        "/api/v1/oauth2/clients",
        "/api/v1/oauth2/clients/{client_id}",
        "/api/v1/oauth2/clients/{client_id}/secret",
        "/oauth2/token",
        "/oauth2/revoke",
        "/oauth2/introspect",
        "/oauth2/userinfo",
        "/oauth2/jwks",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        assert!(
            paths.contains_key(served),
            "{served} is served but not documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_never_arrives_gets_408_and_frees_the_connection() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = RegistrationStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[("BODY_READ_TIMEOUT", "1s")]).await;
    let addr = api.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // 100 bytes announced, 4 sent, then nothing.
    stream
        .write_all(
            format!(
                "POST /api/v1/auth/register-async HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"em"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A hang guard, not a timing claim: the answer comes once the body times out.
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the gateway answers and closes the connection")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}
