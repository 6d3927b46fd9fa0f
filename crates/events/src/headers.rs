//! The Kafka headers every message carries, and W3C trace context across Kafka.
//!
//! `message_id`, `event_type`, `correlation_id`, `source`, `produced_at` (RFC 3339), and, when
//! the producing code runs inside a sampled-or-not OpenTelemetry span, `traceparent`, so the
//! consumer's span continues the producer's trace.

use chrono::{SecondsFormat, Utc};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Event;

pub const MESSAGE_ID: &str = "message_id";
pub const EVENT_TYPE: &str = "event_type";
pub const CORRELATION_ID: &str = "correlation_id";
pub const SOURCE: &str = "source";
pub const PRODUCED_AT: &str = "produced_at";
pub const TRACEPARENT: &str = "traceparent";

/// The headers of an event's message. The correlation ID defaults to the event ID, so every
/// message can be traced back to something.
pub fn event_headers(event: &Event) -> OwnedHeaders {
    let id = event.id.to_string();
    let correlation_id = event.correlation_id.clone().unwrap_or_else(|| id.clone());
    let mut headers = OwnedHeaders::new()
        .insert(header(MESSAGE_ID, &id))
        .insert(header(EVENT_TYPE, event.event_type()))
        .insert(header(CORRELATION_ID, &correlation_id))
        .insert(header(PRODUCED_AT, &now_rfc3339()));
    if let Some(source) = &event.source {
        headers = headers.insert(header(SOURCE, source));
    }
    with_traceparent(headers)
}

/// Adds `traceparent` for the current span, when there is one.
pub fn with_traceparent(headers: OwnedHeaders) -> OwnedHeaders {
    match current_traceparent() {
        Some(traceparent) => headers.insert(header(TRACEPARENT, &traceparent)),
        None => headers,
    }
}

/// A header with a text value, for `OwnedHeaders::insert`.
pub fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

pub(crate) fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `00-<trace id>-<span id>-<flags>` of the current tracing span's OpenTelemetry context.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The remote parent a consumer should continue, from a `traceparent` value (W3C Trace
/// Context, version `00`: lower-case hex, IDs not all zero). Only the `sampled` flag is kept,
/// the one flag version `00` defines.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if version != "00"
        || parts.next().is_some()
        || !lower_hex(trace_id, 32)
        || !lower_hex(span_id, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes `span` continue the W3C trace of `traceparent` when it is a valid one (otherwise the
/// span starts a trace), then records the span's `trace_id` and `span_id` fields, which the
/// caller declares `Empty`, so the log lines inside it carry them.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        // Fails only when the span is disabled or already started: then it keeps its parent.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// The span of one consumed message: named `<topic> process` (OpenTelemetry's messaging
/// conventions), continuing the trace of its `traceparent` header, with the topic, partition,
/// offset and group as attributes. Consumers run each message's handling inside it; batch
/// handlers enter it to publish what follows from the message.
pub fn message_span(group: &str, message: &rdkafka::message::OwnedMessage) -> tracing::Span {
    use rdkafka::Message as _;
    let span = tracing::info_span!(
        "consume",
        otel.name = format!("{} process", message.topic()),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = message.topic(),
        messaging.destination.partition.id = message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.consumer.group.name = group,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let traceparent = message
        .headers()
        .and_then(|headers| header_str(headers, TRACEPARENT));
    continue_trace(&span, traceparent);
    span
}

/// The span of one write of a batch of messages: continuing the trace of the first message
/// that carries one, linked to the traces of the others (OpenTelemetry's way to show one
/// operation serving several traces).
pub fn batch_span(group: &str, messages: &[rdkafka::message::OwnedMessage]) -> tracing::Span {
    use rdkafka::Message as _;
    let topic = messages.first().map_or("", |m| m.topic());
    let span = tracing::info_span!(
        "consume batch",
        otel.name = format!("{topic} process batch"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.batch.message_count = messages.len(),
        messaging.consumer.group.name = group,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let mut traceparents = messages.iter().filter_map(|message| {
        message
            .headers()
            .and_then(|headers| header_str(headers, TRACEPARENT))
    });
    continue_trace(&span, traceparents.next());
    for remote in traceparents.filter_map(parse_traceparent) {
        span.add_link(remote);
    }
    span
}

/// A header's value as text, if present and UTF-8.
pub fn header_str<'a, H: Headers>(headers: &'a H, key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBuilder;
    use crate::envelope::UserVerified;

    #[test]
    fn every_event_message_carries_the_standard_headers() {
        let event = EventBuilder::new("gateway")
            .with_correlation_id("req-1")
            .build(UserVerified {
                user_id: "u".into(),
                campaign_id: "c".into(),
                email: "e@x.io".into(),
            });
        let headers = event_headers(&event);
        assert_eq!(
            header_str(&headers, MESSAGE_ID),
            Some(event.id.to_string().as_str())
        );
        assert_eq!(header_str(&headers, EVENT_TYPE), Some("user.verified"));
        assert_eq!(header_str(&headers, CORRELATION_ID), Some("req-1"));
        assert_eq!(header_str(&headers, SOURCE), Some("gateway"));
        let produced_at = header_str(&headers, PRODUCED_AT).unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(produced_at).is_ok(),
            "{produced_at}"
        );
        // No span, no traceparent.
        assert_eq!(header_str(&headers, TRACEPARENT), None);
    }

    #[test]
    fn traceparent_round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(value).unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-zz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        let unknown_flags =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert_eq!(
            unknown_flags.trace_flags().to_u8(),
            1,
            "only the sampled flag is passed on"
        );
    }
}
