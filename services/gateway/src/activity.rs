//! `/api/v1/activity-logs` and `/api/v1/users/{userId}/activity-logs`.
//!
//! Posted events are validated, given an `eventId` when they have none, and published to
//! `user-activity-logs` keyed by `userId` with the headers `source` and `timestamp`; the
//! activity-log-processor stores them. The read endpoint pages through what is stored, newest
//! first.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use domain::{ACTIVITY_TYPES, ActivityEvent};
use events::headers::header;
use events::rdkafka::message::OwnedHeaders;
use events::{Delivery, OutgoingRecord, Producer};
use repo::{ActivityCursor, ActivityLogs, ActivityQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::json::{Json, QueryParams};
use crate::reply::Reply;

#[derive(Debug, Clone)]
pub(crate) struct ActivityApi {
    pub(crate) producer: Producer,
    pub(crate) topic: String,
    pub(crate) logs: ActivityLogs,
    pub(crate) batch_max: usize,
    pub(crate) retention: chrono::Duration,
}

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config.service(post_one).service(post_batch).service(list);
}

/// The schema of `activityType`: one of the types the pipeline knows.
fn activity_type_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ACTIVITY_TYPES.iter().copied()))
}

/// A posted activity event: `eventId`, `timestamp`, `metadata` and `version` are optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user_42", "activityType": "login", "metadata": {"ipAddress": "203.0.113.7", "userAgent": "curl/8.5"}}))]
pub(crate) struct ActivityEventRequest {
    /// 1 to 128 bytes of UTF-8 (`maxLength` counts characters: fewer if they are not ASCII);
    /// the topic's key, so one user's events stay in order.
    #[schema(min_length = 1, max_length = 128)]
    user_id: String,
    #[schema(schema_with = activity_type_schema)]
    activity_type: String,
    /// Defaults to now; not older than `ACTIVITY_RETENTION`, not more than 5 minutes ahead.
    timestamp: Option<DateTime<Utc>>,
    /// `ipAddress`, `userAgent`, `sessionId`, …; at most 8 KiB as JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    /// The idempotency key (1 to 128 bytes), generated when absent.
    #[schema(min_length = 1, max_length = 128)]
    event_id: Option<String>,
    /// The schema version of the event, 1 to 16 bytes; `1.0` by default.
    #[schema(min_length = 1, max_length = 16)]
    version: Option<String>,
}

/// Up to `ACTIVITY_BATCH_MAX` events, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityBatchRequest {
    /// 1 to `ACTIVITY_BATCH_MAX` (100 by default) events.
    #[schema(min_items = 1)]
    events: Vec<ActivityEventRequest>,
}

/// Whether an event was queued.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Acceptance {
    /// Published to `user-activity-logs`; the processor stores it.
    Accepted,
}

/// One event queued.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActivityAccepted {
    /// Given or generated; reading the user's activity shows it.
    event_id: String,
    status: Acceptance,
}

/// A batch queued.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActivityBatchAccepted {
    /// In the order of `events`.
    event_ids: Vec<String>,
    count: usize,
    status: Acceptance,
}

/// A stored activity event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredActivityEvent {
    user_id: String,
    #[schema(schema_with = activity_type_schema)]
    activity_type: String,
    timestamp: DateTime<Utc>,
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    event_id: String,
    version: String,
}

impl From<ActivityEvent> for StoredActivityEvent {
    fn from(event: ActivityEvent) -> Self {
        Self {
            user_id: event.user_id,
            activity_type: event.activity_type,
            timestamp: event.timestamp,
            metadata: event.metadata,
            event_id: event.event_id,
            version: event.version,
        }
    }
}

/// A page of a user's activity, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActivityPageResponse {
    events: Vec<StoredActivityEvent>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

impl ActivityApi {
    /// The event to publish, or 422 naming the field (under `prefix`, `events[3].`).
    fn event(&self, input: ActivityEventRequest, prefix: &str) -> Result<ActivityEvent, ApiError> {
        let event = ActivityEvent {
            user_id: input.user_id,
            activity_type: input.activity_type,
            timestamp: input.timestamp.unwrap_or_else(Utc::now),
            metadata: input.metadata,
            event_id: input
                .event_id
                .unwrap_or_else(|| format!("evt_{}", Uuid::now_v7().simple())),
            version: input.version.unwrap_or_else(|| "1.0".into()),
        };
        event
            .validate(Utc::now(), self.retention)
            .map_err(|invalid| ApiError::from(invalid).within(prefix))?;
        Ok(event)
    }

