//! The endpoints clients and resource servers call: token (RFC 6749 section 3.2), revocation
//! (RFC 7009), introspection (RFC 7662), `userinfo` (OpenID Connect Core section 5.3) and the
//! JWKS. Bodies are `application/x-www-form-urlencoded`; errors are RFC 6749 section 5.2's.

use std::collections::BTreeSet;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use domain::accounts::SecretToken;
use domain::{OAuth2AccessToken, OAuth2Client, UserId};
use futures::future::LocalBoxFuture;
use repo::accounts::FIRST_PARTY_CLIENT_ID;
use repo::{RepoError, UserRepository as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::keys::at_hash;
use super::{
    OAuthError, OAuthErrorBody, OAuthErrorCode, Provider, USER_SCOPES, allows, s256, scope_string,
};
use crate::accounts::{Caller, Grant, IssuedTokens};

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(token_endpoint)
        .service(revoke)
        .service(introspect)
        .service(userinfo_get)
        .service(userinfo_post)
        .service(jwks);
}

/// The largest form body the OAuth2 endpoints read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A form body (`application/x-www-form-urlencoded`) of type `T`. Unknown parameters are
/// ignored and a parameter sent twice is refused (RFC 6749 section 3.1); every refusal is an
/// `invalid_request`.
#[derive(Debug)]
pub(crate) struct Form<T>(pub(crate) T);

impl<T: DeserializeOwned + 'static> FromRequest for Form<T> {
    type Error = OAuthError;
    type Future = LocalBoxFuture<'static, Result<Self, OAuthError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let form_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let encoded = request
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let body = web::Bytes::from_request(request, payload);
        Box::pin(async move {
            if !form_type {
                return Err(OAuthError::invalid_request(
                    "the body must be application/x-www-form-urlencoded",
                ));
            }
            if encoded {
                return Err(OAuthError::invalid_request(
                    "the body must not be compressed (Content-Encoding)",
                ));
            }
            let body = tokio::time::timeout(std::time::Duration::from_secs(10), body)
                .await
                .map_err(|_| OAuthError::invalid_request("the body came too slowly"))?
                .map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
            parse_form(&body).map(Form)
        })
    }
}

/// Parses a form body; see [`Form`].
pub(crate) fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, OAuthError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "the body is larger than {MAX_FORM_BYTES} bytes"
        )));
    }
    let mut seen = BTreeSet::new();
    for (name, value) in form_urlencoded::parse(body) {
        // Named in the message only when it is a plain name (never echo arbitrary bytes).
        let shown = if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic()) {
            format!("the parameter {name}")
        } else {
            "a parameter".to_owned()
        };
        if !seen.insert(name.clone()) {
            return Err(OAuthError::invalid_request(format!(
                "{shown} is sent more than once"
            )));
        }
        if value.contains('\0') || name.contains('\0') {
            return Err(OAuthError::invalid_request(format!(
                "{shown} holds a NUL character"
            )));
        }
        // The decoder replaces bytes that are not UTF-8 with U+FFFD: such a value would not
        // come back as it was sent (a `state`, say).
        if value.contains('\u{FFFD}') || name.contains('\u{FFFD}') {
            return Err(OAuthError::invalid_request(format!("{shown} is not UTF-8")));
        }
    }
    serde_urlencoded::from_bytes(body).map_err(|e| OAuthError::invalid_request(e.to_string()))
}

/// The parameters of a token request (RFC 6749 sections 4.1.3, 4.4.2 and 6).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct OAuth2TokenRequest {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: Option<String>,
    /// The authorization code (`authorization_code`).
    code: Option<String>,
    /// The redirect URI of the authorization request (`authorization_code`).
    redirect_uri: Option<String>,
    /// The PKCE code verifier (RFC 7636; `authorization_code`).
    code_verifier: Option<String>,
    /// The refresh token (`refresh_token`).
    refresh_token: Option<String>,
    /// Space-separated scopes: fewer than granted (`refresh_token`), or those asked
    /// (`client_credentials`).
    scope: Option<String>,
    /// The client, when it does not use HTTP Basic authentication.
    client_id: Option<String>,
    /// The client's secret, when it does not use HTTP Basic authentication
    /// (`client_secret_post`).
    client_secret: Option<String>,
}

