/// Why a database call failed, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached, or no connection was free in time. Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The statement reached the database and failed there.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// Whether trying again later may succeed (the database is down or overloaded), as opposed to
    /// a failure that will repeat (a constraint violation, bad SQL).
    pub fn is_retryable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Unavailable(_) => true,
            Self::Query(Error::DatabaseError(
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection,
                _,
            )) => true,
            Self::Query(Error::BrokenTransactionManager) => true,
            Self::Query(_) | Self::Migration(_) => false,
        }
    }
}
