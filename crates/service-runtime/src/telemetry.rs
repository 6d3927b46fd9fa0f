//! Logs and traces. Logs go to stdout (a command's to stderr), as text for people or as JSON for log collectors. Spans
//! always get OpenTelemetry trace and span IDs, so `traceparent` headers (HTTP and Kafka) link
//! services' work into one trace, and the request and message spans record `trace_id` and
//! `span_id`, which every log line inside them carries (JSON: in its `spans` list). When an
//! OTLP endpoint is configured, spans are also exported to it over OTLP/HTTP.

use std::io::IsTerminal;
use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,rdkafka=warn`.
    pub log_filter: String,
    /// Base URL of an OTLP/HTTP collector; spans go to `<endpoint>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Logs to stderr instead of stdout: for a command whose stdout is its output.
    pub log_to_stderr: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the exporter alive; `shutdown` flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Call it before starting the tokio runtime: the OTLP
    /// exporter's blocking HTTP client must not be created or dropped inside async code.
    pub fn init(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let filter = EnvFilter::try_new(&config.log_filter)
            .map_err(|e| TelemetryError::Filter(e.to_string()))?;
        let tracer_provider =
            tracer_provider(config.otlp_endpoint.as_deref(), &config.service_name)?;
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer_provider.tracer(config.service_name.clone()));
        let json = config.log_format == LogFormat::Json;
        // Colours for people at a terminal, not for log files.
        let (ansi, writer) = if config.log_to_stderr {
            (
                std::io::stderr().is_terminal(),
                fmt::writer::BoxMakeWriter::new(std::io::stderr),
            )
        } else {
            (
                std::io::stdout().is_terminal(),
                fmt::writer::BoxMakeWriter::new(std::io::stdout),
            )
        };
        let logs = if json {
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .with_writer(writer)
                .boxed()
        } else {
            fmt::layer().with_ansi(ansi).with_writer(writer).boxed()
        };
        // `RUST_LOG` chooses what is logged; spans for traces are kept at `info` whatever it
        // says, so a quiet log level does not break the traces that cross services.
        tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(otel_layer.with_filter(LevelFilter::INFO))
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(Self {
            tracer_provider: Some(tracer_provider),
        })
    }

    /// Flushes and stops span export.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the last spans");
        }
    }
}

/// Spans get IDs always; they are exported only to a configured endpoint.
fn tracer_provider(
    endpoint: Option<&str>,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = endpoint {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(provider)
}
