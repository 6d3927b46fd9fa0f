//! Accounts: sign-in, sessions, verification, recovery, identifier changes and deletion, on
//! the `UserRepository` and `repo::Accounts`. The HTTP side is in `routes`; the rules are here.
//!
//! - **Sessions.** A sign-in starts a session and issues an access token (`ACCESS_TOKEN_TTL`)
//!   and a refresh token (`REFRESH_TOKEN_TTL`, never past the session's `SESSION_MAX_AGE`),
//!   both 32 random bytes stored only as SHA-256 hashes (the repository's OAuth2 token tables,
//!   client `first-party`, tagged with the session). A refresh rotates: the old refresh token is
//!   revoked in the statement that redeems it; presenting it again revokes the whole session
//!   and is recorded as a security event (OAuth2 audit log, `refresh_token_reuse`).
//! - **Sign-in** runs Argon2id on the bounded hashing pool; an unknown identifier is checked
//!   against a decoy hash, so it costs what a wrong password costs, and gets the same answer.
//!   Only after the password matches does the answer say that the account is deleted,
//!   suspended, unverified (when `SIGN_IN_REQUIRES_VERIFIED`) or must reset its password.
//! - **Throttling.** Sign-in attempts count per identifier (`SIGN_IN_MAX_FAILURES`) and per
//!   client IP (`SIGN_IN_MAX_FAILURES_PER_IP`, an IPv6 client by its /64) in a
//!   `SIGN_IN_FAILURE_WINDOW`; each attempt is counted before its password is checked, so a
//!   concurrent burst gets no more checks than the limit, and a success takes its count back
//!   (the identifier's count is cleared). Past either limit: 429 with `Retry-After` until the
//!   window ends, without checking the password. Wrong passwords given to a change (password,
//!   email, phone, deletion) count per user the same way. Emails and texts a caller can trigger
//!   (verification resends, password resets, email changes) are limited per identifier
//!   (`ACCOUNT_MESSAGES_PER_WINDOW`) and per client IP (`ACCOUNT_MESSAGES_PER_IP`) per
//!   `ACCOUNT_MESSAGE_WINDOW`, phone-code attempts to `PHONE_CODE_MAX_FAILURES` per number. The
//!   counters live in PostgreSQL (`auth_throttle`, identifiers hashed), so they hold across
//!   replicas. A password reset clears its address's sign-in count.
//! - **Races.** A sign-in re-reads the account after writing its session: a password reset,
//!   deletion or suspension that ran meanwhile ends the new session. A refresh checks its
//!   session again after writing the new tokens.
//! - **Email changes** wait for the new address: `PUT /me/email` mails it a link, and following
//!   the link makes the change, so neither a stolen session nor a typo takes the account's
//!   address (and its password recovery) elsewhere.
//! - **Events.** Every sign-in attempt publishes a `login` or `login_failed` activity event
//!   (IP, user agent, session) to `user-activity-logs`; a sign-in `user.logged_in` to
//!   `user-events`, a refresh `user.token_refreshed` to `auth-events`, a sign-out
//!   `user.logged_out`. What needs an email or a text (`user.verification_requested`,
//!   `user.password_reset_requested`, `user.password_changed`, `user.email_change_requested`,
//!   `user.identifier_changed`, `user.deleted`) goes to `user-events` for the email-worker,
//!   which issues the tokens: no secret is ever on a topic. A failed sign-in on a wrong
//!   password is filed under `anonymous` whether or not the address has an account.

mod bearer;
pub(crate) mod routes;

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::accounts::{SecretToken, TokenPurpose};
use domain::{Identifier, OAuth2AccessToken, OAuth2RefreshToken, TokenHash, UserId};
use events::{EventBuilder, EventPayload, Producer};
use repo::accounts::FIRST_PARTY_CLIENT_ID;
use repo::{Accounts, PgUserRepository, UserRepository as _};
use serde_json::{Map, Value, json};
use service_runtime::{ConfigError, Env};
use tracing::Instrument as _;
use uuid::Uuid;

pub(crate) use bearer::{SignedIn, bearer_credential, bearer_token};

use crate::activity::ActivityApi;
use crate::client_ip::TrustedProxies;
use crate::errors::{ApiError, ErrorCode};
use crate::hashing::{HashError, PasswordHasher};
use crate::registration::validation::PasswordRules;

