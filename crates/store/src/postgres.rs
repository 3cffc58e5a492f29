//! The PostgreSQL backend.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::Result;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a pooled connection (or the first connection) before
/// failing with `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

const POOL_SIZE: u32 = 10;

/// A [`Store`](crate::Store) on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), opening one
    /// connection now to fail early on a bad URL, password or host, and up to 10 on demand.
    /// Gives up after 5 s with `Unavailable`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool =
            PgPoolOptions::new().max_connections(POOL_SIZE).acquire_timeout(ACQUIRE_TIMEOUT).connect(url).await?;
        Ok(Self { pool })
    }

    /// Runs the migrations. sqlx holds a session advisory lock on the database while it
    /// migrates, so concurrent migrators (threads or processes) wait for one another.
    async fn run_migrations(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        // `run_direct` is `run` on a bare connection; `run` on one fails the Send check of
        // async_trait's future (sqlx's "Acquire is not general enough").
        let result = MIGRATOR.run_direct(&mut *conn).await;
        if result.is_err() {
            // sqlx releases the advisory lock only on success; returning this session to
            // the pool would keep every later migrator waiting on it, so close it instead.
            conn.close().await.ok();
        }
        Ok(result?)
    }
}

crate::shared::impl_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    backend: "postgres",
    begin_write: "BEGIN",
    lock_row: "FOR UPDATE",
    skip_locked: "FOR UPDATE SKIP LOCKED",
}
