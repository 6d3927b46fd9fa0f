//! Who may call what, on the gateway as a process with PostgreSQL and the broker: every route
//! of the OpenAPI document (whose `x-access` and `security` come from the gateway's route
//! table) refuses the callers its class does not admit, also when its path is percent-encoded;
//! public answers carry nobody else's personal data; every rate-limited route answers 429 with
//! its fields; limits hold across two gateways and recover.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{WaitlistStack, bearer_http, call, client_token, signed_in_user, wait_until};

const PASSWORD: &str = "correct horse battery";

/// The callers of the test and what they own.
struct World {
    api: String,
    ada: String,
    ada_id: String,
    bob: String,
    bob_id: String,
    campaign_id: String,
    participant_id: String,
    participant_token: String,
    client_id: String,
}

impl World {
    async fn new(api: &str) -> Self {
        let ada = signed_in_user(api, "ada@example.com", PASSWORD).await;
        let bob = signed_in_user(api, "bob@example.com", PASSWORD).await;
        let user_id = |token: String| async move {
            let (_, me) = call(bearer_http(&token).get(format!("{api}/api/v1/me"))).await;
            me["user_id"].as_str().expect("a user_id").to_owned()
        };
        let ada_id = user_id(ada.clone()).await;
        let bob_id = user_id(bob.clone()).await;
        let (status, campaign) = call(
            bearer_http(&ada)
                .post(format!("{api}/api/v1/campaigns"))
                .json(
                    &json!({"name": "Ada's launch", "notify_email": "ada-team@example.com",
                              "reward_tiers": [{"name": "Hook", "referral_threshold": 1,
                                                "delivery": "webhook",
                                                "webhook_url": "https://hooks.example.com/ada"}]}),
                ),
        )
        .await;
        assert_eq!(status, 201, "{campaign}");
        let campaign_id = campaign["id"].as_str().unwrap().to_owned();
        let (status, signup) = call(
            reqwest::Client::new()
                .post(format!("{api}/api/v1/campaigns/{campaign_id}/signups"))
                .json(&json!({"email": "carol@example.com"})),
        )
        .await;
        assert_eq!(status, 201, "{signup}");
        let (status, client) = call(
            bearer_http(&ada)
                .post(format!("{api}/api/v1/oauth2/clients"))
                .json(&json!({"name": "Ada's app", "client_type": "confidential",
                              "redirect_uris": ["https://app.example.com/cb"],
                              "grant_types": ["authorization_code"], "scopes": ["openid"]})),
        )
        .await;
        assert_eq!(status, 201, "{client}");
        Self {
            api: api.to_owned(),
            ada,
            ada_id,
            bob,
            bob_id,
            participant_id: signup["participant_id"].as_str().unwrap().to_owned(),
            participant_token: signup["participant_token"].as_str().unwrap().to_owned(),
            campaign_id,
            client_id: client["client_id"].as_str().unwrap().to_owned(),
        }
    }

    /// `path` of the document with its parameters filled in with Ada's things.
    fn url(&self, path: &str) -> String {
        self.url_with(path, &self.campaign_id, &self.ada_id)
    }

