//! Who may call each route, and how often: the route table ([`ROUTES`]) and the middleware
//! that enforces it ([`enforce`]) before any handler runs.
//!
//! Every route the gateway serves has one line in the table: its class of caller ([`Access`])
//! and, for public writes, its rate limit ([`Limit`]). The middleware finds a request's route
//! as the router does, on the percent-decoded path, so an encoded twin of a path is the same
//! route; a route missing from the table is refused (500) rather than served unguarded, and a
//! unit test compares the table with the OpenAPI document and the HTML pages; a method the
//! table does not list for a path is answered 405 by the middleware itself. The OpenAPI
//! document takes each operation's `security` and its `x-access` class from the same table
//! ([`document_security`]), and the system tests generate their 401/403 checks from the
//! document, so a new route cannot be forgotten.
//!
//! Callers are told apart by their `Authorization: Bearer` token (RFC 6750):
//!
//! | principal | token |
//! |---|---|
//! | a signed-in user | the access token of `/api/v1/auth/sign-in` or `/refresh` (first-party session) |
//! | a user, through an OAuth2 client | an access token of the authorization code grant; only its scopes |
//! | a client (a service) | an access token of the client credentials grant; only its scopes |
//! | a platform admin | a client credentials token with the `admin` scope |
//! | a campaign participant | the participant token of the signup answer and the verification email |
//!
//! Refusals: no token, 401 `unauthenticated`; a token that is unknown, expired or revoked,
//! 401 `invalid_token` (both with `WWW-Authenticate: Bearer`); a valid token of the wrong kind,
//! another user's or another owner's, 403 `forbidden`; a token without the route's scope, 403
//! `insufficient_scope` (RFC 6750 section 3.1).
//!
//! Rate limits count per client IP (`TRUSTED_PROXIES` decides which address that is; IPv6 per
//! /64) in fixed windows kept in PostgreSQL, so they hold across gateway replicas: every replica
//! counts into the same row. Each answer of a limited route carries the IETF `RateLimit-Policy`
//! and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers); a refusal is 429
//! `too_many_requests` with `Retry-After`. Registrations and campaign signups are counted
//! per identifier too ([`count_identifier`]: the email address or phone number, with the same
//! quota); failed sign-ins per identifier and messages per address are counted by the accounts
//! module in the same table.

use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, ResponseError as _, web};
use domain::UserId;
use repo::accounts::FIRST_PARTY_CLIENT_ID;
use repo::{RepoError, UserRepository as _};
use serde_json::{Value, json};
use service_runtime::{ConfigError, Env};
use uuid::Uuid;

use crate::accounts::{
    AccountsApi, SignedIn, bearer_credential, bearer_token, ip_key, seconds_until,
};
use crate::campaigns::WaitlistApi;
use crate::errors::{ApiError, ErrorCode};

/// The scopes of this API beyond OpenID Connect's.
pub(crate) mod scopes {
    /// Read the caller's campaigns in full and list their participants.
    pub(crate) const CAMPAIGNS_READ: &str = "campaigns:read";
    /// Create, change and pause the caller's campaigns.
    pub(crate) const CAMPAIGNS_WRITE: &str = "campaigns:write";
    /// Publish user activity events.
    pub(crate) const ACTIVITY_WRITE: &str = "activity:write";
    /// Read the activity log of any user.
    pub(crate) const ACTIVITY_READ: &str = "activity:read";
    /// Register users in bulk.
    pub(crate) const REGISTRATIONS_BULK: &str = "registrations:bulk";
    /// A resource server's: introspect the access tokens of every client (a client learns about
    /// its own tokens only without it).
    pub(crate) const TOKENS_INTROSPECT: &str = "tokens:introspect";
    /// The platform admin role: audit logs, every campaign, every token's introspection.
    pub(crate) const ADMIN: &str = "admin";
    /// Scopes only `platform-admin create-client` gives a client: a user registering a client
    /// cannot ask for them, and they never pass in a user's grant.
    pub(crate) const PRIVILEGED: [&str; 5] = [
        ACTIVITY_WRITE,
        ACTIVITY_READ,
        REGISTRATIONS_BULK,
        TOKENS_INTROSPECT,
        ADMIN,
    ];
}

/// The class of caller a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone.
    Public,
    /// An OAuth2 endpoint that authenticates its caller itself, as its RFC says (client
    /// authentication of RFC 6749 section 2.3, or the bearer token of the userinfo endpoint).
    Endpoint,
    /// A signed-in user, with a first-party session's token: their own profile, sessions,
    /// consents, clients and linked providers.
    User,
    /// The user the path parameter `param` names (their session token), or a client with
    /// `scope`.
    SelfOrService {
        param: &'static str,
        scope: &'static str,
    },
    /// A campaign owner: a signed-in user, a user's grant to a client with `scope`, a client of
    /// the user's own with `scope` (acting for its owner, while the owner's account is live),
    /// or a platform admin. The middleware establishes the [`CampaignActor`]; with a
    /// `{campaign_id}` in the path the handler admits only that campaign's owner or an admin
    /// (403 `forbidden`), checking the ID it parsed itself.
    Owner { scope: &'static str },
    /// A client (client credentials) with `scope`.
    Service { scope: &'static str },
    /// A platform admin client.
    Admin,
    /// The participant of the campaign in the path, by their participant token.
    Participant,
}

impl Access {
    /// The class's name in the OpenAPI document's `x-access`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Endpoint => "oauth2-endpoint",
            Self::User => "user",
            Self::SelfOrService { .. } => "self-or-service",
            Self::Owner { .. } => "owner",
            Self::Service { .. } => "service",
            Self::Admin => "admin",
            Self::Participant => "participant",
        }
    }
}

