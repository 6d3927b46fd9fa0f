//! The process-wide Prometheus recorder behind the `metrics` macros, rendered by `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder the first time, and returns the handle that renders it.
pub(crate) fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
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
