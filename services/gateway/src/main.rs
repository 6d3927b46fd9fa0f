//! The HTTP API of the system. Handlers validate requests, publish them to Kafka or read from
//! PostgreSQL, and answer every error with one JSON shape (see `errors`).

mod config;
mod errors;

use std::process::ExitCode;

use actix_web::{App, HttpServer, web};
use anyhow::Context as _;

use crate::config::GatewayConfig;

fn main() -> ExitCode {
    service_runtime::run_service("gateway", |ctx| async move {
        let config = GatewayConfig::from_env(&ctx.env)?;
        let server =
            HttpServer::new(|| App::new().default_service(web::to(errors::route_not_found)))
                .disable_signals()
                .shutdown_timeout(config.shutdown_grace.as_secs())
                .bind(config.http_addr)
                .with_context(|| format!("binding the API server to {}", config.http_addr))?
                .run();
        tracing::info!(http_addr = %config.http_addr, "API listening");
        let handle = server.handle();
        let serving = tokio::spawn(server);
        ctx.shutdown.cancelled().await;
        // Finish the requests in flight, refuse new ones.
        handle.stop(true).await;
        serving
            .await
            .context("API server task")?
            .context("API server")
    })
}