    /// Publishes every event or answers 503.
    /// Publishes validated events to `user-activity-logs`, keyed by `userId`.
    pub(crate) async fn publish(&self, events: &[ActivityEvent]) -> Result<(), ApiError> {
        let sent_at = Utc::now().to_rfc3339();
        let sends = events.iter().map(|event| {
            let headers = events::headers::with_traceparent(
                OwnedHeaders::new()
                    .insert(header("source", "api"))
                    .insert(header("timestamp", &sent_at)),
            );
            self.producer.deliver(OutgoingRecord {
                topic: self.topic.clone(),
                partition: None,
                key: Some(event.user_id.clone().into_bytes()),
                payload: serde_json::to_vec(event).expect("activity events serialize"),
                headers,
            })
        });
        let deliveries = futures::future::join_all(sends).await;
        if deliveries
            .iter()
            .all(|d| matches!(d, Ok(Delivery::Published { .. })))
        {
            metrics::counter!("gateway_activity_events_accepted_total")
                .increment(events.len() as u64);
            return Ok(());
        }
        tracing::error!(of = events.len(), "activity events could not be published");
        Err(ApiError::new(
            ErrorCode::QueueUnavailable,
            "activity events cannot be queued right now; try again",
        ))
    }
}

/// Queue one activity event.
#[utoipa::path(
    tag = "activity",
    operation_id = "postActivity",
    request_body = ActivityEventRequest,
    responses(
        (status = 202, description = "Published; the processor stores it", body = ActivityAccepted),
        (status = 422, description = "A field is missing, wrong or unknown", body = ErrorBody),
        (status = 503, description = "The broker is down (`queue_unavailable`); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/activity-logs")]
async fn post_one(
    api: web::Data<ActivityApi>,
    // Fails closed (500) unless `access::enforce` admitted a caller for this route.
    _caller: crate::access::Principal,
    body: Json<ActivityEventRequest>,
) -> Result<Reply<ActivityAccepted>, ApiError> {
    let event = api.event(body.into_inner(), "")?;
    api.publish(std::slice::from_ref(&event)).await?;
    Ok(Reply::accepted(ActivityAccepted {
        event_id: event.event_id,
        status: Acceptance::Accepted,
    }))
}

/// Queue up to `ACTIVITY_BATCH_MAX` events, all or nothing.
#[utoipa::path(
    tag = "activity",
    operation_id = "postActivityBatch",
    request_body = ActivityBatchRequest,
    responses(
        (status = 202, description = "All published", body = ActivityBatchAccepted),
        (status = 422, description = "An event is invalid (`events[i].field`) or there are too many (`batch_too_large`)", body = ErrorBody),
        (status = 503, description = "The broker is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/activity-logs/batch")]
async fn post_batch(
    api: web::Data<ActivityApi>,
    _caller: crate::access::Principal,
    body: Json<ActivityBatchRequest>,
) -> Result<Reply<ActivityBatchAccepted>, ApiError> {
    let inputs = body.into_inner().events;
    if inputs.is_empty() {
        return Err(ApiError::invalid("events", "events must not be empty"));
    }
    if inputs.len() > api.batch_max {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "at most {} events per request; got {}",
                api.batch_max,
                inputs.len()
            ),
        )
        .with_field("events"));
    }
    let events: Vec<ActivityEvent> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| api.event(input, &format!("events[{i}].")))
        .collect::<Result<_, _>>()?;
    api.publish(&events).await?;
    Ok(Reply::accepted(ActivityBatchAccepted {
        count: events.len(),
        event_ids: events.into_iter().map(|e| e.event_id).collect(),
        status: Acceptance::Accepted,
    }))
}

/// Which of a user's events to read.
// `utoipa::IntoParams` by its path: the `params(…)` expansion names the trait so.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Events at or after this instant.
    from: Option<DateTime<Utc>>,
    /// Events before this instant.
    to: Option<DateTime<Utc>>,
    /// Only events of this activity type.
    #[serde(rename = "type")]
    #[param(schema_with = activity_type_schema)]
    activity_type: Option<String>,
    /// Events per page, 1 to 500 (50 by default).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// A user's stored activity, newest first.
#[utoipa::path(
    tag = "activity",
    operation_id = "listActivity",
    params(("userId" = String, Path, description = "The user whose activity to read"), ListParams),
    responses(
        (status = 200, description = "A page", body = ActivityPageResponse),
        (status = 400, description = "A query parameter is unknown or does not parse (`invalid_query`)", body = ErrorBody),
        (status = 422, description = "`limit` or `cursor` is out of range", body = ErrorBody),
        (status = 503, description = "The database is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[get("/api/v1/users/{userId}/activity-logs")]
async fn list(
    api: web::Data<ActivityApi>,
    _caller: crate::access::Principal,
    user_id: web::Path<String>,
    params: QueryParams<ListParams>,
) -> Result<Reply<ActivityPageResponse>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    if let Some(kind) = &params.activity_type
        && !ACTIVITY_TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("type must be one of {}", ACTIVITY_TYPES.join(", ")),
        )
        .with_field("type"));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            ActivityCursor::decode(c)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API gave out"))
        })
        .transpose()?;
    let page = api
        .logs
        .list(&ActivityQuery {
            user_id: user_id.into_inner(),
            from: params.from,
            to: params.to,
            activity_type: params.activity_type.clone(),
            limit,
            after,
        })
        .await?;
    Ok(Reply::ok(ActivityPageResponse {
        events: page.events.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}
