//! `/api/v1/campaigns…`: waitlist campaigns, signups, verification, leaderboard.
//!
//! Writes go through `repo::Waitlist`, which stores each change with the domain events it
//! causes in one transaction (the outbox); the relay task started in `main` publishes them to
//! `domain-events`. Handlers wake the relay after a commit so events go out at once.

use std::sync::Arc;

use actix_web::{HttpRequest, get, post, web};
use chrono::{DateTime, Utc};
use domain::Email;
use domain::waitlist::{CampaignStatus, DeliveryMethod, FraudRules, NewCampaign, NewRewardTier};
use repo::RepoError;
use repo::waitlist::{
    Campaign, CreatedReferral, EarnedReward, NewSignup, Participant, SignupError, Verification,
    Waitlist,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;
use waitlist::links::referral_link;
use waitlist::{DomainEventEncoder, VerificationTokens};

use crate::client_ip::TrustedProxies;
use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::json::{Json, QueryParams};
use crate::reply::Reply;

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

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(create_campaign)
        .service(list_campaigns)
        .service(get_campaign)
        .service(sign_up)
        .service(get_participant)
        .service(verify)
        .service(leaderboard);
}

fn campaign_status_schema() -> ObjectBuilder {
    let all = [
        CampaignStatus::Draft,
        CampaignStatus::Active,
        CampaignStatus::Paused,
        CampaignStatus::Ended,
    ];
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(all.map(CampaignStatus::as_str)))
}

fn delivery_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["email", "webhook"]))
}

/// A new campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Spring launch", "reward_tiers": [{"name": "Early access", "referral_threshold": 3, "delivery": "email"}], "milestones": [100, 1000], "notify_email": "team@example.com"}))]
pub(crate) struct CampaignRequest {
    /// 1 to 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// `active` by default; only active campaigns take signups.
    #[serde(default = "active")]
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    /// Places a verified referral moves the referrer up (1 by default).
    #[serde(default = "one")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    points_per_referral: i32,
    /// At most 20, with different thresholds.
    #[serde(default)]
    #[schema(max_items = 20)]
    reward_tiers: Vec<RewardTierRequest>,
    /// Participant counts (at least 1, all different, at most 50 of them) at which
    /// `campaign.milestone_reached` is announced.
    #[serde(default)]
    #[schema(max_items = 50)]
    milestones: Vec<i64>,
    /// Where milestone announcements go.
    #[schema(format = Email)]
    notify_email: Option<String>,
}

fn active() -> CampaignStatus {
    CampaignStatus::Active
}

fn one() -> i32 {
    1
}

/// A reward earned at `referral_threshold` verified referrals.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewardTierRequest {
    /// 1 to 200 characters, not only spaces, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Verified referrals that earn it; tiers of a campaign have different thresholds.
    #[schema(minimum = 1)]
    referral_threshold: i32,
    /// `email` (a notification to the participant) or `webhook` (a signed POST to
    /// `webhook_url`).
    #[schema(schema_with = delivery_schema)]
    delivery: String,
    /// An `http` or `https` URL for `webhook` tiers (no user or password in it; a non-public
    /// IP host only with `WEBHOOK_ALLOW_PRIVATE_NETWORKS`), absent for `email` ones.
    #[schema(format = "uri", max_length = 2000)]
    webhook_url: Option<String>,
}

/// A signup to a campaign's waitlist.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "referral_code": "k3j9x2"}))]
pub(crate) struct SignupRequest {
    #[schema(format = Email)]
    email: String,
    /// The code of the participant who referred this one, if any.
    referral_code: Option<String>,
}

/// The token of a verification email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    token: String,
}

/// How many items to show.
// `utoipa::IntoParams` by its path: the `params(…)` expansion names the trait so.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LimitParams {
    /// 1 to 100 (20 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// A reward tier of a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RewardTierResponse {
    id: Uuid,
    name: String,
    referral_threshold: i32,
    #[schema(schema_with = delivery_schema)]
    delivery: String,
    webhook_url: Option<String>,
}

/// A milestone of a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MilestoneResponse {
    participant_count: i64,
    /// Its name in announcements (`1K`).
    milestone: String,
    /// When the campaign reached it; `null` until then.
    reached_at: Option<DateTime<Utc>>,
}

/// A campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CampaignResponse {
    id: Uuid,
    name: String,
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    points_per_referral: i32,
    participant_count: i64,
    notify_email: Option<String>,
    reward_tiers: Vec<RewardTierResponse>,
    milestones: Vec<MilestoneResponse>,
    created_at: DateTime<Utc>,
}

