//! `/api/v1/oauth2/clients`: signed-in users register OAuth2 clients (RFC 6749 section 2) and
//! manage their own; `/api/v1/me/consents`: what the user has granted to clients, and taking it
//! back.
//!
//! A confidential client's secret (32 random bytes, 64 hexadecimal characters) is shown once,
//! at creation or rotation, and stored as its SHA-256. Redirect URIs follow RFC 8252 and RFC
//! 9700: `https`, `http` only to a loopback address, or a private-use scheme with a dot
//! (`com.example.app:/callback`); no fragment; matched exactly.

use std::collections::BTreeSet;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use domain::OAuth2Client;
use domain::accounts::SecretToken;
use repo::{RepoError, UserRepository as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{GRANT_TYPES, Provider};
use crate::accounts::SignedIn;
use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::json::Json;
use crate::reply::Reply;

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(create_client)
        .service(list_clients)
        .service(get_client)
        .service(update_client)
        .service(rotate_secret)
        .service(delete_client)
        .service(list_consents)
        .service(revoke_consent)
        .service(revoke_all_consents);
}

const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_CHARS: usize = 2000;
const MAX_NAME_CHARS: usize = 100;

/// Whether the client keeps a secret (RFC 6749 section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientType {
    /// A server that keeps a secret: authenticates at the token endpoint.
    Confidential,
    /// A browser or native app: no secret, PKCE only.
    Public,
}

/// A client to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada's dashboard", "client_type": "confidential", "redirect_uris": ["https://dashboard.example.com/callback"], "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "email", "offline_access"]}))]
pub(crate) struct NewClient {
    /// Shown to users on the consent page; 1 to 100 characters.
    name: String,
    client_type: ClientType,
    /// Exact redirect URIs (1 to 10 with `authorization_code`).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// Of `authorization_code`, `refresh_token`, `client_credentials`; `refresh_token` needs
    /// `authorization_code`, and `client_credentials` a confidential client.
    grant_types: Vec<String>,
    /// Of the scopes in the provider's metadata (`scopes_supported`).
    #[serde(default)]
    scopes: Vec<String>,
}

/// A client's new settings: everything but its type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada's dashboard", "redirect_uris": ["https://dashboard.example.com/callback"], "grant_types": ["authorization_code"], "scopes": ["openid"]}))]
pub(crate) struct ClientUpdate {
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// A registered client (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"client_id": "3f9a0c1e5b7d2a4f6e8c0b1d3f5a7c9e", "client_type": "confidential", "name": "Ada's dashboard", "redirect_uris": ["https://dashboard.example.com/callback"], "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "email"], "created_at": "2026-11-30T12:00:00Z", "updated_at": "2026-11-30T12:00:00Z"}))]
pub(crate) struct ClientView {
    client_id: String,
    client_type: ClientType,
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OAuth2Client> for ClientView {
    fn from(client: OAuth2Client) -> Self {
        Self {
            client_id: client.client_id,
            client_type: if client.is_confidential {
                ClientType::Confidential
            } else {
                ClientType::Public
            },
            name: client.name,
            redirect_uris: client.redirect_uris,
            grant_types: client.grant_types,
            scopes: client.scopes,
            created_at: client.created_at,
            updated_at: client.updated_at,
        }
    }
}

/// A client just registered: with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClientCreated {
    #[serde(flatten)]
    client: ClientView,
    /// Confidential clients only: 64 hexadecimal characters. Store it now; only its hash is
    /// kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// A new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"client_id": "3f9a0c1e5b7d2a4f6e8c0b1d3f5a7c9e", "client_secret": "9a0b…"}))]
pub(crate) struct NewSecret {
    client_id: String,
    /// 64 hexadecimal characters; the old secret no longer works.
    client_secret: String,
}

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::ClientNotFound,
        "no such client among the signed-in user's",
    )
}

/// The checked settings of a client.
struct Settings {
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scopes: Vec<String>,
}

