//! Multi-user chat rooms (XEP-0045) that outlive their occupants: the persistent rooms of each
//! MUC service, with their configuration, affiliations and subject.
//!
//! A room is kept as one document the MUC module writes and reads (its own serialisation,
//! opaque here): rooms change rarely and are read once, when the server starts.

use crate::StorageError;

/// One persistent room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRoom {
    /// The service's domain (`conference.example.org`).
    pub service: String,
    /// The room's node (`coven` of `coven@conference.example.org`).
    pub name: String,
    /// The room, as the MUC module serialised it.
    pub data: String,
}

/// The persistent rooms of every MUC service.
#[async_trait::async_trait]
pub trait MucStore: Send + Sync + 'static {
    /// Every stored room of `service`.
    async fn muc_rooms(&self, service: &str) -> Result<Vec<StoredRoom>, StorageError>;

    /// Stores the room, replacing what was stored under its service and name.
    async fn save_muc_room(&self, room: &StoredRoom) -> Result<(), StorageError>;

    /// Removes the room (destroyed, or no longer persistent); false when none was stored.
    async fn remove_muc_room(&self, service: &str, name: &str) -> Result<bool, StorageError>;
}
