//! The module API: what a feature module declares (its IQ namespaces, hook points, disco
//! features) and the calls the router and sessions make into it. The router, the sessions and
//! the transports know no feature; a feature knows no transport.

use std::sync::Arc;

use jid::{FullJid, Jid};
use minidom::Element;

use crate::error::StanzaError;
use crate::stanza::Kind;
use crate::state::ServerState;

/// Where a module can take part in a stanza's way through the server. Each is asked only of
/// the modules that declared it, in priority order; a point nobody declared costs one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StanzaHook {
    /// A message from a local client, its 'from' stamped, before routing (RFC 6121 §8.5
    /// decides after every module let it through).
    MessageFromLocal,
    /// A presence from a local client, before routing: broadcast (no 'to'), subscriptions and
    /// directed presence (RFC 6121 §3, §4).
    PresenceFromLocal,
    /// A presence for a local account's bare or full JID, from a local user or over s2s,
    /// before delivery: subscription requests and answers, probes (RFC 6121 §3, §4.3).
    PresenceToLocal,
    /// A message for a local account that none of its resources takes (RFC 6121 §8.5.2.2,
    /// §8.5.3.2.1): offline storage and the like.
    MessageNoResource,
    /// A message for a local account, from a local user or over s2s, before delivery:
    /// carbons of received messages, blocking.
    MessageToLocal,
    /// An IQ for a local account's bare or full JID, before the server answers or delivers it.
    IqToLocal,
    /// An IQ from a local client, its 'from' stamped, before routing: blocking.
    IqFromLocal,
    /// A presence the server sends on a local account's behalf to one addressee: the
    /// account's broadcast to its subscribers, answers to their probes, its unavailable when a
    /// session ends (RFC 6121 §4). The last word before it leaves: blocking.
    PresenceFromAccount,
}

impl StanzaHook {
    pub const ALL: [StanzaHook; 8] = [
        StanzaHook::MessageFromLocal,
        StanzaHook::PresenceFromLocal,
        StanzaHook::PresenceToLocal,
        StanzaHook::MessageNoResource,
        StanzaHook::MessageToLocal,
        StanzaHook::IqToLocal,
        StanzaHook::IqFromLocal,
        StanzaHook::PresenceFromAccount,
    ];

    /// The hook for a stanza of `kind` from a local client.
    pub fn from_local(kind: Kind) -> Option<StanzaHook> {
        match kind {
            Kind::Message => Some(StanzaHook::MessageFromLocal),
            Kind::Presence => Some(StanzaHook::PresenceFromLocal),
            Kind::Iq => Some(StanzaHook::IqFromLocal),
        }
    }

