//! The registry of bound c2s sessions: who is online under which resource, and the handle to
//! reach each session's task. RFC 6120 §7 (binding) and §7.7.2.2 (conflicts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use jid::{BareJid, FullJid};
use minidom::Element;
use tokio::sync::mpsc;
use weft_config::ResourceConflict;

use super::stop::{StopReason, StopSignal};
use crate::framing::{Copies, Wire};
use crate::stanza::{bare_part, StanzaText};
use crate::transport::shared::{Refused, SharedWriter};

/// What other tasks can ask of a session.
#[derive(Debug)]
pub enum Outbound {
    /// A stanza to write to the client. Boxed: the channel allocates its slots in blocks up
    /// front, and a pointer per slot instead of a whole element keeps idle sessions small.
    Stanza(Box<Element>),
}

/// The way to reach one session; cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub inbox: Inbox,
    /// Raised when a new session takes over this resource (RFC 6120 §7.7.2.2) or the server
    /// shuts down.
    pub stop: Arc<StopSignal>,
}

/// Where stanzas for a session go.
#[derive(Clone)]
pub enum Inbox {
    /// Straight into the session's connection (plain TCP or ws://, see `transport::shared`).
    Direct(Arc<SharedWriter>, Wire),
    /// Into a queue the session's task writes from (TLS connections).
    Queue(mpsc::Sender<Outbound>),
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inbox::Direct(_, wire) => write!(f, "Direct({wire:?})"),
            Inbox::Queue(_) => f.write_str("Queue"),
        }
    }
}

/// Why a stanza could not be handed to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The session is gone.
    Gone,
    /// The session's queue is full: it is not reading fast enough.
    Congested,
}

impl SessionHandle {
    /// Hands `stanza` to the session; on failure the stanza comes back, so callers need no
    /// copy of it (the stanza path is hot) to build an error reply.
    pub fn deliver(&self, stanza: Element) -> Result<(), (DeliveryError, Element)> {
        self.deliver_as(stanza, None)
    }

    /// [`Self::deliver`], writing `text` (the stanza as `weft_xml::write_element` writes it)
    /// instead of serialising the stanza when the session writes directly.
    fn deliver_as(
        &self,
        stanza: Element,
        text: Option<&StanzaText>,
    ) -> Result<(), (DeliveryError, Element)> {
        match &self.inbox {
            Inbox::Direct(writer, wire) => match wire.deliver(writer, &stanza, text) {
                Ok(()) => Ok(()),
                Err(Refused::Closed) => Err((DeliveryError::Gone, stanza)),
                Err(Refused::Full) => Err((DeliveryError::Congested, stanza)),
            },
            Inbox::Queue(tx) => {
                tx.try_send(Outbound::Stanza(Box::new(stanza)))
                    .map_err(|e| match e {
                        mpsc::error::TrySendError::Full(Outbound::Stanza(s)) => {
                            (DeliveryError::Congested, *s)
                        }
                        mpsc::error::TrySendError::Closed(Outbound::Stanza(s)) => {
                            (DeliveryError::Gone, *s)
                        }
                    })
            }
        }
    }
}

#[derive(Debug)]
struct Resource {
    name: String,
    handle: SessionHandle,
    /// RFC 6121 §4.2: an available resource has sent initial presence.
    available: bool,
    priority: i8,
    /// A module's hold on this session's deliveries (XEP-0352 while inactive); none is the
    /// common case and costs one check per delivery.
    filter: Option<Arc<dyn DeliveryFilter>>,
    /// The last available presence it broadcast, serialised (RFC 6121 §4.2: answered to
    /// probes); kept here, beside availability, so an online session costs no second map.
    presence: Option<Box<str>>,
}

