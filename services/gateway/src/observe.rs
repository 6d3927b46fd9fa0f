//! What the gateway records of every request, in one middleware around the whole API:
//!
//! - a span `<METHOD> <route>` (OpenTelemetry's HTTP server conventions: method, route
//!   template, path, status, and `otel.status_code = ERROR` on a 5xx) continuing the caller's
//!   `traceparent`, with `request_id`, `trace_id` and `span_id` for the log lines inside it;
//! - `X-Request-Id` on the answer: the caller's when it sent a sane one, otherwise a new UUID;
//! - the metrics `http_server_requests_total` and `http_server_request_duration_seconds`, by
//!   method, route template and status;
//! - the business events `api.request` (every request, sampled by `API_EVENTS_SAMPLE_RATE`;
//!   `user_id` when the handler knows it, see [`KnownUser`]) to
//!   `api-events`, and `api.error` (every 5xx, and every 4xx that is not a validation error
//!   unless `API_ERROR_EVENTS_FOR_CLIENT_ERRORS=false`) to `error-events`.
//!
//! The events go through a bounded buffer to a task that publishes them: a request never
//! waits for the broker, and when the buffer is full or the broker refuses, the event is
//! dropped and counted in `gateway_api_events_dropped_total{reason}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// The user a request was about, when a handler knows it: put in the response's extensions,
/// it becomes the `user_id` of the request's `api.request` event (else the user the request
/// was authenticated as, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownUser(pub(crate) String);

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
    /// Each event with the span of its request, which its publishing continues.
    events: mpsc::Sender<(Event, tracing::Span)>,
    /// Events dropped so far (also `gateway_api_events_dropped_total`).
    dropped: Arc<AtomicU64>,
    builder: EventBuilder,
    config: ApiEventsConfig,
    trusted_proxies: TrustedProxies,
}