/// A rate limit policy: public writes of one kind share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `register-sync` and `register-async`.
    Registration,
    /// Campaign signups.
    Signup,
    /// Proving a code or token: email, phone and campaign verification, reset confirmation,
    /// restoring a deleted account.
    Verification,
    /// Sign-in, and the sign-in and consent forms of `/oauth2/authorize`.
    SignIn,
    /// Asking for a message: password reset, verification resend.
    Recovery,
    /// Token requests: `/oauth2/token` and `/api/v1/auth/refresh`.
    Token,
    /// Client-authenticated token checks: `/oauth2/introspect`, `/oauth2/revoke`; generous, as a
    /// resource server introspects on every request it serves.
    Introspection,
}

impl Limit {
    const ALL: [Self; 7] = [
        Self::Registration,
        Self::Signup,
        Self::Verification,
        Self::SignIn,
        Self::Recovery,
        Self::Token,
        Self::Introspection,
    ];

    /// The policy's name: in `RateLimit-Policy`, and `RATE_LIMIT_<NAME>` upper-cased.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Signup => "signup",
            Self::Verification => "verification",
            Self::SignIn => "sign_in",
            Self::Recovery => "recovery",
            Self::Token => "token",
            Self::Introspection => "introspection",
        }
    }

    fn default_quota(self) -> Quota {
        let per_minute = |limit| Quota {
            limit,
            window: Duration::from_secs(60),
        };
        match self {
            Self::Registration => per_minute(10),
            Self::Signup => per_minute(20),
            Self::Verification => per_minute(30),
            Self::SignIn => per_minute(20),
            Self::Recovery => per_minute(10),
            Self::Token => per_minute(120),
            Self::Introspection => per_minute(1200),
        }
    }
}

/// One line of the route table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    /// The path pattern, as actix-web and the OpenAPI document write it.
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) limit: Option<Limit>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    limit: Option<Limit>,
) -> Route {
    Route {
        method,
        path,
        access,
        limit,
    }
}

use Access::{Admin, Endpoint, Owner, Participant, Public, SelfOrService, Service, User};
use scopes::{ACTIVITY_READ, ACTIVITY_WRITE, CAMPAIGNS_READ, CAMPAIGNS_WRITE, REGISTRATIONS_BULK};

/// Every route of the gateway: who may call it, and its rate limit.
#[rustfmt::skip]
pub(crate) const ROUTES: &[Route] = &[
    // Registration.
    route("POST", "/api/v1/auth/register-sync", Public, Some(Limit::Registration)),
    route("POST", "/api/v1/auth/register-async", Public, Some(Limit::Registration)),
    route("POST", "/api/v1/auth/register-async-bulk", Service { scope: REGISTRATIONS_BULK }, None),
    route("GET", "/api/v1/auth/registrations/{request_id}", Public, None),
    // Accounts: anyone may try to get in; what is inside is the user's.
    route("POST", "/api/v1/auth/sign-in", Public, Some(Limit::SignIn)),
    route("POST", "/api/v1/auth/refresh", Public, Some(Limit::Token)),
    route("POST", "/api/v1/auth/password-reset", Public, Some(Limit::Recovery)),
    route("POST", "/api/v1/auth/password-reset/confirm", Public, Some(Limit::Verification)),
    route("POST", "/api/v1/auth/resend-verification", Public, Some(Limit::Recovery)),
    route("POST", "/api/v1/auth/verify-email", Public, Some(Limit::Verification)),
    route("POST", "/api/v1/auth/verify-phone", Public, Some(Limit::Verification)),
    route("POST", "/api/v1/auth/restore", Public, Some(Limit::Verification)),
    route("POST", "/api/v1/auth/sign-out", User, None),
    route("POST", "/api/v1/auth/sign-out-everywhere", User, None),
    route("GET", "/api/v1/auth/providers", Public, None),
    route("GET", "/api/v1/auth/providers/{provider}/authorize", Public, Some(Limit::SignIn)),
    route("GET", "/api/v1/auth/providers/{provider}/callback", Public, Some(Limit::SignIn)),
    route("GET", "/api/v1/me", User, None),
    route("PUT", "/api/v1/me/email", User, None),
    route("PUT", "/api/v1/me/phone", User, None),
    route("POST", "/api/v1/me/password", User, None),
    route("POST", "/api/v1/me/deletion", User, None),
    route("GET", "/api/v1/me/providers", User, None),
    route("POST", "/api/v1/me/providers/{provider}", User, None),
    route("DELETE", "/api/v1/me/providers/{provider}", User, None),
    route("GET", "/api/v1/me/consents", User, None),
    route("DELETE", "/api/v1/me/consents", User, None),
    route("DELETE", "/api/v1/me/consents/{client_id}", User, None),
    // The OAuth2 provider.
    route("GET", "/api/v1/oauth2/clients", User, None),
    route("POST", "/api/v1/oauth2/clients", User, None),
    route("GET", "/api/v1/oauth2/clients/{client_id}", User, None),
    route("PUT", "/api/v1/oauth2/clients/{client_id}", User, None),
    route("DELETE", "/api/v1/oauth2/clients/{client_id}", User, None),
    route("POST", "/api/v1/oauth2/clients/{client_id}/secret", User, None),
    route("GET", "/oauth2/authorize", Public, None),
    route("POST", "/oauth2/authorize", Public, Some(Limit::SignIn)),
    route("POST", "/oauth2/consent", Public, Some(Limit::SignIn)),
    route("POST", "/oauth2/token", Endpoint, Some(Limit::Token)),
    route("POST", "/oauth2/revoke", Endpoint, Some(Limit::Introspection)),
    route("POST", "/oauth2/introspect", Endpoint, Some(Limit::Introspection)),
    route("GET", "/oauth2/userinfo", Endpoint, None),
    route("POST", "/oauth2/userinfo", Endpoint, None),
    route("GET", "/oauth2/jwks", Public, None),
    route("GET", "/.well-known/openid-configuration", Public, None),
    route("GET", "/.well-known/oauth-authorization-server", Public, None),
    // Activity logs.
    route("POST", "/api/v1/activity-logs", Service { scope: ACTIVITY_WRITE }, None),
    route("POST", "/api/v1/activity-logs/batch", Service { scope: ACTIVITY_WRITE }, None),
    route("GET", "/api/v1/users/{userId}/activity-logs", SelfOrService { param: "userId", scope: ACTIVITY_READ }, None),
    // Waitlist campaigns.
    route("POST", "/api/v1/campaigns", Owner { scope: CAMPAIGNS_WRITE }, None),
    route("GET", "/api/v1/campaigns", Owner { scope: CAMPAIGNS_READ }, None),
    route("GET", "/api/v1/campaigns/{campaign_id}", Owner { scope: CAMPAIGNS_READ }, None),
    route("PATCH", "/api/v1/campaigns/{campaign_id}", Owner { scope: CAMPAIGNS_WRITE }, None),
    route("POST", "/api/v1/campaigns/{campaign_id}/webhook-secret", Owner { scope: CAMPAIGNS_WRITE }, None),
    route("GET", "/api/v1/campaigns/{campaign_id}/signups", Owner { scope: CAMPAIGNS_READ }, None),
    route("GET", "/api/v1/campaigns/{campaign_id}/signups/{participant_id}", Owner { scope: CAMPAIGNS_READ }, None),
    route("GET", "/api/v1/campaigns/{campaign_id}/public", Public, None),
    route("GET", "/api/v1/campaigns/{campaign_id}/leaderboard", Public, None),
    route("POST", "/api/v1/campaigns/{campaign_id}/signups", Public, Some(Limit::Signup)),
    route("POST", "/api/v1/campaigns/{campaign_id}/verify", Public, Some(Limit::Verification)),
    route("GET", "/api/v1/campaigns/{campaign_id}/me", Participant, None),
    // Platform administration.
    route("GET", "/api/v1/admin/oauth2/audit-log", Admin, None),
    // This document.
    route("GET", "/api/v1/openapi.json", Public, None),
];

