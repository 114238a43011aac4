//! The store: the usage ledger and its rollups, in SQLite (embedded, the default), Postgres
//! (shared by replicas) or memory (SQLite in memory: tests and the demo), behind one
//! interface. The store runs on its own small Tokio runtime: its connections never belong
//! to a Pingora worker, and whoever awaits a store call from another runtime only waits
//! for a join handle.

pub mod keys;
pub mod objects;
mod schema;
pub mod usage;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// Nothing persisted.
    Memory,
    Sqlite(PathBuf),
    /// A `postgres://` URL (its password is never shown: see `Display`).
    Postgres(String),
}

impl StoreUrl {
    /// Parses `store.url`; a relative SQLite path resolves against `base` (the state
    /// directory or the config file's folder).
    pub fn parse(url: &str, base: &Path) -> Result<StoreUrl, String> {
        let url = url.trim();
        if url == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            // sqlite://modelgate.db (relative) or sqlite:///var/lib/modelgate.db (absolute)
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://modelgate.db".into());
            }
            let p = Path::new(path);
            return Ok(StoreUrl::Sqlite(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| {
                format!(
                    "not a valid postgres URL ({})",
                    redact_url_error(&e.to_string())
                )
            })?;
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        Err("must be \"memory\", \"sqlite://PATH\" or \"postgres://USER:PASS@HOST:PORT/DB\"".into())
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => write!(f, "memory"),
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StoreUrl::Postgres(u) => write!(f, "{}", redact_password(u)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((cred, host)) if cred.contains(':') => {
            let user = cred.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

fn redact_url_error(msg: &str) -> String {
    // sqlx's URL errors do not quote the URL, but be sure no password slips through.
    msg.split_whitespace()
        .map(|w| {
            if w.contains('@') {
                redact_password(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same sqlx expression on whichever pool the store has (`$p` is the pool).
/// Queries are written once, in the SQL both dialects accept.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

pub struct Store {
    pool: Pool,
    url: StoreUrl,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Store {
    /// Opens (creating when needed) and migrates the store, and checks it is writable.
    /// Blocking: called at start and by `-t`, never on the request path.
    pub fn open(url: &StoreUrl) -> Result<Store, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("modelgate-store")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the store's runtime: {e}"))?;
        let pool = runtime.block_on(connect(url))?;
        let store = Store {
            pool,
            url: url.clone(),
            runtime: Some(runtime),
        };
        store.block_on(schema::migrate(store.pool.clone()))??;
        store.block_on(schema::check_writable(store.pool.clone()))??;
        Ok(store)
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Runs `f` on the store's runtime and waits for it, from a thread outside any runtime
    /// (start-up, `-t`, the final flush).
    pub fn block_on<T>(&self, f: impl Future<Output = T>) -> Result<T, String> {
        match &self.runtime {
            Some(rt) => Ok(rt.block_on(f)),
            None => Err("the store is closed".into()),
        }
    }

    /// Runs `f` on the store's runtime; awaitable from any other runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let Some(rt) = &self.runtime else {
            return Err("the store is closed".into());
        };
        rt.spawn(f)
            .await
            .map_err(|e| format!("store task failed: {e}"))
    }

    /// Spawns a long-lived task (the ledger writer) on the store's runtime.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(
        &self,
        f: F,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.runtime.as_ref().map(|rt| rt.spawn(f))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // May be dropped inside another runtime (tests): never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Prepared statements kept per connection: the ledger writes each table with up to 11
/// (`usage::statement_chunks`), the readers add their own; sqlx's default of 100 would
/// evict some and re-parse them (a 19,000-placeholder insert costs milliseconds).
const STATEMENT_CACHE: usize = 256;

/// Rows SQLite's worker thread may read ahead of the reader: with sqlx's default of 50 the
/// two threads hand over nearly row by row, and the budgets' start-up scan of a month
/// of hourly rollups (half a million rows) took seconds.
const ROW_CHANNEL: usize = 4096;

async fn connect(url: &StoreUrl) -> Result<Pool, String> {
    match url {
        StoreUrl::Memory => {
            // One connection that never closes: an in-memory database lives as long as it.
            let opts =
                SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| e.to_string())?;
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await
                .map_err(|e| format!("cannot open the in-memory store: {e}"))?;
            Ok(Pool::Sqlite(pool))
        }
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(format!(
                        "cannot open the store {}: the folder {} does not exist",
                        path.display(),
                        dir.display()
                    ));
                }
            }
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: durable across process crashes, one fsync per checkpoint.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .statement_cache_capacity(STATEMENT_CACHE)
                .row_buffer_size(ROW_CHANNEL);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
            Ok(Pool::Sqlite(pool))
        }
        StoreUrl::Postgres(u) => {
            let opts = PgConnectOptions::from_str(u)
                .map_err(|e| redact_url_error(&e.to_string()))?
                .statement_cache_capacity(STATEMENT_CACHE);
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await
                .map_err(|e| {
                    format!(
                        "cannot connect to the store {}: {}",
                        redact_password(u),
                        redact_url_error(&e.to_string())
                    )
                })?;
            Ok(Pool::Postgres(pool))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_a_password() {
        let base = Path::new("/etc/modelgate");
        assert_eq!(StoreUrl::parse("memory", base).unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("sqlite://modelgate.db", base).unwrap(),
            StoreUrl::Sqlite(PathBuf::from("/etc/modelgate/modelgate.db"))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/mg.db", base).unwrap(),
            StoreUrl::Sqlite(PathBuf::from("/var/lib/mg.db"))
        );
        let pg = StoreUrl::parse("postgres://mg:s3cret@db:5432/mg", base).unwrap();
        assert_eq!(pg.to_string(), "postgres://mg:***@db:5432/mg");
        assert!(StoreUrl::parse("mysql://x", base).is_err());
        assert!(StoreUrl::parse("sqlite://", base).is_err());
    }

    #[test]
    fn a_missing_folder_is_named() {
        let e = Store::open(&StoreUrl::Sqlite(PathBuf::from("/nonexistent-dir/x.db")))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent-dir"), "{e}");
    }
}