    /// The same, with the first character of the last literal segment and of Ada's campaign
    /// and user IDs percent-encoded: the same route and the same IDs to the router.
    fn encoded_url(&self, path: &str) -> String {
        let encode_first = |text: &str| format!("%{:02X}{}", text.as_bytes()[0], &text[1..]);
        let segments: Vec<&str> = path.split('/').collect();
        let last_literal = segments
            .iter()
            .rposition(|s| !s.is_empty() && !s.starts_with('{'))
            .expect("a literal segment");
        let path = segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == last_literal {
                    encode_first(s)
                } else {
                    (*s).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        self.url_with(
            &path,
            &encode_first(&self.campaign_id),
            &encode_first(&self.ada_id),
        )
    }

    fn url_with(&self, path: &str, campaign_id: &str, user_id: &str) -> String {
        let path = path
            .replace("{campaign_id}", campaign_id)
            .replace("{participant_id}", &self.participant_id)
            .replace("{userId}", user_id)
            .replace("{client_id}", &self.client_id)
            .replace("{provider}", "nowhere")
            .replace("{request_id}", &uuid::Uuid::now_v7().to_string());
        assert!(
            !path.contains('{'),
            "a parameter the test does not fill: {path}"
        );
        format!("{}{path}", self.api)
    }
}

/// Sends `method url` with `token` (if any) and a `{}` JSON body for methods that take one.
async fn send(method: &str, url: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let http = reqwest::Client::new();
    let mut request = http.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if ["POST", "PUT", "PATCH", "DELETE"].contains(&method) {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_the_callers_its_class_does_not_admit() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let world = World::new(&api).await;
    let schema = stack.db.schema();
    // Clients of a platform admin: one per service scope, one admin, and one whose only scope
    // is of no use on any route below but campaigns' (it has no owner to act for).
    let (_, reader) = client_token(&api, schema, &["activity:read"]).await;
    let (_, writer) = client_token(&api, schema, &["activity:write"]).await;
    let (_, bulk) = client_token(&api, schema, &["registrations:bulk"]).await;
    let (_, admin) = client_token(&api, schema, &["admin"]).await;
    let (_, ownerless) = client_token(&api, schema, &["campaigns:read", "campaigns:write"]).await;
    let garbage = "ab".repeat(32);
    // Bob's own back end: a client of his with client credentials and the campaign scopes.
    let (status, bobs_client) = call(
        bearer_http(&world.bob)
            .post(format!("{api}/api/v1/oauth2/clients"))
            .json(
                &json!({"name": "Bob's back end", "client_type": "confidential",
                          "grant_types": ["client_credentials"],
                          "scopes": ["campaigns:read", "campaigns:write"]}),
            ),
    )
    .await;
    assert_eq!(status, 201, "{bobs_client}");
    let (status, body) = call(
        reqwest::Client::new()
            .post(format!("{api}/oauth2/token"))
            .basic_auth(
                bobs_client["client_id"].as_str().unwrap(),
                bobs_client["client_secret"].as_str(),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "campaigns:read campaigns:write"),
            ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bobs_back_end = body["access_token"].as_str().unwrap().to_owned();
    // Bob's grants to Ada's app: one without the campaign scopes, one with them (stored as the
    // token endpoint stores them; the code flow itself is tested in tests/oauth2.rs).
    let grant = |scopes: &[&str]| {
        let token = domain::accounts::SecretToken::generate();
        let now = chrono::Utc::now();
        let record = domain::OAuth2AccessToken {
            token_hash: token.hash(),
            client_id: world.client_id.clone(),
            user_id: Some(world.bob_id.parse().unwrap()),
            session_id: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: now + chrono::Duration::hours(1),
            revoked_at: None,
            created_at: now,
        };
        let users = repo::PgUserRepository::new(stack.db.database().clone());
        async move {
            use repo::UserRepository as _;
            users.create_access_token(&record).await.unwrap();
            token.expose().to_owned()
        }
    };
    let bobs_openid_grant = grant(&["openid"]).await;
    let bobs_campaigns_grant = grant(&["campaigns:read", "campaigns:write"]).await;

    let (_, document) =
        call(reqwest::Client::new().get(format!("{api}/api/v1/openapi.json"))).await;
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let access = operation["x-access"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-access"));
            if ["public", "oauth2-endpoint"].contains(&access) {
                continue;
            }
            let url = world.url(path);
            let what = format!("{method} {path} ({access})");

            // Nobody, and a token nobody was given: 401 with the challenge.
            let (status, challenge, body) = send(&method, &url, None).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthenticated")),
                "{what}: {body}"
            );
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{what}: WWW-Authenticate {challenge:?}"
            );
            let (status, challenge, body) = send(&method, &url, Some(&garbage)).await;
            assert_eq!(status, 401, "{what}: {body}");
            assert_eq!(body["error"]["code"], "invalid_token", "{what}: {body}");
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer error=\"invalid_token\""),
                "{what}"
            );

            // The same route with its path percent-encoded: refused the same.
            let (status, _, body) = send(&method, &world.encoded_url(path), None).await;
            assert_eq!(status, 401, "{what}, encoded: {body}");

