//! What the three waitlist workers share: their configuration, how they read an event, how a
//! repository failure becomes a handler failure, and the consume-until-shutdown loop.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KAFKA_TOPIC` | `domain-events` | the topic of seed 003's domain events |
//! | `KAFKA_CONSUMER_GROUP` | the worker's (`email-workers`, `position-workers`, `reward-workers`) | the consumer group |
//! | `KAFKA_WORKER_POOL_SIZE` | `10` (`1` for the position-worker, which ignores it) | handlers in flight |
//! | `WAITLIST_DLQ_TOPIC` | `waitlist.dlq` | where events that cannot be handled go, with the reason |

use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::{Decoded, Event, EventConsumer, EventsError, Handler, HandlerError, RetryPolicy};
use repo::waitlist::RewardDelivery;
use repo::{RepoError, Waitlist};
use service_runtime::{ConfigError, ConsumerConfig, Env, ServiceContext};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub consumer: ConsumerConfig,
    pub dlq_topic: String,
}

impl WorkerConfig {
    pub fn from_env(
        env: &Env,
        group_id: &str,
        worker_pool_size: usize,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            consumer: ConsumerConfig::from_env(
                env,
                ConsumerConfig {
                    group_id: group_id.into(),
                    topic: "domain-events".into(),
                    worker_pool_size,
                },
            )?,
            dlq_topic: env.string("WAITLIST_DLQ_TOPIC", "waitlist.dlq"),
        })
    }
}

/// Why a worker stopped consuming.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kafka(#[from] EventsError),
}

/// Joins the group, reports the service started (`/readyz`) and handles events until shutdown.
pub async fn consume<H: Handler>(
    ctx: &ServiceContext,
    config: &WorkerConfig,
    retry: RetryPolicy,
    handler: H,
) -> Result<(), ConsumeError> {
    consume_also(ctx, config, &[], retry, handler).await
}

/// [`consume`], reading `also` besides the domain events (the email-worker reads the account
/// events of `user-events` too); failures of either go to the same dead-letter topic, whose
/// headers name the original topic.
pub async fn consume_also<H: Handler>(
    ctx: &ServiceContext,
    config: &WorkerConfig,
    also: &[&str],
    retry: RetryPolicy,
    handler: H,
) -> Result<(), ConsumeError> {
    let mut topics = vec![config.consumer.topic.as_str()];
    topics.extend_from_slice(also);
    let mut settings =
        ctx.consumer_settings(&config.consumer.group_id, &topics, &config.dlq_topic)?;
    settings.worker_pool_size = config.consumer.worker_pool_size;
    settings.retry = retry;
    let consumer = EventConsumer::new(&ctx.config.kafka, settings, ctx.producer.clone())?;
    ctx.watch_consumer(&consumer)?;
    ctx.mark_started();
    Ok(consumer.run(handler, ctx.shutdown.clone()).await?)
}

/// The event in a message, or `None` for an event of a type this version does not know (a
/// newer producer's): the handler skips it, its offset is committed, and
/// `domain_events_skipped_total{reason="unknown_type"}` counts it. Fields this version does not
/// know are ignored. Dead-lettered at once: a message that is not an event, an event of
/// another major schema version (`unsupported_version`), and one holding text PostgreSQL
/// cannot store (`invalid_text`, U+0000).
pub fn parse_event(message: &OwnedMessage) -> Result<Option<Event>, HandlerError> {
    let payload = message
        .payload()
        .ok_or_else(|| HandlerError::reject("empty_message", "the message has no value"))?;
    let event = match Event::decode(payload) {
        Ok(Decoded::Event(event)) => *event,
        Ok(Decoded::UnknownType { event_type }) => {
            tracing::info!(
                event_type = %event_type.escape_debug(),
                offset = message.offset(),
                "skipping an event of a type this version does not know"
            );
            metrics::counter!("domain_events_skipped_total", "reason" => "unknown_type")
                .increment(1);
            return Ok(None);
        }
        Ok(Decoded::OtherMajorVersion { version, .. }) => {
            return Err(unsupported_version(&version));
        }
        Err(error) => {
            return Err(HandlerError::reject(
                "invalid_event",
                format!("not a domain event: {error}"),
            ));
        }
    };
    if !event.is_readable_version() {
        return Err(unsupported_version(&event.version));
    }
    domain::text::check_json_bytes(payload)
        .map_err(|nul| HandlerError::reject("invalid_text", nul.to_string()))?;
    Ok(Some(event))
}

fn unsupported_version(version: &str) -> HandlerError {
    HandlerError::reject(
        "unsupported_version",
        format!(
            "schema version {version:?}; this worker reads {}.x",
            events::envelope::readable_major()
        ),
    )
}

/// A repository failure: held while the database is unreachable, retried otherwise.
pub fn repo_failure(error: RepoError) -> HandlerError {
    match error {
        RepoError::Unavailable(_) => HandlerError::unavailable("database_unavailable", error),
        other => HandlerError::retry("database_error", other),
    }
}

/// An ID inside an event's data.
pub fn event_id(text: &str, field: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::try_parse(text).map_err(|_| {
        HandlerError::reject("invalid_event", format!("{field} {text:?} is not a UUID"))
    })
}

/// The reward a `reward.earned` event names; an unknown one is dead-lettered.
pub async fn earned_reward(
    waitlist: &Waitlist,
    user_reward_id: &str,
) -> Result<RewardDelivery, HandlerError> {
    let id = event_id(user_reward_id, "user_reward_id")?;
    waitlist
        .reward_delivery(id)
        .await
        .map_err(repo_failure)?
        .ok_or_else(|| HandlerError::reject("unknown_reward", format!("no reward {id}")))
}
