//! What the gateway records of every request, in one middleware around the whole API:
//!
//! - a span `<METHOD> <route>` (OpenTelemetry's HTTP server conventions: method, route
//!   template, path, status, and `otel.status_code = ERROR` on a 5xx) continuing the caller's
//!   `traceparent`, with `request_id`, `trace_id` and `span_id` for the log lines inside it;
//! - `X-Request-Id` on the answer: the caller's when it sent a sane one, otherwise a new UUID;
//! - the metrics `http_server_requests_total` and `http_server_request_duration_seconds`, by
//!   method, route template and status;
//! - the business events `api.request` (every request, sampled by `API_EVENTS_SAMPLE_RATE`) to
//!   `api-events`, and `api.error` (every 5xx, and every 4xx that is not a validation error
//!   unless `API_ERROR_EVENTS_FOR_CLIENT_ERRORS=false`) to `error-events`.
//!
//! The events go through a bounded buffer to a task that publishes them: a request never
//! waits for the broker, and when the buffer is full or the broker refuses, the event is
//! dropped and counted in `gateway_api_events_dropped_total{reason}`.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use chrono::Utc;
use events::envelope::{ApiError as ApiErrorEvent, ApiRequest};
use events::{Event, EventBuilder, Producer};
use service_runtime::CancellationToken;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::client_ip::TrustedProxies;
use crate::errors::{ApiError, ErrorCode};

/// `X-Request-Id`.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Which requests become events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiEventsConfig {
    /// Where `api.request` events go (`api-events`).
    pub(crate) requests_topic: String,
    /// Where `api.error` events go (`error-events`).
    pub(crate) errors_topic: String,
    /// The share of requests published as `api.request`, 0 to 1.
    pub(crate) sample_rate: f64,
    /// Events waiting for the broker at most; more are dropped.
    pub(crate) buffer: usize,
    /// Whether 4xx answers other than validation errors become `api.error` events too.
    pub(crate) client_errors: bool,
}

/// The middleware's state, shared by every HTTP worker.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    events: mpsc::Sender<Event>,
    builder: EventBuilder,
    config: ApiEventsConfig,
    trusted_proxies: TrustedProxies,
}

impl Observer {
    /// The observer, and the task that publishes its events until `stop` is cancelled (then
    /// it refuses new ones, publishes what is buffered and ends).
    pub(crate) fn start(
        producer: Producer,
        service: &str,
        config: ApiEventsConfig,
        trusted_proxies: TrustedProxies,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        producer
            .router()
            .set_topic_mapping("api.request", &config.requests_topic);
        producer
            .router()
            .set_topic_mapping("api.error", &config.errors_topic);
        let (events, buffered) = mpsc::channel(config.buffer.max(1));
        let publishing = tokio::spawn(publish(producer, buffered, stop));
        let observer = Self {
            events,
            builder: EventBuilder::new(service),
            config,
            trusted_proxies,
        };
        (observer, publishing)
    }

    fn emit(&self, event: Event) {
        if let Err(error) = self.events.try_send(event) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "buffer_full",
                mpsc::error::TrySendError::Closed(_) => "shutting_down",
            };
            metrics::counter!("gateway_api_events_dropped_total", "reason" => reason).increment(1);
        }
    }

    /// Events of one request share its ID as their correlation ID.
    fn builder_for(&self, request_id: &str) -> EventBuilder {
        self.builder.clone().with_correlation_id(request_id)
    }

    fn sampled(&self) -> bool {
        self.config.sample_rate >= 1.0
            || (self.config.sample_rate > 0.0 && rand_unit() < self.config.sample_rate)
    }
}

