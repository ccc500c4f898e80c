//! The embedded SQLite backend: opening the database file, connection settings and the pool.
//!
//! One [`SqliteStore`] implements every store trait of the crate (one file per feature:
//! `accounts.rs`, `roster.rs`, `offline.rs`, `private_xml.rs`, `archive.rs`, `push.rs`); `migrate.rs` owns the
//! schema; `inline.rs` serves the login path's point reads without sqlx's worker-thread hop.
//! SQL uses `$n` placeholders, which SQLite and PostgreSQL both understand.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StorageError;

mod accounts;
mod archive;
mod inline;
mod migrate;
mod muc;
mod offline;
mod pep;
mod private_xml;
mod push;
mod roster;

#[cfg(test)]
mod tests;

/// Connections in the pool of a file database. SQLite allows one writer at a time (WAL lets
/// readers proceed alongside it), so a few connections are enough.
const FILE_POOL_SIZE: u32 = 4;

/// How long a connection waits for another one's write lock before failing with "database is
/// locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite backend. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Synchronous readers for the login path's point reads; `None` for an in-memory
    /// database (private to the pool's one connection).
    inline: Option<Arc<inline::InlineReaders>>,
    /// The connection for batched archive appends; `None` for an in-memory database.
    archive_writer: Option<Arc<archive::ArchiveWriter>>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (0600) and its parent directory (0700)
    /// if missing, and applies the embedded migrations it lacks.
    ///
    /// Connections use the WAL journal (`synchronous = NORMAL`), enforce foreign keys and wait
    /// up to 5 s for a busy write lock; the pool holds at most 4 connections.
    /// Fails with [`StorageError::SchemaTooNew`] for a database written by a newer weft.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StorageError::Io { path, source }
        };
        if let Some(parent) = path.parent() {
            crate::private::create_dir(parent).map_err(io(parent))?;
        }
        // Created here, not by SQLite, so that it is 0600 whatever the umask; SQLite gives its
        // -wal and -shm files the database file's mode.
        crate::private::create_file(path).map_err(io(path))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            // A local file does not drop connections, so no liveness ping before each query
            // (another round trip to sqlx's worker thread). Logins/s did not move measurably
            // with it; kept because the ping checks nothing here.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        tracing::debug!(path = %path.display(), "opened SQLite database");
        let inline = Arc::new(inline::InlineReaders::new(path));
        let mut store = Self::migrated(pool, Some(inline)).await?;
        store.archive_writer = Some(Arc::new(archive::ArchiveWriter::new(path)));
        Ok(store)
    }

    /// A fresh, empty, private in-memory database, for tests.
    ///
    /// The pool holds exactly one connection that is never closed for idleness or age, so the
    /// data lives as long as the store (and its clones); operations are serialised on it.
    pub async fn open_in_memory() -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool, None).await
    }

    /// Closes the pool, waiting for connections in use to be returned. Further operations
    /// fail. Optional: dropping the last clone also closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(
        pool: SqlitePool,
        inline: Option<Arc<inline::InlineReaders>>,
    ) -> Result<Self, StorageError> {
        migrate::run(&pool).await?;
        Ok(SqliteStore {
            pool,
            inline,
            archive_writer: None,
        })
    }
}
