//! `/api/v1/activity-logs` and `/api/v1/users/{userId}/activity-logs` (seed 004).
//!
//! Posted events are validated, given an `eventId` when they have none, and published to
//! `user-activity-logs` keyed by `userId` with the headers `source` and `timestamp`; the
//! activity-log-processor stores them. The read endpoint pages through what is stored, newest
//! first.

use crate::json::Json;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::ActivityEvent;
use events::headers::header;
use events::rdkafka::message::OwnedHeaders;
use events::{Delivery, OutgoingRecord, Producer};
use repo::{ActivityCursor, ActivityLogs, ActivityQuery};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::errors::{ApiError, repo_error};

#[derive(Debug, Clone)]
pub(crate) struct ActivityApi {
    pub(crate) producer: Producer,
    pub(crate) topic: String,
    pub(crate) logs: ActivityLogs,
    pub(crate) batch_max: usize,
    pub(crate) retention: chrono::Duration,
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/v1/activity-logs", web::post().to(post_one))
        .route("/api/v1/activity-logs/batch", web::post().to(post_batch))
        .route("/api/v1/users/{user_id}/activity-logs", web::get().to(list));
}

/// A posted event: seed 004's value, `eventId`, `timestamp`, `metadata` and `version` optional.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActivityInput {
    user_id: String,
    activity_type: String,
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    metadata: Map<String, Value>,
    event_id: Option<String>,
    version: Option<String>,
}

impl ActivityApi {
    fn event(&self, value: &Value, prefix: &str) -> Result<ActivityEvent, ApiError> {
        let input: ActivityInput = serde_json::from_value(value.clone()).map_err(|error| {
            let mut api_error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("not an activity event: {error}"),
            );
            if !prefix.is_empty() {
                api_error = api_error.with_field(prefix.trim_end_matches('.'));
            }
            api_error
        })?;
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
            .map_err(|invalid| {
                ApiError::invalid(format!("{prefix}{}", invalid.field), invalid.to_string())
            })?;
        Ok(event)
    }

    /// Publishes every event or answers 503.
    async fn publish(&self, events: &[ActivityEvent]) -> Result<(), ApiError> {
        let sent_at = Utc::now().to_rfc3339();
        let sends = events.iter().map(|event| {
            let headers = OwnedHeaders::new()
                .insert(header("source", "api"))
                .insert(header("timestamp", &sent_at));
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
        Err(ApiError::unavailable(
            "queue_unavailable",
            "activity events cannot be queued right now; try again",
            5,
        ))
    }
}

async fn post_one(
    api: web::Data<ActivityApi>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    let event = api.event(&body, "")?;
    api.publish(std::slice::from_ref(&event)).await?;
    Ok(HttpResponse::Accepted().json(json!({"eventId": event.event_id, "status": "accepted"})))
}

async fn post_batch(
    api: web::Data<ActivityApi>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "events") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            format!("unknown field {unknown:?}; expected events"),
        )
        .with_field(unknown.clone()));
    }
    let Some(Value::Array(values)) = object.get("events") else {
        return Err(ApiError::invalid("events", "events must be an array"));
    };
    if values.is_empty() {
        return Err(ApiError::invalid("events", "events must not be empty"));
    }
    if values.len() > api.batch_max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch_too_large",
            format!(
                "at most {} events per request; got {}",
                api.batch_max,
                values.len()
            ),
        )
        .with_field("events"));
    }
    let events: Vec<ActivityEvent> = values
        .iter()
        .enumerate()
        .map(|(i, value)| api.event(value, &format!("events[{i}].")))
        .collect::<Result<_, _>>()?;
    api.publish(&events).await?;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    Ok(HttpResponse::Accepted()
        .json(json!({"eventIds": ids, "count": ids.len(), "status": "accepted"})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    #[serde(rename = "type")]
    activity_type: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

async fn list(
    api: web::Data<ActivityApi>,
    user_id: web::Path<String>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
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
        .await
        .map_err(repo_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "events": page.events,
        "nextCursor": page.next.map(|c| c.encode()),
    })))
}

/// Query strings actix-web refuses (`limit=abc`, unknown parameters), in the API's error shape.
pub(crate) fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request(
        "invalid_query",
        format!("invalid query parameters: {error}"),
    )
    .into()
}
