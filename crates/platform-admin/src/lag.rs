//! `platform-admin lag`: for every consumer group the cluster knows (or those named), its
//! state and members, and per partition of the topics where it has committed offsets: the
//! committed offset, the end offset and the lag. One JSON line per partition, then one per group with its total;
//! with `--watch N`, again every N seconds, each round stamped.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use events::KafkaConfig;
use serde_json::json;
use service_runtime::Env;
use service_runtime::config::kafka_config;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub(crate) struct LagArgs {
    /// Only this group; repeat for more. Default: every group of the cluster.
    #[arg(long = "group", value_parser = crate::group_name)]
    groups: Vec<String>,
    /// Print again every this many seconds, until interrupted.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    watch: Option<u64>,
}

pub(crate) async fn run(args: LagArgs, env: &Env) -> anyhow::Result<()> {
    let kafka = kafka_config(env, "platform-admin")?;
    if !args.groups.is_empty() {
        // A group the cluster does not know is a typo: said once, not every round of a watch.
        let (kafka, groups) = (kafka.clone(), args.groups.clone());
        tokio::task::spawn_blocking(move || check_known(&kafka, &groups))
            .await
            .context("the lag command failed")??;
    }
    loop {
        let (kafka_round, groups) = (kafka.clone(), args.groups.clone());
        let reported = tokio::task::spawn_blocking(move || report(&kafka_round, &groups))
            .await
            .context("the lag command failed")?;
        let Some(every) = args.watch else {
            return reported.map(drop);
        };
        match reported {
            // Nobody reads any more (`| head`).
            Ok(false) => return Ok(()),
            Ok(true) => {}
            // Watching: a broker that does not answer for a round is said, not the end.
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "no lag this round"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn check_known(kafka: &KafkaConfig, groups: &[String]) -> anyhow::Result<()> {
    let known = events::admin::describe_groups(kafka, None, TIMEOUT)?;
    for name in groups {
        if !known.iter().any(|g| &g.group == name) {
            let mut names: Vec<&str> = known.iter().map(|g| g.group.as_str()).take(20).collect();
            if known.len() > 20 {
                names.push("…");
            }
            anyhow::bail!(
                "the cluster knows no group {name:?}; it knows {}",
                names.join(", ")
            );
        }
    }
    Ok(())
}

/// One round; whether stdout still takes the output.
fn report(kafka: &KafkaConfig, only: &[String]) -> anyhow::Result<bool> {
    let known = events::admin::describe_groups(kafka, None, TIMEOUT)?;
    let at = chrono::Utc::now();
    let groups: Vec<events::admin::GroupDescription> = if only.is_empty() {
        known
    } else {
        // Checked before the first round; one that vanished since (deleted) shows as Dead.
        only.iter()
            .map(|name| {
                known
                    .iter()
                    .find(|g| &g.group == name)
                    .cloned()
                    .unwrap_or_else(|| events::admin::GroupDescription {
                        group: name.clone(),
                        state: "Dead".into(),
                        members: Vec::new(),
                    })
            })
            .collect()
    };
    let mut open = true;
    for group in groups {
        let lags = events::admin::group_lag(kafka, &group.group, None, TIMEOUT)?;
        let total: i64 = lags.iter().map(|l| l.lag).sum();
        for lag in &lags {
            open &= crate::print_json(&json!({
                "at": at,
                "group": group.group,
                "topic": lag.topic,
                "partition": lag.partition,
                "committed": lag.committed,
                "end": lag.end,
                "lag": lag.lag,
            }));
        }
        open &= crate::print_json(&json!({
            "at": at,
            "group": group.group,
            "state": group.state,
            "members": group.members.len(),
            "partitions": lags.len(),
            "total_lag": total,
        }));
    }
    Ok(open)
}
