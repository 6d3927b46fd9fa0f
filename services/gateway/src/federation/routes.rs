//! `/api/v1/auth/providers*` (sign-in with another provider) and `/api/v1/me/providers*`
//! (linking, listing and unlinking the signed-in user's provider accounts).

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, delete, get, post, web};
use chrono::{DateTime, Utc};
use domain::accounts::SecretToken;
use domain::{Email, Identifier, NewUser, OAuthAccount, UserId};
use repo::{RepoError, UserRepository as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Identity, ProviderTokens, Upstream, UpstreamError};
use crate::accounts::{AccountsApi, Authenticated, Caller, SignedIn, account_gone};
use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::json::QueryParams;
use crate::registration::RegistrationApi;
use crate::reply::Reply;

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(list_providers)
        .service(start_sign_in)
        .service(callback)
        .service(start_link)
        .service(linked_providers)
        .service(unlink);
}

const COOKIE: &str = "oidc_login";
const COOKIE_PATH: &str = "/api/v1/auth/providers";
/// How long a started flow may take.
const FLOW_TTL_SECONDS: i64 = 600;
/// Linking a provider needs a session started this recently.
const RECENT_SIGN_IN_MINUTES: i64 = 10;

/// What the federation endpoints work with.
#[derive(Debug, Clone)]
pub(crate) struct Federation {
    pub(crate) upstreams: Arc<Vec<Upstream>>,
    pub(crate) accounts: AccountsApi,
    /// New users: their IDs and `user.registered`.
    pub(crate) registration: web::Data<RegistrationApi>,
    /// This gateway's `OAUTH2_ISSUER`: the callback URLs start with it.
    pub(crate) issuer: String,
    /// Seals the flow's cookie.
    pub(crate) state_key: [u8; 32],
}

/// What a flow's cookie carries from its start to its callback.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    provider: String,
    state: String,
    verifier: String,
    nonce: String,
    /// The signed-in user linking the provider; `None` for a sign-in.
    link_user: Option<UserId>,
    /// The terms were accepted when the flow started (a new account needs it).
    consent: bool,
    /// Seconds since the epoch.
    expires_at: i64,
}

