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
//! with an audit record in the ledger (key `run/<run id>`), printed too, failed or not. A
//! redrive needs the ledger topic; `list` and `show` read without it.
//!
//! The registration retry queue holds a record per try of every request that failed once: only
//! the newest try of a request PostgreSQL says ran out of retries is redriven. The same original
//! record dead-lettered twice (`DeadLetter::original_id`) is redriven once. The services read with
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
        #[arg(long, value_parser = crate::topic_name)]
        topic: String,
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        partition: i32,
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
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
    #[arg(long = "topic", value_parser = crate::topic_name)]
    topics: Vec<String>,
    /// Only this error code (`malformed_message`, `VALIDATION_ERROR`, `publish_failed`,
    /// `registration_failed`, …).
    #[arg(long)]
    error_code: Option<String>,
    /// Only dead letters of this consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Only dead letters written at or after this time (RFC 3339).
    #[arg(long, value_parser = crate::rfc3339)]
    since: Option<DateTime<Utc>>,
    /// Only dead letters written before this time (RFC 3339).
    #[arg(long, value_parser = crate::rfc3339)]
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
    if let DlqCommand::List { selection, .. } | DlqCommand::Redrive { selection, .. } =
        &args.command
        && let (Some(since), Some(until)) = (selection.since, selection.until)
        && since >= until
    {
        bail!("--since {since} is not before --until {until}: nothing could match");
    }
    // Only a redrive asks PostgreSQL (for the registration retry queue); it connects on first
    // use.
    let registrations = match &args.command {
        DlqCommand::Redrive { selection, .. }
            if selection.topics.contains(&topics.dead_letter[0]) =>
        {
            Some(RegistrationStatuses {
                registrations: repo::Registrations::new(repo::Database::connect(
                    &service_runtime::config::database_config(env, "platform-admin")?,
                )?),
                runtime: tokio::runtime::Handle::current(),
            })
        }
        _ => None,
    };
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
            registrations.as_ref(),
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
    let ledger = Ledger::read(kafka, &topics.ledger, false)?;
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
            let done = ledger.has(&letter);
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
    let partitions = events::admin::partitions(kafka, topic, TIMEOUT)?;
    if !partitions.contains(&partition) {
        bail!("{topic} has no partition {partition} (it has {partitions:?})");
    }
    let consumer = reader(kafka)?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
    if !(low..high).contains(&offset) {
        bail!(
            "{topic} partition {partition} holds offsets {low} to {} (none if empty); not {offset}",
            high - 1
        );
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) if message.offset() == offset => {
                let letter = DeadLetter::parse(&message.detach(), &topics.registration);
                let mut details = letter.details(max_redrives);
                details["redriven"] =
                    json!(Ledger::read(kafka, &topics.ledger, false)?.has(&letter));
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

/// What earlier runs did, from the ledger: the dead letters they dealt with, and the original
/// records those came from.
struct Ledger {
    done: HashSet<String>,
}

impl Ledger {
    /// A missing ledger topic is an empty ledger for `list` and `show` (`required` false); a
    /// redrive refuses to run without it, as it would send again what was sent before.
    fn read(kafka: &KafkaConfig, topic: &str, required: bool) -> anyhow::Result<Self> {
        let mut done = HashSet::new();
        match events::admin::partitions(kafka, topic, TIMEOUT) {
            Ok(_) => {}
            Err(events::EventsError::Invalid(_)) if !required => {
                tracing::warn!(%topic, "the redrive ledger topic does not exist: nothing was redriven yet");
                return Ok(Self { done });
            }
            Err(error @ events::EventsError::Invalid(_)) => {
                return Err(error).with_context(|| {
                    format!(
                        "the redrive ledger {topic} does not exist (`platform-admin create-topics` \
                         creates it): no redrive without it, or it would send again what was sent"
                    )
                });
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("reading the redrive ledger {topic}: is the broker (KAFKA_BROKERS) reachable?")
                });
            }
        }
        read_topic(kafka, topic, None, |message| {
            let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            if key.starts_with("run/") {
                return;
            }
            done.insert(key.to_owned());
            if let Some(original) = message
                .payload()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|v| v["original"].as_str().map(|o| format!("original:{o}")))
            {
                done.insert(original);
            }
        })?;
        Ok(Self { done })
    }

    /// Whether a run dealt with `letter` already, or with the record it came from.
    fn has(&self, letter: &DeadLetter) -> bool {
        self.done.contains(&letter.id())
            || letter
                .original_id()
                .is_some_and(|o| self.done.contains(&format!("original:{o}")))
    }
}

