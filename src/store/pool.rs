//! The connection to the accounts database, SQLite or PostgreSQL behind one type: opening it, running the migrations, bounding every call by a timeout, and knowing whether it is up.

use std::{
    future::Future,
    path::Path,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::DatabaseConfig;

/// The two backends. Every query is written once in portable SQL (`$1` placeholders, BIGINT,
/// TEXT, `ON CONFLICT`) and run on whichever pool this is, through [`on_pool`].
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, whichever backend it is: one text of
/// each query for both, with no `Any` driver in between.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.inner.pool {
            $crate::store::pool::Pool::Sqlite($pool) => $body,
            $crate::store::pool::Pool::Postgres($pool) => $body,
        }
    };
}
pub(super) use on_pool;

/// Which database holds the accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in memory: nothing outlives the process.
    Memory,
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Whether the last call reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    Up,
    Down,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Up => "up",
            StoreState::Down => "down",
        }
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer in time or could not be reached: try again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write (a key hash made twice).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Failed(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            // PostgreSQL shutting down or restarting (57P01..57P03), or the connection lost.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")) => {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Failed(error.to_string()),
        }
    }
}

pub(super) struct Inner {
    pub(super) pool: Pool,
    backend: Backend,
    timeout: Duration,
    /// 0 up, 1 down.
    state: AtomicU8,
}

/// The accounts database. Cheap to clone. Never called on the request path: the key table,
/// the ledger writer and the admin API call it, each from its own task or handler.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.inner.backend).finish()
    }
}

impl Store {
    /// Connects (within `database.timeout`, retried until then) and runs the migrations.
    pub async fn open(config: &DatabaseConfig) -> Result<Store, String> {
        let timeout = config.timeout.0;
        let (pool, backend) = match (&config.url, &config.data_dir) {
            (Some(url), _) if is_memory(url.expose()) => {
                let options = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| format!("cannot open an in-memory database: {e}"))?;
                (sqlite(options, config, true)?, Backend::Memory)
            }
            (Some(url), _) if url.expose().starts_with("sqlite:") => {
                let options = SqliteConnectOptions::from_str(url.expose())
                    .map_err(|e| format!("database.url {} is not a SQLite URL: {e}", url.redacted()))?;
                (sqlite(options, config, false)?, Backend::Sqlite)
            }
            (Some(url), _) => {
                let options = PgConnectOptions::from_str(url.expose())
                    .map_err(|_| format!("database.url {} is not a PostgreSQL URL", url.redacted()))?;
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(options);
                (Pool::Postgres(pool), Backend::Postgres)
            }
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
                let options = SqliteConnectOptions::new().filename(Path::new(dir).join("groxy.db"));
                (sqlite(options, config, false)?, Backend::Sqlite)
            }
            (None, None) => {
                let options = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| format!("cannot open an in-memory database: {e}"))?;
                (sqlite(options, config, true)?, Backend::Memory)
            }
        };
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                timeout,
                state: AtomicU8::new(0),
            }),
        };
        // A database still starting (a container started beside groxy) gets until the timeout.
        let deadline = tokio::time::Instant::now() + timeout.max(Duration::from_secs(1));
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "database not ready yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(format!("cannot open the {} database: {error}", backend.as_str())),
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub fn state(&self) -> StoreState {
        if self.inner.state.load(Ordering::Relaxed) == 0 {
            StoreState::Up
        } else {
            StoreState::Down
        }
    }

    fn set_state(&self, up: bool) {
        let new = u8::from(!up);
        let old = self.inner.state.swap(new, Ordering::Relaxed);
        if old != new {
            if up {
                tracing::info!(backend = self.inner.backend.as_str(), "the database is reachable again");
            } else {
                tracing::warn!(
                    backend = self.inner.backend.as_str(),
                    "the database is unreachable: known keys keep working, usage is buffered until it is back"
                );
            }
        }
    }

    /// Runs one database operation within `database.timeout` and notes whether the database
    /// answered.
    pub(super) async fn call<T>(
        &self,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.inner.timeout, operation).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable("timed out".to_owned())),
        };
        match &result {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::Failed(_)) => self.set_state(true),
            Err(StoreError::Unavailable(_)) => self.set_state(false),
        }
        result
    }

    async fn migrate(&self) -> Result<(), String> {
        let migrator = super::migrate::migrator().await?;
        let run = async { on_pool!(self, pool => migrator.run(pool).await) };
        match tokio::time::timeout(self.inner.timeout, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Closes the pool (after the last ledger flush).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// `sqlite::memory:` and its spellings: one database per connection, so it must get the
/// memory pool (one connection, kept) rather than a file's.
fn is_memory(url: &str) -> bool {
    url.strip_prefix("sqlite:")
        .is_some_and(|rest| rest.trim_start_matches('/').starts_with(":memory:") || rest.contains("mode=memory"))
}

fn sqlite(options: SqliteConnectOptions, config: &DatabaseConfig, memory: bool) -> Result<Pool, String> {
    let options = options
        .create_if_missing(true)
        .busy_timeout(config.timeout.0)
        .foreign_keys(true);
    let (options, connections) = if memory {
        // Every connection to `:memory:` is a database of its own: one connection, kept.
        (options, 1)
    } else {
        (
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
            config.max_connections,
        )
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(u32::from(memory))
        .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
        .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
        .acquire_timeout(config.timeout.0)
        .connect_lazy_with(options);
    Ok(Pool::Sqlite(pool))
}