impl Observer {
    /// The observer, and the task that publishes its events until `stop` is cancelled; then
    /// it refuses new ones and publishes what is buffered for at most `drain`, dropping (and
    /// counting) what is left, so a broker that is down cannot hold up the shutdown.
    pub(crate) fn start(
        producer: Producer,
        service: &str,
        config: ApiEventsConfig,
        trusted_proxies: TrustedProxies,
        stop: CancellationToken,
        drain: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        producer
            .router()
            .set_topic_mapping("api.request", &config.requests_topic);
        producer
            .router()
            .set_topic_mapping("api.error", &config.errors_topic);
        let (events, buffered) = mpsc::channel(config.buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let publishing = tokio::spawn(publish(producer, buffered, stop, drain, dropped.clone()));
        let observer = Self {
            events,
            dropped,
            builder: EventBuilder::new(service),
            config,
            trusted_proxies,
        };
        (observer, publishing)
    }

    /// Hands `event` to the publisher without waiting; when the buffer is full it is dropped.
    fn emit(&self, event: Event, request: &tracing::Span) {
        if let Err(error) = self.events.try_send((event, request.clone())) {
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "buffer_full",
                mpsc::error::TrySendError::Closed(_) => "shutting_down",
            };
            count_dropped(&self.dropped, reason, 1);
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

fn count_dropped(dropped: &AtomicU64, reason: &'static str, n: u64) {
    dropped.fetch_add(n, Ordering::Relaxed);
    metrics::counter!("gateway_api_events_dropped_total", "reason" => reason).increment(n);
}

/// Publishes buffered events, up to 256 at once, until `stop`; then what is buffered, for at
/// most `drain`.
async fn publish(
    producer: Producer,
    mut buffered: mpsc::Receiver<(Event, tracing::Span)>,
    stop: CancellationToken,
    drain: Duration,
    dropped: Arc<AtomicU64>,
) {
    const IN_FLIGHT: usize = 256;
    let mut sending = JoinSet::new();
    let mut deadline = None;
    loop {
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = buffered.recv() => event,
            () = stop.cancelled(), if deadline.is_none() => {
                // Refuse new events; `recv` hands out the buffered ones, then `None`.
                buffered.close();
                deadline = Some(tokio::time::Instant::now() + drain);
                continue;
            }
            () = timeout => {
                let left = buffered.len() + sending.len();
                count_dropped(&dropped, "shutdown", left as u64);
                sending.abort_all();
                return;
            }
        };
        let Some((event, request)) = event else { break };
        while sending.len() >= IN_FLIGHT {
            let Some(deadline) = deadline else {
                sending.join_next().await;
                continue;
            };
            if tokio::time::timeout_at(deadline, sending.join_next())
                .await
                .is_err()
            {
                let left = 1 + buffered.len() + sending.len();
                count_dropped(&dropped, "shutdown", left as u64);
                sending.abort_all();
                return;
            }
        }
        let producer = producer.clone();
        let dropped = dropped.clone();
        sending.spawn(
            async move {
                if let Err(error) = producer.deliver_event(&event).await {
                    // Counted, not logged one by one: the producer already warns of the outage.
                    tracing::debug!(%error, event_type = event.event_type(), "API event not published");
                    count_dropped(&dropped, "not_delivered", 1);
                }
            }
            // In the request's trace: the event's traceparent leads back to it.
            .instrument(request),
        );
    }
    let finishing = async { while sending.join_next().await.is_some() {} };
    match deadline {
        Some(deadline) => {
            if tokio::time::timeout_at(deadline, finishing).await.is_err() {
                count_dropped(&dropped, "shutdown", sending.len() as u64);
                sending.abort_all();
            }
        }
        None => finishing.await,
    }
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

/// The method as a label: one of HTTP's own, or `_OTHER` (OpenTelemetry's convention), so
/// clients cannot make a new time series per made-up method.
fn method_label(method: &actix_web::http::Method) -> String {
    use actix_web::http::Method;
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if known.contains(method) {
        method.to_string()
    } else {
        "_OTHER".to_owned()
    }
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
    let method = method_label(request.method());
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
        observer
            .trusted_proxies
            .client_of(request.request())
            .map(|ip| ip.to_string())
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
        if observer.sampled() {
            let response_size = match response.response().body().size() {
                BodySize::Sized(bytes) => bytes,
                BodySize::None | BodySize::Stream => 0,
            };
            // The user a handler named, else the user the request was authenticated as.
            let user_id = response
                .response()
                .extensions()
                .get::<KnownUser>()
                .map(|user| user.0.clone())
                .or_else(|| {
                    actix_web::HttpMessage::extensions(response.request())
                        .get::<crate::access::Principal>()
                        .and_then(crate::access::Principal::user_id)
                        .map(|user| user.to_string())
                });
            observer.emit(
                observer.builder_for(&request_id).build(ApiRequest {
                    request_id: request_id.clone(),
                    user_id,
                    method: method.clone(),
                    path: route.clone(),
                    status_code: status.as_u16(),
                    duration: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    ip_address: ip,
                    request_time,
                    response_size,
                    request_size,
                }),
                &span,
            );
        }
        let error = response.response().extensions().get::<ApiError>().cloned();
        let reportable = status.is_server_error()
            || (status.is_client_error()
                && observer.config.client_errors
                && !error.as_ref().is_some_and(|e| is_validation(e.code)));
        if reportable {
            // The code's meaning, not the answer's message: that one repeats what the caller
            // sent (paths, IDs, addresses), which has no place on a shared topic.
            let (code, message) = error.map_or_else(
                || ("unknown".to_owned(), status.to_string()),
                |e| (e.code.as_str(), e.code.summary().to_owned()),
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
                &span,
            );
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_buffer_drops_and_counts_and_never_waits() {
        // A broker that is not there: publishing could only wait. Nothing may wait on it.
        let kafka = events::KafkaConfig::new("127.0.0.1:1", "observe-test");
        let producer = Producer::connect(&kafka).unwrap();
        let stop = CancellationToken::new();
        let config = ApiEventsConfig {
            requests_topic: "api-events".into(),
            errors_topic: "error-events".into(),
            sample_rate: 1.0,
            buffer: 10,
            client_errors: true,
        };
        let (observer, publishing) = Observer::start(
            producer,
            "gateway",
            config,
            TrustedProxies::default(),
            stop.clone(),
            Duration::from_millis(200),
        );
        let started = Instant::now();
        // No await between them: the publisher cannot take any off the buffer meanwhile.
        for i in 0..100 {
            let event = observer.builder_for(&format!("req-{i}")).build(ApiRequest {
                request_id: format!("req-{i}"),
                user_id: None,
                method: "GET".into(),
                path: "/x".into(),
                status_code: 200,
                duration: 1,
                ip_address: None,
                request_time: Utc::now(),
                response_size: 0,
                request_size: 0,
            });
            observer.emit(event, &tracing::Span::none());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "emitting never waits"
        );
        assert_eq!(
            observer.dropped.load(Ordering::Relaxed),
            90,
            "ten fit the buffer"
        );
        // Shutdown gives the unreachable broker its drain time, then drops the rest.
        stop.cancel();
        publishing.await.unwrap();
        assert_eq!(observer.dropped.load(Ordering::Relaxed), 100);
    }

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