impl Provider {
    /// Checks a client's settings against the rules above and the known scopes.
    async fn settings(
        &self,
        confidential: bool,
        name: &str,
        redirect_uris: &[String],
        grant_types: &[String],
        scopes: &[String],
    ) -> Result<Settings, ApiError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name
                .chars()
                .any(|c| c.is_control() || is_invisible_format(c))
        {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "1 to {MAX_NAME_CHARS} characters, no control, direction or invisible characters"
                ),
            ));
        }
        let mut grants = BTreeSet::new();
        for (i, grant) in grant_types.iter().enumerate() {
            if !GRANT_TYPES.contains(&grant.as_str()) {
                return Err(ApiError::invalid(
                    format!("grant_types[{i}]"),
                    "one of authorization_code, refresh_token, client_credentials",
                ));
            }
            grants.insert(grant.clone());
        }
        if grants.is_empty() {
            return Err(ApiError::invalid("grant_types", "at least one grant type"));
        }
        if grants.contains("refresh_token") && !grants.contains("authorization_code") {
            return Err(ApiError::invalid(
                "grant_types",
                "refresh_token comes with authorization_code",
            ));
        }
        if grants.contains("client_credentials") && !confidential {
            return Err(ApiError::invalid(
                "grant_types",
                "client_credentials needs a confidential client",
            ));
        }
        let mut uris = Vec::new();
        for (i, uri) in redirect_uris.iter().enumerate() {
            check_redirect_uri(uri)
                .map_err(|m| ApiError::invalid(format!("redirect_uris[{i}]"), m))?;
            if !uris.contains(uri) {
                uris.push(uri.clone());
            }
        }
        if grants.contains("authorization_code") && uris.is_empty() {
            return Err(ApiError::invalid(
                "redirect_uris",
                "authorization_code needs at least one redirect URI",
            ));
        }
        if uris.len() > MAX_REDIRECT_URIS {
            return Err(ApiError::invalid(
                "redirect_uris",
                format!("at most {MAX_REDIRECT_URIS}"),
            ));
        }
        let known = self.accounts.users.get_all_scopes().await?;
        let mut granted = BTreeSet::new();
        for (i, scope) in scopes.iter().enumerate() {
            if !known.iter().any(|k| &k.name == scope) {
                return Err(ApiError::invalid(
                    format!("scopes[{i}]"),
                    "not a scope of this provider (see scopes_supported)",
                ));
            }
            if crate::access::scopes::PRIVILEGED.contains(&scope.as_str()) {
                return Err(ApiError::invalid(
                    format!("scopes[{i}]"),
                    "a service scope: only a platform admin gives it, with `platform-admin create-client`",
                ));
            }
            granted.insert(scope.clone());
        }
        Ok(Settings {
            name: name.to_owned(),
            redirect_uris: uris,
            grant_types: grants.into_iter().collect(),
            scopes: granted.into_iter().collect(),
        })
    }

    /// The signed-in user's client `client_id`; 404 for anyone else's.
    async fn own_client(&self, who: SignedIn, client_id: &str) -> Result<OAuth2Client, ApiError> {
        match self
            .accounts
            .users
            .get_oauth2_client_by_client_id(client_id)
            .await
        {
            Ok(client) if client.owner_user_id == Some(who.user_id) => Ok(client),
            Ok(_) | Err(RepoError::NotFound { .. }) => Err(not_found()),
            Err(other) => Err(other.into()),
        }
    }
}

/// Format characters that change how a name reads without showing: direction overrides and
/// isolates (a name could show reversed on the consent page), zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A redirect URI as RFC 9700 section 2.1 and RFC 8252 sections 7.1 to 7.3 allow.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI_CHARS {
        return Err("at most 2000 characters");
    }
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err("a redirect URI has no fragment");
    }
    // `https://good.example@evil.example/` reads as one host and goes to another.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a redirect URI has no user name or password");
    }
    if parsed.as_str() != uri && parsed.as_str() != format!("{uri}/") {
        // Matched exactly later: what is registered must be what clients send.
        return Err("write the URI in its normal form (as a URL parser prints it)");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err("http only to a loopback address; use https"),
        },
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            Err("not a scheme a redirect may use")
        }
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(
            "https, http to a loopback address, or a private-use scheme such as com.example.app",
        ),
    }
}

/// Register an OAuth2 client.
///
/// The signed-in user owns it. A confidential client's `client_secret` is in this answer only.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "createOAuth2Client",
    security(("bearer" = [])),
    request_body = NewClient,
    responses(
        (status = 201, description = "Registered; `Location` is its path", body = ClientCreated),
        (status = 401, description = "Not signed in (`unauthenticated`, `invalid_token`)", body = ErrorBody),
    )
)]
#[post("/api/v1/oauth2/clients")]
async fn create_client(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
    body: Json<NewClient>,
) -> Result<Reply<ClientCreated>, ApiError> {
    let body = body.into_inner();
    let confidential = body.client_type == ClientType::Confidential;
    let settings = provider
        .settings(
            confidential,
            &body.name,
            &body.redirect_uris,
            &body.grant_types,
            &body.scopes,
        )
        .await?;
    let secret = confidential.then(SecretToken::generate);
    let client_id = SecretToken::generate().expose()[..32].to_owned();
    let now = Utc::now();
    let client = provider
        .accounts
        .users
        .create_oauth2_client(&OAuth2Client {
            id: uuid::Uuid::now_v7(),
            client_id,
            client_secret_hash: secret.as_ref().map(SecretToken::hash),
            name: settings.name,
            redirect_uris: settings.redirect_uris,
            grant_types: settings.grant_types,
            scopes: settings.scopes,
            owner_user_id: Some(who.user_id),
            is_confidential: confidential,
            created_at: now,
            updated_at: now,
        })
        .await?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "client_created",
            Some(&client.client_id),
            Some(who.user_id),
            &caller,
            true,
            json!({"grant_types": client.grant_types, "scopes": client.scopes, "redirect_uris": client.redirect_uris}),
        )
        .await;
    let location = format!("/api/v1/oauth2/clients/{}", client.client_id);
    Ok(Reply::created(ClientCreated {
        client: client.into(),
        client_secret: secret.map(|s| s.expose().to_owned()),
    })
    .at(location)
    .no_store()
    .for_user(who.user_id.to_string()))
}

