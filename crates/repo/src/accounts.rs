//! What accounts keep beside the `UserRepository`: sign-in sessions (their tokens are the
//! repository's OAuth2 access and refresh tokens, tagged with the session), single-use account
//! tokens (verification, password reset, restore), fixed-window throttle counters, and the
//! look-up of a soft-deleted account by its identifier.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::pg::data_types::PgInterval;
use diesel::sql_types::{BigInt, Integer, Interval, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension as _, QueryableByName, sql_query};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::accounts::TokenPurpose;
use domain::{Identifier, TokenHash, UserId};
use uuid::Uuid;

use crate::{Database, RepoError, RepoResult};

/// The `client_id` first-party session tokens are issued to (created by the migration; it has
/// no grant types, so no OAuth2 flow can use it).
pub const FIRST_PARTY_CLIENT_ID: &str = "first-party";

/// Accounts on PostgreSQL. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct Accounts {
    database: Database,
}

/// A sign-in session as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: UserId,
    /// [`FIRST_PARTY_CLIENT_ID`] for a sign-in; the client's ID for a grant to an OAuth2
    /// client.
    pub client_id: String,
    /// When the user authenticated (a grant starts after its consent page, a little later).
    pub created_at: DateTime<Utc>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// No refresh extends the session past this.
    pub expires_at: DateTime<Utc>,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    /// Not revoked and not past its end.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(QueryableByName)]
struct SessionRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    refreshed_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<DateTime<Utc>>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            user_id: UserId::from_i64(row.user_id),
            created_at: row.created_at,
            refreshed_at: row.refreshed_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRedemption {
    /// It was live: it is revoked now (rotated), once, even under concurrent presentations.
    Redeemed {
        user_id: UserId,
        session_id: Uuid,
        /// The scopes it carried (a new token carries these or fewer).
        scopes: Vec<String>,
    },
    /// It was revoked before: rotated already, or its session ended. Presenting it again is
    /// the sign of a stolen token.
    AlreadyRevoked {
        user_id: UserId,
        session_id: Option<Uuid>,
    },
    /// Past its expiry.
    Expired,
    /// No such token of this client (or one not tied to a session).
    Unknown,
}

#[derive(QueryableByName)]
struct RefreshRow {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    session_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Array<Nullable<Text>>)]
    scopes: Vec<Option<String>>,
}

/// A single-use account token that was redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemedToken {
    pub user_id: UserId,
    /// The address or number a verification token was issued for.
    pub target: Option<String>,
}

#[derive(QueryableByName)]
struct RedeemedRow {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    target: Option<String>,
}

/// A throttle counter after a hit, or as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleCount {
    /// Hits in the current window.
    pub hits: i32,
    /// When the current window ends.
    pub window_ends_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ThrottleRow {
    #[diesel(sql_type = Integer)]
    hits: i32,
    #[diesel(sql_type = Timestamptz)]
    window_ends_at: DateTime<Utc>,
}

impl From<ThrottleRow> for ThrottleCount {
    fn from(row: ThrottleRow) -> Self {
        Self {
            hits: row.hits,
            window_ends_at: row.window_ends_at,
        }
    }
}

/// A soft-deleted account found by its former identifier, with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAccount {
    pub user_id: UserId,
    pub password_hash: String,
    pub deleted_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct DeletedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    password_hash: String,
    #[diesel(sql_type = Timestamptz)]
    deleted_at: DateTime<Utc>,
}

/// What one clean-up round removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountCleanup {
    pub sessions: u64,
    pub account_tokens: u64,
    pub throttle_counters: u64,
}

fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

impl Accounts {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    // --- Sessions ---------------------------------------------------------------------------

    #[tracing::instrument(name = "db.start_session", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn start_session(&self, session: &NewSession) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "INSERT INTO user_sessions (id, user_id, ip_address, user_agent, expires_at, client_id,
                                        created_at, refreshed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind::<SqlUuid, _>(session.id)
        .bind::<BigInt, _>(session.user_id.as_i64())
        .bind::<Nullable<Text>, _>(session.ip_address.as_deref())
        .bind::<Nullable<Text>, _>(session.user_agent.as_deref())
        .bind::<Timestamptz, _>(session.expires_at)
        .bind::<Text, _>(&session.client_id)
        .bind::<Timestamptz, _>(session.created_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db.session", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn session(&self, id: Uuid) -> RepoResult<Option<Session>> {
        let mut conn = self.database.connection().await?;
        let row: Option<SessionRow> = sql_query(
            "SELECT id, user_id, created_at, refreshed_at, expires_at, revoked_at
             FROM user_sessions WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map(Into::into))
    }