impl Federation {
    fn upstream(&self, name: &str) -> Result<&Upstream, ApiError> {
        self.upstreams
            .iter()
            .find(|u| u.config.name == name)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ProviderNotFound,
                    format!("no provider {name:?} is configured"),
                )
            })
    }

    fn redirect_uri(&self, provider: &str) -> String {
        format!("{}/api/v1/auth/providers/{provider}/callback", self.issuer)
    }

    fn secure(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// Starts a flow: the provider's authorization URL, and the cookie that carries the flow.
    async fn begin(
        &self,
        upstream: &Upstream,
        link_user: Option<UserId>,
        consent: bool,
    ) -> Result<(String, String), ApiError> {
        let flow = Flow {
            provider: upstream.config.name.clone(),
            state: SecretToken::generate().expose().to_owned(),
            verifier: SecretToken::generate().expose().to_owned(),
            nonce: SecretToken::generate().expose().to_owned(),
            link_user,
            consent,
            expires_at: Utc::now().timestamp() + FLOW_TTL_SECONDS,
        };
        let url = upstream
            .authorization_url(
                &self.redirect_uri(&flow.provider),
                &flow.state,
                &flow.nonce,
                &crate::oauth2::s256(&flow.verifier),
            )
            .await
            .map_err(upstream_error)?;
        let sealed = crate::oauth2::sealed::seal(
            &self.state_key,
            COOKIE.as_bytes(),
            &serde_json::to_vec(&flow).map_err(ApiError::internal)?,
        )
        .map_err(ApiError::internal)?;
        let cookie = format!(
            "{COOKIE}={sealed}; Path={COOKIE_PATH}; Max-Age={FLOW_TTL_SECONDS}; HttpOnly; SameSite=Lax{}",
            if self.secure() { "; Secure" } else { "" }
        );
        Ok((url, cookie))
    }

    fn cleared_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Lax{}",
            if self.secure() { "; Secure" } else { "" }
        )
    }

    /// The flow of this browser's cookie, when it is this provider's, unexpired, and its state
    /// is the callback's.
    fn flow(&self, request: &HttpRequest, provider: &str, state: Option<&str>) -> Option<Flow> {
        let sealed = request
            .headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value)?;
        let plain = crate::oauth2::sealed::open(&self.state_key, COOKIE.as_bytes(), sealed)?;
        let flow: Flow = serde_json::from_slice(&plain).ok()?;
        let state_matches = bool::from(flow.state.as_bytes().ct_eq(state?.as_bytes()));
        (state_matches && flow.provider == provider && flow.expires_at > Utc::now().timestamp())
            .then_some(flow)
    }

    /// Keeps the provider's tokens (hashes) and what it said of the user.
    async fn remember(
        &self,
        upstream: &Upstream,
        account_id: uuid::Uuid,
        identity: &Identity,
        tokens: &ProviderTokens,
    ) -> Result<(), ApiError> {
        let users = &self.accounts.users;
        let provider = &upstream.config.name;
        users
            .update_oauth_tokens(
                provider,
                &identity.subject,
                tokens
                    .access_token
                    .as_deref()
                    .map(domain::TokenHash::of)
                    .as_ref(),
                tokens
                    .refresh_token
                    .as_deref()
                    .map(domain::TokenHash::of)
                    .as_ref(),
                tokens
                    .expires_in
                    .map(|s| Utc::now() + chrono::Duration::seconds(s.clamp(0, 365 * 86_400))),
            )
            .await?;
        users
            .update_oauth_account_metadata(account_id, &metadata(identity))
            .await?;
        Ok(())
    }

    /// Signs in the user of the provider account, creating the user on a first sign-in.
    async fn sign_in(
        &self,
        upstream: &Upstream,
        identity: &Identity,
        tokens: &ProviderTokens,
        consent: bool,
        caller: &Caller,
    ) -> Result<ProviderSignIn, ApiError> {
        let users = &self.accounts.users;
        let provider = &upstream.config.name;
        let (account, created) = match users
            .find_by_provider_uid(provider, &identity.subject)
            .await
        {
            Ok(account) => (account, false),
            Err(RepoError::NotFound { .. }) => {
                match self.create_account(upstream, identity, consent).await? {
                    Some(account) => (account, true),
                    // Another sign-in of the same provider account created it meanwhile.
                    None => (
                        users
                            .find_by_provider_uid(provider, &identity.subject)
                            .await?,
                        false,
                    ),
                }
            }
            Err(other) => return Err(other.into()),
        };
        self.remember(upstream, account.id, identity, tokens)
            .await?;
        let (user, _) = users
            .get_user_with_credentials(account.user_id)
            .await
            .map_err(account_gone)?;
        if user.deleted_at.is_some() {
            return Err(ApiError::new(
                ErrorCode::AccountDeleted,
                "the account was deleted; restore it through the link mailed at deletion",
            ));
        }
        if user.status == domain::UserStatus::Suspended {
            return Err(ApiError::new(
                ErrorCode::AccountSuspended,
                "the account is suspended",
            ));
        }
        let tokens = self
            .accounts
            .start_session(Authenticated::through_provider(user, provider), caller)
            .await?;
        Ok(ProviderSignIn {
            tokens: tokens.into(),
            account_created: created,
        })
    }

    /// A new user for a provider account never seen; `None` when a concurrent sign-in linked
    /// the provider account first.
    async fn create_account(
        &self,
        upstream: &Upstream,
        identity: &Identity,
        consent: bool,
    ) -> Result<Option<OAuthAccount>, ApiError> {
        let users = &self.accounts.users;
        let email = identity.email.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::ProviderError,
                "the provider shares no email address; a new account needs one",
            )
        })?;
        let email = Email::parse(email).map_err(|_| {
            ApiError::new(
                ErrorCode::ProviderError,
                "the provider's email address is not valid",
            )
        })?;
        // An address the provider has not verified could be anyone's: an account made with it
        // would let whoever holds the provider account claim the address before its owner.
        if !identity.email_verified {
            return Err(ApiError::new(
                ErrorCode::ProviderError,
                "the provider has not verified this email address; a new account needs a verified one",
            ));
        }
        if users
            .identifier_exists(&Identifier::Email(email.clone()))
            .await?
        {
            return Err(account_exists());
        }
        if !consent {
            return Err(ApiError::invalid(
                "consent",
                "a new account needs the terms accepted: start again with consent=true",
            ));
        }
        let id = self.registration.ids.generate().ok_or_else(|| {
            ApiError::new(
                ErrorCode::DatabaseUnavailable,
                "the database is unavailable; try again",
            )
        })?;
        // No password anyone knows, and marked unusable: the account signs in through the
        // provider until its owner sets a password with a reset.
        let unusable = self
            .accounts
            .hasher
            .hash_all(vec![SecretToken::generate().expose().to_owned()])
            .await
            .map_err(crate::accounts::hash_error)?
            .remove(0);
        let created = users
            .create_users(&[NewUser {
                id,
                email: Some(email),
                phone: None,
                is_email_verified: true,
                is_phone_verified: false,
                consent,
                password_hash: unusable,
            }])
            .await?
            .remove(0);
        let user = match created {
            Ok(user) => user,
            Err(RepoError::Conflict(_)) => return Err(account_exists()),
            Err(other) => return Err(other.into()),
        };
        match self.finish_account(&user, upstream, identity).await {
            Ok(Some(account)) => {
                self.registration.user_registered(&user).await;
                Ok(Some(account))
            }
            // A concurrent sign-in linked the provider account first.
            Ok(None) => {
                users.delete_user(user.id).await?;
                Ok(None)
            }
            // Half made: the address must not stay taken by an account nobody can use.
            Err(error) => {
                if let Err(cleanup) = users.delete_user(user.id).await {
                    tracing::error!(user_id = %user.id, %cleanup, "a half-made account was not deleted");
                }
                Err(error)
            }
        }
    }

    /// The rest of a new account: its password made unusable and the provider account linked;
    /// `None` when another user has the provider account.
    async fn finish_account(
        &self,
        user: &domain::User,
        upstream: &Upstream,
        identity: &Identity,
    ) -> Result<Option<OAuthAccount>, ApiError> {
        let users = &self.accounts.users;
        users.invalidate_all_credentials(user.id).await?;
        let now = Utc::now();
        let account = OAuthAccount {
            id: uuid::Uuid::now_v7(),
            user_id: user.id,
            provider: upstream.config.name.clone(),
            provider_uid: identity.subject.clone(),
            email: identity.email.clone(),
            access_token_hash: None,
            refresh_token_hash: None,
            token_expires_at: None,
            metadata: metadata(identity),
            created_at: now,
            updated_at: now,
        };
        match users.create_oauth_account(&account).await {
            Ok(()) => Ok(Some(account)),
            Err(RepoError::Conflict(_)) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Links the provider account to the signed-in user who started the flow.
    async fn link(
        &self,
        upstream: &Upstream,
        user_id: UserId,
        identity: &Identity,
        tokens: &ProviderTokens,
    ) -> Result<ProviderLinked, ApiError> {
        let users = &self.accounts.users;
        let provider = &upstream.config.name;
        users.get_user_by_id(user_id).await.map_err(account_gone)?;
        match users
            .get_user_id_by_provider_uid(provider, &identity.subject)
            .await
        {
            Ok(owner) if owner == user_id => {}
            Ok(_) => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyLinked,
                    "this provider account is linked to another user",
                ));
            }
            Err(RepoError::NotFound { .. }) => {
                if users.check_oauth_account_exists(user_id, provider).await? {
                    return Err(ApiError::new(
                        ErrorCode::AlreadyLinked,
                        "another account of this provider is linked to yours; unlink it first",
                    ));
                }
                let now = Utc::now();
                let account = OAuthAccount {
                    id: uuid::Uuid::now_v7(),
                    user_id,
                    provider: provider.clone(),
                    provider_uid: identity.subject.clone(),
                    email: identity.email.clone(),
                    access_token_hash: None,
                    refresh_token_hash: None,
                    token_expires_at: None,
                    metadata: metadata(identity),
                    created_at: now,
                    updated_at: now,
                };
                users
                    .create_oauth_account(&account)
                    .await
                    .map_err(|e| match e {
                        RepoError::Conflict(_) => ApiError::new(
                            ErrorCode::AlreadyLinked,
                            "this provider account was linked meanwhile",
                        ),
                        other => other.into(),
                    })?;
            }
            Err(other) => return Err(other.into()),
        }
        let account = users
            .find_by_provider_uid(provider, &identity.subject)
            .await?;
        self.remember(upstream, account.id, identity, tokens)
            .await?;
        let account = users.get_oauth_account_by_id(account.id).await?;
        Ok(ProviderLinked {
            linked: provider.clone(),
            user_id: user_id.to_string(),
            linked_at: account.created_at,
        })
    }
}