/// The table's line for a request (`HEAD` is `GET`); `None` for a path no route matched.
fn route_of(method: &Method, pattern: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method == method)
}

/// Who is calling: resolved from the token by [`enforce`] for every route that is not public,
/// and kept in the request's extensions for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// A first-party session.
    User(SignedIn),
    /// A user's grant to a client (authorization code).
    Delegated {
        user_id: UserId,
        client_id: String,
        scopes: Vec<String>,
    },
    /// A client acting for itself (client credentials).
    Client {
        client_id: String,
        scopes: Vec<String>,
    },
    /// A waitlist participant.
    Participant {
        campaign_id: Uuid,
        participant_id: Uuid,
    },
}

impl Principal {
    fn has_scope(&self, scope: &str) -> bool {
        match self {
            Self::Delegated { scopes, .. } | Self::Client { scopes, .. } => {
                scopes.iter().any(|s| s == scope)
            }
            Self::User(_) | Self::Participant { .. } => false,
        }
    }

    /// The user the caller acts as: a signed-in user, or a user's grant to a client.
    pub(crate) fn user_id(&self) -> Option<UserId> {
        match self {
            Self::User(user) => Some(user.user_id),
            Self::Delegated { user_id, .. } => Some(*user_id),
            Self::Client { .. } | Self::Participant { .. } => None,
        }
    }

    /// A platform admin: a client credentials token with the `admin` scope.
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self, Self::Client { .. }) && self.has_scope(scopes::ADMIN)
    }
}

/// Whom a campaign route acts for: set by [`enforce`] on `Owner` routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignActor {
    /// A user: campaigns they create are theirs; they see only theirs.
    Owner(UserId),
    /// A platform admin: every campaign; the ones they create have no owner.
    Admin,
}

impl CampaignActor {
    /// Whether the actor may manage a campaign of `owner`: its owner, or an admin any.
    pub(crate) fn may_manage(self, owner: Option<UserId>) -> bool {
        match self {
            Self::Owner(user) => owner == Some(user),
            Self::Admin => true,
        }
    }

    /// The owner to filter by (`None`: everyone's) and to record on a new campaign.
    pub(crate) fn owner(self) -> Option<UserId> {
        match self {
            Self::Owner(user) => Some(user),
            Self::Admin => None,
        }
    }
}

fn from_extensions<T: Clone + 'static>(request: &HttpRequest) -> Result<T, ApiError> {
    request.extensions().get::<T>().cloned().ok_or_else(|| {
        ApiError::internal(format!(
            "{} is not established for {} (see access::ROUTES)",
            std::any::type_name::<T>(),
            request.path()
        ))
    })
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(from_extensions(request))
    }
}

impl FromRequest for CampaignActor {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(from_extensions(request))
    }
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "send an access token as `Authorization: Bearer <token>`",
    )
}

fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "the access token is unknown, expired or revoked",
    )
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn insufficient_scope(scope: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientScope,
        format!("the access token does not carry the scope {scope}"),
    )
}