    /// The hook for a stanza of `kind` for a local account.
    pub fn to_local(kind: Kind) -> StanzaHook {
        match kind {
            Kind::Message => StanzaHook::MessageToLocal,
            Kind::Presence => StanzaHook::PresenceToLocal,
            Kind::Iq => StanzaHook::IqToLocal,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Moments of a client session's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionHook {
    /// A resource was bound (RFC 6120 §7); the session can receive stanzas.
    Bound,
    /// The session went on on a new stream (XEP-0198 §5): per-stream state starts afresh.
    Resumed,
    /// The session ended: its stream closed, failed or the socket was lost. It no longer
    /// receives stanzas, but the registry still lists it (with its last presence) until
    /// every module heard of it.
    Closed,
}

impl SessionHook {
    pub const ALL: [SessionHook; 3] = [
        SessionHook::Bound,
        SessionHook::Resumed,
        SessionHook::Closed,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why the client of a session does not see what the session is sent, for
/// [`Module::away_delivery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Away {
    /// XEP-0198 §5: its connection was lost and the session waits to be resumed; what it is
    /// sent is kept for that.
    Hibernating,
    /// XEP-0352: the client said it is inactive (a phone in a pocket).
    Inactive,
}

/// Order among the modules on one hook point: lower runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority(pub i32);

impl Priority {
    /// Filters that refuse stanzas (blocking, privacy) run before anything acts on them.
    pub const FILTER: Priority = Priority(-100);
    pub const NORMAL: Priority = Priority(0);
    /// Last resorts (offline storage) run after every other module had its say.
    pub const FALLBACK: Priority = Priority(100);
}

/// What a module declares, in one place.
#[derive(Clone, Copy, Debug)]
pub struct ModuleSpec {
    /// The module's name: its config section is `[modules.NAME]`.
    pub name: &'static str,
    /// Namespaces of the IQ payloads it answers (RFC 6120 §8.2.3: one payload per get/set).
    pub iq: &'static [&'static str],
    pub stanza_hooks: &'static [(StanzaHook, Priority)],
    pub session_hooks: &'static [(SessionHook, Priority)],
    /// disco#info features of the server's own JID (XEP-0030).
    pub server_features: &'static [&'static str],
    /// disco#info features of every account's bare JID.
    pub account_features: &'static [&'static str],
    /// disco#info identities (category, type) of every account's bare JID besides
    /// account/registered, e.g. XEP-0163's pubsub/pep.
    pub account_identities: &'static [(&'static str, &'static str)],
    /// Empty elements (name, namespace) added to the stream features after authentication,
    /// e.g. roster versioning (RFC 6121 §2.6.1).
    pub stream_features: &'static [(&'static str, &'static str)],
    /// Top-level elements (name, namespace) other than stanzas that a bound client may send
    /// and this module handles, e.g. XEP-0352's `<active/>` and `<inactive/>`.
    pub nonzas: &'static [(&'static str, &'static str)],
    /// The specifications it implements, with their version and how fully: the source of
    /// `weft compliance` and of weft.doap (`crate::compliance`).
    pub specs: &'static [crate::compliance::Claim],
    /// Whether it wants [`Module::away_delivery`] for stanzas handed to sessions whose client
    /// is away (XEP-0357 push notifications).
    pub away_deliveries: bool,
    /// Whether its service entity ([`Module::service`]) takes every stanza to its domain and
    /// the JIDs under it (XEP-0045 rooms and occupants), through
    /// [`Module::service_stanza`], rather than IQs to the domain alone.
    pub service_stanzas: bool,
    /// Whether its stanza hook keeps [`StanzaEvent::text`] true: it clears or replaces the
    /// text whenever it changes the stanza. For any other module the text is dropped before
    /// its hook runs, so that a module never has to know about it.
    pub keeps_text: bool,
}

impl ModuleSpec {
    /// A spec with nothing declared but the name.
    pub const fn named(name: &'static str) -> ModuleSpec {
        ModuleSpec {
            name,
            iq: &[],
            stanza_hooks: &[],
            session_hooks: &[],
            server_features: &[],
            account_features: &[],
            account_identities: &[],
            stream_features: &[],
            nonzas: &[],
            specs: &[],
            away_deliveries: false,
            service_stanzas: false,
            keeps_text: false,
        }
    }
}

/// An IQ get or set, validated to carry exactly one payload (RFC 6120 §8.2.3).
pub struct IqRequest<'a> {
    pub iq: &'a Element,
    pub payload: &'a Element,
    pub from: &'a Jid,
    /// The server's domain, or the bare JID of an account the server answers for.
    pub to: &'a Jid,
    pub is_set: bool,
}

impl IqRequest<'_> {
    /// The sender as a local client's full JID, when it is one of our accounts' sessions.
    pub fn local_sender(&self, state: &ServerState) -> Option<FullJid> {
        let full = self.from.clone().try_into_full().ok()?;
        state
            .is_local_domain(full.domain().as_str())
            .then_some(full)
    }

    /// Whether the sender is the account the request is addressed to (or the server of it,
    /// for requests without 'to'): only then may it read or change the account's own data.
    pub fn from_owner(&self) -> bool {
        self.from.node().is_some()
            && self.from.node() == self.to.node()
            && self.from.domain() == self.to.domain()
    }
}

