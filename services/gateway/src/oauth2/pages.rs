//! The authorization endpoint (RFC 6749 section 3.1) and its pages, rendered on the server (no
//! JavaScript): sign-in, then consent, then a `303` back to the client's redirect URI with the
//! code, `state` and `iss` (RFC 9207).
//!
//! - An unknown client or a redirect URI that is not exactly one the client registered gets an
//!   error page, never a redirect (RFC 6749 section 4.1.2.1). Every other refusal of the
//!   request goes back to the client as `error=…`, but through a page with a link, not an
//!   automatic redirect: any signed-in user can register a client, so a redirect URI is not
//!   trusted enough to bounce browsers to it unseen (RFC 9700 section 4.11.2). `prompt=none`
//!   is refused that way too (`login_required`): no browser session is kept. A user's Deny on
//!   the consent page redirects at once.
//! - The sign-in form checks the password as `POST /api/v1/auth/sign-in` does (the same
//!   counters and throttling). A consent that covers the scopes asked is not asked again,
//!   unless `prompt=consent`.
//! - The consent form carries a ticket: the authorization, the user, the password that signed
//!   in (a fingerprint) and an expiry (`OAUTH2_CONSENT_TTL`), signed with HMAC-SHA256 under a
//!   key derived from `OAUTH2_KEY_SECRET`. Only someone who just entered the password holds
//!   one, so the form cannot be forged from another site (no cookie is involved at all); it is
//!   spent by its first answer and void once the password changes.
//! - Pages are `no-store`, cannot be framed (`frame-ancestors 'none'`, `X-Frame-Options`), and
//!   their `Content-Security-Policy` lets forms go only here and to the client's redirect URI.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::accounts::SecretToken;
use domain::{
    Email, Identifier, OAuth2AuthorizationCode, OAuth2Client, OAuth2UserConsent, Phone, UserId,
};
use hmac::{KeyInit as _, Mac as _};
use repo::{RepoError, UserRepository as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::token::parse_form;
use super::{Provider, allows, is_pkce_value, parse_scope, scope_string};
use crate::accounts::Caller;
use crate::errors::ErrorCode;

/// The pages' routes (HTML, outside the OpenAPI document): in the route table too; other
/// methods on their paths get the pages' own 405 page.
pub(crate) const PAGES: [(&str, &str); 3] = [
    ("GET", "/oauth2/authorize"),
    ("POST", "/oauth2/authorize"),
    ("POST", "/oauth2/consent"),
];

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(authorize_page)
        .service(sign_in)
        .service(consent_form)
        .route(
            "/oauth2/authorize",
            web::route().to(page_method_not_allowed),
        )
        .route("/oauth2/consent", web::route().to(page_method_not_allowed));
}

const MAX_STATE_CHARS: usize = 1024;
const MAX_NONCE_CHARS: usize = 512;

/// The parameters of an authorization request (RFC 6749 section 4.1.1, RFC 7636 section 4.3,
/// OpenID Connect Core section 3.1.2.1), in the query or, posted back, in the form.
#[derive(Debug, Default, Clone, Deserialize)]
struct AuthorizationRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    prompt: Option<String>,
}

