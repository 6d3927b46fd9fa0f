//! The position recalculation (seed 003's position consumer).

use diesel::sql_query;
use diesel::sql_types::{Text, Uuid as SqlUuid};
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

impl Waitlist {
    /// Recomputes a campaign's positions under `pg_advisory_xact_lock(hashtext(campaign_id))`,
    /// so that two recalculations of one campaign never interleave, whoever runs them. The lock
    /// is taken before the statement starts, so the statement's snapshot sees every change
    /// committed by the previous holder. Returns how many positions changed.
    pub async fn recalculate_positions(&self, campaign_id: Uuid) -> RepoResult<usize> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<Text, _>(campaign_id.to_string())
                .execute(conn)
                .await?;
            Ok(sql_query(RECALCULATE)
                .bind::<SqlUuid, _>(campaign_id)
                .execute(conn)
                .await?)
        })
        .await
    }
}
