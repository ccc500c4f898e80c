//! XEP-0313 message archive management for accounts, with XEP-0359 stanza ids.
//!
//! Every chat or normal message worth keeping (XEP-0313 §5: a body or a payload that matters,
//! not a chat state alone, nothing marked `no-store`) is archived for each local party the
//! preferences allow: for the sender when it leaves a local client, for the recipient when it
//! arrives for a local account, stamped for the recipient with `<stanza-id by='their bare
//! JID'/>`. Ids come from the archiver at routing time; the writes are batched off the session
//! task (`archiver`). A query first waits for the writes queued before it, so a client always
//! finds what it just sent and received.

mod archiver;
mod query;

use crate::compliance::Claim;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use jid::{BareJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use serde::Deserialize;
use weft_config::{ConfigError, HumanDuration};
use weft_storage::{
    ArchiveDefault, ArchiveEntry, ArchivePrefs, ArchivedMessage, EntryNames, StorageError,
};
use xmpp_parsers::mam::{End, MetadataResponse, Start};
use xmpp_parsers::mam_prefs::{DefaultPrefs, Prefs};

use super::api::account_parts;
use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, Section, StanzaEvent,
    StanzaHook, StanzaText,
};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;
use archiver::Archiver;
use query::NS_MAM;

pub const DEF: ModuleDef = ModuleDef {
    name: "mam",
    default_enabled: true,
    spec: &SPEC,
    build,
};

const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
const NS_SID: &str = "urn:xmpp:sid:0";
/// JIDs one account's preferences may name: they are kept in memory and scanned for every
/// message the account sends or receives.
const MAX_PREF_JIDS: usize = 1000;
/// How often expired and surplus messages are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS_MAM],
    stanza_hooks: &[
        // After blocking (a refused message is not archived), before carbons (whose copies
        // of a received message then carry its stanza-id).
        (StanzaHook::MessageFromLocal, Priority(-50)),
        (StanzaHook::MessageToLocal, Priority(-50)),
    ],
    account_features: &[NS_MAM, NS_MAM_EXTENDED, NS_SID],
    // The text it archives is the stanza's, left for the next hooks and the delivery; it
    // replaces it when it stamps a stanza-id.
    keeps_text: true,
    specs: &[
        Claim::xep(313, "1.1.3", "modules::mam: user archives with preferences, metadata, extended queries; no full-text search"),
        Claim::xep(359, "0.7.0", "modules::mam: stanza-id on archived messages"),
        Claim::xep(59, "1.0", "modules::mam: after, before and max; no index or count").partial(),
        Claim::xep(334, "0.3.0", "modules::offline and modules::mam honour store, no-store and no-permanent-store").partial(),
    ],
    ..ModuleSpec::named("mam")
};

/// `[modules.mam]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamSettings {
    /// What is archived for accounts that set no preferences: "always", "roster" (only with
    /// contacts on the roster) or "never".
    pub default: String,
    /// Messages older than this are removed.
    pub retention: HumanDuration,
    /// Messages kept per account; the oldest go first.
    pub max_messages_per_account: u64,
    /// Messages in one page when the client names no `<max/>`.
    pub default_page: usize,
    /// Most messages in one page, whatever the client asks.
    pub max_page: usize,
    /// Archive writes waiting for the store at most; beyond it routing waits.
    pub write_queue: usize,
}