impl AuthorizationRequest {
    /// The parameters, for the sign-in form's hidden fields.
    fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("nonce", &self.nonce),
            ("prompt", &self.prompt),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

/// The sign-in form: the authorization request and the credentials.
#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(flatten)]
    request: AuthorizationRequest,
    username: Option<String>,
    password: Option<String>,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
struct Authorization {
    client: OAuth2Client,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: String,
    nonce: Option<String>,
    ask_consent: bool,
}

/// Why an authorization request is refused.
#[derive(Debug)]
enum Refusal {
    /// Shown to the user: the client or its redirect URI cannot be trusted with a redirect.
    Page(StatusCode, String),
    /// Sent back to the client (RFC 6749 section 4.1.2.1).
    Redirect {
        client_name: String,
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

#[derive(Template)]
#[template(path = "oauth2/sign_in.html")]
struct SignInPage<'a> {
    client_name: &'a str,
    redirect_host: String,
    hidden: Vec<(&'static str, String)>,
    username: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "oauth2/consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    redirect_host: String,
    account: String,
    scopes: Vec<String>,
    ticket: String,
}

#[derive(Template)]
#[template(path = "oauth2/interstitial.html")]
struct InterstitialPage<'a> {
    client_name: &'a str,
    message: &'a str,
    continue_url: &'a str,
    redirect_host: String,
}

#[derive(Template)]
#[template(path = "oauth2/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// An HTML page with the headers every page of the provider has; `redirect_uri` is the one
/// place (besides this server) its forms may lead.
fn page(
    status: StatusCode,
    html: Result<String, askama::Error>,
    redirect_uri: Option<&str>,
) -> HttpResponse {
    let html = html.unwrap_or_else(|error| {
        tracing::error!(%error, "a page did not render");
        "<!doctype html><title>Error</title><p>An internal error occurred.</p>".to_owned()
    });
    let form_action = match redirect_uri.map(form_action_source) {
        Some(target) => format!("'self' {target}"),
        None => "'self'".to_owned(),
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
                 frame-ancestors 'none'; base-uri 'none'"
            ),
        ))
        .body(html)
}

/// The CSP source of a redirect URI: its origin, or its scheme for a private-use one.
fn form_action_source(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => "'none'".to_owned(),
    }
}

fn message(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page(
        status,
        MessagePage {
            title,
            message: text,
        }
        .render(),
        None,
    )
}

/// Where the user is sent back to, for the pages' small print.
fn host_of(redirect_uri: &str) -> String {
    url::Url::parse(redirect_uri)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(str::to_owned)
                .or_else(|| Some(u.scheme().to_owned()))
        })
        .unwrap_or_default()
}

/// `redirect_uri` with `params`, `state` and `iss` (RFC 9207) added; `None` when it does not
/// parse (registered URIs always do).
fn client_url(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    Some(url.into())
}

