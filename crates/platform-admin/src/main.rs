#![doc = include_str!("../README.md")]

mod dlq;
mod lag;
mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use events::topics::{TopicOutcome, TopicsSpec, ensure_topics};
use service_runtime::Env;
use service_runtime::config::{database_config, kafka_config};
use service_runtime::telemetry::{LogFormat, Telemetry, TelemetryConfig};

/// Operator commands of the signup platform. Configuration comes from the services'
/// environment variables (DATABASE_URL, KAFKA_BROKERS, the KAFKA_SASL_*/KAFKA_SSL_* settings,
/// the topic variables).
#[derive(Debug, Parser)]
#[command(name = "platform-admin", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies the pending migrations, under an advisory lock.
    Migrate,
    /// Deletes for good the accounts deleted more than the grace period ago, then what has
    /// expired.
    PurgeAccounts {
        /// Whole days; by default ACCOUNT_DELETION_GRACE (30 days), in whole days.
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        grace_period_days: Option<i32>,
        /// Accounts per statement.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..))]
        batch_size: i64,
    },
    /// Creates the missing topics of the spec and adds partitions where it declares more.
    CreateTopics {
        #[arg(long, default_value = "deploy/topics.toml")]
        spec: PathBuf,
        /// Caps the replication factor on small clusters (1 locally).
        #[arg(long, default_value_t = u16::MAX, value_parser = clap::value_parser!(u16).range(1..))]
        max_replication_factor: u16,
    },
    /// Prints OAuth2 audit log entries, newest first, one JSON object per line.
    #[command(name = "oauth2-audit-log")]
    AuditLog {
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        offset: i64,
    },
    /// Prints how many accounts each provider has linked, and the most recent links.
    #[command(name = "oauth-accounts")]
    OAuthAccounts {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(0..=10_000))]
        recent: i64,
    },
    /// Registers a confidential client for the client credentials grant, with any scopes
    /// (the service scopes and `admin` included), and prints its secret once.
    CreateClient {
        /// 1 to 200 characters.
        #[arg(long, value_parser = client_name)]
        name: String,
        /// A scope of the provider; repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Dead letters: list, show, redrive.
    Dlq(dlq::DlqArgs),
    /// Moves a consumer group's committed offsets (a stopped group, or a new replay group) to
    /// an offset per partition, a point in time, or either end.
    Replay(replay::ReplayArgs),
    /// Committed offset, end offset and lag per group and partition.
    Lag(lag::LagArgs),
}

/// Prints `value` as one line of JSON on stdout (what the commands report; logs go to stderr).
/// False when stdout is closed (`| head`): a command doing work goes on, a watch stops.
fn print_json(value: &serde_json::Value) -> bool {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{value}").is_ok()
}

/// An RFC 3339 time (`2026-12-01T09:00:00Z`, `2026-12-01T10:00:00+01:00`), from 1970 on.
fn rfc3339(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let time = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|_| format!("{value:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z"))?
        .with_timezone(&chrono::Utc);
    if time.timestamp_millis() < 0 {
        return Err(format!("{value:?} is before 1970, older than any record"));
    }
    Ok(time)
}

/// A Kafka topic name as the broker takes it: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
fn topic_name(value: &str) -> Result<String, String> {
    let valid = (1..=249).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value != "."
        && value != "..";
    if !valid {
        return Err(
            "a topic name is 1 to 249 of the characters a-z, A-Z, 0-9, '.', '_' and '-'".into(),
        );
    }
    Ok(value.to_owned())
}

/// A consumer group's name: not empty.
fn group_name(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("a group name is required".into());
    }
    Ok(value.to_owned())
}

fn client_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("a name of 1 to 200 characters".into());
    }
    Ok(name.to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = Telemetry::init(&TelemetryConfig {
        log_format: LogFormat::Text,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()),
        otlp_endpoint: None,
        service_name: "platform-admin".into(),
        log_to_stderr: true,
    });
    let outcome = tokio::runtime::Runtime::new()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command, &Env::from_process())));
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
        Command::PurgeAccounts {
            grace_period_days,
            batch_size,
        } => {
            let days = match grace_period_days {
                Some(days) => days,
                None => {
                    let grace = env.duration(
                        "ACCOUNT_DELETION_GRACE",
                        std::time::Duration::from_secs(30 * 24 * 3600),
                    )?;
                    i32::try_from(grace.as_secs().div_ceil(24 * 3600))
                        .context("ACCOUNT_DELETION_GRACE is too long")?
                }
            };
            purge_accounts(env, days, batch_size).await?;
        }
        Command::AuditLog { limit, offset } => {
            use repo::UserRepository as _;
            use std::io::Write as _;
            let database = repo::Database::connect(&database_config(env, "platform-admin")?)?;
            let entries = repo::PgUserRepository::new(database)
                .get_oauth2_audit_logs(limit, offset)
                .await
                .context("reading the OAuth2 audit log")?;
            let mut out = std::io::stdout().lock();
            for entry in entries {
                writeln!(out, "{}", serde_json::to_string(&entry)?)?;
            }
        }
        Command::OAuthAccounts { recent } => oauth_accounts(env, recent).await?,
        Command::CreateClient { name, scopes } => create_client(env, name, scopes).await?,
        Command::Dlq(args) => dlq::run(args, env).await?,
        Command::Replay(args) => replay::run(args, env).await?,
        Command::Lag(args) => lag::run(args, env).await?,
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