/// A module's say over what reaches one session, set per session (e.g. XEP-0352 client state
/// indication: hold presence while the client is inactive). The registry stays feature-free:
/// it only asks.
pub trait DeliveryFilter: Send + Sync + std::fmt::Debug {
    /// The stanzas to deliver now, in order: the offered one, perhaps after stanzas held
    /// before it; empty when it is held.
    fn offer(&self, stanza: Element) -> Vec<Element>;
    /// Everything held, in order, when the filter is removed.
    fn release(&self) -> Vec<Element>;
}

impl Resource {
    fn new(name: &str, handle: SessionHandle) -> Resource {
        Resource {
            name: name.to_string(),
            handle,
            available: false,
            priority: 0,
            filter: None,
            presence: None,
        }
    }

    /// Delivers through the session's filter, if it has one.
    fn deliver(&self, stanza: Element) -> Result<(), (DeliveryError, Element)> {
        self.deliver_as(stanza, None)
    }

    /// [`Self::deliver`] with the stanza's text, if known (`SessionHandle::deliver_as`); a
    /// filter gets the stanza alone.
    fn deliver_as(
        &self,
        stanza: Element,
        text: Option<&StanzaText>,
    ) -> Result<(), (DeliveryError, Element)> {
        let Some(filter) = &self.filter else {
            return self.handle.deliver_as(stanza, text);
        };
        let mut result = Ok(());
        for s in filter.offer(stanza) {
            result = self.handle.deliver(s);
        }
        result
    }
}

/// What became of a stanza handed to one full JID. Delivery happens under the registry's read
/// lock rather than through a cloned [`SessionHandle`]: a clone and its drop are four atomic
/// updates per stanza on the channel's and the token's shared state, which with hundreds of
/// sessions is rarely in cache.
#[derive(Debug)]
pub enum Handed {
    Queued,
    /// A session is bound there but did not take the stanza.
    Refused(DeliveryError, Element),
    /// No session is bound to that JID.
    NoSession(Element),
}

/// Hands `stanza` to the resource found for it, if any.
fn hand(resource: Option<&Resource>, stanza: Element, text: Option<&StanzaText>) -> Handed {
    let Some(resource) = resource else {
        return Handed::NoSession(stanza);
    };
    match resource.deliver_as(stanza, text) {
        Ok(()) => Handed::Queued,
        Err((why, stanza)) => Handed::Refused(why, stanza),
    }
}

/// The resource bound to the full JID whose normalised string is exactly `full`.
fn find<'a>(accounts: &'a HashMap<String, Vec<Resource>>, full: &str) -> Option<&'a Resource> {
    // Neither a localpart nor a domainpart may contain '/' (RFC 7622 §3.2, §3.3).
    let (bare, resource) = full.split_once('/')?;
    accounts.get(bare)?.iter().find(|r| r.name == resource)
}

/// Bound sessions by bare JID.
#[derive(Default)]
pub struct SessionRegistry {
    /// Keyed by the bare JID's string, so that a lookup by full JID borrows its bare part
    /// instead of building a `BareJid` (a copy) for every stanza.
    accounts: RwLock<HashMap<String, Vec<Resource>>>,
    next_id: AtomicU64,
    /// Set by `stop_all` (under the write lock, as `bind` reads it): a session that binds
    /// afterwards is stopped as it binds.
    stopping: OnceLock<StopReason>,
}

/// The outcome of a bind.
pub enum BindOutcome {
    Bound,
    /// Bound, and this older session with the same resource must be closed.
    Replaced(SessionHandle),
    /// Refused: the resource is taken and the policy is to reject.
    Conflict,
}

