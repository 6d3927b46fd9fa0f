//! `/api/v1/campaigns…`: waitlist campaigns, signups, verification, leaderboard.
//!
//! Campaigns belong to the user who created them; who may call each route is in
//! `access::ROUTES`. Anyone sees a campaign's public view and its masked leaderboard, and signs
//! up; the owner (or a platform admin) reads it in full, changes it and lists its participants
//! with their emails; a participant reads their own standing with their participant token. No
//! public answer carries another participant's ID or email.
//!
//! Writes go through `repo::Waitlist`, which stores each change with the domain events it
//! causes in one transaction (the outbox); the relay task started in `main` publishes them to
//! `domain-events`. Handlers wake the relay after a commit so events go out at once.

use std::sync::Arc;

use actix_web::{HttpRequest, get, patch, post, web};
use chrono::{DateTime, Utc};
use domain::Email;
use domain::waitlist::{CampaignStatus, DeliveryMethod, FraudRules, NewCampaign, NewRewardTier};
use repo::RepoError;
use repo::waitlist::{
    Campaign, CampaignChange, ChangeOutcome, EarnedReward, NewSignup, Participant, SignupError,
    Verification, Waitlist,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;
use waitlist::links::referral_link;
use waitlist::{DomainEventEncoder, ParticipantTokens, VerificationTokens};

use crate::access::{CampaignActor, Principal};

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
    /// The participant tokens of signups: a participant reads their own standing with theirs.
    pub(crate) participant_tokens: ParticipantTokens,
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
        .service(change_campaign)
        .service(rotate_webhook_secret)
        .service(public_campaign)
        .service(sign_up)
        .service(list_signups)
        .service(get_participant)
        .service(my_standing)
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

/// Changes to a campaign; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "paused"}))]
pub(crate) struct CampaignChangeRequest {
    /// 1 to 200 characters, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `paused` stops signups until `active` again; an `ended` campaign stays ended.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(draft|active|paused|ended)$")]
    status: Option<CampaignStatus>,
    /// Where milestone announcements go; `null` stops them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Email)]
    notify_email: Option<Option<String>>,
}

/// A field that is present, `null` included (`Some(None)`), as opposed to left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
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

/// A page of a campaign's participants.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// 1 to 100 (20 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Participants to skip, by position (0 by default).
    #[param(minimum = 0)]
    offset: Option<i64>,
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

/// A reward tier as anyone may see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublicRewardTierResponse {
    name: String,
    referral_threshold: i32,
}

/// What anyone may see of a campaign: no owner, address or webhook.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublicCampaignResponse {
    id: Uuid,
    name: String,
    #[schema(schema_with = campaign_status_schema)]
    status: CampaignStatus,
    points_per_referral: i32,
    participant_count: i64,
    reward_tiers: Vec<PublicRewardTierResponse>,
    milestones: Vec<MilestoneResponse>,
}

impl From<&Campaign> for PublicCampaignResponse {
    fn from(campaign: &Campaign) -> Self {
        let full = CampaignResponse::from(campaign);
        Self {
            id: full.id,
            name: full.name,
            status: full.status,
            points_per_referral: full.points_per_referral,
            participant_count: full.participant_count,
            reward_tiers: full
                .reward_tiers
                .into_iter()
                .map(|t| PublicRewardTierResponse {
                    name: t.name,
                    referral_threshold: t.referral_threshold,
                })
                .collect(),
            milestones: full.milestones,
        }
    }
}

/// A campaign's new webhook secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookSecretResponse {
    campaign_id: Uuid,
    /// Shown once: reward webhooks are signed with it from now on (HMAC-SHA256).
    webhook_secret: String,
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

/// A participant's own standing, as their participant token shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StandingResponse {
    campaign_id: Uuid,
    /// The place in the queue now: signup order, moved up by verified referrals.
    position: i64,
    /// The place at signup.
    original_position: i64,
    verified_referral_count: i32,
    verified: bool,
    referral_code: String,
    /// The page to share; a signup through it counts as this participant's referral.
    #[schema(format = "uri")]
    referral_link: String,
    rewards: Vec<EarnedRewardResponse>,
    created_at: DateTime<Utc>,
}