impl From<&Campaign> for CampaignResponse {
    fn from(campaign: &Campaign) -> Self {
        Self {
            id: campaign.id,
            name: campaign.name.clone(),
            status: campaign.status,
            points_per_referral: campaign.points_per_referral,
            participant_count: campaign.participant_count,
            notify_email: campaign.notify_email.clone(),
            reward_tiers: campaign
                .reward_tiers
                .iter()
                .map(|t| RewardTierResponse {
                    id: t.id,
                    name: t.name.clone(),
                    referral_threshold: t.referral_threshold,
                    delivery: t.delivery_method.clone(),
                    webhook_url: t.webhook_url.clone(),
                })
                .collect(),
            milestones: campaign
                .milestones
                .iter()
                .map(|m| MilestoneResponse {
                    participant_count: m.participant_count,
                    milestone: domain::waitlist::milestone_name(m.participant_count),
                    reached_at: m.reached_at,
                })
                .collect(),
            created_at: campaign.created_at,
        }
    }
}

/// A campaign just created, with the secret its reward webhooks are signed with.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedCampaign {
    #[serde(flatten)]
    campaign: CampaignResponse,
    /// Shown once: the campaign owner's receivers check reward webhooks with it.
    webhook_secret: String,
}

/// Campaigns, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CampaignList {
    campaigns: Vec<CampaignResponse>,
}

/// A reward a participant earned.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EarnedRewardResponse {
    user_reward_id: Uuid,
    reward_id: Uuid,
    name: String,
    referral_threshold: i32,
    /// `pending`, `delivered` or `failed`.
    delivery_status: String,
    earned_at: DateTime<Utc>,
}

impl From<&EarnedReward> for EarnedRewardResponse {
    fn from(reward: &EarnedReward) -> Self {
        Self {
            user_reward_id: reward.id,
            reward_id: reward.tier_id,
            name: reward.name.clone(),
            referral_threshold: reward.referral_threshold,
            delivery_status: reward.delivery_status.clone(),
            earned_at: reward.earned_at,
        }
    }
}

/// A participant of a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ParticipantResponse {
    participant_id: Uuid,
    campaign_id: Uuid,
    email: String,
    /// The place in the queue now: signup order, moved up by verified referrals.
    position: i64,
    /// The place at signup.
    original_position: i64,
    verified_referral_count: i32,
    verified: bool,
    verified_at: Option<DateTime<Utc>>,
    referral_code: String,
    /// The page to share; a signup through it counts as this participant's referral.
    #[schema(format = "uri")]
    referral_link: String,
    rewards: Vec<EarnedRewardResponse>,
    created_at: DateTime<Utc>,
}

/// The referral a signup made, when it came with a referral code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReferralResponse {
    referral_id: Uuid,
    referrer_id: Uuid,
    /// `pending` until the new participant verifies, `flagged` when a fraud rule matched.
    status: String,
    fraud_reason: Option<String>,
}

impl From<&CreatedReferral> for ReferralResponse {
    fn from(referral: &CreatedReferral) -> Self {
        Self {
            referral_id: referral.id,
            referrer_id: referral.referrer_id,
            status: referral.status.clone(),
            fraud_reason: referral.fraud_reason.clone(),
        }
    }
}

/// A new participant.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupResponse {
    #[serde(flatten)]
    participant: ParticipantResponse,
    referral: Option<ReferralResponse>,
}

/// The outcome of a verification.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VerificationResponse {
    participant_id: Uuid,
    campaign_id: Uuid,
    verified: bool,
    /// `true` when the token had been used before: nothing changed.
    already_verified: bool,
}

/// A place on the public leaderboard.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LeaderboardEntryResponse {
    position: i64,
    participant_id: Uuid,
    /// Masked: `a***@example.com`.
    email: String,
    verified_referral_count: i32,
}

/// The first places of a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LeaderboardResponse {
    campaign_id: Uuid,
    participant_count: i64,
    entries: Vec<LeaderboardEntryResponse>,
}

impl WaitlistApi {
    fn participant(&self, participant: &Participant) -> ParticipantResponse {
        ParticipantResponse {
            participant_id: participant.id,
            campaign_id: participant.campaign_id,
            email: participant.email.clone(),
            position: participant.position,
            original_position: participant.original_position,
            verified_referral_count: participant.verified_referral_count,
            verified: participant.verified_at.is_some(),
            verified_at: participant.verified_at,
            referral_code: participant.referral_code.clone(),
            referral_link: referral_link(
                &self.public_url,
                participant.campaign_id,
                &participant.referral_code,
            ),
            rewards: participant.rewards.iter().map(Into::into).collect(),
            created_at: participant.created_at,
        }
    }
}

