//! `platform-admin replay`: sets a consumer group's committed offsets on a topic so that it
//! reads again from there: an offset per partition, a point in time (the broker's
//! offset-for-time lookup, by the records' timestamps), or either end.
//!
//! Two ways to replay:
//! - **the service's own group, stopped**: scale the worker to zero, move its offsets, scale it
//!   back; it reprocesses from there (its handlers are idempotent). The command refuses while
//!   the group has a member, and the broker refuses the commit if one joins meanwhile;
//! - **a separate replay group**: name a new group, move its offsets, and run a worker with
//!   `KAFKA_CONSUMER_GROUP` set to it; the service's own group goes on undisturbed.
//!
//! Prints one JSON line per partition (committed before, new offset, end, records to
//! reprocess), then the outcome; `--dry-run` prints the plan only.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use events::KafkaConfig;
use serde_json::json;
use service_runtime::Env;
use service_runtime::config::kafka_config;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_time", "to_offset"])))]
pub(crate) struct ReplayArgs {
    /// The consumer group whose offsets move (a stopped service group, or a new replay group).
    #[arg(long, value_parser = crate::group_name)]
    group: String,
    /// The topic to replay.
    #[arg(long, value_parser = crate::topic_name)]
    topic: String,
    /// From the oldest record each partition still holds.
    #[arg(long)]
    to_earliest: bool,
    /// To the end: skip everything not read yet.
    #[arg(long)]
    to_latest: bool,
    /// From the first record at or after this time (RFC 3339), per partition.
    #[arg(long, value_parser = crate::rfc3339)]
    to_time: Option<DateTime<Utc>>,
    /// `PARTITION:OFFSET`; repeat for more partitions. Partitions not named keep their offset.
    #[arg(long, value_parser = partition_offset)]
    to_offset: Vec<(i32, i64)>,
    /// Print the plan; move nothing.
    #[arg(long)]
    dry_run: bool,
}

fn partition_offset(value: &str) -> Result<(i32, i64), String> {
    let (partition, offset) = value
        .split_once(':')
        .ok_or_else(|| format!("{value:?} is not PARTITION:OFFSET"))?;
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| format!("{partition:?} is not a partition number"))?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| format!("{offset:?} is not an offset"))?;
    Ok((partition, offset))
}

pub(crate) async fn run(args: ReplayArgs, env: &Env) -> anyhow::Result<()> {
    let kafka = kafka_config(env, "platform-admin")?;
    tokio::task::spawn_blocking(move || replay(&kafka, &args))
        .await
        .context("the replay command failed")?
}

fn replay(kafka: &KafkaConfig, args: &ReplayArgs) -> anyhow::Result<()> {
    let group = &args.group;
    let topic = &args.topic;
    let members: Vec<String> = events::admin::describe_groups(kafka, Some(group), TIMEOUT)?
        .into_iter()
        .flat_map(|g| g.members)
        .collect();
    if !members.is_empty() && !args.dry_run {
        bail!(
            "group {group} has {} active member(s) ({}): stop them first (for a Deployment, \
             `kubectl scale deployment/<service> --replicas=0`), or replay in a new group",
            members.len(),
            members.join(", ")
        );
    }
    let partitions = events::admin::partitions(kafka, topic, TIMEOUT)?;
    let current: HashMap<i32, events::admin::PartitionLag> =
        events::admin::group_lag(kafka, group, Some(std::slice::from_ref(topic)), TIMEOUT)?
            .into_iter()
            .map(|lag| (lag.partition, lag))
            .collect();
    let targets: Vec<(i32, i64)> = if args.to_earliest {
        partitions
            .iter()
            .map(|p| (*p, current.get(p).map_or(0, |l| l.start)))
            .collect()
    } else if args.to_latest {
        partitions
            .iter()
            .map(|p| (*p, current.get(p).map_or(0, |l| l.end)))
            .collect()
    } else if let Some(at) = args.to_time {
        events::admin::offsets_for_time(kafka, topic, at.timestamp_millis(), TIMEOUT)?
    } else {
        for (i, (partition, _)) in args.to_offset.iter().enumerate() {
            if args.to_offset[..i].iter().any(|(p, _)| p == partition) {
                bail!("--to-offset names partition {partition} twice");
            }
            if !partitions.contains(partition) {
                bail!("{topic} has no partition {partition} (it has {partitions:?})");
            }
        }
        args.to_offset.clone()
    };
    if !args.to_offset.is_empty() {
        // A partition without a committed offset would start at the earliest, not "keep" one.
        let unnamed: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !args.to_offset.iter().any(|(named, _)| named == p))
            .filter(|p| current.get(p).is_none_or(|lag| lag.committed.is_none()))
            .collect();
        if !unnamed.is_empty() {
            bail!(
                "group {group} has no committed offset on partition(s) {unnamed:?} of {topic}: \
                 name them too with --to-offset, or a consumer would start them at the earliest"
            );
        }
    }
    if !members.is_empty() {
        crate::print_json(&json!({
            "warning": format!("group {group} has {} active member(s): stop them before moving its offsets", members.len()),
        }));
    }
    let mut commits = Vec::new();
    for (partition, wanted) in targets {
        let lag = current.get(&partition);
        let (start, end) = lag.map_or((0, 0), |l| (l.start, l.end));
        // An offset outside what the partition holds would be reset by the consumer: the
        // nearest end it holds, said in the plan.
        let offset = wanted.clamp(start, end);
        if offset != wanted {
            crate::print_json(&json!({
                "warning": format!("partition {partition} holds offsets {start} to {end}: {wanted} becomes {offset}"),
            }));
        }
        crate::print_json(&json!({
            "group": group,
            "topic": topic,
            "partition": partition,
            "committed_before": lag.and_then(|l| l.committed),
            "offset": offset,
            "end": end,
            "to_process": end - offset,
        }));
        commits.push((topic.clone(), partition, offset));
    }
    if args.dry_run {
        crate::print_json(&json!({"dry_run": true, "moved": false}));
        return Ok(());
    }
    events::admin::commit_group_offsets(kafka, group, &commits).with_context(|| {
        format!("committing the offsets of {group} (did a member join meanwhile?)")
    })?;
    tracing::info!(%group, %topic, partitions = commits.len(), "offsets moved for a replay");
    crate::print_json(&json!({"dry_run": false, "moved": true}));
    Ok(())
}
