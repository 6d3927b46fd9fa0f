//! The consumer runtime every worker is built on.
//!
//! - A consumer group per service; starts at the group's committed offsets (falling back to the
//!   earliest or latest), or at given offsets per partition for a replay.
//! - At least once: offsets are committed only for messages that were handled or dead-lettered,
//!   along with every earlier message of their partition (`offsets`); periodically, on revoke
//!   and on shutdown.
//! - `run`: `worker_pool_size` handlers in flight, messages of one key always in order (each
//!   key maps to one worker). `run_batches`: batches flushed by size, max wait or idle time.
//! - Handlers say `retry` (transient) or `reject` (permanent). Retries back off exponentially
//!   up to `retry.max_attempts`; rejected, exhausted and undecodable messages go to the DLQ
//!   topic with their original key, value and headers plus where they came from and why. A bad
//!   message never stops the loop.
//! - Backpressure: past `max_in_flight` unfinished messages the partitions are paused, and
//!   resumed at half of it, instead of buffering without bound; librdkafka keeps polling, so
//!   the member stays in the group.
//! - Shutdown: stop taking messages, let the handlers running finish within `shutdown_timeout`;
//!   a retry or outage back-off ends at once, leaving its message uncommitted for the next
//!   member; commit, leave the group.
//! - Lag: each member reports its whole group's lag per partition (`kafka_consumer_group_lag`),
//!   partitions it holds or not, so an idle member still shows it.
//! - A record redriven for another group (`redrive_group` header, see `crate::redrive`) is
//!   skipped: only the group that failed it handles it again.
//! - A handler that panics fails that message (dead-lettered with the panic's message); a
//!   batch handler that panics has its batch split until the message that panics is alone.
//! - A batch whose write fails is split in halves, and those again, so that only the
//!   messages that cause the failure are retried and dead-lettered; the others are stored once.
//! - Dead letters fit the broker's limit: a value too large is cut (`value_truncated`,
//!   `original_value_bytes` headers), and dropped (`value_dropped`) if the broker still
//!   refuses the record.
//! - A dead-letter limit (`DlqLimit`, in the spirit of Sentry arroyo's): past a ratio of dead
//!   letters in a window, the consumer stops taking messages and dead-lettering, and
//!   `ConsumerHealth` says why (`/readyz`). A consumer with messages in flight and none
//!   finished for `stall_after` says so as well (`kafka_consumer_stalled`).

mod batch;
mod context;
pub mod dead_letter;
mod offsets;

use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use batch::BatchClock;
pub use batch::{BatchPolicy, FlushReason};
use context::{RuntimeContext, commit_list};
use dead_letter::ValuePolicy;
use offsets::{OffsetTracker, Partition};

use crate::{Backoff, EventsError, KafkaConfig, Producer, headers};

/// Where a group starts reading.
#[derive(Debug, Clone, PartialEq)]
pub enum StartFrom {
    /// The group's committed offsets; where it has none, the earliest (`true`) or the latest.
    Committed { earliest_when_none: bool },
    /// These offsets, for a replay: the partitions are assigned, not balanced in the group.
    Offsets(Vec<(String, i32, Offset)>),
}

/// How often and how patiently a failing handler is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
    /// Handlers in flight at once (`run`); messages of one key always go to the same one.
    pub worker_pool_size: usize,
    /// Unfinished messages past which the partitions are paused.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    pub dlq_topic: String,
    /// How long in-flight messages may take once shutdown starts.
    pub shutdown_timeout: Duration,
    pub commit_interval: Duration,
    /// How dead letters carry their reason.
    pub dead_letter_format: dead_letter::DeadLetterFormat,
    /// Waits between tries while a dependency is unavailable (not counted as attempts).
    pub outage_backoff: Backoff,
    /// The largest dead letter, in bytes (key, value and headers); a larger one has its value
    /// cut. Below the broker's `message.max.bytes` (1 MiB by default).
    pub dead_letter_max_bytes: usize,
    /// When dead-lettering is a runaway rather than a few bad messages.
    pub dlq_limit: DlqLimit,
    /// With messages in flight and none finished for this long, the consumer reports itself
    /// stalled.
    pub stall_after: Duration,
    /// How often the member reports its group's lag on every partition of its topics
    /// (`kafka_consumer_group_lag`), held or not.
    pub lag_report_interval: Duration,
}

/// A bound on dead-lettering, in the spirit of Sentry arroyo's `DlqLimit`: a bug that rejects
/// every message (a bad deploy) must not quietly move a whole topic into the DLQ. Once, within
/// `window`, at least `min_count` messages were dead-lettered and they are at least
/// `max_ratio` of the messages finished, the consumer stops: it takes no more messages and
/// dead-letters nothing more (what is in flight stays uncommitted), and its `ConsumerHealth`
/// reports the reason until the process is restarted (after the fix is deployed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DlqLimit {
    /// A ratio of dead letters to finished messages, 0 to 1; above 1 the limit is off.
    pub max_ratio: f64,
    /// Dead letters in the window below which the ratio is not looked at.
    pub min_count: u64,
    pub window: Duration,
}