fn parse_id(text: &str, code: ErrorCode, what: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text).map_err(|_| {
        ApiError::new(
            code,
            format!("{what} {text:?} is not an ID this API gave out"),
        )
    })
}

fn campaign_id(text: &str) -> Result<Uuid, ApiError> {
    parse_id(text, ErrorCode::CampaignNotFound, "campaign")
}

fn campaign_not_found(id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::CampaignNotFound, format!("no campaign {id}"))
}

impl LimitParams {
    fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1 to {MAX_LIMIT}"),
            ));
        }
        Ok(limit)
    }
}

impl From<SignupError> for ApiError {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::CampaignNotFound => {
                Self::new(ErrorCode::CampaignNotFound, error.to_string())
            }
            SignupError::CampaignNotActive(_) => {
                Self::new(ErrorCode::CampaignNotActive, error.to_string())
            }
            SignupError::AlreadySignedUp => {
                Self::new(ErrorCode::AlreadySignedUp, error.to_string()).with_field("email")
            }
            SignupError::UnknownReferralCode => Self::invalid("referral_code", error.to_string()),
            SignupError::Repo(error) => error.into(),
        }
    }
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

impl CampaignRequest {
    /// The campaign to create, or 422 naming the field (`reward_tiers[1].webhook_url`).
    fn validate(self) -> Result<NewCampaign, ApiError> {
        let reward_tiers = self
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
        let notify_email = self
            .notify_email
            .map(|e| Email::parse(&e).map_err(|e| ApiError::invalid("notify_email", e.reason)))
            .transpose()?;
        let campaign = NewCampaign {
            name: self.name,
            status: self.status,
            points_per_referral: self.points_per_referral,
            reward_tiers,
            milestones: self.milestones,
            notify_email,
        };
        campaign.validate()?;
        Ok(campaign)
    }
}

/// Create a campaign.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "createCampaign",
    request_body = CampaignRequest,
    responses(
        (status = 201, description = "Created; `Location` is its path, `webhook_secret` is shown only here", body = CreatedCampaign,
            headers(("Location" = String, description = "The campaign's path"))),
        (status = 422, description = "A field is missing, wrong or unknown", body = ErrorBody),
        (status = 503, description = "The database is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/campaigns")]
async fn create_campaign(
    api: web::Data<WaitlistApi>,
    body: Json<CampaignRequest>,
) -> Result<Reply<CreatedCampaign>, ApiError> {
    let campaign = body.into_inner().validate()?;
    if !api.allow_private_webhooks {
        campaign.require_public_webhooks()?;
    }
    let secret = format!("whsec_{}", hex::encode(Uuid::new_v4().as_bytes()));
    let created = api
        .waitlist
        .create_campaign(Uuid::now_v7(), &campaign, &secret)
        .await?;
    Ok(Reply::created(CreatedCampaign {
        campaign: (&created).into(),
        webhook_secret: secret,
    })
    .at(format!("/api/v1/campaigns/{}", created.id)))
}

