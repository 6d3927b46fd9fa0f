//! The HTTP API of the system. Handlers take typed bodies (`json`), publish to Kafka or read
//! from PostgreSQL, answer with typed bodies (`reply`), and every error in one JSON shape
//! (`errors`). The OpenAPI document, generated from those types (`openapi`), is served at
//! `/api/v1/openapi.json`.

mod access;
mod accounts;
mod activity;
mod admin;
mod campaigns;
mod client_ip;
mod config;
mod errors;
mod federation;
mod hashing;
mod json;
mod oauth2;
mod observe;
mod openapi;
mod registration;
mod reply;

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use repo::{Accounts, ActivityLogs, PgUserRepository, Registrations, Waitlist};
use service_runtime::CancellationToken;
use service_runtime::snowflake_ids::SnowflakeIds;
use utoipa_actix_web::AppExt as _;

use crate::accounts::AccountsApi;
use crate::activity::ActivityApi;
use crate::campaigns::WaitlistApi;
use crate::config::GatewayConfig;
use crate::hashing::PasswordHasher;
use crate::registration::RegistrationApi;

fn main() -> ExitCode {
    service_runtime::run_service("gateway", |ctx| async move {
        let config = GatewayConfig::from_env(&ctx.env)?;
        let lease_lost = CancellationToken::new();
        let ids =
            SnowflakeIds::start(&ctx.env, &ctx.database, ctx.name, lease_lost.clone()).await?;
        let hasher = PasswordHasher::new(
            config.hash_params,
            config.hash_workers,
            config.hash_queue_capacity,
            config.hash_bulk_share,
        )
        .map_err(anyhow::Error::msg)?;
        let registrations = web::Data::new(RegistrationApi {
            producer: ctx.producer.clone(),
            topic: config.registration_topic.clone(),
            hasher: hasher.clone(),
            events: events::EventBuilder::new(ctx.name),
            password_rules: config.password_rules,
            bulk_max_users: config.bulk_max_users,
            registrations: Registrations::new(ctx.database.clone()),
            users: PgUserRepository::new(ctx.database.clone()),
            ids: ids.generator(),
            pending_window: config.pending_window,
        });
        let activity = web::Data::new(ActivityApi {
            producer: ctx.producer.clone(),
            topic: config.activity_topic.clone(),
            logs: ActivityLogs::new(ctx.database.clone()),
            batch_max: config.activity_batch_max,
            retention: chrono::Duration::from_std(config.activity_retention)
                .context("ACTIVITY_RETENTION")?,
        });
        // A hash of a password nobody knows: an unknown identifier is checked against it.
        let decoy_hash = hasher
            .hash_all(vec![
                domain::accounts::SecretToken::generate()
                    .expose()
                    .to_owned(),
            ])
            .await
            .map_err(|e| anyhow::anyhow!("computing the decoy password hash: {e}"))?
            .remove(0);
        config.accounts.route_events(ctx.producer.router());
        let accounts = web::Data::new(AccountsApi {
            users: PgUserRepository::new(ctx.database.clone()),
            accounts: Accounts::new(ctx.database.clone()),
            hasher: hasher.clone(),
            decoy_hash,
            password_rules: config.password_rules,
            producer: ctx.producer.clone(),
            events: events::EventBuilder::new(ctx.name),
            activity: activity.get_ref().clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            config: config.accounts.clone(),
            rate_limits: config.rate_limits.clone(),
        });
        let keys = oauth2::keys::KeyRing::start(
            repo::SigningKeys::new(ctx.database.clone()),
            &config.oauth2,
        )
        .await
        .context("loading the ID token signing keys")?;
        let stop_keys = CancellationToken::new();
        let reloading_keys = tokio::spawn(keys.clone().keep_loaded(stop_keys.clone()));
        let provider = web::Data::new(oauth2::Provider {
            accounts: accounts.get_ref().clone(),
            keys,
            config: config.oauth2.clone(),
        });
        // The identity providers are asked with a short timeout; nothing redirects.
        let upstream_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("the identity providers' HTTP client")?;
        let federation = web::Data::new(federation::routes::Federation {
            upstreams: std::sync::Arc::new(
                config
                    .identity_providers
                    .iter()
                    .cloned()
                    .map(|p| federation::Upstream::new(p, upstream_http.clone()))
                    .collect(),
            ),
            accounts: accounts.get_ref().clone(),
            registration: registrations.clone(),
            issuer: config.oauth2.issuer.clone(),
            state_key: config.oauth2.derived_key("oidc login state"),
        });
        let relay = waitlist::OutboxRelay::new(
            Waitlist::new(ctx.database.clone()),
            ctx.producer.clone(),
            config.relay,
        );
        let campaigns_api = web::Data::new(WaitlistApi {
            waitlist: Waitlist::new(ctx.database.clone()),
            encoder: waitlist::DomainEventEncoder::new(&config.domain_events_topic, ctx.name),
            relay: relay.notifier(),
            tokens: waitlist::VerificationTokens::new(config.verification_secret.clone()),
            participant_tokens: waitlist::ParticipantTokens::new(
                config.verification_secret.clone(),
            ),
            fraud: config.fraud,
            trusted_proxies: config.trusted_proxies.clone(),
            allow_private_webhooks: config.allow_private_webhooks,
            public_url: config.public_url.clone(),
        });
        let stop_relay = CancellationToken::new();
        let relaying = tokio::spawn(relay.run(stop_relay.clone()));
        let stop_api_events = CancellationToken::new();
        let (observer, publishing_api_events) = observe::Observer::start(
            ctx.producer.clone(),
            ctx.name,
            config.api_events.clone(),
            config.trusted_proxies.clone(),
            stop_api_events.clone(),
            // A share of the shutdown grace; what the broker has not taken by then is dropped.
            Duration::from_secs(2),
        );
        let observer = web::Data::new(observer);
        let max_body_bytes = config.max_body_bytes;
        let body_read_timeout = json::BodyReadTimeout(config.body_read_timeout);

        let document = web::Data::new(openapi::Document::build());
        let server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .configure(openapi::routes)
                .into_app()
                .configure(oauth2::pages::routes)
                // Who may call each route, and how often (the route table).
                .wrap(actix_web::middleware::from_fn(access::enforce))
                .wrap(actix_web::middleware::from_fn(reply::head_as_get))
                .wrap(actix_web::middleware::from_fn(json::refuse_nul_in_url))
                // Outermost: every answer, refusals of the inner middleware too, is observed.
                .wrap(actix_web::middleware::from_fn(observe::observe))
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body_bytes)
                        .error_handler(errors::json_error),
                )
                .app_data(body_read_timeout)
                .app_data(web::PathConfig::default().error_handler(errors::path_error))
                .app_data(registrations.clone())
                .app_data(activity.clone())
                .app_data(accounts.clone())
                .app_data(provider.clone())
                .app_data(federation.clone())
                .app_data(campaigns_api.clone())
                .app_data(document.clone())
                .app_data(observer.clone())
                .default_service(web::to(errors::route_not_found))
        })
        .workers(config.http_workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace.as_secs())
        .bind(config.http_addr)
        .with_context(|| format!("binding the API server to {}", config.http_addr))?
        .run();
        tracing::info!(http_addr = %config.http_addr, "API listening");
        let handle = server.handle();
        let serving = tokio::spawn(server);
        ctx.mark_started();
        tokio::select! {
            () = ctx.shutdown.cancelled() => {}
            () = lease_lost.cancelled() => tracing::error!("lost the Snowflake node ID lease; stopping"),
        }
        // Finish the requests in flight, refuse new ones.
        handle.stop(true).await;
        serving
            .await
            .context("API server task")?
            .context("API server")?;
        // Requests are done. Side by side: the API event publisher sends what is buffered and
        // ends; what requests wrote to the outbox is relayed in a last round (or by another
        // replica).
        stop_api_events.cancel();
        stop_relay.cancel();
        stop_keys.cancel();
        let _ = reloading_keys.await;
        let (published, relayed) = tokio::join!(publishing_api_events, relaying);
        published.context("API event publisher task")?;
        relayed.context("outbox relay task")?;
        ids.stop().await;
        anyhow::ensure!(
            !lease_lost.is_cancelled(),
            "lost the Snowflake node ID lease"
        );
        Ok(())
    })
}