/// The caller of a bearer token (the API's own tokens: sessions and OAuth2 grants).
pub(crate) async fn principal(
    request: &HttpRequest,
    accounts: &AccountsApi,
) -> Result<Principal, ApiError> {
    let token = bearer_token(request)?.ok_or_else(unauthenticated)?;
    let found = match accounts.users.get_access_token_by_hash(&token.hash()).await {
        Ok(found) => found,
        Err(RepoError::NotFound { .. }) => return Err(invalid_token()),
        Err(other) => return Err(other.into()),
    };
    match (
        found.client_id == FIRST_PARTY_CLIENT_ID,
        found.user_id,
        found.session_id,
    ) {
        (true, Some(user_id), Some(session_id)) => Ok(Principal::User(SignedIn {
            user_id,
            session_id,
        })),
        (false, Some(user_id), _) => Ok(Principal::Delegated {
            user_id,
            client_id: found.client_id,
            scopes: found.scopes,
        }),
        (false, None, _) => Ok(Principal::Client {
            client_id: found.client_id,
            scopes: found.scopes,
        }),
        _ => Err(invalid_token()),
    }
}

/// The value of path parameter `name` of `pattern` in `path`, the path as the router matched it
/// (percent-decoded but for `%`, `/` and `+`, which the handler's extractor decodes too: a value
/// holding them never equals an ID, so it is refused, never admitted).
fn path_parameter<'p>(pattern: &str, path: &'p str, name: &str) -> Option<&'p str> {
    let wanted = format!("{{{name}}}");
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(segment, _)| *segment == wanted)
        .map(|(_, value)| value)
}

/// What [`authorize`] found out, for the extensions.
struct Admitted {
    principal: Option<Principal>,
    actor: Option<CampaignActor>,
}

/// Checks the caller against the route's class; `path` is the path as the router matched it.
async fn authorize(request: &HttpRequest, route: &Route, path: &str) -> Result<Admitted, ApiError> {
    let admitted = |principal, actor| Admitted { principal, actor };
    let accounts = || -> Result<web::Data<AccountsApi>, ApiError> {
        request
            .app_data::<web::Data<AccountsApi>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("accounts are not configured"))
    };
    match route.access {
        Public | Endpoint => Ok(admitted(None, None)),
        User => match principal(request, accounts()?.get_ref()).await? {
            user @ Principal::User(_) => Ok(admitted(Some(user), None)),
            _ => Err(forbidden(
                "this route takes a signed-in user's token (from /api/v1/auth/sign-in)",
            )),
        },
        SelfOrService { param, scope } => {
            let caller = principal(request, accounts()?.get_ref()).await?;
            let named = path_parameter(route.path, path, param);
            let allowed = match &caller {
                Principal::User(user) => named == Some(user.user_id.to_string().as_str()),
                Principal::Client { .. } if caller.has_scope(scope) || caller.is_admin() => true,
                Principal::Client { .. } => return Err(insufficient_scope(scope)),
                Principal::Delegated { .. } | Principal::Participant { .. } => false,
            };
            if !allowed {
                return Err(forbidden(format!(
                    "only that user, or a service with the scope {scope}, may read this"
                )));
            }
            Ok(admitted(Some(caller), None))
        }
        Owner { scope } => {
            let accounts = accounts()?;
            let caller = principal(request, &accounts).await?;
            let actor = campaign_actor(&caller, scope, &accounts).await?;
            Ok(admitted(Some(caller), Some(actor)))
        }
        Service { scope } => match principal(request, accounts()?.get_ref()).await? {
            client @ Principal::Client { .. } if client.has_scope(scope) => {
                Ok(admitted(Some(client), None))
            }
            Principal::Client { .. } => Err(insufficient_scope(scope)),
            _ => Err(forbidden(format!(
                "this route takes a service's token: client credentials with the scope {scope}"
            ))),
        },
        Admin => match principal(request, accounts()?.get_ref()).await? {
            admin if admin.is_admin() => Ok(admitted(Some(admin), None)),
            Principal::Client { .. } => Err(insufficient_scope(scopes::ADMIN)),
            _ => Err(forbidden("this route is for platform admins")),
        },
        Participant => {
            let participant = participant(request, route, path)?;
            Ok(admitted(Some(participant), None))
        }
    }
}

/// Whom a caller acts for on campaigns needing `scope`.
async fn campaign_actor(
    caller: &Principal,
    scope: &str,
    accounts: &AccountsApi,
) -> Result<CampaignActor, ApiError> {
    // A write scope covers reading.
    let holds = |caller: &Principal| {
        caller.has_scope(scope) || (scope == CAMPAIGNS_READ && caller.has_scope(CAMPAIGNS_WRITE))
    };
    match caller {
        _ if caller.is_admin() => Ok(CampaignActor::Admin),
        Principal::User(user) => Ok(CampaignActor::Owner(user.user_id)),
        Principal::Delegated { user_id, .. } if holds(caller) => Ok(CampaignActor::Owner(*user_id)),
        Principal::Client { client_id, .. } if holds(caller) => {
            let client = accounts
                .users
                .get_oauth2_client_by_client_id(client_id)
                .await
                .map_err(|error| match error {
                    RepoError::NotFound { .. } => invalid_token(),
                    other => other.into(),
                })?;
            let owner = client.owner_user_id.ok_or_else(|| {
                forbidden(
                    "a client acts on campaigns for the user who registered it; this one has none",
                )
            })?;
            // A deleted account's clients act for nobody.
            if !accounts.users.user_exists_by_id(owner).await? {
                return Err(forbidden("the client's owner has no account any more"));
            }
            Ok(CampaignActor::Owner(owner))
        }
        Principal::Delegated { .. } | Principal::Client { .. } => Err(insufficient_scope(scope)),
        Principal::Participant { .. } => Err(forbidden("participants cannot manage campaigns")),
    }
}