/// What is kept of the provider's claims (`UpdateOAuthAccountMetadata`).
fn metadata(identity: &Identity) -> serde_json::Value {
    let claim = |name: &str| {
        identity
            .claims
            .get(name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    json!({
        "email": identity.email,
        "email_verified": identity.email_verified,
        "name": claim("name"),
        "issuer": claim("iss"),
        "last_sign_in_at": Utc::now(),
    })
}

fn account_exists() -> ApiError {
    ApiError::new(
        ErrorCode::AccountExists,
        "an account has this email address: sign in with its password, then link the provider from your account",
    )
}

fn upstream_error(error: UpstreamError) -> ApiError {
    match error {
        UpstreamError::Unavailable(reason) => {
            tracing::warn!(%reason, "identity provider unavailable");
            ApiError::new(
                ErrorCode::ProviderUnavailable,
                "the identity provider cannot be reached; try again",
            )
        }
        // The details (URLs, the provider's words) go to the log, not to the browser.
        UpstreamError::Refused(reason) => {
            tracing::warn!(%reason, "identity provider answer refused");
            ApiError::new(
                ErrorCode::ProviderError,
                "the sign-in with the provider failed; try again, or sign in another way",
            )
        }
    }
}

/// A provider users may sign in with.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "corp", "display_name": "Corp SSO"}))]
pub(crate) struct ProviderView {
    /// The name in the provider's paths.
    name: String,
    display_name: String,
}

/// The providers users may sign in with (`OIDC_PROVIDERS`).
#[utoipa::path(
    tag = "accounts",
    operation_id = "listIdentityProviders",
    responses((status = 200, description = "The configured providers", body = Vec<ProviderView>))
)]
#[get("/api/v1/auth/providers")]
async fn list_providers(federation: web::Data<Federation>) -> Reply<Vec<ProviderView>> {
    Reply::ok(
        federation
            .upstreams
            .iter()
            .map(|u| ProviderView {
                name: u.config.name.clone(),
                display_name: u.config.display_name.clone(),
            })
            .collect(),
    )
}

