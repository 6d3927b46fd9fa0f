//! `/api/v1/campaigns…`: waitlist campaigns, signups, verification, leaderboard (issue #7).
//!
//! Writes go through `repo::Waitlist`, which stores each change with the domain events it
//! causes in one transaction (the outbox); the relay task started in `main` publishes them to
//! `domain-events`. Handlers wake the relay after a commit so events go out at once.

use crate::json::Json;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use domain::Email;
use domain::waitlist::{CampaignStatus, DeliveryMethod, FraudRules, NewCampaign, NewRewardTier};
use repo::RepoError;
use repo::waitlist::{Campaign, NewSignup, Participant, SignupError, Verification, Waitlist};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;
use waitlist::links::referral_link;
use waitlist::{DomainEventEncoder, VerificationTokens};

use crate::client_ip::TrustedProxies;
use crate::errors::{ApiError, repo_error};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Clone)]
pub(crate) struct WaitlistApi {
    pub(crate) waitlist: Waitlist,
    pub(crate) encoder: DomainEventEncoder,
    pub(crate) relay: Arc<Notify>,
    pub(crate) tokens: VerificationTokens,
    pub(crate) fraud: FraudRules,
    /// The reverse proxies whose `X-Forwarded-For` entries are believed.
    pub(crate) trusted_proxies: TrustedProxies,
    /// Accept webhook URLs with a non-public IP literal host (`WEBHOOK_ALLOW_PRIVATE_NETWORKS`).
    pub(crate) allow_private_webhooks: bool,
    pub(crate) public_url: String,
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/v1/campaigns", web::post().to(create_campaign))
        .route("/api/v1/campaigns", web::get().to(list_campaigns))
        .route(
            "/api/v1/campaigns/{campaign_id}",
            web::get().to(get_campaign),
        )
        .route(
            "/api/v1/campaigns/{campaign_id}/signups",
            web::post().to(sign_up),
        )
        .route(
            "/api/v1/campaigns/{campaign_id}/signups/{participant_id}",
            web::get().to(get_participant),
        )
        .route(
            "/api/v1/campaigns/{campaign_id}/verify",
            web::post().to(verify),
        )
        .route(
            "/api/v1/campaigns/{campaign_id}/leaderboard",
            web::get().to(leaderboard),
        );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignInput {
    name: String,
    #[serde(default = "active")]
    status: CampaignStatus,
    #[serde(default = "one")]
    points_per_referral: i32,
    #[serde(default)]
    reward_tiers: Vec<TierInput>,
    #[serde(default)]
    milestones: Vec<i64>,
    notify_email: Option<String>,
}

fn active() -> CampaignStatus {
    CampaignStatus::Active
}

fn one() -> i32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierInput {
    name: String,
    referral_threshold: i32,
    /// `email` or `webhook`.
    delivery: String,
    webhook_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupInput {
    email: String,
    referral_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyInput {
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitParams {
    limit: Option<i64>,
}

impl WaitlistApi {
    fn participant_json(&self, participant: &Participant) -> Value {
        json!({
            "participant_id": participant.id,
            "campaign_id": participant.campaign_id,
            "email": participant.email,
            "position": participant.position,
            "original_position": participant.original_position,
            "verified_referral_count": participant.verified_referral_count,
            "verified": participant.verified_at.is_some(),
            "verified_at": participant.verified_at,
            "referral_code": participant.referral_code,
            "referral_link": referral_link(&self.public_url, participant.campaign_id, &participant.referral_code),
            "rewards": participant.rewards.iter().map(|r| json!({
                "user_reward_id": r.id,
                "reward_id": r.tier_id,
                "name": r.name,
                "referral_threshold": r.referral_threshold,
                "delivery_status": r.delivery_status,
                "earned_at": r.earned_at,
            })).collect::<Vec<_>>(),
            "created_at": participant.created_at,
        })
    }

    /// The client's address for the IP rule.
    fn client_ip(&self, request: &HttpRequest) -> Option<String> {
        let peer = request.peer_addr()?.ip();
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        Some(
            self.trusted_proxies
                .client_ip(peer, forwarded.into_iter())
                .to_string(),
        )
    }
}

fn campaign_json(campaign: &Campaign) -> Value {
    json!({
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "points_per_referral": campaign.points_per_referral,
        "participant_count": campaign.participant_count,
        "notify_email": campaign.notify_email,
        "reward_tiers": campaign.reward_tiers.iter().map(|t| json!({
            "id": t.id,
            "name": t.name,
            "referral_threshold": t.referral_threshold,
            "delivery": t.delivery_method,
            "webhook_url": t.webhook_url,
        })).collect::<Vec<_>>(),
        "milestones": campaign.milestones.iter().map(|m| json!({
            "participant_count": m.participant_count,
            "milestone": domain::waitlist::milestone_name(m.participant_count),
            "reached_at": m.reached_at,
        })).collect::<Vec<_>>(),
        "created_at": campaign.created_at,
    })
}

fn parse_id(text: &str, field: &'static str) -> Result<Uuid, ApiError> {
    let code = if field == "campaign" {
        "campaign_not_found"
    } else {
        "participant_not_found"
    };
    Uuid::try_parse(text).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            code,
            format!("{field} {text:?} is not an ID this API gave out"),
        )
    })
}

fn campaign_not_found(id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "campaign_not_found",
        format!("no campaign {id}"),
    )
}

