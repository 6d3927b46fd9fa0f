//! `platform-admin dlq`: list, show and redrive the dead letters of every dead-letter topic.
//!
//! Reading never joins or commits a consumer group: the partitions are assigned, read from
//! the start (or from `--since`, by the broker's offset-for-time lookup) to the end they had
//! when the command started.
//!
//! A redrive is exactly-once within Kafka: each batch of redriven records is written in one
//! Kafka transaction together with a marker per dead letter in the redrive ledger (the
//! compacted topic `DLQ_REDRIVE_LEDGER_TOPIC`, `dead-letter-redrives`), keyed
//! `<dlq topic>/<partition>/<offset>`. A run that stops half-way (a crash, Ctrl-C, a broker
//! failure) leaves only whole batches behind, and the next run skips every dead letter the
//! ledger holds: nothing is lost and nothing is sent twice. All redrives share one
//! transactional ID, so one that starts fences the one running, if any. Each run ends
//! with an audit record in the ledger (key `run/<run id>`), printed too. The services read with
//! librdkafka's default `isolation.level=read_committed`, so they never see the records of a
//! batch that was aborted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use events::KafkaConfig;
use events::rdkafka::consumer::{BaseConsumer, Consumer};
use events::rdkafka::error::KafkaError;
use events::rdkafka::message::{Message as _, OwnedMessage};
use events::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer,
};
use events::rdkafka::{Offset, TopicPartitionList};
use events::redrive::DeadLetter;
use serde_json::{Value, json};
use service_runtime::Env;
use service_runtime::config::kafka_config;

/// How long one broker request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// One for every redrive: a redrive that starts fences the one running, if any (its open
/// transaction is aborted and it stops at its next batch), so the ledger it reads next is final.
const TRANSACTIONAL_ID: &str = "platform-admin.redrive";

#[derive(Debug, Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// One JSON line per dead letter (where it came from, why it failed, attempts, redrives,
    /// whether it was redriven), then one per topic with counts per error code and group.
    List {
        #[command(flatten)]
        selection: Selection,
        /// Only the counts.
        #[arg(long)]
        summary: bool,
    },
    /// One dead letter, whole: headers, key, value, error, and the record a redrive would send.
    Show {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        offset: i64,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        max_redrives: u32,
    },
    /// Sends the selected dead letters back to their original topics, with their original
    /// key and headers plus `redrive_count`; skips those redriven before, refuses those
    /// redriven `--max-redrives` times. One JSON line per dead letter, then the run's audit
    /// record.
    Redrive {
        #[command(flatten)]
        selection: Selection,
        /// Print what would be sent; send nothing, write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        max_redrives: u32,
        /// Dead letters per Kafka transaction.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
}

/// Which dead letters.
#[derive(Debug, Clone, Args)]
struct Selection {
    /// A dead-letter topic; repeat for more. Default: every dead-letter topic of the system
    /// (REGISTRATION_DLQ_TOPIC, WAITLIST_DLQ_TOPIC, ACTIVITY_DLQ_TOPIC, KAFKA_DLQ_TOPIC).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Only this error code (`malformed_message`, `VALIDATION_ERROR`, `publish_failed`,
    /// `registration_failed`, …).
    #[arg(long)]
    error_code: Option<String>,
    /// Only dead letters of this consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Only dead letters written at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only dead letters written before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
}

impl Selection {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.error_code
            .as_ref()
            .is_none_or(|code| *code == letter.error_code)
            && self
                .group
                .as_ref()
                .is_none_or(|group| letter.consumer_group.as_ref() == Some(group))
            && self
                .since
                .is_none_or(|since| letter.timestamp.is_some_and(|t| t >= since))
            && self
                .until
                .is_none_or(|until| letter.timestamp.is_some_and(|t| t < until))
    }

    fn describe(&self) -> Value {
        json!({
            "error_code": self.error_code,
            "group": self.group,
            "since": self.since,
            "until": self.until,
        })
    }
}

/// The topics the command needs, from the services' variables.
struct Topics {
    dead_letter: Vec<String>,
    registration: String,
    ledger: String,
}

