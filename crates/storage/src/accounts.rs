//! The account store: which local accounts exist and their SCRAM credentials (RFC 5802, RFC 7677).
//!
//! Passwords are never stored, only SCRAM credentials, one per hash. Domains and usernames are
//! taken as given: callers pass them already normalised (domain nameprep'd, username
//! nodeprep'd / lowercased), and two spellings are two different accounts here.

use crate::StorageError;
use weft_sasl::{Hash, ScramCredentials};

/// The bare identity of a local account: `username@domain`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountName {
    /// The localpart, as stored (already normalised by the caller).
    pub username: String,
    /// The local domain the account belongs to.
    pub domain: String,
}

/// Accounts and their SCRAM credentials.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account with its credentials, atomically.
    ///
    /// Fails with [`StorageError::AlreadyExists`] when the account exists (also when another
    /// task created it concurrently: exactly one of racing creates succeeds).
    /// `credentials` holds one entry per hash (normally SHA-1 and SHA-256); two entries for
    /// one hash fail with [`StorageError::DuplicateHash`]. It may be empty (an account that
    /// cannot log in with a password).
    async fn create_account(
        &self,
        domain: &str,
        username: &str,
        credentials: &[ScramCredentials],
    ) -> Result<(), StorageError>;

    /// Removes an account and everything stored for it (credentials, roster, offline
    /// messages, private XML documents), through `ON DELETE CASCADE`.
    ///
    /// Returns `false` when there was no such account.
    async fn remove_account(&self, domain: &str, username: &str) -> Result<bool, StorageError>;

    /// Replaces all stored credentials of the account atomically: hashes absent from
    /// `credentials` are removed. Returns `false` (and changes nothing) when there is no such
    /// account. Two entries for one hash fail with [`StorageError::DuplicateHash`].
    async fn set_credentials(
        &self,
        domain: &str,
        username: &str,
        credentials: &[ScramCredentials],
    ) -> Result<bool, StorageError>;

    /// The account's SCRAM credentials for `hash`, or `None` when the account does not exist
    /// or has no credential for that hash.
    async fn scram_credentials(
        &self,
        domain: &str,
        username: &str,
        hash: Hash,
    ) -> Result<Option<ScramCredentials>, StorageError>;

    /// Whether the account exists.
    async fn account_exists(&self, domain: &str, username: &str) -> Result<bool, StorageError>;

    /// All accounts of `domain`, or of every domain when `None`; sorted by domain, then
    /// username, in byte order of their UTF-8 encoding (the same order as `String`'s `Ord`).
    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountName>, StorageError>;

    /// How many accounts there are, over all domains.
    async fn count_accounts(&self) -> Result<u64, StorageError>;
}
