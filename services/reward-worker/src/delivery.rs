//! Delivering one reward: by email, or by a signed webhook POST.

use async_trait::async_trait;
use events::rdkafka::Message as _;
use events::rdkafka::message::OwnedMessage;
use events::{EventPayload, Handler, HandlerError};
use repo::Waitlist;
use repo::waitlist::RewardDelivery;
use serde_json::json;
use waitlist::webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature};
use waitlist::worker::{earned_reward, parse_event, repo_failure};
use waitlist::{MailError, Mailer, OutgoingEmail, Templates};

use crate::egress;

#[derive(Debug)]
pub(crate) struct RewardHandler {
    pub(crate) waitlist: Waitlist,
    pub(crate) mailer: Mailer,
    pub(crate) templates: Templates,
    /// Built with `egress::PublicOnlyResolver` unless private networks are allowed.
    pub(crate) http: reqwest::Client,
    pub(crate) allow_private_networks: bool,
    pub(crate) max_attempts: u32,
}

/// Why an attempt failed, and whether another may succeed.
#[derive(Debug)]
enum Failure {
    Permanent(String),
    Transient(String),
}

#[async_trait]
impl Handler for RewardHandler {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        let Some(event) = parse_event(message)? else {
            return Ok(());
        };
        let EventPayload::RewardEarned(data) = &event.payload else {
            return Ok(());
        };
        let mut reward = earned_reward(&self.waitlist, &data.user_reward_id).await?;
        let id = reward.user_reward_id;
        // Redriven by an operator (who fixed the cause): a delivery given up is tried again.
        let redriven = message
            .headers()
            .and_then(|h| events::headers::header_str(h, events::redrive::REDRIVE_COUNT))
            .is_some();
        if reward.status == "failed"
            && redriven
            && self
                .waitlist
                .reopen_failed_reward(id)
                .await
                .map_err(repo_failure)?
        {
            tracing::info!(user_reward_id = %id, "failed reward reopened by a redrive");
            reward.status = "pending".into();
        }
        if reward.status != "pending" {
            // Delivered or given up before: a replay.
            return Ok(());
        }
        let attempt = self
            .waitlist
            .start_reward_attempt(id)
            .await
            .map_err(repo_failure)?;
        let outcome = match reward.delivery_method.as_str() {
            "webhook" => self.post_webhook(&reward).await,
            _ => self.send_email(&reward).await,
        };
        let (failure, give_up) = match outcome {
            Ok(()) => {
                self.waitlist
                    .mark_reward_delivered(id)
                    .await
                    .map_err(repo_failure)?;
                metrics::counter!("rewards_delivered_total", "method" => reward.delivery_method.clone())
                    .increment(1);
                tracing::info!(user_reward_id = %id, method = %reward.delivery_method, attempt, "reward delivered");
                return Ok(());
            }
            Err(Failure::Permanent(reason)) => (reason, true),
            Err(Failure::Transient(reason)) => {
                let give_up = u32::try_from(attempt).unwrap_or(u32::MAX) >= self.max_attempts;
                (reason, give_up)
            }
        };
        self.waitlist
            .record_reward_failure(id, &failure, give_up)
            .await
            .map_err(repo_failure)?;
        if give_up {
            metrics::counter!("rewards_failed_total", "method" => reward.delivery_method.clone())
                .increment(1);
            tracing::error!(user_reward_id = %id, attempt, %failure, "reward delivery failed for good");
            Err(HandlerError::reject("reward_delivery_failed", failure))
        } else {
            tracing::warn!(user_reward_id = %id, attempt, %failure, "reward delivery failed; will retry");
            Err(HandlerError::retry("reward_delivery_failed", failure))
        }
    }
}

impl RewardHandler {
    async fn send_email(&self, reward: &RewardDelivery) -> Result<(), Failure> {
        let content = self
            .templates
            .render(
                "reward_delivery",
                &[
                    ("campaign_name", reward.campaign_name.clone()),
                    ("reward_name", reward.tier_name.clone()),
                    ("referral_threshold", reward.referral_threshold.to_string()),
                    ("user_reward_id", reward.user_reward_id.to_string()),
                ],
            )
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let email = OutgoingEmail {
            to: reward.participant_email.clone(),
            content,
        };
        self.mailer.send(&email).await.map_err(|error| match error {
            MailError::Permanent(reason) => Failure::Permanent(reason),
            MailError::Transient(reason) => Failure::Transient(reason),
        })
    }

    /// POSTs the reward to the tier's receiver, signed, with the reward's ID as idempotency key:
    /// a receiver that honours the key acts once however often a delivery is retried.
    async fn post_webhook(&self, reward: &RewardDelivery) -> Result<(), Failure> {
        let url = reward
            .webhook_url
            .as_deref()
            .ok_or_else(|| Failure::Permanent("webhook tier without a URL".into()))?;
        let url = reqwest::Url::parse(url)
            .map_err(|e| Failure::Permanent(format!("invalid webhook URL {url:?}: {e}")))?;
        if !self.allow_private_networks {
            egress::check_literal_host(&url).map_err(|e| Failure::Permanent(e.to_string()))?;
        }
        let body = serde_json::to_vec(&json!({
            "id": reward.user_reward_id,
            "type": "reward.earned",
            "campaign_id": reward.campaign_id,
            "campaign_name": reward.campaign_name,
            "participant_id": reward.participant_id,
            "email": reward.participant_email,
            "reward": {
                "id": reward.tier_id,
                "name": reward.tier_name,
                "referral_threshold": reward.referral_threshold,
            },
            "earned_at": reward.earned_at,
        }))
        .expect("JSON values serialize");
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(&reward.webhook_secret, timestamp, &body),
            )
            .header(IDEMPOTENCY_HEADER, reward.user_reward_id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| match egress::refusal(&e) {
                Some(refused) => Failure::Permanent(refused.to_string()),
                None => Failure::Transient(format!("webhook request failed: {e}")),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reason = format!("webhook receiver answered {status}");
        // Timeouts, rate limits and server errors may pass; other refusals will not.
        if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Transient(reason))
        } else {
            Err(Failure::Permanent(reason))
        }
    }
}
