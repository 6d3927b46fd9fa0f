//! The Kafka headers every message carries, and W3C trace context across Kafka.
//!
//! `message_id`, `event_type`, `correlation_id`, `source`, `produced_at` (RFC 3339), and, when
//! the producing code runs inside a sampled-or-not OpenTelemetry span, `traceparent`, so the
//! consumer's span continues the producer's trace.

use chrono::{SecondsFormat, Utc};
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

/// The remote parent a consumer should continue, from a `traceparent` value.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace_id.len() != 32 || span_id.len() != 16 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
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
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
