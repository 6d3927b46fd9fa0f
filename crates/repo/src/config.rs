use std::time::Duration;

use secrecy::SecretString;

/// How to reach PostgreSQL and how to size the pool. Built from environment variables by the
/// service runtime (`DATABASE_URL`, `DATABASE_POOL_SIZE`, …); see the workspace README.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`; secret because it holds the password.
    pub url: SecretString,
    /// Shown in `pg_stat_activity`, so an operator sees which service holds a connection.
    pub application_name: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// How long a caller waits for a free connection before it gets `DbError::Unavailable`.
    pub pool_wait_timeout: Duration,
    /// How long opening a new connection may take.
    pub connect_timeout: Duration,
    /// Server-side limit on any one statement, so a stuck query cannot hold a connection forever.
    pub statement_timeout: Duration,
    /// Schema to use instead of `public`: tests give each test its own.
    pub search_path: Option<String>,
}

impl DatabaseConfig {
    /// A configuration with the defaults the services use, for the given URL.
    pub fn new(url: impl Into<String>, application_name: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            application_name: application_name.into(),
            pool_size: 10,
            pool_wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            search_path: None,
        }
    }
}
