//! Creating and reading campaigns.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension as _, QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::UserId;
use domain::waitlist::{CampaignStatus, NewCampaign};
use uuid::Uuid;

use super::{Campaign, Milestone, RewardTier, Waitlist};
use crate::{RepoError, RepoResult};

#[derive(QueryableByName)]
struct CampaignRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    points_per_referral: i32,
    #[diesel(sql_type = BigInt)]
    participant_count: i64,
    #[diesel(sql_type = Nullable<Text>)]
    notify_email: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    owner_user_id: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct TierRow {
    #[diesel(sql_type = SqlUuid)]
    campaign_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    referral_threshold: i32,
    #[diesel(sql_type = Text)]
    delivery_method: String,
    #[diesel(sql_type = Nullable<Text>)]
    webhook_url: Option<String>,
}

#[derive(QueryableByName)]
struct MilestoneRow {
    #[diesel(sql_type = SqlUuid)]
    campaign_id: Uuid,
    #[diesel(sql_type = BigInt)]
    participant_count: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    reached_at: Option<DateTime<Utc>>,
}

const CAMPAIGN_COLUMNS: &str = "id, name, status, points_per_referral, participant_count, \
     notify_email, owner_user_id, created_at";

/// What became of a [`CampaignChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The campaign as it is now.
    Changed(Campaign),
    /// Refused: the campaign has ended, and the change would have taken it out of `ended`.
    Ended,
    NotFound,
}

/// What a campaign's owner may change; `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignChange {
    pub name: Option<String>,
    pub status: Option<CampaignStatus>,
    /// `Some(None)` removes the address.
    pub notify_email: Option<Option<String>>,
}

