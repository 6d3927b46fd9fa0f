//! `run_service`: the life of a service process from configuration to exit code.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::{ConsumerSettings, DlqLimit, EventConsumer, Producer};
use repo::Database;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonConfig, telemetry_config};
use crate::ops_server::{OpsServer, Readiness};
use crate::telemetry::Telemetry;
use crate::{ConfigError, Env, metrics_recorder, shutdown};

/// What a service gets to do its work with.
#[derive(Debug)]
pub struct ServiceContext {
    pub name: &'static str,
    /// The process environment, for the service's own variables.
    pub env: Env,
    pub config: CommonConfig,
    pub database: Database,
    /// Publishes events and records, with retries and the DLQ.
    pub producer: Producer,
    /// Cancelled on SIGTERM/SIGINT: stop taking new work, finish what is in flight, return.
    pub shutdown: CancellationToken,
    readiness: Arc<Readiness>,
}

impl ServiceContext {
    /// Says the service's own start-up is done (its node ID leased, its consumer created, its
    /// listener bound): from now on `/readyz` answers 200 while the dependencies do. Until then
    /// it answers 503 `starting`, so that an orchestrator, `make dev` or a test never takes a
    /// service that is still waiting for its lease for one that works.
    pub fn mark_started(&self) {
        self.readiness.mark_started();
        tracing::info!(service = self.name, "started; ready for work");
    }

    /// Consumer settings with what every consumer reads from the environment:
    ///
    /// | variable | default | meaning |
    /// |---|---|---|
    /// | `KAFKA_DLQ_LIMIT_RATIO` | `0.5` | dead letters per finished message in the window at which the consumer stops (above 1: never) |
    /// | `KAFKA_DLQ_LIMIT_MIN_COUNT` | `100` | dead letters in the window below which the ratio is not looked at |
    /// | `KAFKA_DLQ_LIMIT_WINDOW` | `1m` | the window of the limit |
    /// | `KAFKA_DLQ_MAX_RECORD_BYTES` | `900000` | largest dead letter; a larger value is cut |
    /// | `KAFKA_STALL_AFTER` | `5m` | in flight and nothing finished this long: `/readyz` says stalled |
    /// | `KAFKA_LAG_REPORT_INTERVAL` | `15s` | how often the member reports its group's lag (`kafka_consumer_group_lag`) |
    ///
    /// The shutdown deadline of the consumer is three quarters of `SHUTDOWN_TIMEOUT`, leaving
    /// the rest for the last commit and the producer's flush.
    ///
    /// # Errors
    /// A variable that does not parse.
    pub fn consumer_settings(
        &self,
        group_id: &str,
        topics: &[&str],
        dlq_topic: &str,
    ) -> Result<ConsumerSettings, ConfigError> {
        let mut settings = ConsumerSettings::new(group_id, topics, dlq_topic);
        settings.shutdown_timeout = self.config.shutdown_timeout * 3 / 4;
        let defaults = DlqLimit::default();
        settings.dlq_limit = DlqLimit {
            max_ratio: self
                .env
                .parse("KAFKA_DLQ_LIMIT_RATIO", defaults.max_ratio)?,
            min_count: self
                .env
                .parse("KAFKA_DLQ_LIMIT_MIN_COUNT", defaults.min_count)?,
            window: self
                .env
                .duration("KAFKA_DLQ_LIMIT_WINDOW", defaults.window)?,
        };
        settings.dead_letter_max_bytes = self
            .env
            .parse("KAFKA_DLQ_MAX_RECORD_BYTES", settings.dead_letter_max_bytes)?;
        settings.stall_after = self
            .env
            .duration("KAFKA_STALL_AFTER", settings.stall_after)?;
        settings.lag_report_interval = self
            .env
            .duration("KAFKA_LAG_REPORT_INTERVAL", settings.lag_report_interval)?;
        Ok(settings)
    }