/// The variables of accounts:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `ACCESS_TOKEN_TTL` | `15m` | life of an access token |
/// | `REFRESH_TOKEN_TTL` | `30d` | life of a refresh token (each refresh issues a new one) |
/// | `SESSION_MAX_AGE` | `90d` | no refresh extends a session past this after its sign-in |
/// | `SIGN_IN_REQUIRES_VERIFIED` | `false` | refuse sign-in (403 `identifier_not_verified`) with an email or phone not verified yet |
/// | `SIGN_IN_MAX_FAILURES` | `5` | failed sign-ins per identifier per window before 429 (also: wrong passwords per signed-in user when a change asks for it) |
/// | `SIGN_IN_MAX_FAILURES_PER_IP` | `50` | failed sign-ins per client IP (an IPv6 client by its /64) per window before 429 |
/// | `SIGN_IN_FAILURE_WINDOW` | `15m` | the window of both counts |
/// | `PHONE_CODE_MAX_FAILURES` | `5` | wrong codes per phone number per window before 429 |
/// | `ACCOUNT_MESSAGES_PER_WINDOW` | `3` | verification resends, password resets and email or phone changes per identifier per window, and email or phone changes per account |
/// | `ACCOUNT_MESSAGES_PER_IP` | `20` | the same, per client IP (an IPv6 client by its /64) |
/// | `ACCOUNT_MESSAGE_WINDOW` | `15m` | the window of that limit |
/// | `PASSWORD_HISTORY` | `5` | a new password may not be the current one nor one of this many before |
/// | `ACCOUNT_DELETION_GRACE` | `30d` | how long a deleted account can be restored; then `platform-admin purge-accounts` deletes it for good |
/// | `USER_EVENTS_TOPIC` | `user-events` | where `user.logged_in`, `user.logged_out`, `user.registered` (of `register-sync`) and the account events go |
/// | `AUTH_EVENTS_TOPIC` | `auth-events` | where `user.token_refreshed` goes |
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountsConfig {
    pub(crate) access_token_ttl: Duration,
    pub(crate) refresh_token_ttl: Duration,
    pub(crate) session_max_age: Duration,
    pub(crate) require_verified: bool,
    pub(crate) max_failures_per_identifier: i32,
    pub(crate) max_failures_per_ip: i32,
    pub(crate) failure_window: Duration,
    pub(crate) phone_code_max_failures: i32,
    pub(crate) messages_per_window: i32,
    pub(crate) messages_per_ip: i32,
    pub(crate) message_window: Duration,
    pub(crate) password_history: i64,
    pub(crate) deletion_grace: Duration,
    pub(crate) user_events_topic: String,
    pub(crate) auth_events_topic: String,
}

const DAY: u64 = 24 * 3600;

impl AccountsConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let positive = |name: &str, default: i32| -> Result<i32, ConfigError> {
            Ok(env.parse(name, default)?.max(1))
        };
        Ok(Self {
            access_token_ttl: env.duration("ACCESS_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            refresh_token_ttl: env.duration("REFRESH_TOKEN_TTL", Duration::from_secs(30 * DAY))?,
            session_max_age: env.duration("SESSION_MAX_AGE", Duration::from_secs(90 * DAY))?,
            require_verified: env.parse("SIGN_IN_REQUIRES_VERIFIED", false)?,
            max_failures_per_identifier: positive("SIGN_IN_MAX_FAILURES", 5)?,
            max_failures_per_ip: positive("SIGN_IN_MAX_FAILURES_PER_IP", 50)?,
            failure_window: env.duration("SIGN_IN_FAILURE_WINDOW", Duration::from_secs(15 * 60))?,
            phone_code_max_failures: positive("PHONE_CODE_MAX_FAILURES", 5)?,
            messages_per_window: positive("ACCOUNT_MESSAGES_PER_WINDOW", 3)?,
            messages_per_ip: positive("ACCOUNT_MESSAGES_PER_IP", 20)?,
            message_window: env.duration("ACCOUNT_MESSAGE_WINDOW", Duration::from_secs(15 * 60))?,
            password_history: i64::from(positive("PASSWORD_HISTORY", 5)?),
            deletion_grace: env
                .duration("ACCOUNT_DELETION_GRACE", Duration::from_secs(30 * DAY))?,
            user_events_topic: env.string("USER_EVENTS_TOPIC", "user-events"),
            auth_events_topic: env.string("AUTH_EVENTS_TOPIC", "auth-events"),
        })
    }

    /// Routes the account event types to their configured topics.
    pub(crate) fn route_events(&self, router: &events::routing::TopicRouter) {
        for event_type in events::routing::types_routed_to("user-events") {
            router.set_topic_mapping(event_type, &self.user_events_topic);
        }
        for event_type in events::routing::types_routed_to("auth-events") {
            router.set_topic_mapping(event_type, &self.auth_events_topic);
        }
    }
}

/// What the account endpoints work with.
#[derive(Debug, Clone)]
pub(crate) struct AccountsApi {
    pub(crate) users: PgUserRepository,
    pub(crate) accounts: Accounts,
    /// The registration's pool: sign-ins and registrations share its bound.
    pub(crate) hasher: PasswordHasher,
    /// Checked when the identifier is unknown, so that costs a verification too.
    pub(crate) decoy_hash: String,
    pub(crate) password_rules: PasswordRules,
    pub(crate) producer: Producer,
    pub(crate) events: EventBuilder,
    pub(crate) activity: ActivityApi,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) config: AccountsConfig,
    /// The routes' rate limits (`access`), counted in the same table as the throttles here.
    pub(crate) rate_limits: crate::access::RateLimits,
}

