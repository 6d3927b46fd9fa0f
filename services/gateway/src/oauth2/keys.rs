//! The RSA keys that sign ID tokens (RS256, RFC 7518 section 3.3), their rotation and the JWKS
//! (RFC 7517) that publishes them.
//!
//! Keys are stored in PostgreSQL (`repo::SigningKeys`), the private half sealed with
//! AES-256-GCM (`sealed`) under a key derived from `OAUTH2_KEY_SECRET` (the key ID is the
//! associated data), so every replica signs with the same keys and a database dump alone signs nothing.
//! Every replica reloads them each minute and follows one plan ([`plan`]):
//!
//! - when the newest key is `OAUTH2_SIGNING_KEY_ROTATION` old (or there is none), a new one is
//!   made (two replicas doing so at once make two keys, which is harmless);
//! - the newest key signs once it has been published for `OAUTH2_JWKS_MAX_AGE` and the minute
//!   every replica takes to load it, so relying parties caching the JWKS know it before they
//!   see it; until then the one before signs;
//! - a key stays published until every ID token it signed has expired and caches have let go
//!   of it, and is then deleted.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use repo::{SigningKeys, StoredSigningKey};
use serde_json::{Value, json};
use service_runtime::CancellationToken;

use super::OAuth2Config;

const ALGORITHM: &str = "RS256";
const RSA_BITS: u32 = 2048;
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// A key ready to sign.
struct LoadedKey {
    kid: String,
    private: PKey<Private>,
    created_at: DateTime<Utc>,
}

#[derive(Default)]
struct Loaded {
    /// The keys that open here, newest first.
    keys: Vec<LoadedKey>,
    signer: Option<usize>,
    /// The public keys of every key not retired, whether or not it opens here (one sealed
    /// under a former `OAUTH2_KEY_SECRET`, or by a replica with a newer one, still verifies the
    /// ID tokens it signed).
    jwks: Vec<Value>,
}

/// The signing keys, shared by the gateway's workers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct KeyRing {
    loaded: Arc<RwLock<Loaded>>,
    store: SigningKeys,
    encryption_key: [u8; 32],
    rotation: Duration,
    max_age: Duration,
    id_token_ttl: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// Why a JWT could not be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    #[error("no signing key is loaded")]
    NoKey,
    #[error("signing failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// What to do with the stored keys at `now` (keys newest first, by creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Make a new key: there is none, or the newest is `rotation` old.
    pub(crate) rotate: bool,
    /// The index of the key that signs.
    pub(crate) signer: Option<usize>,
    /// The indexes of the keys in the JWKS.
    pub(crate) published: Vec<usize>,
    /// The indexes of the keys no ID token or cache needs any more.
    pub(crate) retired: Vec<usize>,
}

/// The plan for keys created at `created` (newest first): see the module's description.
pub(crate) fn plan(
    created: &[DateTime<Utc>],
    now: DateTime<Utc>,
    rotation: Duration,
    max_age: Duration,
    id_token_ttl: Duration,
) -> Plan {
    let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let rotate = created
        .first()
        .is_none_or(|newest| now - *newest >= span(rotation));
    // The newest key published long enough signs; when none is, the oldest (the one most
    // likely known: on the first start, the only one).
    let signer = created
        .iter()
        .position(|at| now - *at >= span(max_age))
        .or_else(|| created.len().checked_sub(1));
    let mut published = Vec::new();
    let mut retired = Vec::new();
    for (index, _) in created.iter().enumerate() {
        // Keys newer than the signer are published ahead of their use; the signer is; an
        // older key was replaced when its successor started signing, and is kept while the ID
        // tokens it signed live and caches may hold the JWKS without its successor.
        let keep = match (signer, index) {
            (Some(signer), index) if index <= signer => true,
            (_, index) => {
                let successor = created[index - 1];
                let replaced_at = successor + span(max_age);
                now < replaced_at + span(id_token_ttl) + span(max_age)
            }
        };
        if keep {
            published.push(index);
        } else {
            retired.push(index);
        }
    }
    Plan {
        rotate,
        signer,
        published,
        retired,
    }
}