impl Default for DlqLimit {
    /// Half of the messages of the last minute, once there are at least 100 dead letters.
    fn default() -> Self {
        Self {
            max_ratio: 0.5,
            min_count: 100,
            window: Duration::from_secs(60),
        }
    }
}

impl ConsumerSettings {
    pub fn new(group_id: impl Into<String>, topics: &[&str], dlq_topic: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            start: StartFrom::Committed {
                earliest_when_none: true,
            },
            worker_pool_size: 1,
            max_in_flight: 1000,
            retry: RetryPolicy::default(),
            dlq_topic: dlq_topic.into(),
            shutdown_timeout: Duration::from_secs(8),
            commit_interval: Duration::from_secs(1),
            dead_letter_format: dead_letter::DeadLetterFormat::default(),
            outage_backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            dead_letter_max_bytes: 900_000,
            dlq_limit: DlqLimit::default(),
            stall_after: Duration::from_secs(300),
            lag_report_interval: Duration::from_secs(15),
        }
    }
}

/// Counts of the last `window` in one-second buckets: finished messages and dead letters.
#[derive(Debug)]
struct DlqGuard {
    limit: DlqLimit,
    started: Instant,
    state: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    /// (second since start, finished, dead-lettered)
    buckets: VecDeque<(u64, u64, u64)>,
    tripped: Option<String>,
}

impl DlqGuard {
    fn new(limit: DlqLimit) -> Self {
        Self {
            limit,
            started: Instant::now(),
            state: Mutex::new(GuardState::default()),
        }
    }

    fn bucket<'s>(&self, state: &'s mut GuardState) -> &'s mut (u64, u64, u64) {
        let now = self.started.elapsed().as_secs();
        let window = self.limit.window.as_secs().max(1);
        while state
            .buckets
            .front()
            .is_some_and(|(second, _, _)| second + window <= now)
        {
            state.buckets.pop_front();
        }
        if state
            .buckets
            .back()
            .is_none_or(|(second, _, _)| *second != now)
        {
            state.buckets.push_back((now, 0, 0));
        }
        state.buckets.back_mut().expect("just pushed")
    }

    fn handled(&self, n: u64) {
        let mut state = self.state.lock().expect("dlq guard lock");
        self.bucket(&mut state).1 += n;
    }

    /// Counts one more dead letter, or refuses it (and trips) when it would pass the limit.
    fn admit_dead_letter(&self) -> Result<(), String> {
        let mut state = self.state.lock().expect("dlq guard lock");
        if let Some(reason) = &state.tripped {
            return Err(reason.clone());
        }
        self.bucket(&mut state);
        let (finished, dead) = state
            .buckets
            .iter()
            .fold((1, 1), |(f, d), (_, bf, bd)| (f + bf, d + bd));
        let ratio = dead as f64 / finished as f64;
        if dead >= self.limit.min_count && ratio >= self.limit.max_ratio {
            let reason = format!(
                "dead-letter limit reached: {dead} of the last {finished} messages within {:?} \
                 would be dead-lettered (limit: ratio {}, at least {}); stopped taking messages",
                self.limit.window, self.limit.max_ratio, self.limit.min_count
            );
            state.tripped = Some(reason.clone());
            return Err(reason);
        }
        let bucket = self.bucket(&mut state);
        bucket.1 += 1;
        bucket.2 += 1;
        Ok(())
    }

    fn tripped(&self) -> Option<String> {
        self.state.lock().expect("dlq guard lock").tripped.clone()
    }
}

/// Whether a consumer is making progress, for `/readyz`: cheap to clone, shared with the
/// consumer's runtime.
#[derive(Debug, Clone)]
pub struct ConsumerHealth {
    group_id: String,
    guard: Arc<DlqGuard>,
    stalled: Arc<Mutex<Option<String>>>,
}

impl ConsumerHealth {
    /// `None` while the consumer makes progress; otherwise why it does not: the dead-letter
    /// limit was reached, or messages are in flight and none finished for `stall_after`.
    pub fn problem(&self) -> Option<String> {
        self.guard
            .tripped()
            .or_else(|| self.stalled.lock().expect("stalled lock").clone())
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Whether the problem of [`ConsumerHealth::problem`] is the dead-letter limit (the
    /// consumer stopped on purpose) rather than a stall.
    pub fn dlq_limit_reached(&self) -> bool {
        self.guard.tripped().is_some()
    }
}

/// Whether a failure may pass (retry), will repeat (reject), or says nothing about the message
/// because a dependency is down (unavailable). `Transient` is a retry that says nothing about
/// which message of a batch caused it (a lock timeout, a deadlock): a batch that fails so is
/// tried again whole after a back-off, and split only if it fails again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Retry,
    Transient,
    Reject,
    Unavailable,
}

impl FailureKind {
    /// Worth another try of the same message.
    fn retries(self) -> bool {
        matches!(self, Self::Retry | Self::Transient)
    }
}

/// A handler's failure: what to do, a stable code and a message for the DLQ headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandlerError {
    pub kind: FailureKind,
    pub code: String,
    pub message: String,
}

