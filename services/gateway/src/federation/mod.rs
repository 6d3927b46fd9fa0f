//! Sign-in with other OpenID Connect providers (the repository's OAuth accounts): this gateway
//! as a relying party (OpenID Connect Core 1.0, authorization code flow, with PKCE).
//!
//! - **Providers** are configured (`OIDC_PROVIDERS` and `OIDC_PROVIDER_<NAME>_*`); each one's
//!   metadata is read from its discovery document on first use, its JWKS when a key is needed
//!   (again when an ID token names a key it does not have).
//! - **The flow** starts with a redirect carrying `state`, `nonce` and an S256 code challenge;
//!   what the callback needs (the verifier, the nonce, who is linking) travels in a cookie
//!   sealed with AES-256-GCM under a key derived from `OAUTH2_KEY_SECRET`. The cookie binds the
//!   flow to the browser that started it: a callback URL opened elsewhere is refused (no login
//!   CSRF). The callback clears it; the provider's code it carried the browser back with is
//!   single-use at the provider.
//! - **The ID token** is checked as Core section 3.1.3.7 says: RS256 signature by a key of the
//!   provider's JWKS, `iss`, `aud` (and `azp`), `exp`, `iat` and `nonce`.
//! - **Accounts**: a provider account already linked signs its user in. An unknown one creates
//!   a user (the provider's email, verified if the provider says so, no usable password) unless
//!   the email is an existing account's: that user signs in with their password and links the
//!   provider from `/me`. Provider tokens are kept only as hashes (`UpdateOAuthTokens`).

pub(crate) mod routes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde::Deserialize;
use serde_json::Value;
use service_runtime::{ConfigError, Env};
use tokio::sync::RwLock;

/// How long a provider's metadata is kept before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A JWKS is fetched again for an unknown key at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Clock difference allowed on `exp` and `iat`.
const CLOCK_SKEW: i64 = 60;

/// One provider's settings:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `OIDC_PROVIDERS` | empty | comma-separated names (`[a-z0-9-]`, up to 32) of the providers users may sign in with |
/// | `OIDC_PROVIDER_<NAME>_ISSUER` | required | the provider's issuer; its `/.well-known/openid-configuration` is read |
/// | `OIDC_PROVIDER_<NAME>_CLIENT_ID`, `…_CLIENT_SECRET` | required | this gateway's client at the provider (`client_secret_basic`) |
/// | `OIDC_PROVIDER_<NAME>_SCOPES` | `openid email` | the scopes asked |
/// | `OIDC_PROVIDER_<NAME>_DISPLAY_NAME` | the name | shown to users |
///
/// `<NAME>` is the name upper-cased, `-` as `_`. The redirect URI to register at the provider is
/// `<OAUTH2_ISSUER>/api/v1/auth/providers/<name>/callback`.
#[derive(Clone)]
pub(crate) struct ProviderConfig {
    pub(crate) name: String,
    pub(crate) display_name: String,
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    client_secret: secrecy::SecretString,
    pub(crate) scopes: String,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The configured providers, in the order given.
pub(crate) fn providers_from_env(env: &Env) -> Result<Vec<ProviderConfig>, ConfigError> {
    let names = env.string("OIDC_PROVIDERS", "");
    let mut providers: Vec<ProviderConfig> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid || providers.iter().any(|p| p.name == name) {
            return Err(ConfigError::Invalid {
                name: "OIDC_PROVIDERS".into(),
                value: names.clone(),
                reason: format!("{name:?}: names are distinct, of a-z, 0-9 and -, up to 32"),
            });
        }
        let var = |suffix: &str| {
            format!(
                "OIDC_PROVIDER_{}_{suffix}",
                name.to_ascii_uppercase().replace('-', "_")
            )
        };
        let issuer = env.required(&var("ISSUER"))?;
        let issuer = issuer.trim().trim_end_matches('/').to_owned();
        if url::Url::parse(&issuer).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::Invalid {
                name: var("ISSUER"),
                value: issuer,
                reason: "an http(s) URL".into(),
            });
        }
        providers.push(ProviderConfig {
            name: name.to_owned(),
            display_name: env.string(&var("DISPLAY_NAME"), name),
            issuer,
            client_id: env.required(&var("CLIENT_ID"))?,
            client_secret: env.required_secret(&var("CLIENT_SECRET"))?,
            scopes: env.string(&var("SCOPES"), "openid email"),
        });
    }
    Ok(providers)
}