/// The participant of a participant token for the campaign in the path.
fn participant(request: &HttpRequest, route: &Route, path: &str) -> Result<Principal, ApiError> {
    let token = bearer_credential(request)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "send your participant token as `Authorization: Bearer <token>`",
        )
    })?;
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "not a participant token of this campaign",
        )
    };
    let waitlist = request
        .app_data::<web::Data<WaitlistApi>>()
        .ok_or_else(|| ApiError::internal("the waitlist is not configured"))?;
    let campaign_id = path_parameter(route.path, path, "campaign_id")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(invalid)?;
    let participant_id = waitlist
        .participant_tokens
        .check(campaign_id, &token)
        .ok_or_else(invalid)?;
    Ok(Principal::Participant {
        campaign_id,
        participant_id,
    })
}

/// A rate limit: at most `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) limit: u32,
    pub(crate) window: Duration,
}

/// The quota of each [`Limit`] policy; `None` when it is off.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `RATE_LIMITS` | `on` | `off` turns every limit off (benchmarks, tests of other things) |
/// | `RATE_LIMIT_REGISTRATION` | `10/1m` | `register-sync` and `register-async`, per client IP |
/// | `RATE_LIMIT_SIGNUP` | `20/1m` | campaign signups, per client IP |
/// | `RATE_LIMIT_VERIFICATION` | `30/1m` | email, phone and campaign verification, reset confirmation, restore, per client IP |
/// | `RATE_LIMIT_SIGN_IN` | `20/1m` | sign-in, provider sign-in, the OAuth2 sign-in and consent forms, per client IP |
/// | `RATE_LIMIT_RECOVERY` | `10/1m` | password reset and verification resend requests, per client IP |
/// | `RATE_LIMIT_TOKEN` | `120/1m` | `/oauth2/token` and `/api/v1/auth/refresh`, per client IP |
/// | `RATE_LIMIT_INTROSPECTION` | `1200/1m` | `/oauth2/introspect` and `/oauth2/revoke`, per client IP |
///
/// Each is `<requests>/<window>` (`30/1m`, `5/10s`), or `off`.
#[derive(Debug, Clone)]
pub(crate) struct RateLimits {
    quotas: Vec<(Limit, Option<Quota>)>,
    /// The counts of this replica, for when PostgreSQL cannot be asked.
    local: std::sync::Arc<LocalWindows>,
}

/// Fixed windows counted in this process: the fallback when PostgreSQL cannot be asked (a
/// limit then holds per replica rather than across them). At most [`Self::MAX_KEYS`] keys:
/// past that, windows that have ended are dropped, and while none has, new keys share one
/// overflow count (never resetting the others).
#[derive(Debug, Default)]
struct LocalWindows(std::sync::Mutex<std::collections::HashMap<String, (Instant, u32)>>);

impl LocalWindows {
    const MAX_KEYS: usize = 100_000;
    const OVERFLOW: &str = "overflow";

    /// Counts a hit on `key`: the hits of its window so far, and the time left in it.
    fn hit(&self, key: &str, window: Duration) -> (u32, Duration) {
        let now = Instant::now();
        let mut windows = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = key;
        if windows.len() >= Self::MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, (started, _)| now.duration_since(*started) < window);
            if windows.len() >= Self::MAX_KEYS {
                key = Self::OVERFLOW;
            }
        }
        let (started, hits) = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*started) >= window {
            (*started, *hits) = (now, 0);
        }
        *hits = hits.saturating_add(1);
        (*hits, window.saturating_sub(now.duration_since(*started)))
    }
}

impl RateLimits {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let all_off = match env.string("RATE_LIMITS", "on").trim() {
            "on" => false,
            "off" => true,
            other => {
                return Err(ConfigError::Invalid {
                    name: "RATE_LIMITS".into(),
                    value: other.into(),
                    reason: "must be on or off".into(),
                });
            }
        };
        let quotas = Limit::ALL
            .into_iter()
            .map(|limit| {
                let name = format!("RATE_LIMIT_{}", limit.name().to_ascii_uppercase());
                let quota = match env.optional(&name) {
                    None => Some(limit.default_quota()),
                    Some(value) => parse_quota(&value).map_err(|reason| ConfigError::Invalid {
                        name: name.clone(),
                        value: value.clone(),
                        reason,
                    })?,
                };
                Ok((limit, quota.filter(|_| !all_off)))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            quotas,
            local: std::sync::Arc::default(),
        })
    }

    fn quota(&self, limit: Limit) -> Option<Quota> {
        self.quotas
            .iter()
            .find(|(l, _)| *l == limit)
            .and_then(|(_, q)| *q)
    }
}

fn parse_quota(value: &str) -> Result<Option<Quota>, String> {
    let value = value.trim();
    if value == "off" {
        return Ok(None);
    }
    let (limit, window) = value
        .split_once('/')
        .ok_or("must be <requests>/<window> (30/1m) or off")?;
    let limit: u32 = limit
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("the number of requests must be a positive integer")?;
    let window = humantime::parse_duration(window.trim()).map_err(|e| e.to_string())?;
    if window < Duration::from_secs(1) {
        return Err("the window must be at least 1s".into());
    }
    Ok(Some(Quota { limit, window }))
}

/// The state of a policy for the caller, for the `RateLimit` fields.
struct RateState {
    policy: Limit,
    quota: Quota,
    remaining: u32,
    reset_seconds: u32,
}

impl RateState {
    fn write(&self, headers: &mut HeaderMap) {
        let name = self.policy.name();
        let pairs = [
            (
                "ratelimit-policy",
                format!(
                    "\"{name}\";q={};w={}",
                    self.quota.limit,
                    self.quota.window.as_secs()
                ),
            ),
            (
                "ratelimit",
                format!("\"{name}\";r={};t={}", self.remaining, self.reset_seconds),
            ),
        ];
        for (field, value) in pairs {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(field), value);
            }
        }
    }
}

