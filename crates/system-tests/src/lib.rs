#![doc = include_str!("../README.md")]

mod activity;
pub mod bench;
mod kafka_cluster;
mod otlp;
mod waitlist;

pub use activity::{ActivityStack, activity};
pub use kafka_cluster::{ClusterSpec, KafkaCluster};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use waitlist::{SmtpSink, WaitlistStack, WebhookCall, WebhookReceiver};

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use domain::RegistrationMessage;
use events::KafkaConfig;
use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::rdkafka::producer::{FutureProducer, FutureRecord};
use events::testing::{TestTopic, test_kafka_config, unique_name};
use repo::testing::TestDatabase;
use service_runtime::testing::{ServiceProcess, free_local_addr, workspace_binary};
use uuid::Uuid;

/// An Argon2id hash in PHC form (of "password123" with cheap parameters), for messages produced
/// straight onto the topic: the batcher stores hashes, it does not compute them.
pub const SOME_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$4fC2yb5Mo5sBQeKCOr0JSA";

/// The registration services' world for one test: a schema, the three topics, and groups of its
/// own.
#[derive(Debug)]
pub struct RegistrationStack {
    pub db: TestDatabase,
    /// Plays `user.registration`.
    pub topic: TestTopic,
    /// Plays `user.registration.dlq`.
    pub retry_topic: TestTopic,
    /// Plays `user-events`.
    pub events_topic: TestTopic,
    /// Where the retrier's own dead letters go.
    pub parking_topic: TestTopic,
    /// The cluster the topics are on, as the test reaches it.
    pub kafka: KafkaConfig,
    suffix: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl RegistrationStack {
    /// On the test broker, one replica per partition.
    pub async fn new() -> Self {
        Self::on(&test_kafka_config(), 1).await
    }

    /// On the cluster `kafka` reaches (services get its brokers as `KAFKA_BROKERS`), with
    /// `replication` replicas per partition.
    pub async fn on(kafka: &KafkaConfig, replication: i32) -> Self {
        Self {
            db: TestDatabase::new().await,
            topic: TestTopic::create_on(kafka, "user.registration", 6, replication).await,
            retry_topic: TestTopic::create_on(kafka, "user.registration.dlq", 3, replication).await,
            events_topic: TestTopic::create_on(kafka, "user-events", 1, replication).await,
            parking_topic: TestTopic::create_on(kafka, "events-dlq", 1, replication).await,
            kafka: kafka.clone(),
            suffix: unique_name("g"),
        }
    }

    fn shared_env(&self) -> Vec<(String, String)> {
        vec![
            ("KAFKA_BROKERS".into(), self.kafka.brokers.join(",")),
            ("DATABASE_SCHEMA".into(), self.db.schema().to_owned()),
            (
                "REGISTRATION_DLQ_TOPIC".into(),
                self.retry_topic.name.clone(),
            ),
            ("USER_EVENTS_TOPIC".into(), self.events_topic.name.clone()),
            ("KAFKA_DLQ_TOPIC".into(), self.parking_topic.name.clone()),
            // Short lease checks, so a killed process's node ID frees up soon.
            ("SNOWFLAKE_LEASE_TTL".into(), "10s".into()),
        ]
    }

    /// Starts the gateway (cheap Argon2 parameters unless `extra` says otherwise); returns it
    /// and the API's base URL.
    pub async fn start_gateway(&self, extra: &[(&str, &str)]) -> (ServiceProcess, String) {
        let mut env = self.shared_env();
        env.extend(owned(&[
            ("REGISTRATION_TOPIC", &self.topic.name),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
        ]));
        env.extend(owned(extra));
        start_gateway(env).await
    }

    /// Starts the registration-batcher and waits until it is ready.
    pub async fn start_batcher(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut batcher = self.spawn_batcher(extra);
        batcher.wait_ready().await;
        batcher
    }

    /// Starts the registration-batcher without waiting for it to be ready.
    pub fn spawn_batcher(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = self.shared_env();
        env.extend(owned(&[
            ("KAFKA_TOPIC", &self.topic.name),
            ("KAFKA_CONSUMER_GROUP", &format!("batcher-{}", self.suffix)),
        ]));
        env.extend(owned(extra));
        spawn("registration-batcher", &env)
    }

    pub async fn start_retrier(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = self.shared_env();
        env.extend(owned(&[
            ("KAFKA_TOPIC", &self.retry_topic.name),
            ("KAFKA_CONSUMER_GROUP", &format!("retrier-{}", self.suffix)),
            ("RETRY_DELAY", "1s"),
        ]));
        env.extend(owned(extra));
        let mut retrier = spawn("dlq-retrier", &env);
        retrier.wait_ready().await;
        retrier
    }

    /// Puts registration messages on the registration topic, keyed by request ID, as the
    /// gateway does.
    pub async fn produce(&self, messages: &[RegistrationMessage]) {
        self.produce_to(&self.topic, messages).await;
    }

    /// Puts registration messages on `topic` (the retry queue, say), keyed by request ID.
    pub async fn produce_to(&self, topic: &TestTopic, messages: &[RegistrationMessage]) {
        let producer = producer(&topic.kafka);
        let sends = messages.iter().map(|message| {
            let key = message.request_id.to_string();
            let payload = serde_json::to_vec(message).expect("serialize");
            let producer = &producer;
            let topic = &topic.name;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("produce a registration");
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Puts any bytes on the registration topic.
    pub async fn produce_raw(&self, key: &str, payload: &[u8]) {
        producer(&self.topic.kafka)
            .send(
                FutureRecord::to(&self.topic.name).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .expect("produce");
    }

    /// Runs a `SELECT count(*) AS n …` on the test schema.
    pub async fn count(&self, query: &str) -> i64 {
        count(&self.db, query).await
    }

    /// Waits until `n` requests have a final outcome (`completed` or `failed`). Panics after
    /// `patience` without progress (a hang guard, not a performance limit).
    pub async fn wait_until_finished(
        &self,
        n: i64,
        patience: Duration,
        services: &[&ServiceProcess],
    ) {
        let mut last = -1;
        let mut last_progress = Instant::now();
        loop {
            let finished = self
                .count(
                    "SELECT count(*) AS n FROM registration_requests WHERE status <> 'processing'",
                )
                .await;
            if finished >= n {
                return;
            }
            if finished != last {
                last = finished;
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > patience {
                let logs: Vec<String> = services.iter().map(|s| s.logs()).collect();
                panic!(
                    "only {finished} of {n} registrations finished; no progress for {patience:?}\nlogs:\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs a `SELECT count(*) AS n …` on a test schema.
pub async fn count(db: &TestDatabase, query: &str) -> i64 {
    let mut conn = db.database().connection().await.expect("connection");
    let counts: Vec<Count> = diesel::sql_query(query)
        .load(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    counts[0].n
}

/// The text value of a message's header `name`.
pub fn header<'m>(message: &'m OwnedMessage, name: &str) -> Option<&'m str> {
    message
        .headers()
        .and_then(|headers| events::headers::header_str(headers, name))
}

/// A plain connection to a test schema, for the benchmarks' `COPY` baselines.
#[derive(Debug)]
pub struct CopyClient(tokio_postgres::Client);

impl CopyClient {
    pub async fn connect(db: &TestDatabase) -> Self {
        let url = repo::testing::test_database_url();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect for COPY");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path = \"{}\"", db.schema()))
            .await
            .expect("search_path");
        Self(client)
    }

    /// The plain client, for statements of the benchmarks' own.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.0
    }

    /// Runs `statement` (`COPY … FROM STDIN`) with `rows`; how many rows it copied.
    pub async fn copy(&self, statement: &str, rows: String) -> u64 {
        use futures::SinkExt as _;
        let sink = self.0.copy_in(statement).await.expect("COPY");
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(rows))
            .await
            .expect("COPY rows");
        sink.finish().await.expect("COPY finish")
    }
}

/// A registration message for `email`, as the gateway would produce it.
pub fn registration(email: &str) -> RegistrationMessage {
    RegistrationMessage {
        email: Some(email.to_owned()),
        phone: None,
        password: SOME_HASH.to_owned(),
        consent: true,
        is_email_verified: false,
        is_phone_verified: false,
        request_id: Uuid::now_v7(),
        retry_count: 0,
        failure_reason: None,
    }
}

fn producer(kafka: &KafkaConfig) -> FutureProducer {
    kafka
        .producer_client_config()
        .create()
        .expect("test producer")
}

/// Starts the gateway with `env` on a free port (or the `HTTP_ADDR` of `env`) and waits until
/// its API answers; returns it and the API's base URL.
///
/// Rate limits are off (`RATE_LIMITS=off`) unless `env` sets a `RATE_LIMIT*` variable: tests
/// make many requests from one address.
pub async fn start_gateway(mut env: Vec<(String, String)>) -> (ServiceProcess, String) {
    if !env.iter().any(|(k, _)| k.starts_with("RATE_LIMIT")) {
        env.push(("RATE_LIMITS".into(), "off".into()));
    }
    let http_addr = match env.iter().find(|(k, _)| k == "HTTP_ADDR") {
        Some((_, addr)) => addr.parse().expect("HTTP_ADDR is an address"),
        None => free_local_addr(),
    };
    env.push(("HTTP_ADDR".into(), http_addr.to_string()));
    let mut gateway = spawn("gateway", &env);
    gateway.wait_ready().await;
    let base = format!("http://{http_addr}");
    gateway
        .wait_for_listener(&format!("{base}/api/v1/openapi.json"))
        .await;
    (gateway, base)
}

/// `(&str, &str)` pairs as owned ones.
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Starts the workspace binary `binary` with `env` on top of the base environment.
pub fn spawn(binary: &str, env: &[(String, String)]) -> ServiceProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServiceProcess::spawn(&workspace_binary(binary), &env)
}

/// Waits until `condition` holds; panics with `what` and `logs` after `patience`.
pub async fn wait_until<F, Fut>(
    what: &str,
    patience: Duration,
    logs: impl Fn() -> String,
    condition: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < patience,
            "timed out waiting for {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A JSON request and its answer.
pub async fn call(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("HTTP body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// Registers a user with `password` through `register-sync` and signs them in on the gateway
/// at `api`; their first-party access token.
pub async fn signed_in_user(api: &str, email: &str, password: &str) -> String {
    let http = reqwest::Client::new();
    let (status, body) = call(
        http.post(format!("{api}/api/v1/auth/register-sync"))
            .json(&serde_json::json!({"email": email, "password": password, "consent": true})),
    )
    .await;
    assert_eq!(status, 201, "register-sync {email}: {body}");
    let (status, body) = call(
        http.post(format!("{api}/api/v1/auth/sign-in"))
            .json(&serde_json::json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "sign-in {email}: {body}");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// Registers a client with `scopes` through `platform-admin create-client` on the database
/// schema `schema` and gets a client credentials token for it from the gateway at `api`;
/// the client's ID and the token.
pub async fn client_token(api: &str, schema: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["create-client", "--name", "system test"];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let created = platform_admin_json_lines(schema, &args, &[]).await;
    let client_id = created[0]["client_id"].as_str().expect("a client_id");
    let secret = created[0]["client_secret"]
        .as_str()
        .expect("a client_secret");
    let (status, body) = call(
        reqwest::Client::new()
            .post(format!("{api}/oauth2/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", &scopes.join(" ")),
            ]),
    )
    .await;
    assert_eq!(status, 200, "client credentials for {scopes:?}: {body}");
    let token = body["access_token"].as_str().expect("an access token");
    (client_id.to_owned(), token.to_owned())
}

/// An HTTP client that sends `Authorization: Bearer <token>` with every request that does not
/// set its own.
pub fn bearer_http(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// The HTTP client of an operator: a platform admin client holding every service scope, for
/// tests of other things than access control (it may call every route).
pub async fn operator_http(api: &str, schema: &str) -> reqwest::Client {
    let (_, token) = client_token(
        api,
        schema,
        &[
            "admin",
            "activity:write",
            "activity:read",
            "registrations:bulk",
        ],
    )
    .await;
    bearer_http(&token)
}

/// The tools of the OAuth2 tests, as `deploy/local/oauth2-tools.sh` prints them (`PYTHON`,
/// `CHROMEDRIVER`, `CHROMIUM`, `NODE`, `UPSTREAM_PROVIDER`), installing them the first time.
pub fn oauth2_tools() -> std::collections::HashMap<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = std::process::Command::new("bash")
        .arg(root.join("deploy/local/oauth2-tools.sh"))
        .output()
        .expect("deploy/local/oauth2-tools.sh runs");
    assert!(
        output.status.success(),
        "deploy/local/oauth2-tools.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs the Python test client `oauth2/<name>` with `python` and `env`; panics with its output
/// and `logs()` unless it exits 0 without a `FAIL` line; its output otherwise.
pub async fn run_oauth2_client(
    python: &str,
    name: &str,
    env: &[(&str, &str)],
    logs: impl Fn() -> String,
) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("oauth2")
        .join(name);
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python)
            .arg(&script)
            .envs(env.iter().copied())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes within 5 minutes")
    .expect("the client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{name}:\n{text}");
    assert!(
        output.status.success() && !text.contains("FAIL"),
        "{name} failed:\n{text}\n{}",
        logs()
    );
    text
}

/// Runs `platform-admin` with `args` on the database schema `schema` (and `env` on top of the
/// base environment); panics unless it succeeds; its output, one JSON value per line.
pub async fn platform_admin_json_lines(
    schema: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let (succeeded, lines, stderr) = platform_admin(schema, args, env).await;
    assert!(succeeded, "platform-admin {args:?}: {stderr}");
    lines
}

/// Runs `platform-admin` as [`platform_admin_json_lines`] does, failing or not: whether it
/// succeeded, its output (one JSON value per line; a line that is not JSON panics) and its
/// standard error.
pub async fn platform_admin(
    schema: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, Vec<serde_json::Value>, String) {
    let output = tokio::process::Command::new(workspace_binary("platform-admin"))
        .args(args)
        .envs(service_runtime::testing::base_env())
        .env("DATABASE_SCHEMA", schema)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("platform-admin runs");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("platform-admin {args:?} printed {line:?}: {e}"))
        })
        .collect();
    (
        output.status.success(),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