/// The signed-in user's clients (`GetOAuth2ClientsByOwner`).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "listOAuth2Clients",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's clients, oldest first", body = Vec<ClientView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
#[get("/api/v1/oauth2/clients")]
async fn list_clients(
    provider: web::Data<Provider>,
    who: SignedIn,
) -> Result<Reply<Vec<ClientView>>, ApiError> {
    let clients = provider
        .accounts
        .users
        .get_oauth2_clients_by_owner(who.user_id)
        .await?;
    Ok(Reply::ok(clients.into_iter().map(ClientView::from).collect()).no_store())
}

/// One of the signed-in user's clients.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "getOAuth2Client",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such client of this user (`client_not_found`)", body = ErrorBody),
    )
)]
#[get("/api/v1/oauth2/clients/{client_id}")]
async fn get_client(
    provider: web::Data<Provider>,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<Reply<ClientView>, ApiError> {
    let client = provider.own_client(who, &path).await?;
    Ok(Reply::ok(client.into()).no_store())
}

/// Change a client's name, redirect URIs, grant types and scopes (`UpdateOAuth2Client`).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "updateOAuth2Client",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    request_body = ClientUpdate,
    responses(
        (status = 200, description = "The client as it is now", body = ClientView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such client of this user (`client_not_found`)", body = ErrorBody),
    )
)]
#[put("/api/v1/oauth2/clients/{client_id}")]
async fn update_client(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
    path: web::Path<String>,
    body: Json<ClientUpdate>,
) -> Result<Reply<ClientView>, ApiError> {
    let body = body.into_inner();
    let mut client = provider.own_client(who, &path).await?;
    let settings = provider
        .settings(
            client.is_confidential,
            &body.name,
            &body.redirect_uris,
            &body.grant_types,
            &body.scopes,
        )
        .await?;
    client.name = settings.name;
    client.redirect_uris = settings.redirect_uris;
    client.grant_types = settings.grant_types;
    client.scopes = settings.scopes;
    let client = provider
        .accounts
        .users
        .update_oauth2_client(&client)
        .await
        .map_err(|e| match e {
            RepoError::NotFound { .. } => not_found(),
            other => other.into(),
        })?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "client_updated",
            Some(&client.client_id),
            Some(who.user_id),
            &caller,
            true,
            json!({"grant_types": client.grant_types, "scopes": client.scopes, "redirect_uris": client.redirect_uris}),
        )
        .await;
    Ok(Reply::ok(client.into()).no_store())
}

/// Replace a confidential client's secret (`RegenerateClientSecret`); the old one stops
/// working at once.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "rotateOAuth2ClientSecret",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 200, description = "The new secret, shown this once", body = NewSecret),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such client of this user (`client_not_found`)", body = ErrorBody),
        (status = 422, description = "A public client has no secret (`validation_failed`)", body = ErrorBody),
    )
)]
#[post("/api/v1/oauth2/clients/{client_id}/secret")]
async fn rotate_secret(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<Reply<NewSecret>, ApiError> {
    let client = provider.own_client(who, &path).await?;
    if !client.is_confidential {
        return Err(ApiError::invalid(
            "client_id",
            "a public client has no secret",
        ));
    }
    let secret = SecretToken::generate();
    provider
        .accounts
        .users
        .regenerate_client_secret(&client.client_id, &secret.hash())
        .await?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "client_secret_rotated",
            Some(&client.client_id),
            Some(who.user_id),
            &caller,
            true,
            json!({}),
        )
        .await;
    Ok(Reply::ok(NewSecret {
        client_id: client.client_id,
        client_secret: secret.expose().to_owned(),
    })
    .no_store())
}

