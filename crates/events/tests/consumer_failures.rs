//! The consumer runtime when things go wrong, against the real broker: a batch write that fails
//! for one message, handlers that panic, shutdown in the middle of a back-off, a dead letter too
//! large for the broker, a runaway of dead letters, a dead letter that cannot be written.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::consumer::dead_letter;
use events::headers::header_str;
use events::rdkafka::Message;
use events::rdkafka::message::{OwnedHeaders, OwnedMessage};
use events::testing::{TestTopic, message_count, read_from_start, test_kafka_config, unique_name};
use events::{
    Backoff, BatchHandler, BatchPolicy, DlqLimit, EventConsumer, Handler, HandlerError,
    OutgoingRecord, Producer, RetryPolicy,
};
use tokio_util::sync::CancellationToken;

use common::{committed, settings, until};

fn producer() -> Producer {
    Producer::connect(&test_kafka_config()).unwrap()
}

async fn produce(producer: &Producer, topic: &str, key: &str, value: &[u8]) {
    let record = OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key: Some(key.as_bytes().to_vec()),
        payload: value.to_vec(),
        headers: OwnedHeaders::new(),
    };
    producer.deliver(record).await.unwrap();
}

/// Waits for a task, at most a minute (a hang guard: a shutdown that waits out a back-off of
/// ten minutes fails here).
async fn joined(what: &str, task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return"))
        .unwrap();
}

/// The group's committed position on partition 0 (0 when nothing is committed).
fn committed_0(group: &str, topic: &str) -> i64 {
    committed(group, topic, 1)[&0]
}

fn text(message: &OwnedMessage) -> String {
    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()
}

/// A batch writer like a database insert: the whole batch fails while any message in it is
/// `bad` (transiently, as the database reports it), and panics while any is `boom`.
#[derive(Clone, Default)]
struct Statement {
    stored: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<usize>>,
}

#[async_trait]
impl BatchHandler for Statement {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        *self.calls.lock().unwrap() += 1;
        let values: Vec<String> = messages.iter().map(text).collect();
        assert!(!values.iter().any(|v| v == "boom"), "boom in the batch");
        if values.iter().any(|v| v == "bad") {
            return messages
                .iter()
                .map(|_| Err(HandlerError::retry("database_error", "value too long")))
                .collect();
        }
        self.stored.lock().unwrap().extend(values);
        messages.iter().map(|_| Ok(())).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_batch_is_narrowed_to_the_messages_that_cause_it() {
    let topic = TestTopic::create("narrow", 1).await;
    let dlq = TestTopic::create("narrow-dlq", 1).await;
    let producer = producer();
    let values = ["a", "b", "bad", "c", "d", "e", "boom", "f", "g", "h"];
    for value in values {
        produce(&producer, &topic.name, "one-user", value.as_bytes()).await;
    }
    let group = unique_name("narrow");
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, &dlq.name),
        producer.clone(),
    )
    .unwrap();
    let statement = Statement::default();
    let shutdown = CancellationToken::new();
    let (handler, token) = (statement.clone(), shutdown.clone());
    let policy = BatchPolicy {
        max_messages: 10,
        linger: Duration::from_secs(600), // off: the other triggers are tested
        max_wait: Duration::from_secs(600),
        idle: Duration::from_millis(300),
    };
    let task =
        tokio::spawn(async move { consumer.run_batches(handler, policy, token).await.unwrap() });
    until(
        "the good ones stored and the two bad ones dead-lettered",
        || statement.stored.lock().unwrap().len() == 8 && message_count(&dlq) == 2,
    )
    .await;
    // A dead letter is on the topic a moment before its delivery is acknowledged and the
    // message counted finished: stopping in between leaves it uncommitted, by design (the next
    // member dead-letters it again). Wait for the periodic commit of all ten.
    until("all ten committed", || {
        committed_0(&group, &topic.name) == 10
    })
    .await;
    shutdown.cancel();
    joined("run_batches", task).await;

    let mut stored = statement.stored.lock().unwrap().clone();
    stored.sort();
    assert_eq!(
        stored,
        ["a", "b", "c", "d", "e", "f", "g", "h"],
        "each once"
    );
    let dead = read_from_start(&dlq.name, 2).await;
    let mut dead: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            (
                text(m),
                header_str(m.headers().unwrap(), dead_letter::ERROR_CODE)
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            ("bad".to_owned(), "database_error".to_owned()),
            ("boom".to_owned(), "handler_panicked".to_owned())
        ]
    );
    assert_eq!(committed_0(&group, &topic.name), 10, "all finished");
}

