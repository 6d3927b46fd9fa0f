//! The waitlist's test world (issue #7): a schema, the domain-events topic and its DLQ, the
//! gateway and the three workers, and the receivers the workers talk to: an SMTP server and a
//! webhook endpoint, both real servers on local ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use events::testing::{TestTopic, unique_name};
use repo::testing::TestDatabase;
use service_runtime::testing::{ServiceProcess, free_local_addr};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::{owned, spawn};

/// A schema, a `domain-events` topic of three partitions and a `waitlist.dlq`.
pub struct WaitlistStack {
    pub db: TestDatabase,
    pub topic: TestTopic,
    pub dlq: TestTopic,
    /// Plays `user-events`: the account events the gateway publishes and the email-worker reads.
    pub account_events: TestTopic,
    pub suffix: String,
}

impl std::fmt::Debug for WaitlistStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitlistStack")
            .field("schema", &self.db.schema())
            .field("topic", &self.topic.name)
            .finish_non_exhaustive()
    }
}

impl WaitlistStack {
    pub async fn new() -> Self {
        Self {
            db: TestDatabase::new().await,
            topic: TestTopic::create("domain-events", 3).await,
            dlq: TestTopic::create("waitlist.dlq", 1).await,
            account_events: TestTopic::create("user-events", 1).await,
            suffix: unique_name("w"),
        }
    }

    fn shared_env(&self) -> Vec<(String, String)> {
        owned(&[
            ("DATABASE_SCHEMA", self.db.schema()),
            ("KAFKA_DLQ_TOPIC", &self.dlq.name),
            ("WAITLIST_DLQ_TOPIC", &self.dlq.name),
            ("SNOWFLAKE_LEASE_TTL", "10s"),
            // The gateway publishes account events here, the email-worker reads them.
            ("USER_EVENTS_TOPIC", &self.account_events.name),
            ("ACCOUNT_EVENTS_TOPIC", &self.account_events.name),
        ])
    }

    /// The gateway, with the test (on loopback) as its trusted proxy, so tests can sign up
    /// "from" many addresses through `X-Forwarded-For`.
    pub async fn start_gateway(&self, extra: &[(&str, &str)]) -> (ServiceProcess, String) {
        let mut env = self.shared_env();
        env.extend(owned(&[
            ("DOMAIN_EVENTS_TOPIC", &self.topic.name),
            ("TRUSTED_PROXIES", "127.0.0.0/8, ::1"),
            ("OUTBOX_POLL_INTERVAL", "200ms"),
        ]));
        env.extend(owned(extra));
        crate::start_gateway(env).await
    }

    /// A worker binary in consumer group `<group>-<suffix>`.
    pub async fn start_worker(
        &self,
        binary: &str,
        group: &str,
        extra: &[(&str, &str)],
    ) -> ServiceProcess {
        let mut env = self.shared_env();
        env.extend(owned(&[
            ("KAFKA_TOPIC", &self.topic.name),
            ("KAFKA_CONSUMER_GROUP", &format!("{group}-{}", self.suffix)),
        ]));
        env.extend(owned(extra));
        let mut worker = spawn(binary, &env);
        worker.wait_ready().await;
        worker
    }

    pub async fn count(&self, query: &str) -> i64 {
        crate::count(&self.db, query).await
    }

    /// Produces an event's JSON to the domain-events topic, keyed by its `campaign_id`, as a
    /// producer other than this system's outbox might.
    pub async fn produce(&self, event: &serde_json::Value) {
        use events::rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = events::testing::test_kafka_config()
            .producer_client_config()
            .create()
            .expect("producer");
        let key = event["campaign_id"].as_str().unwrap_or("none").to_owned();
        let payload = serde_json::to_vec(event).expect("JSON");
        producer
            .send(
                FutureRecord::to(&self.topic.name)
                    .key(&key)
                    .payload(&payload),
                std::time::Duration::from_secs(30),
            )
            .await
            .expect("produce an event");
    }
}

/// An SMTP server that accepts every message and keeps its raw text.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_smtp(socket, store.clone()));
            }
        });
        Self { addr, messages }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().expect("SMTP store").clone()
    }
}

/// Just enough of RFC 5321 for a client that sends plain messages.
async fn serve_smtp(socket: tokio::net::TcpStream, store: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let command = line.to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink\r\n"
        } else if command.starts_with("DATA") {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut message = String::new();
            while let Ok(Some(data)) = lines.next_line().await {
                if data == "." {
                    break;
                }
                message.push_str(data.strip_prefix('.').unwrap_or(&data));
                message.push('\n');
            }
            store.lock().expect("SMTP store").push(message);
            b"250 queued\r\n"
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            // MAIL, RCPT, RSET, NOOP.
            b"250 ok\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct WebhookCall {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: u16,
}

/// An HTTP endpoint that answers 500 to the first `failures` requests of each idempotency key
/// and 200 after, recording every request.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub url: String,
    calls: Arc<Mutex<Vec<WebhookCall>>>,
}

struct ReceiverState {
    failures: usize,
    calls: Arc<Mutex<Vec<WebhookCall>>>,
}

impl WebhookReceiver {
    pub async fn start(failures: usize) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(ReceiverState {
            failures,
            calls: calls.clone(),
        });
        let addr = free_local_addr();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)
        .expect("bind the webhook receiver")
        .run();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}/hooks/rewards"),
            calls,
        }
    }

    pub fn calls(&self) -> Vec<WebhookCall> {
        self.calls.lock().expect("calls").clone()
    }
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let headers: HashMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let key = headers.get("idempotency-key").cloned().unwrap_or_default();
    let mut calls = state.calls.lock().expect("calls");
    let earlier = calls
        .iter()
        .filter(|c| c.headers.get("idempotency-key") == Some(&key))
        .count();
    let answered = if earlier < state.failures { 500 } else { 200 };
    calls.push(WebhookCall {
        headers,
        body: body.to_vec(),
        answered,
    });
    if answered == 200 {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::InternalServerError().finish()
    }
}
