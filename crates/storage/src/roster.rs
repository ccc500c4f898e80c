//! The roster store: each account's contact list with the subscription states of RFC 6121
//! Appendix A and roster versioning (RFC 6121 §2.6).
//!
//! Domains, usernames and contacts are taken as given: callers pass them already normalised
//! (the contact as a bare JID), and two spellings are two different entries here. The store
//! keeps what it is told; the subscription state machine lives in the server.

use crate::StorageError;

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5): whose presence is
/// shared with whom. The pending states of Appendix A are [`RosterItem::pending_out`] and
/// [`RosterItem::pending_in`] alongside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// Neither side receives the other's presence.
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both receive each other's presence.
    Both,
}

impl Subscription {
    /// The attribute value (`none`, `to`, `from`, `both`), also the spelling stored in the
    /// database.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The inverse of [`Subscription::as_str`]; `None` for any other string (including
    /// `remove`, which is a request, not a state).
    pub fn parse(s: &str) -> Option<Subscription> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }
}

/// One contact on a user's roster, with its subscription state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID (already normalised by the caller).
    pub contact: String,
    /// The handle the user gave the contact (`name` attribute), if any.
    pub name: Option<String>,
    /// The groups the item belongs to. Stored and returned sorted (byte order of the UTF-8
    /// encoding, as `String`'s `Ord`) and de-duplicated, whatever order they were given in.
    pub groups: Vec<String>,
    /// The subscription state.
    pub subscription: Subscription,
    /// The user asked for the contact's presence and has no answer yet (`ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked for the user's presence and the user has not answered yet.
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
    /// Shown in the user's roster (RFC 6121 §2.1.3). False for a contact known only by a
    /// pending subscription request, which becomes an item when the user answers (§3.1.3).
    pub listed: bool,
    /// The contact's serialised subscribe request, redelivered while it is pending each time
    /// the user logs in (RFC 6121 §3.1.3).
    pub pending_in_stanza: Option<String>,
}

impl RosterItem {
    /// An item for `contact` with no name, no groups and subscription `none`, nothing pending.
    pub fn new(contact: impl Into<String>) -> Self {
        RosterItem {
            contact: contact.into(),
            ..RosterItem::default()
        }
    }
}

/// Rosters and their versions.
///
/// A roster version is a per-account counter: 0 for an account whose roster never changed,
/// then raised by every change in the same transaction as the change, so versions of one
/// account are strictly increasing and no two changes share one, even when concurrent. It is
/// the `ver` attribute of RFC 6121 §2.6 (in decimal). Removing the account removes its
/// roster and its version.
///
/// The account must exist: writing for a missing one fails with a backend (foreign key)
/// error and writes nothing.
#[async_trait::async_trait]
pub trait RosterStore: Send + Sync + 'static {
    /// The whole roster, ordered by contact (byte order), and its version, read together
    /// (the version is the one of exactly these items). `(0, [])` for an unknown account.
    async fn roster(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<(u64, Vec<RosterItem>), StorageError>;

    /// The current roster version: 0 for an account that never changed its roster.
    async fn roster_version(&self, domain: &str, username: &str) -> Result<u64, StorageError>;

    /// The item for `contact`, if it is on the roster.
    async fn roster_item(
        &self,
        domain: &str,
        username: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError>;

    /// Inserts or replaces the item for `item.contact` (all its fields, groups included) and
    /// raises the roster version, in one transaction; returns the new version.
    ///
    /// With `max_items = Some(n)`, adding a new contact to a roster that already holds `n`
    /// or more items fails with [`StorageError::LimitReached`] and changes nothing;
    /// replacing an item already on the roster never does.
    async fn put_roster_item(
        &self,
        domain: &str,
        username: &str,
        item: &RosterItem,
        max_items: Option<usize>,
    ) -> Result<u64, StorageError>;

    /// Removes the item for `contact` and raises the roster version, in one transaction:
    /// `Some(new version)`, or `None` (version unchanged) when there was no such item.
    async fn remove_roster_item(
        &self,
        domain: &str,
        username: &str,
        contact: &str,
    ) -> Result<Option<u64>, StorageError>;
}
