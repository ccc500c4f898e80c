//! Per-account XML documents by key: XEP-0049 private XML storage and XEP-0054 vcard-temp.
//!
//! Domains, usernames and keys are taken as given. The key is chosen by the caller, e.g.
//! `"jabber:iq:private <namespace of the query child>"` for XEP-0049 or `"vcard-temp"` for
//! XEP-0054; the document is the serialised XML the caller wants back, unparsed here.

use crate::StorageError;

/// Per-account XML documents.
///
/// The account must exist: setting a document for a missing one fails with a backend
/// (foreign key) error. Removing the account removes its documents.
#[async_trait::async_trait]
pub trait PrivateXmlStore: Send + Sync + 'static {
    /// The document stored under `key` for the account, if any.
    async fn get_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
    ) -> Result<Option<String>, StorageError>;

    /// Stores the document under `key`, replacing any stored before. An empty document is
    /// stored as such (and read back as `Some("")`).
    async fn set_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
        xml: &str,
    ) -> Result<(), StorageError>;

    /// Removes the document under `key`; `false` when there was none.
    async fn remove_private(
        &self,
        domain: &str,
        username: &str,
        key: &str,
    ) -> Result<bool, StorageError>;

    /// Every account with a document under `key`, as (domain, username): read once at start
    /// by features that act only for those accounts (a blocklist, a vCard with a photo).
    async fn accounts_with_private(&self, key: &str)
        -> Result<Vec<(String, String)>, StorageError>;
}
