//! RFC 6121 §3 and §4 on the wire: subscription stanzas sent and received (applying the
//! state machine of `subscription` to roster items), presence broadcast to subscribers,
//! probes on login and their answers, directed presence, and unavailable presence when a
//! session ends, cleanly or not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use weft_storage::{RosterItem, StorageError};

use super::subscription::{self, State, SubKind};
use super::{items, parts, RosterModule};
use crate::modules::{Flow, StanzaEvent};
use crate::ns;
use crate::stanza;
use crate::state::ServerState;

/// Whom each session sent directed presence to (RFC 6121 §4.6), outside its subscribers:
/// they get its unavailable presence too. Only sessions that did have an entry; the last
/// broadcast presence itself lives in the session registry.
/// Directed-presence recipients remembered per session.
const MAX_DIRECTED: usize = 1000;

#[derive(Default)]
pub(super) struct Sessions {
    directed: DashMap<FullJid, Vec<Jid>>,
}

impl Sessions {
    fn direct(&self, full: &FullJid, to: &Jid, available: bool) {
        let mut list = self.directed.entry(full.clone()).or_default();
        list.retain(|d| d != to);
        // Bounded: a client cannot grow the server's memory without end; past the bound the
        // oldest recipient no longer gets the unavailable presence at logout.
        if list.len() >= MAX_DIRECTED {
            list.remove(0);
        }
        if available {
            list.push(to.clone());
        }
        let empty = list.is_empty();
        drop(list);
        if empty {
            self.directed.remove_if(full, |_, l| l.is_empty());
        }
    }

    fn take(&self, full: &FullJid) -> Vec<Jid> {
        self.directed
            .remove(full)
            .map(|(_, l)| l)
            .unwrap_or_default()
    }
}

/// The contacts that get each online account's presence broadcast (subscription `from` or
/// `both`), so that a presence change reads one version number instead of the whole roster
/// and parses no contact JID. An entry is used only while the stored roster version is the
/// one it was read at (every roster change raises it), and dropped when the account's last
/// session ends. At most `limit` contacts are held in all; past it rosters are read as before.
pub(super) struct Subscribers {
    by_account: DashMap<BareJid, (u64, Arc<[Jid]>)>,
    held: AtomicUsize,
    limit: usize,
}

