#![doc = include_str!("../README.md")]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use events::topics::{TopicOutcome, TopicsSpec, ensure_topics};
use service_runtime::Env;
use service_runtime::config::{database_config, kafka_config};
use service_runtime::telemetry::{LogFormat, Telemetry, TelemetryConfig};

const USAGE: &str = "usage: platform-admin migrate\n       \
                     platform-admin create-topics [--spec PATH] [--max-replication-factor N]\n       \
                     platform-admin purge-accounts [--grace-period-days N] [--batch-size N]\n       \
                     platform-admin oauth2-audit-log [--limit N] [--offset N]\n       \
                     platform-admin oauth-accounts [--recent N]\n       \
                     platform-admin create-client --name NAME --scope SCOPE [--scope SCOPE ...]";

#[derive(Debug)]
enum Command {
    Migrate,
    PurgeAccounts {
        /// `None`: the gateway's `ACCOUNT_DELETION_GRACE` (30 days by default), in whole days.
        grace_period_days: Option<i32>,
        batch_size: i64,
    },
    CreateTopics {
        spec: PathBuf,
        max_replication_factor: u16,
    },
    /// Prints OAuth2 audit log entries, newest first, one JSON object per line.
    AuditLog {
        limit: i64,
        offset: i64,
    },
    /// Prints how many accounts each provider has linked, and the most recent links.
    OAuthAccounts {
        recent: i64,
    },
    /// Registers a confidential client for the client credentials grant, with any scopes
    /// (the service scopes and `admin` included), and prints its secret once.
    CreateClient {
        name: String,
        scopes: Vec<String>,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let command = args.next().context(USAGE)?;
    match command.as_str() {
        "migrate" => match args.next() {
            None => Ok(Command::Migrate),
            Some(extra) => bail!("unexpected argument {extra:?}\n{USAGE}"),
        },
        "purge-accounts" => {
            let (mut grace_period_days, mut batch_size) = (None, 1000);
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                let number = |min: i64| {
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= min)
                        .with_context(|| format!("{flag} {value:?} is not a number ≥ {min}"))
                };
                match flag.as_str() {
                    "--grace-period-days" => {
                        grace_period_days =
                            Some(i32::try_from(number(0)?).context("too many days")?);
                    }
                    "--batch-size" => batch_size = number(1)?,
                    _ => bail!("unknown option {flag:?}\n{USAGE}"),
                }
            }
            Ok(Command::PurgeAccounts {
                grace_period_days,
                batch_size,
            })
        }
        "oauth2-audit-log" => {
            let (mut limit, mut offset) = (100, 0);
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                let number = |min: i64, max: i64| {
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .with_context(|| {
                            format!("{flag} {value:?} is not a number from {min} to {max}")
                        })
                };
                match flag.as_str() {
                    "--limit" => limit = number(1, 10_000)?,
                    "--offset" => offset = number(0, i64::MAX)?,
                    _ => bail!("unknown option {flag:?}\n{USAGE}"),
                }
            }
            Ok(Command::AuditLog { limit, offset })
        }
        "oauth-accounts" => {
            let mut recent = 20;
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--recent" => {
                        recent = value
                            .parse::<i64>()
                            .ok()
                            .filter(|n| (0..=10_000).contains(n))
                            .with_context(|| {
                                format!("--recent {value:?} is not a number from 0 to 10000")
                            })?;
                    }
                    _ => bail!("unknown option {flag:?}\n{USAGE}"),
                }
            }
            Ok(Command::OAuthAccounts { recent })
        }
        "create-client" => {
            let (mut name, mut scopes) = (None, Vec::new());
            while let Some(flag) = args.next() {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--name" => name = Some(value),
                    "--scope" => scopes.push(value),
                    _ => bail!("unknown option {flag:?}\n{USAGE}"),
                }
            }
            let name = name
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty() && n.chars().count() <= 200)
                .with_context(|| format!("--name of 1 to 200 characters is required\n{USAGE}"))?;
            if scopes.is_empty() {
                bail!("at least one --scope is required\n{USAGE}");
            }
            Ok(Command::CreateClient { name, scopes })
        }
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

    fn parse(args: &[&str]) -> anyhow::Result<Command> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
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
}