impl HandlerError {
    /// Transient: the database was down, a service timed out. Retried with backoff.
    pub fn retry(code: impl Into<String>, message: impl ToString) -> Self {
        Self {
            kind: FailureKind::Retry,
            code: code.into(),
            message: message.to_string(),
        }
    }

    /// Transient, and not caused by one message more than another (a lock or statement
    /// timeout, a deadlock, a serialization failure): a batch is tried again whole after a
    /// back-off before it is split to find a message that causes it. For a single message, the
    /// same as `retry`.
    pub fn transient(code: impl Into<String>, message: impl ToString) -> Self {
        Self {
            kind: FailureKind::Transient,
            code: code.into(),
            message: message.to_string(),
        }
    }

    /// A dependency (the database) is unreachable: the message is held and tried again with
    /// backoff until it is back, however long that takes. Such tries do not count towards
    /// `max_attempts`, so an outage never turns into dead letters.
    pub fn unavailable(code: impl Into<String>, message: impl ToString) -> Self {
        Self {
            kind: FailureKind::Unavailable,
            code: code.into(),
            message: message.to_string(),
        }
    }

    /// Permanent: the message is invalid and always will be. Dead-lettered at once.
    pub fn reject(code: impl Into<String>, message: impl ToString) -> Self {
        Self {
            kind: FailureKind::Reject,
            code: code.into(),
            message: message.to_string(),
        }
    }
}

/// Handles one message; must be idempotent, since rebalances and restarts replay messages.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError>;
}

/// Handles a batch; returns one outcome per message, in order.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Vec<Result<(), HandlerError>>;
}

/// A consumer group member with its runtime.
pub struct EventConsumer {
    consumer: StreamConsumer<RuntimeContext>,
    kafka: KafkaConfig,
    settings: ConsumerSettings,
    producer: Producer,
    tracker: Arc<Mutex<OffsetTracker>>,
    health: ConsumerHealth,
    /// When a message last finished (or the consumer started).
    last_progress: Mutex<Instant>,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A finished message: handled or dead-lettered.
type Finished = (Partition, i64);

impl EventConsumer {
    /// Joins the group (or assigns the replay offsets). `producer` writes the dead letters.
    pub fn new(
        kafka: &KafkaConfig,
        settings: ConsumerSettings,
        producer: Producer,
    ) -> Result<Self, EventsError> {
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let context = RuntimeContext {
            group_id: settings.group_id.clone(),
            tracker: tracker.clone(),
        };
        let reset = match settings.start {
            StartFrom::Committed {
                earliest_when_none: false,
            } => "latest",
            _ => "earliest",
        };
        let consumer: StreamConsumer<RuntimeContext> = kafka
            .client_config()
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            // Seed 000: a member that misses heartbeats for 20 s is replaced.
            .set("session.timeout.ms", "20000")
            .set("heartbeat.interval.ms", "6000")
            .set("statistics.interval.ms", "5000")
            // Prefetch bounded by what a worker needs (batches of a thousand small records), not
            // librdkafka's defaults of 64 MiB queued and 50 MiB fetch responses, which are most
            // of a worker's memory on a topic with a backlog; and fetching again 20 ms after the
            // queue drained below the bound rather than librdkafka's 1 s, which would stall a
            // consumer that keeps up.
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.max.bytes", "8388608")
            .set("fetch.queue.backoff.ms", "20")
            .create_with_context(context)
            .map_err(EventsError::Config)?;
        match &settings.start {
            StartFrom::Committed { .. } => {
                let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
                consumer.subscribe(&topics).map_err(EventsError::Config)?;
            }
            StartFrom::Offsets(offsets) => {
                let mut list = TopicPartitionList::new();
                for (topic, partition, offset) in offsets {
                    list.add_partition_offset(topic, *partition, *offset)
                        .map_err(EventsError::Config)?;
                }
                consumer.assign(&list).map_err(EventsError::Config)?;
            }
        }
        let health = ConsumerHealth {
            group_id: settings.group_id.clone(),
            guard: Arc::new(DlqGuard::new(settings.dlq_limit)),
            stalled: Arc::new(Mutex::new(None)),
        };
        Ok(Self {
            consumer,
            kafka: kafka.clone(),
            settings,
            producer,
            tracker,
            health,
            last_progress: Mutex::new(Instant::now()),
        })
    }

    /// The consumer's progress report, for readiness.
    pub fn health(&self) -> ConsumerHealth {
        self.health.clone()
    }