/// Who is asking, for events and sessions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// The tokens of a sign-in or a refresh (RFC 6749 section 5.1 names).
#[derive(Debug)]
pub(crate) struct IssuedTokens {
    pub(crate) access_token: SecretToken,
    pub(crate) expires_in: u64,
    /// `None` when the grant has no refresh tokens.
    pub(crate) refresh_token: Option<SecretToken>,
    pub(crate) refresh_token_expires_in: u64,
    pub(crate) session_id: Uuid,
    pub(crate) user_id: UserId,
}

/// A user whose password matched, and whose account may sign in.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) user: domain::User,
    /// The hash that matched: a sign-in racing a password change notices the change. `None`
    /// for a sign-in through another provider.
    password_hash: Option<String>,
    /// `password`, or the name of the provider that vouched for the user.
    method: String,
    /// When the password was checked (OpenID Connect's `auth_time`).
    pub(crate) at: DateTime<Utc>,
}

impl Authenticated {
    /// A fingerprint of the password that signed in (SHA-256 of its hash): a later check that
    /// the same password is still current. `None` for a sign-in through another provider.
    pub(crate) fn credential_fingerprint(&self) -> Option<String> {
        self.password_hash
            .as_deref()
            .map(|hash| TokenHash::of(hash).as_str().to_owned())
    }

    /// A user another provider vouched for (the provider's name is the sign-in's method).
    pub(crate) fn through_provider(user: domain::User, provider: &str) -> Self {
        Self {
            user,
            password_hash: None,
            method: provider.to_owned(),
            at: Utc::now(),
        }
    }
}

/// What tokens are issued for: a first-party session, or a grant to an OAuth2 client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) user_id: UserId,
    pub(crate) session_id: Uuid,
    /// No token outlives this.
    pub(crate) session_ends: DateTime<Utc>,
    pub(crate) scopes: &'a [String],
    /// Whether a refresh token is issued too.
    pub(crate) refresh: bool,
}

/// A refresh token redeemed, whose session and account are live.
#[derive(Debug, Clone)]
pub(crate) struct Redeemed {
    pub(crate) user_id: UserId,
    pub(crate) session: repo::accounts::Session,
    /// The scopes the redeemed token carried.
    pub(crate) scopes: Vec<String>,
}

/// The throttle key of an identifier: a hash, so the table holds no addresses.
fn identifier_key(kind: &str, identifier: &Identifier) -> String {
    let text = match identifier {
        Identifier::Email(email) => email.as_str().to_owned(),
        Identifier::Phone(phone) => phone.as_str().to_owned(),
    };
    format!("{kind}:{}", TokenHash::of(&text).as_str())
}

pub(crate) fn seconds_until(at: DateTime<Utc>) -> u32 {
    u32::try_from((at - Utc::now()).num_seconds().max(1)).unwrap_or(u32::MAX)
}

fn too_many(retry_after: u32, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TooManyRequests,
        format!("too many {what}; try again in {retry_after} s"),
    )
    .retry_after(retry_after)
}

pub(crate) fn hash_error(error: HashError) -> ApiError {
    match error {
        HashError::Busy => ApiError::new(
            ErrorCode::Busy,
            "too many passwords are being checked; try again shortly",
        )
        .retry_after(1),
        HashError::Failed(reason) => ApiError::internal(reason),
    }
}

