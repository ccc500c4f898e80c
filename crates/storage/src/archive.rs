//! The message archive (XEP-0313): each account's messages, sent and received, under the id
//! the server gave them (the XEP-0359 stanza-id), with archive preferences.
//!
//! Ids are chosen by the server, not the store: a message is stamped with its id before it is
//! delivered, while the archive write happens later, in batches. An id is the archiving time
//! in microseconds since the Unix epoch, made unique by the server (two messages in the same
//! microsecond get consecutive ids), so the id order is the archive order and the time filters
//! of a query (`start`, `end`) are id ranges.

use std::sync::Arc;

use crate::StorageError;

/// One archived message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The stanza-id, unique across the server; also the archiving time in microseconds since
    /// the Unix epoch.
    pub id: i64,
    /// The other party's bare JID (the recipient of a sent message, the sender of a received
    /// one).
    pub with: String,
    /// The other party's resource, when its full JID was known.
    pub with_resource: Option<String>,
    /// Whether the account sent it.
    pub outgoing: bool,
    /// The serialised `<message/>`, as it was sent or delivered. Shared: the server hands
    /// the archive the text it writes to the recipient.
    pub stanza: Arc<str>,
}

/// A message to append to an account's archive, or to a room's.
///
/// Two are made for every message routed with the archive on (its sender's and its
/// recipient's): their four names share one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The domain, username, other party and its resource, one after the other.
    names: Box<str>,
    /// Where the username, the other party and its resource start in `names`.
    starts: [u32; 3],
    has_resource: bool,
    /// The archive of an XEP-0045 room (domain: its service, username: its node), which no
    /// account stands behind; else an account's, written only while the account exists.
    pub of_room: bool,
    /// As [`ArchivedMessage::id`].
    pub id: i64,
    /// Whether the archive's owner sent it.
    pub outgoing: bool,
    /// As [`ArchivedMessage::stanza`].
    pub stanza: Arc<str>,
}

/// Whose archive an [`ArchiveEntry`] goes to, and the other party.
#[derive(Clone, Copy, Debug)]
pub struct EntryNames<'a> {
    pub domain: &'a str,
    pub username: &'a str,
    /// The other party's bare JID.
    pub with: &'a str,
    pub with_resource: Option<&'a str>,
}

impl ArchiveEntry {
    pub fn new(
        names: EntryNames<'_>,
        of_room: bool,
        id: i64,
        outgoing: bool,
        stanza: Arc<str>,
    ) -> ArchiveEntry {
        let EntryNames {
            domain,
            username,
            with,
            with_resource,
        } = names;
        let resource = with_resource.unwrap_or("");
        let mut all =
            String::with_capacity(domain.len() + username.len() + with.len() + resource.len());
        let mut starts = [0u32; 3];
        for (i, part) in [domain, username, with, resource].into_iter().enumerate() {
            if i > 0 {
                // JIDs are at most 3071 bytes a part (RFC 7622 §3.1).
                starts[i - 1] = all.len() as u32;
            }
            all.push_str(part);
        }
        ArchiveEntry {
            names: all.into_boxed_str(),
            starts,
            has_resource: with_resource.is_some(),
            of_room,
            id,
            outgoing,
            stanza,
        }
    }

    /// The entry of `message` in the archive of `username` at `domain`.
    pub fn of_message(
        domain: &str,
        username: &str,
        of_room: bool,
        message: &ArchivedMessage,
    ) -> ArchiveEntry {
        let names = EntryNames {
            domain,
            username,
            with: &message.with,
            with_resource: message.with_resource.as_deref(),
        };
        let stanza = message.stanza.clone();
        ArchiveEntry::new(names, of_room, message.id, message.outgoing, stanza)
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.starts[i - 1] as usize
        };
        let end = self.starts.get(i).map_or(self.names.len(), |&e| e as usize);
        &self.names[start..end]
    }

    pub fn domain(&self) -> &str {
        self.part(0)
    }

    pub fn username(&self) -> &str {
        self.part(1)
    }

    /// The other party's bare JID.
    pub fn with(&self) -> &str {
        self.part(2)
    }

    pub fn with_resource(&self) -> Option<&str> {
        self.has_resource.then(|| self.part(3))
    }

    /// The message as a query reads it back.
    pub fn message(&self) -> ArchivedMessage {
        ArchivedMessage {
            id: self.id,
            with: self.with().to_owned(),
            with_resource: self.with_resource().map(str::to_owned),
            outgoing: self.outgoing,
            stanza: self.stanza.clone(),
        }
    }
}

