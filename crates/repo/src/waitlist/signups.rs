//! Signups, verifications and what participants read about themselves.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension as _, QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::waitlist::{
    CampaignStatus, SignupFacts, WaitlistEvent, canonical_email, new_referral_code,
};
use uuid::Uuid;

use super::outbox::insert_outbox;
use super::{
    CreatedReferral, EarnedReward, LeaderboardEntry, NewSignup, OutboxEncoder, Participant,
    SignedUp, SignupError, Verification, Waitlist,
};
use crate::{RepoError, RepoResult};

#[derive(QueryableByName)]
struct LockedCampaign {
    #[diesel(sql_type = Text)]
    status: String,
}

#[derive(QueryableByName)]
struct Referrer {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct ParticipantRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    campaign_id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    referral_code: String,
    #[diesel(sql_type = BigInt)]
    original_position: i64,
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Integer)]
    verified_referral_count: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    verified_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl From<ParticipantRow> for Participant {
    fn from(row: ParticipantRow) -> Self {
        Self {
            id: row.id,
            campaign_id: row.campaign_id,
            email: row.email,
            referral_code: row.referral_code,
            original_position: row.original_position,
            position: row.position,
            verified_referral_count: row.verified_referral_count,
            verified_at: row.verified_at,
            created_at: row.created_at,
            rewards: Vec::new(),
        }
    }
}

#[derive(QueryableByName)]
struct RewardRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    tier_id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    referral_threshold: i32,
    #[diesel(sql_type = Text)]
    delivery_status: String,
    #[diesel(sql_type = Timestamptz)]
    earned_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct VerifyTarget {
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    verified_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    points_per_referral: i32,
}

#[derive(QueryableByName)]
struct CountedReferral {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    referrer_id: Uuid,
}

#[derive(QueryableByName)]
struct NewReward {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    tier_id: Uuid,
}

#[derive(QueryableByName)]
struct Reached {
    #[diesel(sql_type = BigInt)]
    participant_count: i64,
}

#[derive(QueryableByName)]
struct LeaderRow {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Integer)]
    verified_referral_count: i32,
}

const PARTICIPANT_COLUMNS: &str = "id, campaign_id, email, referral_code, original_position, \
     position, verified_referral_count, verified_at, created_at";

