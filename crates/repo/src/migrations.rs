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
    // Rows written by replicas of the previous version, which do not write canonical addresses,
    // are caught by the next run: every run looks.
    let applied = match applied {
        Ok(applied) => canonical_emails(&mut conn).await.map(|_| applied),
        Err(error) => Err(error),
    };
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await?;
    applied
}

/// Rewrites stored email addresses into their canonical form (`domain::Email`): users,
/// participants (with their lower-cased and mailbox columns) and campaigns' notify emails. Runs
/// after the SQL migrations on every `migrate`, so it also catches rows that replicas of an
/// earlier version wrote during a rollout; it looks only at rows that can differ (an upper-case
/// or a non-ASCII character), and each row is one statement of its own (no long transaction).
/// An address whose canonical form another row already holds (two users who registered two
/// spellings of one address before) is left as it is and logged by row key; one that no longer
/// passes the rules is left as well. Returns how many addresses it rewrote.
///
/// # Errors
/// A statement that failed.
pub async fn canonical_emails(conn: &mut diesel_async::AsyncPgConnection) -> Result<u64, DbError> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    // Upper case or any non-ASCII character: the rows whose canonical form can differ.
    let differs =
        |column: &str| format!("({column} <> lower({column}) OR {column} ~ '[^\\x01-\\x7e]')");
    let (mut rewritten, mut left) = (0u64, Vec::new());
    let tables = [
        (
            "user",
            format!(
                "SELECT id::text AS key, email FROM users WHERE email IS NOT NULL AND {} ORDER BY id",
                differs("email")
            ),
            "UPDATE users u SET email = $1 WHERE id = $2::bigint
               AND (deleted_at IS NOT NULL OR NOT EXISTS (
                    SELECT 1 FROM users o WHERE o.id <> u.id AND o.deleted_at IS NULL
                      AND lower(o.email) = lower($1)))",
        ),
        (
            "participant",
            format!(
                "SELECT id::text AS key, email FROM participants WHERE {} ORDER BY created_at",
                differs("email")
            ),
            "UPDATE participants p SET email = $1, email_lower = lower($1), email_canonical = $3
             WHERE id = $2::uuid AND NOT EXISTS (
                 SELECT 1 FROM participants o WHERE o.campaign_id = p.campaign_id
                   AND o.id <> p.id AND o.email_lower = lower($1))",
        ),
        (
            "campaign",
            format!(
                "SELECT id::text AS key, notify_email AS email FROM campaigns
                 WHERE notify_email IS NOT NULL AND {}",
                differs("notify_email")
            ),
            "UPDATE campaigns SET notify_email = $1 WHERE id = $2::uuid",
        ),
    ];
    for (what, select, update) in tables {
        let rows: Vec<StoredEmail> = diesel::sql_query(select).load(conn).await?;
        for row in rows {
            let Ok(canonical) = domain::Email::parse(&row.email) else {
                continue;
            };
            if canonical.as_str() == row.email {
                continue;
            }
            let query = diesel::sql_query(update)
                .bind::<Text, _>(canonical.as_str())
                .bind::<Text, _>(&row.key);
            let changed = if what == "participant" {
                query
                    .bind::<Text, _>(domain::waitlist::canonical_email(canonical.as_str()))
                    .execute(conn)
                    .await?
            } else {
                query.execute(conn).await?
            };
            if changed == 1 {
                rewritten += 1;
            } else {
                left.push(format!("{what} {}", row.key));
            }
        }
    }
    if !left.is_empty() {
        tracing::warn!(left = ?left, "email addresses left as they were: their canonical form belongs to another row");
    }
    if rewritten > 0 {
        tracing::info!(rewritten, "email addresses rewritten in canonical form");
    }
    Ok(rewritten)
}

#[derive(diesel::QueryableByName)]
struct StoredEmail {
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
}