impl Default for MamSettings {
    fn default() -> Self {
        MamSettings {
            default: "always".into(),
            retention: HumanDuration(Duration::from_secs(365 * 86_400)),
            max_messages_per_account: 1_000_000,
            default_page: 50,
            max_page: 250,
            write_queue: 10_000,
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: MamSettings = section.parse()?;
    let mut problems = Vec::new();
    let default = ArchiveDefault::parse(&settings.default);
    if default.is_none() {
        problems.push(section.error("default", "must be \"always\", \"roster\" or \"never\""));
    }
    for (key, value) in [
        (
            "max_messages_per_account",
            settings.max_messages_per_account as usize,
        ),
        ("default_page", settings.default_page),
        ("max_page", settings.max_page),
        ("write_queue", settings.write_queue),
    ] {
        if value == 0 {
            problems.push(section.error(key, "must be at least 1"));
        }
    }
    if settings.retention.0 < Duration::from_secs(60) {
        problems.push(section.error("retention", "must be at least 1m"));
    }
    match default {
        Some(default) if problems.is_empty() => Ok(Arc::new(Mam {
            default,
            settings,
            prefs: DashMap::new(),
            any_prefs: AtomicBool::new(false),
            archiver: std::sync::OnceLock::new(),
        })),
        _ => Err(problems),
    }
}

pub struct Mam {
    settings: MamSettings,
    default: ArchiveDefault,
    /// Preferences of the accounts that set any (bare JID), loaded at start.
    prefs: DashMap<String, Arc<ArchivePrefs>>,
    /// Whether `prefs` holds any: until an account sets some, routing looks none up (hashing
    /// the JID twice a message).
    any_prefs: AtomicBool,
    /// Started with the server (`start`).
    archiver: std::sync::OnceLock<Archiver>,
}

#[async_trait::async_trait]
impl Module for Mam {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.default != ArchiveDefault::Never || self.prefs.contains_key(account)
    }

    /// §5: an account's archive keeps no groupchat message (the room's archive does), and a
    /// room sends on no `<stanza-id/>` but its own (`muc::messages`), so there is none here
    /// to strip for the account (XEP-0359 §4).
    fn concerns_room_copies(&self, _kind: crate::stanza::Kind, _account: &str) -> bool {
        false
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        let store = state.storage.archive.clone();
        for (domain, user, prefs) in store.all_archive_prefs().await? {
            self.prefs
                .insert(format!("{user}@{domain}"), Arc::new(prefs));
            self.any_prefs.store(true, Ordering::Relaxed);
        }
        let last = store.archive_last_id().await?;
        let _ = self.archiver.set(Archiver::start(
            store.clone(),
            self.settings.write_queue,
            last,
        ));
        let (retention, keep) = (
            self.settings.retention.0,
            self.settings.max_messages_per_account,
        );
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            loop {
                sweep(&*store, retention, keep).await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
        });
        Ok(())
    }

    async fn stop(&self, _state: &Arc<ServerState>) {
        if let Some(archiver) = self.archiver.get() {
            archiver.flushed().await;
        }
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if !req.from_owner() || req.local_sender(state).is_none() {
            return IqOutcome::error(StanzaErrorCondition::Forbidden, "not your archive");
        }
        let user = req.to.to_bare();
        match (req.payload.name(), req.is_set) {
            ("query", false) => IqOutcome::Result(Some(query::form())),
            ("query", true) => self.query(state, req, &user).await,
            ("prefs", false) => IqOutcome::Result(Some(self.prefs_of(&user).into())),
            ("prefs", true) => self.set_prefs(state, req, &user).await,
            ("metadata", false) => self.metadata(state, &user).await,
            _ => IqOutcome::NotMine,
        }
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let Some(archiver) = self.archiver.get() else {
            return Flow::Continue(event.stanza);
        };
        let StanzaEvent {
            mut stanza,
            from,
            to,
            text,
            ..
        } = event;
        let Some(to) = to else {
            return Flow::Continue(stanza);
        };
        let incoming = hook == StanzaHook::MessageToLocal;
        let (owner, other) = if incoming { (to, from) } else { (from, to) };
        // Bare JIDs as slices of the full ones: Jid::to_bare formats a new string, and this
        // runs twice for every message (its sender's archive and its recipient's).
        let owner_bare = bare(owner);
        let other_bare = bare(other);
        if incoming && strip_stanza_ids(&mut stanza, owner_bare) {
            // XEP-0359 §4: only this server says which ids it gave for the account.
            *text = None;
        }
        // A text from the sender's hook means that hook archived this very stanza: it was
        // worth storing there, and it is here.
        if !(text.is_some() || crate::stanza::worth_storing(&stanza)) {
            return Flow::Continue(stanza);
        }
        // The rare waits are boxed: this future is boxed and copied for every message.
        let archives = match self.archives_by_prefs(owner_bare, other_bare) {
            Some(archives) => archives,
            None => Box::pin(on_roster(state, owner_bare, other_bare)).await,
        };
        if !archives {
            return Flow::Continue(stanza);
        }
        let id = archiver.next_id();
        // Serialised once a message: both archives keep the stanza as it came, which the
        // sender's hook left as the text (XEP-0313 results carry the id in `<result/>`, as
        // Prosody stores them too); the recipient's copy adds its stanza-id to that text
        // for the delivery, without copying it.
        let base = match text.take() {
            Some(t) if !t.has_last_child() => t,
            _ => StanzaText::new(serialise(&stanza)),
        };
        let archived = base.base().clone();
        if incoming {
            let id = id.to_string();
            *text = base.with_last_child(&stanza, stanza_id_text(&id, owner_bare));
            stanza.append_child(
                Element::builder("stanza-id", NS_SID)
                    .attr(xml_ncname!("id").into(), id)
                    .attr(xml_ncname!("by").into(), owner_bare)
                    .build(),
            );
        } else {
            *text = Some(base);
        }
        debug_assert!(
            text.as_ref()
                .is_none_or(|t| t.joined() == *serialise(&stanza)),
            "the text is the stanza's"
        );
        let (node, domain) = bare_parts(owner_bare);
        let names = EntryNames {
            domain,
            username: node,
            with: other_bare,
            with_resource: other.resource().map(|r| r.as_str()),
        };
        let entry = ArchiveEntry::new(names, false, id, !incoming, archived);
        if let Err(full) = archiver.try_write(entry) {
            Box::pin(archiver.write_when_room(full)).await;
        }
        Flow::Continue(stanza)
    }
}