/// (domain, username) of a local account's bare JID, as the stores take them.
pub fn account_parts(user: &jid::BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

/// What a module made of a request.
pub enum IqOutcome {
    /// type='result', with an optional payload.
    Result(Option<Element>),
    /// type='result' after these stanzas to the requester (XEP-0313: the archived messages
    /// of a page come before the result that ends the query).
    ResultAfter(Vec<Element>, Option<Element>),
    Error(StanzaError),
    /// Not this module's request after all (another payload name in its namespace).
    NotMine,
}

impl IqOutcome {
    /// An error with a text for the requester.
    pub fn error(condition: crate::error::StanzaErrorCondition, text: &str) -> IqOutcome {
        IqOutcome::Error(StanzaError::new(condition).with_text(text))
    }

    /// A storage failure: logged with what failed, answered `<internal-server-error/>`.
    pub fn storage_failed(what: &str, e: weft_storage::StorageError) -> IqOutcome {
        tracing::warn!("{what} storage failed: {e}");
        IqOutcome::Error(StanzaError::new(
            crate::error::StanzaErrorCondition::InternalServerError,
        ))
    }
}

/// A stanza passing a hook point.
pub struct StanzaEvent<'a> {
    pub stanza: Element,
    pub kind: Kind,
    /// The sender's JID ('from', already stamped or checked).
    pub from: &'a Jid,
    /// The addressee, when the stanza has one.
    pub to: Option<&'a Jid>,
    /// Stanzas for the sender's own session, written by its task after the hook (a module
    /// delivering to the sender: stored messages at login, a reflected copy). Unbounded by
    /// the session queue, unlike a delivery through the registry.
    pub to_sender: &'a mut Vec<Element>,
    /// The stanza as [`weft_xml::write_element`] writes it, when a module serialised it
    /// (the archive) and it has not changed since; the delivery to a WebSocket or plain TCP
    /// session then writes these bytes instead of serialising the stanza again. Only modules
    /// declaring [`ModuleSpec::keeps_text`] see it; they must clear or replace it when they
    /// change the stanza.
    pub text: &'a mut Option<StanzaText>,
}

pub use crate::stanza::StanzaText;

/// What a module did with a stanza at a hook point.
pub enum Flow {
    /// Go on with the (possibly changed) stanza.
    Continue(Element),
    /// The module took care of it; these stanzas go back to its sender (errors, results).
    Done(Vec<Element>),
}

