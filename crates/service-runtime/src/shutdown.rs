use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGTERM (Kubernetes, `make stop`) or SIGINT (Ctrl-C) and returns its name.
pub(crate) async fn termination_signal() -> &'static str {
    let mut sigterm = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut sigint = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    }
}