fn limit(params: &LimitParams) -> Result<i64, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(limit)
}

/// Shows `user@example.com` as `u***@example.com` on the public leaderboard.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

fn new_campaign(input: CampaignInput) -> Result<NewCampaign, ApiError> {
    let reward_tiers = input
        .reward_tiers
        .into_iter()
        .enumerate()
        .map(|(i, tier)| {
            let delivery = match (tier.delivery.as_str(), tier.webhook_url) {
                ("email", None) => DeliveryMethod::Email,
                ("webhook", Some(url)) => DeliveryMethod::Webhook { url },
                ("email", Some(_)) => {
                    return Err(ApiError::invalid(
                        format!("reward_tiers[{i}].webhook_url"),
                        "only webhook tiers have a webhook_url",
                    ));
                }
                ("webhook", None) => {
                    return Err(ApiError::invalid(
                        format!("reward_tiers[{i}].webhook_url"),
                        "a webhook tier needs a webhook_url",
                    ));
                }
                _ => {
                    return Err(ApiError::invalid(
                        format!("reward_tiers[{i}].delivery"),
                        "must be \"email\" or \"webhook\"",
                    ));
                }
            };
            Ok(NewRewardTier {
                name: tier.name,
                referral_threshold: tier.referral_threshold,
                delivery,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let notify_email = input
        .notify_email
        .map(|e| Email::parse(&e).map_err(|e| ApiError::invalid("notify_email", e.reason)))
        .transpose()?;
    let campaign = NewCampaign {
        name: input.name,
        status: input.status,
        points_per_referral: input.points_per_referral,
        reward_tiers,
        milestones: input.milestones,
        notify_email,
    };
    campaign
        .validate()
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    Ok(campaign)
}

async fn create_campaign(
    api: web::Data<WaitlistApi>,
    body: Json<CampaignInput>,
) -> Result<HttpResponse, ApiError> {
    let campaign = new_campaign(body.into_inner())?;
    if !api.allow_private_webhooks {
        campaign
            .require_public_webhooks()
            .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    }
    let secret = format!("whsec_{}", hex::encode(Uuid::new_v4().as_bytes()));
    let created = api
        .waitlist
        .create_campaign(Uuid::now_v7(), &campaign, &secret)
        .await
        .map_err(repo_error)?;
    let mut body = campaign_json(&created);
    // Shown once: the campaign owner's receivers check reward webhooks with it.
    body["webhook_secret"] = json!(secret);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/campaigns/{}", created.id)))
        .json(body))
}

async fn list_campaigns(
    api: web::Data<WaitlistApi>,
    params: web::Query<LimitParams>,
) -> Result<HttpResponse, ApiError> {
    let campaigns = api
        .waitlist
        .campaigns(limit(&params)?)
        .await
        .map_err(repo_error)?;
    Ok(HttpResponse::Ok()
        .json(json!({"campaigns": campaigns.iter().map(campaign_json).collect::<Vec<_>>()})))
}

async fn get_campaign(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "campaign")?;
    let campaign = api
        .waitlist
        .campaign(id)
        .await
        .map_err(repo_error)?
        .ok_or_else(|| campaign_not_found(id))?;
    Ok(HttpResponse::Ok().json(campaign_json(&campaign)))
}

async fn sign_up(
    api: web::Data<WaitlistApi>,
    request: HttpRequest,
    path: web::Path<String>,
    body: Json<SignupInput>,
) -> Result<HttpResponse, ApiError> {
    let campaign_id = parse_id(&path, "campaign")?;
    let input = body.into_inner();
    let email = Email::parse(&input.email).map_err(|e| ApiError::invalid("email", e.reason))?;
    let referral_code = input
        .referral_code
        .map(|code| code.trim().to_owned())
        .filter(|code| !code.is_empty());
    if referral_code.as_ref().is_some_and(|c| c.len() > 32) {
        return Err(ApiError::invalid("referral_code", "not a referral code"));
    }
    let signup = NewSignup {
        campaign_id,
        email,
        referral_code,
        ip: api.client_ip(&request),
        rules: api.fraud,
    };
    let signed_up =
        api.waitlist
            .sign_up(&signup, &api.encoder)
            .await
            .map_err(|error| match error {
                SignupError::CampaignNotFound => campaign_not_found(campaign_id),
                SignupError::CampaignNotActive(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    "campaign_not_active",
                    error.to_string(),
                ),
                SignupError::AlreadySignedUp => {
                    ApiError::new(StatusCode::CONFLICT, "already_signed_up", error.to_string())
                        .with_field("email")
                }
                SignupError::UnknownReferralCode => {
                    ApiError::invalid("referral_code", error.to_string())
                }
                SignupError::Repo(error) => repo_error(error),
            })?;
    api.relay.notify_one();
    let mut body = api.participant_json(&signed_up.participant);
    body["referral"] = match &signed_up.referral {
        None => Value::Null,
        Some(referral) => json!({
            "referral_id": referral.id,
            "referrer_id": referral.referrer_id,
            "status": referral.status,
            "fraud_reason": referral.fraud_reason,
        }),
    };
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!(
                "/api/v1/campaigns/{campaign_id}/signups/{}",
                signed_up.participant.id
            ),
        ))
        .json(body))
}