/// The redirect back to the client: `redirect_uri` with `params`, `state` and `iss` added.
fn back_to_client(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> HttpResponse {
    let Some(url) = client_url(redirect_uri, params, state, issuer) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "The application's redirect URI is not valid.",
        );
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

impl Provider {
    fn refused(&self, refusal: Refusal) -> HttpResponse {
        match refusal {
            Refusal::Page(status, text) => message(status, "Cannot continue", &text),
            Refusal::Redirect {
                client_name,
                redirect_uri,
                error,
                description,
                state,
            } => {
                let Some(url) = client_url(
                    &redirect_uri,
                    &[("error", error), ("error_description", &description)],
                    state.as_deref(),
                    &self.config.issuer,
                ) else {
                    return message(
                        StatusCode::BAD_REQUEST,
                        "Cannot continue",
                        "The application's redirect URI is not valid.",
                    );
                };
                let html = InterstitialPage {
                    client_name: &client_name,
                    message: &format!("{error}: {description}"),
                    continue_url: &url,
                    redirect_host: host_of(&redirect_uri),
                }
                .render();
                page(StatusCode::BAD_REQUEST, html, None)
            }
        }
    }

    /// Checks an authorization request (RFC 6749 section 4.1.1 with RFC 9700's choices).
    async fn check(&self, request: &AuthorizationRequest) -> Result<Authorization, Refusal> {
        let page = |text: &str| Refusal::Page(StatusCode::BAD_REQUEST, text.to_owned());
        let client_id = request
            .client_id
            .as_deref()
            .ok_or_else(|| page("The request names no application (client_id)."))?;
        let client = match self
            .accounts
            .users
            .get_oauth2_client_by_client_id(client_id)
            .await
        {
            Ok(client) if client.client_id != repo::accounts::FIRST_PARTY_CLIENT_ID => client,
            Ok(_) | Err(RepoError::NotFound { .. }) => {
                return Err(page("The application (client_id) is not registered here."));
            }
            Err(error) => {
                tracing::warn!(%error, "authorization: client look-up failed");
                return Err(Refusal::Page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is unavailable; try again in a moment.".into(),
                ));
            }
        };
        let redirect_uri = request
            .redirect_uri
            .clone()
            .ok_or_else(|| page("The request has no redirect_uri."))?;
        if !client.redirect_uris.contains(&redirect_uri) {
            return Err(page(
                "The redirect URI is not one the application registered; nothing is sent to it.",
            ));
        }
        let state = request.state.clone();
        let back = |error: &'static str, description: &str| Refusal::Redirect {
            client_name: client.name.clone(),
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: state.clone(),
        };
        if state
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_STATE_CHARS)
        {
            return Err(back(
                "invalid_request",
                "state is longer than 1024 characters",
            ));
        }
        match request.response_type.as_deref() {
            Some("code") => {}
            None => return Err(back("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(back(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
        }
        if !allows(&client, "authorization_code") {
            return Err(back(
                "unauthorized_client",
                "the client is not registered for the authorization_code grant",
            ));
        }
        let code_challenge = match (
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        ) {
            (Some(challenge), Some("S256")) if is_pkce_value(challenge) => challenge.to_owned(),
            (Some(_), Some("S256")) => {
                return Err(back("invalid_request", "code_challenge is malformed"));
            }
            (None, _) => {
                return Err(back(
                    "invalid_request",
                    "code_challenge is required (PKCE, RFC 7636)",
                ));
            }
            (Some(_), _) => {
                return Err(back(
                    "invalid_request",
                    "code_challenge_method must be S256",
                ));
            }
        };
        let scopes = parse_scope(request.scope.as_deref())
            .ok_or_else(|| back("invalid_scope", "scope is malformed"))?;
        if let Some(extra) = scopes.iter().find(|s| !client.scopes.contains(s)) {
            return Err(back(
                "invalid_scope",
                &format!("the client is not registered for the scope {extra}"),
            ));
        }
        let nonce = request.nonce.clone();
        if nonce
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NONCE_CHARS)
        {
            return Err(back(
                "invalid_request",
                "nonce is longer than 512 characters",
            ));
        }
        let prompts: Vec<&str> = request
            .prompt
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|p| !p.is_empty())
            .collect();
        if prompts.contains(&"none") {
            // No browser session is kept: the user must always sign in here.
            return Err(back("login_required", "the user must sign in"));
        }
        Ok(Authorization {
            client,
            redirect_uri,
            scopes: scopes.into_iter().collect(),
            state,
            code_challenge,
            nonce,
            ask_consent: prompts.contains(&"consent"),
        })
    }

    fn sign_in_page(
        &self,
        status: StatusCode,
        authorization: &Authorization,
        request: &AuthorizationRequest,
        username: &str,
        error: Option<String>,
    ) -> HttpResponse {
        let html = SignInPage {
            client_name: &authorization.client.name,
            redirect_host: host_of(&authorization.redirect_uri),
            hidden: request.fields(),
            username,
            error,
        }
        .render();
        page(status, html, Some(&authorization.redirect_uri))
    }

    /// Starts the grant and redirects back with its code.
    async fn grant(
        &self,
        authorization: &Authorization,
        user_id: UserId,
        auth_time: DateTime<Utc>,
        caller: &Caller,
    ) -> Result<HttpResponse, RepoError> {
        let now = Utc::now();
        let session_id = uuid::Uuid::now_v7();
        let max_age =
            chrono::Duration::from_std(self.accounts.config.session_max_age).unwrap_or_default();
        self.accounts
            .accounts
            .start_session(&repo::accounts::NewSession {
                id: session_id,
                user_id,
                client_id: authorization.client.client_id.clone(),
                // The grant's `auth_time`: every ID token of it says when the user signed in.
                created_at: auth_time,
                ip_address: caller.ip.clone(),
                user_agent: caller.user_agent.clone(),
                expires_at: now + max_age,
            })
            .await?;
        let code = SecretToken::generate();
        self.accounts
            .users
            .create_authorization_code(&OAuth2AuthorizationCode {
                code_hash: code.hash(),
                client_id: authorization.client.client_id.clone(),
                user_id,
                redirect_uri: authorization.redirect_uri.clone(),
                scopes: authorization.scopes.clone(),
                code_challenge: Some(authorization.code_challenge.clone()),
                code_challenge_method: Some("S256".into()),
                expires_at: now
                    + chrono::Duration::from_std(self.config.code_ttl).unwrap_or_default(),
                used_at: None,
                created_at: now,
                session_id: Some(session_id),
                nonce: authorization.nonce.clone(),
                auth_time: Some(auth_time),
            })
            .await?;
        self.accounts
            .audit(
                "authorization_code_issued",
                Some(&authorization.client.client_id),
                Some(user_id),
                caller,
                true,
                json!({"scope": scope_string(&authorization.scopes), "grant": session_id}),
            )
            .await;
        Ok(back_to_client(
            &authorization.redirect_uri,
            &[("code", code.expose())],
            authorization.state.as_deref(),
            &self.config.issuer,
        ))
    }

    /// The signed ticket of a consent page.
    fn ticket(&self, ticket: &Ticket) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(ticket).unwrap_or_default());
        let mut mac = self.ticket_mac();
        mac.update(body.as_bytes());
        format!(
            "{body}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The ticket's content when its signature is right and it has not expired.
    fn open_ticket(&self, ticket: &str) -> Option<Ticket> {
        let (body, signature) = ticket.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.ticket_mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let ticket: Ticket = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (ticket.expires_at > Utc::now().timestamp()).then_some(ticket)
    }

    fn ticket_mac(&self) -> hmac::Hmac<sha2::Sha256> {
        hmac::Hmac::<sha2::Sha256>::new_from_slice(
            &self.config.derived_key("oauth2 consent ticket"),
        )
        .expect("HMAC takes keys of any length")
    }

    async fn scope_descriptions(&self, scopes: &[String]) -> Vec<String> {
        let known = self
            .accounts
            .users
            .get_all_scopes()
            .await
            .unwrap_or_default();
        scopes
            .iter()
            .map(|scope| {
                known
                    .iter()
                    .find(|k| &k.name == scope)
                    .map_or_else(|| scope.clone(), |k| k.description.clone())
            })
            .collect()
    }
}