/// What this gateway needs of a provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    /// RFC 9207: the provider names itself in every authorization response.
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Why a provider could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// It cannot be reached, or answers 5xx: try again later.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// It answered, but not as OpenID Connect allows (or refused the code).
    #[error("{0}")]
    Refused(String),
}

/// The claims this gateway takes from a verified ID token (and `userinfo`).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) email: Option<String>,
    pub(crate) email_verified: bool,
    pub(crate) claims: Value,
}

/// The provider's tokens of a sign-in (kept only as hashes).
#[derive(Debug)]
pub(crate) struct ProviderTokens {
    pub(crate) access_token: Option<String>,
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: Option<i64>,
}

/// A configured provider, with what was read from it.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) config: ProviderConfig,
    metadata: RwLock<Option<(Metadata, Instant)>>,
    jwks: RwLock<Option<(Value, Instant)>>,
    http: reqwest::Client,
}

impl Upstream {
    pub(crate) fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            metadata: RwLock::new(None),
            jwks: RwLock::new(None),
            http,
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, UpstreamError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(UpstreamError::Unavailable(format!("GET {url}: {status}")));
        }
        if !status.is_success() {
            return Err(UpstreamError::Refused(format!("GET {url}: {status}")));
        }
        response
            .json()
            .await
            .map_err(|e| UpstreamError::Refused(format!("GET {url}: not JSON: {e}")))
    }

    async fn metadata(&self) -> Result<Metadata, UpstreamError> {
        if let Some((metadata, at)) = self.metadata.read().await.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let metadata: Metadata = serde_json::from_value(self.get_json(&url).await?)
            .map_err(|e| UpstreamError::Refused(format!("{url}: {e}")))?;
        // OpenID Connect Discovery section 4.3: the document is the issuer's own.
        if metadata.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(UpstreamError::Refused(format!(
                "{url} names the issuer {}, not {}",
                metadata.issuer, self.config.issuer
            )));
        }
        *self.metadata.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// The provider's authorization URL for a flow.
    pub(crate) async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, UpstreamError> {
        let metadata = self.metadata().await?;
        let mut url = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| UpstreamError::Refused(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.config.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Checks the `iss` of an authorization response (RFC 9207): when present it must be the
    /// provider's issuer, and a provider that promises it must send it (a response from
    /// another provider the browser was sent to is refused: mix-up attacks).
    pub(crate) async fn check_response_issuer(
        &self,
        iss: Option<&str>,
    ) -> Result<(), UpstreamError> {
        let metadata = self.metadata().await?;
        match iss {
            Some(iss) if iss.trim_end_matches('/') == metadata.issuer.trim_end_matches('/') => {
                Ok(())
            }
            Some(_) => Err(UpstreamError::Refused(
                "the authorization response names another issuer".into(),
            )),
            None if metadata.authorization_response_iss_parameter_supported => Err(
                UpstreamError::Refused("the authorization response has no iss".into()),
            ),
            None => Ok(()),
        }
    }

    /// Exchanges the code (client_secret_basic, PKCE) and verifies the ID token.
    pub(crate) async fn redeem(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(Identity, ProviderTokens), UpstreamError> {
        use secrecy::ExposeSecret as _;
        let metadata = self.metadata().await?;
        // RFC 6749 section 2.3.1: both halves form-urlencoded before Basic encoding.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(
                encode(&self.config.client_id),
                Some(encode(self.config.client_secret.expose_secret())),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {e}")))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(UpstreamError::Unavailable(format!(
                "token endpoint: {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| UpstreamError::Refused(format!("token endpoint: not JSON: {e}")))?;
        if !status.is_success() {
            return Err(UpstreamError::Refused(format!(
                "token endpoint refused the code: {status} {}",
                body.get("error").and_then(Value::as_str).unwrap_or("")
            )));
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| UpstreamError::Refused("the token answer has no id_token".into()))?;
        let claims = self.verify_id_token(&metadata, id_token, nonce).await?;
        let tokens = ProviderTokens {
            access_token: body["access_token"].as_str().map(str::to_owned),
            refresh_token: body["refresh_token"].as_str().map(str::to_owned),
            expires_in: body["expires_in"].as_i64(),
        };
        let mut identity = Identity {
            subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
            email: claims["email"].as_str().map(str::to_owned),
            email_verified: claims["email_verified"].as_bool().unwrap_or(false),
            claims,
        };
        // A provider may give the email only at userinfo (OpenID Connect Core section 5.4).
        if identity.email.is_none()
            && let (Some(userinfo), Some(access)) =
                (&metadata.userinfo_endpoint, &tokens.access_token)
        {
            let info: Value = self
                .http
                .get(userinfo)
                .bearer_auth(access)
                .send()
                .await
                .map_err(|e| UpstreamError::Unavailable(format!("userinfo: {e}")))?
                .json()
                .await
                .map_err(|e| UpstreamError::Refused(format!("userinfo: not JSON: {e}")))?;
            // Core section 5.3.2: userinfo's sub must be the ID token's.
            if info["sub"].as_str() == Some(identity.subject.as_str()) {
                identity.email = info["email"].as_str().map(str::to_owned);
                identity.email_verified = info["email_verified"].as_bool().unwrap_or(false);
            }
        }
        Ok((identity, tokens))
    }

    /// The key `kid` of the provider's JWKS (fetched again, rate-limited, when unknown).
    async fn key(&self, metadata: &Metadata, kid: Option<&str>) -> Result<Value, UpstreamError> {
        let find = |jwks: &Value| -> Option<Value> {
            let keys = jwks["keys"].as_array()?;
            let usable = keys.iter().filter(|k| {
                k["kty"] == "RSA"
                    && k.get("use").is_none_or(|u| u == "sig")
                    && k.get("alg").is_none_or(|a| a == "RS256")
            });
            match kid {
                Some(kid) => usable.into_iter().find(|k| k["kid"] == kid).cloned(),
                None => {
                    let all: Vec<&Value> = usable.collect();
                    (all.len() == 1).then(|| all[0].clone())
                }
            }
        };
        let fresh_enough = {
            let cached = self.jwks.read().await;
            if let Some((jwks, _)) = cached.as_ref()
                && let Some(key) = find(jwks)
            {
                return Ok(key);
            }
            cached
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < JWKS_REFETCH)
        };
        if fresh_enough {
            return Err(UpstreamError::Refused(
                "the ID token's key is not in the JWKS".into(),
            ));
        }
        let jwks = self.get_json(&metadata.jwks_uri).await?;
        let key = find(&jwks);
        *self.jwks.write().await = Some((jwks, Instant::now()));
        key.ok_or_else(|| UpstreamError::Refused("the ID token's key is not in the JWKS".into()))
    }

    /// The claims of a valid ID token (OpenID Connect Core section 3.1.3.7).
    async fn verify_id_token(
        &self,
        metadata: &Metadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<Value, UpstreamError> {
        let refused = |why: &str| UpstreamError::Refused(format!("ID token: {why}"));
        let mut parts = id_token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("not a JWS in compact form"));
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| refused("not base64url"))
        };
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| refused("header is not JSON"))?;
        if header["alg"] != "RS256" {
            return Err(refused("only RS256 is accepted"));
        }
        let key = self.key(metadata, header["kid"].as_str()).await?;
        let signed = id_token.len() - signature.len() - 1;
        if !verify_rs256(&key, &id_token.as_bytes()[..signed], &decode(signature)?) {
            return Err(refused("the signature does not verify"));
        }
        let claims: Value = serde_json::from_slice(&decode(payload)?)
            .map_err(|_| refused("claims are not JSON"))?;
        let now = Utc::now().timestamp();
        let client_id = self.config.client_id.as_str();
        let audience_ok = match &claims["aud"] {
            Value::String(aud) => aud == client_id,
            Value::Array(auds) => {
                auds.iter().any(|a| a == client_id)
                    && (auds.len() == 1 || claims["azp"] == client_id)
            }
            _ => false,
        };
        let checks: BTreeMap<&str, bool> = BTreeMap::from([
            (
                "iss",
                claims["iss"].as_str().map(|i| i.trim_end_matches('/'))
                    == Some(metadata.issuer.trim_end_matches('/')),
            ),
            ("aud", audience_ok),
            ("azp", claims.get("azp").is_none_or(|azp| azp == client_id)),
            (
                "exp",
                claims["exp"]
                    .as_i64()
                    .is_some_and(|exp| exp + CLOCK_SKEW > now),
            ),
            (
                "iat",
                claims["iat"]
                    .as_i64()
                    .is_some_and(|iat| iat - CLOCK_SKEW < now),
            ),
            ("nonce", claims["nonce"].as_str() == Some(nonce)),
            (
                "sub",
                claims["sub"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.len() <= 255),
            ),
        ]);
        if let Some((claim, _)) = checks.iter().find(|(_, ok)| !**ok) {
            return Err(refused(&format!("{claim} is missing or wrong")));
        }
        Ok(claims)
    }
}

