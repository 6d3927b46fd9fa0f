use std::sync::Arc;

use deadpool::Runtime;
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;

use crate::{DatabaseConfig, DbError};

/// A pooled connection. Query functions take `&mut AsyncPgConnection`; deref this to get one.
pub type DbConnection = Object<AsyncPgConnection>;

/// The service's handle on PostgreSQL: a pool of diesel-async connections. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Database {
    /// Builds the pool. Connections are opened on first use, so this succeeds while PostgreSQL is
    /// still starting; `ping` tells when it is reachable.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, DbError> {
        let session = Arc::new(SessionSetup::from_config(config));
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |url| session.clone().establish(url));
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            config.url.expose_secret(),
            manager_config,
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_wait_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(format!("cannot build the pool: {e}")))?;
        Ok(Self { pool })
    }

    /// A connection from the pool, waiting at most the configured pool timeout.
    pub async fn connection(&self) -> Result<DbConnection, DbError> {
        self.pool
            .get()
            .await
            .map_err(|error| DbError::Unavailable(error.to_string()))
    }

    /// Checks that PostgreSQL answers a query; used by readiness probes.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.connection().await?;
        conn.batch_execute("SELECT 1")
            .await
            .map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Closes the pool: waiting callers fail, idle connections are dropped.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Session settings applied to every new connection before the pool hands it out. JIT
/// compilation is turned off: the batch statements' cost estimates cross `jit_above_cost`, and
/// compiling them took longer (about 25 ms a batch of 1000) than running them; every statement
/// of ours is short.
#[derive(Debug)]
struct SessionSetup {
    statements: String,
    connect_timeout: std::time::Duration,
}

impl SessionSetup {
    fn from_config(config: &DatabaseConfig) -> Self {
        let mut statements = format!(
            "SET application_name = {}; SET statement_timeout = {}; SET jit = off;",
            quote_literal(&config.application_name),
            config.statement_timeout.as_millis(),
        );
        if let Some(schema) = &config.search_path {
            // `public` stays on the path for the types of extensions installed there.
            let schema = quote_identifier(schema);
            statements.push_str(&format!(" SET search_path = {schema}, public;"));
        }
        Self {
            statements,
            connect_timeout: config.connect_timeout,
        }
    }

    fn establish(
        self: Arc<Self>,
        url: &str,
    ) -> BoxFuture<'_, diesel::ConnectionResult<AsyncPgConnection>> {
        let url = url.to_owned();
        async move {
            let connecting = AsyncPgConnection::establish(&url);
            let mut conn = tokio::time::timeout(self.connect_timeout, connecting)
                .await
                .map_err(|_| ConnectionError::BadConnection("connect timed out".into()))??;
            conn.batch_execute(&self.statements)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    }
}

/// `'text'` with embedded quotes doubled, as PostgreSQL reads string literals.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` with embedded double quotes doubled, as PostgreSQL reads identifiers.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn session_setup_quotes_what_it_interpolates() {
        let mut config = DatabaseConfig::new("postgres://x", "o'brien");
        config.statement_timeout = Duration::from_secs(2);
        config.search_path = Some("te\"st".into());
        let setup = SessionSetup::from_config(&config);
        assert_eq!(
            setup.statements,
            "SET application_name = 'o''brien'; SET statement_timeout = 2000; SET jit = off; \
             SET search_path = \"te\"\"st\", public;"
        );
    }
}
