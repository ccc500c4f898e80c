//! Persistent storage for weft: one trait per feature, the error type, and the [`Storage`] bundle handed to the server.
//!
//! Every feature that keeps state across restarts reaches it through a trait in this crate
//! ([`AccountStore`], [`RosterStore`], [`OfflineStore`], [`PrivateXmlStore`],
//! [`ArchiveStore`], [`PepStore`], [`PushStore`], [`MucStore`]), never through a
//! concrete database. The embedded SQLite backend ([`SqliteStore`]) is the default; a
//! PostgreSQL backend can later implement the same traits without callers noticing.
//!
//! Adding a store for a new feature means: a trait in its own file next to `accounts.rs`, a
//! migration file per backend, an `impl` in `sqlite/<feature>.rs`, and a field on [`Storage`].
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

mod accounts;
mod archive;
mod archive_chunk;
mod disk_files;
mod files;
mod muc;
mod offline;
mod pep;
pub mod private;
mod private_xml;
mod push;
mod roster;
mod sqlite;

pub use accounts::{AccountName, AccountStore};
pub use archive::{
    ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveStore,
    ArchivedMessage, EntryNames,
};
pub use disk_files::DiskFileStore;
pub use files::{valid_file_id, FileReader, FileStore, FileUpload, StoredFile};
pub use muc::{MucStore, StoredRoom};
pub use offline::{OfflineMessage, OfflineStore};
pub use pep::{PepItem, PepStore};
pub use private_xml::PrivateXmlStore;
pub use push::{PushRegistration, PushStore};
pub use roster::{RosterItem, RosterStore, Subscription};
pub use sqlite::SqliteStore;
pub use weft_sasl::{Hash, ScramCredentials};

/// Errors of every store and backend in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The record being created already exists (for [`AccountStore::create_account`]: the
    /// account). XMPP callers usually map this to `<conflict/>` (RFC 6120 §8.3.3.4).
    #[error("already exists")]
    AlreadyExists,

    /// The credentials passed to a store held two entries for the same hash; a store keeps at
    /// most one SCRAM credential per hash (RFC 5802 §5: one salted password per mechanism).
    #[error("more than one SCRAM credential given for {}", hash_name(*.0))]
    DuplicateHash(Hash),

    /// The database was written by a newer weft: its schema version is above the highest this
    /// build knows. It is refused rather than used, so an older binary never damages newer data.
    #[error(
        "database schema version {found} is newer than this weft supports ({supported}); \
         upgrade weft or restore a backup"
    )]
    SchemaTooNew {
        /// Highest schema version recorded in the database.
        found: i64,
        /// Highest schema version this build of weft knows.
        supported: i64,
    },

    /// Applying an embedded migration failed; the whole migration transaction was rolled back.
    #[error("schema migration {version} ({name}) failed: {message}")]
    Migration {
        /// Version of the migration that failed.
        version: i64,
        /// Short name of the migration file.
        name: &'static str,
        /// What the backend reported.
        message: String,
    },

    /// A stored value could not be decoded (for instance an unknown hash name or an iteration
    /// count out of range); the database was modified outside weft or is damaged.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// The database file or its directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The file or directory weft tried to create.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A per-account limit given by the caller was reached (the `max_items` of
    /// [`RosterStore::put_roster_item`], the `max_messages` of
    /// [`OfflineStore::store_offline`]); nothing was written. Callers map it to the
    /// stanza error their specification names for it.
    #[error("per-account limit reached")]
    LimitReached,

    /// The database backend failed (I/O, locking timeout, constraint other than the ones above).
    #[error("storage backend error: {0}")]
    Backend(#[from] sqlx::Error),

    /// The SQLite library failed on a connection used outside sqlx (batched archive writes).
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A blocking storage task could not run to its end (the runtime is shutting down).
    #[error("storage task failed: {0}")]
    Task(String),
}

/// The SCRAM hash name as it appears in the mechanism name (RFC 5802 §4), e.g. `SHA-256`.
/// This is also the spelling stored in the database.
pub(crate) fn hash_name(hash: Hash) -> &'static str {
    match hash {
        Hash::Sha1 => "SHA-1",
        Hash::Sha256 => "SHA-256",
    }
}

/// All stores of one backend, handed to the server and its modules.
///
/// Cheap to clone. Future stores become further fields here.
#[derive(Clone)]
pub struct Storage {
    /// Accounts and their SCRAM credentials.
    pub accounts: Arc<dyn AccountStore>,
    /// Rosters and their versions.
    pub roster: Arc<dyn RosterStore>,
    /// Offline messages.
    pub offline: Arc<dyn OfflineStore>,
    /// Per-account XML documents (private XML storage, vcard-temp).
    pub private_xml: Arc<dyn PrivateXmlStore>,
    /// Message archives (XEP-0313).
    pub archive: Arc<dyn ArchiveStore>,
    /// Accounts' personal eventing nodes and items (XEP-0163).
    pub pep: Arc<dyn PepStore>,
    /// Push notification registrations (XEP-0357).
    pub push: Arc<dyn PushStore>,
    /// Persistent multi-user chat rooms (XEP-0045).
    pub muc: Arc<dyn MucStore>,
}

impl Storage {
    /// Opens (creating if missing) and migrates the SQLite database at `path`.
    /// See [`SqliteStore::open`].
    pub async fn open_sqlite(path: &Path) -> Result<Self, StorageError> {
        Ok(SqliteStore::open(path).await?.into())
    }

    /// A fresh, empty, private in-memory SQLite database, for tests.
    /// See [`SqliteStore::open_in_memory`].
    pub async fn in_memory() -> Result<Self, StorageError> {
        Ok(SqliteStore::open_in_memory().await?.into())
    }
}

impl From<SqliteStore> for Storage {
    fn from(store: SqliteStore) -> Self {
        let store = Arc::new(store);
        Storage {
            accounts: store.clone(),
            roster: store.clone(),
            offline: store.clone(),
            private_xml: store.clone(),
            archive: store.clone(),
            pep: store.clone(),
            push: store.clone(),
            muc: store,
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}
