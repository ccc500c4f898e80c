//! Files users upload (XEP-0363 HTTP File Upload): the bytes and a little metadata per file,
//! addressed by an identifier the caller chooses (random, unguessable), and how many bytes
//! each account keeps.
//!
//! The trait is written so that an object store (S3 and the like, for clusters) can implement
//! it too: an upload is a stream of chunks that becomes visible only when finished (a
//! multipart upload), reads are streams, and expiry asks for files created before a time
//! rather than walking a directory. [`crate::DiskFileStore`] keeps them in a directory.

use std::pin::Pin;

use tokio::io::AsyncRead;

use crate::StorageError;

/// What is known of a stored file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    /// The bare JID of the account that uploaded it; its quota counts the file.
    pub owner: String,
    /// The file name the uploader gave (served in `Content-Disposition`).
    pub filename: String,
    /// Length in bytes.
    pub size: u64,
    /// The media type it is served with.
    pub content_type: String,
    /// When the upload finished (for a [`FileStore::begin`]: when it began), in seconds
    /// since the Unix epoch.
    pub created: i64,
}

/// A file's bytes, as they are read.
pub type FileReader = Pin<Box<dyn AsyncRead + Send>>;

/// Uploaded files by identifier.
///
/// Identifiers are 16 to 64 characters of `[0-9a-z]`; any other identifier is refused
/// ([`StorageError::Corrupt`] from [`FileStore::begin`], absent for the reads).
#[async_trait::async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Starts storing a file of exactly `file.size` bytes under `id`. Nothing is visible
    /// until [`FileUpload::finish`]; an upload dropped before that leaves nothing behind.
    ///
    /// Fails with [`StorageError::AlreadyExists`] when `id` holds a file or another upload
    /// to it is under way, and with [`StorageError::LimitReached`] when `quota` is given and
    /// the owner's [`usage`](FileStore::usage) plus this file would exceed it (the check
    /// and the reservation are atomic, so concurrent uploads never exceed it).
    async fn begin(
        &self,
        id: &str,
        file: StoredFile,
        quota: Option<u64>,
    ) -> Result<Box<dyn FileUpload>, StorageError>;

    /// The file's metadata, if it is stored.
    async fn stat(&self, id: &str) -> Result<Option<StoredFile>, StorageError>;

    /// The file's metadata and bytes, if it is stored.
    async fn open(&self, id: &str) -> Result<Option<(StoredFile, FileReader)>, StorageError>;

    /// Removes the file and frees its bytes from its owner's usage; `false` when there was
    /// none.
    async fn delete(&self, id: &str) -> Result<bool, StorageError>;

    /// The identifiers of the files created before `before` (seconds since the Unix epoch).
    async fn created_before(&self, before: i64) -> Result<Vec<String>, StorageError>;

    /// Bytes the account `owner` (a bare JID) keeps, counting uploads under way.
    async fn usage(&self, owner: &str) -> Result<u64, StorageError>;
}

/// An upload under way (see [`FileStore::begin`]).
#[async_trait::async_trait]
pub trait FileUpload: Send {
    /// Appends bytes; more than the announced size fails with
    /// [`StorageError::LimitReached`].
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError>;

    /// Makes the file visible, once exactly the announced size was written (else
    /// [`StorageError::Corrupt`], and nothing is kept).
    async fn finish(self: Box<Self>) -> Result<(), StorageError>;
}

/// Whether `id` is an identifier stores take (see [`FileStore`]).
pub fn valid_file_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}
