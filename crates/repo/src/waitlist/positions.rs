//! Waitlist positions (the position-worker's projection): a participant's position is its rank
//! by `greatest(original − verified × points, 1)`, ties by signup order, so positions are 1, 2,
//! 3… with no two alike.
//!
//! Each participant records the verified-referral count its position reflects
//! (`ranked_referral_count`). A verification raises `verified_referral_count` only; the
//! participants whose two counts differ (found through the partial index
//! `participants_unranked`) are then *moved*: each from its old rank to its new one, with the
//! participants in between shifted down by one. That touches the moved rows and nothing else.
//! When many participants wait (a worker that lagged behind a burst), one full ranking of the
//! campaign is cheaper, and that is done instead.

use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Waitlist;
use crate::{RepoError, RepoResult};

/// More participants waiting to move than this, and the campaign is ranked in full instead.
pub const MOVE_LIMIT: usize = 32;

/// Ranks the campaign in full and writes the positions and ranked counts that changed: one
/// statement, reading only the source of truth (original positions and verified-referral
/// counts), so running it again gives the same result.
const RANK_ALL: &str = "
UPDATE participants p
SET position = ranked.position, ranked_referral_count = ranked.verified
FROM (
    SELECT q.id, q.verified_referral_count AS verified, row_number() OVER (
               ORDER BY greatest(q.original_position
                                 - q.verified_referral_count::int8 * c.points_per_referral, 1),
                        q.original_position) AS position
    FROM participants q JOIN campaigns c ON c.id = q.campaign_id
    WHERE q.campaign_id = $1
) ranked
WHERE p.id = ranked.id
  AND (p.position <> ranked.position OR p.ranked_referral_count <> ranked.verified)";

/// The participants whose position does not reflect their verified count yet, with what a move
/// needs; at most `$2`, in no particular order (moves may be made in any order). No `ORDER BY`:
/// it would tempt the planner into walking a campaign's signups in order instead of reading the
/// partial index `participants_unranked`, which is empty when positions are up to date.
const UNRANKED: &str = "
SELECT p.id, p.position, p.original_position, p.verified_referral_count AS verified,
       p.ranked_referral_count AS ranked,
       (SELECT c.points_per_referral::int8 FROM campaigns c WHERE c.id = p.campaign_id) AS points
FROM participants p
WHERE p.campaign_id = $1 AND p.verified_referral_count <> p.ranked_referral_count
LIMIT $2";

/// The ranking key of the participant at a position: its score by its ranked count, and its
/// signup order.
const KEY_AT: &str = "
SELECT greatest(p.original_position - p.ranked_referral_count::int8 * $3, 1) AS score,
       p.original_position
FROM participants p
WHERE p.campaign_id = $1 AND p.position = $2";

/// Moves one participant (`$2`) from position `$3` up to `$4` with its new ranked count `$5`,
/// and shifts the participants from `$4` to `$3 − 1` down by one.
const MOVE: &str = "
UPDATE participants
SET position = CASE WHEN id = $2 THEN $4 ELSE position + 1 END,
    ranked_referral_count = CASE WHEN id = $2 THEN $5 ELSE ranked_referral_count END
WHERE campaign_id = $1 AND position BETWEEN $4 AND $3";

#[derive(QueryableByName)]
struct Unranked {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = BigInt)]
    original_position: i64,
    #[diesel(sql_type = Integer)]
    verified: i32,
    #[diesel(sql_type = Integer)]
    ranked: i32,
    #[diesel(sql_type = BigInt)]
    points: i64,
}

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = BigInt)]
    score: i64,
    #[diesel(sql_type = BigInt)]
    original_position: i64,
}

/// What a recalculation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recalculation {
    /// Every position already reflects every verified referral (a replayed event, or one of a
    /// burst an earlier recalculation covered).
    UpToDate,
    /// `participants` participants were moved to their new ranks; `changed` positions were
    /// written, the moved participants' included.
    Moved { participants: usize, changed: usize },
    /// The campaign was ranked in full; `changed` participants were written.
    Ranked { changed: usize },
}