/// A feature module. Handlers are async (they may reach storage) and never hold a lock
/// across an await. The defaults do nothing, so a module implements only what its spec
/// declares.
#[async_trait::async_trait]
pub trait Module: std::any::Any + Send + Sync + 'static {
    fn spec(&self) -> &'static ModuleSpec;

    /// Whether the module wants the stanzas of `hook` that concern the local account
    /// `account` (a bare JID: the sender's on the *FromLocal hooks, the addressee's on the
    /// others). Asked for every such stanza before anything is parsed for the hook, so it must
    /// be cheap and never block: a module that acts for few accounts (carbons enabled, a
    /// blocklist) keeps the message fast path free for everyone else.
    fn concerns(&self, _hook: StanzaHook, _account: &str) -> bool {
        true
    }

    /// Whether the module, on the hook for `kind` to a local account, wants what a room
    /// sends to every occupant (XEP-0045: a groupchat message, §7.4; an occupant's available
    /// or unavailable presence, §7.2.3, §7.7.2, §7.14) at each session of `account` in it: one
    /// stanza, hundreds of copies. For accounts no module wants them for, the copies skip the
    /// hook and are serialised once. By default whenever `concerns` says so; a module that
    /// does nothing with such stanzas says no.
    fn concerns_room_copies(&self, kind: Kind, account: &str) -> bool {
        self.concerns(StanzaHook::to_local(kind), account)
    }

    /// Once, when the server starts, before it accepts connections: load what `concerns`
    /// needs to answer without storage.
    async fn start(&self, _state: &Arc<ServerState>) -> Result<(), weft_storage::StorageError> {
        Ok(())
    }

    /// An IQ get/set whose payload is in one of the spec's `iq` namespaces.
    async fn iq(&self, _state: &Arc<ServerState>, _req: &IqRequest<'_>) -> IqOutcome {
        IqOutcome::NotMine
    }

    /// A stanza at one of the spec's stanza hooks.
    async fn stanza(
        &self,
        _state: &Arc<ServerState>,
        _hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        Flow::Continue(event.stanza)
    }

    /// A top-level element of the spec's `nonzas` from the bound client `jid`; returns what
    /// to send back to it.
    async fn nonza(
        &self,
        _state: &Arc<ServerState>,
        _jid: &FullJid,
        _element: &Element,
    ) -> Vec<Element> {
        Vec::new()
    }

    /// A stanza was handed to the session `jid` while its client is away ([`Away`]), for the
    /// modules whose spec sets `away_deliveries`: at each delivery to a hibernating session
    /// (and once for each stanza left unacknowledged when its connection was lost), and at
    /// each delivery to an inactive one. The stanza is delivered (or kept) whatever the
    /// module does. Called on the delivery path, for such sessions only, at times under the
    /// session registry's lock: it must be cheap, must not block or await, and must not call
    /// the session registry; anything longer goes to a task of its own.
    fn away_delivery(
        &self,
        _state: &Arc<ServerState>,
        _jid: &FullJid,
        _stanza: &Element,
        _away: Away,
    ) {
    }

    /// A session moment of the spec's session hooks.
    async fn session(&self, _state: &Arc<ServerState>, _hook: SessionHook, _jid: &FullJid) {}

    /// Once, when the server begins to stop, before the sessions are told to end: last words
    /// to the clients still connected (XEP-0045 rooms tell each occupant it is out, status
    /// 332). What it delivers is written before each stream closes.
    async fn stopping(&self, _state: &Arc<ServerState>) {}

    /// Once, when the server stops, after the sessions ended: write out what is still held in
    /// memory (queued archive writes).
    async fn stop(&self, _state: &Arc<ServerState>) {}

    /// When the module is a service entity of its own on a subdomain of each hosted domain
    /// (XEP-0030 §4.1: an item of the server's disco#items), e.g. `upload` for
    /// upload.example.org: (that label, the item's name). Every IQ to such a JID, whatever
    /// its namespace (disco included), goes to this module's [`Module::iq`] with `to` set to
    /// it. Asked for each IQ to a subdomain, so it may change once `start` ran.
    fn service(&self) -> Option<(&str, &str)> {
        None
    }

    /// A stanza to the module's service domain or a JID under it, when its spec sets
    /// `service_stanzas`: from a local client, another server or a module, its 'from' checked.
    /// Returns the stanzas for the sender (in order, before anything else the sender is sent
    /// for it); the module sends everything else itself (`crate::router::dispatch`).
    async fn service_stanza(
        &self,
        _state: &Arc<ServerState>,
        _stanza: Element,
        _kind: Kind,
        _from: &Jid,
        _to: &Jid,
    ) -> Vec<Element> {
        Vec::new()
    }

    /// Routes the module serves on the HTTP and HTTPS listeners, asked once when they start.
    fn http_routes(&self) -> Option<axum::Router<Arc<ServerState>>> {
        None
    }

    /// disco#items of an account's bare JID, or disco#info or #items of one of its nodes
    /// (XEP-0030 §3.2, §4.2): the answer, when this module has entries there (PEP nodes).
    /// Asked in module order; the first answer wins.
    async fn account_disco(
        &self,
        _state: &Arc<ServerState>,
        _req: &IqRequest<'_>,
    ) -> Option<IqOutcome> {
        None
    }

    /// XEP-0128 extended information the module adds to the server's disco#info: data forms
    /// of type 'result', each with its own FORM_TYPE (XEP-0157's serverinfo). Asked once,
    /// when the modules are loaded; they are part of the server's XEP-0115 caps.
    fn server_info_forms(&self) -> Vec<xmpp_parsers::data_forms::DataForm> {
        Vec::new()
    }
}