async fn verify(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
    body: Json<VerifyInput>,
) -> Result<HttpResponse, ApiError> {
    let campaign_id = parse_id(&path, "campaign")?;
    let participant_id = api
        .tokens
        .check(campaign_id, &body.token)
        .ok_or_else(|| ApiError::invalid("token", "not a verification token of this campaign"))?;
    let outcome = api
        .waitlist
        .verify(campaign_id, participant_id, &api.encoder)
        .await
        .map_err(|error| match error {
            RepoError::NotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "participant_not_found",
                "the token's participant is not in this campaign",
            ),
            other => repo_error(other),
        })?;
    if matches!(outcome, Verification::Verified { .. }) {
        api.relay.notify_one();
    }
    Ok(HttpResponse::Ok().json(json!({
        "participant_id": participant_id,
        "campaign_id": campaign_id,
        "verified": true,
        "already_verified": outcome == Verification::AlreadyVerified,
    })))
}

async fn get_participant(
    api: web::Data<WaitlistApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let campaign_id = parse_id(&path.0, "campaign")?;
    let participant_id = parse_id(&path.1, "participant")?;
    let participant = api
        .waitlist
        .participant(campaign_id, participant_id)
        .await
        .map_err(repo_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "participant_not_found",
                format!("no participant {participant_id} in campaign {campaign_id}"),
            )
        })?;
    Ok(HttpResponse::Ok().json(api.participant_json(&participant)))
}

async fn leaderboard(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
    params: web::Query<LimitParams>,
) -> Result<HttpResponse, ApiError> {
    let campaign_id = parse_id(&path, "campaign")?;
    let limit = limit(&params)?;
    let participant_count = api
        .waitlist
        .participant_count(campaign_id)
        .await
        .map_err(repo_error)?
        .ok_or_else(|| campaign_not_found(campaign_id))?;
    let entries = api
        .waitlist
        .leaderboard(campaign_id, limit)
        .await
        .map_err(repo_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "campaign_id": campaign_id,
        "participant_count": participant_count,
        "entries": entries.iter().map(|e| json!({
            "position": e.position,
            "participant_id": e.participant_id,
            "email": masked(&e.email),
            "verified_referral_count": e.verified_referral_count,
        })).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderboard_emails_are_masked() {
        assert_eq!(masked("alice@example.com"), "a***@example.com");
        assert_eq!(masked("nonsense"), "***");
    }
}