/// XEP-0313 for XEP-0045 rooms (`modules::muc`): a room's archive is kept under its service
/// domain and node, without preferences; `with` is the room and the sender's nick.
impl Mam {
    /// Archives a message the room `room` sends to everyone (its 'from' the sender's occupant
    /// JID, no 'to'); returns the id, for the `<stanza-id by='room'/>` of every copy.
    pub async fn archive_room_message(
        &self,
        room: &BareJid,
        nick: &str,
        message: &Element,
    ) -> Option<i64> {
        let archiver = self.archiver.get()?;
        let id = archiver.next_id();
        let (node, domain) = bare_parts(room.as_str());
        archiver
            .write(ArchiveEntry::new(
                EntryNames {
                    domain,
                    username: node,
                    with: room.as_str(),
                    with_resource: Some(nick),
                },
                true,
                id,
                false,
                serialise(message),
            ))
            .await;
        Some(id)
    }

    /// A query of the room's archive; the room decided that the requester may read it.
    pub async fn query_room(
        &self,
        state: &Arc<ServerState>,
        req: &IqRequest<'_>,
        room: &BareJid,
    ) -> IqOutcome {
        match (req.payload.name(), req.is_set) {
            ("query", false) => IqOutcome::Result(Some(query::form())),
            ("query", true) => self.query(state, req, room).await,
            ("metadata", false) => self.metadata(state, room).await,
            _ => IqOutcome::error(
                StanzaErrorCondition::FeatureNotImplemented,
                "rooms keep no archive preferences",
            ),
        }
    }

    /// Forgets a destroyed room's archive.
    pub async fn remove_room_archive(&self, state: &ServerState, room: &BareJid) {
        if let Some(archiver) = self.archiver.get() {
            archiver.flushed().await;
        }
        let (node, domain) = bare_parts(room.as_str());
        if let Err(e) = state.storage.archive.remove_archive(domain, node).await {
            tracing::warn!(%room, "removing the room's archive failed: {e}");
        }
    }
}

impl Mam {
    fn prefs_of(&self, user: &BareJid) -> Prefs {
        let stored = self.prefs.get(user.as_str()).map(|p| p.clone());
        let (default, always, never) = match stored.as_deref() {
            Some(p) => (p.default, p.always.clone(), p.never.clone()),
            None => (self.default, Vec::new(), Vec::new()),
        };
        let jids = |list: Vec<String>| list.iter().filter_map(|j| Jid::new(j).ok()).collect();
        Prefs {
            default_: match default {
                ArchiveDefault::Always => DefaultPrefs::Always,
                ArchiveDefault::Never => DefaultPrefs::Never,
                ArchiveDefault::Roster => DefaultPrefs::Roster,
            },
            always: jids(always),
            never: jids(never),
        }
    }

    /// XEP-0313 §4.2: whether `owner`'s preferences archive messages with `other` (bare
    /// JIDs); None when that depends on `owner`'s roster ([`on_roster`]).
    fn archives_by_prefs(&self, owner: &str, other: &str) -> Option<bool> {
        let prefs = if self.any_prefs.load(Ordering::Relaxed) {
            self.prefs.get(owner).map(|p| p.clone())
        } else {
            None
        };
        let default = match prefs.as_deref() {
            Some(p) if p.never.iter().any(|j| j == other) => return Some(false),
            Some(p) if p.always.iter().any(|j| j == other) => return Some(true),
            Some(p) => p.default,
            None => self.default,
        };
        match default {
            ArchiveDefault::Always => Some(true),
            ArchiveDefault::Never => Some(false),
            ArchiveDefault::Roster => None,
        }
    }