/// Delete a client, with every code, token, grant and consent of it.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "deleteOAuth2Client",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such client of this user (`client_not_found`)", body = ErrorBody),
    )
)]
#[delete("/api/v1/oauth2/clients/{client_id}")]
async fn delete_client(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let client = provider.own_client(who, &path).await?;
    provider
        .accounts
        .users
        .delete_oauth2_client(&client.client_id)
        .await
        .map_err(|e| match e {
            RepoError::NotFound { .. } => not_found(),
            other => other.into(),
        })?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "client_deleted",
            Some(&client.client_id),
            Some(who.user_id),
            &caller,
            true,
            json!({"name": client.name}),
        )
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// A consent the user gave a client.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"client_id": "3f9a0c1e5b7d2a4f6e8c0b1d3f5a7c9e", "client_name": "Ada's dashboard", "scopes": ["email", "openid"], "granted_at": "2026-11-30T12:00:00Z"}))]
pub(crate) struct ConsentView {
    client_id: String,
    /// The client's name (empty when the client was deleted meanwhile).
    client_name: String,
    scopes: Vec<String>,
    granted_at: DateTime<Utc>,
}

/// The clients the signed-in user has consented to (`GetUserConsents`).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "listConsents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live consents", body = Vec<ConsentView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
#[get("/api/v1/me/consents")]
async fn list_consents(
    provider: web::Data<Provider>,
    who: SignedIn,
) -> Result<Reply<Vec<ConsentView>>, ApiError> {
    let users = &provider.accounts.users;
    let consents = users.get_user_consents(who.user_id).await?;
    let mut views = Vec::with_capacity(consents.len());
    for consent in consents.into_iter().filter(|c| c.revoked_at.is_none()) {
        let client_name = match users
            .get_oauth2_client_by_client_id(&consent.client_id)
            .await
        {
            Ok(client) => client.name,
            Err(RepoError::NotFound { .. }) => String::new(),
            Err(other) => return Err(other.into()),
        };
        views.push(ConsentView {
            client_id: consent.client_id,
            client_name,
            scopes: consent.scopes,
            granted_at: consent.granted_at,
        });
    }
    Ok(Reply::ok(views).no_store())
}

/// Withdraw the consent given to a client (`RevokeUserConsent`); its tokens are revoked, and
/// its next authorization asks again.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "revokeConsent",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client's `client_id`")),
    responses(
        (status = 204, description = "Withdrawn, the client's tokens revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No live consent to this client (`consent_not_found`)", body = ErrorBody),
    )
)]
#[delete("/api/v1/me/consents/{client_id}")]
async fn revoke_consent(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let users = &provider.accounts.users;
    match users.get_user_consent(who.user_id, &path).await {
        Ok(_) => {}
        Err(RepoError::NotFound { .. }) => {
            return Err(ApiError::new(
                ErrorCode::ConsentNotFound,
                "no live consent to this client",
            ));
        }
        Err(other) => return Err(other.into()),
    }
    // The grants first: if withdrawing the consent then fails, asking again repeats both.
    let grants = provider
        .accounts
        .accounts
        .revoke_client_grants(who.user_id, &path, "consent_revoked")
        .await?;
    users.revoke_user_consent(who.user_id, &path).await?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "consent_revoked",
            Some(&path),
            Some(who.user_id),
            &caller,
            true,
            json!({"grants_revoked": grants}),
        )
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// How many consents were withdrawn.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsentsRevoked {
    revoked: u64,
}

/// Withdraw every consent (`RevokeAllUserConsents`) and revoke every client's tokens.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "revokeAllConsents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many consents were withdrawn", body = ConsentsRevoked),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
#[delete("/api/v1/me/consents")]
async fn revoke_all_consents(
    provider: web::Data<Provider>,
    request: HttpRequest,
    who: SignedIn,
) -> Result<Reply<ConsentsRevoked>, ApiError> {
    let users = &provider.accounts.users;
    let consents = users.get_user_consents(who.user_id).await?;
    // The grants first: if withdrawing the consents then fails, asking again repeats both.
    for consent in &consents {
        provider
            .accounts
            .accounts
            .revoke_client_grants(who.user_id, &consent.client_id, "consent_revoked")
            .await?;
    }
    let revoked = users.revoke_all_user_consents(who.user_id).await?;
    let caller = provider.accounts.caller(&request);
    provider
        .accounts
        .audit(
            "consents_revoked",
            None,
            Some(who.user_id),
            &caller,
            true,
            json!({"revoked": revoked}),
        )
        .await;
    Ok(Reply::ok(ConsentsRevoked { revoked }).no_store())
}

#[cfg(test)]
mod tests {
    use super::check_redirect_uri;

    #[test]
    fn redirect_uris_follow_rfc_8252_and_the_security_bcp() {
        for good in [
            "https://app.example.com/callback",
            "http://127.0.0.1:8123/callback",
            "http://[::1]:8123/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "http://app.example.com/callback",
            "https://app.example.com/cb#frag",
            "/relative",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
            "https://APP.example.com/cb",
            "https://good.example.com@evil.example/cb",
            "https://user:pass@app.example.com/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