/// Counts the request against its route's policy, per client address; 429 past the quota.
async fn count(request: &HttpRequest, limit: Limit) -> Result<Option<RateState>, ApiError> {
    let Some(accounts) = request.app_data::<web::Data<AccountsApi>>() else {
        return Ok(None);
    };
    let ip = accounts
        .trusted_proxies
        .client_of(request)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let key = ip_key(&format!("rate:{}", limit.name()), &ip);
    count_key(accounts, limit, &key, "your address").await
}

/// Counts a public write against its policy once more, by the identifier it names (an email
/// address or a phone number, in canonical form), with the same quota as per address: one
/// identifier is not tried faster from many addresses. Only the identifier's SHA-256 is kept.
/// 429 with the `RateLimit` fields past the quota.
pub(crate) async fn count_identifier(
    request: &HttpRequest,
    limit: Limit,
    identifier: &str,
) -> Result<(), ApiError> {
    let Some(accounts) = request.app_data::<web::Data<AccountsApi>>() else {
        return Ok(());
    };
    let key = format!(
        "rate:{}:id:{}",
        limit.name(),
        domain::TokenHash::of(identifier).as_str()
    );
    count_key(accounts, limit, &key, "this identifier")
        .await
        .map(|_| ())
}

async fn count_key(
    accounts: &AccountsApi,
    limit: Limit,
    key: &str,
    whose: &str,
) -> Result<Option<RateState>, ApiError> {
    let Some(quota) = accounts.rate_limits.quota(limit) else {
        return Ok(None);
    };
    let (hits, reset_seconds) = match accounts.accounts.throttle_hit(key, quota.window).await {
        Ok(count) => (
            u32::try_from(count.hits.max(0)).unwrap_or(u32::MAX),
            seconds_until(count.window_ends_at),
        ),
        Err(error) => {
            // Without the database, this replica counts on its own: the limit still holds, per
            // replica (and the request fails on its own if it needs the database too).
            metrics::counter!("gateway_rate_limit_local_total").increment(1);
            tracing::warn!(%error, policy = limit.name(), "rate limit counted in this replica only");
            let (hits, left) = accounts.rate_limits.local.hit(key, quota.window);
            (
                hits,
                u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX),
            )
        }
    };
    let state = RateState {
        policy: limit,
        quota,
        remaining: quota.limit.saturating_sub(hits),
        reset_seconds,
    };
    if hits > quota.limit {
        metrics::counter!("gateway_rate_limited_total", "policy" => limit.name()).increment(1);
        let error = ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "too many requests of this kind for {whose}; try again in {} s",
                state.reset_seconds
            ),
        )
        .retry_after(state.reset_seconds);
        return Err(error.with_rate_limit(state.header_pairs()));
    }
    Ok(Some(state))
}

impl RateState {
    fn header_pairs(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = HeaderMap::new();
        self.write(&mut headers);
        headers.into_iter().collect()
    }
}

/// The middleware (`actix_web::middleware::from_fn`): rate limit, then access class, then the
/// handler, with the caller in the request's extensions.
pub(crate) async fn enforce(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The path as the router matches it: percent-decoded (but `%`, `/`, `+`), so that
    // `/api/v1/campaign%73` is the route `/api/v1/campaigns` here as it is there.
    let path = request.match_info().as_str().to_owned();
    let Some(pattern) = request.resource_map().match_pattern(&path) else {
        // No route: the 404 handler answers.
        return Ok(next.call(request).await?.map_into_left_body());
    };
    let route = match route_of(request.method(), &pattern) {
        Some(route) => route,
        // The HTML pages answer other methods with a page of their own.
        None if crate::oauth2::pages::PAGES
            .iter()
            .any(|(_, page)| *page == pattern) =>
        {
            return Ok(next.call(request).await?.map_into_left_body());
        }
        // A known path asked with a method the table does not list for it.
        None if ROUTES.iter().any(|r| r.path == pattern) => {
            let answer = method_not_allowed(request.request(), &pattern);
            return Ok(request.into_response(answer).map_into_right_body());
        }
        None => {
            let error = ApiError::internal(format!("the route {pattern} is not in access::ROUTES"));
            let answer = error.error_response();
            return Ok(request.into_response(answer).map_into_right_body());
        }
    };
    let state = match route.limit {
        Some(limit) => match count(request.request(), limit).await {
            Ok(state) => state,
            Err(error) if route.access == Endpoint => {
                let answer = oauth2_refusal(&error);
                return Ok(request.into_response(answer).map_into_right_body());
            }
            Err(error) => {
                let answer = error.error_response();
                return Ok(request.into_response(answer).map_into_right_body());
            }
        },
        None => None,
    };
    match authorize(request.request(), route, &path).await {
        Ok(admitted) => {
            if let Some(principal) = admitted.principal {
                request.extensions_mut().insert(principal);
            }
            if let Some(actor) = admitted.actor {
                request.extensions_mut().insert(actor);
            }
        }
        Err(error) => {
            let mut answer = error.error_response();
            if let Some(state) = &state {
                state.write(answer.headers_mut());
            }
            return Ok(request.into_response(answer).map_into_right_body());
        }
    }
    let mut response = next.call(request).await?;
    // A handler's own 429 (a per-identifier count, a sign-in lockout) is about another count
    // than this policy's: it keeps its own fields, or none.
    if let Some(state) = &state
        && response.status() != StatusCode::TOO_MANY_REQUESTS
    {
        state.write(response.headers_mut());
    }
    Ok(response.map_into_left_body())
}