/// Campaigns, newest first.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "listCampaigns",
    params(LimitParams),
    responses(
        (status = 200, description = "Campaigns", body = CampaignList),
        (status = 400, description = "A query parameter is unknown or does not parse (`invalid_query`)", body = ErrorBody),
        (status = 422, description = "`limit` is out of range", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns")]
async fn list_campaigns(
    api: web::Data<WaitlistApi>,
    params: QueryParams<LimitParams>,
) -> Result<Reply<CampaignList>, ApiError> {
    let campaigns = api.waitlist.campaigns(params.limit()?).await?;
    Ok(Reply::ok(CampaignList {
        campaigns: campaigns.iter().map(Into::into).collect(),
    }))
}

/// One campaign.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "getCampaign",
    params(("campaign_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The campaign", body = CampaignResponse),
        (status = 404, description = "No such campaign (`campaign_not_found`)", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}")]
async fn get_campaign(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
) -> Result<Reply<CampaignResponse>, ApiError> {
    let id = campaign_id(&path)?;
    let campaign = api
        .waitlist
        .campaign(id)
        .await?
        .ok_or_else(|| campaign_not_found(id))?;
    Ok(Reply::ok((&campaign).into()))
}

/// Join a campaign's waitlist, possibly through a referral code.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "signUp",
    params(("campaign_id" = Uuid, Path)),
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Signed up; a verification email is on its way", body = SignupResponse,
            headers(("Location" = String, description = "The participant's path"))),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Already on this waitlist (`already_signed_up`) or the campaign takes no signups (`campaign_not_active`)", body = ErrorBody),
        (status = 422, description = "A field is missing, wrong or unknown", body = ErrorBody),
        (status = 503, description = "The database is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/campaigns/{campaign_id}/signups")]
async fn sign_up(
    api: web::Data<WaitlistApi>,
    request: HttpRequest,
    path: web::Path<String>,
    body: Json<SignupRequest>,
) -> Result<Reply<SignupResponse>, ApiError> {
    let campaign_id = campaign_id(&path)?;
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
        ip: api
            .trusted_proxies
            .client_of(&request)
            .map(|ip| ip.to_string()),
        rules: api.fraud,
    };
    let signed_up = api.waitlist.sign_up(&signup, &api.encoder).await?;
    api.relay.notify_one();
    let participant = &signed_up.participant;
    Ok(Reply::created(SignupResponse {
        participant: api.participant(participant),
        referral: signed_up.referral.as_ref().map(Into::into),
    })
    .at(format!(
        "/api/v1/campaigns/{campaign_id}/signups/{}",
        participant.id
    )))
}

/// Verify a participant with the token of their verification email.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "verify",
    params(("campaign_id" = Uuid, Path)),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified (or had been)", body = VerificationResponse),
        (status = 404, description = "The token's participant is not in this campaign (`participant_not_found`)", body = ErrorBody),
        (status = 422, description = "Not a token of this campaign (also for a campaign that does not exist: no token is of it)", body = ErrorBody),
        (status = 503, description = "The database is down; see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/api/v1/campaigns/{campaign_id}/verify")]
async fn verify(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
    body: Json<VerifyRequest>,
) -> Result<Reply<VerificationResponse>, ApiError> {
    let campaign_id = campaign_id(&path)?;
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
                ErrorCode::ParticipantNotFound,
                "the token's participant is not in this campaign",
            ),
            other => other.into(),
        })?;
    if matches!(outcome, Verification::Verified { .. }) {
        api.relay.notify_one();
    }
    Ok(Reply::ok(VerificationResponse {
        participant_id,
        campaign_id,
        verified: true,
        already_verified: outcome == Verification::AlreadyVerified,
    }))
}

/// One participant: position, referrals, rewards.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "getParticipant",
    params(("campaign_id" = Uuid, Path), ("participant_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The participant", body = ParticipantResponse),
        (status = 404, description = "No such campaign or participant", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}/signups/{participant_id}")]
async fn get_participant(
    api: web::Data<WaitlistApi>,
    path: web::Path<(String, String)>,
) -> Result<Reply<ParticipantResponse>, ApiError> {
    let campaign_id = campaign_id(&path.0)?;
    let participant_id = parse_id(&path.1, ErrorCode::ParticipantNotFound, "participant")?;
    let participant = api
        .waitlist
        .participant(campaign_id, participant_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ParticipantNotFound,
                format!("no participant {participant_id} in campaign {campaign_id}"),
            )
        })?;
    Ok(Reply::ok(api.participant(&participant)))
}

/// The first places of a campaign, emails masked.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "leaderboard",
    params(("campaign_id" = Uuid, Path), LimitParams),
    responses(
        (status = 200, description = "The leaderboard", body = LeaderboardResponse),
        (status = 400, description = "A query parameter is unknown or does not parse (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 422, description = "`limit` is out of range", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}/leaderboard")]
async fn leaderboard(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
    params: QueryParams<LimitParams>,
) -> Result<Reply<LeaderboardResponse>, ApiError> {
    let campaign_id = campaign_id(&path)?;
    let limit = params.limit()?;
    let participant_count = api
        .waitlist
        .participant_count(campaign_id)
        .await?
        .ok_or_else(|| campaign_not_found(campaign_id))?;
    let entries = api.waitlist.leaderboard(campaign_id, limit).await?;
    Ok(Reply::ok(LeaderboardResponse {
        campaign_id,
        participant_count,
        entries: entries
            .iter()
            .map(|e| LeaderboardEntryResponse {
                position: e.position,
                participant_id: e.participant_id,
                email: masked(&e.email),
                verified_referral_count: e.verified_referral_count,
            })
            .collect(),
    }))
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