impl Waitlist {
    /// Signs `signup.email` up: the next original position, a fresh referral code, the referral
    /// (checked by the fraud rules) when a code was given, the milestones the count crosses, and
    /// their events, in one transaction.
    #[tracing::instrument(name = "db.sign_up", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn sign_up(
        &self,
        signup: &NewSignup,
        encoder: &dyn OutboxEncoder,
    ) -> Result<SignedUp, SignupError> {
        let mut conn = self.database.connection().await.map_err(RepoError::from)?;
        conn.transaction::<_, SignupError, _>(async |conn| {
            sign_up_in_transaction(conn, signup, encoder).await
        })
        .await
    }

    /// Verifies a participant's email: marks them verified, counts their referral (unless it was
    /// flagged), awards the tiers the referrer's count reaches, with their events, in one
    /// transaction. `Err(NotFound)` when the participant is not in the campaign.
    #[tracing::instrument(name = "db.verify", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn verify(
        &self,
        campaign_id: Uuid,
        participant_id: Uuid,
        encoder: &dyn OutboxEncoder,
    ) -> RepoResult<Verification> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            verify_in_transaction(conn, campaign_id, participant_id, encoder).await
        })
        .await
    }

    /// A participant with the rewards they earned; `None` when not in the campaign.
    #[tracing::instrument(name = "db.participant", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn participant(
        &self,
        campaign_id: Uuid,
        participant_id: Uuid,
    ) -> RepoResult<Option<Participant>> {
        let mut conn = self.database.connection().await?;
        let row: Option<ParticipantRow> = sql_query(format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = $1 AND campaign_id = $2"
        ))
        .bind::<SqlUuid, _>(participant_id)
        .bind::<SqlUuid, _>(campaign_id)
        .get_result(&mut *conn)
        .await
        .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rewards: Vec<RewardRow> = sql_query(
            "SELECT r.id, r.tier_id, t.name, t.referral_threshold, r.delivery_status, r.earned_at
             FROM participant_rewards r JOIN campaign_reward_tiers t ON t.id = r.tier_id
             WHERE r.participant_id = $1 ORDER BY t.referral_threshold",
        )
        .bind::<SqlUuid, _>(participant_id)
        .load(&mut *conn)
        .await?;
        let mut participant = Participant::from(row);
        participant.rewards = rewards
            .into_iter()
            .map(|r| EarnedReward {
                id: r.id,
                tier_id: r.tier_id,
                name: r.name,
                referral_threshold: r.referral_threshold,
                delivery_status: r.delivery_status,
                earned_at: r.earned_at,
            })
            .collect();
        Ok(Some(participant))
    }

    /// `limit` participants by position, after the first `offset`.
    #[tracing::instrument(name = "db.leaderboard", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn leaderboard(
        &self,
        campaign_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> RepoResult<Vec<LeaderboardEntry>> {
        let mut conn = self.database.connection().await?;
        let rows: Vec<LeaderRow> = sql_query(
            "SELECT position, id, email, verified_referral_count FROM participants
             WHERE campaign_id = $1 ORDER BY position, original_position LIMIT $2 OFFSET $3",
        )
        .bind::<SqlUuid, _>(campaign_id)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LeaderboardEntry {
                position: r.position,
                participant_id: r.id,
                email: r.email,
                verified_referral_count: r.verified_referral_count,
            })
            .collect())
    }

    /// Where a participant stands right now by the formula, whether or not the position-worker
    /// has caught up (the email worker tells referrers this).
    #[tracing::instrument(name = "db.current_position", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn current_position(
        &self,
        campaign_id: Uuid,
        participant_id: Uuid,
    ) -> RepoResult<i64> {
        let mut conn = self.database.connection().await?;
        let rank: Number = sql_query(
            "WITH scored AS (
                 SELECT p.id, p.original_position,
                        greatest(p.original_position
                                 - p.verified_referral_count::int8 * c.points_per_referral, 1) AS score
                 FROM participants p JOIN campaigns c ON c.id = p.campaign_id
                 WHERE p.campaign_id = $1)
             SELECT count(*) AS n FROM scored q, scored me
             WHERE me.id = $2 AND (q.score, q.original_position) <= (me.score, me.original_position)",
        )
        .bind::<SqlUuid, _>(campaign_id)
        .bind::<SqlUuid, _>(participant_id)
        .get_result(&mut *conn)
        .await?;
        if rank.n == 0 {
            return Err(RepoError::not_found("participant", participant_id));
        }
        Ok(rank.n)
    }
}