/// The query of a sign-in's start.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartQuery {
    /// The terms are accepted: needed when the sign-in creates the account (as registration's
    /// `consent`).
    consent: Option<bool>,
}

/// Sign in with a provider: the browser is sent to it.
///
/// Sets the `oidc_login` cookie (HttpOnly, SameSite=Lax, 10 minutes) that binds the flow to this
/// browser; the provider sends the browser back to the callback.
#[utoipa::path(
    tag = "accounts",
    operation_id = "startProviderSignIn",
    params(("provider" = String, Path, description = "The provider's name"), StartQuery),
    responses(
        (status = 303, description = "To the provider's authorization endpoint (`Location`), with the flow's cookie"),
        (status = 404, description = "No such provider (`provider_not_found`)", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`provider_unavailable`)", body = ErrorBody),
    )
)]
#[get("/api/v1/auth/providers/{provider}/authorize")]
async fn start_sign_in(
    federation: web::Data<Federation>,
    path: web::Path<String>,
    query: QueryParams<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    let upstream = federation.upstream(&path)?;
    let (url, cookie) = federation
        .begin(upstream, None, query.0.consent.unwrap_or(false))
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url))
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// The parameters the provider sends back (RFC 6749 sections 4.1.2 and 4.1.2.1).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// The provider's refusal (`access_denied`, …).
    error: Option<String>,
    /// The provider's issuer (RFC 9207).
    iss: Option<String>,
}

/// A sign-in through a provider: the session's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderSignIn {
    #[serde(flatten)]
    tokens: crate::accounts::routes::TokenResponse,
    /// Whether this sign-in created the account.
    account_created: bool,
}

/// A provider account linked to the signed-in user.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"linked": "corp", "user_id": "7285873432158208001", "linked_at": "2026-11-30T12:00:00Z"}))]
pub(crate) struct ProviderLinked {
    /// The provider's name.
    linked: String,
    user_id: String,
    linked_at: DateTime<Utc>,
}

/// What the callback answers: a sign-in, or a link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum CallbackAnswer {
    SignedIn(ProviderSignIn),
    Linked(ProviderLinked),
}

