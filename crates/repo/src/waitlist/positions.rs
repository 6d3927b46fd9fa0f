//! The position recalculation (seed 003's position consumer).

use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use uuid::Uuid;

use super::Waitlist;
use crate::{RepoError, RepoResult};

/// Ranks the campaign by `greatest(original − verified × points, 1)`, ties by signup order, and
/// writes the positions that changed: one statement, reading only the source of truth
/// (original positions and verified-referral counts), so running it again gives the same result.
const RECALCULATE: &str = "
UPDATE participants p SET position = ranked.position
FROM (
    SELECT q.id, row_number() OVER (
               ORDER BY greatest(q.original_position
                                 - q.verified_referral_count::int8 * c.points_per_referral, 1),
                        q.original_position) AS position
    FROM participants q JOIN campaigns c ON c.id = q.campaign_id
    WHERE q.campaign_id = $1
) ranked
WHERE p.id = ranked.id AND p.position <> ranked.position";

/// The campaign's total of verified referrals now, and the total its last recalculation saw
/// (none before the first).
const RANKING_STATE: &str = "
SELECT (SELECT coalesce(sum(verified_referral_count), 0)::int8
        FROM participants WHERE campaign_id = $1) AS verified_total,
       (SELECT verified_total FROM campaign_rankings WHERE campaign_id = $1) AS ranked_total";

const RECORD_RANKING: &str = "
INSERT INTO campaign_rankings (campaign_id, verified_total) VALUES ($1, $2)
ON CONFLICT (campaign_id) DO UPDATE
SET verified_total = excluded.verified_total, ranked_at = now()";

#[derive(QueryableByName)]
struct RankingState {
    #[diesel(sql_type = BigInt)]
    verified_total: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    ranked_total: Option<i64>,
}

/// What a recalculation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recalculation {
    /// No referral has counted since the last recalculation: the positions are right already
    /// (a replayed event, or one of a burst an earlier recalculation covered).
    UpToDate,
    /// The campaign was ranked again; `changed` positions were written.
    Ranked { changed: usize },
}

impl Waitlist {
    /// Brings a campaign's positions up to date under
    /// `pg_advisory_xact_lock(hashtext(campaign_id))`, so that two recalculations of one
    /// campaign never interleave, whoever runs them. The lock is taken before anything is read,
    /// so what follows sees every change committed by the previous holder.
    ///
    /// The event that asks for it was published after its verification committed, so that
    /// verification is in the campaign's verified total by now. Verified counts only grow:
    /// when the total equals the one the last recalculation recorded, that recalculation saw
    /// this verification already, and nothing is done. The total is read before the ranking
    /// statement, so a verification committed in between is ranked but not yet recorded, and
    /// only costs one more recalculation later, never a missed one.
    #[tracing::instrument(name = "db.recalculate_positions", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn recalculate_positions(&self, campaign_id: Uuid) -> RepoResult<Recalculation> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<Text, _>(campaign_id.to_string())
                .execute(conn)
                .await?;
            let state: RankingState = sql_query(RANKING_STATE)
                .bind::<SqlUuid, _>(campaign_id)
                .get_result(conn)
                .await?;
            // Never ranked and nothing verified: every position is still its original one.
            if state.ranked_total.unwrap_or(0) == state.verified_total {
                return Ok(Recalculation::UpToDate);
            }
            let changed = sql_query(RECALCULATE)
                .bind::<SqlUuid, _>(campaign_id)
                .execute(conn)
                .await?;
            sql_query(RECORD_RANKING)
                .bind::<SqlUuid, _>(campaign_id)
                .bind::<BigInt, _>(state.verified_total)
                .execute(conn)
                .await?;
            Ok(Recalculation::Ranked { changed })
        })
        .await
    }
}