impl SessionRegistry {
    pub fn new_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn bind(
        &self,
        jid: &FullJid,
        handle: SessionHandle,
        policy: ResourceConflict,
    ) -> BindOutcome {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&reason) = self.stopping.get() {
            handle.stop.raise(reason);
        }
        // Room for one resource: most accounts have one or two, and the default first growth
        // reserves four (measured: 5.9 -> 5.6 KiB per idle session at 10,000 sessions).
        let resources = accounts
            .entry(bare_part(jid.as_str()).to_owned())
            .or_insert_with(|| Vec::with_capacity(1));
        let name = jid.resource().as_str();
        if let Some(pos) = resources.iter().position(|r| r.name == name) {
            return match policy {
                ResourceConflict::Reject => BindOutcome::Conflict,
                ResourceConflict::Replace => {
                    let old = std::mem::replace(&mut resources[pos], Resource::new(name, handle));
                    BindOutcome::Replaced(old.handle)
                }
            };
        }
        resources.push(Resource::new(name, handle));
        BindOutcome::Bound
    }

    /// Whether the session `session_id` is the one bound to `jid` (not replaced since).
    pub fn holds(&self, jid: &FullJid, session_id: u64) -> bool {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        find(&accounts, jid.as_str()).is_some_and(|r| r.handle.id == session_id)
    }

    /// Removes the session, unless the resource was since taken over by another session.
    pub fn unbind(&self, jid: &FullJid, session_id: u64) {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let bare = bare_part(jid.as_str());
        if let Some(resources) = accounts.get_mut(bare) {
            resources.retain(|r| !(r.name == jid.resource().as_str() && r.handle.id == session_id));
            if resources.is_empty() {
                accounts.remove(bare);
            }
        }
    }

    /// Asks every bound session, and every session that binds from now on, to end (shutdown,
    /// draining).
    pub fn stop_all(&self, reason: StopReason) {
        let accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let _ = self.stopping.set(reason);
        for resource in accounts.values().flatten() {
            resource.handle.stop.raise(reason);
        }
    }

    pub fn is_bound(&self, jid: &FullJid) -> bool {
        self.lookup(jid).is_some()
    }

    pub fn lookup(&self, jid: &FullJid) -> Option<SessionHandle> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        find(&accounts, jid.as_str()).map(|r| r.handle.clone())
    }

    /// Hands `stanza` to the session bound to the full JID whose normalised string is exactly
    /// its 'to'. Any other string, including another spelling of a bound JID, gives
    /// [`Handed::NoSession`]. A match proves 'to' a valid, already normalised JID (the registry
    /// holds only those), which lets routing skip parsing a 'to' that names a bound session.
    pub fn deliver_to_addressee(&self, stanza: Element) -> Handed {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let resource = stanza.attr("to").and_then(|to| find(&accounts, to));
        hand(resource, stanza, None)
    }

    /// Writes `copies`' copy for `jid` straight into the connection of the session bound
    /// there. False, with nothing written, when that session takes its stanzas otherwise
    /// (through a filter, or its task's queue: TLS, stream management), is not bound here, or
    /// refuses the copy: the caller then hands it an element the usual way, which gives the
    /// usual answers.
    pub fn write_copy(&self, jid: &FullJid, copies: &Copies) -> bool {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let Some(resource) = find(&accounts, jid.as_str()) else {
            return false;
        };
        match (&resource.filter, &resource.handle.inbox) {
            (None, Inbox::Direct(writer, wire)) => {
                wire.deliver_copy(writer, copies, jid.as_str()).is_ok()
            }
            _ => false,
        }
    }

    /// Hands `stanza` to the session bound to `jid`.
    pub fn deliver_to_full(&self, jid: &FullJid, stanza: Element) -> Handed {
        self.deliver_to_full_as(jid, stanza, None)
    }

    /// [`Self::deliver_to_full`] with the stanza's text as `weft_xml::write_element` writes
    /// it, when the caller has it (`modules::StanzaEvent::text`): a session writing directly
    /// copies it rather than serialising the stanza again.
    pub fn deliver_to_full_as(
        &self,
        jid: &FullJid,
        stanza: Element,
        text: Option<&StanzaText>,
    ) -> Handed {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        hand(find(&accounts, jid.as_str()), stanza, text)
    }

    /// Replaces where the session `session_id` bound to `jid` receives its stanzas (XEP-0198:
    /// a session that enables stream management takes them through its task, which counts
    /// them). False when that session is no longer bound there.
    pub fn set_inbox(&self, jid: &FullJid, session_id: u64, inbox: Inbox) -> bool {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let Some(resource) = accounts.get_mut(bare_part(jid.as_str())).and_then(|rs| {
            rs.iter_mut()
                .find(|r| r.name == jid.resource().as_str() && r.handle.id == session_id)
        }) else {
            return false;
        };
        resource.handle.inbox = inbox;
        true
    }

    /// Sets (or with `None` removes) the delivery filter of the session bound to `jid`;
    /// returns the one it replaces.
    pub fn set_filter(
        &self,
        jid: &FullJid,
        filter: Option<Arc<dyn DeliveryFilter>>,
    ) -> Option<Arc<dyn DeliveryFilter>> {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let resource = accounts
            .get_mut(bare_part(jid.as_str()))
            .and_then(|rs| rs.iter_mut().find(|r| r.name == jid.resource().as_str()))?;
        std::mem::replace(&mut resource.filter, filter)
    }

    /// Records a session's broadcast presence (RFC 6121 §4.2, §4.7.2.3): available with its
    /// priority and the presence as sent, serialised, or unavailable (`None`). Returns
    /// whether the session was available before, or `None` when it is not bound.
    pub fn record_presence(
        &self,
        jid: &FullJid,
        available: Option<(i8, Box<str>)>,
    ) -> Option<bool> {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let r = accounts
            .get_mut(bare_part(jid.as_str()))
            .and_then(|rs| rs.iter_mut().find(|r| r.name == jid.resource().as_str()))?;
        let was = r.available;
        match available {
            Some((priority, presence)) => {
                r.available = true;
                r.priority = priority;
                r.presence = Some(presence);
            }
            None => {
                r.available = false;
                r.presence = None;
            }
        }
        Some(was)
    }

    /// The last presence of each available resource of the account, serialised.
    pub fn presences(&self, bare: &BareJid) -> Vec<Box<str>> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts
            .get(bare.as_str())
            .map(|rs| rs.iter().filter_map(|r| r.presence.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether any resource of the account (a normalised bare JID) is available.
    pub fn is_available(&self, bare: &str) -> bool {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts
            .get(bare)
            .is_some_and(|rs| rs.iter().any(|r| r.available))
    }

    /// The last presence of one session, when it is available.
    pub fn presence_of(&self, jid: &FullJid) -> Option<Box<str>> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        find(&accounts, jid.as_str()).and_then(|r| r.presence.clone())
    }

    /// Records presence availability and priority (RFC 6121 §4.7.2.3).
    pub fn set_presence(&self, jid: &FullJid, available: bool, priority: i8) {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = accounts
            .get_mut(bare_part(jid.as_str()))
            .and_then(|rs| rs.iter_mut().find(|r| r.name == jid.resource().as_str()))
        {
            r.available = available;
            r.priority = priority;
        }
    }

    /// RFC 6121 §8.5.2.1.1: a message to a bare JID goes to every available resource with
    /// non-negative priority. Returns the message when none of them took it, for the caller's
    /// offline handling. The last target gets the message itself, the others copies: with one
    /// resource (the common case) nothing is copied.
    pub fn deliver_message(&self, bare: &BareJid, stanza: Element) -> Option<Element> {
        self.deliver_where(bare, stanza, |r| r.available && r.priority >= 0)
    }

    /// Delivers `stanza` to every bound resource of the account (presence to a bare JID,
    /// RFC 6121 §8.5.2.1.2); returns it when none took it.
    pub fn deliver_to_all(&self, bare: &BareJid, stanza: Element) -> Option<Element> {
        self.deliver_where(bare, stanza, |_| true)
    }

    /// Delivers to the resources `wanted` picks, under the read lock: the last one gets the
    /// stanza itself, the others copies, and no full JID is built per resource.
    fn deliver_where(
        &self,
        bare: &BareJid,
        stanza: Element,
        wanted: impl Fn(&Resource) -> bool,
    ) -> Option<Element> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let Some(resources) = accounts.get(bare.as_str()) else {
            return Some(stanza);
        };
        let mut targets = resources.iter().filter(|r| wanted(r));
        let Some(mut last) = targets.next() else {
            return Some(stanza);
        };
        let mut delivered = false;
        for next in targets {
            delivered |= last.deliver(stanza.clone()).is_ok();
            last = next;
        }
        match last.deliver(stanza) {
            Ok(()) => None,
            Err(_) if delivered => None,
            Err((_, stanza)) => Some(stanza),
        }
    }

    /// Every bound resource of the account with its full JID (for stanzas that name each
    /// recipient, like the presence broadcast).
    pub fn all_resources(&self, bare: &BareJid) -> Vec<(FullJid, SessionHandle)> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let Some(resources) = accounts.get(bare.as_str()) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|r| Some((bare.with_resource_str(&r.name).ok()?, r.handle.clone())))
            .collect()
    }

    /// Number of bound sessions.
    pub fn len(&self) -> usize {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(reg: &SessionRegistry) -> (SessionHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        (
            SessionHandle {
                id: reg.new_session_id(),
                inbox: Inbox::Queue(tx),
                stop: Default::default(),
            },
            rx,
        )
    }

    #[test]
    fn stop_all_reaches_bound_sessions_and_later_binds() {
        let reg = SessionRegistry::default();
        let (early, _r1) = handle(&reg);
        let (late, _r2) = handle(&reg);
        reg.bind(
            &"alice@localhost/a".parse().unwrap(),
            early.clone(),
            ResourceConflict::Replace,
        );
        assert_eq!(early.stop.raised(), None);
        reg.stop_all(StopReason::Shutdown);
        assert_eq!(early.stop.raised(), Some(StopReason::Shutdown));
        assert_eq!(late.stop.raised(), None);
        reg.bind(
            &"bob@localhost/b".parse().unwrap(),
            late.clone(),
            ResourceConflict::Replace,
        );
        assert_eq!(late.stop.raised(), Some(StopReason::Shutdown));
    }

    #[test]
    fn bind_conflict_policies() {
        let reg = SessionRegistry::default();
        let jid: FullJid = "alice@localhost/phone".parse().unwrap();
        let (h1, _r1) = handle(&reg);
        let (h2, _r2) = handle(&reg);
        let (h3, _r3) = handle(&reg);
        assert!(matches!(
            reg.bind(&jid, h1.clone(), ResourceConflict::Replace),
            BindOutcome::Bound
        ));
        assert!(matches!(
            reg.bind(&jid, h2.clone(), ResourceConflict::Reject),
            BindOutcome::Conflict
        ));
        match reg.bind(&jid, h3.clone(), ResourceConflict::Replace) {
            BindOutcome::Replaced(old) => assert_eq!(old.id, h1.id),
            _ => panic!("expected replace"),
        }
        // The replaced session unbinding must not remove its successor.
        reg.unbind(&jid, h1.id);
        assert_eq!(reg.lookup(&jid).map(|h| h.id), Some(h3.id));
        reg.unbind(&jid, h3.id);
        assert!(reg.is_empty());
    }

    #[test]
    fn delivery_by_to_matches_only_the_normalised_full_jid() {
        let reg = SessionRegistry::default();
        let jid: FullJid = "alice@localhost/Phone/1".parse().unwrap();
        let (h, mut rx) = handle(&reg);
        reg.bind(&jid, h, ResourceConflict::Replace);
        let to = |to: &str| {
            Element::builder("message", "jabber:client")
                .attr(rxml::xml_ncname!("to").into(), to)
                .build()
        };
        // A resource may contain '/': only the first one ends the bare JID.
        assert!(matches!(
            reg.deliver_to_addressee(to("alice@localhost/Phone/1")),
            Handed::Queued
        ));
        assert!(rx.try_recv().is_ok());
        // Other spellings of the same JID, the bare JID and other resources are not found
        // here (routing then parses and normalises them); the stanza comes back untouched.
        for other in [
            "ALICE@localhost/Phone/1",
            "alice@LOCALHOST/Phone/1",
            "alice@localhost/phone/1",
            "alice@localhost/Phone",
            "alice@localhost",
            "alice@localhost/",
            "",
        ] {
            match reg.deliver_to_addressee(to(other)) {
                Handed::NoSession(back) => assert_eq!(back.attr("to"), Some(other)),
                h => panic!("{other}: {h:?}"),
            }
        }
        let no_to = Element::builder("message", "jabber:client").build();
        assert!(matches!(
            reg.deliver_to_addressee(no_to),
            Handed::NoSession(_)
        ));
        assert!(rx.try_recv().is_err());
        // A session that is gone refuses and gives the stanza back.
        drop(rx);
        assert!(matches!(
            reg.deliver_to_full(&jid, to("alice@localhost/Phone/1")),
            Handed::Refused(DeliveryError::Gone, _)
        ));
    }

    #[test]
    fn messages_to_a_bare_jid_go_to_available_resources_of_non_negative_priority() {
        let reg = SessionRegistry::default();
        let a: FullJid = "bob@localhost/a".parse().unwrap();
        let b: FullJid = "bob@localhost/b".parse().unwrap();
        let (ha, mut ra) = handle(&reg);
        let (hb, mut rb) = handle(&reg);
        let hb_id = hb.id;
        reg.bind(&a, ha, ResourceConflict::Replace);
        reg.bind(&b, hb, ResourceConflict::Replace);
        let bare = a.to_bare();
        let msg = || Element::builder("message", "jabber:client").build();
        // Bound but not available: nobody takes it, and it comes back.
        assert!(reg.deliver_message(&bare, msg()).is_some());
        reg.set_presence(&a, true, 0);
        reg.set_presence(&b, true, -1);
        assert!(reg.deliver_message(&bare, msg()).is_none());
        assert!(ra.try_recv().is_ok());
        assert!(
            rb.try_recv().is_err(),
            "negative priority gets no message to the bare JID"
        );
        reg.set_presence(&b, true, 1);
        assert!(reg.deliver_message(&bare, msg()).is_none());
        assert!(
            ra.try_recv().is_ok() && rb.try_recv().is_ok(),
            "both available resources"
        );
        assert_eq!(reg.all_resources(&bare).len(), 2);
        assert_eq!(reg.lookup(&b).map(|h| h.id), Some(hb_id));
        // A resource whose session is gone does not count as a delivery.
        drop(rb);
        reg.set_presence(&a, false, 0);
        assert!(reg.deliver_message(&bare, msg()).is_some());
    }

    #[test]
    fn presence_to_a_bare_jid_reaches_every_bound_resource() {
        let reg = SessionRegistry::default();
        let a: FullJid = "eve@localhost/a".parse().unwrap();
        let b: FullJid = "eve@localhost/b".parse().unwrap();
        let (ha, mut ra) = handle(&reg);
        let (hb, mut rb) = handle(&reg);
        reg.bind(&a, ha, ResourceConflict::Replace);
        reg.bind(&b, hb, ResourceConflict::Replace);
        // Neither available, one with negative priority: both still get it.
        reg.set_presence(&b, false, -1);
        let presence = || Element::builder("presence", "jabber:client").build();
        assert!(reg.deliver_to_all(&a.to_bare(), presence()).is_none());
        assert!(ra.try_recv().is_ok() && rb.try_recv().is_ok());
        let nobody: BareJid = "nobody@localhost".parse().unwrap();
        assert!(reg.deliver_to_all(&nobody, presence()).is_some());
    }
}