impl Waitlist {
    /// Brings a campaign's positions up to date under
    /// `pg_advisory_xact_lock(hashtext(campaign_id))`, so that two updates of one campaign never
    /// interleave, whoever runs them. The lock is taken before anything is read, so what follows
    /// sees every change committed by the previous holder.
    ///
    /// The event that asks for it was published after its verification committed, so that
    /// verification is visible now: either an earlier update moved its participant already
    /// (nothing to do), or the participant is among those waiting, and is moved now (in full
    /// ranking when more than [`MOVE_LIMIT`] wait). A verification committed while this runs is
    /// left for the next event: only the counts read here are recorded as ranked.
    #[tracing::instrument(name = "db.recalculate_positions", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn recalculate_positions(&self, campaign_id: Uuid) -> RepoResult<Recalculation> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<Text, _>(campaign_id.to_string())
                .execute(conn)
                .await?;
            let waiting: Vec<Unranked> = sql_query(UNRANKED)
                .bind::<SqlUuid, _>(campaign_id)
                .bind::<BigInt, _>(MOVE_LIMIT as i64 + 1)
                .load(conn)
                .await?;
            if waiting.is_empty() {
                return Ok(Recalculation::UpToDate);
            }
            // A count that went down (edited by hand) would move a participant back, which a
            // move does not do: rank in full then too.
            if waiting.len() > MOVE_LIMIT || waiting.iter().any(|p| p.verified < p.ranked) {
                return Ok(Recalculation::Ranked {
                    changed: rank_all(conn, campaign_id).await?,
                });
            }
            let mut changed = 0;
            let mut waiting = waiting;
            for i in 0..waiting.len() {
                let (from, to, written) = move_participant(conn, campaign_id, &waiting[i]).await?;
                changed += written;
                // The participants it passed moved down one, those still waiting among them too.
                for later in &mut waiting[i + 1..] {
                    if (to..from).contains(&later.position) {
                        later.position += 1;
                    }
                }
            }
            Ok(Recalculation::Moved {
                participants: waiting.len(),
                changed,
            })
        })
        .await
    }

    /// Ranks a campaign in full under its advisory lock, whatever waits: the way back to
    /// consistent positions after they were rebuilt or edited by hand. How many participants
    /// were written.
    #[tracing::instrument(name = "db.rank_all_positions", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn rank_all_positions(&self, campaign_id: Uuid) -> RepoResult<usize> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<Text, _>(campaign_id.to_string())
                .execute(conn)
                .await?;
            rank_all(conn, campaign_id).await
        })
        .await
    }
}

async fn rank_all(conn: &mut AsyncPgConnection, campaign_id: Uuid) -> RepoResult<usize> {
    Ok(sql_query(RANK_ALL)
        .bind::<SqlUuid, _>(campaign_id)
        .execute(conn)
        .await?)
}

/// Moves one participant to the rank of its verified count: its new position is one after the
/// last participant ahead of it whose key is still smaller than its new one, found by binary
/// search over positions `[1, position)` (keys grow with positions). Returns the old and the new
/// position, and how many rows were written.
async fn move_participant(
    conn: &mut AsyncPgConnection,
    campaign_id: Uuid,
    participant: &Unranked,
) -> RepoResult<(i64, i64, usize)> {
    let key = (
        (participant.original_position - i64::from(participant.verified) * participant.points)
            .max(1),
        participant.original_position,
    );
    // Invariant: the key at `ahead` is smaller than the new key (position 0 stands for "none"),
    // the key at `behind` is not (the participant's own old position, its key only shrinks).
    let (mut ahead, mut behind) = (0_i64, participant.position);
    while behind - ahead > 1 {
        let middle = ahead + (behind - ahead) / 2;
        let at: Key = sql_query(KEY_AT)
            .bind::<SqlUuid, _>(campaign_id)
            .bind::<BigInt, _>(middle)
            .bind::<BigInt, _>(participant.points)
            .get_result(conn)
            .await?;
        if (at.score, at.original_position) < key {
            ahead = middle;
        } else {
            behind = middle;
        }
    }
    let written = sql_query(MOVE)
        .bind::<SqlUuid, _>(campaign_id)
        .bind::<SqlUuid, _>(participant.id)
        .bind::<BigInt, _>(participant.position)
        .bind::<BigInt, _>(behind)
        .bind::<Integer, _>(participant.verified)
        .execute(conn)
        .await?;
    Ok((participant.position, behind, written))
}