/// A participant of a campaign, as its owner sees them.
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

/// What became of the referral code a signup came with: nothing about the referrer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReferralOutcome {
    /// `true`: it counts for the referrer once this participant verifies; `false`: a fraud
    /// rule set it aside.
    counted: bool,
}

/// A new participant: their standing and the token to read it again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupResponse {
    participant_id: Uuid,
    /// Shown here and in the verification email: `GET …/me` with
    /// `Authorization: Bearer <participant_token>` shows this participant's standing.
    participant_token: String,
    #[serde(flatten)]
    standing: StandingResponse,
    /// Present when the signup came with a referral code.
    referral: Option<ReferralOutcome>,
}

/// A participant in the owner's list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupEntryResponse {
    participant_id: Uuid,
    email: String,
    position: i64,
    verified_referral_count: i32,
}

/// A page of a campaign's participants, by position.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupListResponse {
    campaign_id: Uuid,
    participant_count: i64,
    signups: Vec<SignupEntryResponse>,
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
    /// The campaign of a path's `{campaign_id}`; 404 `campaign_not_found` when there is none.
    async fn campaign(&self, text: &str) -> Result<Campaign, ApiError> {
        let id = campaign_id(text)?;
        self.waitlist
            .campaign(id)
            .await?
            .ok_or_else(|| campaign_not_found(id))
    }

    /// The ID of a path's `{campaign_id}` when `actor` may manage that campaign: its owner or a
    /// platform admin. 404 when there is no such campaign, 403 `forbidden` when it is
    /// another's. Checked on the ID as this handler parsed it.
    async fn managed(&self, text: &str, actor: CampaignActor) -> Result<Uuid, ApiError> {
        let id = campaign_id(text)?;
        match self.waitlist.campaign_owner(id).await? {
            None => Err(campaign_not_found(id)),
            Some(owner) if actor.may_manage(owner) => Ok(id),
            Some(_) => Err(crate::access::forbidden("the campaign is not yours")),
        }
    }

    /// A campaign's participant count and `limit` participants by position after `offset`;
    /// 404 when there is no such campaign.
    async fn ranking(
        &self,
        campaign_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<repo::waitlist::LeaderboardEntry>), ApiError> {
        let participant_count = self
            .waitlist
            .participant_count(campaign_id)
            .await?
            .ok_or_else(|| campaign_not_found(campaign_id))?;
        let entries = self
            .waitlist
            .leaderboard(campaign_id, limit, offset)
            .await?;
        Ok((participant_count, entries))
    }

    fn standing(&self, participant: &Participant) -> StandingResponse {
        StandingResponse {
            campaign_id: participant.campaign_id,
            position: participant.position,
            original_position: participant.original_position,
            verified_referral_count: participant.verified_referral_count,
            verified: participant.verified_at.is_some(),
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

impl PageParams {
    fn limit(&self) -> Result<i64, ApiError> {
        LimitParams { limit: self.limit }.limit()
    }

    fn offset(&self) -> Result<i64, ApiError> {
        match self.offset.unwrap_or(0) {
            offset if offset >= 0 => Ok(offset),
            _ => Err(ApiError::invalid("offset", "offset must be 0 or more")),
        }
    }
}

impl CampaignChangeRequest {
    /// The change to make, or 422 naming the field.
    fn validate(self) -> Result<CampaignChange, ApiError> {
        if let Some(name) = &self.name {
            let trimmed = name.trim();
            if trimmed.is_empty() || trimmed.chars().count() > 200 {
                return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
            }
            if trimmed.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "name",
                    "must not hold control characters",
                ));
            }
        }
        let notify_email = self
            .notify_email
            .map(|email| {
                email
                    .map(|e| {
                        Email::parse(&e)
                            .map(|e| e.as_str().to_owned())
                            .map_err(|e| ApiError::invalid("notify_email", e.reason))
                    })
                    .transpose()
            })
            .transpose()?;
        Ok(CampaignChange {
            name: self.name,
            status: self.status,
            notify_email,
        })
    }
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

