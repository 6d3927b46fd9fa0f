//! The migrations of the workspace's `migrations/` folder, compiled into every binary that links
//! this crate, so that the migration job and the tests apply exactly what the code expects.

use diesel_async::{AsyncMigrationHarness, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{Database, DbError};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Key of the advisory lock that serialises migration runs: two replicas of the migration job,
/// or a job and a developer, must not apply the same migration twice at once.
const MIGRATION_LOCK_KEY: i64 = 0x6d69_6772_6174_6573; // "migrates"

/// Applies every migration not yet applied, in order, and returns the versions it applied.
///
/// Runs diesel's synchronous migration code on the calling worker thread (through
/// `block_in_place`), so it needs the multi-threaded tokio runtime.
pub async fn run_pending(database: &Database) -> Result<Vec<String>, DbError> {
    let mut conn = database.connection().await?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied: Result<Vec<String>, DbError> = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| DbError::Migration(e.to_string()));
    let mut conn = harness.into_inner();
    let applied = match applied {
        Ok(mut applied) => match canonical_emails(&mut conn).await {
            Ok(true) => {
                applied.push(CANONICAL_EMAILS.to_owned());
                Ok(applied)
            }
            Ok(false) => Ok(applied),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await?;
    applied
}

/// The data migration that rewrites stored email addresses into their canonical form
/// (`domain::Email`): users, participants (with their lower-cased and mailbox columns) and
/// campaigns' notify emails.
pub const CANONICAL_EMAILS: &str = "2026-11-30-canonical-emails";

#[derive(diesel::QueryableByName)]
struct StoredEmail {
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
}

/// Applies [`CANONICAL_EMAILS`] unless done: in one transaction, each address that is not in
/// canonical form is rewritten, unless that would make it collide with another row's (two users
/// who registered two spellings of one address before); those are left as they are and
/// counted in the log, by row key only. Addresses that no longer pass the rules are left as
/// well. Returns whether it ran.
async fn canonical_emails(conn: &mut diesel_async::AsyncPgConnection) -> Result<bool, DbError> {
    use diesel::sql_types::Text;
    use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
    AnsiTransactionManager::begin_transaction(conn).await?;
    let outcome = async {
        let done: Vec<StoredEmail> = diesel::sql_query(
            "SELECT name AS key, name AS email FROM data_migrations WHERE name = $1 FOR UPDATE",
        )
        .bind::<Text, _>(CANONICAL_EMAILS)
        .load(conn)
        .await?;
        if !done.is_empty() {
            return Ok::<_, DbError>(false);
        }
        // Only rows that can differ: upper case or any non-ASCII character.
        let differs = "(email <> lower(email) OR email ~ '[^\\x01-\\x7e]')";
        let (mut rewritten, mut left) = (0u64, Vec::new());
        let users: Vec<StoredEmail> = diesel::sql_query(format!(
            "SELECT id::text AS key, email FROM users WHERE email IS NOT NULL AND {differs} ORDER BY id"
        ))
        .load(conn)
        .await?;
        for row in users {
            let Ok(canonical) = domain::Email::parse(&row.email) else { continue };
            if canonical.as_str() == row.email {
                continue;
            }
            let changed = diesel::sql_query(
                "UPDATE users u SET email = $1 WHERE id = $2::bigint
                   AND (deleted_at IS NOT NULL OR NOT EXISTS (
                        SELECT 1 FROM users o WHERE o.id <> u.id AND o.deleted_at IS NULL
                          AND lower(o.email) = lower($1)))",
            )
            .bind::<Text, _>(canonical.as_str())
            .bind::<Text, _>(&row.key)
            .execute(conn)
            .await?;
            if changed == 1 { rewritten += 1 } else { left.push(format!("user {}", row.key)) }
        }
        let participants: Vec<StoredEmail> = diesel::sql_query(format!(
            "SELECT id::text AS key, email FROM participants WHERE {differs} ORDER BY created_at"
        ))
        .load(conn)
        .await?;
        for row in participants {
            let Ok(canonical) = domain::Email::parse(&row.email) else { continue };
            if canonical.as_str() == row.email {
                continue;
            }
            let changed = diesel::sql_query(
                "UPDATE participants p SET email = $1, email_lower = lower($1), email_canonical = $3
                 WHERE id = $2::uuid AND NOT EXISTS (
                     SELECT 1 FROM participants o WHERE o.campaign_id = p.campaign_id
                       AND o.id <> p.id AND o.email_lower = lower($1))",
            )
            .bind::<Text, _>(canonical.as_str())
            .bind::<Text, _>(&row.key)
            .bind::<Text, _>(domain::waitlist::canonical_email(canonical.as_str()))
            .execute(conn)
            .await?;
            if changed == 1 { rewritten += 1 } else { left.push(format!("participant {}", row.key)) }
        }
        let notify: Vec<StoredEmail> = diesel::sql_query(
            "SELECT id::text AS key, notify_email AS email FROM campaigns
             WHERE notify_email IS NOT NULL
               AND (notify_email <> lower(notify_email) OR notify_email ~ '[^\\x01-\\x7e]')",
        )
        .load(conn)
        .await?;
        for row in notify {
            let Ok(canonical) = domain::Email::parse(&row.email) else { continue };
            if canonical.as_str() != row.email {
                diesel::sql_query("UPDATE campaigns SET notify_email = $1 WHERE id = $2::uuid")
                    .bind::<Text, _>(canonical.as_str())
                    .bind::<Text, _>(&row.key)
                    .execute(conn)
                    .await?;
                rewritten += 1;
            }
        }
        diesel::sql_query("INSERT INTO data_migrations (name) VALUES ($1)")
            .bind::<Text, _>(CANONICAL_EMAILS)
            .execute(conn)
            .await?;
        if !left.is_empty() {
            tracing::warn!(left = ?left, "email addresses left as they were: their canonical form belongs to another row");
        }
        tracing::info!(rewritten, left = left.len(), "email addresses in canonical form");
        Ok(true)
    }
    .await;
    match outcome {
        Ok(ran) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(ran)
        }
        Err(error) => {
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            Err(error)
        }
    }
}