impl Waitlist {
    /// Stores a validated campaign of `owner` with its tiers and milestones. `webhook_secret`
    /// signs the campaign's reward webhooks.
    #[tracing::instrument(name = "db.create_campaign", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn create_campaign(
        &self,
        id: Uuid,
        campaign: &NewCampaign,
        webhook_secret: &str,
        owner: Option<UserId>,
    ) -> RepoResult<Campaign> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            sql_query(
                "INSERT INTO campaigns
                     (id, name, status, points_per_referral, notify_email, webhook_secret, owner_user_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Text, _>(campaign.name.trim())
            .bind::<Text, _>(campaign.status.as_str())
            .bind::<Integer, _>(campaign.points_per_referral)
            .bind::<Nullable<Text>, _>(campaign.notify_email.as_ref().map(|e| e.as_str().to_owned()))
            .bind::<Text, _>(webhook_secret)
            .bind::<Nullable<BigInt>, _>(owner.map(UserId::as_i64))
            .execute(conn)
            .await?;
            let tiers = &campaign.reward_tiers;
            sql_query(
                "INSERT INTO campaign_reward_tiers
                     (id, campaign_id, name, referral_threshold, delivery_method, webhook_url)
                 SELECT t.id, $1, t.name, t.threshold, t.method, t.url
                 FROM unnest($2::uuid[], $3::text[], $4::int4[], $5::text[], $6::text[])
                     AS t(id, name, threshold, method, url)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Array<SqlUuid>, _>(tiers.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(tiers.iter().map(|t| t.name.trim().to_owned()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(tiers.iter().map(|t| t.referral_threshold).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(tiers.iter().map(|t| t.delivery.name().to_owned()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(
                tiers.iter().map(|t| t.delivery.webhook_url().map(str::to_owned)).collect::<Vec<_>>(),
            )
            .execute(conn)
            .await?;
            sql_query(
                "INSERT INTO campaign_milestones (campaign_id, participant_count)
                 SELECT $1, unnest($2::int8[])",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Array<BigInt>, _>(&campaign.milestones)
            .execute(conn)
            .await?;
            Ok(())
        })
        .await?;
        // On the same connection: taking a second one while holding this one lets a burst of
        // creations hold the whole pool, each waiting for the one more it needs.
        load_campaign(&mut conn, id)
            .await?
            .ok_or_else(|| RepoError::not_found("campaign", id))
    }

    #[tracing::instrument(name = "db.campaign", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn campaign(&self, id: Uuid) -> RepoResult<Option<Campaign>> {
        let mut conn = self.database.connection().await?;
        load_campaign(&mut conn, id).await
    }

    /// A campaign's participant count; `None` when there is no such campaign. For reads that
    /// need no more of the campaign than that (the leaderboard).
    #[tracing::instrument(name = "db.participant_count", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn participant_count(&self, id: Uuid) -> RepoResult<Option<i64>> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            participant_count: i64,
        }
        let mut conn = self.database.connection().await?;
        let count: Option<Count> =
            sql_query("SELECT participant_count FROM campaigns WHERE id = $1")
                .bind::<SqlUuid, _>(id)
                .get_result(&mut *conn)
                .await
                .optional()?;
        Ok(count.map(|c| c.participant_count))
    }

    /// The newest campaigns of `owner` first (of everyone's when `None`), `limit` of them.
    #[tracing::instrument(name = "db.campaigns", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn campaigns(&self, owner: Option<UserId>, limit: i64) -> RepoResult<Vec<Campaign>> {
        let mut conn = self.database.connection().await?;
        let rows: Vec<CampaignRow> = sql_query(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns
             WHERE $1::int8 IS NULL OR owner_user_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind::<Nullable<BigInt>, _>(owner.map(UserId::as_i64))
        .bind::<BigInt, _>(limit)
        .load(&mut *conn)
        .await?;
        with_details(&mut conn, rows).await
    }

    /// Replaces the secret campaign `id`'s reward webhooks are signed with; `false` when there is
    /// no such campaign. Deliveries from then on are signed with the new one.
    #[tracing::instrument(name = "db.rotate_webhook_secret", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn rotate_webhook_secret(&self, id: Uuid, secret: &str) -> RepoResult<bool> {
        let mut conn = self.database.connection().await?;
        let changed = sql_query("UPDATE campaigns SET webhook_secret = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .bind::<Text, _>(secret)
            .execute(&mut *conn)
            .await?;
        Ok(changed == 1)
    }

    /// Who owns campaign `id`: `None` when there is no such campaign, `Some(None)` when it has
    /// no owner.
    #[tracing::instrument(name = "db.campaign_owner", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn campaign_owner(&self, id: Uuid) -> RepoResult<Option<Option<UserId>>> {
        #[derive(QueryableByName)]
        struct Owner {
            #[diesel(sql_type = Nullable<BigInt>)]
            owner_user_id: Option<i64>,
        }
        let mut conn = self.database.connection().await?;
        let owner: Option<Owner> = sql_query("SELECT owner_user_id FROM campaigns WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .get_result(&mut *conn)
            .await
            .optional()?;
        Ok(owner.map(|o| o.owner_user_id.map(UserId::from_i64)))
    }

    /// Applies `change` to campaign `id` in one statement, unless it would take an ended
    /// campaign out of `ended` (an ended campaign stays ended).
    #[tracing::instrument(name = "db.change_campaign", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn change_campaign(
        &self,
        id: Uuid,
        change: &CampaignChange,
    ) -> RepoResult<ChangeOutcome> {
        let mut conn = self.database.connection().await?;
        // The change and the answer in one transaction: the row stays locked until the campaign
        // is read back, so the answer is this change's, not a concurrent one's.
        let changed = conn
            .transaction::<_, RepoError, _>(async |conn| {
                let changed = sql_query(
                    "UPDATE campaigns SET
                 name = COALESCE($2, name),
                 status = COALESCE($3, status),
                 notify_email = CASE WHEN $4 THEN $5 ELSE notify_email END
             WHERE id = $1 AND NOT (status = 'ended' AND COALESCE($3, 'ended') <> 'ended')",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<Nullable<Text>, _>(change.name.as_deref().map(str::trim))
                .bind::<Nullable<Text>, _>(change.status.map(CampaignStatus::as_str))
                .bind::<diesel::sql_types::Bool, _>(change.notify_email.is_some())
                .bind::<Nullable<Text>, _>(change.notify_email.clone().flatten())
                .execute(&mut *conn)
                .await?;
                if changed == 0 {
                    return Ok(None);
                }
                load_campaign(conn, id).await
            })
            .await?;
        if let Some(campaign) = changed {
            return Ok(ChangeOutcome::Changed(campaign));
        }
        // One connection at a time: a second one taken while holding this one lets a burst of
        // changes hold the whole pool.
        drop(conn);
        Ok(match self.participant_count(id).await? {
            Some(_) => ChangeOutcome::Ended,
            None => ChangeOutcome::NotFound,
        })
    }
}

/// Adds each campaign's tiers (by threshold) and milestones (by count).
async fn with_details(
    conn: &mut AsyncPgConnection,
    rows: Vec<CampaignRow>,
) -> RepoResult<Vec<Campaign>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let tiers: Vec<TierRow> = sql_query(
        "SELECT campaign_id, id, name, referral_threshold, delivery_method, webhook_url
         FROM campaign_reward_tiers WHERE campaign_id = ANY($1) ORDER BY referral_threshold",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    let milestones: Vec<MilestoneRow> = sql_query(
        "SELECT campaign_id, participant_count, reached_at
         FROM campaign_milestones WHERE campaign_id = ANY($1) ORDER BY participant_count",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Campaign {
                status: CampaignStatus::parse(&row.status).ok_or_else(|| {
                    RepoError::Database(format!("unknown campaign status {:?}", row.status))
                })?,
                reward_tiers: tiers
                    .iter()
                    .filter(|t| t.campaign_id == row.id)
                    .map(|t| RewardTier {
                        id: t.id,
                        name: t.name.clone(),
                        referral_threshold: t.referral_threshold,
                        delivery_method: t.delivery_method.clone(),
                        webhook_url: t.webhook_url.clone(),
                    })
                    .collect(),
                milestones: milestones
                    .iter()
                    .filter(|m| m.campaign_id == row.id)
                    .map(|m| Milestone {
                        participant_count: m.participant_count,
                        reached_at: m.reached_at,
                    })
                    .collect(),
                id: row.id,
                name: row.name,
                points_per_referral: row.points_per_referral,
                participant_count: row.participant_count,
                notify_email: row.notify_email,
                owner_user_id: row.owner_user_id.map(UserId::from_i64),
                created_at: row.created_at,
            })
        })
        .collect()
}

/// One campaign with its tiers and milestones.
async fn load_campaign(conn: &mut AsyncPgConnection, id: Uuid) -> RepoResult<Option<Campaign>> {
    let rows: Vec<CampaignRow> = sql_query(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
    ))
    .bind::<SqlUuid, _>(id)
    .load(conn)
    .await?;
    Ok(with_details(conn, rows).await?.pop())
}
