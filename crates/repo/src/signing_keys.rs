//! The keys that sign the OpenID Connect provider's ID tokens (`oauth2_signing_keys`). The
//! repository stores what it is given: the private key arrives encrypted, the public half as a
//! JWK (RFC 7517); choosing, rotating and retiring keys is the caller's.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Jsonb, Text, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;

use crate::{Database, RepoResult};

/// The signing keys on PostgreSQL. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    database: Database,
}

/// A stored signing key.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoredSigningKey {
    /// The key ID (`kid`) of the JWK and of the JWS headers it signs.
    #[diesel(sql_type = Text)]
    pub kid: String,
    /// The JWS algorithm (RFC 7518): `RS256`.
    #[diesel(sql_type = Text)]
    pub algorithm: String,
    /// The private key, encrypted by the caller (base64 text).
    #[diesel(sql_type = Text)]
    pub private_key: String,
    /// The public key as a JWK.
    #[diesel(sql_type = Jsonb)]
    pub public_jwk: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl SigningKeys {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Every stored key, newest first.
    #[tracing::instrument(name = "db.signing_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn all(&self) -> RepoResult<Vec<StoredSigningKey>> {
        let mut conn = self.database.connection().await?;
        Ok(sql_query(
            "SELECT kid, algorithm, private_key, public_jwk, created_at
             FROM oauth2_signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .load(&mut *conn)
        .await?)
    }

    /// Stores a new key; its `created_at` is the database's clock.
    #[tracing::instrument(name = "db.add_signing_key", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn add(
        &self,
        kid: &str,
        algorithm: &str,
        private_key: &str,
        public_jwk: &serde_json::Value,
    ) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "INSERT INTO oauth2_signing_keys (kid, algorithm, private_key, public_jwk)
             VALUES ($1, $2, $3, $4)",
        )
        .bind::<Text, _>(kid)
        .bind::<Text, _>(algorithm)
        .bind::<Text, _>(private_key)
        .bind::<Jsonb, _>(public_jwk)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Deletes a key; returns whether it was there.
    #[tracing::instrument(name = "db.delete_signing_key", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn delete(&self, kid: &str) -> RepoResult<bool> {
        let mut conn = self.database.connection().await?;
        let deleted = sql_query("DELETE FROM oauth2_signing_keys WHERE kid = $1")
            .bind::<Text, _>(kid)
            .execute(&mut *conn)
            .await?;
        Ok(deleted > 0)
    }
}