/// A successful token answer (RFC 6749 section 5.1, OpenID Connect Core section 3.1.3.3).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "4f1c…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "9a0b…", "scope": "email openid", "id_token": "eyJhbGciOiJSUzI1NiIs…"}))]
pub(crate) struct OAuth2TokenResponse {
    /// Opaque; 64 hexadecimal characters.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: u64,
    /// Single use: each refresh answers a new one. Present when the client has the
    /// `refresh_token` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The granted scopes, space-separated.
    scope: String,
    /// An RS256 JWT, when `openid` was granted; verify it with the keys of `/oauth2/jwks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// The user of the grant (for the audit log; not in the answer).
    #[serde(skip)]
    #[schema(ignore)]
    user_id: Option<UserId>,
}

fn tokens_answer(tokens: OAuth2TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(tokens)
}

/// The token endpoint: exchanges an authorization code, a refresh token or client credentials
/// for tokens.
///
/// Clients authenticate with HTTP Basic (`client_secret_basic`) or `client_id` and
/// `client_secret` in the body (`client_secret_post`); public clients send `client_id` only. A
/// code is single-use: redeeming it again refuses and revokes the tokens of its first
/// redemption. A refresh token is single-use too: presenting a rotated one revokes the grant.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "token",
    request_body(content = OAuth2TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (`Cache-Control: no-store`)", body = OAuth2TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type` or `invalid_scope`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate`", body = OAuthErrorBody),
    )
)]
#[post("/oauth2/token")]
async fn token_endpoint(
    provider: web::Data<Provider>,
    request: HttpRequest,
    form: Form<OAuth2TokenRequest>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.0;
    let caller = provider.accounts.caller(&request);
    let client = provider
        .authenticate_client(
            &request,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
            &caller,
        )
        .await?;
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let outcome = match grant_type {
        "authorization_code" | "refresh_token" | "client_credentials"
            if !allows(&client, grant_type) =>
        {
            Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                format!("the client is not registered for the {grant_type} grant"),
            ))
        }
        "authorization_code" => provider.exchange_code(&client, &form, &caller).await,
        "refresh_token" => provider.refresh(&client, &form, &caller).await,
        "client_credentials" => provider.client_credentials(&client, &form, &caller).await,
        other => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            format!("the {other} grant is not supported"),
        )),
    };
    match outcome {
        Ok(tokens) => {
            provider
                .accounts
                .audit(
                    "token_issued",
                    Some(&client.client_id),
                    tokens.user_id,
                    &caller,
                    true,
                    json!({"grant_type": grant_type, "scope": tokens.scope}),
                )
                .await;
            Ok(tokens_answer(tokens))
        }
        Err(refused) => {
            provider
                .accounts
                .audit(
                    "token_refused",
                    Some(&client.client_id),
                    None,
                    &caller,
                    false,
                    json!({"grant_type": grant_type, "error": refused.code.as_str(), "reason": refused.description}),
                )
                .await;
            Err(refused)
        }
    }
}