/// A 429 of an OAuth2 endpoint, in RFC 6749's error shape (`temporarily_unavailable`) with the
/// API error's header fields (`Retry-After`, `RateLimit`).
fn oauth2_refusal(error: &ApiError) -> actix_web::HttpResponse {
    let mut answer = actix_web::HttpResponse::build(error.status())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(crate::oauth2::OAuthErrorBody {
            error: crate::oauth2::OAuthErrorCode::TemporarilyUnavailable,
            error_description: error.message.clone(),
        });
    let api_answer = error.error_response();
    for (name, value) in api_answer.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// 405 `method_not_allowed` with `Allow`: the methods the table lists for `pattern` (a `GET`
/// is also a `HEAD`).
fn method_not_allowed(request: &HttpRequest, pattern: &str) -> actix_web::HttpResponse {
    let mut methods: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.path == pattern)
        .map(|r| r.method)
        .collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    let mut answer = crate::errors::method_not_allowed(request).error_response();
    if let Ok(allow) = HeaderValue::try_from(methods.join(", ")) {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// Sets each documented operation's `security` and `x-access` from the table, adds its 401
/// and 403 answers, and the `RateLimit` fields and 429 of limited routes.
pub(crate) fn document_security(document: &mut Value) {
    let error_body =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let Some(route) = route_of(
                &Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET),
                path,
            ) else {
                continue;
            };
            let access = route.access;
            operation["x-access"] = json!(access.name());
            let security = match access {
                Public => Some(json!([])),
                Endpoint => None,
                User => Some(json!([{"bearer": []}])),
                SelfOrService { scope, .. } => Some(json!([
                    {"bearer": []},
                    {"oauth2": [scope]},
                    {"oauth2": [scopes::ADMIN]}
                ])),
                Owner { scope } => {
                    let mut options = vec![json!({"bearer": []}), json!({"oauth2": [scope]})];
                    if scope == CAMPAIGNS_READ {
                        options.push(json!({"oauth2": [CAMPAIGNS_WRITE]}));
                    }
                    options.push(json!({"oauth2": [scopes::ADMIN]}));
                    Some(Value::Array(options))
                }
                Service { scope } => Some(json!([{"oauth2": [scope]}])),
                Admin => Some(json!([{"oauth2": [scopes::ADMIN]}])),
                Participant => Some(json!([{"participantToken": []}])),
            };
            if let Some(security) = security {
                operation["security"] = security;
            }
            let responses = &mut operation["responses"];
            if !matches!(access, Public | Endpoint) {
                responses["401"] = json!({
                    "description": "No token (`unauthenticated`), or one that is unknown, expired or revoked (`invalid_token`)",
                    "headers": {"WWW-Authenticate": {"description": "`Bearer`, with `error` (RFC 6750)", "schema": {"type": "string"}}},
                    "content": error_body,
                });
                responses["403"] = json!({
                    "description": "A token of the wrong kind, user or owner (`forbidden`), or without the scope (`insufficient_scope`)",
                    "content": error_body,
                });
            }
            if let Some(limit) = route.limit {
                let fields = json!({
                    "RateLimit-Policy": {"description": format!("`\"{}\";q=<requests>;w=<seconds>` (draft-ietf-httpapi-ratelimit-headers)", limit.name()), "schema": {"type": "string"}},
                    "RateLimit": {"description": "`\"<policy>\";r=<remaining>;t=<seconds until the window ends>`", "schema": {"type": "string"}},
                });
                if let Some(answers) = responses.as_object_mut() {
                    for (status, answer) in answers.iter_mut() {
                        if status.starts_with('2') {
                            for (name, field) in fields.as_object().into_iter().flatten() {
                                answer["headers"][name] = field.clone();
                            }
                        }
                    }
                }
                let mut throttled = fields.clone();
                throttled["Retry-After"] = json!({"description": "Seconds until the window ends", "schema": {"type": "integer", "minimum": 0}});
                let over = format!(
                    "Over the `{}` rate limit of the caller's address (`{}`)",
                    limit.name(),
                    if access == Endpoint {
                        "temporarily_unavailable"
                    } else {
                        "too_many_requests"
                    }
                );
                let answer = &mut responses["429"];
                answer["description"] = match answer["description"].as_str() {
                    Some(own) => json!(format!("{own}; or {over}")),
                    None => json!(over),
                };
                answer["headers"] = throttled;
                answer["content"] = if access == Endpoint {
                    json!({"application/json": {"schema": {"$ref": "#/components/schemas/OAuthErrorBody"}}})
                } else {
                    error_body.clone()
                };
            }
        }
    }
}

/// The security schemes the table refers to.
pub(crate) fn security_schemes() -> Value {
    let scopes = json!({
        CAMPAIGNS_READ: "Read your campaigns and their participants",
        CAMPAIGNS_WRITE: "Create, change and pause your campaigns",
        ACTIVITY_WRITE: "Publish user activity events (services)",
        ACTIVITY_READ: "Read any user's activity log (services)",
        REGISTRATIONS_BULK: "Register users in bulk (services)",
        scopes::ADMIN: "Platform administration",
    });
    json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A signed-in user's access token (`/api/v1/auth/sign-in`), as `Authorization: Bearer <token>`",
        },
        "oauth2": {
            "type": "oauth2",
            "description": "An access token of this provider: a user's grant to a client, or a client's own (client credentials; the service scopes and `admin` are given only by `platform-admin create-client`)",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth2/authorize",
                    "tokenUrl": "/oauth2/token",
                    "refreshUrl": "/oauth2/token",
                    "scopes": {
                        CAMPAIGNS_READ: "Read your campaigns and their participants",
                        CAMPAIGNS_WRITE: "Create, change and pause your campaigns",
                    },
                },
                "clientCredentials": {"tokenUrl": "/oauth2/token", "scopes": scopes},
            },
        },
        "participantToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "A participant token (`participant_token` of the signup answer and the verification email), as `Authorization: Bearer <token>`",
        },
    })
}