/// What a consent page's form carries back: the authorization and who signed in.
#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    /// Random: the ticket is spent by its first use.
    id: String,
    user_id: UserId,
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: String,
    nonce: Option<String>,
    auth_time: DateTime<Utc>,
    /// The password that signed in ([`crate::accounts::Authenticated::credential_fingerprint`]):
    /// a password change or reset since voids the ticket.
    credential: String,
    /// Seconds since the epoch.
    expires_at: i64,
}

/// `GET /oauth2/authorize`: checks the request and shows the sign-in page.
#[get("/oauth2/authorize")]
async fn authorize_page(provider: web::Data<Provider>, request: HttpRequest) -> HttpResponse {
    let parsed: AuthorizationRequest = match parse_form(request.query_string().as_bytes()) {
        Ok(parsed) => parsed,
        Err(error) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Cannot continue",
                &error.description,
            );
        }
    };
    match provider.check(&parsed).await {
        Ok(authorization) => {
            provider.sign_in_page(StatusCode::OK, &authorization, &parsed, "", None)
        }
        Err(refusal) => provider.refused(refusal),
    }
}

/// `POST /oauth2/authorize`: the sign-in form.
#[post("/oauth2/authorize")]
async fn sign_in(
    provider: web::Data<Provider>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match page_body(&request, payload).await {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let form: SignInForm = match parse_form(&body) {
        Ok(form) => form,
        Err(error) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Cannot continue",
                &error.description,
            );
        }
    };
    let authorization = match provider.check(&form.request).await {
        Ok(authorization) => authorization,
        Err(refusal) => return provider.refused(refusal),
    };
    let username = form.username.as_deref().unwrap_or_default().trim();
    let again = |status: StatusCode, text: &str| {
        provider.sign_in_page(
            status,
            &authorization,
            &form.request,
            username,
            Some(text.to_owned()),
        )
    };
    let identifier = if username.contains('@') {
        Email::parse(username).map(Identifier::Email)
    } else {
        Phone::parse(username).map(Identifier::Phone)
    };
    let Ok(identifier) = identifier else {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter your email address, or your phone number with its country code (+1…).",
        );
    };
    let password = form.password.as_deref().unwrap_or_default();
    let caller = provider.accounts.caller(&request);
    let who = match provider
        .accounts
        .authenticate(&identifier, password, &caller)
        .await
    {
        Ok(who) => who,
        Err(error) => {
            provider
                .accounts
                .audit(
                    "authorization_sign_in_failed",
                    Some(&authorization.client.client_id),
                    None,
                    &caller,
                    false,
                    json!({"error": error.code.as_str()}),
                )
                .await;
            let status = error.status();
            let retry_after = error.retry_after;
            let text = match error.code {
                ErrorCode::InvalidCredentials => {
                    "Wrong email, phone number or password.".to_owned()
                }
                _ => error.message,
            };
            let mut page = again(status, &text);
            if let Some(seconds) = retry_after {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            }
            return page;
        }
    };
    let user_id = who.user.id;
    if !authorization.ask_consent {
        let remembered = match provider
            .accounts
            .users
            .get_user_consent(user_id, &authorization.client.client_id)
            .await
        {
            Ok(consent) => authorization
                .scopes
                .iter()
                .all(|s| consent.scopes.contains(s)),
            Err(RepoError::NotFound { .. }) => false,
            Err(error) => return unavailable(&error),
        };
        if remembered {
            return provider
                .grant(&authorization, user_id, who.at, &caller)
                .await
                .unwrap_or_else(|e| unavailable(&e));
        }
    }
    let ticket = provider.ticket(&Ticket {
        id: SecretToken::generate().expose()[..32].to_owned(),
        user_id,
        client_id: authorization.client.client_id.clone(),
        redirect_uri: authorization.redirect_uri.clone(),
        scopes: authorization.scopes.clone(),
        state: authorization.state.clone(),
        code_challenge: authorization.code_challenge.clone(),
        nonce: authorization.nonce.clone(),
        auth_time: who.at,
        credential: who.credential_fingerprint().unwrap_or_default(),
        expires_at: Utc::now().timestamp()
            + i64::try_from(provider.config.consent_ttl.as_secs()).unwrap_or(600),
    });
    let account = who
        .user
        .email
        .as_ref()
        .map(|e| e.as_str().to_owned())
        .or_else(|| who.user.phone.as_ref().map(|p| p.as_str().to_owned()))
        .unwrap_or_default();
    let html = ConsentPage {
        client_name: &authorization.client.name,
        redirect_host: host_of(&authorization.redirect_uri),
        account,
        scopes: provider.scope_descriptions(&authorization.scopes).await,
        ticket,
    }
    .render();
    page(StatusCode::OK, html, Some(&authorization.redirect_uri))
}