/// A uniform number in [0, 1) from a fresh random UUID (no RNG of our own to seed).
fn rand_unit() -> f64 {
    let bits = Uuid::new_v4().as_u128() >> 75; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

/// Publishes buffered events, up to 256 at once, until `stop`; then what is buffered.
async fn publish(producer: Producer, mut buffered: mpsc::Receiver<Event>, stop: CancellationToken) {
    const IN_FLIGHT: usize = 256;
    let mut sending = JoinSet::new();
    loop {
        let event = tokio::select! {
            event = buffered.recv() => event,
            () = stop.cancelled(), if !buffered.is_closed() => {
                // Refuse new events; `recv` hands out the buffered ones, then `None`.
                buffered.close();
                continue;
            }
        };
        let Some(event) = event else { break };
        while sending.len() >= IN_FLIGHT {
            sending.join_next().await;
        }
        let producer = producer.clone();
        sending.spawn(async move {
            if let Err(error) = producer.deliver_event(&event).await {
                tracing::warn!(%error, event_type = event.event_type(), "API event not published");
                metrics::counter!("gateway_api_events_dropped_total", "reason" => "not_delivered")
                    .increment(1);
            }
        });
    }
    while sending.join_next().await.is_some() {}
}

/// The caller's request ID when it is a sane one (1 to 64 of `A-Z a-z 0-9 - _ .`), otherwise a
/// new UUIDv7.
fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// Error codes that say the request itself was malformed: not `api.error` material.
fn is_validation(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ValidationFailed
            | ErrorCode::UnknownField
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidBody
            | ErrorCode::InvalidQuery
            | ErrorCode::BulkTooLarge
            | ErrorCode::BatchTooLarge
    )
}

/// The middleware (`actix_web::middleware::from_fn`).
pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_time = Utc::now();
    let method = request.method().to_string();
    let request_id = request_id(&request);
    // The route template, not the path: bounded label values, no IDs in metrics or span names.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        url.path = %request.path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get(events::headers::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    events::headers::continue_trace(&span, traceparent);
    let observer = request.app_data::<web::Data<Observer>>().cloned();
    let ip = observer.as_ref().and_then(|observer| {
        let peer = request.peer_addr()?.ip();
        let forwarded = request
            .headers()
            .get_all(HeaderName::from_static("x-forwarded-for"))
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        Some(
            observer
                .trusted_proxies
                .client_ip(peer, forwarded.into_iter())
                .to_string(),
        )
    });
    let request_size = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);

    let mut response = next.call(request).instrument(span.clone()).await?;

    let status = response.status();
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let labels = [
        ("method", method.clone()),
        ("route", route.clone()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }

    if let Some(observer) = observer {
        let _inside = span.enter();
        if observer.sampled() {
            let response_size = match response.response().body().size() {
                BodySize::Sized(bytes) => bytes,
                BodySize::None | BodySize::Stream => 0,
            };
            observer.emit(observer.builder_for(&request_id).build(ApiRequest {
                request_id: request_id.clone(),
                user_id: None,
                method: method.clone(),
                path: route.clone(),
                status_code: status.as_u16(),
                duration: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                ip_address: ip,
                request_time,
                response_size,
                request_size,
            }));
        }
        let error = response.response().extensions().get::<ApiError>().cloned();
        let reportable = status.is_server_error()
            || (status.is_client_error()
                && observer.config.client_errors
                && !error.as_ref().is_some_and(|e| is_validation(e.code)));
        if reportable {
            let (code, message) = error.map_or_else(
                || ("unknown".to_owned(), status.to_string()),
                |e| (e.code.as_str().to_owned(), e.message),
            );
            observer.emit(
                observer.builder_for(&request_id).build(ApiErrorEvent {
                    request_id,
                    method,
                    path: route,
                    status_code: status.as_u16(),
                    error_type: if status.is_server_error() {
                        "server_error"
                    } else {
                        "client_error"
                    }
                    .to_owned(),
                    error_message: message,
                    error_code: code,
                    error_time: Utc::now(),
                }),
            );
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_about_the_rate() {
        let kept = (0..20_000).filter(|_| rand_unit() < 0.25).count();
        assert!((4_000..6_000).contains(&kept), "{kept} of 20000 at 0.25");
    }

    #[test]
    fn only_sane_request_ids_are_taken_from_the_caller() {
        let with = |value: &str| {
            let request = actix_web::test::TestRequest::default()
                .insert_header((REQUEST_ID, value))
                .to_srv_request();
            request_id(&request)
        };
        assert_eq!(with("req-42_a.b"), "req-42_a.b");
        assert_ne!(with("has space"), "has space");
        assert_ne!(with(&"x".repeat(65)), "x".repeat(65));
        assert_eq!(with("bad\"quote").len(), 36, "a UUID instead");
    }
}
