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
    /// Set by the service once its own start-up (node ID lease, consumer group, listener) is
    /// done: reachable dependencies alone do not make a service that is still starting ready.
    started: AtomicBool,
    /// Set on SIGTERM, so load balancers stop sending work while the service drains.
    draining: AtomicBool,
    /// The service's consumers, which say when they cannot make progress.
    consumers: std::sync::Mutex<Vec<events::ConsumerHealth>>,
}

impl Readiness {
    pub(crate) fn new(database: Database, producer: Producer) -> Self {
        Self {
            database,
            producer,
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            consumers: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn watch(&self, consumer: events::ConsumerHealth) {
        self.consumers
            .lock()
            .expect("consumers lock")
            .push(consumer);
    }

    /// The first consumer that is not making progress: its group and why.
    fn consumer_problem(&self) -> Option<(String, String)> {
        self.consumers
            .lock()
            .expect("consumers lock")
            .iter()
            .find_map(|c| c.problem().map(|p| (c.group_id().to_owned(), p)))
    }

    pub(crate) fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
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
    let (ready, body) = assess(&state.readiness).await;
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether the service is ready, and the `/readyz` body saying why. Also sets the gauge
/// `service_ready` (1 ready, 0 not), so a scrape of `/metrics` shows what `/readyz` would say.
async fn assess(readiness: &Readiness) -> (bool, serde_json::Value) {
    let (database, broker) = readiness.check().await;
    let started = readiness.started.load(Ordering::SeqCst);
    let draining = readiness.draining.load(Ordering::SeqCst);
    let check = |result: &Result<(), String>| match result {
        Ok(()) => json!({ "status": "up" }),
        Err(error) => json!({ "status": "down", "error": error }),
    };
    let reachable = database.is_ok() && broker.is_ok();
    let stalled = readiness.consumer_problem();
    let status = match (draining, started, reachable, &stalled) {
        (true, _, _, _) => "draining",
        (false, false, _, _) => "starting",
        (false, true, false, _) => "not_ready",
        (false, true, true, Some(_)) => "stalled",
        (false, true, true, None) => "ready",
    };
    let mut body = json!({
        "status": status,
        "checks": { "database": check(&database), "broker": check(&broker) },
    });
    if let Some((group, problem)) = stalled {
        body["checks"]["consumer"] =
            json!({ "status": "stalled", "group": group, "error": problem });
    }
    let ready = status == "ready";
    metrics::gauge!("service_ready").set(if ready { 1.0 } else { 0.0 });
    (ready, body)
}

async fn render_metrics(state: web::Data<OpsState>) -> HttpResponse {
    assess(&state.readiness).await;
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

#[cfg(test)]
mod tests {
    use actix_web::test::{TestRequest, call_service, init_service, read_body_json};
    use repo::DatabaseConfig;

    use super::*;

    /// Against the real PostgreSQL and broker: both reachable is not enough while the service
    /// is still starting, and not enough once it drains.
    #[actix_web::test]
    async fn readyz_waits_for_the_service_to_start_and_stops_on_drain() {
        let database = Database::connect(&DatabaseConfig::new(
            repo::testing::test_database_url(),
            "ops",
        ))
        .unwrap();
        let producer = Producer::connect(&events::testing::test_kafka_config()).unwrap();
        let readiness = Arc::new(Readiness::new(database, producer));
        let state = web::Data::new(OpsState {
            readiness: readiness.clone(),
            metrics: crate::metrics_recorder::prometheus(),
        });
        let app = init_service(
            App::new()
                .app_data(state)
                .route("/readyz", web::get().to(readyz)),
        )
        .await;
        let probe = || async {
            let response = call_service(&app, TestRequest::get().uri("/readyz").to_request()).await;
            let status = response.status().as_u16();
            let body: serde_json::Value = read_body_json(response).await;
            (status, body["status"].as_str().unwrap().to_owned(), body)
        };

        let (status, text, body) = probe().await;
        assert_eq!((status, text.as_str()), (503, "starting"), "{body}");
        assert_eq!(body["checks"]["database"]["status"], "up", "{body}");
        assert_eq!(body["checks"]["broker"]["status"], "up", "{body}");

        readiness.mark_started();
        let (status, text, body) = probe().await;
        assert_eq!((status, text.as_str()), (200, "ready"), "{body}");

        readiness.start_draining();
        let (status, text, body) = probe().await;
        assert_eq!((status, text.as_str()), (503, "draining"), "{body}");
    }
}