/// The body of a page's form: `application/x-www-form-urlencoded` (what a browser sends; not
/// `text/plain`, which a form on another site could also send), uncompressed, at most 16 KiB,
/// arriving within 10 s. Refusals are pages too.
async fn page_body(
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, Box<HttpResponse>> {
    use futures::StreamExt as _;
    const LIMIT: usize = 16 * 1024;
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    let form = header(header::CONTENT_TYPE)
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let compressed =
        header(header::CONTENT_ENCODING).is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    if !form || compressed {
        return Err(Box::new(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Cannot continue",
            "The form was not sent as a browser sends it.",
        )));
    }
    let too_large = || {
        message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Cannot continue",
            "The form is too large.",
        )
    };
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| {
                Box::new(message(
                    StatusCode::BAD_REQUEST,
                    "Cannot continue",
                    "The form could not be read.",
                ))
            })?;
            if body.len() + chunk.len() > LIMIT {
                return Err(Box::new(too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| {
            Err(Box::new(message(
                StatusCode::REQUEST_TIMEOUT,
                "Cannot continue",
                "The form came too slowly.",
            )))
        })
}

/// Any other method on the pages' paths: 405 with `Allow`, as a page.
async fn page_method_not_allowed(request: HttpRequest) -> HttpResponse {
    let allow = if request.path() == "/oauth2/consent" {
        "POST"
    } else {
        "GET, HEAD, POST"
    };
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Cannot continue",
        "This page does not take that method.",
    );
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

fn unavailable(error: &RepoError) -> HttpResponse {
    tracing::warn!(%error, "authorization: database unavailable");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The service is unavailable; try again in a moment.",
    )
}