    async fn set_prefs(
        &self,
        state: &Arc<ServerState>,
        req: &IqRequest<'_>,
        user: &BareJid,
    ) -> IqOutcome {
        let prefs = match Prefs::try_from(req.payload.clone()) {
            Ok(p) => p,
            Err(e) => return IqOutcome::error(StanzaErrorCondition::BadRequest, &format!("{e}")),
        };
        if prefs.always.len() + prefs.never.len() > MAX_PREF_JIDS {
            return IqOutcome::error(
                StanzaErrorCondition::NotAcceptable,
                &format!("at most {MAX_PREF_JIDS} JIDs in the always and never lists together"),
            );
        }
        let bare = |list: &[Jid]| list.iter().map(|j| j.to_bare().to_string()).collect();
        let stored = ArchivePrefs {
            default: match prefs.default_ {
                DefaultPrefs::Always => ArchiveDefault::Always,
                DefaultPrefs::Never => ArchiveDefault::Never,
                DefaultPrefs::Roster => ArchiveDefault::Roster,
            },
            always: bare(&prefs.always),
            never: bare(&prefs.never),
        };
        let (domain, node) = account_parts(user);
        if let Err(e) = state
            .storage
            .archive
            .set_archive_prefs(domain, node, &stored)
            .await
        {
            return IqOutcome::storage_failed("archive preferences", e);
        }
        self.prefs.insert(user.to_string(), Arc::new(stored));
        self.any_prefs.store(true, Ordering::Relaxed);
        IqOutcome::Result(Some(self.prefs_of(user).into()))
    }

    async fn query(
        &self,
        state: &Arc<ServerState>,
        req: &IqRequest<'_>,
        user: &BareJid,
    ) -> IqOutcome {
        let s = &self.settings;
        let request = match query::parse(req.payload, s.default_page, s.max_page) {
            Ok(r) => r,
            Err(e) => return IqOutcome::Error(e),
        };
        if let Some(archiver) = self.archiver.get() {
            archiver.flushed().await;
        }
        let (domain, node) = account_parts(user);
        let store = &state.storage.archive;
        if let Some(anchor) = request.anchor {
            match store.archive_has(domain, node, anchor).await {
                Ok(true) => {}
                Ok(false) => return IqOutcome::Error(query::not_found()),
                Err(e) => return IqOutcome::storage_failed("archive", e),
            }
        }
        let page = match store.query_archive(domain, node, &request.query).await {
            Ok(p) => p,
            Err(e) => return IqOutcome::storage_failed("archive", e),
        };
        let to = req.from.as_str();
        let mut results: Vec<Element> = page
            .messages
            .iter()
            .filter_map(|m| query::result_message(user.as_str(), to, request.queryid.as_deref(), m))
            .collect();
        if request.flip {
            results.reverse();
        }
        IqOutcome::ResultAfter(results, Some(query::fin(&page.messages, page.complete)))
    }

    /// XEP-0313 §6.1: the first and last message of the archive.
    async fn metadata(&self, state: &Arc<ServerState>, user: &BareJid) -> IqOutcome {
        if let Some(archiver) = self.archiver.get() {
            archiver.flushed().await;
        }
        let (domain, node) = account_parts(user);
        let bounds = match state.storage.archive.archive_bounds(domain, node).await {
            Ok(b) => b,
            Err(e) => return IqOutcome::storage_failed("archive", e),
        };
        let at = |m: &ArchivedMessage| {
            query::stamp(m.id)
                .parse()
                .map_err(|_| StanzaError::new(StanzaErrorCondition::InternalServerError))
        };
        let response = match bounds {
            None => MetadataResponse {
                start: None,
                end: None,
            },
            Some((first, last)) => match (at(&first), at(&last)) {
                (Ok(s), Ok(e)) => MetadataResponse {
                    start: Some(Start {
                        id: first.id.to_string(),
                        timestamp: s,
                    }),
                    end: Some(End {
                        id: last.id.to_string(),
                        timestamp: e,
                    }),
                },
                (Err(e), _) | (_, Err(e)) => return IqOutcome::Error(e),
            },
        };
        IqOutcome::Result(Some(response.into()))
    }
}

/// Removes expired messages and what exceeds the per-account cap.
async fn sweep(store: &dyn weft_storage::ArchiveStore, retention: Duration, keep: u64) {
    let before = archiver::now_micros() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    match store.expire_archive(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} archived messages past the retention period"),
        Err(e) => tracing::warn!("archive retention sweep failed: {e}"),
    }
    match store.trim_archives(keep).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} archived messages beyond the per-account cap"),
        Err(e) => tracing::warn!("archive cap sweep failed: {e}"),
    }
}

/// The bare part of a JID's text: up to the resource's `/` (neither a node nor a domain holds
/// one).
fn bare(jid: &Jid) -> &str {
    crate::stanza::bare_part(jid.as_str())
}