impl Provider {
    /// The client of a request to the token, revocation or introspection endpoint (RFC 6749
    /// section 2.3.1): HTTP Basic, or `client_id` (and `client_secret`) in the body; one
    /// method only. A confidential client must give its secret, a public one must not.
    pub(crate) async fn authenticate_client(
        &self,
        request: &HttpRequest,
        body_id: Option<&str>,
        body_secret: Option<&str>,
        caller: &Caller,
    ) -> Result<OAuth2Client, OAuthError> {
        let basic = basic_credentials(request)?;
        let used_basic = basic.is_some();
        let (client_id, secret) = match (basic, body_secret) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "authenticate the client one way: HTTP Basic or the body, not both",
                ));
            }
            (Some((id, secret)), None) => {
                if body_id.is_some_and(|body_id| body_id != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id differs from the HTTP Basic user name",
                    ));
                }
                (id, Some(secret))
            }
            (None, secret) => (
                body_id
                    .map(str::to_owned)
                    .ok_or_else(OAuthError::invalid_client)?,
                secret.map(str::to_owned),
            ),
        };
        // Some libraries send a public client as Basic with an empty password.
        let secret = secret.filter(|s| !s.is_empty());
        let refuse = async |reason: &str| {
            self.accounts
                .audit(
                    "client_authentication_failed",
                    None,
                    None,
                    caller,
                    false,
                    // The client tried (not trusted: it failed), cut to a sane length.
                    json!({"reason": reason, "client_id": client_id.chars().take(128).collect::<String>()}),
                )
                .await;
            let mut error = OAuthError::invalid_client();
            error.basic = used_basic;
            error
        };
        if client_id == FIRST_PARTY_CLIENT_ID
            || client_id.len() > 128
            || client_id.chars().any(char::is_control)
        {
            return Err(refuse("unknown client").await);
        }
        let client = match self
            .accounts
            .users
            .get_oauth2_client_by_client_id(&client_id)
            .await
        {
            Ok(client) => client,
            Err(RepoError::NotFound { .. }) => return Err(refuse("unknown client").await),
            Err(other) => return Err(other.into()),
        };
        match (&client.client_secret_hash, secret) {
            (Some(expected), Some(given)) => {
                let given = SecretToken::parse(&given).map(|s| s.hash());
                let matches = given.is_some_and(|given| {
                    bool::from(
                        given
                            .as_str()
                            .as_bytes()
                            .ct_eq(expected.as_str().as_bytes()),
                    )
                });
                if !matches {
                    return Err(refuse("wrong client secret").await);
                }
            }
            (Some(_), None) => return Err(refuse("no client secret").await),
            (None, Some(_)) => return Err(refuse("a public client has no secret").await),
            (None, None) => {}
        }
        Ok(client)
    }

    /// `grant_type=authorization_code` (RFC 6749 section 4.1.3, RFC 7636 section 4.6).
    async fn exchange_code(
        &self,
        client: &OAuth2Client,
        form: &OAuth2TokenRequest,
        caller: &Caller,
    ) -> Result<OAuth2TokenResponse, OAuthError> {
        let code = form
            .code
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let redirect_uri = form
            .redirect_uri
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
        let verifier = form.code_verifier.as_deref().ok_or_else(|| {
            OAuthError::invalid_grant("code_verifier is required (PKCE, RFC 7636)")
        })?;
        let unknown = || OAuthError::invalid_grant("the code is unknown, expired or used");
        let hash = SecretToken::parse(code).ok_or_else(unknown)?.hash();
        let found = match self.accounts.users.get_authorization_code(&hash).await {
            Ok(found) => found,
            Err(RepoError::NotFound { .. }) => {
                self.code_replayed(&hash, client, caller).await?;
                return Err(unknown());
            }
            Err(other) => return Err(other.into()),
        };
        // Spent now, whatever follows: a code is tried once.
        match self
            .accounts
            .users
            .mark_authorization_code_as_used(&hash)
            .await
        {
            Ok(()) => {}
            Err(RepoError::Conflict(_) | RepoError::NotFound { .. }) => {
                self.code_replayed(&hash, client, caller).await?;
                return Err(unknown());
            }
            Err(other) => return Err(other.into()),
        }
        if found.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if found.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let challenge = found.code_challenge.as_deref().unwrap_or_default();
        let verified = super::is_pkce_value(verifier)
            && bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes()));
        if !verified {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let session_id = found
            .session_id
            .ok_or_else(|| OAuthError::invalid_grant("the code belongs to no grant"))?;
        let session = self
            .accounts
            .accounts
            .session(session_id)
            .await?
            .filter(|s| s.is_live(Utc::now()))
            .ok_or_else(|| OAuthError::invalid_grant("the grant was revoked"))?;
        let user = self.live_user(found.user_id).await?;
        let grant = Grant {
            client_id: &client.client_id,
            user_id: user.id,
            session_id,
            session_ends: session.expires_at,
            scopes: &found.scopes,
            refresh: allows(client, "refresh_token"),
        };
        let tokens = self.accounts.issue(&grant).await?;
        let id_token = self.id_token_for(
            client,
            &user,
            &found.scopes,
            &tokens,
            found.nonce.as_deref(),
            session.created_at,
        );
        self.keep_if_live(session_id, id_token.is_ok()).await?;
        Ok(answer(tokens, &found.scopes, id_token?))
    }

    /// After a grant's new tokens were written: when the grant ended meanwhile (a replay of
    /// its code, a withdrawn consent, a password reset that ran between the check and the
    /// write) or the answer cannot be made (`answerable` false), it is revoked again, which
    /// takes the new tokens with it.
    async fn keep_if_live(
        &self,
        session_id: uuid::Uuid,
        answerable: bool,
    ) -> Result<(), OAuthError> {
        let sessions = &self.accounts.accounts;
        let live = sessions
            .session(session_id)
            .await?
            .is_some_and(|s| s.is_live(Utc::now()));
        if !live || !answerable {
            sessions.revoke_session(session_id, "revoked").await?;
        }
        if live {
            Ok(())
        } else {
            Err(OAuthError::invalid_grant("the grant was revoked"))
        }
    }

    /// A code that was redeemed before came back: the grant it started is revoked (RFC 6749
    /// section 4.1.2, RFC 9700 section 4.5).
    async fn code_replayed(
        &self,
        hash: &domain::TokenHash,
        client: &OAuth2Client,
        caller: &Caller,
    ) -> Result<(), OAuthError> {
        if let Some(session) = self
            .accounts
            .accounts
            .spent_authorization_code(hash)
            .await?
        {
            let revoked = match session {
                Some(session) => {
                    self.accounts
                        .accounts
                        .revoke_session(session, "authorization_code_replay")
                        .await?
                }
                None => false,
            };
            tracing::warn!(
                security_event = "authorization_code_replay",
                client_id = %client.client_id,
                revoked,
                "a used authorization code was presented again; its grant is revoked"
            );
            self.accounts
                .audit(
                    "authorization_code_replay",
                    Some(&client.client_id),
                    None,
                    caller,
                    false,
                    json!({"grant": session, "revoked": revoked}),
                )
                .await;
        }
        Ok(())
    }

    /// The user of a grant, while the account is live and not suspended.
    async fn live_user(&self, user_id: UserId) -> Result<domain::UserProfile, OAuthError> {
        match self.accounts.users.get_user_by_id(user_id).await {
            Ok(user) if user.status != domain::UserStatus::Suspended => Ok(user),
            Ok(_) | Err(RepoError::NotFound { .. }) => Err(OAuthError::invalid_grant(
                "the account is deleted or suspended",
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// `grant_type=refresh_token` (RFC 6749 section 6): rotates the refresh token.
    async fn refresh(
        &self,
        client: &OAuth2Client,
        form: &OAuth2TokenRequest,
        caller: &Caller,
    ) -> Result<OAuth2TokenResponse, OAuthError> {
        let presented = form
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let presented = SecretToken::parse(presented)
            .ok_or_else(|| OAuthError::invalid_grant("the refresh token is not valid"))?;
        let asked = super::parse_scope(form.scope.as_deref())
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidScope, "scope is malformed"))?;
        // Checked before the token is spent, so a wrong scope does not cost the client its
        // grant.
        let wider = |granted: &[String]| !asked.iter().all(|s| granted.contains(s));
        let wider_scope = || {
            OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "a refresh may narrow the granted scopes, not widen them",
            )
        };
        if !asked.is_empty()
            && let Ok(live) = self
                .accounts
                .users
                .get_refresh_token_by_hash(&presented.hash())
                .await
            && wider(&live.scopes)
        {
            return Err(wider_scope());
        }
        let redeemed = self
            .accounts
            .redeem(&client.client_id, &presented, caller)
            .await?;
        if wider(&redeemed.scopes) {
            return Err(wider_scope());
        }
        // Never more than the client is registered for now: narrowing a client's scopes
        // narrows its grants at their next refresh.
        let scopes: Vec<String> = if asked.is_empty() {
            redeemed.scopes.clone()
        } else {
            asked.into_iter().collect()
        }
        .into_iter()
        .filter(|s| client.scopes.contains(s))
        .collect();
        let user = self.live_user(redeemed.user_id).await?;
        let tokens = self
            .accounts
            .issue(&Grant {
                client_id: &client.client_id,
                user_id: user.id,
                session_id: redeemed.session.id,
                session_ends: redeemed.session.expires_at,
                scopes: &scopes,
                refresh: true,
            })
            .await?;
        self.accounts.rotated(&redeemed).await?;
        let id_token = self.id_token_for(
            client,
            &user,
            &scopes,
            &tokens,
            None,
            redeemed.session.created_at,
        );
        if id_token.is_err() {
            self.keep_if_live(redeemed.session.id, false).await?;
        }
        Ok(answer(tokens, &scopes, id_token?))
    }

    /// `grant_type=client_credentials` (RFC 6749 section 4.4): a token for the client itself.
    async fn client_credentials(
        &self,
        client: &OAuth2Client,
        form: &OAuth2TokenRequest,
        _caller: &Caller,
    ) -> Result<OAuth2TokenResponse, OAuthError> {
        if !client.is_confidential {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "only a confidential client may use client credentials",
            ));
        }
        let asked = super::parse_scope(form.scope.as_deref())
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidScope, "scope is malformed"))?;
        if let Some(user_scope) = asked.iter().find(|s| USER_SCOPES.contains(&s.as_str())) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                format!("{user_scope} names a user; client credentials act for no user"),
            ));
        }
        if let Some(extra) = asked.iter().find(|s| !client.scopes.contains(s)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                format!("the client is not registered for the scope {extra}"),
            ));
        }
        let scopes: Vec<String> = asked.into_iter().collect();
        let now = Utc::now();
        let ttl = self.accounts.config.access_token_ttl;
        let access = SecretToken::generate();
        self.accounts
            .users
            .create_access_token(&OAuth2AccessToken {
                token_hash: access.hash(),
                client_id: client.client_id.clone(),
                user_id: None,
                session_id: None,
                scopes: scopes.clone(),
                expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
                revoked_at: None,
                created_at: now,
            })
            .await?;
        Ok(OAuth2TokenResponse {
            access_token: access.expose().to_owned(),
            token_type: "Bearer",
            expires_in: ttl.as_secs(),
            refresh_token: None,
            scope: scope_string(&scopes),
            id_token: None,
            user_id: None,
        })
    }

    /// The ID token of a grant with `openid` (OpenID Connect Core section 2).
    fn id_token_for(
        &self,
        client: &OAuth2Client,
        user: &domain::UserProfile,
        scopes: &[String],
        tokens: &IssuedTokens,
        nonce: Option<&str>,
        auth_time: DateTime<Utc>,
    ) -> Result<Option<String>, OAuthError> {
        if !scopes.iter().any(|s| s == "openid") {
            return Ok(None);
        }
        let now = Utc::now();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": user.id.to_string(),
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": now.timestamp(),
            "exp": now.timestamp() + i64::try_from(self.config.id_token_ttl.as_secs()).unwrap_or(3600),
            "auth_time": auth_time.timestamp(),
            "at_hash": at_hash(tokens.access_token.expose()),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        add_user_claims(&mut claims, user, scopes);
        self.keys.sign(&claims).map(Some).map_err(|error| {
            tracing::error!(%error, "could not sign an ID token");
            OAuthError::new(
                OAuthErrorCode::ServerError,
                "the ID token could not be signed",
            )
        })
    }
}

