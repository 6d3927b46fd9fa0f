//! Updates waitlist positions when referrals verify.
//!
//! Consumer group `position-workers` on `domain-events`, exactly one handler in flight per
//! instance (`KAFKA_WORKER_POOL_SIZE` is ignored). On `referral.verified` it brings the
//! campaign's positions up to date under `pg_advisory_xact_lock(hashtext(campaign_id))`
//! (`repo::Waitlist::recalculate_positions`), so instances that share the group (`kubectl
//! scale`) never interleave on one campaign and a replayed event gives the same positions: the
//! participants whose verified count their position does not reflect yet are moved to their new
//! rank, shifting only the participants in between (the whole campaign is ranked again when more
//! than `repo::waitlist::MOVE_LIMIT` wait). An event whose verification an earlier update already
//! covered (a replay, or one of a burst) costs one index look-up. Other event types are skipped.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use events::rdkafka::message::OwnedMessage;
use events::{Backoff, EventPayload, Handler, HandlerError, RetryPolicy};
use repo::Waitlist;
use repo::waitlist::Recalculation;
use waitlist::worker::{WorkerConfig, event_id, parse_event, repo_failure};

#[derive(Debug)]
struct PositionHandler {
    waitlist: Waitlist,
}

#[async_trait]
impl Handler for PositionHandler {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let Some(event) = parse_event(message)? else {
            return Ok(());
        };
        let EventPayload::ReferralVerified(data) = &event.payload else {
            return Ok(());
        };
        let campaign_id = event_id(&data.campaign_id, "campaign_id")?;
        let started = std::time::Instant::now();
        let outcome = self
            .waitlist
            .recalculate_positions(campaign_id)
            .await
            .map_err(repo_failure)?;
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Recalculation::Moved {
                participants,
                changed,
            } => {
                metrics::histogram!("waitlist_position_recalculation_seconds", "kind" => "moved")
                    .record(seconds);
                tracing::info!(%campaign_id, participants, changed, "participants moved to their new positions");
            }
            Recalculation::Ranked { changed } => {
                metrics::histogram!("waitlist_position_recalculation_seconds", "kind" => "ranked")
                    .record(seconds);
                tracing::info!(%campaign_id, changed, "positions recalculated in full");
            }
            Recalculation::UpToDate => {
                metrics::counter!("waitlist_position_recalculations_skipped_total").increment(1);
                tracing::debug!(%campaign_id, "positions already up to date");
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    service_runtime::run_service("position-worker", |ctx| async move {
        let mut config = WorkerConfig::from_env(&ctx.env, "position-workers", 1)?;
        if config.consumer.worker_pool_size != 1 {
            tracing::warn!(
                configured = config.consumer.worker_pool_size,
                "the position-worker runs one handler at a time; KAFKA_WORKER_POOL_SIZE ignored"
            );
            config.consumer.worker_pool_size = 1;
        }
        tracing::info!(?config, "configured");
        let retry = RetryPolicy {
            max_attempts: 8,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
        };
        let handler = PositionHandler {
            waitlist: Waitlist::new(ctx.database.clone()),
        };
        waitlist::worker::consume(&ctx, &config, retry, handler)
            .await
            .context("consuming domain events")
    })
}
