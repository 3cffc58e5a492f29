//! Concierge's storage: the [`Store`] trait and its SQLite and PostgreSQL backends, with
//! their migrations.
//!
//! Every read and write of core's records goes through `Arc<dyn Store>`. Both backends
//! run the same statements (see `shared.rs`) and pass the same test suite, so a deployment
//! can start on a SQLite file and move to PostgreSQL without a behavioural change. The
//! guarantees callers rely on are the database's, not the caller's: message sequence
//! numbers, approval decisions, job claims and document re-ingestion are each settled by
//! one locked statement or one transaction.
//!
//! Invariant: this crate persists core's types and nothing else. It knows nothing of HTTP,
//! of customer support or of the agent; it makes no policy decision (who may read what is
//! the caller's tenant, passed in), and nothing outside it writes SQL. `queue` holds the
//! work queue's trait and its in-process implementation.

mod error;
mod postgres;
pub mod queue;
mod rows;
mod shared;
mod sqlite;
mod store;

use std::sync::Arc;

pub use error::{Result, StoreError};
pub use postgres::PostgresStore;
pub use queue::{MemoryQueue, Queue, QueueFull, QueueItem, Reservation};
pub use sqlite::SqliteStore;
pub use store::{NewMessage, Store};

/// Connects to the store named by `url`, choosing the backend by its scheme: `sqlite:`
/// (a file, created if missing, or `sqlite::memory:`), `postgres://` or `postgresql://`.
/// Opens one connection; does not migrate. Any other scheme is an error that lists the
/// accepted ones (and does not repeat the URL, which may hold a password).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .filter(|scheme| scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
            .unwrap_or("(none)");
        Err(StoreError::Other(format!(
            "unsupported store URL scheme `{scheme}`: expected `sqlite:`, `postgres://` or `postgresql://`"
        )))
    }
}