    /// Has `/readyz` answer 503 `stalled`, with the reason, while `consumer` is not making
    /// progress (see `events::ConsumerHealth`), and publishes a `system.alert` event to
    /// `SYSTEM_EVENTS_TOPIC` (`system-events`) when it stops making progress (`alert_type`
    /// `dlq_limit_reached`, severity `critical`, or `consumer_stalled`, severity `error`) and
    /// again, `resolved: true`, when it makes progress again. Checked every
    /// `ALERT_CHECK_INTERVAL` (`5s`).
    ///
    /// # Errors
    /// `SYSTEM_EVENTS_TOPIC` or `ALERT_CHECK_INTERVAL` that does not parse.
    pub fn watch_consumer(&self, consumer: &EventConsumer) -> Result<(), ConfigError> {
        let health = consumer.health();
        self.readiness.watch(health.clone());
        let topic = self.env.string("SYSTEM_EVENTS_TOPIC", "system-events");
        let every = self
            .env
            .duration("ALERT_CHECK_INTERVAL", Duration::from_secs(5))?;
        if every.is_zero() {
            return Err(ConfigError::Invalid {
                name: "ALERT_CHECK_INTERVAL".into(),
                value: "0".into(),
                reason: "must be longer than zero".into(),
            });
        }
        self.producer
            .router()
            .set_topic_mapping("system.alert", &topic);
        tokio::spawn(crate::alerts::watch(
            health,
            self.producer.clone(),
            self.name,
            every,
            self.shutdown.clone(),
        ));
        Ok(())
    }
}

/// Runs a service: configuration, telemetry, connections, the operations server, the service's
/// own future, and graceful shutdown on SIGTERM/SIGINT. Returns the process exit code: 0 after a
/// clean shutdown, 1 when configuration, start-up or the service failed, or shutdown overran
/// `SHUTDOWN_TIMEOUT`.
pub fn run_service<F, Fut>(name: &'static str, service: F) -> ExitCode
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let env = Env::from_process();
    let telemetry = match telemetry_config(&env, name)
        .map_err(anyhow::Error::from)
        .and_then(|config| Telemetry::init(&config).map_err(anyhow::Error::from))
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            // No logger yet: standard error is all there is.
            eprintln!("{name}: cannot start telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(name, env, service));
    // Blocking tasks (a metadata request to an absent broker) must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));

    let code = match outcome {
        Ok(()) => {
            tracing::info!(service = name, exit_code = 0, "shutdown complete");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(
                service = name,
                exit_code = 1,
                error = format!("{error:#}"),
                "service failed"
            );
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run<F, Fut>(name: &'static str, env: Env, service: F) -> anyhow::Result<()>
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let config = CommonConfig::from_env(&env, name).context("reading configuration")?;
    let metrics = metrics_recorder::prometheus();
    metrics_recorder::describe_service(name);

    let database = Database::connect(&config.database).context("creating the database pool")?;
    let producer = Producer::connect(&config.kafka).context("creating the Kafka producer")?;
    let readiness = Arc::new(Readiness::new(database.clone(), producer.clone()));
    // Start serving before the dependencies answer: /healthz says the process is alive, and
    // /readyz says 503 until they do, which is what an orchestrator needs to know.
    let ops = OpsServer::start(config.ops_addr, readiness.clone(), metrics)
        .with_context(|| format!("binding the operations server to {}", config.ops_addr))?;
    match readiness.check().await {
        (Ok(()), Ok(())) => {
            tracing::info!(ops_addr = %config.ops_addr, "database and broker reachable; starting");
        }
        (database, broker) => tracing::warn!(
            ops_addr = %config.ops_addr,
            database = ?database.err(),
            broker = ?broker.err(),
            "database or broker not reachable yet; starting"
        ),
    }

    let shutdown = CancellationToken::new();
    let shutdown_timeout = config.shutdown_timeout;
    let context = ServiceContext {
        name,
        env,
        config,
        database: database.clone(),
        producer: producer.clone(),
        shutdown: shutdown.clone(),
        readiness: readiness.clone(),
    };
    let mut work = tokio::spawn(service(context));

    let outcome = tokio::select! {
        signal = shutdown::termination_signal() => {
            tracing::info!(signal, "received {signal}, shutting down");
            readiness.start_draining();
            shutdown.cancel();
            match tokio::time::timeout(shutdown_timeout, &mut work).await {
                Ok(joined) => flatten(joined),
                Err(_) => {
                    work.abort();
                    Err(anyhow::anyhow!("in-flight work did not finish within {shutdown_timeout:?}"))
                }
            }
        }
        joined = &mut work => {
            let outcome = flatten(joined);
            if outcome.is_ok() {
                tracing::info!("service finished its work");
            }
            outcome
        }
    };
    ops.stop().await;
    // Deliver what is still in flight before the process goes.
    if let Err(error) = producer.close(Duration::from_secs(5)).await {
        tracing::error!(%error, "messages still in flight were not delivered");
    }
    database.close();
    outcome
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.map_err(|e| anyhow::anyhow!("service task panicked: {e}"))?
}