/// Whether `signature` is an RS256 signature of `input` by the RSA JWK `key`.
fn verify_rs256(key: &Value, input: &[u8], signature: &[u8]) -> bool {
    let component = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .and_then(|bytes| BigNum::from_slice(&bytes).ok())
    };
    let (Some(n), Some(e)) = (component("n"), component("e")) else {
        return false;
    };
    let verified = (|| -> Result<bool, openssl::error::ErrorStack> {
        let public = PKey::from_rsa(Rsa::from_public_components(n, e)?)?;
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public)?;
        verifier.update(input)?;
        verifier.verify(signature)
    })();
    verified.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_read_from_their_variables() {
        let env = Env::from_pairs([
            ("OIDC_PROVIDERS", "corp, upstream-2"),
            ("OIDC_PROVIDER_CORP_ISSUER", "https://id.corp.example/"),
            ("OIDC_PROVIDER_CORP_CLIENT_ID", "gw"),
            ("OIDC_PROVIDER_CORP_CLIENT_SECRET", "s3cret"),
            ("OIDC_PROVIDER_UPSTREAM_2_ISSUER", "http://127.0.0.1:9000"),
            ("OIDC_PROVIDER_UPSTREAM_2_CLIENT_ID", "gw2"),
            ("OIDC_PROVIDER_UPSTREAM_2_CLIENT_SECRET", "s3cret2"),
            ("OIDC_PROVIDER_UPSTREAM_2_DISPLAY_NAME", "Upstream"),
        ]);
        let providers = providers_from_env(&env).unwrap();
        assert_eq!(providers.len(), 2);
        assert_eq!(providers[0].issuer, "https://id.corp.example");
        assert_eq!(providers[0].display_name, "corp");
        assert_eq!(providers[0].scopes, "openid email");
        assert_eq!(providers[1].display_name, "Upstream");
        assert!(
            providers_from_env(&Env::from_pairs::<&str, &str>([]))
                .unwrap()
                .is_empty()
        );
        for bad in ["Corp", "a,a", "a_b"] {
            let env = Env::from_pairs([("OIDC_PROVIDERS", bad)]);
            assert!(providers_from_env(&env).is_err(), "{bad}");
        }
        let missing = Env::from_pairs([("OIDC_PROVIDERS", "corp")]);
        let error = providers_from_env(&missing).unwrap_err().to_string();
        assert!(error.contains("OIDC_PROVIDER_CORP_ISSUER"), "{error}");
    }

    #[test]
    fn rs256_signatures_verify_only_with_their_key_and_input() {
        let rsa = Rsa::generate(2048).unwrap();
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        });
        let private = PKey::from_rsa(rsa).unwrap();
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &private).unwrap();
        signer.update(b"header.payload").unwrap();
        let signature = signer.sign_to_vec().unwrap();
        assert!(verify_rs256(&jwk, b"header.payload", &signature));
        assert!(!verify_rs256(&jwk, b"header.payloae", &signature));
        let other = Rsa::generate(2048).unwrap();
        let other_jwk = serde_json::json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(other.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(other.e().to_vec()),
        });
        assert!(!verify_rs256(&other_jwk, b"header.payload", &signature));
        assert!(!verify_rs256(
            &serde_json::json!({}),
            b"header.payload",
            &signature
        ));
    }
}