/// Where the provider sends the browser back: completes a sign-in or a link.
///
/// Needs the `oidc_login` cookie of the browser that started the flow (a callback URL opened
/// in another browser is refused), and spends it. A first sign-in creates the account with
/// the provider's email (verified when the provider says so) and no usable password; an email
/// that already has an account is refused (`account_exists`): sign in with the password and
/// link the provider from `/api/v1/me/providers`.
#[utoipa::path(
    tag = "accounts",
    operation_id = "providerCallback",
    params(("provider" = String, Path, description = "The provider's name"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in (a session's tokens and `account_created`), or linked (`linked`)", body = CallbackAnswer),
        (status = 400, description = "No flow of this browser with this state (`invalid_state`), or the provider refused or answered wrongly (`provider_error`)", body = ErrorBody),
        (status = 403, description = "The account is deleted or suspended", body = ErrorBody),
        (status = 404, description = "No such provider (`provider_not_found`)", body = ErrorBody),
        (status = 409, description = "The email has an account (`account_exists`), or the provider account is another user's (`already_linked`)", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`provider_unavailable`)", body = ErrorBody),
    )
)]
#[get("/api/v1/auth/providers/{provider}/callback")]
async fn callback(
    federation: web::Data<Federation>,
    request: HttpRequest,
    path: web::Path<String>,
    query: QueryParams<CallbackQuery>,
) -> HttpResponse {
    let outcome = complete(&federation, &request, &path, query.0).await;
    let mut response = match outcome {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(answer),
        Err(error) => error.error_response(),
    };
    if let Ok(cookie) = HeaderValue::from_str(&federation.cleared_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn complete(
    federation: &Federation,
    request: &HttpRequest,
    provider: &str,
    query: CallbackQuery,
) -> Result<CallbackAnswer, ApiError> {
    let upstream = federation.upstream(provider)?;
    let flow = federation
        .flow(request, provider, query.state.as_deref())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidState,
                "no sign-in with this provider was started in this browser, or it expired: start again",
            )
        })?;
    // The state is single-use: a callback URL replayed in the same browser is refused here
    // too, before the provider is asked about a spent code.
    let spent = federation
        .accounts
        .accounts
        .spend_once(
            &format!("oidc_state:{}", domain::TokenHash::of(&flow.state).as_str()),
            std::time::Duration::from_secs(u64::try_from(FLOW_TTL_SECONDS).unwrap_or(600)),
        )
        .await?;
    if !spent {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "this sign-in was already completed: start again",
        ));
    }
    upstream
        .check_response_issuer(query.iss.as_deref())
        .await
        .map_err(upstream_error)?;
    if let Some(error) = query.error {
        let error: String = error
            .chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect();
        return Err(ApiError::new(
            ErrorCode::ProviderError,
            format!("the provider refused: {error}"),
        ));
    }
    let code = query
        .code
        .ok_or_else(|| ApiError::new(ErrorCode::ProviderError, "the provider sent no code"))?;
    let (identity, tokens) = upstream
        .redeem(
            &code,
            &federation.redirect_uri(provider),
            &flow.verifier,
            &flow.nonce,
        )
        .await
        .map_err(upstream_error)?;
    let caller = federation.accounts.caller(request);
    let outcome = match flow.link_user {
        Some(user_id) => federation
            .link(upstream, user_id, &identity, &tokens)
            .await
            .map(CallbackAnswer::Linked),
        None => federation
            .sign_in(upstream, &identity, &tokens, flow.consent, &caller)
            .await
            .map(CallbackAnswer::SignedIn),
    };
    let (event, user_id, details) = match &outcome {
        Ok(CallbackAnswer::Linked(_)) => ("provider_linked", flow.link_user, json!({})),
        Ok(CallbackAnswer::SignedIn(signed_in)) => (
            "provider_sign_in",
            signed_in.tokens.user_id.parse().ok(),
            json!({"account_created": signed_in.account_created}),
        ),
        Err(error) => (
            "provider_sign_in_failed",
            flow.link_user,
            json!({"error": error.code.as_str(), "linking": flow.link_user.is_some()}),
        ),
    };
    let mut details = details;
    details["provider"] = json!(provider);
    federation
        .accounts
        .audit(event, None, user_id, &caller, outcome.is_ok(), details)
        .await;
    outcome
}

/// Where to send the browser to link a provider.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkStart {
    /// Open it in the browser that got this answer's cookie.
    authorization_url: String,
}