/// A database that is busy once: the first statement times out, the next ones pass.
#[derive(Clone, Default)]
struct BusyOnce {
    calls: Arc<Mutex<Vec<usize>>>,
}

#[async_trait]
impl BatchHandler for BusyOnce {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(messages.len());
        let busy = calls.len() == 1;
        messages
            .iter()
            .map(|_| {
                if busy {
                    Err(HandlerError::transient("database_busy", "lock timeout"))
                } else {
                    Ok(())
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_fails_transiently_is_tried_again_whole_not_split() {
    let topic = TestTopic::create("busy", 1).await;
    let producer = producer();
    for i in 0..8 {
        produce(&producer, &topic.name, "k", format!("m{i}").as_bytes()).await;
    }
    let group = unique_name("busy");
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, "unused-dlq"),
        producer.clone(),
    )
    .unwrap();
    let busy = BusyOnce::default();
    let shutdown = CancellationToken::new();
    let (handler, token) = (busy.clone(), shutdown.clone());
    let policy = BatchPolicy {
        max_messages: 8,
        linger: Duration::from_secs(600),
        max_wait: Duration::from_secs(600),
        idle: Duration::from_millis(300),
    };
    let task =
        tokio::spawn(async move { consumer.run_batches(handler, policy, token).await.unwrap() });
    until("all eight written", || {
        committed_0(&group, &topic.name) == 8
    })
    .await;
    shutdown.cancel();
    joined("run_batches", task).await;
    let calls = busy.calls.lock().unwrap().clone();
    assert!(
        calls.len() >= 2 && calls[1] == calls[0] && calls[0] > 1,
        "once busy, then the same batch whole again: {calls:?}"
    );
}

/// Panics on `boom`, otherwise records the value.
#[derive(Clone, Default)]
struct Fragile(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Handler for Fragile {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let value = text(message);
        assert_ne!(value, "boom", "the handler met a boom");
        self.0.lock().unwrap().push(value);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_panics_fails_only_its_message() {
    let topic = TestTopic::create("panics", 1).await;
    let dlq = TestTopic::create("panics-dlq", 1).await;
    let producer = producer();
    for value in ["one", "boom", "two", "boom", "three"] {
        produce(&producer, &topic.name, "k", value.as_bytes()).await;
    }
    let group = unique_name("panics");
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, &dlq.name),
        producer.clone(),
    )
    .unwrap();
    let fragile = Fragile::default();
    let shutdown = CancellationToken::new();
    let (handler, token) = (fragile.clone(), shutdown.clone());
    let task = tokio::spawn(async move { consumer.run(handler, token).await.unwrap() });
    until("three handled, two dead-lettered", || {
        fragile.0.lock().unwrap().len() == 3 && message_count(&dlq) == 2
    })
    .await;
    shutdown.cancel();
    joined("run", task).await;
    for dead in read_from_start(&dlq.name, 2).await {
        let headers = dead.headers().unwrap();
        assert_eq!(
            header_str(headers, dead_letter::ERROR_CODE),
            Some("handler_panicked")
        );
        assert!(
            header_str(headers, dead_letter::ERROR_MESSAGE)
                .is_some_and(|m| m.contains("the handler met a boom")),
            "the panic's message"
        );
        assert_eq!(header_str(headers, dead_letter::ATTEMPT_COUNT), Some("1"));
    }
}

/// Always fails as told: `retry` (transient) or `unavailable` (a dependency is down).
#[derive(Clone)]
struct Failing {
    unavailable: bool,
    calls: Arc<Mutex<usize>>,
}

impl Failing {
    fn error(&self) -> HandlerError {
        *self.calls.lock().unwrap() += 1;
        if self.unavailable {
            HandlerError::unavailable("database_unavailable", "connection refused")
        } else {
            HandlerError::retry("database_error", "lock timeout")
        }
    }
}

#[async_trait]
impl Handler for Failing {
    async fn handle(&self, _: &OwnedMessage) -> Result<(), HandlerError> {
        Err(self.error())
    }
}

#[async_trait]
impl BatchHandler for Failing {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        let error = self.error();
        messages.iter().map(|_| Err(error.clone())).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_interrupts_retry_and_outage_back_offs_and_commits_nothing_unfinished() {
    for (batches, unavailable) in [(false, false), (false, true), (true, false), (true, true)] {
        let what = format!("batches {batches}, unavailable {unavailable}");
        let topic = TestTopic::create("backoff", 1).await;
        let producer = producer();
        produce(&producer, &topic.name, "k", b"stuck").await;
        let group = unique_name("backoff");
        let mut settings = settings(&topic.name, &group, "unused-dlq");
        // Back-offs of ten minutes, and a shutdown deadline as long: only an interrupted
        // back-off lets the consumer return in time for the hang guard.
        settings.retry = RetryPolicy {
            max_attempts: 100,
            backoff: Backoff::new(Duration::from_secs(600), Duration::from_secs(600)),
        };
        settings.outage_backoff = Backoff::new(Duration::from_secs(600), Duration::from_secs(600));
        settings.shutdown_timeout = Duration::from_secs(600);
        let consumer =
            EventConsumer::new(&test_kafka_config(), settings, producer.clone()).unwrap();
        let failing = Failing {
            unavailable,
            calls: Arc::new(Mutex::new(0)),
        };
        let shutdown = CancellationToken::new();
        let (handler, token) = (failing.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            if batches {
                let policy = BatchPolicy {
                    max_messages: 10,
                    linger: Duration::from_millis(100), // off: the other triggers are tested
                    max_wait: Duration::from_millis(100),
                    idle: Duration::from_millis(100),
                };
                consumer.run_batches(handler, policy, token).await.unwrap();
            } else {
                consumer.run(handler, token).await.unwrap();
            }
        });
        until(&format!("{what}: the first try"), || {
            *failing.calls.lock().unwrap() == 1
        })
        .await;
        // In its back-off now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown.cancel();
        joined(&what, task).await;
        assert_eq!(*failing.calls.lock().unwrap(), 1, "{what}: no second try");
        assert_eq!(
            committed_0(&group, &topic.name),
            0,
            "{what}: the unfinished message stays uncommitted for the next member"
        );
    }
}

/// Rejects every message, as a bad deploy would.
#[derive(Clone, Default)]
struct RejectsAll(Arc<Mutex<usize>>);

#[async_trait]
impl Handler for RejectsAll {
    async fn handle(&self, _: &OwnedMessage) -> Result<(), HandlerError> {
        *self.0.lock().unwrap() += 1;
        Err(HandlerError::reject(
            "validation_error",
            "every message is wrong",
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_of_dead_letters_stops_the_consumer_and_says_why() {
    let topic = TestTopic::create("runaway", 1).await;
    let dlq = TestTopic::create("runaway-dlq", 1).await;
    let producer = producer();
    for i in 0..40 {
        produce(&producer, &topic.name, "k", format!("m{i}").as_bytes()).await;
    }
    let group = unique_name("runaway");
    let mut settings = settings(&topic.name, &group, &dlq.name);
    settings.dlq_limit = DlqLimit {
        max_ratio: 0.5,
        min_count: 5,
        window: Duration::from_secs(60),
    };
    let consumer = EventConsumer::new(&test_kafka_config(), settings, producer.clone()).unwrap();
    let health = consumer.health();
    assert_eq!(health.problem(), None);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task =
        tokio::spawn(async move { consumer.run(RejectsAll::default(), token).await.unwrap() });
    until("the limit reached", || health.problem().is_some()).await;
    let problem = health.problem().unwrap();
    assert!(problem.contains("dead-letter limit"), "{problem}");
    // Nothing more moves to the DLQ, however long it keeps running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        message_count(&dlq),
        4,
        "four dead letters, the fifth tripped the limit"
    );
    shutdown.cancel();
    joined("run", task).await;
    assert_eq!(
        committed_0(&group, &topic.name),
        4,
        "only what was dead-lettered is committed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_dead_letter_is_trimmed_to_fit_and_the_loop_goes_on() {
    let topic = TestTopic::create("oversized", 1).await;
    let dlq = TestTopic::create("oversized-dlq", 1).await;
    let producer = producer();
    // 300,000 bytes of 0x01: escaped into the JSON of the dead letter, six times as many.
    produce(&producer, &topic.name, "k", &vec![1u8; 300_000]).await;
    produce(&producer, &topic.name, "k", b"after").await;
    let group = unique_name("oversized");
    let mut settings = settings(&topic.name, &group, &dlq.name);
    settings.dead_letter_format = dead_letter::DeadLetterFormat::ErrorInValue;
    let consumer = EventConsumer::new(&test_kafka_config(), settings, producer.clone()).unwrap();
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    #[derive(Clone)]
    struct RejectsBig(Arc<Mutex<HashMap<String, usize>>>);
    #[async_trait]
    impl Handler for RejectsBig {
        async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
            let value = message.payload().unwrap_or_default();
            if value.len() > 1000 {
                return Err(HandlerError::reject("VALIDATION_ERROR", "not an event"));
            }
            *self.0.lock().unwrap().entry(text(message)).or_default() += 1;
            Ok(())
        }
    }
    let shutdown = CancellationToken::new();
    let (handler, token) = (RejectsBig(seen.clone()), shutdown.clone());
    let task = tokio::spawn(async move { consumer.run(handler, token).await.unwrap() });
    until("the later message handled", || {
        seen.lock().unwrap().contains_key("after")
    })
    .await;
    shutdown.cancel();
    joined("run", task).await;

    let dead = read_from_start(&dlq.name, 1).await;
    let headers = dead[0].headers().unwrap();
    assert_eq!(
        header_str(headers, dead_letter::VALUE_TRUNCATED),
        Some("true")
    );
    assert_eq!(
        header_str(headers, dead_letter::ORIGINAL_VALUE_BYTES),
        Some("300000")
    );
    let value: serde_json::Value = serde_json::from_slice(dead[0].payload().unwrap()).unwrap();
    assert_eq!(value["originalValueTruncated"], true);
    assert_eq!(value["error"]["code"], "VALIDATION_ERROR");
    assert!(
        value["originalValue"]
            .as_str()
            .unwrap()
            .starts_with('\u{1}')
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_whose_dead_letters_cannot_be_written_reports_a_stall() {
    let topic = TestTopic::create("stall", 1).await;
    let producer = producer();
    produce(&producer, &topic.name, "k", b"bad").await;
    let group = unique_name("stall");
    // The DLQ topic does not exist (topics are not created automatically).
    let mut settings = settings(&topic.name, &group, &unique_name("missing-dlq"));
    settings.stall_after = Duration::from_secs(2);
    let consumer = EventConsumer::new(&test_kafka_config(), settings, producer.clone()).unwrap();
    let health = consumer.health();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task =
        tokio::spawn(async move { consumer.run(RejectsAll::default(), token).await.unwrap() });
    until("a stall reported", || health.problem().is_some()).await;
    let problem = health.problem().unwrap();
    assert!(problem.contains("in flight"), "{problem}");
    shutdown.cancel();
    joined("run", task).await;
    assert_eq!(
        committed_0(&group, &topic.name),
        0,
        "not dead-lettered, not committed"
    );
}