/// The claims of the `email` and `phone` scopes (OpenID Connect Core section 5.4).
fn add_user_claims(claims: &mut Value, user: &domain::UserProfile, scopes: &[String]) {
    let has = |scope: &str| scopes.iter().any(|s| s == scope);
    if has("email")
        && let Some(email) = &user.email
    {
        claims["email"] = json!(email.as_str());
        claims["email_verified"] = json!(user.is_email_verified);
    }
    if has("phone")
        && let Some(phone) = &user.phone
    {
        claims["phone_number"] = json!(phone.as_str());
        claims["phone_number_verified"] = json!(user.is_phone_verified);
    }
}

fn answer(
    tokens: IssuedTokens,
    scopes: &[String],
    id_token: Option<String>,
) -> OAuth2TokenResponse {
    OAuth2TokenResponse {
        access_token: tokens.access_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token.map(|t| t.expose().to_owned()),
        scope: scope_string(scopes),
        id_token,
        user_id: Some(tokens.user_id),
    }
}

/// The client ID and secret of an `Authorization: Basic` header, each form-urlencoded as RFC
/// 6749 section 2.3.1 says; `None` without such a header.
fn basic_credentials(request: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        let mut error = OAuthError::invalid_client();
        error.basic = true;
        error
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |part: &str| -> Result<String, OAuthError> {
        form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(malformed)
    };
    Ok(Some((decode(id)?, decode(secret)?)))
}