impl Subscribers {
    pub(super) fn new(limit: usize) -> Self {
        Subscribers {
            by_account: DashMap::new(),
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// The cached subscribers of `user`, if read at roster `version`.
    fn get(&self, user: &BareJid, version: u64) -> Option<Arc<[Jid]>> {
        let entry = self.by_account.get(user)?;
        (entry.0 == version).then(|| entry.1.clone())
    }

    fn cached(&self, user: &BareJid) -> bool {
        self.by_account.contains_key(user)
    }

    /// The subscribers in `roster` (read at `version`), kept for `user` when there is room.
    fn remember(&self, user: &BareJid, version: u64, roster: &[RosterItem]) -> Arc<[Jid]> {
        let jids: Arc<[Jid]> = roster
            .iter()
            .filter(|i| state_of(i).from())
            .filter_map(|i| Jid::new(&i.contact).ok())
            .collect();
        if !jids.is_empty() && self.held.load(Ordering::Relaxed) + jids.len() <= self.limit {
            self.held.fetch_add(jids.len(), Ordering::Relaxed);
            if let Some((_, old)) = self
                .by_account
                .insert(user.clone(), (version, jids.clone()))
            {
                self.held.fetch_sub(old.len(), Ordering::Relaxed);
            }
        }
        jids
    }

    pub(super) fn forget(&self, user: &BareJid) {
        if let Some((_, (_, old))) = self.by_account.remove(user) {
            self.held.fetch_sub(old.len(), Ordering::Relaxed);
        }
    }
}

/// A contact of this server with no available resource: a probe would only bring back a bare
/// `<presence type='unavailable'/>` (RFC 6121 §4.3.2 says SHOULD; ejabberd does not send it
/// either), after reading the contact's roster item, which the client already assumes. Not
/// probed: a 200-contact login read 200 roster items for it. Remote contacts are probed.
/// Whether `jid` can be a contact in a roster: an account, or a domain other than ours (a
/// component, a remote gateway), as Prosody and ejabberd allow.
fn contact_jid(state: &ServerState, jid: &Jid) -> bool {
    jid.node().is_some() || !state.is_local_domain(jid.domain().as_str())
}

fn offline_here(state: &ServerState, contact: &str) -> bool {
    let domain = contact.rsplit_once('@').map_or(contact, |(_, d)| d);
    state.is_local_domain(domain) && !state.sessions.is_available(contact)
}

/// The last presence of each available resource of `user`.
fn available(state: &ServerState, user: &BareJid) -> Vec<Element> {
    state
        .sessions
        .presences(user)
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn state_of(item: &RosterItem) -> State {
    State {
        subscription: item.subscription,
        pending_out: item.pending_out,
        pending_in: item.pending_in,
        approved: item.approved,
    }
}

fn presence(kind: &str, from: &str, to: &str) -> Element {
    Element::builder("presence", ns::CLIENT)
        .attr(xml_ncname!("type").into(), kind)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .build()
}

/// Sends `to` the current presence of each of `user`'s available resources, or (when not
/// `available`) their unavailable presence.
async fn send_presence_of(state: &Arc<ServerState>, user: &BareJid, to: &str, available: bool) {
    for last in self::available(state, user) {
        let from = last.attr("from").unwrap_or(user.as_str()).to_owned();
        let stanza = if available {
            readdressed(&last, &from, to)
        } else {
            presence("unavailable", &from, to)
        };
        crate::router::send_presence_for_account(state, stanza).await;
    }
}

/// A copy of `stanza` addressed from `from` to `to`.
fn readdressed(stanza: &Element, from: &str, to: &str) -> Element {
    let mut copy = stanza.clone();
    stanza::set_attr(&mut copy, xml_ncname!("from").into(), from);
    stanza::set_attr(&mut copy, xml_ncname!("to").into(), to);
    copy
}

impl RosterModule {
    /// A presence from a local client (RFC 6121 §3 outbound, §4.2 to §4.6).
    pub(super) async fn presence_from_local(
        &self,
        state: &Arc<ServerState>,
        event: StanzaEvent<'_>,
    ) -> Result<Flow, StorageError> {
        let StanzaEvent {
            stanza, from, to, ..
        } = event;
        let Ok(full) = from.clone().try_into_full() else {
            return Ok(Flow::Continue(stanza));
        };
        let user = full.to_bare();
        let kind = stanza.attr("type").map(str::to_owned);
        if let Some(sub) = kind.as_deref().and_then(SubKind::parse) {
            // §3.1.2: a subscription stanza goes to the contact's bare JID from the user's. A
            // contact may be a domain (a XEP-0114 component, a gateway elsewhere: XEP-0100
            // §4.1), but not a domain of this server.
            let Some(contact) = to.filter(|t| contact_jid(state, t)).map(Jid::to_bare) else {
                return Ok(Flow::Done(Vec::new()));
            };
            self.outbound_subscription(state, &user, &contact, sub, stanza)
                .await?;
            return Ok(Flow::Done(Vec::new()));
        }
        match (kind.as_deref(), to) {
            // §4.3: probes are the server's business, not a client's.
            (Some("probe"), _) => Ok(Flow::Done(Vec::new())),
            (None | Some("unavailable"), None) => {
                let available = kind.is_none();
                let back = self.broadcast(state, &full, stanza, available).await?;
                Ok(Flow::Done(back))
            }
            // §4.6 directed presence: routed as it is, and remembered for the unavailable.
            (None | Some("unavailable"), Some(to)) => {
                let available = kind.is_none();
                let contact = to.to_bare();
                let subscriber = self
                    .item(state, &user, &contact)
                    .await?
                    .is_some_and(|i| state_of(&i).from());
                if !subscriber {
                    self.presence.direct(&full, to, available);
                }
                Ok(Flow::Continue(stanza))
            }
            _ => Ok(Flow::Continue(stanza)),
        }
    }

    /// A presence for a local account (RFC 6121 §3 inbound, §4.3 probes).
    pub(super) async fn presence_to_local(
        &self,
        state: &Arc<ServerState>,
        event: StanzaEvent<'_>,
    ) -> Result<Flow, StorageError> {
        let StanzaEvent {
            stanza, from, to, ..
        } = event;
        let Some(user) = to.filter(|t| t.node().is_some()).map(Jid::to_bare) else {
            return Ok(Flow::Continue(stanza));
        };
        let kind = stanza.attr("type").map(str::to_owned);
        if let Some(sub) = kind.as_deref().and_then(SubKind::parse) {
            if contact_jid(state, from) {
                self.inbound_subscription(state, &user, &from.to_bare(), sub, stanza)
                    .await?;
            }
            return Ok(Flow::Done(Vec::new()));
        }
        if kind.as_deref() == Some("probe") {
            self.answer_probe(state, &user, from).await?;
            return Ok(Flow::Done(Vec::new()));
        }
        Ok(Flow::Continue(stanza))
    }

    async fn item(
        &self,
        state: &ServerState,
        user: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StorageError> {
        let (domain, node) = parts(user);
        state
            .storage
            .roster
            .roster_item(domain, node, contact.as_str())
            .await
    }

    /// Stores the item's new state (dropping a hidden item left blank) and pushes it to the
    /// user's interested resources when it is in the roster.
    async fn save(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        item: RosterItem,
        new: State,
    ) -> Result<(), StorageError> {
        let stored = self.store(state, user, item, new).await?;
        self.push_stored(state, user, stored).await;
        Ok(())
    }

    /// Stores the item's new state; returns the version and item to push, if it is listed.
    async fn store(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        mut item: RosterItem,
        new: State,
    ) -> Result<Option<(u64, RosterItem)>, StorageError> {
        let (domain, node) = parts(user);
        let store = &state.storage.roster;
        item.subscription = new.subscription;
        item.pending_out = new.pending_out;
        item.pending_in = new.pending_in;
        item.approved = new.approved;
        if !new.pending_in {
            item.pending_in_stanza = None;
        }
        if !item.listed && new.is_blank() {
            store
                .remove_roster_item(domain, node, &item.contact)
                .await?;
            return Ok(None);
        }
        // Subscription changes are not refused for a full roster: they concern contacts the
        // user or the contact already chose.
        let version = store.put_roster_item(domain, node, &item, None).await?;
        Ok(item.listed.then_some((version, item)))
    }

    async fn push_stored(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        stored: Option<(u64, RosterItem)>,
    ) {
        if let Some((version, item)) = stored {
            if let Some(wire) = items::to_wire(&item) {
                items::push(state, self, user, version, wire).await;
            }
        }
    }

    /// The user sends a subscription stanza (Appendix A.2).
    async fn outbound_subscription(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        contact: &BareJid,
        kind: SubKind,
        stanza: Element,
    ) -> Result<(), StorageError> {
        let existing = self.item(state, user, contact).await?;
        let before = existing.as_ref().map(state_of).unwrap_or_default();
        let mut item = existing.unwrap_or_else(|| RosterItem::new(contact.to_string()));
        let out = subscription::outbound(before, kind);
        // §3.1.2, §3.4.2: asking for or approving a subscription puts the contact in the
        // roster.
        let listed_now = !item.listed && matches!(kind, SubKind::Subscribe | SubKind::Subscribed);
        if listed_now {
            item.listed = true;
        }
        if out.state != before || listed_now {
            self.save(state, user, item, out.state).await?;
        }
        if !out.forward {
            return Ok(());
        }
        let routed = readdressed(&stanza, user.as_str(), contact.as_str());
        crate::router::dispatch(state, routed).await;
        match kind {
            // §3.1.5: the new subscriber gets the user's current presence.
            SubKind::Subscribed => {
                send_presence_of(state, user, contact.as_str(), true).await;
            }
            // §3.2.2: a cancelled subscriber learns the user is unavailable.
            SubKind::Unsubscribed if before.from() => {
                send_presence_of(state, user, contact.as_str(), false).await;
            }
            _ => {}
        }
        Ok(())
    }

    /// The contact sends a subscription stanza to the user (Appendix A.3).
    async fn inbound_subscription(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        contact: &BareJid,
        kind: SubKind,
        stanza: Element,
    ) -> Result<(), StorageError> {
        let (domain, node) = parts(user);
        if !state.storage.accounts.account_exists(domain, node).await? {
            // §3.1.3: no such user: the request is refused on its behalf.
            if kind == SubKind::Subscribe {
                let reply = presence("unsubscribed", user.as_str(), contact.as_str());
                crate::router::dispatch(state, reply).await;
            }
            return Ok(());
        }
        let existing = self.item(state, user, contact).await?;
        let before = existing.as_ref().map(state_of).unwrap_or_default();
        let mut item = existing.unwrap_or_else(|| RosterItem::new(contact.to_string()));
        let out = subscription::inbound(before, kind);
        let delivered = readdressed(&stanza, contact.as_str(), user.as_str());
        if kind == SubKind::Subscribe && out.forward {
            // §3.1.3: kept, to be delivered again at the user's next login.
            item.pending_in_stanza = Some(String::from(&delivered));
        }
        // Stored before the user sees the stanza: an answer sent at once must find the
        // pending state (else an approval would be taken for a pre-approval). Delivered before
        // the roster push it causes: first the request or answer, then the item that changed.
        let stored = if out.state != before {
            self.store(state, user, item, out.state).await?
        } else {
            None
        };
        if out.forward {
            state.sessions.deliver_to_all(user, delivered);
        }
        self.push_stored(state, user, stored).await;
        // §3.3.3: a contact that no longer wants the user's presence sees the user go.
        if kind == SubKind::Unsubscribe && before.from() && !out.state.from() {
            send_presence_of(state, user, contact.as_str(), false).await;
        }
        if let Some(reply) = out.reply {
            let answer = presence(reply.as_str(), user.as_str(), contact.as_str());
            crate::router::dispatch(state, answer).await;
            // §3.1.5: with the approval, the user's current presence.
            send_presence_of(state, user, contact.as_str(), true).await;
        }
        Ok(())
    }

    /// §4.3.2: a probe is answered with the last presence of each available resource, for
    /// subscribers only.
    async fn answer_probe(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        prober: &Jid,
    ) -> Result<(), StorageError> {
        let subscribed = self
            .item(state, user, &prober.to_bare())
            .await?
            .is_some_and(|i| state_of(&i).from());
        if !subscribed {
            return Ok(());
        }
        let available = available(state, user);
        if available.is_empty() {
            let reply = presence("unavailable", user.as_str(), prober.as_str());
            crate::router::send_presence_for_account(state, reply).await;
        }
        for last in available {
            let from = last.attr("from").unwrap_or(user.as_str()).to_owned();
            let answer = readdressed(&last, &from, prober.as_str());
            crate::router::send_presence_for_account(state, answer).await;
        }
        Ok(())
    }

    /// §4.2 and §4.5: a session's broadcast presence, to its account's subscribers and own
    /// resources; the first available one also probes the contacts and brings back the
    /// subscription requests waiting for the user. Returns the sender's own copy.
    async fn broadcast(
        &self,
        state: &Arc<ServerState>,
        full: &FullJid,
        stanza: Element,
        available: bool,
    ) -> Result<Vec<Element>, StorageError> {
        let user = full.to_bare();
        let priority = stanza
            .get_child("priority", ns::CLIENT)
            .and_then(|p| p.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let mut own = stanza.clone();
        stanza::set_attr(&mut own, xml_ncname!("from").into(), full.as_str());
        stanza::remove_attr(&mut own, "to");
        let record = available.then(|| (priority, String::from(&own).into_boxed_str()));
        let was_available = state
            .sessions
            .record_presence(full, record)
            .unwrap_or(false);
        let initial = available && !was_available;
        let directed = if available {
            Vec::new()
        } else {
            self.presence.take(full)
        };
        // The whole roster at the first available presence (probes and waiting requests
        // below need it), otherwise only its subscribers.
        let (subscribers, roster) = if initial {
            let (domain, node) = parts(&user);
            let (version, roster) = state.storage.roster.roster(domain, node).await?;
            let subscribers = self.subscribers.remember(&user, version, &roster);
            (subscribers, roster)
        } else {
            (self.subscribers_of(state, &user).await?, Vec::new())
        };
        let sender = Jid::from(full.clone());
        for contact in subscribers.iter() {
            let mut copy = own.clone();
            stanza::set_attr(&mut copy, xml_ncname!("to").into(), contact.as_str());
            crate::router::send_presence_addressed(state, copy, &sender, contact.clone()).await;
        }
        for to in directed {
            let copy = readdressed(&own, full.as_str(), to.as_str());
            crate::router::send_presence_for_account(state, copy).await;
        }
        // The account's own resources, the sender included (§4.2.2, §4.4.2).
        let mut back = Vec::new();
        for (jid, _) in state.sessions.all_resources(&user) {
            let copy = readdressed(&own, full.as_str(), jid.as_str());
            if &jid == full {
                back.push(copy);
            } else {
                // Through the registry, so a session's delivery filter (CSI) sees it.
                let _ = state.sessions.deliver_to_full(&jid, copy);
            }
        }
        if initial {
            for item in &roster {
                if state_of(item).to() && !offline_here(state, &item.contact) {
                    let probe = presence("probe", user.as_str(), &item.contact);
                    crate::router::send_presence_for_account(state, probe).await;
                }
                if item.pending_in {
                    let request = match item.pending_in_stanza.as_deref().map(str::parse) {
                        Some(Ok(el)) => el,
                        _ => presence("subscribe", &item.contact, user.as_str()),
                    };
                    back.push(readdressed(&request, &item.contact, full.as_str()));
                }
            }
        }
        Ok(back)
    }

    /// §4.5.2 and §4.6.3: a session that ends without saying so is unavailable to everyone
    /// who had its presence.
    pub(super) async fn session_closed(
        &self,
        state: &Arc<ServerState>,
        full: &FullJid,
    ) -> Result<(), StorageError> {
        // The hook runs before the registry forgets the session: its last presence is there.
        let last = state.sessions.presence_of(full);
        let directed = self.presence.take(full);
        if last.is_none() && directed.is_empty() {
            return Ok(());
        }
        let user = full.to_bare();
        let subscribers = match last {
            Some(_) => self.subscribers_of(state, &user).await?,
            None => Arc::from([]),
        };
        let sender = Jid::from(full.clone());
        for contact in directed.iter().chain(subscribers.iter()) {
            let unavailable = presence("unavailable", full.as_str(), contact.as_str());
            crate::router::send_presence_addressed(state, unavailable, &sender, contact.clone())
                .await;
        }
        Ok(())
    }

    /// The contacts that get `user`'s presence broadcast: the cached list while the roster
    /// version is unchanged, else read from the roster (and cached while `user` is online).
    async fn subscribers_of(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
    ) -> Result<Arc<[Jid]>, StorageError> {
        let (domain, node) = parts(user);
        if self.subscribers.cached(user) {
            let version = state.storage.roster.roster_version(domain, node).await?;
            if let Some(subscribers) = self.subscribers.get(user, version) {
                return Ok(subscribers);
            }
        }
        let (version, roster) = state.storage.roster.roster(domain, node).await?;
        Ok(self.subscribers.remember(user, version, &roster))
    }
}
