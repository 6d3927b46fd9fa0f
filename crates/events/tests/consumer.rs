//! The consumer runtime against the real broker, a topic and a group per test.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::consumer::dead_letter;
use events::headers::header_str;
use events::rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use events::rdkafka::{Message, Offset};
use events::testing::{TestTopic, read_from_start, test_kafka_config, unique_name};
use events::{
    BatchHandler, BatchPolicy, ConsumerSettings, EventConsumer, Handler, HandlerError,
    OutgoingRecord, Producer, StartFrom,
};
use tokio_util::sync::CancellationToken;

use common::{committed, settings, until};

fn producer() -> Producer {
    Producer::connect(&test_kafka_config()).unwrap()
}

async fn produce(producer: &Producer, topic: &str, key: &str, value: &str) {
    let record = OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key: Some(key.as_bytes().to_vec()),
        payload: value.as_bytes().to_vec(),
        headers: OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("t-1"),
        }),
    };
    producer.send(record).await.unwrap();
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8(bytes.unwrap_or_default().to_vec()).unwrap()
}

/// Key, value, partition and offset of a handled message.
type Seen = (String, String, i32, i64);

/// Records what it handles; sleeps a pseudo-random 0–4 ms; counts concurrent calls.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis((message.offset() as u64 * 7919) % 5)).await;
        self.seen.lock().unwrap().push((
            text(message.key()),
            text(message.payload()),
            message.partition(),
            message.offset(),
        ));
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Runs a member with a fresh `Recorder` until it has handled `count` messages, then stops it.
async fn record(settings: ConsumerSettings, producer: Producer, count: usize) -> Recorder {
    let consumer = EventConsumer::new(&test_kafka_config(), settings, producer).unwrap();
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(recorder.clone(), shutdown.clone()));
    until(&format!("{count} messages"), || recorder.count() >= count).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    recorder
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_of_ten_keeps_every_key_in_order() {
    let topic = TestTopic::create("ordered", 4).await;
    let producer = producer();
    for seq in 0..25 {
        for key in 0..20 {
            produce(
                &producer,
                &topic.name,
                &format!("key-{key}"),
                &seq.to_string(),
            )
            .await;
        }
    }
    let mut settings = settings(&topic.name, &unique_name("ordered"), "unused-dlq");
    settings.worker_pool_size = 10;
    let recorder = record(settings, producer, 500).await;

    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (key, value, _, _) in recorder.seen.lock().unwrap().iter() {
        per_key
            .entry(key.clone())
            .or_default()
            .push(value.parse().unwrap());
    }
    assert_eq!(per_key.len(), 20);
    for (key, seqs) in per_key {
        assert_eq!(
            seqs,
            (0..25).collect::<Vec<_>>(),
            "{key} out of order or incomplete"
        );
    }
    assert!(
        recorder.max_running.load(Ordering::SeqCst) > 1,
        "handlers ran concurrently"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_member_resumes_where_a_killed_one_committed() {
    let topic = TestTopic::create("resume", 2).await;
    let producer = producer();
    for i in 0..200 {
        produce(
            &producer,
            &topic.name,
            &format!("k{}", i % 10),
            &i.to_string(),
        )
        .await;
    }
    let group = unique_name("resume");

    // The first member handles part of the topic and is killed without a final commit.
    let first = Recorder::default();
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, "unused-dlq"),
        producer.clone(),
    )
    .unwrap();
    let task = tokio::spawn(consumer.run(first.clone(), CancellationToken::new()));
    until("the first member to handle 100 messages", || {
        first.count() >= 100
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // a periodic commit or two
    task.abort();
    let _ = task.await;
    let committed = committed(&group, &topic.name, 2);
    assert!(
        committed.values().sum::<i64>() > 0,
        "the first member committed progress"
    );

    // A new member picks up from the commits: nothing lost, nothing before the commits redone.
    let second = Recorder::default();
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, "unused-dlq"),
        producer,
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(second.clone(), shutdown.clone()));
    let all: BTreeSet<String> = (0..200).map(|i| i.to_string()).collect();
    let union = || -> BTreeSet<String> {
        let mut seen: BTreeSet<String> = first
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect();
        seen.extend(second.seen.lock().unwrap().iter().map(|s| s.1.clone()));
        seen
    };
    until("every message handled by one member or the other", || {
        union() == all
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    for (_, _, partition, offset) in second.seen.lock().unwrap().iter() {
        assert!(
            *offset >= committed[partition],
            "offset {offset} of partition {partition} was committed, yet redone"
        );
    }
    assert!(
        second.count() < 200,
        "the new member resumed instead of starting over"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_starts_at_the_given_offset() {
    let topic = TestTopic::create("replay", 1).await;
    let producer = producer();
    for i in 0..10 {
        produce(&producer, &topic.name, "k", &i.to_string()).await;
    }
    let mut settings = settings(&topic.name, &unique_name("replay"), "unused-dlq");
    settings.start = StartFrom::Offsets(vec![(topic.name.clone(), 0, Offset::Offset(6))]);
    let recorder = record(settings, producer, 4).await;
    let values: Vec<String> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(values, ["6", "7", "8", "9"]);
}

/// Fails as each message's JSON says: `flaky` twice then succeeds, `retry` always transiently,
/// `reject` permanently; what is not JSON is rejected as undecodable.
#[derive(Clone, Default)]
struct Picky {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    handled: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Handler for Picky {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let value: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())
                .map_err(|e| HandlerError::reject("decode_error", e))?;
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(kind.clone()).or_default();
            *n += 1;
            *n
        };
        match kind.as_str() {
            "flaky" if attempt < 3 => Err(HandlerError::retry("db_unavailable", "database down")),
            "retry" => Err(HandlerError::retry("db_unavailable", "database down")),
            "reject" => Err(HandlerError::reject(
                "validation_error",
                "invalid activity type",
            )),
            _ => {
                self.handled.lock().unwrap().push(kind);
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_then_dead_lettered_and_never_stop_the_loop() {
    let topic = TestTopic::create("failing", 1).await;
    let dlq = TestTopic::create("failing-dlq", 1).await;
    let producer = producer();
    let kinds = [
        r#"{"kind":"ok-1"}"#,
        r#"{"kind":"flaky"}"#,
        r#"{"kind":"retry"}"#,
        r#"{"kind":"reject"}"#,
        "not json",
        r#"{"kind":"ok-2"}"#,
    ];
    for (i, value) in kinds.iter().enumerate() {
        produce(&producer, &topic.name, &format!("key-{i}"), value).await;
    }
    let group = unique_name("failing");
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(&topic.name, &group, &dlq.name),
        producer,
    )
    .unwrap();
    let handler = Picky::default();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(handler.clone(), shutdown.clone()));
    until("the good messages", || {
        handler.handled.lock().unwrap().len() >= 3
    })
    .await;
    let letters = read_from_start(&dlq.name, 3).await;
    until("the commit of all six", || {
        committed(&group, &topic.name, 1)[&0] == 6
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(*handler.handled.lock().unwrap(), ["ok-1", "flaky", "ok-2"]);
    assert_eq!(
        handler.attempts.lock().unwrap()["flaky"],
        3,
        "retried until it passed"
    );
    let by_code: BTreeMap<(String, String), &OwnedMessage> = letters
        .iter()
        .map(|m| {
            let headers = m.headers().unwrap();
            let key = (
                header_str(headers, dead_letter::ERROR_CODE)
                    .unwrap()
                    .to_owned(),
                text(m.key()),
            );
            (key, m)
        })
        .collect();
    let expectations = [
        ("db_unavailable", "key-2", "3", 2),
        ("validation_error", "key-3", "1", 3),
        ("decode_error", "key-4", "1", 4),
    ];
    for (code, key, attempts, offset) in expectations {
        let letter = by_code
            .get(&(code.to_owned(), key.to_owned()))
            .unwrap_or_else(|| panic!("no dead letter {code} for {key}"));
        let headers = letter.headers().unwrap();
        assert_eq!(
            header_str(headers, dead_letter::ORIGINAL_TOPIC),
            Some(topic.name.as_str())
        );
        assert_eq!(
            header_str(headers, dead_letter::ORIGINAL_PARTITION),
            Some("0")
        );
        assert_eq!(
            header_str(headers, dead_letter::ORIGINAL_OFFSET),
            Some(offset.to_string().as_str())
        );
        assert_eq!(
            header_str(headers, dead_letter::ATTEMPT_COUNT),
            Some(attempts),
            "{code}"
        );
        assert_eq!(
            header_str(headers, dead_letter::CONSUMER_GROUP),
            Some(group.as_str())
        );
        assert!(header_str(headers, dead_letter::ERROR_MESSAGE).is_some_and(|m| !m.is_empty()));
        assert!(header_str(headers, dead_letter::FAILED_AT).is_some());
        assert_eq!(
            header_str(headers, "trace"),
            Some("t-1"),
            "original headers are kept"
        );
        assert_eq!(
            text(letter.payload()),
            kinds[offset as usize],
            "original value is kept"
        );
    }
}

/// Records the size of each batch it gets.
#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Vec<usize>>>);

#[async_trait]
impl BatchHandler for Batches {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>> {
        self.0.lock().unwrap().push(messages.len());
        messages.iter().map(|_| Ok(())).collect()
    }
}

impl Batches {
    fn total(&self) -> usize {
        self.0.lock().unwrap().iter().sum()
    }
}

async fn run_batches(
    topic: &str,
    policy: BatchPolicy,
    batches: &Batches,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let consumer = EventConsumer::new(
        &test_kafka_config(),
        settings(topic, &unique_name("batches"), "unused-dlq"),
        producer(),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let handler = batches.clone();
    let token = shutdown.clone();
    let task =
        tokio::spawn(async move { consumer.run_batches(handler, policy, token).await.unwrap() });
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_flush_by_size_then_by_idle_time() {
    let topic = TestTopic::create("batch-size", 1).await;
    let producer = producer();
    for i in 0..25 {
        produce(&producer, &topic.name, "k", &i.to_string()).await;
    }
    let batches = Batches::default();
    let policy = BatchPolicy {
        max_messages: 10,
        linger: Duration::from_secs(600), // off: the other triggers are tested
        max_wait: Duration::from_secs(600),
        idle: Duration::from_millis(300),
    };
    let (shutdown, task) = run_batches(&topic.name, policy, &batches).await;
    until("25 messages in batches", || batches.total() >= 25).await;
    shutdown.cancel();
    task.await.unwrap();
    // Full batches of 10; the last 5 flushed once nothing more came (the max wait is 10 minutes).
    let sizes = batches.0.lock().unwrap().clone();
    assert_eq!(sizes.iter().filter(|s| **s == 10).count(), 2, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 25, "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_trickle_is_cut_by_the_max_wait() {
    let topic = TestTopic::create("batch-wait", 1).await;
    let producer = producer();
    let batches = Batches::default();
    // Messages every 50 ms never leave the batch idle for 5 s; the 600 ms max wait cuts it.
    let policy = BatchPolicy {
        max_messages: 1000,
        linger: Duration::from_millis(600), // off: the other triggers are tested
        max_wait: Duration::from_millis(600),
        idle: Duration::from_secs(5),
    };
    let (shutdown, task) = run_batches(&topic.name, policy, &batches).await;
    for i in 0..40 {
        produce(&producer, &topic.name, "k", &i.to_string()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until("40 messages in batches", || batches.total() >= 40).await;
    shutdown.cancel();
    task.await.unwrap();
    let sizes = batches.0.lock().unwrap().clone();
    assert!(
        sizes.len() >= 2,
        "the trickle was cut into several batches: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_redriven_for_another_group_is_skipped_and_committed() {
    let topic = TestTopic::create("redriven", 1).await;
    let producer = producer();
    let group = unique_name("mine");
    for (value, redrive_group) in [
        ("plain", None),
        ("for-another", Some("someone-else")),
        ("for-me", Some(group.as_str())),
        ("last", None),
    ] {
        let mut headers = OwnedHeaders::new();
        if let Some(target) = redrive_group {
            headers = headers.insert(Header {
                key: events::redrive::REDRIVE_GROUP,
                value: Some(target),
            });
        }
        producer
            .send(OutgoingRecord {
                topic: topic.name.clone(),
                partition: None,
                key: Some(b"k".to_vec()),
                payload: value.as_bytes().to_vec(),
                headers,
            })
            .await
            .unwrap();
    }
    let recorder = record(settings(&topic.name, &group, "unused-dlq"), producer, 3).await;
    let seen: Vec<String> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, value, _, _)| value.clone())
        .collect();
    assert_eq!(seen, ["plain", "for-me", "last"]);
    assert_eq!(
        committed(&group, &topic.name, 1)[&0],
        4,
        "the skipped one is committed too"
    );
}