impl Topics {
    fn from_env(env: &Env) -> Self {
        Self {
            dead_letter: vec![
                env.string("REGISTRATION_DLQ_TOPIC", "user.registration.dlq"),
                env.string("WAITLIST_DLQ_TOPIC", "waitlist.dlq"),
                env.string("ACTIVITY_DLQ_TOPIC", "user-activity-logs-dlq"),
                env.string("KAFKA_DLQ_TOPIC", "events-dlq"),
            ],
            registration: env.string("REGISTRATION_TOPIC", "user.registration"),
            ledger: env.string("DLQ_REDRIVE_LEDGER_TOPIC", "dead-letter-redrives"),
        }
    }
}

pub(crate) async fn run(args: DlqArgs, env: &Env) -> anyhow::Result<()> {
    let kafka = kafka_config(env, "platform-admin")?;
    let topics = Topics::from_env(env);
    tokio::task::spawn_blocking(move || match args.command {
        DlqCommand::List { selection, summary } => list(&kafka, &topics, &selection, summary),
        DlqCommand::Show {
            topic,
            partition,
            offset,
            max_redrives,
        } => show(&kafka, &topics, &topic, partition, offset, max_redrives),
        DlqCommand::Redrive {
            selection,
            dry_run,
            max_redrives,
            batch_size,
        } => redrive(
            &kafka,
            &topics,
            &selection,
            dry_run,
            max_redrives,
            batch_size as usize,
        ),
    })
    .await
    .context("the dlq command failed")?
}

use crate::print_json as print;

fn chosen<'a>(selection: &'a Selection, topics: &'a Topics) -> &'a [String] {
    if selection.topics.is_empty() {
        &topics.dead_letter
    } else {
        &selection.topics
    }
}

fn list(
    kafka: &KafkaConfig,
    topics: &Topics,
    selection: &Selection,
    summary: bool,
) -> anyhow::Result<()> {
    let ledger = Ledger::read(kafka, &topics.ledger)?;
    for topic in chosen(selection, topics) {
        let (mut count, mut redriven) = (0u64, 0u64);
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_group: BTreeMap<String, u64> = BTreeMap::new();
        read_topic(kafka, topic, selection.since, |message| {
            let letter = DeadLetter::parse(&message, &topics.registration);
            if !selection.matches(&letter) {
                return;
            }
            count += 1;
            *by_code.entry(letter.error_code.clone()).or_default() += 1;
            if let Some(group) = &letter.consumer_group {
                *by_group.entry(group.clone()).or_default() += 1;
            }
            let done = ledger.done.contains(&letter.id());
            redriven += u64::from(done);
            if !summary {
                let mut line = letter.summary();
                line["redriven"] = json!(done);
                print(&line);
            }
        })?;
        print(&json!({
            "summary": topic,
            "dead_letters": count,
            "redriven": redriven,
            "by_error_code": by_code,
            "by_group": by_group,
        }));
    }
    Ok(())
}

fn show(
    kafka: &KafkaConfig,
    topics: &Topics,
    topic: &str,
    partition: i32,
    offset: i64,
    max_redrives: u32,
) -> anyhow::Result<()> {
    let consumer = reader(kafka)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) if message.offset() == offset => {
                let letter = DeadLetter::parse(&message.detach(), &topics.registration);
                let mut details = letter.details(max_redrives);
                details["redriven"] = json!(
                    Ledger::read(kafka, &topics.ledger)?
                        .done
                        .contains(&letter.id())
                );
                print(&details);
                return Ok(());
            }
            Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => {
                bail!("{topic} partition {partition} has no record at offset {offset}")
            }
            Some(Err(error)) => return Err(error).context(format!("reading {topic}")),
            None => {}
        }
    }
    bail!("{topic} partition {partition} offset {offset}: nothing read in {TIMEOUT:?}")
}

/// What earlier runs did, from the ledger: the dead letters they dealt with.
struct Ledger {
    done: HashSet<String>,
}

impl Ledger {
    fn read(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        let mut done = HashSet::new();
        if events::admin::partitions(kafka, topic, TIMEOUT).is_err() {
            tracing::warn!(%topic, "the redrive ledger topic does not exist: nothing was redriven yet (platform-admin create-topics creates it)");
            return Ok(Self { done });
        }
        read_topic(kafka, topic, None, |message| {
            if let (Some(key), Some(_)) = (message.key(), message.payload())
                && let Ok(key) = std::str::from_utf8(key)
                && !key.starts_with("run/")
            {
                done.insert(key.to_owned());
            }
        })?;
        Ok(Self { done })
    }
}

fn reader(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    kafka
        .client_config()
        // Never committed, never joined: a name for the broker's logs only.
        .set("group.id", "platform-admin-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the Kafka reader")
}