/// The consent form's answer.
#[derive(Debug, Deserialize)]
struct ConsentForm {
    ticket: Option<String>,
    decision: Option<String>,
}

/// `POST /oauth2/consent`: the user allows or denies.
#[post("/oauth2/consent")]
async fn consent_form(
    provider: web::Data<Provider>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match page_body(&request, payload).await {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let expired = || {
        message(
            StatusCode::BAD_REQUEST,
            "This page has expired",
            "Go back to the application and start again.",
        )
    };
    let Ok(form) = parse_form::<ConsentForm>(&body) else {
        return expired();
    };
    let Some(ticket) = form.ticket.as_deref().and_then(|t| provider.open_ticket(t)) else {
        return expired();
    };
    // One answer per consent page: a ticket used before (a second Allow, a Deny after an
    // Allow, a copy) is expired.
    match provider
        .accounts
        .accounts
        .spend_once(
            &format!("consent_ticket:{}", ticket.id),
            provider.config.consent_ttl,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return expired(),
        Err(error) => return unavailable(&error),
    }
    // The client may have changed since the page was shown.
    let authorization = AuthorizationRequest {
        response_type: Some("code".into()),
        client_id: Some(ticket.client_id.clone()),
        redirect_uri: Some(ticket.redirect_uri.clone()),
        scope: Some(scope_string(&ticket.scopes)),
        state: ticket.state.clone(),
        code_challenge: Some(ticket.code_challenge.clone()),
        code_challenge_method: Some("S256".into()),
        nonce: ticket.nonce.clone(),
        prompt: None,
    };
    let authorization = match provider.check(&authorization).await {
        Ok(authorization) => authorization,
        Err(refusal) => return provider.refused(refusal),
    };
    let caller = provider.accounts.caller(&request);
    match form.decision.as_deref() {
        Some("allow") => {}
        Some("deny") => {
            provider
                .accounts
                .audit(
                    "consent_denied",
                    Some(&ticket.client_id),
                    Some(ticket.user_id),
                    &caller,
                    true,
                    json!({"scope": scope_string(&ticket.scopes)}),
                )
                .await;
            return back_to_client(
                &authorization.redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the user denied the request"),
                ],
                authorization.state.as_deref(),
                &provider.config.issuer,
            );
        }
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Cannot continue",
                "Choose Allow or Deny.",
            );
        }
    }
    let users = &provider.accounts.users;
    // The account may have been deleted or suspended, or its password changed, since the
    // ticket was made: then the ticket is void.
    match users.get_user_with_credentials(ticket.user_id).await {
        Ok((user, credentials))
            if user.deleted_at.is_none()
                && user.status != domain::UserStatus::Suspended
                && credentials.iter().any(|c| {
                    c.invalidated_at.is_none()
                        && domain::TokenHash::of(&c.password_hash).as_str() == ticket.credential
                }) => {}
        Ok(_) | Err(RepoError::NotFound { .. }) => return expired(),
        Err(error) => return unavailable(&error),
    }
    // The consent covers what was granted before and what is granted now.
    let mut scopes = match users
        .get_user_consent(ticket.user_id, &ticket.client_id)
        .await
    {
        Ok(existing) => existing.scopes,
        Err(RepoError::NotFound { .. }) => Vec::new(),
        Err(error) => return unavailable(&error),
    };
    for scope in &ticket.scopes {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes.sort();
    if let Err(error) = users
        .create_user_consent(&OAuth2UserConsent {
            user_id: ticket.user_id,
            client_id: ticket.client_id.clone(),
            scopes: scopes.clone(),
            granted_at: Utc::now(),
            revoked_at: None,
        })
        .await
    {
        return unavailable(&error);
    }
    provider
        .accounts
        .audit(
            "consent_granted",
            Some(&ticket.client_id),
            Some(ticket.user_id),
            &caller,
            true,
            json!({"scope": scope_string(&scopes)}),
        )
        .await;
    provider
        .grant(&authorization, ticket.user_id, ticket.auth_time, &caller)
        .await
        .unwrap_or_else(|e| unavailable(&e))
}