impl KeyRing {
    /// Loads the keys, making the first one if there is none.
    pub(crate) async fn start(store: SigningKeys, config: &OAuth2Config) -> anyhow::Result<Self> {
        let ring = Self {
            loaded: Arc::default(),
            store,
            encryption_key: config.derived_key("oauth2 signing keys at rest"),
            rotation: config.key_rotation,
            max_age: config.jwks_max_age,
            id_token_ttl: config.id_token_ttl,
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Reloads every minute until `stop`; a failed reload keeps the keys it had.
    pub(crate) async fn keep_loaded(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "could not reload the ID token signing keys");
            }
        }
    }

    /// Reads the stored keys, makes or deletes keys as the plan says, and swaps them in.
    pub(crate) async fn reload(&self) -> anyhow::Result<()> {
        let mut stored = self.store.all().await?;
        let now = Utc::now();
        let created: Vec<_> = stored.iter().map(|k| k.created_at).collect();
        let first = plan(&created, now, self.rotation, self.lead(), self.id_token_ttl);
        if first.rotate {
            self.make_key().await?;
            stored = self.store.all().await?;
        }
        // Retired by age, whether or not they open here (a key sealed under a former
        // OAUTH2_KEY_SECRET goes too, once no token can need it).
        let created: Vec<_> = stored.iter().map(|k| k.created_at).collect();
        let by_age = plan(&created, now, self.rotation, self.lead(), self.id_token_ttl);
        for &index in by_age.retired.iter().rev() {
            let key = stored.remove(index);
            if self.store.delete(&key.kid).await? {
                tracing::info!(kid = %key.kid, "retired an ID token signing key");
            }
        }
        let mut keys = Vec::with_capacity(stored.len());
        for key in &stored {
            match self.open(key) {
                Ok(loaded) => keys.push(loaded),
                // Sealed under another OAUTH2_KEY_SECRET: unusable here, left for whoever has it.
                Err(error) => {
                    tracing::error!(kid = %key.kid, %error, "a stored signing key does not decrypt; is OAUTH2_KEY_SECRET the one it was made with?");
                }
            }
        }
        if keys.is_empty() {
            self.make_key().await?;
            return Box::pin(self.reload()).await;
        }
        let created: Vec<_> = keys.iter().map(|k| k.created_at).collect();
        let plan = plan(&created, now, self.rotation, self.lead(), self.id_token_ttl);
        let jwks = stored.iter().map(|k| k.public_jwk.clone()).collect();
        let mut loaded = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *loaded = Loaded {
            keys,
            signer: plan.signer,
            jwks,
        };
        Ok(())
    }

    async fn make_key(&self) -> anyhow::Result<()> {
        let rsa = Rsa::generate(RSA_BITS)?;
        let kid = uuid::Uuid::now_v7().simple().to_string();
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        });
        let der = PKey::from_rsa(rsa)?.private_key_to_pkcs8()?;
        let sealed = self.seal(&kid, &der)?;
        self.store.add(&kid, ALGORITHM, &sealed, &jwk).await?;
        tracing::info!(kid = %kid, "made a new ID token signing key");
        Ok(())
    }

    /// The private key, sealed with the key ID as associated data.
    fn seal(&self, kid: &str, plain: &[u8]) -> Result<String, openssl::error::ErrorStack> {
        super::sealed::seal(&self.encryption_key, kid.as_bytes(), plain)
    }

    fn open(&self, key: &StoredSigningKey) -> anyhow::Result<LoadedKey> {
        let der = super::sealed::open(&self.encryption_key, key.kid.as_bytes(), &key.private_key)
            .ok_or_else(|| anyhow::anyhow!("the sealed key does not open"))?;
        Ok(LoadedKey {
            kid: key.kid.clone(),
            private: PKey::private_key_from_pkcs8(&der)?,
            created_at: key.created_at,
        })
    }

    /// The claims as a signed JWT (JWS compact serialization, RFC 7515 section 7.1, RS256).
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, SignError> {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = loaded
            .signer
            .and_then(|i| loaded.keys.get(i))
            .ok_or(SignError::NoKey)?;
        let header = json!({"alg": ALGORITHM, "typ": "JWT", "kid": key.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signer = Signer::new(MessageDigest::sha256(), &key.private)?;
        signer.update(input.as_bytes())?;
        let signature = signer.sign_to_vec()?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The JWKS: the public keys of every published key.
    pub(crate) fn jwks(&self) -> Value {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        json!({ "keys": loaded.jwks })
    }

    /// How long a new key is published before it signs: the JWKS's cache life, plus the time
    /// every replica takes to load the key (a replica serving an older JWKS meanwhile).
    fn lead(&self) -> Duration {
        self.max_age + RELOAD_EVERY
    }

    /// `Cache-Control: max-age` of the JWKS, in seconds.
    pub(crate) fn max_age(&self) -> u64 {
        self.max_age.as_secs()
    }
}

/// The `at_hash` of an access token (OpenID Connect Core section 3.1.3.6): base64url of the
/// left half of its SHA-256 (the hash of RS256).
pub(crate) fn at_hash(access_token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(now: DateTime<Utc>, ago: Duration) -> DateTime<Utc> {
        now - chrono::Duration::from_std(ago).unwrap()
    }

    #[test]
    fn no_key_means_a_new_one() {
        let plan = plan(&[], Utc::now(), 30 * DAY, 5 * MIN, 60 * MIN);
        assert!(plan.rotate);
        assert_eq!(plan.signer, None);
    }

    #[test]
    fn a_single_new_key_signs_at_once() {
        let now = Utc::now();
        let plan = plan(&[now], now, 30 * DAY, 5 * MIN, 60 * MIN);
        assert!(!plan.rotate);
        assert_eq!(plan.signer, Some(0));
        assert_eq!(plan.published, vec![0]);
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_kept_until_its_tokens_expire() {
        let now = Utc::now();
        // Made 2 minutes ago: published, not signing yet; the old key signs.
        let keys = [at(now, 2 * MIN), at(now, 31 * DAY)];
        let p = plan(&keys, now, 30 * DAY, 5 * MIN, 60 * MIN);
        assert_eq!(
            (p.signer, p.published.clone(), p.rotate),
            (Some(1), vec![0, 1], false)
        );
        // 10 minutes on: the new key signs; the old one still verifies tokens it signed.
        let keys = [at(now, 10 * MIN), at(now, 31 * DAY)];
        let p = plan(&keys, now, 30 * DAY, 5 * MIN, 60 * MIN);
        assert_eq!((p.signer, p.published.clone()), (Some(0), vec![0, 1]));
        // Replaced 5 minutes after the new key was made; its last tokens expire an hour later,
        // caches hold the JWKS up to 5 minutes more: at 70 minutes it is still published...
        let keys = [at(now, 69 * MIN), at(now, 31 * DAY)];
        let p = plan(&keys, now, 30 * DAY, 5 * MIN, 60 * MIN);
        assert_eq!(
            (p.published.clone(), p.retired.clone()),
            (vec![0, 1], vec![])
        );
        // ...and at 71 minutes retired.
        let keys = [at(now, 71 * MIN), at(now, 31 * DAY)];
        let p = plan(&keys, now, 30 * DAY, 5 * MIN, 60 * MIN);
        assert_eq!((p.published, p.retired), (vec![0], vec![1]));
    }

    #[test]
    fn the_newest_key_at_its_rotation_age_calls_for_a_new_one() {
        let now = Utc::now();
        assert!(plan(&[at(now, 30 * DAY)], now, 30 * DAY, 5 * MIN, 60 * MIN).rotate);
        assert!(!plan(&[at(now, 29 * DAY)], now, 30 * DAY, 5 * MIN, 60 * MIN).rotate);
    }

    #[test]
    fn at_hash_matches_the_example_of_openid_connect_core() {
        // OpenID Connect Core, A.3: the access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