/// Calls `each` with every record of `topic` (from `since`, when given) up to the end each
/// partition had when reading started.
fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    since: Option<DateTime<Utc>>,
    mut each: impl FnMut(OwnedMessage),
) -> anyhow::Result<()> {
    let partitions = events::admin::partitions(kafka, topic, TIMEOUT)
        .with_context(|| format!("reading the partitions of {topic}"))?;
    let starts: HashMap<i32, i64> = match since {
        Some(since) => {
            events::admin::offsets_for_time(kafka, topic, since.timestamp_millis(), TIMEOUT)?
                .into_iter()
                .collect()
        }
        None => HashMap::new(),
    };
    let consumer = reader(kafka)?;
    let mut assignment = TopicPartitionList::new();
    let mut open: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let start = starts.get(&partition).copied().unwrap_or(low).max(low);
        if start < high {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
            open.insert(partition, high);
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let mut idle_since = std::time::Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                idle_since = std::time::Instant::now();
                let (partition, offset) = (message.partition(), message.offset());
                if let Some(end) = open.get(&partition).copied() {
                    if offset < end {
                        each(message.detach());
                    }
                    if offset + 1 >= end {
                        open.remove(&partition);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => return Err(error).context(format!("reading {topic}")),
            None if idle_since.elapsed() > TIMEOUT => {
                bail!("reading {topic}: no record for {TIMEOUT:?} before the end was reached")
            }
            None => {}
        }
    }
    Ok(())
}

/// What became of one dead letter in a redrive.
fn outcome_line(letter: &DeadLetter, action: &str, extra: Value) -> Value {
    let mut line = json!({
        "action": action,
        "dead_letter": letter.id(),
        "error_code": letter.error_code,
        "consumer_group": letter.consumer_group,
        "redrive_count": letter.redrive_count,
    });
    if let (Value::Object(line), Value::Object(extra)) = (&mut line, extra) {
        line.extend(extra);
    }
    line
}

fn redrive(
    kafka: &KafkaConfig,
    topics: &Topics,
    selection: &Selection,
    dry_run: bool,
    max_redrives: u32,
    batch_size: usize,
) -> anyhow::Result<()> {
    let run_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let started_at = Utc::now();
    // Fence any earlier redrive first (its open transaction is aborted, or its commit
    // completed), then read what the ledger holds.
    let mut sender = if dry_run {
        None
    } else {
        Some(Sender::start(kafka, &topics.ledger, &run_id)?)
    };
    let ledger = Ledger::read(kafka, &topics.ledger)?;
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut refusals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for topic in chosen(selection, topics) {
        // A request of the registration retry queue has a record per try: the newest is the one
        // redriven, whatever the selection.
        let mut newest: HashMap<String, String> = HashMap::new();
        read_topic(kafka, topic, None, |message| {
            let letter = DeadLetter::parse(&message, &topics.registration);
            if let Some(key) = letter.supersede_key() {
                newest.insert(key, letter.id());
            }
        })?;
        let mut pending: Vec<(DeadLetter, Option<events::OutgoingRecord>)> = Vec::new();
        let mut failure = None;
        read_topic(kafka, topic, selection.since, |message| {
            if failure.is_some() {
                return;
            }
            let letter = DeadLetter::parse(&message, &topics.registration);
            if !selection.matches(&letter) {
                return;
            }
            if ledger.done.contains(&letter.id()) {
                *totals.entry("already_redriven").or_default() += 1;
                return;
            }
            if let Some(key) = letter.supersede_key()
                && newest.get(&key) != Some(&letter.id())
            {
                print(&outcome_line(
                    &letter,
                    "superseded",
                    json!({"by": newest.get(&key)}),
                ));
                *totals.entry("superseded").or_default() += 1;
                pending.push((letter, None));
            } else {
                match letter.redrive_record(max_redrives) {
                    Ok(record) => {
                        let action = if dry_run { "would_send" } else { "sent" };
                        print(&outcome_line(
                            &letter,
                            action,
                            json!({"to": record.topic, "key": record.key.as_deref().map(String::from_utf8_lossy)}),
                        ));
                        *totals.entry(action).or_default() += 1;
                        pending.push((letter, Some(record)));
                    }
                    Err(refusal) => {
                        print(&outcome_line(
                            &letter,
                            "refused",
                            json!({"refused": refusal.code(), "reason": refusal.to_string()}),
                        ));
                        *refusals.entry(refusal.code()).or_default() += 1;
                    }
                }
            }
            if pending.len() >= batch_size
                && let Some(sender) = &mut sender
                && let Err(error) = sender.commit(std::mem::take(&mut pending))
            {
                failure = Some(error);
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if let Some(sender) = &mut sender {
            sender.commit(std::mem::take(&mut pending))?;
        }
    }
    let audit = json!({
        "run_id": run_id,
        "dry_run": dry_run,
        "topics": chosen(selection, topics),
        "selection": selection.describe(),
        "max_redrives": max_redrives,
        "sent": totals.get("sent").copied().unwrap_or(0),
        "would_send": totals.get("would_send").copied().unwrap_or(0),
        "superseded": totals.get("superseded").copied().unwrap_or(0),
        "already_redriven": totals.get("already_redriven").copied().unwrap_or(0),
        "refused": refusals,
        "started_at": started_at,
        "finished_at": Utc::now(),
        "operator": std::env::var("USER").ok().or_else(|| std::env::var("HOSTNAME").ok()),
    });
    if let Some(sender) = &mut sender {
        sender.audit(&run_id, &audit)?;
    }
    tracing::info!(audit = %audit, "dead-letter redrive finished");
    print(&json!({ "audit": audit }));
    Ok(())
}

/// The transactional producer of one redrive: redriven records and their ledger markers.
struct Sender {
    producer: ThreadedProducer<DefaultProducerContext>,
    ledger: String,
    run_id: String,
}

impl Sender {
    fn start(kafka: &KafkaConfig, ledger: &str, run_id: &str) -> anyhow::Result<Self> {
        let producer: ThreadedProducer<DefaultProducerContext> = kafka
            .producer_client_config()
            .set("transactional.id", TRANSACTIONAL_ID)
            .create()
            .context("creating the redrive producer")?;
        producer
            .init_transactions(TIMEOUT)
            .context("starting Kafka transactions")?;
        Ok(Self {
            producer,
            ledger: ledger.to_owned(),
            run_id: run_id.to_owned(),
        })
    }

    /// Sends one batch, with a ledger marker per dead letter, as one transaction.
    fn commit(
        &mut self,
        batch: Vec<(DeadLetter, Option<events::OutgoingRecord>)>,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.producer.begin_transaction()?;
        let sent = (|| -> anyhow::Result<()> {
            for (letter, record) in &batch {
                let outcome = match record {
                    Some(record) => {
                        let mut base = BaseRecord::<Vec<u8>, Vec<u8>>::to(&record.topic)
                            .payload(&record.payload)
                            .headers(record.headers.clone());
                        if let Some(key) = &record.key {
                            base = base.key(key);
                        }
                        self.send(base)?;
                        json!({"outcome": "sent", "to": record.topic})
                    }
                    None => json!({"outcome": "superseded"}),
                };
                let mut marker = outcome;
                marker["run_id"] = json!(self.run_id);
                marker["at"] = json!(Utc::now());
                let (key, value) = (letter.id().into_bytes(), serde_json::to_vec(&marker)?);
                self.send(BaseRecord::to(&self.ledger).key(&key).payload(&value))?;
            }
            Ok(())
        })();
        let committed = sent.and_then(|()| {
            self.producer
                .commit_transaction(TIMEOUT)
                .context("committing the redrive transaction")
        });
        if let Err(error) = committed {
            let _ = self.producer.abort_transaction(TIMEOUT);
            return Err(error.context(
                "the batch was rolled back: nothing of it was sent; run the same redrive again to go on",
            ));
        }
        Ok(())
    }

    fn audit(&mut self, run_id: &str, audit: &Value) -> anyhow::Result<()> {
        self.producer.begin_transaction()?;
        let (key, value) = (
            format!("run/{run_id}").into_bytes(),
            serde_json::to_vec(audit)?,
        );
        self.send(BaseRecord::to(&self.ledger).key(&key).payload(&value))?;
        self.producer
            .commit_transaction(TIMEOUT)
            .context("writing the run's audit record")?;
        Ok(())
    }

    /// Enqueues a record, waiting while librdkafka's queue is full.
    fn send(&self, mut record: BaseRecord<'_, Vec<u8>, Vec<u8>>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(
                        events::rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((error, _)) => return Err(error).context("sending a redriven record"),
            }
        }
    }
}
