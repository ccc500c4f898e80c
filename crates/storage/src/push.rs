//! Push notification registrations (XEP-0357): the app servers and nodes an account asked to
//! be notified through while it cannot be reached.
//!
//! Domains, usernames and JIDs are taken as given (already normalised by the caller); the
//! publish-options form is stored serialised, unparsed here.

use crate::StorageError;

/// One registration of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRegistration {
    /// The app server's JID (XEP-0357 §5 'jid').
    pub service: String,
    /// The node at the app server.
    pub node: String,
    /// The full JID of the session that enabled it.
    pub enabled_by: String,
    /// The serialised publish-options data form, if one was given.
    pub publish_options: Option<String>,
}

/// Push registrations of each account.
///
/// The account must exist: adding one for a missing account fails with a backend (foreign
/// key) error. Removing the account removes its registrations.
#[async_trait::async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Adds the registration, or replaces the one of the same (service, node) (its session and
    /// publish-options). With `max = Some(n)`, a new (service, node) fails with
    /// [`StorageError::LimitReached`] (writing nothing) when the account has `n` or more
    /// already; the check and the write are atomic.
    async fn put_push(
        &self,
        domain: &str,
        username: &str,
        registration: &PushRegistration,
        max: Option<usize>,
    ) -> Result<(), StorageError>;

    /// Removes the account's registrations at `service`: the one of `node`, or every one
    /// without it. Returns how many were removed.
    async fn remove_push(
        &self,
        domain: &str,
        username: &str,
        service: &str,
        node: Option<&str>,
    ) -> Result<usize, StorageError>;

    /// The account's registrations, oldest first.
    async fn push_registrations(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<PushRegistration>, StorageError>;

    /// Every registration of every account, as (domain, username, registration): read once at
    /// start.
    async fn all_push_registrations(
        &self,
    ) -> Result<Vec<(String, String, PushRegistration)>, StorageError>;
}