async fn sign_up_in_transaction(
    conn: &mut AsyncPgConnection,
    signup: &NewSignup,
    encoder: &dyn OutboxEncoder,
) -> Result<SignedUp, SignupError> {
    let campaign_id = signup.campaign_id;
    // The lock that serializes this campaign's signups.
    let campaign: Option<LockedCampaign> =
        sql_query("SELECT status FROM campaigns WHERE id = $1 FOR UPDATE")
            .bind::<SqlUuid, _>(campaign_id)
            .get_result(conn)
            .await
            .optional()?;
    let campaign = campaign.ok_or(SignupError::CampaignNotFound)?;
    let status = CampaignStatus::parse(&campaign.status).unwrap_or(CampaignStatus::Ended);
    if status != CampaignStatus::Active {
        return Err(SignupError::CampaignNotActive(status));
    }
    let email = signup.email.as_str();
    // One place per inbox: `bob+1@gmail.com`, `b.o.b@gmail.com` and `BOB@googlemail.com` all
    // reach bob@gmail.com, so once one of them is signed up the others are too (under the
    // campaign lock taken above, so two of them racing cannot both get in).
    let taken: Number = sql_query(
        "SELECT count(*) AS n FROM participants
         WHERE campaign_id = $1 AND (email_lower = lower($2) OR email_canonical = $3)",
    )
    .bind::<SqlUuid, _>(campaign_id)
    .bind::<Text, _>(email)
    .bind::<Text, _>(canonical_email(email))
    .get_result(conn)
    .await?;
    if taken.n > 0 {
        return Err(SignupError::AlreadySignedUp);
    }
    let referrer = match &signup.referral_code {
        None => None,
        Some(code) => {
            let found: Vec<Referrer> = sql_query(
                "SELECT id, email FROM participants WHERE campaign_id = $1 AND referral_code = $2",
            )
            .bind::<SqlUuid, _>(campaign_id)
            .bind::<Text, _>(code.trim().to_uppercase())
            .load(conn)
            .await?;
            Some(
                found
                    .into_iter()
                    .next()
                    .ok_or(SignupError::UnknownReferralCode)?,
            )
        }
    };
    let earlier_from_ip = match &signup.ip {
        None => 0,
        Some(ip) => {
            let count: Number = sql_query(
                "SELECT count(*) AS n FROM participants
                 WHERE campaign_id = $1 AND signup_ip = $2
                   AND created_at > now() - make_interval(secs => $3)",
            )
            .bind::<SqlUuid, _>(campaign_id)
            .bind::<Text, _>(ip)
            .bind::<Double, _>(signup.rules.ip_window.as_secs_f64())
            .get_result(conn)
            .await?;
            count.n
        }
    };
    let referral_code = loop {
        let code = new_referral_code();
        let used: Number = sql_query(
            "SELECT count(*) AS n FROM participants WHERE campaign_id = $1 AND referral_code = $2",
        )
        .bind::<SqlUuid, _>(campaign_id)
        .bind::<Text, _>(&code)
        .get_result(conn)
        .await?;
        if used.n == 0 {
            break code;
        }
    };
    let position: Number = sql_query(
        "UPDATE campaigns SET participant_count = participant_count + 1 WHERE id = $1
         RETURNING participant_count AS n",
    )
    .bind::<SqlUuid, _>(campaign_id)
    .get_result(conn)
    .await?;
    let participant: ParticipantRow = sql_query(format!(
        "INSERT INTO participants (id, campaign_id, email, email_lower, email_canonical,
             referral_code, original_position, position, signup_ip)
         VALUES ($1, $2, $3, lower($3), $4, $5, $6, $6, $7)
         RETURNING {PARTICIPANT_COLUMNS}"
    ))
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(campaign_id)
    .bind::<Text, _>(email)
    .bind::<Text, _>(canonical_email(email))
    .bind::<Text, _>(&referral_code)
    .bind::<BigInt, _>(position.n)
    .bind::<Nullable<Text>, _>(signup.ip.as_deref())
    .get_result(conn)
    .await?;
    let participant = Participant::from(participant);

    let mut events = vec![WaitlistEvent::SignedUp {
        participant_id: participant.id,
        campaign_id,
        email: participant.email.clone(),
    }];
    let referral = match referrer {
        None => None,
        Some(referrer) => {
            let flag = signup.rules.check(SignupFacts {
                referrer_email: &referrer.email,
                referred_email: email,
                earlier_signups_from_ip: earlier_from_ip,
            });
            let referral = CreatedReferral {
                id: Uuid::now_v7(),
                referrer_id: referrer.id,
                status: if flag.is_some() { "flagged" } else { "pending" }.to_owned(),
                fraud_reason: flag.map(|f| f.as_str().to_owned()),
            };
            sql_query(
                "INSERT INTO referrals (id, campaign_id, referrer_id, referred_id, status, fraud_reason)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind::<SqlUuid, _>(referral.id)
            .bind::<SqlUuid, _>(campaign_id)
            .bind::<SqlUuid, _>(referral.referrer_id)
            .bind::<SqlUuid, _>(participant.id)
            .bind::<Text, _>(&referral.status)
            .bind::<Nullable<Text>, _>(referral.fraud_reason.as_deref())
            .execute(conn)
            .await?;
            events.push(WaitlistEvent::ReferralCreated {
                referral_id: referral.id,
                referrer_id: referral.referrer_id,
                referred_id: participant.id,
                campaign_id,
            });
            Some(referral)
        }
    };
    let reached: Vec<Reached> = sql_query(
        "UPDATE campaign_milestones SET reached_at = now()
         WHERE campaign_id = $1 AND participant_count <= $2 AND reached_at IS NULL
         RETURNING participant_count",
    )
    .bind::<SqlUuid, _>(campaign_id)
    .bind::<BigInt, _>(position.n)
    .load(conn)
    .await?;
    events.extend(
        reached
            .into_iter()
            .map(|m| WaitlistEvent::MilestoneReached {
                campaign_id,
                participant_count: m.participant_count,
            }),
    );
    insert_outbox(conn, &events, encoder).await?;
    Ok(SignedUp {
        participant,
        referral,
    })
}