    /// Notes a refresh of the session.
    #[tracing::instrument(name = "db.touch_session", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn touch_session(&self, id: Uuid) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query("UPDATE user_sessions SET refreshed_at = now() WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Ends a session and revokes every token it holds, in one transaction; `reason` is kept
    /// (`sign_out`, `refresh_token_reuse`, …). Returns whether the session was live.
    #[tracing::instrument(name = "db.revoke_session", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn revoke_session(&self, id: Uuid, reason: &str) -> RepoResult<bool> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| revoke_one(conn, id, reason).await)
            .await
    }

    /// Ends every live session of the user (but `except`), first-party sign-ins and grants to
    /// OAuth2 clients alike, revoking their tokens, and the client credentials tokens of the
    /// user's own clients; returns how many sessions ended.
    #[tracing::instrument(name = "db.revoke_sessions_of", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn revoke_sessions_of(
        &self,
        user_id: UserId,
        reason: &str,
        except: Option<Uuid>,
    ) -> RepoResult<u64> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            revoke_all(conn, user_id, reason, except).await
        })
        .await
    }

    /// Redeems a refresh token issued to `client_id` (a session's or a grant's): revokes it if
    /// it is live, in one statement, so of two concurrent presentations exactly one redeems it
    /// and the other finds it revoked. A token of another client is `Unknown`.
    #[tracing::instrument(name = "db.redeem_refresh_token", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn redeem_refresh_token(
        &self,
        hash: &TokenHash,
        client_id: &str,
    ) -> RepoResult<RefreshRedemption> {
        let mut conn = self.database.connection().await?;
        let redeemed: Option<RefreshRow> = sql_query(
            "UPDATE oauth2_refresh_tokens SET revoked_at = now()
             WHERE token_hash = $1 AND client_id = $2 AND revoked_at IS NULL
               AND expires_at > now() AND session_id IS NOT NULL
             RETURNING user_id, session_id, revoked_at, expires_at, scopes",
        )
        .bind::<Text, _>(hash.as_str())
        .bind::<Text, _>(client_id)
        .get_result(&mut *conn)
        .await
        .optional()?;
        if let Some(row) = redeemed {
            let session_id = row.session_id.ok_or_else(|| {
                RepoError::Database("a redeemed session token without a session".into())
            })?;
            return Ok(RefreshRedemption::Redeemed {
                user_id: UserId::from_i64(row.user_id),
                session_id,
                scopes: row.scopes.into_iter().flatten().collect(),
            });
        }
        let found: Option<RefreshRow> = sql_query(
            "SELECT user_id, session_id, revoked_at, expires_at, scopes FROM oauth2_refresh_tokens
             WHERE token_hash = $1 AND client_id = $2",
        )
        .bind::<Text, _>(hash.as_str())
        .bind::<Text, _>(client_id)
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(match found {
            None => RefreshRedemption::Unknown,
            Some(row) if row.revoked_at.is_some() => RefreshRedemption::AlreadyRevoked {
                user_id: UserId::from_i64(row.user_id),
                session_id: row.session_id,
            },
            Some(row) if row.expires_at <= Utc::now() => RefreshRedemption::Expired,
            // Live but not redeemable: not tied to a session.
            Some(_) => RefreshRedemption::Unknown,
        })
    }

    /// The grant (session) of an authorization code that was already redeemed, when `hash` is
    /// such a code: `Some(session)` for a replayed code, `None` for an unknown one.
    #[tracing::instrument(name = "db.spent_authorization_code", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn spent_authorization_code(
        &self,
        hash: &TokenHash,
    ) -> RepoResult<Option<Option<Uuid>>> {
        #[derive(QueryableByName)]
        struct SpentRow {
            #[diesel(sql_type = Nullable<SqlUuid>)]
            session_id: Option<Uuid>,
        }
        let mut conn = self.database.connection().await?;
        let row: Option<SpentRow> = sql_query(
            "SELECT session_id FROM oauth2_authorization_codes
             WHERE code_hash = $1 AND used_at IS NOT NULL",
        )
        .bind::<Text, _>(hash.as_str())
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map(|row| row.session_id))
    }

    /// Ends every live grant of the user to `client_id` and revokes its tokens (a withdrawn
    /// consent); returns how many grants ended.
    #[tracing::instrument(name = "db.revoke_client_grants", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn revoke_client_grants(
        &self,
        user_id: UserId,
        client_id: &str,
        reason: &str,
    ) -> RepoResult<u64> {
        let mut conn = self.database.connection().await?;
        conn.transaction::<_, RepoError, _>(async |conn| {
            let ended = sql_query(
                "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $3
                 WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
            )
            .bind::<BigInt, _>(user_id.as_i64())
            .bind::<Text, _>(client_id)
            .bind::<Text, _>(reason)
            .execute(conn)
            .await?;
            for table in ["oauth2_access_tokens", "oauth2_refresh_tokens"] {
                sql_query(format!(
                    "UPDATE {table} SET revoked_at = now()
                     WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL"
                ))
                .bind::<BigInt, _>(user_id.as_i64())
                .bind::<Text, _>(client_id)
                .execute(conn)
                .await?;
            }
            Ok(ended as u64)
        })
        .await
    }

    // --- Single-use account tokens ------------------------------------------------------------

    /// Stores a token's hash for `purpose`, valid until `expires_at`.
    #[tracing::instrument(name = "db.issue_account_token", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", purpose = purpose.as_str()))]
    pub async fn issue_account_token(
        &self,
        hash: &TokenHash,
        user_id: UserId,
        purpose: TokenPurpose,
        target: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query(
            "INSERT INTO account_tokens (token_hash, user_id, purpose, target, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (token_hash) DO UPDATE
                SET target = EXCLUDED.target, expires_at = EXCLUDED.expires_at, used_at = NULL,
                    created_at = now()
                WHERE account_tokens.user_id = EXCLUDED.user_id
                  AND account_tokens.purpose = EXCLUDED.purpose",
        )
        .bind::<Text, _>(hash.as_str())
        .bind::<BigInt, _>(user_id.as_i64())
        .bind::<Text, _>(purpose.as_str())
        .bind::<Nullable<Text>, _>(target)
        .bind::<Timestamptz, _>(expires_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Uses a token once: `None` when it is unknown, of another purpose, used or expired. Of
    /// two concurrent redemptions, one wins.
    #[tracing::instrument(name = "db.redeem_account_token", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", purpose = purpose.as_str()))]
    pub async fn redeem_account_token(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
    ) -> RepoResult<Option<RedeemedToken>> {
        let mut conn = self.database.connection().await?;
        let row: Option<RedeemedRow> = sql_query(
            "UPDATE account_tokens SET used_at = now()
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
             RETURNING user_id, target",
        )
        .bind::<Text, _>(hash.as_str())
        .bind::<Text, _>(purpose.as_str())
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map(|row| RedeemedToken {
            user_id: UserId::from_i64(row.user_id),
            target: row.target,
        }))
    }

    /// The user a live (unused, unexpired) token of `purpose` belongs to, without using it.
    #[tracing::instrument(name = "db.account_token_holder", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", purpose = purpose.as_str()))]
    pub async fn account_token_holder(
        &self,
        hash: &TokenHash,
        purpose: TokenPurpose,
    ) -> RepoResult<Option<UserId>> {
        let mut conn = self.database.connection().await?;
        let row: Option<RedeemedRow> = sql_query(
            "SELECT user_id, target FROM account_tokens
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
        )
        .bind::<Text, _>(hash.as_str())
        .bind::<Text, _>(purpose.as_str())
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map(|row| UserId::from_i64(row.user_id)))
    }

    /// Voids the secrets of the user's own confidential clients (after an account recovery: a
    /// client someone registered with a stolen password must not outlive the reset); each gets
    /// the hash of a secret nobody has, until its owner rotates it. Returns how many.
    #[tracing::instrument(name = "db.retire_client_secrets", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn retire_client_secrets(&self, owner: UserId) -> RepoResult<u64> {
        let mut conn = self.database.connection().await?;
        let retired = sql_query(
            "UPDATE oauth2_clients
             SET client_secret_hash = encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex')
             WHERE owner_user_id = $1 AND is_confidential",
        )
        .bind::<BigInt, _>(owner.as_i64())
        .execute(&mut *conn)
        .await?;
        Ok(retired as u64)
    }

    /// Spends every outstanding token of the user for `purpose` (after one was used, or when
    /// what they were for changed); returns how many.
    #[tracing::instrument(name = "db.retire_account_tokens", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", purpose = purpose.as_str()))]
    pub async fn retire_account_tokens(
        &self,
        user_id: UserId,
        purpose: TokenPurpose,
    ) -> RepoResult<u64> {
        let mut conn = self.database.connection().await?;
        let spent = sql_query(
            "UPDATE account_tokens SET used_at = now()
             WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind::<BigInt, _>(user_id.as_i64())
        .bind::<Text, _>(purpose.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(spent as u64)
    }

    // --- Throttle counters ------------------------------------------------------------------

    /// Counts a hit on `key` in its current fixed window of `window` (a new window starts when
    /// the last one is over) and returns the count with it.
    #[tracing::instrument(name = "db.throttle_hit", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn throttle_hit(&self, key: &str, window: Duration) -> RepoResult<ThrottleCount> {
        self.hit(key, window).await
    }

    /// Spends a single-use value (a consent page's ticket, a provider sign-in's state) named by
    /// `key`: `true` the first time within `lifetime` (which must cover the value's own), `false`
    /// after. Kept as a throttle counter with a limit of one.
    #[tracing::instrument(name = "db.spend_once", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn spend_once(&self, key: &str, lifetime: Duration) -> RepoResult<bool> {
        Ok(self.hit(key, lifetime).await?.hits == 1)
    }

    async fn hit(&self, key: &str, window: Duration) -> RepoResult<ThrottleCount> {
        let mut conn = self.database.connection().await?;
        let row: ThrottleRow = sql_query(
            "INSERT INTO auth_throttle AS t (key, hits, window_started_at) VALUES ($1, 1, now())
             ON CONFLICT (key) DO UPDATE SET
                hits = CASE WHEN t.window_started_at > now() - $2 THEN t.hits + 1 ELSE 1 END,
                window_started_at = CASE WHEN t.window_started_at > now() - $2
                                         THEN t.window_started_at ELSE now() END
             RETURNING hits, window_started_at + $2 AS window_ends_at",
        )
        .bind::<Text, _>(key)
        .bind::<Interval, _>(interval(window))
        .get_result(&mut *conn)
        .await?;
        Ok(row.into())
    }

    /// The count of `key` in its current window; zero hits when none is open.
    #[tracing::instrument(name = "db.throttle_count", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn throttle_count(&self, key: &str, window: Duration) -> RepoResult<ThrottleCount> {
        let mut conn = self.database.connection().await?;
        let row: Option<ThrottleRow> = sql_query(
            "SELECT hits, window_started_at + $2 AS window_ends_at FROM auth_throttle
             WHERE key = $1 AND window_started_at > now() - $2",
        )
        .bind::<Text, _>(key)
        .bind::<Interval, _>(interval(window))
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map_or(
            ThrottleCount {
                hits: 0,
                window_ends_at: Utc::now(),
            },
            Into::into,
        ))
    }

    /// Takes one hit back from `key` (an attempt counted before it ran that then succeeded).
    #[tracing::instrument(name = "db.throttle_release", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn throttle_release(&self, key: &str) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query("UPDATE auth_throttle SET hits = greatest(hits - 1, 0) WHERE key = $1")
            .bind::<Text, _>(key)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Forgets the count of `key` (a successful sign-in clears its identifier's failures).
    #[tracing::instrument(name = "db.throttle_clear", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn throttle_clear(&self, key: &str) -> RepoResult<()> {
        let mut conn = self.database.connection().await?;
        sql_query("DELETE FROM auth_throttle WHERE key = $1")
            .bind::<Text, _>(key)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    // --- Deleted accounts and clean-up --------------------------------------------------------

    /// The most recently soft-deleted account that had this email (any case) or phone, with
    /// its password hash.
    #[tracing::instrument(name = "db.deleted_account", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn deleted_account(
        &self,
        identifier: &Identifier,
    ) -> RepoResult<Option<DeletedAccount>> {
        let mut conn = self.database.connection().await?;
        let (condition, value) = match identifier {
            Identifier::Email(email) => ("lower(u.email) = lower($1)", email.as_str()),
            Identifier::Phone(phone) => ("u.phone = $1", phone.as_str()),
        };
        let row: Option<DeletedRow> = sql_query(format!(
            "SELECT u.id, c.password_hash, u.deleted_at FROM users u
             JOIN user_credentials c ON c.user_id = u.id
             WHERE {condition} AND u.deleted_at IS NOT NULL
             ORDER BY u.deleted_at DESC LIMIT 1"
        ))
        .bind::<Text, _>(value)
        .get_result(&mut *conn)
        .await
        .optional()?;
        Ok(row.map(|row| DeletedAccount {
            user_id: UserId::from_i64(row.id),
            password_hash: row.password_hash,
            deleted_at: row.deleted_at,
        }))
    }

    /// Deletes sessions past their end (their tokens with them), account tokens expired or
    /// used more than a day ago, and throttle counters whose window ended more than `keep` ago.
    #[tracing::instrument(name = "db.cleanup_accounts", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    pub async fn cleanup(&self, keep: Duration) -> RepoResult<AccountCleanup> {
        let mut conn = self.database.connection().await?;
        let sessions = sql_query("DELETE FROM user_sessions WHERE expires_at < now()")
            .execute(&mut *conn)
            .await?;
        let account_tokens = sql_query(
            "DELETE FROM account_tokens
             WHERE expires_at < now() OR used_at < now() - interval '1 day'",
        )
        .execute(&mut *conn)
        .await?;
        let throttle_counters =
            sql_query("DELETE FROM auth_throttle WHERE window_started_at < now() - $1")
                .bind::<Interval, _>(interval(keep))
                .execute(&mut *conn)
                .await?;
        Ok(AccountCleanup {
            sessions: sessions as u64,
            account_tokens: account_tokens as u64,
            throttle_counters: throttle_counters as u64,
        })
    }
}