impl AccountsApi {
    pub(crate) fn caller(&self, request: &actix_web::HttpRequest) -> Caller {
        Caller {
            ip: self
                .trusted_proxies
                .client_of(request)
                .map(|ip| ip.to_string()),
            user_agent: request
                .headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(512).collect()),
        }
    }

    /// Whether `password` matches any of `hashes`, on the bounded pool.
    pub(crate) async fn password_matches(
        &self,
        password: &str,
        hashes: Vec<String>,
    ) -> Result<bool, ApiError> {
        self.hasher
            .verify_any(password.to_owned(), hashes)
            .await
            .map_err(hash_error)
    }

    /// Counts an attempt on each key, in order, before it runs (so concurrent attempts cannot
    /// all pass a check made before any of them was counted); 429 at the first key past its
    /// limit, whose later keys are not counted: list the caller's IP first, so an IP over its
    /// limit adds nothing to the count of the addresses it tries.
    async fn count_attempt(
        &self,
        keys: &[(&str, i32)],
        window: Duration,
        what: &str,
    ) -> Result<(), ApiError> {
        for (key, limit) in keys {
            let count = self.accounts.throttle_hit(key, window).await?;
            if count.hits > *limit {
                metrics::counter!("gateway_throttled_total", "what" => what.to_owned())
                    .increment(1);
                return Err(too_many(seconds_until(count.window_ends_at), what));
            }
        }
        Ok(())
    }

    /// Takes back the hits of an attempt that did not fail on its password (a full hashing
    /// pool, an unreachable database, a refusal after the right password). Best effort.
    async fn uncount(&self, keys: &[&str]) {
        for key in keys {
            if let Err(error) = self.accounts.throttle_release(key).await {
                tracing::warn!(%error, "could not take back a throttle hit");
            }
        }
    }

    /// Counts a message asked for `identifier` (and from the caller's IP, and by the signed-in
    /// user when there is one); 429 past any limit. Counted whether or not the identifier belongs to anyone, so the answer says
    /// nothing about that.
    pub(crate) async fn count_message(
        &self,
        identifier: &Identifier,
        caller: &Caller,
        signed_in: Option<UserId>,
    ) -> Result<(), ApiError> {
        let id_key = identifier_key("message", identifier);
        let ip_key = caller.ip.as_deref().map(|ip| ip_key("message_ip", ip));
        let user_key = signed_in.map(|user| format!("message_user:{user}"));
        let mut keys = Vec::new();
        if let Some(ip_key) = &ip_key {
            keys.push((ip_key.as_str(), self.config.messages_per_ip));
        }
        // A signed-in change (of email or phone) is also counted per account: changing to a new
        // address each time must not make every message a first one.
        if let Some(user_key) = &user_key {
            keys.push((user_key.as_str(), self.config.messages_per_window));
        }
        keys.push((id_key.as_str(), self.config.messages_per_window));
        self.count_attempt(&keys, self.config.message_window, "messages asked")
            .await
    }

    /// Counts a phone-code attempt for the number; 429 past `PHONE_CODE_MAX_FAILURES`. A right
    /// code clears the count ([`Self::code_accepted`]).
    pub(crate) async fn count_code_attempt(&self, identifier: &Identifier) -> Result<(), ApiError> {
        let key = identifier_key("phone_code", identifier);
        self.count_attempt(
            &[(key.as_str(), self.config.phone_code_max_failures)],
            self.config.failure_window,
            "wrong codes",
        )
        .await
    }

    pub(crate) async fn code_accepted(&self, identifier: &Identifier) -> Result<(), ApiError> {
        self.accounts
            .throttle_clear(&identifier_key("phone_code", identifier))
            .await?;
        Ok(())
    }

    /// Signs in with an identifier and a password: a first-party session and its tokens.
    pub(crate) async fn sign_in(
        &self,
        identifier: &Identifier,
        password: &str,
        caller: &Caller,
    ) -> Result<IssuedTokens, ApiError> {
        let who = self.authenticate(identifier, password, caller).await?;
        self.start_session(who, caller).await
    }

    /// Checks an identifier and a password, counted and throttled like every sign-in (the
    /// consent page's sign-in form uses it too); the account, when they match and its state
    /// lets it sign in.
    pub(crate) async fn authenticate(
        &self,
        identifier: &Identifier,
        password: &str,
        caller: &Caller,
    ) -> Result<Authenticated, ApiError> {
        let id_key = identifier_key("sign_in", identifier);
        let ip_key = caller.ip.as_deref().map(|ip| ip_key("sign_in_ip", ip));
        let mut keys = Vec::new();
        if let Some(ip_key) = &ip_key {
            keys.push((ip_key.as_str(), self.config.max_failures_per_ip));
        }
        keys.push((id_key.as_str(), self.config.max_failures_per_identifier));
        if let Err(refused) = self
            .count_attempt(&keys, self.config.failure_window, "failed sign-ins")
            .await
        {
            self.attempt_failed(None, caller, "throttled");
            return Err(refused);
        }
        let outcome = self.check_password(identifier, password, caller).await;
        match &outcome {
            // A wrong password (or an account changed under the sign-in) stays counted.
            Err(error) if error.code == ErrorCode::InvalidCredentials => {}
            // Signed in: the address's failures are forgotten, the IP's attempt taken back.
            Ok(_) => {
                self.accounts.throttle_clear(&id_key).await?;
                if let Some(ip_key) = &ip_key {
                    self.uncount(&[ip_key]).await;
                }
            }
            // Not a guess that failed: a full pool, a database error, or the right password
            // refused for the account's state.
            Err(_) => {
                let mut taken_back = vec![id_key.as_str()];
                taken_back.extend(ip_key.as_deref());
                self.uncount(&taken_back).await;
            }
        }
        outcome
    }

    /// The checks of a sign-in that was counted.
    async fn check_password(
        &self,
        identifier: &Identifier,
        password: &str,
        caller: &Caller,
    ) -> Result<Authenticated, ApiError> {
        // Both look-ups every time, so an unknown identifier does the same work as a known one.
        let (found, deleted) = futures::join!(
            self.users.get_user_by_identifier(identifier),
            self.accounts.deleted_account(identifier)
        );
        let found = match found {
            Ok(found) => Some(found),
            Err(repo::RepoError::NotFound { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        let deleted = deleted?;
        let live = found.and_then(|found| found.credential.map(|c| (found.user, c)));
        let Some((user, credential)) = live else {
            // Unknown (or without a password): a deleted account's password still tells the
            // owner what happened; anyone else gets what a wrong password gets, in as long.
            let hash = deleted
                .as_ref()
                .map_or_else(|| self.decoy_hash.clone(), |d| d.password_hash.clone());
            let matched = self.password_matches(password, vec![hash]).await;
            let matched = self.on_busy(matched, caller)?;
            return Err(match deleted {
                Some(account) if matched => {
                    self.attempt_failed(Some(account.user_id), caller, "account_deleted");
                    ApiError::new(
                        ErrorCode::AccountDeleted,
                        "the account was deleted; restore it through the link mailed at deletion",
                    )
                }
                _ => {
                    self.attempt_failed(None, caller, "invalid_credentials");
                    invalid_credentials()
                }
            });
        };
        let matched = self
            .password_matches(password, vec![credential.password_hash.clone()])
            .await;
        if !self.on_busy(matched, caller)? {
            // Filed like an unknown identifier's: which failures land under a user must not
            // tell whether an address has an account.
            self.attempt_failed(None, caller, "invalid_credentials");
            return Err(invalid_credentials());
        }
        let refusal = if credential.invalidated_at.is_some() {
            Some((
                ErrorCode::PasswordResetRequired,
                "this password no longer signs in; set a new one through a password reset",
            ))
        } else if user.status == domain::UserStatus::Suspended {
            Some((ErrorCode::AccountSuspended, "the account is suspended"))
        } else if self.config.require_verified
            && !match identifier {
                Identifier::Email(_) => user.is_email_verified,
                Identifier::Phone(_) => user.is_phone_verified,
            }
        {
            Some((
                ErrorCode::IdentifierNotVerified,
                "verify this email or phone first; a new message can be asked for",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.attempt_failed(Some(user.id), caller, &code.as_str());
            return Err(ApiError::new(code, message));
        }

        Ok(Authenticated {
            password_hash: Some(credential.password_hash),
            method: "password".into(),
            user,
            at: Utc::now(),
        })
    }

    /// The first-party session of an authenticated user, and its first tokens.
    pub(crate) async fn start_session(
        &self,
        who: Authenticated,
        caller: &Caller,
    ) -> Result<IssuedTokens, ApiError> {
        let Authenticated {
            user,
            password_hash,
            method,
            ..
        } = who;
        let session_id = Uuid::now_v7();
        let session_ends = Utc::now()
            + chrono::Duration::from_std(self.config.session_max_age).unwrap_or_default();
        self.accounts
            .start_session(&repo::accounts::NewSession {
                id: session_id,
                user_id: user.id,
                client_id: FIRST_PARTY_CLIENT_ID.into(),
                created_at: Utc::now(),
                ip_address: caller.ip.clone(),
                user_agent: caller.user_agent.clone(),
                expires_at: session_ends,
            })
            .await?;
        let tokens = self
            .issue(&Grant {
                client_id: FIRST_PARTY_CLIENT_ID,
                user_id: user.id,
                session_id,
                session_ends,
                scopes: &[],
                refresh: true,
            })
            .await?;
        // A password reset, a deletion or a suspension may have run while the password was
        // being checked. Whatever ran before this read finds the session and ends it; whatever
        // this read sees ends it here.
        let (now, credentials) = match self.users.get_user_with_credentials(user.id).await {
            Ok(found) => found,
            Err(repo::RepoError::NotFound { .. }) => (user.clone(), Vec::new()),
            Err(other) => return Err(other.into()),
        };
        let unchanged = now.deleted_at.is_none()
            && now.status != domain::UserStatus::Suspended
            && password_hash.as_ref().is_none_or(|hash| {
                credentials
                    .iter()
                    .any(|c| c.password_hash == *hash && c.invalidated_at.is_none())
            });
        if !unchanged {
            self.accounts
                .revoke_session(session_id, "changed_during_sign_in")
                .await?;
            self.attempt_failed(Some(user.id), caller, "changed_during_sign_in");
            return Err(invalid_credentials());
        }
        metrics::counter!("gateway_sign_ins_total", "outcome" => "success").increment(1);
        self.record_activity(Some(user.id), "login", caller, Some(session_id), None);
        self.publish(events::envelope::UserLoggedIn {
            user_id: user.id.to_string(),
            email: user
                .email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
            ip_address: caller.ip.clone(),
            user_agent: caller.user_agent.clone(),
            login_time: Utc::now(),
            session_id: session_id.to_string(),
            remember_me: false,
            login_method: method,
            device_info: None,
            location: None,
        });
        Ok(tokens)
    }

    /// Forgets the failed sign-ins counted against an identifier (its owner proved control of
    /// it), so a lock-out by someone else's guesses ends.
    pub(crate) async fn forget_failed_sign_ins(
        &self,
        identifier: &Identifier,
    ) -> Result<(), ApiError> {
        self.accounts
            .throttle_clear(&identifier_key("sign_in", identifier))
            .await?;
        Ok(())
    }

    /// A check the hashing pool refused (503 `busy`) is still an attempt: it is published.
    fn on_busy(&self, matched: Result<bool, ApiError>, caller: &Caller) -> Result<bool, ApiError> {
        matched.inspect_err(|_| self.attempt_failed(None, caller, "busy"))
    }

    /// A new access token (and refresh token, when `grant.refresh`) for a session or grant;
    /// neither outlives it.
    pub(crate) async fn issue(&self, grant: &Grant<'_>) -> Result<IssuedTokens, ApiError> {
        let now = Utc::now();
        let access_ttl =
            chrono::Duration::from_std(self.config.access_token_ttl).unwrap_or_default();
        let refresh_ttl =
            chrono::Duration::from_std(self.config.refresh_token_ttl).unwrap_or_default();
        let access = SecretToken::generate();
        let access_expires = (now + access_ttl).min(grant.session_ends);
        let refresh_expires = (now + refresh_ttl).min(grant.session_ends);
        self.users
            .create_access_token(&OAuth2AccessToken {
                token_hash: access.hash(),
                client_id: grant.client_id.into(),
                user_id: Some(grant.user_id),
                session_id: Some(grant.session_id),
                scopes: grant.scopes.to_vec(),
                expires_at: access_expires,
                revoked_at: None,
                created_at: now,
            })
            .await?;
        let refresh = if grant.refresh {
            let refresh = SecretToken::generate();
            self.users
                .create_refresh_token(&OAuth2RefreshToken {
                    token_hash: refresh.hash(),
                    access_token_hash: Some(access.hash()),
                    client_id: grant.client_id.into(),
                    user_id: grant.user_id,
                    session_id: Some(grant.session_id),
                    scopes: grant.scopes.to_vec(),
                    expires_at: refresh_expires,
                    revoked_at: None,
                    created_at: now,
                })
                .await?;
            Some(refresh)
        } else {
            None
        };
        let seconds = |at: DateTime<Utc>| u64::try_from((at - now).num_seconds()).unwrap_or(0);
        Ok(IssuedTokens {
            access_token: access,
            expires_in: seconds(access_expires),
            refresh_token: refresh,
            refresh_token_expires_in: seconds(refresh_expires),
            session_id: grant.session_id,
            user_id: grant.user_id,
        })
    }

    /// Rotates a first-party refresh token. A token presented again after its rotation
    /// revokes its whole session.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &SecretToken,
        caller: &Caller,
    ) -> Result<IssuedTokens, ApiError> {
        let redeemed = self
            .redeem(FIRST_PARTY_CLIENT_ID, refresh_token, caller)
            .await?;
        let tokens = self
            .issue(&Grant {
                client_id: FIRST_PARTY_CLIENT_ID,
                user_id: redeemed.user_id,
                session_id: redeemed.session.id,
                session_ends: redeemed.session.expires_at,
                scopes: &[],
                refresh: true,
            })
            .await?;
        self.rotated(&redeemed).await?;
        Ok(tokens)
    }

    /// The first half of a refresh (first-party or of an OAuth2 client): redeems the refresh
    /// token, once, and checks its session and account. A token presented again after its
    /// rotation revokes its whole session (or grant), and is logged and audited as a security
    /// event. Errors are `invalid_grant`.
    pub(crate) async fn redeem(
        &self,
        client_id: &str,
        refresh_token: &SecretToken,
        caller: &Caller,
    ) -> Result<Redeemed, ApiError> {
        use repo::accounts::RefreshRedemption as R;
        let invalid_grant = |message: &str| ApiError::new(ErrorCode::InvalidGrant, message);
        let hash = refresh_token.hash();
        match self.accounts.redeem_refresh_token(&hash, client_id).await? {
            R::Redeemed {
                user_id,
                session_id,
                scopes,
            } => {
                let session = self.accounts.session(session_id).await?;
                let Some(session) = session.filter(|s| s.is_live(Utc::now())) else {
                    return Err(invalid_grant("the session has ended; sign in again"));
                };
                let account_ok = match self.users.get_user_by_id(user_id).await {
                    Ok(user) => user.status != domain::UserStatus::Suspended,
                    Err(repo::RepoError::NotFound { .. }) => false,
                    Err(other) => return Err(other.into()),
                };
                if !account_ok {
                    self.accounts
                        .revoke_session(session_id, "account_unavailable")
                        .await?;
                    return Err(invalid_grant("the account is deleted or suspended"));
                }
                Ok(Redeemed {
                    user_id,
                    session,
                    scopes,
                })
            }
            R::AlreadyRevoked {
                user_id,
                session_id,
            } => {
                if let Some(session_id) = session_id {
                    let ended = self
                        .accounts
                        .revoke_session(session_id, "refresh_token_reuse")
                        .await?;
                    if ended {
                        // A rotated token came back: someone holds a copy. The whole session
                        // goes, and the attempt is kept as a security event.
                        tracing::warn!(
                            security_event = "refresh_token_reuse",
                            user_id = %user_id,
                            session_id = %session_id,
                            client_id,
                            "a rotated refresh token was presented again; session revoked"
                        );
                        metrics::counter!("gateway_refresh_token_reuse_total").increment(1);
                        self.audit(
                            "refresh_token_reuse",
                            Some(client_id),
                            Some(user_id),
                            caller,
                            false,
                            json!({"session_id": session_id}),
                        )
                        .await;
                    }
                }
                Err(invalid_grant(
                    "the refresh token was already used or revoked",
                ))
            }
            R::Expired => Err(invalid_grant(
                "the refresh token has expired; sign in again",
            )),
            R::Unknown => Err(invalid_grant("the refresh token is not valid")),
        }
    }

    /// The second half of a refresh, once the new tokens are written: a session revoked
    /// meanwhile (a sign-out everywhere, a reset) is revoked again, which ends the new tokens
    /// too; otherwise the refresh is noted and published.
    pub(crate) async fn rotated(&self, redeemed: &Redeemed) -> Result<(), ApiError> {
        let session_id = redeemed.session.id;
        let still_live = self
            .accounts
            .session(session_id)
            .await?
            .is_some_and(|s| s.is_live(Utc::now()));
        if !still_live {
            self.accounts.revoke_session(session_id, "revoked").await?;
            return Err(ApiError::new(
                ErrorCode::InvalidGrant,
                "the session has ended; sign in again",
            ));
        }
        self.accounts.touch_session(session_id).await?;
        self.publish(events::envelope::UserTokenRefreshed {
            user_id: redeemed.user_id.to_string(),
            session_id: session_id.to_string(),
            refreshed_at: Utc::now(),
        });
        Ok(())
    }

    /// Ends one session.
    pub(crate) async fn sign_out(&self, who: SignedIn) -> Result<(), ApiError> {
        self.accounts
            .revoke_session(who.session_id, "sign_out")
            .await?;
        self.publish(events::envelope::UserLoggedOut {
            user_id: who.user_id.to_string(),
            session_id: who.session_id.to_string(),
            logout_time: Utc::now(),
        });
        Ok(())
    }

    /// Ends every session of the user and revokes all their tokens; returns how many sessions
    /// ended.
    pub(crate) async fn revoke_everything(
        &self,
        user_id: UserId,
        reason: &str,
    ) -> Result<u64, ApiError> {
        let ended = self
            .accounts
            .revoke_sessions_of(user_id, reason, None)
            .await?;
        self.users.revoke_access_tokens_by_user(user_id).await?;
        self.users.revoke_refresh_tokens_by_user(user_id).await?;
        // A pending email change is a link someone with the session asked for: it goes with
        // the sessions (the owner can ask for a new verification of their address).
        self.accounts
            .retire_account_tokens(user_id, TokenPurpose::VerifyEmail)
            .await?;
        Ok(ended)
    }

    /// Refuses a new password that breaks the length rules or was used before (the current one
    /// or one of the last `PASSWORD_HISTORY`).
    pub(crate) async fn check_new_password(
        &self,
        user_id: UserId,
        field: &str,
        password: &str,
    ) -> Result<(), ApiError> {
        self.password_rules.check(field, password)?;
        let (_, credentials) = self
            .users
            .get_user_with_credentials(user_id)
            .await
            .map_err(account_gone)?;
        let mut hashes: Vec<String> = credentials.into_iter().map(|c| c.password_hash).collect();
        hashes.extend(
            self.users
                .get_credential_history(user_id, self.config.password_history)
                .await?
                .into_iter()
                .map(|h| h.password_hash),
        );
        if self.password_matches(password, hashes).await? {
            return Err(ApiError::new(
                ErrorCode::PasswordReused,
                format!(
                    "choose a password other than the current one and the last {}",
                    self.config.password_history
                ),
            )
            .with_field(field));
        }
        Ok(())
    }

    /// Hashes a new password on the pool (before anything is changed, so a full pool changes
    /// nothing).
    pub(crate) async fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        Ok(self
            .hasher
            .hash_all(vec![password.to_owned()])
            .await
            .map_err(hash_error)?
            .remove(0))
    }

    /// Checks the signed-in user's password again before a sensitive change and returns the
    /// (live) user: 403 `wrong_password` when it is wrong (not a 401: the session is fine). Wrong passwords count like failed sign-ins (per
    /// user, `SIGN_IN_MAX_FAILURES`, then 429) and publish `login_failed`, so a stolen access
    /// token is no way to guess the password unseen.
    pub(crate) async fn reauthenticate(
        &self,
        who: SignedIn,
        password: &str,
        caller: &Caller,
    ) -> Result<domain::User, ApiError> {
        if password.is_empty() || password.chars().count() > self.password_rules.max_length {
            return Err(ApiError::invalid(
                "password",
                "password is empty or too long",
            ));
        }
        let key = format!("reauthenticate:{}", who.user_id);
        if let Err(refused) = self
            .count_attempt(
                &[(key.as_str(), self.config.max_failures_per_identifier)],
                self.config.failure_window,
                "password checks",
            )
            .await
        {
            self.attempt_failed(Some(who.user_id), caller, "reauthentication_throttled");
            return Err(refused);
        }
        let checked = match self.users.get_user_with_credentials(who.user_id).await {
            Ok((user, _)) if user.deleted_at.is_some() => Err(gone()),
            Ok((user, credentials)) => {
                let hashes = credentials.into_iter().map(|c| c.password_hash).collect();
                self.password_matches(password, hashes)
                    .await
                    .map(|matched| (user, matched))
            }
            Err(error) => Err(account_gone(error)),
        };
        let (user, matched) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                self.uncount(&[key.as_str()]).await;
                return Err(error);
            }
        };
        if matched {
            self.accounts.throttle_clear(&key).await?;
            Ok(user)
        } else {
            self.attempt_failed(Some(who.user_id), caller, "reauthentication_failed");
            Err(
                ApiError::new(ErrorCode::WrongPassword, "the password is wrong")
                    .with_field("password"),
            )
        }
    }

    /// Publishes a business event in the background: the answer does not wait for the broker
    /// (a failure is logged and counted by the producer).
    pub(crate) fn publish(&self, payload: impl Into<EventPayload>) {
        let event = self.events.build(payload);
        let producer = self.producer.clone();
        tokio::spawn(
            async move {
                if let Err(error) = producer.deliver_event(&event).await {
                    tracing::error!(event_type = event.event_type(), %error, "event not published");
                }
            }
            .in_current_span(),
        );
    }

    /// A sign-in attempt's activity event (`login` or `login_failed`), in the background.
    fn record_activity(
        &self,
        user_id: Option<UserId>,
        activity_type: &str,
        caller: &Caller,
        session_id: Option<Uuid>,
        reason: Option<&str>,
    ) {
        let mut metadata = Map::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                metadata.insert(name.into(), Value::String(value));
            }
        };
        put("ipAddress", caller.ip.clone());
        put("userAgent", caller.user_agent.clone());
        put("sessionId", session_id.map(|s| s.to_string()));
        put("reason", reason.map(str::to_owned));
        put("loginMethod", Some("password".into()));
        let event = domain::ActivityEvent {
            // Failed attempts on no known account share one key.
            user_id: user_id.map_or_else(|| "anonymous".to_owned(), |id| id.to_string()),
            activity_type: activity_type.to_owned(),
            timestamp: Utc::now(),
            metadata,
            event_id: format!("evt_{}", Uuid::now_v7().simple()),
            version: "1.0".into(),
        };
        let activity = self.activity.clone();
        tokio::spawn(
            async move {
                if let Err(error) = activity.publish(std::slice::from_ref(&event)).await {
                    tracing::error!(%error, "sign-in activity event not published");
                }
            }
            .in_current_span(),
        );
    }

    fn attempt_failed(&self, user_id: Option<UserId>, caller: &Caller, reason: &str) {
        metrics::counter!("gateway_sign_ins_total", "outcome" => reason.to_owned()).increment(1);
        self.record_activity(user_id, "login_failed", caller, None, Some(reason));
    }

    /// A security event in the OAuth2 audit log (best effort: a failure is logged).
    /// Writes an OAuth2 audit log entry (`CreateOAuth2AuditLog`). Best effort: a failure is
    /// logged as an error, the request goes on.
    pub(crate) async fn audit(
        &self,
        event_type: &str,
        client_id: Option<&str>,
        user_id: Option<UserId>,
        caller: &Caller,
        success: bool,
        details: Value,
    ) {
        let entry = domain::OAuth2AuditLog {
            id: 0,
            event_type: event_type.to_owned(),
            client_id: client_id.map(str::to_owned),
            user_id,
            ip_address: caller.ip.clone(),
            user_agent: caller.user_agent.clone(),
            success,
            details,
            created_at: Utc::now(),
        };
        if let Err(error) = self.users.create_oauth2_audit_log(&entry).await {
            tracing::error!(%error, event_type, "security event not written to the audit log");
        }
    }
}

/// The signed-in user's account is gone (deleted meanwhile): the token no longer stands for
/// anyone. Other repository failures convert as usual.
pub(crate) fn account_gone(error: repo::RepoError) -> ApiError {
    match error {
        repo::RepoError::NotFound { .. } => gone(),
        other => other.into(),
    }
}

fn gone() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the account of this token is gone")
}

/// The throttle key of a client IP: an IPv6 client by its /64 (one subscriber's prefix), so
/// rotating addresses within it does not reset the count.
pub(crate) fn ip_key(kind: &str, ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let segments = v6.segments();
            format!(
                "{kind}:{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
        _ => format!("{kind}:{ip}"),
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "the identifier or the password is wrong",
    )
}