/// A token a client hands back (RFC 7009 section 2.1, RFC 7662 section 2.1).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TokenReference {
    /// The access or refresh token.
    token: Option<String>,
    /// `access_token` or `refresh_token`: where to look first.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Revokes a token (RFC 7009).
///
/// The client authenticates as at the token endpoint and may revoke only its own tokens.
/// Revoking a refresh token revokes its grant (every token of it); revoking an access token
/// revokes that token. An unknown token, or another client's, is answered 200 too (and left
/// alone).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "revokeToken",
    request_body(content = TokenReference, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or unknown"),
        (status = 400, description = "`invalid_request` (no token)", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    )
)]
#[post("/oauth2/revoke")]
async fn revoke(
    provider: web::Data<Provider>,
    request: HttpRequest,
    form: Form<TokenReference>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.0;
    let caller = provider.accounts.caller(&request);
    let client = provider
        .authenticate_client(
            &request,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
            &caller,
        )
        .await?;
    let token = form
        .token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let Some(token) = SecretToken::parse(token) else {
        return Ok(HttpResponse::Ok().finish());
    };
    let hash = token.hash();
    let users = &provider.accounts.users;
    let refresh_first = form.token_type_hint.as_deref() == Some("refresh_token");
    let access = users.get_access_token_by_hash(&hash);
    let refresh = users.get_refresh_token_by_hash(&hash);
    let (access, refresh) = if refresh_first {
        let refresh = refresh.await;
        (access.await, refresh)
    } else {
        let access = access.await;
        (access, refresh.await)
    };
    // Another client's token is answered as an unknown one (RFC 7009 section 2.2: 200 for a
    // token that is invalid for this client), so the answer tells nothing of it.
    let revoked = match (access, refresh) {
        (Ok(access), _) if access.client_id != client.client_id => None,
        (Ok(access), _) => {
            users.revoke_access_token(&hash).await?;
            Some(("access_token", access.user_id))
        }
        (_, Ok(refresh)) if refresh.client_id != client.client_id => None,
        (_, Ok(refresh)) => {
            match refresh.session_id {
                Some(session) => {
                    provider
                        .accounts
                        .accounts
                        .revoke_session(session, "revoked_by_client")
                        .await?;
                }
                None => users.revoke_refresh_token(&hash).await?,
            }
            Some(("refresh_token", Some(refresh.user_id)))
        }
        (Err(RepoError::NotFound { .. }), Err(RepoError::NotFound { .. })) => None,
        (Err(RepoError::NotFound { .. }), Err(e)) | (Err(e), _) => return Err(e.into()),
    };
    if let Some((kind, user_id)) = revoked {
        provider
            .accounts
            .audit(
                "token_revoked",
                Some(&client.client_id),
                user_id,
                &caller,
                true,
                json!({"token_type": kind}),
            )
            .await;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// What introspection says of a token (RFC 7662 section 2.2).
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(example = json!({"active": true, "scope": "openid email", "client_id": "3f9a…", "sub": "7285873432158208001", "exp": 1764547200, "iat": 1764546300, "token_type": "Bearer", "iss": "https://id.example.com"}))]
pub(crate) struct Introspection {
    /// Whether the token is live. When false, nothing else is said.
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    /// The user (absent for client credentials tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// Seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

/// Says whether a token is live, and what it grants (RFC 7662).
///
/// Only a confidential client may ask. It learns about its own tokens; a client registered with
/// `tokens:introspect` (a resource server) or `admin` about the access tokens of every client
/// too; never about first-party session tokens. A revoked, expired or unknown token, or one it
/// may not learn about, is `{"active": false}`.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "introspectToken",
    request_body(content = TokenReference, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "What the token is (`Cache-Control: no-store`)", body = Introspection),
        (status = 400, description = "`invalid_request` (no token)", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: no client authentication, a public client, or a wrong secret", body = OAuthErrorBody),
    )
)]
#[post("/oauth2/introspect")]
async fn introspect(
    provider: web::Data<Provider>,
    request: HttpRequest,
    form: Form<TokenReference>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.0;
    let caller = provider.accounts.caller(&request);
    let client = provider
        .authenticate_client(
            &request,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
            &caller,
        )
        .await?;
    if !client.is_confidential {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "only a confidential client may introspect tokens",
        ));
    }
    let token = form
        .token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let answer = match SecretToken::parse(token) {
        None => Introspection::default(),
        Some(token) => provider.introspection(&token.hash(), &client).await?,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}