/// What became of the registrations in the retry queue, from PostgreSQL: only a request that
/// ran out of retries is dead; one that completed, or is still being retried, is not.
struct RegistrationStatuses {
    registrations: repo::Registrations,
    runtime: tokio::runtime::Handle,
}

impl RegistrationStatuses {
    fn of(&self, request_ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        let ids: Vec<uuid::Uuid> = request_ids
            .iter()
            .filter_map(|id| uuid::Uuid::try_parse(id).ok())
            .collect();
        let mut statuses = HashMap::new();
        for chunk in ids.chunks(5000) {
            let found = self
                .runtime
                .block_on(self.registrations.statuses(chunk))
                .context("reading the registration requests' statuses")?;
            for (id, (status, code)) in found {
                let status = match code {
                    Some(code) if status == "failed" => format!("failed/{code}"),
                    _ => status,
                };
                statuses.insert(id.to_string(), status);
            }
        }
        Ok(statuses)
    }
}

/// librdkafka reports the end of a partition (`enable.partition.eof`) as an error event too;
/// reading to the end is what these commands do, so only other errors are logged.
struct Reader;

impl events::rdkafka::ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

impl events::rdkafka::consumer::ConsumerContext for Reader {}

fn reader(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer<Reader>> {
    kafka
        .client_config()
        // Never committed, never joined: a name for the broker's logs only.
        .set("group.id", "platform-admin-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(Reader)
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

/// A dead letter dealt with in this run: the record sent (none: only marked, as superseded or
/// a duplicate), and the line that reports it once its transaction committed.
struct Pending {
    letter: DeadLetter,
    record: Option<events::OutgoingRecord>,
    outcome: &'static str,
    line: Value,
}

/// A try of a registration in the retry queue: tries made, when, which dead letter.
type Try = (Option<u32>, Option<DateTime<Utc>>, String);

/// The state of one run.
struct Run<'a> {
    kafka: &'a KafkaConfig,
    topics: &'a Topics,
    /// PostgreSQL's word on the registration retry queue (when that topic is named).
    registrations: Option<&'a RegistrationStatuses>,
    selection: &'a Selection,
    dry_run: bool,
    max_redrives: u32,
    batch_size: usize,
    totals: BTreeMap<&'static str, u64>,
    refusals: BTreeMap<&'static str, u64>,
    /// Dead letters (and originals) dealt with: the ledger's, and this run's as it goes.
    ledger: Ledger,
    /// Originals this run sent or is sending: a copy further on is a `duplicate`.
    originals: HashSet<String>,
}

#[allow(clippy::too_many_arguments)]
fn redrive(
    kafka: &KafkaConfig,
    topics: &Topics,
    registrations: Option<&RegistrationStatuses>,
    selection: &Selection,
    dry_run: bool,
    max_redrives: u32,
    batch_size: usize,
) -> anyhow::Result<()> {
    if selection.topics.is_empty() {
        bail!(
            "name the dead-letter topic(s) to redrive with --topic (one of {})",
            topics.dead_letter.join(", ")
        );
    }
    if let Some(other) = selection
        .topics
        .iter()
        .find(|t| !topics.dead_letter.contains(t))
    {
        bail!(
            "{other} is not a dead-letter topic of the system ({}; set REGISTRATION_DLQ_TOPIC, \
             WAITLIST_DLQ_TOPIC, ACTIVITY_DLQ_TOPIC or KAFKA_DLQ_TOPIC as the services have them)",
            topics.dead_letter.join(", ")
        );
    }
    let run_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let started_at = Utc::now();
    let mut run = Run {
        kafka,
        topics,
        registrations,
        selection,
        dry_run,
        max_redrives,
        batch_size,
        totals: BTreeMap::new(),
        refusals: BTreeMap::new(),
        ledger: Ledger {
            done: HashSet::new(),
        },
        originals: HashSet::new(),
    };
    // Fence any earlier redrive first (its open transaction is aborted, or its commit
    // completed), then read what the ledger holds.
    let mut sender = if dry_run {
        None
    } else {
        Some(Sender::start(kafka, &topics.ledger, &run_id)?)
    };
    let mut named: Vec<&String> = Vec::new();
    for topic in &selection.topics {
        if !named.contains(&topic) {
            named.push(topic);
        }
    }
    let outcome = Ledger::read(kafka, &topics.ledger, !dry_run).and_then(|ledger| {
        run.ledger = ledger;
        for topic in named {
            run.topic(topic, sender.as_mut())?;
        }
        Ok(())
    });
    let count = |key| run.totals.get(key).copied().unwrap_or(0);
    let mut audit = json!({
        "run_id": run_id,
        "outcome": if outcome.is_ok() { "completed" } else { "failed" },
        "dry_run": dry_run,
        "topics": selection.topics,
        "selection": selection.describe(),
        "max_redrives": max_redrives,
        "sent": count("sent"),
        "would_send": count("would_send"),
        "superseded": count("superseded"),
        "duplicate": count("duplicate"),
        "not_dead": count("not_dead"),
        "already_redriven": count("already_redriven"),
        "refused": run.refusals,
        "started_at": started_at,
        "finished_at": Utc::now(),
        "operator": operator(),
    });
    if let Err(error) = &outcome {
        audit["error"] = json!(format!("{error:#}"));
    }
    if let Some(sender) = &mut sender
        && let Err(error) = sender.audit(&run_id, &audit)
    {
        tracing::warn!(error = %format!("{error:#}"), "the run's audit record is not in the ledger");
    }
    tracing::info!(audit = %audit, "dead-letter redrive finished");
    print(&json!({ "audit": audit }));
    outcome
}

impl Run<'_> {
    fn topic(&mut self, topic: &str, mut sender: Option<&mut Sender>) -> anyhow::Result<()> {
        let registration_topic = &self.topics.registration;
        // A request of the registration retry queue has a record per try: only the newest goes,
        // and only if the request ran out of retries.
        // The newest try: the most tries made, then the latest; partitions are read in no
        // particular order.
        let mut tries: HashMap<String, Try> = HashMap::new();
        read_topic(self.kafka, topic, None, |message| {
            let letter = DeadLetter::parse(&message, registration_topic);
            if let Some(key) = letter.supersede_key() {
                let this = (letter.attempts, letter.timestamp, letter.id());
                let entry = tries.entry(key).or_insert_with(|| this.clone());
                if (this.0, this.1) > (entry.0, entry.1) {
                    *entry = this;
                }
            }
        })?;
        let newest: HashMap<String, String> = tries
            .into_iter()
            .map(|(key, (_, _, id))| (key, id))
            .collect();
        let statuses = match self.registrations {
            Some(registrations) if !newest.is_empty() => {
                registrations.of(&newest.keys().cloned().collect::<Vec<_>>())?
            }
            _ => HashMap::new(),
        };
        let mut pending: Vec<Pending> = Vec::new();
        let mut failure = None;
        read_topic(self.kafka, topic, self.selection.since, |message| {
            if failure.is_some() {
                return;
            }
            let letter = DeadLetter::parse(&message, registration_topic);
            if !self.selection.matches(&letter) {
                return;
            }
            if self.ledger.has(&letter) {
                *self.totals.entry("already_redriven").or_default() += 1;
                return;
            }
            if let Some(key) = letter.supersede_key() {
                if newest.get(&key) != Some(&letter.id()) {
                    let line = outcome_line(&letter, "superseded", json!({"by": newest.get(&key)}));
                    pending.push(Pending {
                        letter,
                        record: None,
                        outcome: "superseded",
                        line,
                    });
                    return self.flush_if_full(&mut pending, sender.as_deref_mut(), &mut failure);
                }
                // No row (or no database asked): not known to have run out of retries.
                let status = statuses.get(&key).map_or("unknown", String::as_str);
                if status != "failed/retries_exhausted" {
                    // Completed, refused for good, still in the dlq-retrier's hands, or unknown.
                    self.print_now(&outcome_line(
                        &letter,
                        "not_dead",
                        json!({"request_status": status}),
                    ));
                    *self.totals.entry("not_dead").or_default() += 1;
                    return;
                }
            }
            if let Some(original) = letter.original_id()
                && self.originals.contains(&original)
            {
                let line = outcome_line(&letter, "duplicate", json!({"original": original}));
                pending.push(Pending {
                    letter,
                    record: None,
                    outcome: "duplicate",
                    line,
                });
                return self.flush_if_full(&mut pending, sender.as_deref_mut(), &mut failure);
            }
            match letter.redrive_record(self.max_redrives) {
                Ok(record) if record.topic == self.topics.ledger || record.topic == topic => {
                    self.refuse(
                        &letter,
                        "forbidden_target",
                        &format!("it would go to {}", record.topic),
                    );
                }
                Ok(record) => {
                    if let Some(original) = letter.original_id() {
                        self.originals.insert(original);
                    }
                    let action = if self.dry_run { "would_send" } else { "sent" };
                    let line = outcome_line(
                        &letter,
                        action,
                        json!({"to": record.topic, "key": record.key.as_deref().map(String::from_utf8_lossy)}),
                    );
                    pending.push(Pending {
                        letter,
                        record: Some(record),
                        outcome: action,
                        line,
                    });
                    self.flush_if_full(&mut pending, sender.as_deref_mut(), &mut failure);
                }
                Err(refusal) => self.refuse(&letter, refusal.code(), &refusal.to_string()),
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        self.flush(std::mem::take(&mut pending), sender)
    }

    fn print_now(&self, line: &Value) {
        print(line);
    }

    fn refuse(&mut self, letter: &DeadLetter, code: &'static str, reason: &str) {
        print(&outcome_line(
            letter,
            "refused",
            json!({"refused": code, "reason": reason}),
        ));
        *self.refusals.entry(code).or_default() += 1;
    }

    fn flush_if_full(
        &mut self,
        pending: &mut Vec<Pending>,
        sender: Option<&mut Sender>,
        failure: &mut Option<anyhow::Error>,
    ) {
        if pending.len() >= self.batch_size
            && let Err(error) = self.flush(std::mem::take(pending), sender)
        {
            *failure = Some(error);
        }
    }

    /// Sends a batch in one transaction (nothing in a dry run), then reports it.
    fn flush(&mut self, batch: Vec<Pending>, sender: Option<&mut Sender>) -> anyhow::Result<()> {
        if let Some(sender) = sender {
            sender.commit(&batch)?;
        }
        for pending in batch {
            print(&pending.line);
            *self.totals.entry(pending.outcome).or_default() += 1;
            // Dealt with, in this run's view too (a topic named twice).
            self.ledger.done.insert(pending.letter.id());
        }
        Ok(())
    }
}

/// Who ran it, as the environment says: `USER`, `LOGNAME` or `HOSTNAME` (a pod's name).
fn operator() -> Option<String> {
    ["USER", "LOGNAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
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
            // librdkafka wants message.timeout.ms ≤ transaction.timeout.ms.
            .set(
                "transaction.timeout.ms",
                // Within the broker's transaction.max.timeout.ms (15 minutes by default).
                kafka
                    .producer
                    .delivery_timeout
                    .as_millis()
                    .clamp(60_000, 900_000)
                    .to_string(),
            )
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
    fn commit(&mut self, batch: &[Pending]) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.producer.begin_transaction()?;
        let sent = (|| -> anyhow::Result<()> {
            for pending in batch {
                let mut marker = json!({
                    "outcome": pending.outcome,
                    "run_id": self.run_id,
                    "at": Utc::now(),
                    "original": pending.letter.original_id(),
                });
                if let Some(record) = &pending.record {
                    let mut base = BaseRecord::<Vec<u8>, Vec<u8>>::to(&record.topic)
                        .payload(&record.payload)
                        .headers(record.headers.clone());
                    if let Some(key) = &record.key {
                        base = base.key(key);
                    }
                    self.send(base)?;
                    marker["to"] = json!(record.topic);
                }
                let (key, value) = (
                    pending.letter.id().into_bytes(),
                    serde_json::to_vec(&marker)?,
                );
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
                "the batch's transaction did not commit (aborted, or its outcome is unknown \
                 after a timeout): run the same redrive again; the ledger knows what was sent",
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
