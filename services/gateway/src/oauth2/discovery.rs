//! The provider's metadata: OpenID Connect Discovery 1.0 at
//! `/.well-known/openid-configuration`, and the same document as RFC 8414 authorization server
//! metadata at `/.well-known/oauth-authorization-server`.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{GRANT_TYPES, Provider};

pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .service(openid_configuration)
        .service(authorization_server_metadata);
}

/// The provider's metadata (RFC 8414 section 2, OpenID Connect Discovery section 3).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Metadata {
    /// `OAUTH2_ISSUER`: the `iss` of every ID token.
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    scopes_supported: Vec<String>,
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    grant_types_supported: Vec<&'static str>,
    code_challenge_methods_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<&'static str>,
    claims_supported: Vec<&'static str>,
    /// The authorization response carries `iss` (RFC 9207).
    authorization_response_iss_parameter_supported: bool,
}

impl Provider {
    async fn metadata(&self) -> Result<Metadata, crate::errors::ApiError> {
        use repo::UserRepository as _;
        let scopes = self.accounts.users.get_all_scopes().await?;
        let url = |path: &str| self.config.url(path);
        Ok(Metadata {
            issuer: self.config.issuer.clone(),
            authorization_endpoint: url("/oauth2/authorize"),
            token_endpoint: url("/oauth2/token"),
            revocation_endpoint: url("/oauth2/revoke"),
            introspection_endpoint: url("/oauth2/introspect"),
            userinfo_endpoint: url("/oauth2/userinfo"),
            jwks_uri: url("/oauth2/jwks"),
            // The scopes a client may ask for (RFC 8414 lets a server leave some out): not the
            // service scopes and `admin`, which only platform-admin gives.
            scopes_supported: scopes
                .into_iter()
                .map(|s| s.name)
                .filter(|s| !crate::access::scopes::PRIVILEGED.contains(&s.as_str()))
                .collect(),
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            grant_types_supported: GRANT_TYPES.to_vec(),
            code_challenge_methods_supported: vec!["S256"],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            revocation_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec!["RS256"],
            claims_supported: vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "azp",
                "at_hash",
                "email",
                "email_verified",
                "phone_number",
                "phone_number_verified",
            ],
            authorization_response_iss_parameter_supported: true,
        })
    }
}

fn metadata_answer(metadata: Metadata) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata)
}

/// OpenID Connect Discovery: the provider's endpoints and what it supports.
#[utoipa::path(
    tag = "oauth2",
    operation_id = "openidConfiguration",
    responses((status = 200, description = "The provider's metadata", body = Metadata))
)]
#[get("/.well-known/openid-configuration")]
async fn openid_configuration(
    provider: web::Data<Provider>,
) -> Result<HttpResponse, crate::errors::ApiError> {
    Ok(metadata_answer(provider.metadata().await?))
}

/// RFC 8414 authorization server metadata (the same document as OpenID Connect Discovery's).
#[utoipa::path(
    tag = "oauth2",
    operation_id = "authorizationServerMetadata",
    responses((status = 200, description = "The authorization server's metadata", body = Metadata))
)]
#[get("/.well-known/oauth-authorization-server")]
async fn authorization_server_metadata(
    provider: web::Data<Provider>,
) -> Result<HttpResponse, crate::errors::ApiError> {
    Ok(metadata_answer(provider.metadata().await?))
}