/// Which messages a query wants, and which page of them (XEP-0313 §4.1, XEP-0059).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only with this bare JID (and, when set, this resource of it).
    pub with: Option<(String, Option<String>)>,
    /// Only ids (times) at or after this one.
    pub start: Option<i64>,
    /// Only ids (times) at or before this one.
    pub end: Option<i64>,
    /// Only ids strictly after this one (RSM `<after/>`, XEP-0313 `after-id`).
    pub after: Option<i64>,
    /// Only ids strictly before this one (RSM `<before/>`, XEP-0313 `before-id`).
    pub before: Option<i64>,
    /// Only these ids (XEP-0313 `ids`).
    pub ids: Option<Vec<i64>>,
    /// At most this many messages.
    pub max: usize,
    /// Take the page at the newest end of the range (RSM `<before/>`): the `max` newest
    /// matching messages rather than the `max` oldest. The page is in archive order either way.
    pub from_end: bool,
}

/// One page of an archive query, in archive order (oldest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub messages: Vec<ArchivedMessage>,
    /// No further matching message lies beyond the page in the direction of paging (after
    /// its last one; before its first one when `from_end`).
    pub complete: bool,
}

/// The default of XEP-0313 preferences (§4.2): which messages are archived when neither list
/// names the other party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveDefault {
    Always,
    Never,
    /// Only with contacts on the roster.
    Roster,
}

impl ArchiveDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Never => "never",
            ArchiveDefault::Roster => "roster",
        }
    }

    pub fn parse(s: &str) -> Option<ArchiveDefault> {
        match s {
            "always" => Some(ArchiveDefault::Always),
            "never" => Some(ArchiveDefault::Never),
            "roster" => Some(ArchiveDefault::Roster),
            _ => None,
        }
    }
}

/// An account's archive preferences (XEP-0313 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePrefs {
    pub default: ArchiveDefault,
    /// Bare JIDs whose messages are always archived.
    pub always: Vec<String>,
    /// Bare JIDs whose messages are never archived.
    pub never: Vec<String>,
}

/// Per-account message archives.
///
/// The account must exist to be written for; removing it removes its archive.
#[async_trait::async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Appends the entries, in one transaction. Ids are unique across the server; an entry
    /// whose id the archive already holds is skipped (a retried batch writes nothing twice),
    /// as is one for an account that no longer exists. Shared, so that a backend may hand the
    /// batch to another thread and a caller retry it without copying it.
    async fn append_archive(&self, entries: Arc<Vec<ArchiveEntry>>) -> Result<(), StorageError>;

    /// One page of the account's archive.
    async fn query_archive(
        &self,
        domain: &str,
        username: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, StorageError>;

    /// Whether the account's archive holds this id.
    async fn archive_has(
        &self,
        domain: &str,
        username: &str,
        id: i64,
    ) -> Result<bool, StorageError>;

    /// The oldest and newest message of the account's archive (XEP-0313 §5 metadata).
    async fn archive_bounds(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<(ArchivedMessage, ArchivedMessage)>, StorageError>;

    /// Removes every archived message with an id below `before` (retention); returns how many.
    async fn expire_archive(&self, before: i64) -> Result<u64, StorageError>;

    /// Removes the oldest messages of every archive holding more than `keep`; returns how many.
    async fn trim_archives(&self, keep: u64) -> Result<u64, StorageError>;

    /// The account's preferences, if it set any.
    async fn archive_prefs(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError>;

    /// Stores the account's preferences, replacing any before.
    async fn set_archive_prefs(
        &self,
        domain: &str,
        username: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError>;

    /// Every account with stored preferences, as (domain, username, prefs).
    async fn all_archive_prefs(&self) -> Result<Vec<(String, String, ArchivePrefs)>, StorageError>;

    /// Removes the whole archive of `domain`/`username` (a destroyed room); returns how many
    /// messages went. An account's goes with the account.
    async fn remove_archive(&self, domain: &str, username: &str) -> Result<u64, StorageError>;

    /// The highest id in any archive (0 for none): ids given after a restart stay above it.
    async fn archive_last_id(&self) -> Result<i64, StorageError>;
}
