//! Synchronous point reads for the login path, on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread of its own and hands the result back
//! through a channel: two thread switches per query. For a login's credential lookup (one
//! indexed row, a few microseconds inside SQLite) those switches cost more than the query:
//! measured on the benchmark's 2-vCPU VM with the server on one core, the hop and its futex
//! wake-ups were ~16% of the server's CPU per SCRAM login. Here the read runs on the caller's
//! thread through rusqlite, on the same SQLite library sqlx links.
//!
//! Blocking the runtime thread is bounded: WAL readers never wait for the writer, and these
//! connections have no busy timeout, so a read that would wait (WAL recovery by another
//! connection, a rare restart race) fails at once with `SQLITE_BUSY` and the caller falls
//! back to the pool ([`InlineReaders::read`] returns `None`). A cold page costs a read from
//! the file, as it does in Prosody's synchronous SQLite calls.
//!
//! Only file databases have inline readers: an in-memory database is private to its one
//! pooled connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{ErrorCode, OpenFlags};

/// Idle connections kept for reuse. Every reader is in use only during one synchronous call,
/// so at most one per thread that reads at the same moment: runtime workers and blocking
/// threads. More than this are closed after use instead of kept.
const MAX_IDLE: usize = 8;

/// Read-only connections to one database file, opened on demand and reused.
#[derive(Debug)]
pub(super) struct InlineReaders {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl InlineReaders {
    pub(super) fn new(path: &Path) -> Self {
        InlineReaders {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (opening one when none is idle).
    ///
    /// `None` means "use the pool instead": the database was busy, or the connection could
    /// not be opened or prepared. Errors are logged, not returned: the pool path reports the
    /// same failure properly if it persists.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let conn = self.take()?;
        let result = read(&conn);
        match result {
            Ok(value) => {
                self.give_back(conn);
                Some(value)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                tracing::debug!("inline SQLite read busy; using the pool");
                self.give_back(conn);
                None
            }
            Err(error) => {
                // The connection may be in a bad state: drop it rather than reuse it.
                tracing::warn!(%error, "inline SQLite read failed; using the pool");
                None
            }
        }
    }

    /// Connections waiting for reuse (tests check that reads ran inline).
    #[cfg(test)]
    pub(super) fn idle_connections(&self) -> usize {
        self.lock().len()
    }

    fn take(&self) -> Option<rusqlite::Connection> {
        if let Some(conn) = self.lock().pop() {
            return Some(conn);
        }
        match self.open() {
            Ok(conn) => Some(conn),
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "cannot open an inline SQLite reader; using the pool");
                None
            }
        }
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        // A panic while holding the lock cannot leave the list inconsistent (push/pop only).
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        // READ_ONLY: writes fail and a missing file is not created. NO_MUTEX: a connection is
        // used by one thread at a time (it is taken out of the list). No busy timeout (the
        // default): never sleep on the runtime thread.
        rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }
}
