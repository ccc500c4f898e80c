//! The offline message store: messages kept for an account while it has no available
//! resource, delivered when it next becomes available (XEP-0160).
//!
//! Domains and usernames are taken as given (already normalised by the caller). Stanzas are
//! stored serialised, as the server hands them over; which messages are stored and how they
//! are delivered (with a XEP-0203 delay) is the server's business.

use crate::StorageError;

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    /// The store's identifier of the message, for [`OfflineStore::remove_offline`]. Ids of
    /// one account rise in arrival order and are never reused, also after removals.
    pub id: i64,
    /// The serialised stanza, as given to [`OfflineStore::store_offline`].
    pub stanza: String,
    /// When it was stored, in seconds since the Unix epoch (for the XEP-0203 delay stamp).
    pub stored_at: i64,
}

/// Offline messages of each account.
///
/// The account must exist: storing for a missing one fails with a backend (foreign key)
/// error and stores nothing. Removing the account removes its messages.
#[async_trait::async_trait]
pub trait OfflineStore: Send + Sync + 'static {
    /// Appends a message and returns its id.
    ///
    /// With `max_messages = Some(n)`, fails with [`StorageError::LimitReached`] (storing
    /// nothing) when `n` or more are already stored for the account; the check and the
    /// insert are atomic, so concurrent stores never exceed `n`.
    async fn store_offline(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        max_messages: Option<usize>,
    ) -> Result<i64, StorageError>;

    /// All stored messages of the account in arrival order (oldest first, also within one
    /// second), without removing them.
    async fn offline_messages(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<OfflineMessage>, StorageError>;

    /// Removes the account's messages with the given ids (once delivered); returns how many
    /// were removed. Ids that are not the account's, or no longer stored, are ignored.
    async fn remove_offline(
        &self,
        domain: &str,
        username: &str,
        ids: &[i64],
    ) -> Result<usize, StorageError>;

    /// How many messages are stored for the account.
    async fn count_offline(&self, domain: &str, username: &str) -> Result<u64, StorageError>;

    /// Every account with at least one stored message, as (domain, username): read once at
    /// start, so that logins of the others need not ask.
    async fn accounts_with_offline(&self) -> Result<Vec<(String, String)>, StorageError>;
}