/// Create a campaign, owned by the caller (a platform admin's has no owner).
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
    actor: CampaignActor,
    body: Json<CampaignRequest>,
) -> Result<Reply<CreatedCampaign>, ApiError> {
    let campaign = body.into_inner().validate()?;
    if !api.allow_private_webhooks {
        campaign.require_public_webhooks()?;
    }
    let secret = new_webhook_secret();
    let created = api
        .waitlist
        .create_campaign(Uuid::now_v7(), &campaign, &secret, actor.owner())
        .await?;
    Ok(Reply::created(CreatedCampaign {
        campaign: (&created).into(),
        webhook_secret: secret,
    })
    .at(format!("/api/v1/campaigns/{}", created.id)))
}

/// The caller's campaigns, newest first (every campaign, for a platform admin).
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
    actor: CampaignActor,
    params: QueryParams<LimitParams>,
) -> Result<Reply<CampaignList>, ApiError> {
    let campaigns = api
        .waitlist
        .campaigns(actor.owner(), params.limit()?)
        .await?;
    Ok(Reply::ok(CampaignList {
        campaigns: campaigns.iter().map(Into::into).collect(),
    }))
}

/// One campaign in full, for its owner.
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
    actor: CampaignActor,
    path: web::Path<String>,
) -> Result<Reply<CampaignResponse>, ApiError> {
    let campaign = api.campaign(&path).await?;
    if !actor.may_manage(campaign.owner_user_id) {
        return Err(crate::access::forbidden("the campaign is not yours"));
    }
    Ok(Reply::ok((&campaign).into()))
}

/// Change a campaign's name, status (pause, resume, end) or announcement address.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "changeCampaign",
    params(("campaign_id" = Uuid, Path)),
    request_body = CampaignChangeRequest,
    responses(
        (status = 200, description = "The campaign as it is now", body = CampaignResponse),
        (status = 404, description = "No such campaign (`campaign_not_found`)", body = ErrorBody),
        (status = 422, description = "A field is wrong or unknown", body = ErrorBody),
    )
)]
#[patch("/api/v1/campaigns/{campaign_id}")]
async fn change_campaign(
    api: web::Data<WaitlistApi>,
    actor: CampaignActor,
    path: web::Path<String>,
    body: Json<CampaignChangeRequest>,
) -> Result<Reply<CampaignResponse>, ApiError> {
    let id = api.managed(&path, actor).await?;
    let change = body.into_inner().validate()?;
    match api.waitlist.change_campaign(id, &change).await? {
        ChangeOutcome::Changed(changed) => Ok(Reply::ok((&changed).into())),
        ChangeOutcome::Ended => Err(ApiError::invalid("status", "an ended campaign stays ended")),
        ChangeOutcome::NotFound => Err(campaign_not_found(id)),
    }
}

/// Replace the secret the campaign's reward webhooks are signed with (after a leak, or to
/// read one again: it is shown only when made).
#[utoipa::path(
    tag = "waitlist",
    operation_id = "rotateWebhookSecret",
    params(("campaign_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The new secret, shown only here", body = WebhookSecretResponse),
        (status = 404, description = "No such campaign (`campaign_not_found`)", body = ErrorBody),
    )
)]
#[post("/api/v1/campaigns/{campaign_id}/webhook-secret")]
async fn rotate_webhook_secret(
    api: web::Data<WaitlistApi>,
    actor: CampaignActor,
    path: web::Path<String>,
) -> Result<Reply<WebhookSecretResponse>, ApiError> {
    let id = api.managed(&path, actor).await?;
    let secret = new_webhook_secret();
    if !api.waitlist.rotate_webhook_secret(id, &secret).await? {
        return Err(campaign_not_found(id));
    }
    Ok(Reply::ok(WebhookSecretResponse {
        campaign_id: id,
        webhook_secret: secret,
    }))
}