impl Provider {
    /// What `asker` may learn of a token: only its own client's tokens, unless the asker is
    /// registered with `tokens:introspect` (a resource server) or `admin`, which may check any
    /// client's access tokens; a first-party session token never (it is no OAuth2 client's).
    /// Anything else is `active: false`, as for a token that does not exist.
    async fn introspection(
        &self,
        hash: &domain::TokenHash,
        asker: &OAuth2Client,
    ) -> Result<Introspection, OAuthError> {
        let users = &self.accounts.users;
        let issuer = Some(self.config.issuer.clone());
        match users.get_access_token_by_hash(hash).await {
            Ok(token)
                if token.client_id == FIRST_PARTY_CLIENT_ID
                    || (token.client_id != asker.client_id
                        && !asker.scopes.iter().any(|s| {
                            [
                                crate::access::scopes::TOKENS_INTROSPECT,
                                crate::access::scopes::ADMIN,
                            ]
                            .contains(&s.as_str())
                        })) =>
            {
                return Ok(Introspection::default());
            }
            Ok(token) => {
                return Ok(Introspection {
                    active: true,
                    scope: Some(scope_string(&token.scopes)),
                    client_id: Some(token.client_id),
                    sub: token.user_id.map(|u| u.to_string()),
                    exp: Some(token.expires_at.timestamp()),
                    iat: Some(token.created_at.timestamp()),
                    token_type: Some("Bearer"),
                    iss: issuer,
                });
            }
            Err(RepoError::NotFound { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        match users.get_refresh_token_by_hash(hash).await {
            Ok(token) if token.client_id != asker.client_id => Ok(Introspection::default()),
            Ok(token) => Ok(Introspection {
                active: true,
                scope: Some(scope_string(&token.scopes)),
                client_id: Some(token.client_id),
                sub: Some(token.user_id.to_string()),
                exp: Some(token.expires_at.timestamp()),
                iat: Some(token.created_at.timestamp()),
                token_type: Some("refresh_token"),
                iss: issuer,
            }),
            Err(RepoError::NotFound { .. }) => Ok(Introspection::default()),
            Err(other) => Err(other.into()),
        }
    }

    async fn userinfo(&self, request: &HttpRequest) -> Result<HttpResponse, OAuthError> {
        let invalid = || {
            OAuthError::new(
                OAuthErrorCode::InvalidToken,
                "the access token is missing, unknown, expired or revoked",
            )
        };
        let token = crate::accounts::bearer_token(request)
            .map_err(|_| invalid())?
            .ok_or_else(invalid)?;
        let found = match self
            .accounts
            .users
            .get_access_token_by_hash(&token.hash())
            .await
        {
            Ok(found) => found,
            Err(RepoError::NotFound { .. }) => return Err(invalid()),
            Err(other) => return Err(other.into()),
        };
        // A first-party session token is no OAuth2 grant: unknown here.
        if found.client_id == FIRST_PARTY_CLIENT_ID {
            return Err(invalid());
        }
        let Some(user_id) = found.user_id else {
            return Err(OAuthError::new(
                OAuthErrorCode::InsufficientScope,
                "a client credentials token stands for no user",
            ));
        };
        if !found.scopes.iter().any(|s| s == "openid") {
            return Err(OAuthError::new(
                OAuthErrorCode::InsufficientScope,
                "userinfo needs a token with the openid scope",
            ));
        }
        let user = match self.accounts.users.get_user_by_id(user_id).await {
            Ok(user) => user,
            Err(RepoError::NotFound { .. }) => return Err(invalid()),
            Err(other) => return Err(other.into()),
        };
        let mut claims = json!({"sub": user.id.to_string()});
        add_user_claims(&mut claims, &user, &found.scopes);
        Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(claims))
    }
}

/// The claims about the user (OpenID Connect Core section 5.3).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"sub": "7285873432158208001", "email": "ada@example.com", "email_verified": true}))]
pub(crate) struct UserInfo {
    /// The user's ID: the ID token's `sub`.
    sub: String,
    /// With the `email` scope.
    email: Option<String>,
    email_verified: Option<bool>,
    /// With the `phone` scope; E.164.
    phone_number: Option<String>,
    phone_number_verified: Option<bool>,
}

/// The user an access token stands for (OpenID Connect `userinfo`).
///
/// Needs `Authorization: Bearer` with an access token of a grant that has `openid`; the claims
/// follow its scopes (`email`, `phone`).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "userinfo",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`", body = OAuthErrorBody),
        (status = 403, description = "`insufficient_scope`: the token has no `openid`", body = OAuthErrorBody),
    )
)]
#[get("/oauth2/userinfo")]
async fn userinfo_get(
    provider: web::Data<Provider>,
    request: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    provider.userinfo(&request).await
}

/// The user an access token stands for, asked with `POST` (OpenID Connect Core section 5.3.1).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "userinfoPost",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`", body = OAuthErrorBody),
        (status = 403, description = "`insufficient_scope`: the token has no `openid`", body = OAuthErrorBody),
    )
)]
#[post("/oauth2/userinfo")]
async fn userinfo_post(
    provider: web::Data<Provider>,
    request: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    provider.userinfo(&request).await
}

/// The public keys of ID tokens (a JWK Set, RFC 7517 section 5).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JwkSet {
    /// RSA keys: `kty`, `use` (`sig`), `alg` (`RS256`), `kid`, `n`, `e`.
    keys: Vec<Value>,
}

/// The keys that verify ID tokens (JWKS).
///
/// A new key appears here before it signs, and an old one stays until the ID tokens it signed
/// have expired. Cache it for its `Cache-Control: max-age`.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "jwks",
    responses((status = 200, description = "The JWK Set", content_type = "application/jwk-set+json", body = JwkSet))
)]
#[get("/oauth2/jwks")]
async fn jwks(provider: web::Data<Provider>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", provider.keys.max_age()),
        ))
        .content_type("application/jwk-set+json")
        .body(provider.keys.jwks().to_string())
}