async fn verify_in_transaction(
    conn: &mut AsyncPgConnection,
    campaign_id: Uuid,
    participant_id: Uuid,
    encoder: &dyn OutboxEncoder,
) -> RepoResult<Verification> {
    let target: VerifyTarget = sql_query(
        "SELECT p.email, p.verified_at, c.points_per_referral
         FROM participants p JOIN campaigns c ON c.id = p.campaign_id
         WHERE p.id = $1 AND p.campaign_id = $2
         FOR UPDATE OF p",
    )
    .bind::<SqlUuid, _>(participant_id)
    .bind::<SqlUuid, _>(campaign_id)
    .get_result(conn)
    .await
    .optional()?
    .ok_or_else(|| RepoError::not_found("participant", participant_id))?;
    if target.verified_at.is_some() {
        return Ok(Verification::AlreadyVerified);
    }
    sql_query("UPDATE participants SET verified_at = now() WHERE id = $1")
        .bind::<SqlUuid, _>(participant_id)
        .execute(conn)
        .await?;
    let mut events = vec![WaitlistEvent::Verified {
        participant_id,
        campaign_id,
        email: target.email,
    }];
    // Only a pending referral counts: a flagged one stays flagged.
    let counted: Vec<CountedReferral> = sql_query(
        "UPDATE referrals SET status = 'verified', verified_at = now()
         WHERE referred_id = $1 AND status = 'pending'
         RETURNING id, referrer_id",
    )
    .bind::<SqlUuid, _>(participant_id)
    .load(conn)
    .await?;
    let referral_counted = !counted.is_empty();
    for referral in counted {
        let count: Number = sql_query(
            "UPDATE participants SET verified_referral_count = verified_referral_count + 1
             WHERE id = $1 RETURNING verified_referral_count::int8 AS n",
        )
        .bind::<SqlUuid, _>(referral.referrer_id)
        .get_result(conn)
        .await?;
        events.push(WaitlistEvent::ReferralVerified {
            referral_id: referral.id,
            referrer_id: referral.referrer_id,
            referred_id: participant_id,
            campaign_id,
            points_per_referral: target.points_per_referral,
        });
        // Every tier at or below the new count that the referrer does not have yet: exactly the
        // tiers crossed now, and never one twice (the unique key on participant and tier).
        let rewards: Vec<NewReward> = sql_query(
            "INSERT INTO participant_rewards (id, campaign_id, participant_id, tier_id)
             SELECT gen_random_uuid(), $1, $2, t.id FROM campaign_reward_tiers t
             WHERE t.campaign_id = $1 AND t.referral_threshold <= $3
             ORDER BY t.referral_threshold
             ON CONFLICT (participant_id, tier_id) DO NOTHING
             RETURNING id, tier_id",
        )
        .bind::<SqlUuid, _>(campaign_id)
        .bind::<SqlUuid, _>(referral.referrer_id)
        .bind::<BigInt, _>(count.n)
        .load(conn)
        .await?;
        events.extend(rewards.into_iter().map(|r| WaitlistEvent::RewardEarned {
            user_reward_id: r.id,
            participant_id: referral.referrer_id,
            campaign_id,
            reward_id: r.tier_id,
        }));
    }
    insert_outbox(conn, &events, encoder).await?;
    Ok(Verification::Verified { referral_counted })
}