/// The `WWW-Authenticate` challenge of an error code (RFC 6750 section 3): `Bearer` for a
/// missing token, with `error="invalid_token"` for a refused one and
/// `error="insufficient_scope"` for a 403 of a token without the route's scope.
pub(crate) fn www_authenticate(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials => Some("Bearer"),
        ErrorCode::InvalidToken => Some("Bearer error=\"invalid_token\""),
        ErrorCode::InsufficientScope => Some("Bearer error=\"insufficient_scope\""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;

    use super::*;

    #[test]
    fn every_documented_operation_and_page_is_in_the_table_and_back() {
        let document = crate::openapi::document();
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|m| (m.to_ascii_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        documented.extend(
            crate::oauth2::pages::PAGES
                .iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
        );
        documented.sort();
        let mut table: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        table.sort();
        assert_eq!(
            documented, table,
            "the route table and the served routes differ"
        );
        let mut unique = table.clone();
        unique.dedup();
        assert_eq!(unique.len(), table.len(), "a route is in the table twice");
    }

    #[test]
    fn every_non_public_operation_documents_its_security_and_refusals() {
        let document = crate::openapi::document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let access = operation["x-access"].as_str().unwrap_or_else(|| {
                    panic!("{method} {path} has no x-access");
                });
                if !["public", "oauth2-endpoint"].contains(&access) {
                    assert!(
                        operation["security"]
                            .as_array()
                            .is_some_and(|s| !s.is_empty())
                    );
                    assert!(operation["responses"]["401"].is_object(), "{method} {path}");
                    assert!(operation["responses"]["403"].is_object(), "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_quota("30/1m"),
            Ok(Some(Quota {
                limit: 30,
                window: Duration::from_secs(60)
            }))
        );
        assert_eq!(parse_quota(" off "), Ok(None));
        for bad in ["30", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(parse_quota(bad).is_err(), "{bad}");
        }
        let env = Env::from_pairs([("RATE_LIMIT_SIGNUP", "3/10s"), ("RATE_LIMIT_TOKEN", "off")]);
        let limits = RateLimits::from_env(&env).unwrap();
        assert_eq!(
            limits.quota(Limit::Signup),
            Some(Quota {
                limit: 3,
                window: Duration::from_secs(10)
            })
        );
        assert_eq!(limits.quota(Limit::Token), None);
        assert_eq!(
            limits.quota(Limit::SignIn),
            Some(Limit::SignIn.default_quota())
        );
        let off = RateLimits::from_env(&Env::from_pairs([("RATE_LIMITS", "off")])).unwrap();
        assert!(Limit::ALL.iter().all(|l| off.quota(*l).is_none()));
    }

    #[test]
    fn local_windows_count_and_start_over() {
        let windows = LocalWindows::default();
        let window = Duration::from_millis(50);
        assert_eq!(windows.hit("a", window).0, 1);
        assert_eq!(windows.hit("a", window).0, 2);
        assert_eq!(windows.hit("b", window).0, 1, "keys are counted apart");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(windows.hit("a", window).0, 1, "a new window starts over");
    }

    #[test]
    fn path_parameters_are_read_as_the_router_reads_them() {
        let pattern = "/api/v1/users/{userId}/activity-logs";
        let routed = |raw: &'static str| {
            actix_web::dev::Url::new(actix_web::http::Uri::from_static(raw))
                .path()
                .to_owned()
        };
        for raw in [
            "/api/v1/users/42/activity-logs",
            "/api/v1/users/%34%32/activity-logs",
        ] {
            assert_eq!(
                path_parameter(pattern, &routed(raw), "userId"),
                Some("42"),
                "{raw}: the ID the handler gets"
            );
        }
        // What stays encoded for the router (`%`, `/`, `+`) never equals an ID.
        assert_eq!(
            path_parameter(
                pattern,
                &routed("/api/v1/users/4%2B2/activity-logs"),
                "userId"
            ),
            Some("4%2B2")
        );
        assert_eq!(
            path_parameter(pattern, "/api/v1/users/42/activity-logs", "x"),
            None
        );
    }

    #[test]
    fn no_two_routes_of_the_table_overlap() {
        // The middleware finds a route by its path alone (method guards aside); that it finds
        // the router's holds as long as no path of one pattern matches another pattern.
        let sample = |pattern: &str| pattern.replace(['{', '}'], "x");
        for a in ROUTES {
            for b in ROUTES.iter().filter(|b| b.path != a.path) {
                let def = actix_web::dev::ResourceDef::new(b.path);
                assert!(
                    !def.is_match(&sample(a.path)),
                    "{} is matched by {}",
                    a.path,
                    b.path
                );
            }
        }
    }

    #[test]
    fn local_windows_never_reset_others_when_full() {
        let windows = LocalWindows::default();
        let window = Duration::from_secs(60);
        for i in 0..LocalWindows::MAX_KEYS {
            windows.hit(&i.to_string(), window);
        }
        assert_eq!(windows.hit("0", window).0, 2, "kept");
        assert_eq!(windows.hit("new", window).0, 1);
        assert_eq!(
            windows.hit("newer", window).0,
            2,
            "new keys share the overflow count"
        );
    }

    #[test]
    fn the_status_of_each_refusal() {
        assert_eq!(forbidden("x").status(), StatusCode::FORBIDDEN);
        assert_eq!(insufficient_scope("x").status(), StatusCode::FORBIDDEN);
        assert_eq!(unauthenticated().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(invalid_token().status(), StatusCode::UNAUTHORIZED);
    }
}
