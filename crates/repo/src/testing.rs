//! A private, migrated schema per test, so that tests share one database and run in parallel
//! (the approach of crates.io's `crates_io_test_db`, with schemas instead of databases).

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::waitlist::RELAY_LOCK_KEYS;
use crate::{Database, DatabaseConfig, migrations};

/// The database tests use when `TEST_DATABASE_URL` is not set: the one `make test` creates.
pub const DEFAULT_TEST_DATABASE_URL: &str =
    "postgres://platform:platform@127.0.0.1:5432/platform_test";

/// The test database URL: `TEST_DATABASE_URL`, or the local default.
pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// A schema of its own, with every migration applied, dropped again when the value is dropped
/// (also when the test panics).
#[derive(Debug)]
pub struct TestDatabase {
    database: Database,
    schema: String,
    url: String,
}

impl TestDatabase {
    /// Creates the schema and migrates it. Panics with a clear message when PostgreSQL is not
    /// reachable: a test cannot do anything useful without it.
    pub async fn new() -> Self {
        Self::with_pool_size(4).await
    }

    /// The same, with a pool of `pool_size` connections (1 to watch one connection's queries).
    pub async fn with_pool_size(pool_size: usize) -> Self {
        let url = test_database_url();
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to the test database at {url} ({e}); run `make test`")
            });
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .expect("create the test schema");

        let mut config = DatabaseConfig::new(url.clone(), "tests");
        config.pool_size = pool_size;
        config.search_path = Some(schema.clone());
        let database = Database::connect(&config).expect("build the test pool");
        migrations::run_pending(&database)
            .await
            .expect("migrate the test schema");
        Self {
            database,
            schema,
            url,
        }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Takes this schema's outbox relay lock on a connection of its own, so that no gateway
    /// relays until [`RelayHold::release`]: events committed meanwhile stay in the outbox, as
    /// if every relay were stuck or dead.
    pub async fn hold_outbox_relay(&self) -> RelayHold {
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to hold the relay lock");
        conn.batch_execute(&format!(
            "SET search_path TO \"{}\"; SELECT pg_advisory_lock({RELAY_LOCK_KEYS})",
            self.schema
        ))
        .await
        .expect("take the relay lock");
        RelayHold { conn }
    }
}

/// The outbox relay lock of one schema, held by a test.
pub struct RelayHold {
    conn: AsyncPgConnection,
}

impl std::fmt::Debug for RelayHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHold").finish_non_exhaustive()
    }
}

impl RelayHold {
    pub async fn release(mut self) {
        self.conn
            .batch_execute(&format!("SELECT pg_advisory_unlock({RELAY_LOCK_KEYS})"))
            .await
            .expect("release the relay lock");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.database.close();
        let url = self.url.clone();
        let drop_schema = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        // Drop cannot await, and may run inside a runtime: do the work on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                conn.batch_execute(&drop_schema).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
        if let Ok(Err(error)) = cleanup.join() {
            tracing::warn!(schema = %self.schema, %error, "could not drop the test schema");
        }
    }
}
