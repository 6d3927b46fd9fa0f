//! Accounts end to end: the gateway, the registration-batcher, the email-worker and the
//! activity-log-processor as processes, on real PostgreSQL and the broker, with an SMTP server
//! started here and the text messages read from their folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use events::rdkafka::Message as _;
use events::testing::{TestTopic, read_until};
use serde_json::{Value, json};
use service_runtime::testing::ServiceProcess;
use system_tests::{ActivityStack, SmtpSink, WaitlistStack, call, owned, spawn, wait_until};

const PATIENCE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "correct horse battery";

/// Everything one test runs.
struct Accounts {
    waitlist: WaitlistStack,
    activity: ActivityStack,
    /// Kept for the test's life: the gateway queues registrations here.
    _registrations: TestTopic,
    auth_events: TestTopic,
    smtp: SmtpSink,
    texts: PathBuf,
    gateway: ServiceProcess,
    api: String,
    _batcher: ServiceProcess,
    email_worker: ServiceProcess,
    http: reqwest::Client,
}

impl Accounts {
    async fn start(gateway_env: &[(&str, &str)]) -> Self {
        let waitlist = WaitlistStack::new().await;
        let activity = ActivityStack::new().await;
        let registrations = TestTopic::create("user.registration", 3).await;
        let auth_events = TestTopic::create("auth-events", 1).await;
        let smtp = SmtpSink::start().await;
        let texts = std::env::temp_dir().join(format!("sms-{}", uuid::Uuid::new_v4()));
        let mut env = vec![
            ("REGISTRATION_TOPIC", registrations.name.as_str()),
            ("AUTH_EVENTS_TOPIC", auth_events.name.as_str()),
            ("ACTIVITY_TOPIC", activity.topic.name.as_str()),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
        ];
        env.extend_from_slice(gateway_env);
        let (gateway, api) = waitlist.start_gateway(&env).await;
        let batcher_group = format!("batcher-{}", waitlist.suffix);
        let mut batcher = spawn(
            "registration-batcher",
            &owned(&[
                ("DATABASE_SCHEMA", waitlist.db.schema()),
                ("KAFKA_TOPIC", &registrations.name),
                ("KAFKA_CONSUMER_GROUP", &batcher_group),
                ("USER_EVENTS_TOPIC", &waitlist.account_events.name),
                ("KAFKA_DLQ_TOPIC", &waitlist.dlq.name),
                ("SNOWFLAKE_LEASE_TTL", "10s"),
            ]),
        );
        batcher.wait_ready().await;
        let smtp_url = smtp.url();
        let texts_dir = texts.to_string_lossy().into_owned();
        let email_worker = waitlist
            .start_worker(
                "email-worker",
                "email-workers",
                &[("SMTP_URL", &smtp_url), ("SMS_OUTBOX_DIR", &texts_dir)],
            )
            .await;
        Self {
            waitlist,
            activity,
            _registrations: registrations,
            auth_events,
            smtp,
            texts,
            gateway,
            api,
            _batcher: batcher,
            email_worker,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        call(self.http.post(self.url(path)).json(&body)).await
    }

    async fn post_as(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        call(
            self.http
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    async fn me(&self, token: &str) -> (u16, Value) {
        call(self.http.get(self.url("/api/v1/me")).bearer_auth(token)).await
    }

    async fn sign_in(&self, email: &str, password: &str) -> (u16, Value) {
        self.post(
            "/api/v1/auth/sign-in",
            json!({"email": email, "password": password}),
        )
        .await
    }

    fn logs(&self) -> String {
        format!(
            "gateway:\n{}\nemail-worker:\n{}",
            self.gateway.logs(),
            self.email_worker.logs()
        )
    }

    /// The `count`-th email to `to` whose subject starts with `subject`, once it is there.
    async fn mail(&self, to: &str, subject: &str, count: usize) -> String {
        wait_until(
            &format!("email {count} to {to}: {subject}"),
            PATIENCE,
            || self.logs(),
            || async { mails(&self.smtp, to, subject).len() >= count },
        )
        .await;
        mails(&self.smtp, to, subject).remove(count - 1)
    }

    /// The token of the link in that email.
    async fn mailed_token(&self, to: &str, subject: &str, count: usize) -> String {
        token_in(&self.mail(to, subject, count).await)
    }

    /// Runs `platform-admin purge-accounts` (grace period 30 days) on the test's schema.
    async fn purge(&self) -> String {
        let output = tokio::process::Command::new(service_runtime::testing::workspace_binary(
            "platform-admin",
        ))
        .args([
            "purge-accounts",
            "--grace-period-days",
            "30",
            "--batch-size",
            "2",
        ])
        .envs(service_runtime::testing::base_env())
        .env("DATABASE_SCHEMA", self.waitlist.db.schema())
        .output()
        .await
        .expect("platform-admin runs");
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{logs}");
        logs
    }

    async fn count(&self, query: &str) -> i64 {
        self.waitlist.count(query).await
    }
}

/// The emails to `to` whose subject starts with `subject`, in order, their bodies decoded
/// from quoted-printable (which the mailer picks for lines as long as a link with a token).
fn mails(smtp: &SmtpSink, to: &str, subject: &str) -> Vec<String> {
    smtp.messages()
        .into_iter()
        .map(|raw| decode_quoted_printable(&raw))
        .filter(|m| m.lines().any(|l| l == format!("To: {to}")))
        .filter(|m| {
            m.lines().any(|l| {
                l.strip_prefix("Subject: ")
                    .is_some_and(|s| s.starts_with(subject))
            })
        })
        .collect()
}

/// RFC 2045 section 6.7: `=` at the end of a line joins it to the next, `=XX` is a byte.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The 64-hex-digit token of a link in an email.
fn token_in(message: &str) -> String {
    let start = message.find("token=").expect("a link with a token") + "token=".len();
    let token: String = message[start..].chars().take(64).collect();
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{message}");
    token
}

/// The text messages written to `dir` for `to`.
fn texts_to(dir: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|t| t.starts_with(&format!("To: {to}\n")))
        .collect()
}

fn access(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn refresh(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// register → verify → sign in → refresh → reuse of a spent refresh token (the session ends) →
/// sign-out → password reset (old tokens refused) → password and email change → deletion →
/// restore → purge after the grace period; the events on `user-events` and `auth-events`.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_lives_through_every_flow() {
    let stack = Accounts::start(&[("SIGN_IN_REQUIRES_VERIFIED", "true")]).await;
    let email = "ada@example.com";

    // Register through the queue; the batcher writes the user.
    let (status, accepted) = stack
        .post(
            "/api/v1/auth/register-async",
            json!({"email": email, "password": PASSWORD, "consent": true}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    let mut user_id = String::new();
    wait_until(
        "the registration",
        PATIENCE,
        || stack.logs(),
        || async {
            let (_, status) = call(
                stack
                    .http
                    .get(stack.url(&format!("/api/v1/auth/registrations/{request_id}"))),
            )
            .await;
            status["status"] == "completed"
        },
    )
    .await;
    let (_, status) = call(
        stack
            .http
            .get(stack.url(&format!("/api/v1/auth/registrations/{request_id}"))),
    )
    .await;
    user_id.push_str(status["user_id"].as_str().unwrap());

    // Not verified yet: the right password gets its own refusal, a wrong one the usual.
    let (status, body) = stack.sign_in(email, PASSWORD).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("identifier_not_verified"))
    );
    let (status, wrong) = stack.sign_in(email, "not the password").await;
    let (status_unknown, unknown) = stack.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!((status, status_unknown), (401, 401));
    assert_eq!(
        wrong, unknown,
        "an unknown address reads as a wrong password"
    );

    // The verification email, from the user.registered the batcher published.
    let token = stack
        .mailed_token(email, "Confirm your email address", 1)
        .await;
    let (status, verified) = stack
        .post("/api/v1/auth/verify-email", json!({"token": token}))
        .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified, json!({"user_id": user_id, "verified": "email"}));
    let (status, again) = stack
        .post("/api/v1/auth/verify-email", json!({"token": token}))
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (400, Some("invalid_or_expired_token"))
    );

    // Sign in, read the profile, refresh.
    let (status, first) = stack.sign_in(email, PASSWORD).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let (status, me) = stack.me(&access(&first)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], user_id.as_str());
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["phone_verified"], false);
    let (status, second) = stack
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["session_id"], first["session_id"]);
    assert_ne!(refresh(&second), refresh(&first));
    assert_eq!(stack.me(&access(&second)).await.0, 200);

    // The spent refresh token comes back: the whole session ends, and it is a security event.
    let (status, reuse) = stack
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await;
    assert_eq!(
        (status, reuse["error"]["code"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, refused) = stack.me(&access(&second)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, _) = stack
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh(&second)}),
        )
        .await;
    assert_eq!(
        status, 400,
        "the newest refresh token of the session is dead too"
    );
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM oauth2_audit_logs WHERE event_type = 'refresh_token_reuse'")
            .await,
        1
    );

    // Sign out: the token is refused on the next request.
    let (_, third) = stack.sign_in(email, PASSWORD).await;
    let (status, _) = stack
        .post_as(&access(&third), "/api/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.me(&access(&third)).await.0, 401);
    let (status, missing) = call(stack.http.get(stack.url("/api/v1/me"))).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // Password reset from the email: every old token is refused afterwards, and the user's own
    // back-end client (one an intruder with the password could have made) needs a new secret.
    let (_, laptop) = stack.sign_in(email, PASSWORD).await;
    let (status, back_end) = stack
        .post_as(
            &access(&laptop),
            "/api/v1/oauth2/clients",
            json!({"name": "Back end", "client_type": "confidential",
                   "grant_types": ["client_credentials"], "scopes": ["campaigns:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{back_end}");
    let client_token = || async {
        call(
            stack
                .http
                .post(stack.url("/oauth2/token"))
                .basic_auth(
                    back_end["client_id"].as_str().unwrap(),
                    back_end["client_secret"].as_str(),
                )
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "campaigns:read"),
                ]),
        )
        .await
    };
    let (status, before) = client_token().await;
    assert_eq!(status, 200, "{before}");
    let back_end_token = before["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        stack
            .http
            .get(stack.url("/api/v1/campaigns"))
            .bearer_auth(&back_end_token),
    )
    .await;
    assert_eq!(status, 200, "the client acts for its owner");
    let (_, phone) = stack.sign_in(email, PASSWORD).await;
    let (status, _) = stack
        .post("/api/v1/auth/password-reset", json!({"email": email}))
        .await;
    assert_eq!(status, 202);
    let (status, nobody) = stack
        .post(
            "/api/v1/auth/password-reset",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(
        status, 202,
        "the same answer for an address nobody has: {nobody}"
    );
    let reset = stack.mailed_token(email, "Reset your password", 1).await;
    let (status, reused) = stack
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (422, Some("password_reused"))
    );
    let new_password = "a brand new passphrase";
    let (status, body) = stack
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": reset, "new_password": new_password}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for old in [&laptop, &phone] {
        assert_eq!(stack.me(&access(old)).await.0, 401);
        let (status, _) = stack
            .post(
                "/api/v1/auth/refresh",
                json!({"refresh_token": refresh(old)}),
            )
            .await;
        assert_eq!(status, 400);
    }
    assert_eq!(stack.sign_in(email, PASSWORD).await.0, 401);
    let (status, _) = call(
        stack
            .http
            .get(stack.url("/api/v1/campaigns"))
            .bearer_auth(&back_end_token),
    )
    .await;
    assert_eq!(status, 401, "the client's token went with the reset");
    let (status, refused) = client_token().await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_client")),
        "its secret too"
    );
    let (status, current) = stack.sign_in(email, new_password).await;
    assert_eq!(status, 200);
    let notice = stack.mail(email, "Your password was changed", 1).await;
    assert!(notice.contains("(reset)"), "{notice}");

    // Change the password while signed in (the current one is required), then the email.
    let token = access(&current);
    let (status, wrong) = stack
        .post_as(
            &token,
            "/api/v1/me/password",
            json!({"current_password": "guess", "new_password": "yet another passphrase"}),
        )
        .await;
    assert_eq!(
        (
            status,
            wrong["error"]["code"].as_str(),
            wrong["error"]["field"].as_str()
        ),
        (403, Some("wrong_password"), Some("current_password"))
    );
    let (status, _) = stack
        .post_as(
            &token,
            "/api/v1/me/password",
            json!({"current_password": new_password, "new_password": "yet another passphrase"}),
        )
        .await;
    assert_eq!(status, 200);
    let password = "yet another passphrase";
    let new_email = "ada.lovelace@example.com";
    let (status, pending) = call(
        stack
            .http
            .put(stack.url("/api/v1/me/email"))
            .bearer_auth(&token)
            .json(&json!({"email": new_email, "password": password})),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["pending_email"], new_email);
    let (_, me) = stack.me(&token).await;
    assert_eq!(
        me["email"], email,
        "nothing changes before the new address confirms"
    );
    let heads_up = stack
        .mail(email, "A change of your account's email address", 1)
        .await;
    assert!(heads_up.contains(new_email), "{heads_up}");
    let token_for_new = stack
        .mailed_token(new_email, "Confirm the new email address", 1)
        .await;
    let (status, body) = stack
        .post("/api/v1/auth/verify-email", json!({"token": token_for_new}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = stack.me(&token).await;
    assert_eq!(
        (me["email"].as_str(), me["email_verified"].as_bool()),
        (Some(new_email), Some(true))
    );
    let notice = stack
        .mail(email, "Your account's email address was changed", 1)
        .await;
    assert!(notice.contains(new_email), "{notice}");

    // A change asked for with a stolen session dies with the sessions: after a sign-out
    // everywhere its link changes nothing.
    let thief = "mallory@example.com";
    let (status, _) = call(
        stack
            .http
            .put(stack.url("/api/v1/me/email"))
            .bearer_auth(&token)
            .json(&json!({"email": thief, "password": password})),
    )
    .await;
    assert_eq!(status, 202);
    let stolen = stack
        .mailed_token(thief, "Confirm the new email address", 1)
        .await;
    let (status, _) = stack
        .post_as(&token, "/api/v1/auth/sign-out-everywhere", json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = stack
        .post("/api/v1/auth/verify-email", json!({"token": stolen}))
        .await;
    assert_eq!(status, 400);
    let (status, again) = stack.sign_in(new_email, password).await;
    assert_eq!(status, 200, "{again}");
    let token = access(&again);

    // Delete: sign-in is refused; the mailed link restores; the purge spares it within the
    // grace period and removes it once the grace period (moved into the past) is over.
    let (status, deletion) = stack
        .post_as(&token, "/api/v1/me/deletion", json!({"password": password}))
        .await;
    assert_eq!(status, 202, "{deletion}");
    assert_eq!(stack.me(&token).await.0, 401);
    let (status, deleted) = stack.sign_in(new_email, password).await;
    assert_eq!(
        (status, deleted["error"]["code"].as_str()),
        (403, Some("account_deleted"))
    );
    assert_eq!(stack.sign_in(new_email, "wrong password").await.0, 401);
    let restore = stack
        .mailed_token(new_email, "Your account was deleted", 1)
        .await;
    let (status, body) = stack
        .post("/api/v1/auth/restore", json!({"token": restore}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, again) = stack.sign_in(new_email, password).await;
    assert_eq!(status, 200, "{again}");
    let (status, _) = stack
        .post_as(
            &access(&again),
            "/api/v1/me/deletion",
            json!({"password": password}),
        )
        .await;
    assert_eq!(status, 202);
    let live = format!("SELECT count(*) AS n FROM users WHERE id = {user_id}");
    stack.purge().await;
    assert_eq!(stack.count(&live).await, 1, "within the grace period");
    {
        use diesel_async::RunQueryDsl as _;
        let mut conn = stack.waitlist.db.database().connection().await.unwrap();
        diesel::sql_query(format!(
            "UPDATE users SET deleted_at = deleted_at - interval '31 days',
                              status_changed_at = status_changed_at - interval '31 days'
             WHERE id = {user_id}"
        ))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    stack.purge().await;
    assert_eq!(stack.count(&live).await, 0, "purged after the grace period");
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) AS n FROM user_sessions WHERE user_id = {user_id}"
            ))
            .await,
        0
    );

    // The events, in the documented shapes.
    let user_events = read_until(&stack.waitlist.account_events.name, |messages| {
        let types: Vec<String> = messages.iter().map(event_type).collect();
        [
            "user.registered",
            "user.logged_in",
            "user.logged_out",
            "user.password_reset_requested",
            "user.password_changed",
            "user.email_change_requested",
            "user.identifier_changed",
            "user.deleted",
        ]
        .iter()
        .all(|t| types.iter().any(|seen| seen == t))
    })
    .await;
    let logged_in = user_events
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap())
        .find(|e| e["type"] == "user.logged_in")
        .unwrap();
    assert_eq!(logged_in["data"]["user_id"], user_id.as_str());
    assert_eq!(logged_in["data"]["email"], email);
    assert_eq!(logged_in["data"]["login_method"], "password");
    assert!(logged_in["data"]["session_id"].is_string());
    assert!(logged_in["data"]["login_time"].is_string());
    assert_eq!(logged_in["version"], "1.0");
    for message in &user_events {
        assert_eq!(
            message.key(),
            Some(user_id.as_bytes()),
            "user events are keyed by user"
        );
    }
    let refreshed = read_until(&stack.auth_events.name, |m| !m.is_empty()).await;
    let refreshed: Value = serde_json::from_slice(refreshed[0].payload().unwrap()).unwrap();
    assert_eq!(refreshed["type"], "user.token_refreshed");
    assert_eq!(refreshed["data"]["user_id"], user_id.as_str());
    assert_eq!(refreshed["data"]["session_id"], first["session_id"]);
    // No secret on any topic.
    for message in &user_events {
        let text = String::from_utf8_lossy(message.payload().unwrap());
        for secret in [&token, &reset, &restore] {
            assert!(!text.contains(secret.as_str()));
        }
    }
}

