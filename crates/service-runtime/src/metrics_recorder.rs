//! The process-wide Prometheus recorder behind the `metrics` macros, rendered by `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds.
const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder the first time, and returns the handle that renders it.
pub(crate) fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // A histogram with buckets (not a summary), so latencies add up across
                // replicas and routes; OpenTelemetry's advice for HTTP server durations.
                .set_buckets_for_metric(
                    Matcher::Full("http_server_request_duration_seconds".into()),
                    &HTTP_DURATION_BUCKETS,
                )
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Registers the metrics every service has.
pub(crate) fn describe_service(service: &'static str) {
    metrics::describe_gauge!(
        "service_info",
        "Always 1; labels say which service and version run."
    );
    metrics::gauge!("service_info", "service" => service, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    metrics::describe_gauge!(
        "service_dependency_up",
        "1 when the dependency answered the last readiness probe, 0 when it did not."
    );
}
