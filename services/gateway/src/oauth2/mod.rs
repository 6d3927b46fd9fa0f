//! The OAuth2 authorization server and OpenID Connect provider, on the repository's OAuth2
//! store. It follows RFC 6749 with the choices of OAuth 2.1 and the security BCP (RFC 9700):
//!
//! - **Grants**: authorization code with PKCE (`S256` only, required from every client),
//!   refresh token (rotated on every use; a rotated token presented again revokes the whole
//!   grant), client credentials (confidential clients). No implicit, no password grant.
//! - **Redirect URIs** are matched exactly against the client's registered list; an unknown
//!   client or redirect URI gets an error page, never a redirect.
//! - **Codes** live `AUTHORIZATION_CODE_TTL`, are single-use (`MarkAuthorizationCodeAsUsed`),
//!   and a replayed code revokes what it issued.
//! - **Tokens** are opaque (32 random bytes, stored as SHA-256 hashes), read back by resource
//!   servers at the introspection endpoint (RFC 7662) and revoked at the revocation endpoint
//!   (RFC 7009). Every grant to a client is a session (`user_sessions`, with its `client_id`):
//!   its codes and tokens are tagged with it, and revoking it revokes them all.
//! - **OpenID Connect**: the `openid` scope adds an RS256 ID token (`keys`), `userinfo`, the
//!   JWKS and discovery; [`discovery`] serves RFC 8414 metadata too.
//! - **Consent** (`pages`): a server-rendered sign-in and consent page; a consent is kept per
//!   user and client and skipped the next time it covers the scopes asked.
//! - **Audit**: client changes, grants, issued, refreshed and revoked tokens and refused
//!   attempts are written to the OAuth2 audit log.
//!
//! Clients are registered by signed-in users (`clients`).

pub(crate) mod clients;
pub(crate) mod discovery;
mod errors;
pub(crate) mod keys;
pub(crate) mod pages;
pub(crate) mod sealed;
pub(crate) mod token;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::OAuth2Client;
use secrecy::{ExposeSecret as _, SecretString};
use service_runtime::{ConfigError, Env};
use sha2::{Digest as _, Sha256};

pub(crate) use errors::{OAuthError, OAuthErrorBody, OAuthErrorCode};

use crate::accounts::AccountsApi;
use keys::KeyRing;

/// The grant types a client may be registered for (RFC 6749 sections 4.1, 4.4 and 6).
pub(crate) const GRANT_TYPES: [&str; 3] =
    ["authorization_code", "refresh_token", "client_credentials"];

/// The scopes that name the user: a client credentials grant (no user) cannot ask for them.
pub(crate) const USER_SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];

/// The variables of the OAuth2 provider:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `OAUTH2_ISSUER` | `http://127.0.0.1:8080` | the issuer identifier (RFC 8414): the gateway's public base URL, without a trailing slash; every endpoint URL of the metadata starts with it |
/// | `OAUTH2_KEY_SECRET` | required | at least 32 bytes (`openssl rand -hex 32`); the ID token signing keys are stored encrypted under a key derived from it, and consent pages' tickets signed with another |
/// | `AUTHORIZATION_CODE_TTL` | `1m` | life of an authorization code |
/// | `ID_TOKEN_TTL` | `1h` | life of an ID token |
/// | `OAUTH2_CONSENT_TTL` | `10m` | how long a consent page stays answerable |
/// | `OAUTH2_SIGNING_KEY_ROTATION` | `30d` | a new signing key is made when the newest is this old |
/// | `OAUTH2_JWKS_MAX_AGE` | `5m` | `Cache-Control: max-age` of the JWKS; a new key signs only after it was published this long |
///
/// Access and refresh tokens live `ACCESS_TOKEN_TTL` and `REFRESH_TOKEN_TTL` (accounts), and no
/// grant lives past `SESSION_MAX_AGE` after its consent.
#[derive(Clone)]
pub(crate) struct OAuth2Config {
    pub(crate) issuer: String,
    key_secret: SecretString,
    pub(crate) code_ttl: Duration,
    pub(crate) id_token_ttl: Duration,
    pub(crate) consent_ttl: Duration,
    pub(crate) key_rotation: Duration,
    pub(crate) jwks_max_age: Duration,
}

