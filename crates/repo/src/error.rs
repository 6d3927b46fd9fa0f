use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why the pool or a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached, or no connection was free in time. Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The statement reached the database and failed there.
    #[error(transparent)]
    Query(#[from] DieselError),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// Whether trying again later may succeed (the database is down or overloaded), as opposed to
    /// a failure that will repeat (a constraint violation, bad SQL).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Query(error) => is_transient(error),
            Self::Migration(_) => false,
        }
    }
}

/// The connection is gone: the database is down or unreachable.
fn is_connection_loss(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | DieselError::BrokenTransactionManager
    )
}

/// The messages PostgreSQL gives the failures that may pass on a second try while the database
/// is up: lock and statement timeouts (55P03, 57014) and deadlocks (40P01). The driver does not
/// hand diesel the SQLSTATE of these, so they are recognised by message (English `lc_messages`,
/// the server default).
const TRANSIENT_MESSAGES: &[&str] = &[
    "lock timeout",
    "could not obtain lock",
    "statement timeout",
    "deadlock detected",
];

/// A failure of this statement that may pass if it is tried again: a serialization failure, a
/// lock or statement timeout, a deadlock.
fn is_transient_failure(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => TRANSIENT_MESSAGES
            .iter()
            .any(|needle| info.message().contains(needle)),
        _ => false,
    }
}

fn is_transient(error: &DieselError) -> bool {
    is_connection_loss(error) || is_transient_failure(error)
}

/// Why a repository call failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// No such record (or it is soft-deleted, revoked, used or expired, where that hides it).
    #[error("{entity} not found: {key}")]
    NotFound { entity: &'static str, key: String },
    /// The change would duplicate something unique (an email, a provider account, a client ID),
    /// or conflicts with the record's state (a code already used).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input refers to something that does not exist or breaks a rule of the data.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// PostgreSQL is unreachable or no connection was free; trying again later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database is up but this statement failed for a reason that may pass: a lock or
    /// statement timeout, a serialization failure, a deadlock.
    #[error("transient database failure: {0}")]
    Transient(String),
    /// Anything else the database said.
    #[error("database error: {0}")]
    Database(String),
}

impl RepoError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Transient(_))
    }

    pub(crate) fn not_found(entity: &'static str, key: impl ToString) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }
}

impl From<DbError> for RepoError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(reason) => Self::Unavailable(reason),
            DbError::Query(error) => error.into(),
            DbError::Migration(reason) => Self::Database(reason),
        }
    }
}

impl From<DieselError> for RepoError {
    fn from(error: DieselError) -> Self {
        if is_connection_loss(&error) {
            return Self::Unavailable(error.to_string());
        }
        if is_transient_failure(&error) {
            return Self::Transient(error.to_string());
        }
        match error {
            DieselError::DatabaseError(kind, info) => {
                let what = info
                    .constraint_name()
                    .map_or_else(|| info.message().to_owned(), str::to_owned);
                match kind {
                    DatabaseErrorKind::UniqueViolation => {
                        Self::Conflict(format!("duplicate ({what})"))
                    }
                    DatabaseErrorKind::ForeignKeyViolation => Self::InvalidInput(format!(
                        "refers to a record that does not exist ({what})"
                    )),
                    DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                        Self::InvalidInput(format!("breaks a rule of the data ({what})"))
                    }
                    _ => Self::Database(info.message().to_owned()),
                }
            }
            other => Self::Database(other.to_string()),
        }
    }
}
