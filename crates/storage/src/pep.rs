//! Personal eventing (XEP-0163): each account's pubsub nodes, their configuration and items.
//!
//! Node names, item ids and payloads are taken as given; the configuration is an opaque
//! string the caller encodes and decodes.

use crate::StorageError;

/// One stored item of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepItem {
    pub id: String,
    /// The full or bare JID that published it.
    pub publisher: String,
    /// The payload, serialised; empty for an item without one.
    pub payload: String,
}

/// Accounts' PEP nodes and items.
///
/// The account must exist: creating a node for a missing one fails with a backend (foreign
/// key) error. Removing the account removes its nodes; removing a node removes its items.
#[async_trait::async_trait]
pub trait PepStore: Send + Sync + 'static {
    /// Every node of the account with its configuration, by name.
    async fn pep_nodes(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, String)>, StorageError>;

    /// One node's configuration.
    async fn pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<Option<String>, StorageError>;

    /// Creates a node; [`StorageError::AlreadyExists`] when it exists.
    async fn create_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        config: &str,
    ) -> Result<(), StorageError>;

    /// Replaces a node's configuration and keeps only its `max_items` last items; `false`
    /// when there is no such node.
    async fn configure_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        config: &str,
        max_items: usize,
    ) -> Result<bool, StorageError>;

    /// Removes a node and its items; `false` when there was none.
    async fn delete_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<bool, StorageError>;

    /// Stores an item as the node's newest (replacing one with its id), then keeps only the
    /// node's `max_items` last items, in one transaction. The node must exist.
    async fn publish_pep_item(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        item: &PepItem,
        max_items: usize,
    ) -> Result<(), StorageError>;

    /// Removes one item; `false` when there was none.
    async fn retract_pep_item(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError>;

    /// Removes every item of a node.
    async fn purge_pep_node(
        &self,
        domain: &str,
        username: &str,
        node: &str,
    ) -> Result<(), StorageError>;

    /// A node's items, oldest first: the `last` newest ones, or all.
    async fn pep_items(
        &self,
        domain: &str,
        username: &str,
        node: &str,
        last: Option<usize>,
    ) -> Result<Vec<PepItem>, StorageError>;

    /// The newest item of each of the account's nodes that has one, by node name.
    async fn pep_last_items(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, PepItem)>, StorageError>;

    /// Every account with at least one node, as (domain, username).
    async fn accounts_with_pep(&self) -> Result<Vec<(String, String)>, StorageError>;
}