async fn revoke_one(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> RepoResult<bool> {
    let ended = sql_query(
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $2
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await?;
    for table in ["oauth2_access_tokens", "oauth2_refresh_tokens"] {
        sql_query(format!(
            "UPDATE {table} SET revoked_at = now() WHERE session_id = $1 AND revoked_at IS NULL"
        ))
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
    }
    Ok(ended > 0)
}

async fn revoke_all(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    reason: &str,
    except: Option<Uuid>,
) -> RepoResult<u64> {
    let ended = sql_query(
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = $2
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $3",
    )
    .bind::<BigInt, _>(user_id.as_i64())
    .bind::<Text, _>(reason)
    .bind::<Nullable<SqlUuid>, _>(except)
    .execute(conn)
    .await?;
    for table in ["oauth2_access_tokens", "oauth2_refresh_tokens"] {
        sql_query(format!(
            "UPDATE {table} SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL AND session_id IS DISTINCT FROM $2"
        ))
        .bind::<BigInt, _>(user_id.as_i64())
        .bind::<Nullable<SqlUuid>, _>(except)
        .execute(conn)
        .await?;
    }
    // The client credentials tokens of the user's own clients act for the user on campaigns:
    // they end with the user's sessions (the clients get new ones with their secrets).
    sql_query(
        "UPDATE oauth2_access_tokens SET revoked_at = now()
         WHERE user_id IS NULL AND revoked_at IS NULL
           AND client_id IN (SELECT client_id FROM oauth2_clients WHERE owner_user_id = $1)",
    )
    .bind::<BigInt, _>(user_id.as_i64())
    .execute(conn)
    .await?;
    Ok(ended as u64)
}
