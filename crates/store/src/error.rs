//! The one error type of the store, and the one place where database errors are sorted
//! into it.

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::sqlite::SqliteError;

/// The result of every store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Why a store operation failed. Callers decide on the variant (404, 409, 503, …); the
/// text is for logs and never contains connection secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist, or exists for another tenant, or a record it refers to
    /// does not exist.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The write contradicts what is already stored: a unique key is taken, an approval
    /// was already decided, a job is no longer running.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// The database cannot serve the request now (connection refused, pool exhausted,
    /// lock held too long). Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not decode into its domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
    /// Anything else: a bad URL, a value the schema rejects, an unexpected database error.
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// A `NotFound` naming the missing record.
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// A `Conflict` naming what is already there.
    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    /// A `Corrupt` for a column whose text does not parse into its domain type.
    pub(crate) fn corrupt(column: &str, err: impl std::fmt::Display) -> Self {
        Self::Corrupt(format!("{column}: {err}"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match err {
            E::Database(db) => from_database_error(&*db),
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
                Self::Unavailable(err.to_string())
            }
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. } => Self::Corrupt(err.to_string()),
            E::RowNotFound => Self::not_found("row"),
            E::Migrate(migrate) => Self::Migration(migrate.to_string()),
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(err.to_string())
    }
}

fn from_database_error(db: &dyn DatabaseError) -> StoreError {
    match db.kind() {
        ErrorKind::UniqueViolation => StoreError::conflict(db.message()),
        // Every foreign key points from a record to its owner (tenant, conversation,
        // message, document), so a violation means the owner is missing, or belongs to
        // another tenant, which the caller must not be able to tell apart.
        ErrorKind::ForeignKeyViolation => {
            StoreError::not_found(format!("a record this one refers to ({})", db.message()))
        }
        ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
            StoreError::Other(format!("value rejected by the schema: {}", db.message()))
        }
        _ if is_transient(db) => StoreError::Unavailable(db.message().to_owned()),
        _ => StoreError::Other(db.message().to_owned()),
    }
}

/// Whether the database refused for a reason that passes: a lock, a connection, resources.
fn is_transient(db: &dyn DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if db.try_downcast_ref::<SqliteError>().is_some() {
        // SQLite reports extended codes; the low byte is the primary code. SQLITE_BUSY (5)
        // and SQLITE_LOCKED (6) mean another writer held the lock past busy_timeout.
        code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6))
    } else {
        // SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57P
        // server shutting down; 40001/40P01 are serialization failures and deadlocks,
        // which succeed when retried.
        ["08", "53", "57P", "40001", "40P01"].iter().any(|prefix| code.starts_with(prefix))
    }
}