            // The callers the class does not admit: (token, expected code).
            let refused: Vec<(&str, &str, &str)> = match access {
                "user" => vec![
                    ("a service", &admin, "forbidden"),
                    (
                        "a user's grant to an app",
                        &bobs_campaigns_grant,
                        "forbidden",
                    ),
                    ("a participant", &world.participant_token, "invalid_token"),
                ],
                "self-or-service" => vec![
                    ("another user", &world.bob, "forbidden"),
                    ("a user's grant to an app", &bobs_openid_grant, "forbidden"),
                    ("a client without the scope", &writer, "insufficient_scope"),
                ],
                "owner" if path.contains("{campaign_id}") => vec![
                    ("another owner", &world.bob, "forbidden"),
                    (
                        "another owner's grant to an app",
                        &bobs_campaigns_grant,
                        "forbidden",
                    ),
                    ("another owner's own client", &bobs_back_end, "forbidden"),
                    (
                        "a grant without the scope",
                        &bobs_openid_grant,
                        "insufficient_scope",
                    ),
                    ("a client without the scope", &writer, "insufficient_scope"),
                    ("a client acting for nobody", &ownerless, "forbidden"),
                ],
                "owner" => vec![
                    (
                        "a grant without the scope",
                        &bobs_openid_grant,
                        "insufficient_scope",
                    ),
                    ("a client without the scope", &writer, "insufficient_scope"),
                    ("a client acting for nobody", &ownerless, "forbidden"),
                ],
                "service" => vec![
                    ("a user", &world.ada, "forbidden"),
                    (
                        "a user's grant to an app",
                        &bobs_campaigns_grant,
                        "forbidden",
                    ),
                    (
                        "a client without the scope",
                        &ownerless,
                        "insufficient_scope",
                    ),
                ],
                "admin" => vec![
                    ("a user", &world.ada, "forbidden"),
                    (
                        "a user's grant to an app",
                        &bobs_campaigns_grant,
                        "forbidden",
                    ),
                    ("a service", &reader, "insufficient_scope"),
                ],
                "participant" => vec![
                    ("a user", &world.ada, "invalid_token"),
                    ("a service", &admin, "invalid_token"),
                ],
                other => panic!("{what}: unknown class {other}"),
            };
            for (who, token, code) in refused {
                // Another user's or owner's refusal holds for the encoded path too.
                if ["another user", "another owner"].contains(&who) {
                    let (status, _, body) =
                        send(&method, &world.encoded_url(path), Some(token)).await;
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (403, Some(code)),
                        "{what} by {who}, encoded: {body}"
                    );
                }
                let (status, challenge, body) = send(&method, &url, Some(token)).await;
                let expected = if code == "invalid_token" { 401 } else { 403 };
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (expected, Some(code)),
                    "{what} by {who}: {body}"
                );
                if code == "insufficient_scope" {
                    assert_eq!(
                        challenge.as_deref(),
                        Some("Bearer error=\"insufficient_scope\""),
                        "{what} by {who}"
                    );
                }
            }

            // The callers it admits get past the door (their `{}` bodies may still be refused).
            let admitted: Vec<&str> = match access {
                "self-or-service" => vec![&world.ada, &reader, &admin],
                "owner" => vec![&admin],
                "service" if path.contains("activity") => vec![&writer],
                "service" => vec![&bulk],
                "admin" => vec![&admin],
                "participant" => vec![&world.participant_token],
                _ => vec![],
            };
            for token in admitted {
                let (status, _, body) = send(&method, &url, Some(token)).await;
                assert!(
                    ![401, 403].contains(&status),
                    "{what} refused a caller it admits: {status} {body}"
                );
            }
            *checked.entry(access.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(
        checked.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "admin",
            "owner",
            "participant",
            "self-or-service",
            "service",
            "user"
        ],
        "every class was checked: {checked:?}\n{}",
        gateway.logs()
    );
    // Ada herself passes her own campaign's routes (the loop above ran them last with admins).
    for path in [
        "/api/v1/campaigns/{campaign_id}",
        "/api/v1/campaigns/{campaign_id}/signups",
        "/api/v1/campaigns/{campaign_id}/signups/{participant_id}",
    ] {
        let (status, _, body) = send("GET", &world.url(path), Some(&world.ada)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_answers_carry_nobody_elses_personal_data() {
    let stack = WaitlistStack::new().await;
    let (_gateway, api) = stack.start_gateway(&[]).await;
    let world = World::new(&api).await;
    let anyone = reqwest::Client::new();
    let campaign = format!("{api}/api/v1/campaigns/{}", world.campaign_id);

    // Anonymous: no activity log, no campaign creation, no participant by ID.
    for (method, url) in [
        (
            "GET",
            format!("{api}/api/v1/users/{}/activity-logs", world.ada_id),
        ),
        ("POST", format!("{api}/api/v1/campaigns")),
        ("GET", format!("{api}/api/v1/campaigns")),
        (
            "GET",
            format!("{campaign}/signups/{}", world.participant_id),
        ),
    ] {
        let (status, _, body) = send(method, &url, None).await;
        assert_eq!(status, 401, "{method} {url}: {body}");
    }

    // A second participant signs up with Carol's referral code: the answer says it counted,
    // and nothing about Carol.
    let (_, carol) = call(
        anyone
            .get(format!("{campaign}/me"))
            .bearer_auth(&world.participant_token),
    )
    .await;
    let code = carol["referral_code"].as_str().unwrap();
    let (status, dave) = call(
        anyone
            .post(format!("{campaign}/signups"))
            .json(&json!({"email": "dave@example.com", "referral_code": code})),
    )
    .await;
    assert_eq!(status, 201, "{dave}");
    assert_eq!(dave["referral"], json!({"counted": true}));

    // Every public answer, as text: neither Carol's ID nor her email, nor the owner's address
    // or webhook.
    let (_, public) = call(anyone.get(format!("{campaign}/public"))).await;
    let (_, board) = call(anyone.get(format!("{campaign}/leaderboard"))).await;
    assert_eq!(public["participant_count"], 2, "{public}");
    assert_eq!(board["entries"][0]["email"], "c***@example.com", "{board}");
    for answer in [&dave, &public, &board] {
        let text = answer.to_string();
        for secret in [
            world.participant_id.as_str(),
            "carol@example.com",
            "ada-team@example.com",
            "hooks.example.com",
            "whsec_",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Dave's token shows Dave, on this campaign only.
    let (status, own) = call(
        anyone
            .get(format!("{campaign}/me"))
            .bearer_auth(dave["participant_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!((status, &own["position"]), (200, &json!(2)), "{own}");
    let (status, _) = call(
        bearer_http(&world.ada)
            .post(format!("{api}/api/v1/campaigns"))
            .json(&json!({"name": "Other"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, list) = call(bearer_http(&world.ada).get(format!("{api}/api/v1/campaigns"))).await;
    let other = list["campaigns"][0]["id"].as_str().unwrap();
    let (status, _) = call(
        anyone
            .get(format!("{api}/api/v1/campaigns/{other}/me"))
            .bearer_auth(dave["participant_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        status, 401,
        "a participant token is good for its own campaign only"
    );

    // The owner sees it all; another user sees none of it.
    let (_, full) = call(bearer_http(&world.ada).get(&campaign)).await;
    assert_eq!(full["notify_email"], "ada-team@example.com");
    let (_, signups) = call(bearer_http(&world.ada).get(format!("{campaign}/signups"))).await;
    assert_eq!(
        signups["signups"][0]["email"], "carol@example.com",
        "{signups}"
    );
    let (status, bobs) = call(bearer_http(&world.bob).get(format!("{api}/api/v1/campaigns"))).await;
    assert_eq!((status, &bobs["campaigns"]), (200, &json!([])), "{bobs}");
    // The owner replaces the webhook secret (shown once, as at creation).
    let (status, rotated) =
        call(bearer_http(&world.ada).post(format!("{campaign}/webhook-secret"))).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(
        rotated["webhook_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    // Concurrent changes: each answer is the campaign as that change left it.
    let names: Vec<String> = (0..20).map(|i| format!("Launch {i}")).collect();
    let answers = futures::future::join_all(names.iter().map(|name| {
        call(
            bearer_http(&world.ada)
                .patch(&campaign)
                .json(&json!({ "name": name })),
        )
    }))
    .await;
    for (name, (status, answer)) in names.iter().zip(&answers) {
        assert_eq!((status, &answer["name"]), (&200, &json!(name)), "{answer}");
    }
    // The owner pauses the campaign: signups stop.
    let (status, paused) = call(
        bearer_http(&world.ada)
            .patch(&campaign)
            .json(&json!({"status": "paused", "notify_email": null})),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(
        (&paused["status"], &paused["notify_email"]),
        (&json!("paused"), &Value::Null)
    );
    let (status, refused) = call(
        anyone
            .post(format!("{campaign}/signups"))
            .json(&json!({"email": "erin@example.com"})),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("campaign_not_active"))
    );

    // Users cannot give their clients a service scope; a client learns nothing of another
    // client's tokens.
    let (status, refused) = call(
        bearer_http(&world.ada)
            .post(format!("{api}/api/v1/oauth2/clients"))
            .json(&json!({"name": "Sneaky", "client_type": "confidential",
                          "grant_types": ["client_credentials"], "scopes": ["activity:read"]})),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (422, Some("scopes[0]")),
        "{refused}"
    );
    let schema = stack.db.schema();
    let created = system_tests::platform_admin_json_lines(
        schema,
        &[
            "create-client",
            "--name",
            "resource server",
            "--scope",
            "campaigns:read",
        ],
        &[],
    )
    .await;
    let (_, someone_elses) = client_token(&api, schema, &["activity:read"]).await;
    let (status, answer) = call(
        anyone
            .post(format!("{api}/oauth2/introspect"))
            .basic_auth(
                created[0]["client_id"].as_str().unwrap(),
                created[0]["client_secret"].as_str(),
            )
            .form(&[("token", someone_elses.as_str())]),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"active": false})));

    // A platform admin reads the audit log over HTTP: the clients platform-admin made are in it.
    let (_, admin) = client_token(&api, schema, &["admin"]).await;
    let (status, log) =
        call(bearer_http(&admin).get(format!("{api}/api/v1/admin/oauth2/audit-log"))).await;
    assert_eq!(status, 200, "{log}");
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_type"] == "client_created" && e["details"]["by"] == "platform-admin"),
        "{log}"
    );
}

/// The `RateLimit` field's remaining count.
fn remaining(headers: &reqwest::header::HeaderMap) -> Option<u32> {
    let value = headers.get("ratelimit")?.to_str().ok()?;
    value
        .split(';')
        .find_map(|part| part.strip_prefix("r="))
        .and_then(|r| r.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_hold_across_replicas_and_recover() {
    let stack = WaitlistStack::new().await;
    let limits = [
        ("RATE_LIMIT_SIGN_IN", "3/3s"),
        ("RATE_LIMIT_REGISTRATION", "2/1m"),
    ];
    let (first, api) = stack.start_gateway(&limits).await;
    let (_second, other) = stack.start_gateway(&limits).await;
    let http = reqwest::Client::new();
    // Each attempt names another identifier: only the per-address limit is at work.
    let attempt = |base: &str, ip: &str| {
        let email = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());
        http.post(format!("{base}/api/v1/auth/sign-in"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": email, "password": "wrong password"}))
            .send()
    };
    // Three attempts from one address, on two replicas: the quota is shared.
    let mut seen = Vec::new();
    for base in [&api, &other] {
        let answer = attempt(base, "203.0.113.7").await.unwrap();
        assert_eq!(answer.status(), 401);
        assert_eq!(
            answer.headers()["ratelimit-policy"],
            "\"sign_in\";q=3;w=3",
            "the policy is announced"
        );
        seen.push(remaining(answer.headers()));
    }
    let third = attempt(&api, "203.0.113.7").await.unwrap();
    seen.push(remaining(third.headers()));
    assert_eq!(seen, [Some(2), Some(1), Some(0)]);
    let refused = attempt(&other, "203.0.113.7").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(remaining(refused.headers()), Some(0));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // Another address is counted on its own.
    let elsewhere = attempt(&api, "203.0.113.8").await.unwrap();
    assert_eq!(elsewhere.status(), 401);
    // When the window ends, the address may try again.
    wait_until(
        "the window to end",
        Duration::from_secs(30),
        || first.logs(),
        || async { attempt(&api, "203.0.113.7").await.unwrap().status() == 401 },
    )
    .await;
    // One identifier from many addresses: counted per identifier too.
    let mut statuses = Vec::new();
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let answer = http
            .post(format!("{api}/api/v1/auth/register-sync"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": "eve@example.com", "password": PASSWORD, "consent": true}))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(
        statuses,
        [201, 409, 429],
        "one identifier tried from three addresses: the third try is refused"
    );
    // A sign-in lockout (failures per identifier, from many addresses) is not this policy's
    // count: its 429 carries Retry-After and no RateLimit fields of the address.
    let mut last = None;
    for i in 1..=6 {
        last = Some(
            http.post(format!("{api}/api/v1/auth/sign-in"))
                .header("X-Forwarded-For", format!("192.0.2.{}", 100 + i))
                .json(&json!({"email": "locked@example.com", "password": "wrong password"}))
                .send()
                .await
                .unwrap(),
        );
    }
    let locked = last.unwrap();
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().get("retry-after").is_some());
    assert!(
        locked.headers().get("ratelimit").is_none(),
        "{:?}",
        locked.headers()
    );
    // Routes without a limit carry no RateLimit fields; public writes with one do.
    let answer = http
        .get(format!("{api}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert!(answer.headers().get("ratelimit").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rate_limited_route_answers_429_with_its_fields() {
    let stack = WaitlistStack::new().await;
    let one_per_minute: Vec<(String, &str)> = [
        "REGISTRATION",
        "SIGNUP",
        "VERIFICATION",
        "SIGN_IN",
        "RECOVERY",
        "TOKEN",
        "INTROSPECTION",
    ]
    .iter()
    .map(|policy| (format!("RATE_LIMIT_{policy}"), "1/1m"))
    .collect();
    let env: Vec<(&str, &str)> = one_per_minute
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let (gateway, api) = stack.start_gateway(&env).await;
    // IDs nobody has: the first request is refused by its handler (404, 422), and counted.
    let url = |path: &str| {
        let id = uuid::Uuid::now_v7().to_string();
        format!(
            "{api}{}",
            path.replace("{campaign_id}", &id)
                .replace("{provider}", "nowhere")
        )
    };
    let (_, document) =
        call(reqwest::Client::new().get(format!("{api}/api/v1/openapi.json"))).await;
    let http = reqwest::Client::new();
    let mut limited = Vec::new();
    for (n, (path, item)) in document["paths"].as_object().unwrap().iter().enumerate() {
        for (method, operation) in item.as_object().unwrap() {
            if !operation["responses"]["429"]["headers"]["RateLimit-Policy"].is_object() {
                continue;
            }
            let method = method.to_ascii_uppercase();
            // An address of its own for each route: the routes of one policy share a quota.
            let ip = format!("198.51.100.{}", n % 250 + 1);
            // The second time with the last segment percent-encoded: the same route, counted the
            // same.
            let send = |encoded: bool| {
                let mut url = url(path);
                if encoded {
                    let at = url.rfind('/').unwrap() + 1;
                    url = format!(
                        "{}%{:02X}{}",
                        &url[..at],
                        url.as_bytes()[at],
                        &url[at + 1..]
                    );
                }
                let mut request = http
                    .request(method.parse().unwrap(), url)
                    .header("X-Forwarded-For", &ip);
                if method == "POST" {
                    request = request.json(&json!({}));
                }
                request.send()
            };
            let first = send(false).await.unwrap();
            assert_ne!(first.status(), 429, "{method} {path}: the first request");
            assert!(
                first.headers().get("ratelimit").is_some(),
                "{method} {path}: no RateLimit field\n{}",
                gateway.logs()
            );
            let second = send(true).await.unwrap();
            assert_eq!(second.status(), 429, "{method} {path}: the second request");
            assert!(
                second.headers().get("retry-after").is_some(),
                "{method} {path}"
            );
            assert!(
                second.headers()["ratelimit-policy"]
                    .to_str()
                    .unwrap()
                    .ends_with(";q=1;w=60"),
                "{method} {path}"
            );
            // In the endpoint's own error shape: RFC 6749's for the OAuth2 endpoints.
            let body: Value = second.json().await.unwrap();
            if path.starts_with("/oauth2/") {
                assert_eq!(body["error"], "temporarily_unavailable", "{path}: {body}");
                assert!(body["error_description"].is_string(), "{path}: {body}");
            } else {
                assert_eq!(body["error"]["code"], "too_many_requests", "{path}: {body}");
            }
            limited.push(format!("{method} {path}"));
        }
    }
    assert!(limited.len() >= 12, "{limited:?}");
}
