#![doc = include_str!("../README.md")]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use events::topics::{TopicOutcome, TopicsSpec, ensure_topics};
use service_runtime::Env;
use service_runtime::config::{database_config, kafka_config};
use service_runtime::telemetry::{LogFormat, Telemetry, TelemetryConfig};

const USAGE: &str = "usage: platform-admin migrate\n       \
                     platform-admin create-topics [--spec PATH] [--max-replication-factor N]";

#[derive(Debug)]
enum Command {
    Migrate,
    CreateTopics {
        spec: PathBuf,
        max_replication_factor: u16,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let command = args.next().context(USAGE)?;
    match command.as_str() {
        "migrate" => match args.next() {
            None => Ok(Command::Migrate),
            Some(extra) => bail!("unexpected argument {extra:?}\n{USAGE}"),
        },
        "create-topics" => {
            let mut spec = PathBuf::from("deploy/topics.toml");
            let mut max_replication_factor = u16::MAX;
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--spec" => spec = value.into(),
                    "--max-replication-factor" => {
                        max_replication_factor =
                            value.parse().ok().filter(|n| *n > 0).with_context(|| {
                                format!(
                                    "--max-replication-factor {value:?} is not a positive number"
                                )
                            })?;
                    }
                    _ => bail!("unknown option {flag:?}\n{USAGE}"),
                }
            }
            Ok(Command::CreateTopics {
                spec,
                max_replication_factor,
            })
        }
        _ => bail!("unknown command {command:?}\n{USAGE}"),
    }
}

fn main() -> ExitCode {
    let telemetry = Telemetry::init(&TelemetryConfig {
        log_format: LogFormat::Text,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()),
        otlp_endpoint: None,
        service_name: "platform-admin".into(),
    });
    let outcome = parse_args(std::env::args().skip(1)).and_then(|command| {
        let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
        runtime.block_on(run(command, &Env::from_process()))
    });
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    };
    if let Ok(telemetry) = telemetry {
        telemetry.shutdown();
    }
    code
}

async fn run(command: Command, env: &Env) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let database = repo::Database::connect(&database_config(env, "platform-admin")?)?;
            let applied = repo::migrations::run_pending(&database).await?;
            if applied.is_empty() {
                tracing::info!("database is up to date");
            }
            for version in applied {
                tracing::info!(%version, "applied migration");
            }
        }
        Command::CreateTopics {
            spec,
            max_replication_factor,
        } => {
            let topics = TopicsSpec::load(&spec)?;
            let kafka = kafka_config(env, "platform-admin")?;
            for (topic, outcome) in ensure_topics(&kafka, &topics, max_replication_factor).await? {
                match outcome {
                    TopicOutcome::Created => tracing::info!(%topic, "created topic"),
                    TopicOutcome::Unchanged => tracing::info!(%topic, "topic exists"),
                    TopicOutcome::PartitionsAdded { from, to } => {
                        tracing::info!(%topic, from, to, "added partitions");
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Command> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn arguments() {
        assert!(matches!(parse(&["migrate"]).unwrap(), Command::Migrate));
        let Command::CreateTopics {
            spec,
            max_replication_factor,
        } = parse(&[
            "create-topics",
            "--max-replication-factor",
            "1",
            "--spec",
            "x.toml",
        ])
        .unwrap()
        else {
            panic!("expected create-topics");
        };
        assert_eq!((spec, max_replication_factor), (PathBuf::from("x.toml"), 1));
        for bad in [
            &[][..],
            &["drop-everything"],
            &["create-topics", "--max-replication-factor", "0"],
            &["migrate", "now"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