/// Link a provider account to the signed-in user: answers the provider's URL.
///
/// Needs a session started in the last 10 minutes (a linked provider signs the account in
/// until it is unlinked).
///
/// Sets the `oidc_login` cookie: follow `authorization_url` in the same browser; the callback
/// links the provider account the user signs in with there.
#[utoipa::path(
    tag = "accounts",
    operation_id = "startProviderLink",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, description = "The provider's authorization URL, and the flow's cookie", body = LinkStart),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The session was not started in the last 10 minutes (`recent_sign_in_required`)", body = ErrorBody),
        (status = 404, description = "No such provider (`provider_not_found`)", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`provider_unavailable`)", body = ErrorBody),
    )
)]
#[post("/api/v1/me/providers/{provider}")]
async fn start_link(
    federation: web::Data<Federation>,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let upstream = federation.upstream(&path)?;
    // A linked provider signs in for good (a password reset does not end it): a stolen
    // access token must not be enough to add one.
    let recent = federation
        .accounts
        .accounts
        .session(who.session_id)
        .await?
        .is_some_and(|s| {
            Utc::now() - s.created_at < chrono::Duration::minutes(RECENT_SIGN_IN_MINUTES)
        });
    if !recent {
        return Err(ApiError::new(
            ErrorCode::RecentSignInRequired,
            format!("sign in again (within {RECENT_SIGN_IN_MINUTES} minutes) to link a provider"),
        ));
    }
    let (url, cookie) = federation.begin(upstream, Some(who.user_id), true).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(LinkStart {
            authorization_url: url,
        }))
}

/// A provider account linked to the user.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"provider": "corp", "email": "ada@corp.example", "linked_at": "2026-11-30T12:00:00Z"}))]
pub(crate) struct LinkedProvider {
    provider: String,
    /// The email the provider gave, if any.
    email: Option<String>,
    linked_at: DateTime<Utc>,
}

/// The provider accounts linked to the signed-in user (`GetOAuthAccountsByUserID`).
#[utoipa::path(
    tag = "accounts",
    operation_id = "listLinkedProviders",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Linked provider accounts", body = Vec<LinkedProvider>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
#[get("/api/v1/me/providers")]
async fn linked_providers(
    federation: web::Data<Federation>,
    who: SignedIn,
) -> Result<Reply<Vec<LinkedProvider>>, ApiError> {
    let accounts = federation
        .accounts
        .users
        .get_oauth_accounts_by_user_id(who.user_id)
        .await?;
    Ok(Reply::ok(
        accounts
            .into_iter()
            .map(|a| LinkedProvider {
                provider: a.provider,
                email: a.email,
                linked_at: a.created_at,
            })
            .collect(),
    )
    .no_store())
}

/// Unlink a provider (`UnlinkOAuthAccount`).
///
/// Refused (409 `last_sign_in_method`) when the account would be left with no way to sign in:
/// no usable password and no other linked provider (set a password with a password reset
/// first).
#[utoipa::path(
    tag = "accounts",
    operation_id = "unlinkProvider",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No account of this provider is linked (`not_linked`)", body = ErrorBody),
        (status = 409, description = "It is the account's last way to sign in (`last_sign_in_method`)", body = ErrorBody),
    )
)]
#[delete("/api/v1/me/providers/{provider}")]
async fn unlink(
    federation: web::Data<Federation>,
    request: HttpRequest,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let users = &federation.accounts.users;
    let linked = users.get_oauth_accounts_by_user_id(who.user_id).await?;
    if !linked.iter().any(|a| a.provider == *path) {
        return Err(ApiError::new(
            ErrorCode::NotLinked,
            "no account of this provider is linked",
        ));
    }
    let (_, credentials) = users
        .get_user_with_credentials(who.user_id)
        .await
        .map_err(account_gone)?;
    let has_password = credentials.iter().any(|c| c.invalidated_at.is_none());
    if !has_password && linked.len() < 2 {
        return Err(ApiError::new(
            ErrorCode::LastSignInMethod,
            "this provider is the account's only way to sign in: set a password (password reset) or link another provider first",
        ));
    }
    users.unlink_oauth_account(who.user_id, &path).await?;
    let caller = federation.accounts.caller(&request);
    federation
        .accounts
        .audit(
            "provider_unlinked",
            None,
            Some(who.user_id),
            &caller,
            true,
            json!({"provider": *path}),
        )
        .await;
    Ok(HttpResponse::NoContent().finish())
}