    /// Handles messages one by one on the worker pool until `shutdown` is cancelled.
    pub async fn run<H: Handler>(
        self,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), EventsError> {
        let handler = Arc::new(handler);
        let _lag_reporter = self.report_group_lag(shutdown.clone());
        let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
        let mut lanes = Vec::new();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.settings.worker_pool_size.max(1) {
            let (lane_tx, mut lane) = mpsc::unbounded_channel::<OwnedMessage>();
            lanes.push(lane_tx);
            let worker = Worker::new(&self, finished_tx.clone(), shutdown.clone());
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            workers.spawn(async move {
                loop {
                    // At shutdown, messages not started stay uncommitted for the next member.
                    let message = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        message = lane.recv() => match message {
                            Some(message) => message,
                            None => break,
                        },
                    };
                    worker.process(&message, |m| handler.handle(m)).await;
                }
            });
        }
        drop(finished_tx);

        let mut commit_tick = tokio::time::interval(self.settings.commit_interval);
        let mut paused = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((partition, offset)) = finished.recv() => self.finish(&partition, offset),
                _ = commit_tick.tick() => {
                    self.commit(CommitMode::Async);
                    paused = self.watch_progress(paused);
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        let message = message.detach();
                        self.track(&message);
                        if self.redriven_for_another_group(&message) {
                            continue;
                        }
                        lanes[lane_of(&message, lanes.len())].send(message).expect("workers outlive the loop");
                    }
                    Err(error) => {
                        tracing::warn!(%error, group = %self.settings.group_id, "consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            paused = self.apply_backpressure(paused);
        }

        // Shutdown: no new messages; the handlers running get until the deadline, back-offs end
        // at once.
        drop(lanes);
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        loop {
            tokio::select! {
                Some((partition, offset)) = finished.recv() => self.finish(&partition, offset),
                joined = workers.join_next() => if joined.is_none() { break },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        in_flight = self.in_flight(),
                        "shutdown deadline reached; abandoning in-flight messages"
                    );
                    break;
                }
            }
        }
        workers.abort_all();
        while let Ok((partition, offset)) = finished.try_recv() {
            self.finish(&partition, offset);
        }
        self.commit(CommitMode::Sync);
        tracing::info!(group = %self.settings.group_id, "consumer stopped");
        Ok(())
    }

    /// Handles messages in batches until `shutdown` is cancelled.
    ///
    /// One batch is written at a time while the next one fills; once the next one is full too,
    /// the loop stops taking messages (they wait in the client's fetch queue, so the next batch
    /// is there as soon as the write ends). A write still running after [`HOLD_BEFORE_PAUSE`]
    /// (a handler saying `unavailable` holds its batch until the database is back) pauses the
    /// partitions instead, and the loop polls again: consumption is held without leaving the
    /// group, heartbeats and rebalances are served. Pausing is not the first resort because the
    /// client drops a paused partition's fetched messages and fetches them again on resume.
    pub async fn run_batches<B: BatchHandler>(
        self,
        handler: B,
        policy: BatchPolicy,
        shutdown: CancellationToken,
    ) -> Result<(), EventsError> {
        let _lag_reporter = self.report_group_lag(shutdown.clone());
        let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
        let worker = Worker::new(&self, finished_tx, shutdown.clone());
        let mut batch = Vec::new();
        let mut clock = BatchClock::new(policy);
        let mut commit_tick = tokio::time::interval(self.settings.commit_interval);
        let group = self.settings.group_id.clone();
        let start_flush = |batch: &mut Vec<OwnedMessage>,
                           clock: &mut BatchClock,
                           reason: FlushReason| {
            metrics::histogram!("kafka_consumer_batch_size", "group" => group.clone(), "reason" => reason.as_str())
                .record(batch.len() as f64);
            clock.reset();
            Box::pin(worker.process_batch(std::mem::take(batch), &handler))
        };
        let mut writing = None;
        let mut paused = false;
        let mut held_since: Option<Instant> = None;
        loop {
            let deadline = if writing.is_none() {
                clock.deadline()
            } else {
                None
            };
            // A full batch waits for the write in progress: take no more messages for now.
            let holding = writing.is_some() && clock.is_full() && !paused;
            if holding {
                held_since.get_or_insert_with(Instant::now);
            } else {
                held_since = None;
            }
            let pause_at = held_since.map(|since| since + HOLD_BEFORE_PAUSE);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((partition, offset)) = finished.recv() => self.finish(&partition, offset),
                () = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    if paused && self.health.guard.tripped().is_none() {
                        paused = !self.set_paused(false);
                    }
                    if let Some(reason) = clock.due(Instant::now()) {
                        writing = Some(start_flush(&mut batch, &mut clock, reason));
                    }
                }
                _ = commit_tick.tick() => {
                    self.commit(CommitMode::Async);
                    paused = self.watch_progress(paused);
                }
                () = sleep_until(deadline.map(|(at, _)| at)) => {
                    let reason = deadline.map_or(FlushReason::Idle, |(_, reason)| reason);
                    writing = Some(start_flush(&mut batch, &mut clock, reason));
                }
                () = sleep_until(pause_at) => {
                    tracing::debug!(group = %self.settings.group_id, "a write outlasts the hold; pausing the partitions");
                    paused = self.set_paused(true);
                }
                received = self.consumer.recv(), if !holding => match received {
                    Ok(message) => {
                        let message = message.detach();
                        self.track(&message);
                        if self.redriven_for_another_group(&message) {
                            continue;
                        }
                        batch.push(message);
                        if let Some(reason) = clock.push(Instant::now())
                            && writing.is_none()
                        {
                            writing = Some(start_flush(&mut batch, &mut clock, reason));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, group = %self.settings.group_id, "consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }

        // Shutdown: finish the write in progress and the batch that was filling, within the
        // deadline; what is left unwritten is not committed and will be redelivered.
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        let drain = async {
            if let Some(write) = writing.take() {
                write.await;
            }
            if !batch.is_empty() {
                start_flush(&mut batch, &mut clock, FlushReason::Shutdown).await;
            }
        };
        if tokio::time::timeout_at(deadline, drain).await.is_err() {
            tracing::warn!("shutdown deadline reached; abandoning the batch being written");
        }
        while let Ok((partition, offset)) = finished.try_recv() {
            self.finish(&partition, offset);
        }
        self.commit(CommitMode::Sync);
        tracing::info!(group = %self.settings.group_id, "consumer stopped");
        Ok(())
    }

    /// Every `lag_report_interval` until `shutdown`: the group's lag on every partition of
    /// the member's topics, as the gauge `kafka_consumer_group_lag{group, topic, partition}`.
    /// Every member reports the whole group's lag, partitions it holds or not, so a member left
    /// idle (more members than partitions) still shows it to an autoscaler; aggregate with
    /// `max by (group, topic, partition)`. A member on replay offsets reports nothing.
    fn report_group_lag(&self, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        if !matches!(self.settings.start, StartFrom::Committed { .. }) {
            return None;
        }
        let probe = match crate::admin::GroupProbe::new(&self.kafka, &self.settings.group_id) {
            Ok(probe) => Arc::new(probe),
            Err(error) => {
                tracing::warn!(%error, "no group lag reports: the offsets client could not be created");
                return None;
            }
        };
        let (group, topics) = (self.settings.group_id.clone(), self.settings.topics.clone());
        let every = self
            .settings
            .lag_report_interval
            .max(Duration::from_secs(1));
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (probe, topics_read) = (probe.clone(), topics.clone());
                let read = tokio::task::spawn_blocking(move || {
                    probe.lag(Some(&topics_read), Duration::from_secs(5))
                })
                .await;
                match read {
                    Ok(Ok(lags)) => {
                        for lag in lags {
                            metrics::gauge!(
                                "kafka_consumer_group_lag",
                                "group" => group.clone(),
                                "topic" => lag.topic,
                                "partition" => lag.partition.to_string()
                            )
                            .set(lag.lag as f64);
                        }
                    }
                    Ok(Err(error)) => {
                        // The gauge keeps its last value: count the failure, so a frozen lag
                        // can be told from a steady one.
                        metrics::counter!("kafka_consumer_group_lag_read_errors_total", "group" => group.clone()).increment(1);
                        tracing::warn!(%error, %group, "the group's lag could not be read");
                    }
                    Err(error) => tracing::warn!(%error, %group, "the group lag reader failed"),
                }
            }
        }))
    }

    fn track(&self, message: &OwnedMessage) {
        metrics::counter!("kafka_consumer_messages_consumed_total", "group" => self.settings.group_id.clone()).increment(1);
        let partition = (message.topic().to_owned(), message.partition());
        self.tracker
            .lock()
            .expect("offset tracker lock")
            .dispatched(partition, message.offset());
    }

    /// A record an operator redrove for another group (its `redrive_group` header names that
    /// group): finished at once, unhandled, as if handled. Every group on a topic sees a
    /// redriven record; only the group that failed it takes it.
    fn redriven_for_another_group(&self, message: &OwnedMessage) -> bool {
        let Some(group) = message
            .headers()
            .and_then(|h| headers::header_str(h, crate::redrive::REDRIVE_GROUP))
        else {
            return false;
        };
        if group == self.settings.group_id {
            return false;
        }
        metrics::counter!("kafka_consumer_messages_skipped_total", "group" => self.settings.group_id.clone(), "reason" => "redriven_for_another_group").increment(1);
        self.finish(
            &(message.topic().to_owned(), message.partition()),
            message.offset(),
        );
        true
    }

    fn finish(&self, partition: &Partition, offset: i64) {
        self.tracker
            .lock()
            .expect("offset tracker lock")
            .finished(partition, offset);
        *self.last_progress.lock().expect("progress lock") = Instant::now();
    }

    /// Once a second: pauses for good when the dead-letter limit was reached, and reports a
    /// stall (messages in flight, none finished for `stall_after`). Returns whether paused.
    fn watch_progress(&self, paused: bool) -> bool {
        let group = self.settings.group_id.clone();
        let tripped = self.health.guard.tripped();
        metrics::gauge!("kafka_consumer_dlq_limit_reached", "group" => group.clone())
            .set(if tripped.is_some() { 1.0 } else { 0.0 });
        let mut paused = paused;
        if let Some(reason) = &tripped {
            if !paused {
                tracing::error!(group = %group, reason = %reason, "dead-letter limit reached; no more messages are taken until a restart");
            }
            // Every tick: partitions assigned after a rebalance come unpaused.
            paused = self.set_paused(true) || paused;
        }
        let in_flight = self.in_flight();
        let idle = self.last_progress.lock().expect("progress lock").elapsed();
        let stalled = (in_flight > 0 && idle >= self.settings.stall_after).then(|| {
            format!(
                "{in_flight} message(s) in flight and none finished for {}s",
                idle.as_secs()
            )
        });
        metrics::gauge!("kafka_consumer_stalled", "group" => group.clone())
            .set(if stalled.is_some() { 1.0 } else { 0.0 });
        let mut current = self.health.stalled.lock().expect("stalled lock");
        if stalled.is_some() && current.is_none() {
            tracing::error!(group = %group, in_flight, idle_seconds = idle.as_secs(), "consumer stalled: no message finished");
        }
        *current = stalled;
        paused
    }

    fn in_flight(&self) -> usize {
        self.tracker
            .lock()
            .expect("offset tracker lock")
            .in_flight()
    }

    /// Commits every position that moved since the last commit.
    fn commit(&self, mode: CommitMode) {
        let commits = self
            .tracker
            .lock()
            .expect("offset tracker lock")
            .take_commits();
        if commits.is_empty() {
            return;
        }
        let result = commit_list(&commits).and_then(|list| self.consumer.commit(&list, mode));
        if let Err(error) = result {
            tracing::warn!(%error, group = %self.settings.group_id, "commit failed; will retry");
        }
    }

    /// Pauses the assigned partitions past `max_in_flight`, resumes them at half of it.
    fn apply_backpressure(&self, paused: bool) -> bool {
        let in_flight = self.in_flight();
        let change = if !paused && in_flight >= self.settings.max_in_flight {
            Some(true)
        } else if paused
            && in_flight <= self.settings.max_in_flight / 2
            && self.health.guard.tripped().is_none()
        {
            Some(false)
        } else {
            None
        };
        let Some(pause) = change else { return paused };
        tracing::debug!(in_flight, pause, "backpressure");
        if self.set_paused(pause) {
            pause
        } else {
            paused
        }
    }

    /// Pauses or resumes every assigned partition; whether that worked.
    fn set_paused(&self, pause: bool) -> bool {
        let result = self.consumer.assignment().and_then(|assigned| {
            if pause {
                self.consumer.pause(&assigned)
            } else {
                self.consumer.resume(&assigned)
            }
        });
        metrics::gauge!("kafka_consumer_paused", "group" => self.settings.group_id.clone())
            .set(if pause { 1.0 } else { 0.0 });
        match result {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, pause, "could not pause or resume partitions");
                false
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The worker a message goes to: one per key, so a key's messages stay in order.
fn lane_of(message: &OwnedMessage, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    message.topic().hash(&mut hasher);
    match message.key() {
        Some(key) => key.hash(&mut hasher),
        None => message.partition().hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

/// Runs handlers with the retry policy, dead-letters what fails, reports what is finished.
struct Worker {
    group_id: String,
    retry: RetryPolicy,
    dlq_topic: String,
    dead_letter_format: dead_letter::DeadLetterFormat,
    dead_letter_max_bytes: usize,
    outage_backoff: Backoff,
    producer: Producer,
    guard: Arc<DlqGuard>,
    shutdown: CancellationToken,
    finished: mpsc::UnboundedSender<Finished>,
}

/// Messages of a batch written together (see `Worker::process_batch`).
struct Group {
    messages: Vec<OwnedMessage>,
    attempts: u32,
    narrowing: bool,
}

/// The code of a handler that panicked.
const HANDLER_PANICKED: &str = "handler_panicked";

/// How long `run_batches` holds a full batch without taking messages while the previous one is
/// written, before it pauses the partitions and polls again: well inside librdkafka's
/// `max.poll.interval.ms` (5 minutes), well above a healthy write (milliseconds).
pub const HOLD_BEFORE_PAUSE: Duration = Duration::from_secs(2);

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("the handler panicked: {text}")
}

impl Worker {
    fn new(
        consumer: &EventConsumer,
        finished: mpsc::UnboundedSender<Finished>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            group_id: consumer.settings.group_id.clone(),
            retry: consumer.settings.retry,
            dlq_topic: consumer.settings.dlq_topic.clone(),
            dead_letter_format: consumer.settings.dead_letter_format,
            dead_letter_max_bytes: consumer.settings.dead_letter_max_bytes,
            outage_backoff: consumer.settings.outage_backoff,
            producer: consumer.producer.clone(),
            guard: consumer.health.guard.clone(),
            shutdown,
            finished,
        }
    }

    /// Sleeps for `delay`; `false` when shutdown came first (the caller leaves its message
    /// unfinished, so it is not committed).
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    async fn process<'m, F, Fut>(&self, message: &'m OwnedMessage, handle: F)
    where
        F: Fn(&'m OwnedMessage) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let mut attempt = 0;
        let mut outage = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = std::panic::AssertUnwindSafe(handle(message))
                .catch_unwind()
                .instrument(headers::message_span(&self.group_id, message))
                .await
                .unwrap_or_else(|panic| {
                    Err(HandlerError::reject(
                        HANDLER_PANICKED,
                        panic_message(&*panic),
                    ))
                });
            metrics::histogram!("kafka_consumer_handler_duration_seconds", "group" => self.group_id.clone())
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(()) => {
                    self.count("kafka_consumer_messages_handled_total");
                    self.guard.handled(1);
                    break;
                }
                Err(error) if error.kind == FailureKind::Unavailable => {
                    attempt -= 1;
                    outage += 1;
                    if !self.wait_out_outage(&error, outage).await {
                        return;
                    }
                }
                Err(error) if error.kind.retries() && attempt < self.retry.max_attempts => {
                    self.count("kafka_consumer_messages_retried_total");
                    if !self.pause(self.retry.backoff.delay(attempt)).await {
                        return;
                    }
                }
                Err(error) => {
                    if !self.dead_letter(message, &error, attempt).await {
                        return;
                    }
                    break;
                }
            }
        }
        self.done(message);
    }

    /// Runs the batch handler. Messages that fail with `retry` are tried again: a group of
    /// several is split in halves at once (so the messages that cause a failure are narrowed
    /// down, and the others are written once); a group that fails `transient` is first tried
    /// again whole after a back-off, and split if it fails again; a single message backs off
    /// and is tried up to `max_attempts` times. Rejected and exhausted messages are
    /// dead-lettered. At shutdown the groups not yet written are left unfinished.
    async fn process_batch<B: BatchHandler>(&self, messages: Vec<OwnedMessage>, handler: &B) {
        // Groups to write now: messages, the attempts they have had, and whether the group is
        // being narrowed down (then any failure splits it). Single messages that failed wait
        // for the round's back-off, so one bad message does not hold the rest.
        let mut groups: Vec<Group> = vec![Group {
            messages,
            attempts: 0,
            narrowing: false,
        }];
        let mut outage = 0;
        loop {
            let mut waiting: Vec<Group> = Vec::new();
            while let Some(group) = groups.pop() {
                if self.shutdown.is_cancelled() {
                    return;
                }
                let attempt = group.attempts + 1;
                let started = Instant::now();
                let outcomes = std::panic::AssertUnwindSafe(handler.handle_batch(&group.messages))
                    .catch_unwind()
                    .instrument(headers::batch_span(&self.group_id, &group.messages))
                    .await
                    .unwrap_or_else(|panic| {
                        let message = panic_message(&*panic);
                        // Split until the message that panics is alone; then it is rejected.
                        let error = if group.messages.len() > 1 {
                            HandlerError::retry(HANDLER_PANICKED, message)
                        } else {
                            HandlerError::reject(HANDLER_PANICKED, message)
                        };
                        vec![Err(error); group.messages.len()]
                    });
                metrics::histogram!("kafka_consumer_handler_duration_seconds", "group" => self.group_id.clone())
                    .record(started.elapsed().as_secs_f64());
                // A dependency is down: hold the group, do not count the try.
                if let Some(Err(error)) = outcomes
                    .iter()
                    .find(|outcome| matches!(outcome, Err(e) if e.kind == FailureKind::Unavailable))
                {
                    outage += 1;
                    if !self.wait_out_outage(error, outage).await {
                        return;
                    }
                    groups.push(group);
                    continue;
                }
                outage = 0;
                let several = group.messages.len() > 1;
                let mut retry = Vec::new();
                let mut transient = false;
                let mut handled = 0;
                for (index, message) in group.messages.into_iter().enumerate() {
                    let outcome = outcomes.get(index).cloned().unwrap_or_else(|| {
                        Err(HandlerError::retry(
                            "missing_outcome",
                            "the batch handler returned too few outcomes",
                        ))
                    });
                    match outcome {
                        Ok(()) => {
                            handled += 1;
                            self.done(&message);
                        }
                        // Splitting is not a new attempt: the halves are tried as they are.
                        Err(error) if error.kind.retries() && several => {
                            transient |= error.kind == FailureKind::Transient;
                            retry.push(message);
                        }
                        Err(error) if error.kind.retries() && attempt < self.retry.max_attempts => {
                            retry.push(message);
                        }
                        Err(error) => {
                            if !self.dead_letter(&message, &error, attempt).await {
                                return;
                            }
                            self.done(&message);
                        }
                    }
                }
                self.count_n("kafka_consumer_messages_handled_total", handled);
                self.guard.handled(handled as u64);
                if retry.is_empty() {
                    continue;
                }
                self.count_n("kafka_consumer_messages_retried_total", retry.len());
                if retry.len() > 1 && transient && !group.narrowing {
                    // Perhaps a passing failure of the database: once more, whole, later.
                    waiting.push(Group {
                        messages: retry,
                        attempts: attempt,
                        narrowing: true,
                    });
                } else if retry.len() > 1 {
                    let second = retry.split_off(retry.len() / 2);
                    // The first half is written first (a stack: pushed last).
                    for messages in [second, retry] {
                        groups.push(Group {
                            messages,
                            attempts: group.attempts,
                            narrowing: true,
                        });
                    }
                } else {
                    waiting.push(Group {
                        messages: retry,
                        attempts: attempt,
                        narrowing: true,
                    });
                }
            }
            let Some(fewest) = waiting.iter().map(|g| g.attempts).min() else {
                return;
            };
            if !self.pause(self.retry.backoff.delay(fewest)).await {
                return;
            }
            waiting.reverse();
            groups = waiting;
        }
    }

    /// Writes the dead letter, trying until it is stored: a message is never finished (and its
    /// offset never committed) without being either handled or in the DLQ. A record the broker
    /// refuses as too large is sent again without the original value. `false` when it was not
    /// written: shutdown came first, or the dead-letter limit was reached (the consumer stops).
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        error: &HandlerError,
        attempts: u32,
    ) -> bool {
        if let Err(reason) = self.guard.admit_dead_letter() {
            tracing::error!(group = %self.group_id, %reason, kafka.offset = message.offset(), "not dead-lettering: the dead-letter limit was reached; the message stays uncommitted");
            // Held until shutdown: nothing more moves to the DLQ, nothing is committed.
            self.shutdown.cancelled().await;
            return false;
        }
        let mut policy = ValuePolicy::FitTo {
            max_bytes: self.dead_letter_max_bytes,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let record = dead_letter::dead_letter_record(
                message,
                error,
                attempts,
                &self.group_id,
                &self.dlq_topic,
                self.dead_letter_format,
                policy,
            );
            // At shutdown the send is abandoned: the message stays uncommitted (if the record
            // was delivered after all, the next member dead-letters it again).
            let sent = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return false,
                sent = self.producer.deliver(record) => sent,
            };
            match sent {
                Ok(_) => break,
                Err(publish_error)
                    if publish_error.is_too_large() && policy != ValuePolicy::Drop =>
                {
                    tracing::warn!(%publish_error, "the dead letter is too large for the broker; sending it without the value");
                    policy = ValuePolicy::Drop;
                }
                Err(publish_error) => {
                    tracing::error!(%publish_error, "could not write a dead letter; retrying");
                    if !self.pause(self.retry.backoff.delay(tries)).await {
                        return false;
                    }
                }
            }
        }
        self.count("kafka_consumer_messages_dead_lettered_total");
        tracing::warn!(
            kafka.topic = message.topic(),
            kafka.partition = message.partition(),
            kafka.offset = message.offset(),
            error.code = %error.code,
            attempts,
            "message dead-lettered"
        );
        true
    }

    /// Waits before the next try while a dependency is down; the wait grows to the backoff's
    /// ceiling and stays there. `false` when shutdown came first.
    async fn wait_out_outage(&self, error: &HandlerError, outage: u32) -> bool {
        self.count("kafka_consumer_dependency_unavailable_total");
        let delay = self.outage_backoff.delay(outage);
        tracing::warn!(error.code = %error.code, error.message = %error.message, ?delay, tries = outage, "dependency unavailable; holding the message(s)");
        self.pause(delay).await
    }

    fn done(&self, message: &OwnedMessage) {
        let partition = (message.topic().to_owned(), message.partition());
        // The loop may be gone during shutdown; then there is nothing left to commit anyway.
        let _ = self.finished.send((partition, message.offset()));
    }

    fn count(&self, name: &'static str) {
        self.count_n(name, 1);
    }

    fn count_n(&self, name: &'static str, n: usize) {
        metrics::counter!(name, "group" => self.group_id.clone()).increment(n as u64);
    }
}