impl std::fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Config")
            .field("issuer", &self.issuer)
            .field("code_ttl", &self.code_ttl)
            .field("id_token_ttl", &self.id_token_ttl)
            .finish_non_exhaustive()
    }
}

impl OAuth2Config {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let issuer = env.string("OAUTH2_ISSUER", "http://127.0.0.1:8080");
        let issuer = issuer.trim().trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&issuer).map_err(|e| ConfigError::Invalid {
            name: "OAUTH2_ISSUER".into(),
            value: issuer.clone(),
            reason: e.to_string(),
        })?;
        // The endpoints are served at fixed paths from the root: an issuer with a path would
        // name URLs nothing serves.
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.path() != "/"
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(ConfigError::Invalid {
                name: "OAUTH2_ISSUER".into(),
                value: issuer,
                reason: "an http(s) URL without path, query or fragment (RFC 8414 section 2)"
                    .into(),
            });
        }
        Ok(Self {
            issuer,
            key_secret: env.required_signing_key("OAUTH2_KEY_SECRET")?,
            code_ttl: env.duration("AUTHORIZATION_CODE_TTL", Duration::from_secs(60))?,
            id_token_ttl: env.duration("ID_TOKEN_TTL", Duration::from_secs(3600))?,
            consent_ttl: env.duration("OAUTH2_CONSENT_TTL", Duration::from_secs(600))?,
            key_rotation: env.duration(
                "OAUTH2_SIGNING_KEY_ROTATION",
                Duration::from_secs(30 * 24 * 3600),
            )?,
            jwks_max_age: env.duration("OAUTH2_JWKS_MAX_AGE", Duration::from_secs(300))?,
        })
    }

    /// A 32-byte key for one purpose, derived from `OAUTH2_KEY_SECRET` (HMAC-SHA256 of the
    /// purpose's name), so no two uses share a key.
    pub(crate) fn derived_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(self.key_secret.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The URL of an endpoint at `path` (`/oauth2/token`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// What the OAuth2 endpoints work with.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    pub(crate) accounts: AccountsApi,
    pub(crate) keys: KeyRing,
    pub(crate) config: OAuth2Config,
}

/// The PKCE code challenge of a verifier with `S256` (RFC 7636 section 4.2): base64url of its
/// SHA-256, without padding.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A code verifier or challenge as RFC 7636 section 4.1 allows: 43 to 128 characters of
/// `[A-Za-z0-9-._~]`.
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A `scope` parameter (RFC 6749 section 3.3): space-separated names, each of printable ASCII
/// but `"` and `\`; `None` when a name has other characters. Duplicates are dropped.
pub(crate) fn parse_scope(scope: Option<&str>) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for name in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !name
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return None;
        }
        names.insert(name.to_owned());
    }
    Some(names)
}

/// Scopes as the `scope` parameter writes them.
pub(crate) fn scope_string<S: AsRef<str>>(scopes: impl IntoIterator<Item = S>) -> String {
    scopes
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the client was registered for `grant_type`.
pub(crate) fn allows(client: &OAuth2Client, grant_type: &str) -> bool {
    client.grant_types.iter().any(|g| g == grant_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_the_example_of_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pkce_values_are_43_to_128_unreserved_characters() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(is_pkce_value(&"a-._~".repeat(20)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn scopes_parse_as_rfc_6749_section_3_3_writes_them() {
        let scopes = parse_scope(Some("openid  email openid")).unwrap();
        assert_eq!(scope_string(&scopes), "email openid");
        assert!(parse_scope(Some("open\"id")).is_none());
        assert_eq!(parse_scope(None), Some(BTreeSet::new()));
        assert!(parse_scope(Some("é")).is_none());
    }
}