/// A webhook signing secret: `whsec_` and 128 random bits in hex.
fn new_webhook_secret() -> String {
    format!("whsec_{}", hex::encode(Uuid::new_v4().as_bytes()))
}

/// What anyone may see of a campaign: name, status, counts, reward tiers and milestones.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "getPublicCampaign",
    params(("campaign_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The campaign's public view", body = PublicCampaignResponse),
        (status = 404, description = "No such campaign (`campaign_not_found`)", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}/public")]
async fn public_campaign(
    api: web::Data<WaitlistApi>,
    path: web::Path<String>,
) -> Result<Reply<PublicCampaignResponse>, ApiError> {
    let campaign = api.campaign(&path).await?;
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
            headers(("Location" = String, description = "Where the participant reads their standing, with their participant token"))),
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
    crate::access::count_identifier(&request, crate::access::Limit::Signup, email.as_str()).await?;
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
        participant_id: participant.id,
        participant_token: api.participant_tokens.issue(campaign_id, participant.id),
        standing: api.standing(participant),
        referral: signed_up.referral.as_ref().map(|r| ReferralOutcome {
            counted: r.status != "flagged",
        }),
    })
    .at(format!("/api/v1/campaigns/{campaign_id}/me")))
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

/// A campaign's participants with their emails, by position.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "listSignups",
    params(("campaign_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "A page of participants", body = SignupListResponse),
        (status = 400, description = "A query parameter is unknown or does not parse (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 422, description = "`limit` or `offset` is out of range", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}/signups")]
async fn list_signups(
    api: web::Data<WaitlistApi>,
    actor: CampaignActor,
    path: web::Path<String>,
    params: QueryParams<PageParams>,
) -> Result<Reply<SignupListResponse>, ApiError> {
    let campaign_id = api.managed(&path, actor).await?;
    let (limit, offset) = (params.limit()?, params.offset()?);
    let (participant_count, entries) = api.ranking(campaign_id, limit, offset).await?;
    Ok(Reply::ok(SignupListResponse {
        campaign_id,
        participant_count,
        signups: entries
            .into_iter()
            .map(|e| SignupEntryResponse {
                participant_id: e.participant_id,
                email: e.email,
                position: e.position,
                verified_referral_count: e.verified_referral_count,
            })
            .collect(),
    }))
}

/// The participant's own standing: position, referral link, rewards.
#[utoipa::path(
    tag = "waitlist",
    operation_id = "getMyStanding",
    params(("campaign_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The standing of the token's participant", body = StandingResponse),
        (status = 404, description = "The participant is gone (`participant_not_found`)", body = ErrorBody),
    )
)]
#[get("/api/v1/campaigns/{campaign_id}/me")]
async fn my_standing(
    api: web::Data<WaitlistApi>,
    caller: Principal,
) -> Result<Reply<StandingResponse>, ApiError> {
    let Principal::Participant {
        campaign_id,
        participant_id,
    } = caller
    else {
        return Err(ApiError::internal(
            "a participant route without a participant",
        ));
    };
    let participant = api
        .waitlist
        .participant(campaign_id, participant_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ParticipantNotFound,
                "the token's participant is not in this campaign",
            )
        })?;
    Ok(Reply::ok(api.standing(&participant)))
}

/// One participant, with their email, for the campaign's owner.
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
    actor: CampaignActor,
    path: web::Path<(String, String)>,
) -> Result<Reply<ParticipantResponse>, ApiError> {
    let campaign_id = api.managed(&path.0, actor).await?;
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

/// The first places of a campaign: emails masked, no participant IDs.
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
    let (participant_count, entries) = api.ranking(campaign_id, limit, 0).await?;
    Ok(Reply::ok(LeaderboardResponse {
        campaign_id,
        participant_count,
        entries: entries
            .iter()
            .map(|e| LeaderboardEntryResponse {
                position: e.position,
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
