//! One domain event → the emails it calls for, each sent at most once per event.

use async_trait::async_trait;
use events::rdkafka::message::OwnedMessage;
use events::{EventPayload, Handler, HandlerError};
use repo::Waitlist;
use repo::waitlist::{EmailClaim, Participant};
use uuid::Uuid;
use waitlist::links::referral_link;
use waitlist::worker::{earned_reward, event_id, parse_event, repo_failure};
use waitlist::{
    MailError, Mailer, OutgoingEmail, ParticipantTokens, Templates, VerificationTokens,
};

#[derive(Debug)]
pub(crate) struct EmailHandler {
    pub(crate) waitlist: Waitlist,
    pub(crate) accounts: crate::accounts::AccountMessages,
    pub(crate) mailer: Mailer,
    pub(crate) templates: Templates,
    pub(crate) tokens: VerificationTokens,
    pub(crate) participant_tokens: ParticipantTokens,
    pub(crate) public_url: String,
}

type Values = Vec<(&'static str, String)>;

#[async_trait]
impl Handler for EmailHandler {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let Some(event) = parse_event(message)? else {
            return Ok(());
        };
        match &event.payload {
            EventPayload::UserSignedUp(data) => {
                let participant = self.participant(&data.campaign_id, &data.user_id).await?;
                let mut values = self.participant_values(&participant).await?;
                let token = self.tokens.issue(participant.campaign_id, participant.id);
                values.push((
                    "verification_link",
                    format!(
                        "{}/campaigns/{}/verify?token={token}",
                        self.public_url, participant.campaign_id
                    ),
                ));
                values.push(("verification_token", token));
                values.push((
                    "participant_token",
                    self.participant_tokens
                        .issue(participant.campaign_id, participant.id),
                ));
                self.send(event.id, "welcome", &participant.email, &values)
                    .await?;
                self.send(event.id, "verification", &participant.email, &values)
                    .await
            }
            EventPayload::UserVerified(data) => {
                let participant = self.participant(&data.campaign_id, &data.user_id).await?;
                let values = self.participant_values(&participant).await?;
                self.send(event.id, "verified", &participant.email, &values)
                    .await
            }
            EventPayload::ReferralVerified(data) => {
                let referrer = self
                    .participant(&data.campaign_id, &data.referrer_id)
                    .await?;
                let mut values = self.participant_values(&referrer).await?;
                // The position-worker reacts to this same event, so the stored position may not
                // count this referral yet: compute it now, by the formula.
                let position = self
                    .waitlist
                    .current_position(referrer.campaign_id, referrer.id)
                    .await
                    .map_err(repo_failure)?;
                set(&mut values, "position", position.to_string());
                values.push((
                    "verified_referrals",
                    referrer.verified_referral_count.to_string(),
                ));
                self.send(event.id, "position_update", &referrer.email, &values)
                    .await
            }
            EventPayload::RewardEarned(data) => {
                let reward = earned_reward(&self.waitlist, &data.user_reward_id).await?;
                let values = vec![
                    ("campaign_name", reward.campaign_name),
                    ("reward_name", reward.tier_name),
                    ("referral_threshold", reward.referral_threshold.to_string()),
                ];
                self.send(
                    event.id,
                    "reward_earned",
                    &reward.participant_email,
                    &values,
                )
                .await
            }
            EventPayload::CampaignMilestoneReached(data) => {
                let campaign_id = event_id(&data.campaign_id, "campaign_id")?;
                let campaign = self
                    .waitlist
                    .campaign(campaign_id)
                    .await
                    .map_err(repo_failure)?
                    .ok_or_else(|| {
                        HandlerError::reject(
                            "unknown_campaign",
                            format!("no campaign {campaign_id}"),
                        )
                    })?;
                let Some(owner) = campaign.notify_email else {
                    return Ok(());
                };
                let values = vec![
                    ("campaign_name", campaign.name),
                    ("milestone", data.milestone.clone()),
                    ("participant_count", data.participant_count.to_string()),
                ];
                self.send(event.id, "milestone", &owner, &values).await
            }
            // referral.created and the events of other domains need no email; the account
            // events have theirs.
            _ => self.account_event(&event).await,
        }
    }
}

impl EmailHandler {
    async fn participant(
        &self,
        campaign_id: &str,
        participant_id: &str,
    ) -> Result<Participant, HandlerError> {
        let campaign_id = event_id(campaign_id, "campaign_id")?;
        let participant_id = event_id(participant_id, "user_id")?;
        self.waitlist
            .participant(campaign_id, participant_id)
            .await
            .map_err(repo_failure)?
            .ok_or_else(|| {
                HandlerError::reject(
                    "unknown_participant",
                    format!("no participant {participant_id} in campaign {campaign_id}"),
                )
            })
    }

    /// What every participant email may mention, with the stored position.
    async fn participant_values(&self, participant: &Participant) -> Result<Values, HandlerError> {
        let campaign = self
            .waitlist
            .campaign(participant.campaign_id)
            .await
            .map_err(repo_failure)?
            .ok_or_else(|| HandlerError::reject("unknown_campaign", "the campaign is gone"))?;
        Ok(vec![
            ("campaign_name", campaign.name),
            (
                "points_per_referral",
                campaign.points_per_referral.to_string(),
            ),
            ("position", participant.position.to_string()),
            ("referral_code", participant.referral_code.clone()),
            (
                "referral_link",
                referral_link(
                    &self.public_url,
                    participant.campaign_id,
                    &participant.referral_code,
                ),
            ),
        ])
    }

    /// Sends one email unless this event already sent it.
    pub(crate) async fn send(
        &self,
        event_id: Uuid,
        template: &'static str,
        to: &str,
        values: &[(&str, String)],
    ) -> Result<(), HandlerError> {
        if self.claim(event_id, template, to).await? {
            self.deliver(event_id, template, to, values).await?;
        }
        Ok(())
    }

    /// Claims the (event, template, recipient) message: `false` when this event sent it
    /// already (a replay), so nothing is sent twice.
    pub(crate) async fn claim(
        &self,
        event_id: Uuid,
        template: &'static str,
        to: &str,
    ) -> Result<bool, HandlerError> {
        let claim = self
            .waitlist
            .claim_email(event_id, template, to)
            .await
            .map_err(repo_failure)?;
        if claim == EmailClaim::AlreadySent {
            metrics::counter!("emails_skipped_total", "template" => template).increment(1);
            return Ok(false);
        }
        Ok(true)
    }

    /// Renders and sends a claimed email, then records it sent.
    pub(crate) async fn deliver(
        &self,
        event_id: Uuid,
        template: &'static str,
        to: &str,
        values: &[(&str, String)],
    ) -> Result<(), HandlerError> {
        let content = self
            .templates
            .render(template, values)
            .map_err(|e| HandlerError::reject("template_error", e))?;
        let email = OutgoingEmail {
            to: to.to_owned(),
            content,
        };
        self.mailer
            .send(&email)
            .await
            .map_err(|error| match error {
                MailError::Permanent(_) => HandlerError::reject("email_refused", error),
                MailError::Transient(_) => HandlerError::retry("email_not_sent", error),
            })?;
        self.waitlist
            .mark_email_sent(event_id, template, to)
            .await
            .map_err(repo_failure)?;
        metrics::counter!("emails_sent_total", "template" => template).increment(1);
        tracing::info!(%event_id, template, "email sent");
        Ok(())
    }
}

fn set(values: &mut Values, name: &'static str, value: String) {
    match values.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => values.push((name, value)),
    }
}