/// Deletes for good the accounts soft-deleted more than `grace_period_days` ago, `batch_size`
/// at a time (each batch its own statement, so no transaction holds many rows for long), then
/// what has expired: provider tokens of linked logins, OAuth2 codes and tokens (session tokens
/// among them), sessions, account tokens and throttle counters.
async fn purge_accounts(env: &Env, grace_period_days: i32, batch_size: i64) -> anyhow::Result<()> {
    use repo::UserRepository as _;
    let database = repo::Database::connect(&database_config(env, "platform-admin")?)?;
    let users = repo::PgUserRepository::new(database.clone());
    let mut purged = 0;
    loop {
        let batch = users
            .batch_delete_by_status(domain::UserStatus::Deleted, batch_size, grace_period_days)
            .await
            .context("deleting accounts past their grace period")?;
        purged += batch;
        if batch < u64::try_from(batch_size).unwrap_or(u64::MAX) {
            break;
        }
    }
    let provider_tokens = users.cleanup_expired_tokens().await?;
    let oauth2_tokens = users.cleanup_expired_oauth2_tokens().await?;
    let cleaned = repo::Accounts::new(database)
        .cleanup(std::time::Duration::from_secs(24 * 3600))
        .await?;
    tracing::info!(
        purged_accounts = purged,
        grace_period_days,
        provider_tokens,
        oauth2_tokens,
        sessions = cleaned.sessions,
        account_tokens = cleaned.account_tokens,
        throttle_counters = cleaned.throttle_counters,
        "accounts purged"
    );
    Ok(())
}

/// One JSON line per provider (`{"provider", "linked_accounts"}`: the providers of
/// `OIDC_PROVIDERS` and any among the recent links), then one per recent link, newest first
/// (`{"provider", "user_id", "email", "linked_at"}`; no tokens, not even their hashes).
async fn oauth_accounts(env: &Env, recent: i64) -> anyhow::Result<()> {
    use repo::UserRepository as _;
    use std::io::Write as _;
    let database = repo::Database::connect(&database_config(env, "platform-admin")?)?;
    let users = repo::PgUserRepository::new(database);
    let links = users.get_recent_oauth_links(recent).await?;
    let mut providers: Vec<String> = env
        .string("OIDC_PROVIDERS", "")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for link in &links {
        if !providers.contains(&link.provider) {
            providers.push(link.provider.clone());
        }
    }
    let mut out = std::io::stdout().lock();
    for provider in providers {
        let count = users.count_oauth_accounts_by_provider(&provider).await?;
        writeln!(
            out,
            "{}",
            serde_json::json!({"provider": provider, "linked_accounts": count})
        )?;
    }
    for link in links {
        writeln!(
            out,
            "{}",
            serde_json::json!({"provider": link.provider, "user_id": link.user_id.to_string(), "email": link.email, "linked_at": link.created_at})
        )?;
    }
    Ok(())
}