/// Whether `other` is on `owner`'s roster (bare JIDs), for the "roster" preference.
async fn on_roster(state: &ServerState, owner: &str, other: &str) -> bool {
    let (node, domain) = bare_parts(owner);
    matches!(
        state.storage.roster.roster_item(domain, node, other).await,
        Ok(Some(item)) if item.listed
    )
}

/// A bare JID's node (empty for a domain) and domain (a domain holds no `@`).
fn bare_parts(bare: &str) -> (&str, &str) {
    bare.split_once('@').unwrap_or(("", bare))
}

thread_local! {
    /// Where texts are written before they are shared (one allocation per text).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `write` into an empty scratch buffer, then its bytes as a shared text.
fn shared_text(write: impl FnOnce(&mut Vec<u8>)) -> Arc<str> {
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write(out);
        // The writer writes UTF-8 only (the element's own strings, escaped).
        let text: Arc<str> = match std::str::from_utf8(out) {
            Ok(s) => s.into(),
            Err(_) => String::from_utf8_lossy(out).into(),
        };
        if out.capacity() > 64 * 1024 {
            *out = Vec::new(); // a rare large stanza does not stay in every thread
        }
        text
    })
}

/// The stanza's text for the archive, by weft's own writer (the one the transports use):
/// minidom's, through rxml's namespace-tracking encoder, took about 5% of weft's CPU at 10
/// pairs with every message archived, twice a message.
fn serialise(stanza: &Element) -> Arc<str> {
    shared_text(|out| weft_xml::write_element(stanza, out))
}

/// The text of `<stanza-id id='id' by='by'/>` (XEP-0359) as [`weft_xml::write_element_in`]
/// writes that element in a `jabber:client` parent (attributes in name order), written
/// directly: this is done for every message a local account receives.
fn stanza_id_text(id: &str, by: &str) -> Box<str> {
    let by = weft_xml::escape(by);
    let mut s = String::with_capacity(48 + by.len() + id.len());
    for part in [
        "<stanza-id xmlns='",
        NS_SID,
        "' by='",
        &by,
        "' id='",
        id,
        "'/>",
    ] {
        s.push_str(part);
    }
    s.into_boxed_str()
}

/// Drops `<stanza-id/>` elements claiming to be by `owner` (XEP-0359 §4); whether there were
/// any.
fn strip_stanza_ids(stanza: &mut Element, owner: &str) -> bool {
    let ours = |c: &Element| c.is("stanza-id", NS_SID) && c.attr("by") == Some(owner);
    if !stanza.children().any(ours) {
        return false;
    }
    let theirs: Vec<Element> = stanza
        .children()
        .filter(|c| c.is("stanza-id", NS_SID) && !ours(c))
        .cloned()
        .collect();
    while stanza.remove_child("stanza-id", NS_SID).is_some() {}
    for c in theirs {
        stanza.append_child(c);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn bare_slices_agree_with_jid() {
        for s in [
            "a@b.example/r/x@y",
            "b.example/r@s",
            "a@b.example",
            "b.example",
        ] {
            let jid = Jid::new(s).unwrap();
            let want = jid.to_bare();
            assert_eq!(bare(&jid), want.as_str());
            let (node, domain) = bare_parts(bare(&jid));
            assert_eq!((domain, node), account_parts(&want));
        }
    }

    #[test]
    fn a_stanza_ids_text_is_the_writers() {
        for (id, by) in [
            ("1796673724000001", "juliet@example.org"),
            ("7", "a'b&c@d.example"),
        ] {
            let el = Element::builder("stanza-id", NS_SID)
                .attr(xml_ncname!("id").into(), id)
                .attr(xml_ncname!("by").into(), by)
                .build();
            let mut want = Vec::new();
            weft_xml::write_element_in(&el, crate::ns::CLIENT, &mut want);
            assert_eq!(stanza_id_text(id, by).as_bytes(), want.as_slice());
        }
    }

    #[test]
    fn only_our_own_stanza_ids_are_stripped() {
        let mut m = msg("<message xmlns='jabber:client'><body>x</body>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='juliet@example.org'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='theirs' by='room@muc.example.net'/></message>");
        strip_stanza_ids(&mut m, "juliet@example.org");
        // What the archive stores parses back to the same stanza.
        let back: Element = serialise(&m).parse().unwrap();
        assert_eq!(back, m);
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", NS_SID))
            .map(|c| c.attr("id").unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["theirs"]);
        assert!(m.has_child("body", crate::ns::CLIENT));
    }
}
