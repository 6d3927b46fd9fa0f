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
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| DbError::Migration(e.to_string()));
    let mut conn = harness.into_inner();
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await?;
    applied
}