fn event_type(message: &events::rdkafka::message::OwnedMessage) -> String {
    serde_json::from_slice::<Value>(message.payload().unwrap_or_default())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// A phone registration gets a six-digit code in the text folder; a wrong code is refused and
/// counted, the right one verifies, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_is_verified_with_the_texted_code() {
    let stack = Accounts::start(&[("PHONE_CODE_MAX_FAILURES", "3")]).await;
    let phone = "+14155550123";
    let (status, created) = stack
        .post(
            "/api/v1/auth/register-sync",
            json!({"phone": phone, "password": PASSWORD, "consent": true}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    wait_until(
        "the text message",
        PATIENCE,
        || stack.logs(),
        || async { !texts_to(&stack.texts, phone).is_empty() },
    )
    .await;
    let text = texts_to(&stack.texts, phone).remove(0);
    let code: String = text
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .expect("a six-digit code")
        .to_owned();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (status, body) = stack
        .post(
            "/api/v1/auth/verify-phone",
            json!({"phone": phone, "code": wrong}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_or_expired_token"))
    );
    let (status, body) = stack
        .post(
            "/api/v1/auth/verify-phone",
            json!({"phone": phone, "code": code}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified"], "phone");
    let (status, _) = stack
        .post(
            "/api/v1/auth/verify-phone",
            json!({"phone": phone, "code": code}),
        )
        .await;
    assert_eq!(status, 400, "single use");

    let (status, tokens) = stack
        .post(
            "/api/v1/auth/sign-in",
            json!({"phone": phone, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, me) = stack.me(&access(&tokens)).await;
    assert_eq!(me["phone_verified"], true);

    // Three wrong codes for a number lock it for the window; so does asking too often.
    let other = "+14155550124";
    for _ in 0..3 {
        stack
            .post(
                "/api/v1/auth/verify-phone",
                json!({"phone": other, "code": "123456"}),
            )
            .await;
    }
    let (status, locked) = stack
        .post(
            "/api/v1/auth/verify-phone",
            json!({"phone": other, "code": "123456"}),
        )
        .await;
    assert_eq!(
        (status, locked["error"]["code"].as_str()),
        (429, Some("too_many_requests"))
    );
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(
            stack
                .post("/api/v1/auth/resend-verification", json!({"phone": other}))
                .await
                .0,
        );
    }
    assert_eq!(answers, [202, 202, 202, 429]);

    // Changing the number texts the new one and the old one: a signed-in account gets three
    // changes per window, whatever numbers it picks.
    let mut changes = Vec::new();
    for n in 0..4 {
        let (status, _) = call(
            stack
                .http
                .put(stack.url("/api/v1/me/phone"))
                .bearer_auth(access(&tokens))
                .json(&json!({"phone": format!("+1415555020{n}"), "password": PASSWORD})),
        )
        .await;
        changes.push(status);
    }
    assert_eq!(changes, [200, 200, 200, 429]);
}

/// A concurrent burst of failed sign-ins from one address: 401 up to the limit, 429 with
/// `Retry-After` past it (even for the right password), and the activity pipeline's
/// `repeated_failed_logins` alert fires on the `login_failed` events the gateway published.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_failed_sign_ins_is_throttled_and_raises_the_alert() {
    let stack = Accounts::start(&[("SIGN_IN_MAX_FAILURES", "5")]).await;
    let _processor = stack
        .activity
        .start_processor_with(&[("ANALYTICS_FAILED_LOGINS", "5")])
        .await;
    let email = "grace@example.com";
    let (status, _) = stack
        .post(
            "/api/v1/auth/register-sync",
            json!({"email": email, "password": PASSWORD, "consent": true}),
        )
        .await;
    assert_eq!(status, 201);
    let attacker = "198.51.100.23";
    let attempt = |password: &'static str| {
        stack
            .http
            .post(stack.url("/api/v1/auth/sign-in"))
            .header("X-Forwarded-For", attacker)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // A concurrent burst: each attempt is counted before its password is checked, so exactly
    // the limit's worth are checked, whatever the timing.
    let burst = futures::future::join_all((0..12).map(|_| attempt("wrong password"))).await;
    let mut statuses: Vec<u16> = burst
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [[401; 5].as_slice(), [429; 7].as_slice()].concat()
    );
    for password in ["wrong password", PASSWORD] {
        let refused = attempt(password).await.unwrap();
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
    }
    // Another identifier from elsewhere is not affected.
    let (status, _) = stack.sign_in("someone@example.com", PASSWORD).await;
    assert_eq!(status, 401);

    let alerts = read_until(&stack.activity.analytics.name, |messages| {
        messages.iter().any(|m| {
            serde_json::from_slice::<Value>(m.payload().unwrap_or_default())
                .is_ok_and(|a| a["rule"] == "repeated_failed_logins")
        })
    })
    .await;
    let alert = alerts
        .iter()
        .find(|m| m.key() == Some(attacker.as_bytes()))
        .expect("the alert is about the attacker's address");
    let alert: Value = serde_json::from_slice(alert.payload().unwrap()).unwrap();
    assert!(alert["count"].as_i64().unwrap() >= 5, "{alert}");
    let stored = system_tests::count(
        &stack.activity.db,
        &format!(
            "SELECT count(*) AS n FROM activity_logs WHERE activity_type = 'login_failed'
             AND metadata->>'ipAddress' = '{attacker}'"
        ),
    )
    .await;
    assert!(stored >= 5, "{stored} login_failed events stored");
}