/// Registers a client-credentials client with `scopes` (each a scope of the provider) and
/// prints `{"client_id", "client_secret", "scopes"}` as one JSON line: the secret is stored only
/// as its SHA-256 hash and shown this once. The registration is in the OAuth2 audit log.
async fn create_client(env: &Env, name: String, scopes: Vec<String>) -> anyhow::Result<()> {
    use domain::OAuth2Client;
    use domain::accounts::SecretToken;
    use repo::UserRepository as _;
    use std::io::Write as _;

    let database = repo::Database::connect(&database_config(env, "platform-admin")?)?;
    let users = repo::PgUserRepository::new(database);
    let known = users
        .get_all_scopes()
        .await
        .context("reading the provider's scopes")?;
    if let Some(unknown) = scopes.iter().find(|s| !known.iter().any(|k| &k.name == *s)) {
        bail!(
            "{unknown:?} is not a scope of the provider; it has {}",
            known
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut scopes = scopes;
    scopes.sort();
    scopes.dedup();
    let secret = SecretToken::generate();
    let now = chrono::Utc::now();
    let client = users
        .create_oauth2_client(&OAuth2Client {
            id: uuid::Uuid::now_v7(),
            client_id: SecretToken::generate().expose()[..32].to_owned(),
            client_secret_hash: Some(secret.hash()),
            name,
            redirect_uris: Vec::new(),
            grant_types: vec!["client_credentials".to_owned()],
            scopes,
            owner_user_id: None,
            is_confidential: true,
            created_at: now,
            updated_at: now,
        })
        .await
        .context("registering the client")?;
    users
        .create_oauth2_audit_log(&domain::OAuth2AuditLog {
            id: 0,
            event_type: "client_created".to_owned(),
            client_id: Some(client.client_id.clone()),
            user_id: None,
            ip_address: None,
            user_agent: Some("platform-admin".to_owned()),
            success: true,
            details: serde_json::json!({"grant_types": client.grant_types, "scopes": client.scopes, "by": "platform-admin"}),
            created_at: now,
        })
        .await
        .context("recording the registration in the audit log")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({
            "client_id": client.client_id,
            "client_secret": secret.expose(),
            "scopes": client.scopes,
        })
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("platform-admin").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn audit_log_arguments() {
        assert!(matches!(
            parse(&["oauth2-audit-log"]).unwrap(),
            Command::AuditLog {
                limit: 100,
                offset: 0
            }
        ));
        assert!(matches!(
            parse(&["oauth2-audit-log", "--limit", "5", "--offset", "10"]).unwrap(),
            Command::AuditLog {
                limit: 5,
                offset: 10
            }
        ));
        for bad in [
            &["oauth2-audit-log", "--limit", "0"][..],
            &["oauth2-audit-log", "--limit", "10001"],
            &["oauth2-audit-log", "--offset", "-1"],
            &["oauth2-audit-log", "--since", "1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_client_arguments() {
        let Command::CreateClient { name, scopes } = parse(&[
            "create-client",
            "--name",
            " ops ",
            "--scope",
            "admin",
            "--scope",
            "activity:read",
        ])
        .unwrap() else {
            panic!("expected create-client");
        };
        assert_eq!(
            (name.as_str(), scopes),
            ("ops", vec!["admin".to_owned(), "activity:read".to_owned()])
        );
        for bad in [
            &["create-client", "--name", "ops"][..],
            &["create-client", "--scope", "admin"],
            &["create-client", "--name", " ", "--scope", "admin"],
            &["create-client", "--name", "ops", "--scope"],
            &["create-client", "--name", "ops", "--secret", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
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
        assert!(matches!(
            parse(&[
                "purge-accounts",
                "--grace-period-days",
                "0",
                "--batch-size",
                "5"
            ])
            .unwrap(),
            Command::PurgeAccounts {
                grace_period_days: Some(0),
                batch_size: 5
            }
        ));
        assert!(matches!(
            parse(&["purge-accounts"]).unwrap(),
            Command::PurgeAccounts {
                grace_period_days: None,
                batch_size: 1000
            }
        ));
        for bad in [
            &[][..],
            &["drop-everything"],
            &["create-topics", "--max-replication-factor", "0"],
            &["migrate", "now"],
            &["purge-accounts", "--batch-size", "0"],
            &["purge-accounts", "--grace-period-days", "-1"],
            &["purge-accounts", "--everything", "1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn operations_arguments() {
        assert!(
            parse(&[
                "dlq",
                "list",
                "--topic",
                "waitlist.dlq",
                "--since",
                "2026-01-01T00:00:00Z"
            ])
            .is_ok()
        );
        assert!(parse(&["dlq", "redrive", "--topic", "waitlist.dlq", "--dry-run"]).is_ok());
        assert!(
            parse(&[
                "dlq",
                "show",
                "--topic",
                "t",
                "--partition",
                "0",
                "--offset",
                "3"
            ])
            .is_ok()
        );
        assert!(parse(&["replay", "--group", "g", "--topic", "t", "--to-earliest"]).is_ok());
        assert!(
            parse(&[
                "replay",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-offset",
                "0:5",
                "--to-offset",
                "1:7"
            ])
            .is_ok()
        );
        assert!(parse(&["lag", "--watch", "5"]).is_ok());
        for bad in [
            &["dlq", "list", "--since", "yesterday"][..],
            &["dlq", "show", "--topic", "t"],
            &["dlq", "redrive", "--max-redrives", "0"],
            &["replay", "--group", "g", "--topic", "t"],
            &[
                "replay",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest",
            ],
            &["replay", "--group", "g", "--topic", "t", "--to-offset", "5"],
            &[
                "replay",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-time",
                "noon",
            ],
            &["lag", "--watch", "0"],
            &["dlq", "list", "--topic", ""],
            &["dlq", "list", "--topic", "ünïcödé"],
            &[
                "dlq",
                "show",
                "--topic",
                &"a".repeat(250),
                "--partition",
                "0",
                "--offset",
                "0",
            ],
            &["replay", "--group", "g", "--topic", "a b", "--to-earliest"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
