//! The SQLite backend: one file, WAL journal, a few pooled connections.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::{Result, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another's lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Writers take turns in SQLite however many connections there are; a few let reads run
/// beside the writer (WAL) without holding many file handles.
const POOL_SIZE: u32 = 4;

/// A [`Store`](crate::Store) on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite:path/to/file.db`, `sqlite:///abs/path.db` or
    /// `sqlite::memory:`), creating the file and its directory if missing. Sets WAL mode,
    /// foreign keys on and a 5 s busy timeout; opens one connection to check the file,
    /// more on demand (up to 4). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Other(format!("invalid SQLite URL: {err}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = if in_memory {
            // An in-memory database lives as long as one of its connections and shares a
            // cache whose table locks ignore busy_timeout: keep exactly one connection, forever.
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            create_parent_dir(options.get_filename()).await?;
            SqlitePoolOptions::new().max_connections(POOL_SIZE)
        };
        let pool = pool_options.acquire_timeout(BUSY_TIMEOUT).connect_with(options).await?;
        Ok(Self { pool })
    }

    /// Runs the migrations inside one `BEGIN IMMEDIATE` transaction. sqlx takes no lock
    /// on SQLite, so without it two processes migrating a new file at once would both try
    /// to create the tables; with it, the second waits, then finds everything applied.
    async fn run_migrations(&self) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Inside a transaction, each migration's own transaction becomes a savepoint.
        // `run_direct` is `run` on a bare connection; `run` on one fails the Send check of
        // async_trait's future (sqlx's "Acquire is not general enough").
        MIGRATOR.run_direct(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => tokio::fs::create_dir_all(dir)
            .await
            .map_err(|err| StoreError::Unavailable(format!("cannot create {}: {err}", dir.display()))),
        _ => Ok(()),
    }
}

crate::shared::impl_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    backend: "sqlite",
    begin_write: "BEGIN IMMEDIATE",
    lock_row: "",
    skip_locked: "",
}
