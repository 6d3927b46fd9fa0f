//! What the email and reward workers record: emails sent (one per event, template and
//! recipient) and the delivery of each reward.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension as _, QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::Waitlist;
use crate::RepoResult;

/// Whether an email is still to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailClaim {
    /// Not sent yet (new, or an earlier try died before recording it): send it.
    Send,
    /// Sent before: a replay. Send nothing.
    AlreadySent,
}

/// A reward with everything its delivery needs.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RewardDelivery {
    #[diesel(sql_type = SqlUuid)]
    pub user_reward_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub campaign_id: Uuid,
    #[diesel(sql_type = Text)]
    pub campaign_name: String,
    #[diesel(sql_type = Text)]
    pub webhook_secret: String,
    #[diesel(sql_type = SqlUuid)]
    pub participant_id: Uuid,
    #[diesel(sql_type = Text)]
    pub participant_email: String,
    #[diesel(sql_type = SqlUuid)]
    pub tier_id: Uuid,
    #[diesel(sql_type = Text)]
    pub tier_name: String,
    #[diesel(sql_type = Integer)]
    pub referral_threshold: i32,
    #[diesel(sql_type = Text)]
    pub delivery_method: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub webhook_url: Option<String>,
    /// `pending`, `delivered` or `failed`.
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub earned_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Status {
    #[diesel(sql_type = Text)]
    status: String,
}

#[derive(QueryableByName)]
struct Attempts {
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl Waitlist {
    /// Claims an email before sending it. A `sending` row left by a try that died is claimed
    /// again, so an email is sent once, or twice only when a process dies between sending it and
    /// recording it.
    #[tracing::instrument(name = "db.claim_email", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn claim_email(
        &self,
        event_id: Uuid,
        template: &str,
        recipient: &str,
    ) -> RepoResult<EmailClaim> {
        let mut conn = self.database.connection().await?;
        let status: Status = sql_query(
            "INSERT INTO sent_emails (event_id, template, recipient, status)
             VALUES ($1, $2, $3, 'sending')
             ON CONFLICT (event_id, template, recipient) DO UPDATE SET status = sent_emails.status
             RETURNING status",
        )
        .bind::<SqlUuid, _>(event_id)
        .bind::<Text, _>(template)
        .bind::<Text, _>(recipient)
        .get_result(&mut *conn)
        .await?;
        Ok(if status.status == "sent" {
            EmailClaim::AlreadySent
        } else {
            EmailClaim::Send
        })
    }

    #[tracing::instrument(name = "db.mark_email_sent", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn mark_email_sent(
        &self,
        event_id: Uuid,
        template: &str,
        recipient: &str,
    ) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "UPDATE sent_emails SET status = 'sent', sent_at = now()
             WHERE event_id = $1 AND template = $2 AND recipient = $3",
        )
        .bind::<SqlUuid, _>(event_id)
        .bind::<Text, _>(template)
        .bind::<Text, _>(recipient)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// A reward and its delivery state; `None` when there is no such reward.
    #[tracing::instrument(name = "db.reward_delivery", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn reward_delivery(
        &self,
        user_reward_id: Uuid,
    ) -> RepoResult<Option<RewardDelivery>> {
        let mut conn = self.database.connection().await?;
        Ok(sql_query(
            "SELECT r.id AS user_reward_id, c.id AS campaign_id, c.name AS campaign_name,
                    c.webhook_secret, p.id AS participant_id, p.email AS participant_email,
                    t.id AS tier_id, t.name AS tier_name, t.referral_threshold,
                    t.delivery_method, t.webhook_url, r.delivery_status AS status,
                    r.delivery_attempts AS attempts, r.earned_at
             FROM participant_rewards r
             JOIN campaigns c ON c.id = r.campaign_id
             JOIN participants p ON p.id = r.participant_id
             JOIN campaign_reward_tiers t ON t.id = r.tier_id
             WHERE r.id = $1",
        )
        .bind::<SqlUuid, _>(user_reward_id)
        .get_result(&mut *conn)
        .await
        .optional()?)
    }

    /// Counts a delivery attempt about to be made; returns the attempts so far, this one
    /// included (an attempt that died half-way counts too).
    #[tracing::instrument(name = "db.start_reward_attempt", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn start_reward_attempt(&self, user_reward_id: Uuid) -> RepoResult<i32> {
        let mut conn = self.database.connection().await?;
        let attempts: Attempts = sql_query(
            "UPDATE participant_rewards SET delivery_attempts = delivery_attempts + 1
             WHERE id = $1 RETURNING delivery_attempts AS attempts",
        )
        .bind::<SqlUuid, _>(user_reward_id)
        .get_result(&mut *conn)
        .await?;
        Ok(attempts.attempts)
    }

    #[tracing::instrument(name = "db.mark_reward_delivered", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn mark_reward_delivered(&self, user_reward_id: Uuid) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "UPDATE participant_rewards
             SET delivery_status = 'delivered', delivered_at = now(), last_error = NULL
             WHERE id = $1",
        )
        .bind::<SqlUuid, _>(user_reward_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Makes a delivery that failed for good `pending` again, with its attempts counted from
    /// zero: an operator redrove its event after fixing the cause. Whether it was `failed`.
    #[tracing::instrument(name = "db.reopen_failed_reward", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn reopen_failed_reward(&self, user_reward_id: Uuid) -> RepoResult<bool> {
        let mut conn = self.database.connection().await?;
        let reopened = sql_query(
            "UPDATE participant_rewards SET delivery_status = 'pending', delivery_attempts = 0
             WHERE id = $1 AND delivery_status = 'failed'",
        )
        .bind::<SqlUuid, _>(user_reward_id)
        .execute(&mut *conn)
        .await?;
        Ok(reopened == 1)
    }

    /// Records why an attempt failed; `give_up` marks the delivery `failed` for good.
    #[tracing::instrument(name = "db.record_reward_failure", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn record_reward_failure(
        &self,
        user_reward_id: Uuid,
        error: &str,
        give_up: bool,
    ) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "UPDATE participant_rewards
             SET last_error = $2,
                 delivery_status = CASE WHEN $3 THEN 'failed' ELSE delivery_status END
             WHERE id = $1 AND delivery_status = 'pending'",
        )
        .bind::<SqlUuid, _>(user_reward_id)
        .bind::<Text, _>(error)
        .bind::<Bool, _>(give_up)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
