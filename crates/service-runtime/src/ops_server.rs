//! The operations endpoints every service serves on `OPS_ADDR`: liveness, readiness, metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use events::Producer;
use metrics_exporter_prometheus::PrometheusHandle;
use repo::Database;
use serde_json::json;

/// How long one readiness check of one dependency may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks.
#[derive(Debug)]
pub(crate) struct Readiness {
    database: Database,
    producer: Producer,
    /// Set on SIGTERM, so load balancers stop sending work while the service drains.
    draining: AtomicBool,
}

impl Readiness {
    pub(crate) fn new(database: Database, producer: Producer) -> Self {
        Self {
            database,
            producer,
            draining: AtomicBool::new(false),
        }
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Probes both dependencies at once; `Err` holds the reason a dependency is not usable.
    pub(crate) async fn check(&self) -> (Result<(), String>, Result<(), String>) {
        let database = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.database.ping()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("no answer within 2s".to_owned()),
            }
        };
        let broker = async {
            self.producer
                .health_check(CHECK_TIMEOUT)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let (database, broker) = tokio::join!(database, broker);
        for (name, result) in [("database", &database), ("broker", &broker)] {
            let up = if result.is_ok() { 1.0 } else { 0.0 };
            metrics::gauge!("service_dependency_up", "dependency" => name).set(up);
        }
        (database, broker)
    }
}

struct OpsState {
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
}

/// A running operations server.
#[derive(Debug)]
pub(crate) struct OpsServer {
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    pub(crate) fn start(
        addr: SocketAddr,
        readiness: Arc<Readiness>,
        metrics: PrometheusHandle,
    ) -> std::io::Result<Self> {
        let state = web::Data::new(OpsState { readiness, metrics });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(render_metrics))
        })
        .workers(1)
        // Signals are ours to handle: the service decides when the server stops.
        .disable_signals()
        .shutdown_timeout(2)
        .bind(addr)?
        .run();
        let handle = server.handle();
        Ok(Self {
            handle,
            task: tokio::spawn(server),
        })
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    let readiness = &state.readiness;
    let (database, broker) = readiness.check().await;
    let draining = readiness.draining.load(Ordering::SeqCst);
    let check = |result: &Result<(), String>| match result {
        Ok(()) => json!({ "status": "up" }),
        Err(error) => json!({ "status": "down", "error": error }),
    };
    let ready = database.is_ok() && broker.is_ok() && !draining;
    let body = json!({
        "status": if ready { "ready" } else if draining { "draining" } else { "not_ready" },
        "checks": { "database": check(&database), "broker": check(&broker) },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn render_metrics(state: web::Data<OpsState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
