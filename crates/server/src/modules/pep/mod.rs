//! XEP-0163 Personal Eventing Protocol: every account is a pubsub service (XEP-0060, the
//! subset PEP clients use) at its bare JID.
//!
//! - **Publishing** is the owner's alone; a node is created on its first publish with the
//!   publish-options as its configuration, and later publish-options are preconditions
//!   (§7.1.5). Items are stored per node up to its `max_items` (`max` = the service limit).
//! - **Who hears of it**: the owner's own available resources and the contacts the node's
//!   access model admits (presence: subscription 'from' or 'both'; open: the same
//!   contacts, but anyone may read; whitelist: the owner alone), each only when its XEP-0115
//!   caps name `NODE+notify` (filtered notifications, §4.2).
//! - **Last items on presence** (§4.3.2): when a contact's available presence reaches an
//!   account with nodes (or one of its own resources comes online), the newest item of each
//!   node it wants goes to that full JID; once per caps string, not at every presence change.
//!   When its caps are not known yet, that happens when they are ([`Pep::caps_learned`]).
//!
//! Contacts' presence is tracked only for accounts with at least one node, so the presence
//! fan-out of accounts without nodes pays nothing here. Remote contacts whose presence
//! arrived before the account's first node hear of it after their next presence.

pub mod avatar;
pub mod bookmarks;
mod node_config;
mod requests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::{DashMap, DashSet};
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use serde::Deserialize;
use weft_config::ConfigError;
use weft_storage::{PepItem, StorageError, Subscription};

use super::api::account_parts;
use super::caps::{Caps, CapsKey, Learned};
use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, Section, SessionHook,
    StanzaEvent, StanzaHook,
};
use crate::compliance::Claim;
use crate::ns;
use crate::state::ServerState;
pub use node_config::{Access, NodeConfig};
pub use requests::Publication;

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

pub const DEF: ModuleDef = ModuleDef {
    name: "pep",
    default_enabled: true,
    spec: &SPEC,
    build,
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS_PUBSUB, NS_OWNER],
    stanza_hooks: &[
        // After caps (-20) noted the sender's string, before the roster module broadcasts.
        (StanzaHook::PresenceFromLocal, Priority(-10)),
        (StanzaHook::PresenceToLocal, Priority(-10)),
    ],
    session_hooks: &[(SessionHook::Closed, Priority::NORMAL)],
    account_identities: &[("pubsub", "pep")],
    account_features: &[
        NS_PUBSUB,
        "http://jabber.org/protocol/pubsub#access-open",
        "http://jabber.org/protocol/pubsub#access-presence",
        "http://jabber.org/protocol/pubsub#access-whitelist",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#auto-subscribe",
        "http://jabber.org/protocol/pubsub#config-node",
        "http://jabber.org/protocol/pubsub#create-and-configure",
        "http://jabber.org/protocol/pubsub#create-nodes",
        "http://jabber.org/protocol/pubsub#delete-items",
        "http://jabber.org/protocol/pubsub#delete-nodes",
        "http://jabber.org/protocol/pubsub#filtered-notifications",
        "http://jabber.org/protocol/pubsub#item-ids",
        "http://jabber.org/protocol/pubsub#last-published",
        "http://jabber.org/protocol/pubsub#persistent-items",
        "http://jabber.org/protocol/pubsub#presence-access",
        "http://jabber.org/protocol/pubsub#presence-notifications",
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#purge-nodes",
        "http://jabber.org/protocol/pubsub#retract-items",
        "http://jabber.org/protocol/pubsub#retrieve-default",
        "http://jabber.org/protocol/pubsub#retrieve-items",
        // XEP-0398: avatars published either way are converted.
        "urn:xmpp:pep-vcard-conversion:0",
        // XEP-0402 §5.3 and XEP-0411: legacy bookmarks kept in step.
        "urn:xmpp:bookmarks:1#compat",
        "urn:xmpp:bookmarks:1#compat-pep",
        "urn:xmpp:bookmarks-conversion:0",
    ],
    specs: &[
        Claim::xep(163, "1.2.2", "modules::pep: auto-create, publish-options, +notify through XEP-0115 caps (local and remote contacts), last item on presence"),
        Claim::xep(60, "1.26.0", "modules::pep: the PEP subset (publish with options, retract, items, create, configure, default, delete, purge); no explicit subscriptions, no member lists").partial(),
        Claim::xep(223, "1.1.1", "modules::pep: whitelist nodes with persistent items through publish-options"),
        Claim::xep(172, "1.1", "modules::pep: the nick node like any other"),
        Claim::xep(84, "1.1.4", "modules::pep: avatar data and metadata nodes"),
        Claim::xep(398, "1.0.0", "modules::pep::avatar with modules::vcard: PEP avatars to vCard photos and back, photo hashes in presence"),
        Claim::xep(402, "1.2.0", "modules::pep::bookmarks: native bookmarks, kept in step with private XML and legacy PEP bookmarks"),
        Claim::xep(48, "1.2", "modules::pep::bookmarks: through private XML storage and the legacy PEP node, both converted to XEP-0402"),
        Claim::xep(411, "1.1.0", "modules::pep::bookmarks: legacy PEP and private XML bookmarks converted"),
    ],
    ..ModuleSpec::named("pep")
};

/// `[modules.pep]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepSettings {
    /// Most items one node keeps; `max_items = "max"` means this many.
    pub max_items: usize,
    /// Most nodes one account has.
    pub max_nodes: usize,
    /// Largest item payload, in bytes of its XML.
    pub max_item_size: weft_config::ByteSize,
    /// Contacts' available resources remembered per account with nodes (their last items
    /// were sent; they get notifications).
    pub max_contacts_online: usize,
}

impl Default for PepSettings {
    fn default() -> Self {
        PepSettings {
            max_items: 256,
            max_nodes: 1000,
            max_item_size: weft_config::ByteSize::kib(256),
            max_contacts_online: 10_000,
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: PepSettings = section.parse()?;
    let mut problems = Vec::new();
    for (key, value) in [
        ("max_items", settings.max_items),
        ("max_nodes", settings.max_nodes),
        ("max_contacts_online", settings.max_contacts_online),
    ] {
        if value == 0 {
            problems.push(section.error(key, "must be at least 1"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(Pep {
        settings,
        owners: DashSet::new(),
        online: DashMap::new(),
        next_id: AtomicU64::new(1),
    }))
}

pub struct Pep {
    settings: PepSettings,
    /// Accounts (normalised bare JIDs) with at least one node: the only ones whose
    /// contacts' presence is read.
    owners: DashSet<String>,
    /// Per account with nodes: the available resources (its own and its contacts') whose
    /// presence reached it, with the caps string their last items went out under (`None`:
    /// not yet, their caps are unknown).
    online: DashMap<BareJid, HashMap<FullJid, Option<CapsKey>>>,
    next_id: AtomicU64,
}

/// What a notification carries: the `<event/>`'s child and the node it is about.
struct Event {
    node: String,
    payload: Element,
}

#[async_trait::async_trait]
impl Module for Pep {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.owners.contains(account)
    }

    /// A room occupant's presence is no contact coming online (it has no subscription to the
    /// owner), nor a source of caps for the owner's notifications.
    fn concerns_room_copies(&self, _kind: crate::stanza::Kind, _account: &str) -> bool {
        false
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        for (domain, username) in state.storage.pep.accounts_with_pep().await? {
            self.owners.insert(format!("{username}@{domain}"));
        }
        Ok(())
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        requests::handle(self, state, req).await
    }

    async fn account_disco(
        &self,
        state: &Arc<ServerState>,
        req: &IqRequest<'_>,
    ) -> Option<IqOutcome> {
        requests::disco(state, req).await
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let StanzaEvent {
            stanza, from, to, ..
        } = event;
        let available = match stanza.attr("type") {
            None => true,
            Some("unavailable") => false,
            _ => return Flow::Continue(stanza),
        };
        let Ok(entity) = from.clone().try_into_full() else {
            return Flow::Continue(stanza);
        };
        let owner = match hook {
            // One of the owner's own resources, broadcasting.
            StanzaHook::PresenceFromLocal if to.is_none() => entity.to_bare(),
            StanzaHook::PresenceToLocal => match to {
                Some(to) => to.to_bare(),
                None => return Flow::Continue(stanza),
            },
            _ => return Flow::Continue(stanza),
        };
        if !available {
            self.went_away(&owner, &entity);
            return Flow::Continue(stanza);
        }
        if hook == StanzaHook::PresenceToLocal && !state.is_local_domain(entity.domain().as_str()) {
            // Local clients' caps are read by the caps module itself.
            if let Some(caps) = state.modules.find::<Caps>() {
                let asker = Jid::from(owner.clone());
                caps.observe_remote(state, &stanza, from, asker).await;
            }
        }
        self.came_online(state, &owner, entity).await;
        Flow::Continue(stanza)
    }

    async fn session(&self, _state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        if self.owners.contains(jid.to_bare().as_str()) {
            self.went_away(&jid.to_bare(), jid);
        }
    }
}

impl Pep {
    fn went_away(&self, owner: &BareJid, entity: &FullJid) {
        if let Some(mut online) = self.online.get_mut(owner) {
            online.remove(entity);
        }
    }

    /// An available presence of `entity` reached `owner` (or is its own): it gets the last
    /// items it wants, once per caps string.
    async fn came_online(&self, state: &Arc<ServerState>, owner: &BareJid, entity: FullJid) {
        let caps = state.modules.find::<Caps>();
        let as_jid = Jid::from(entity.clone());
        let key = caps.and_then(|c| c.key_of(&as_jid));
        let features = caps.and_then(|c| c.features_of(&as_jid));
        {
            let mut online = self.online.entry(owner.clone()).or_default();
            let delivered = online.get(&entity).cloned().flatten();
            if features.is_some() && delivered.is_some() && delivered == key {
                return;
            }
            if !online.contains_key(&entity) && online.len() >= self.settings.max_contacts_online {
                return;
            }
            online.insert(
                entity.clone(),
                features.is_some().then(|| key.clone()).flatten(),
            );
        }
        if let Some(features) = features {
            self.send_last_items(state, owner, &entity, &features).await;
        }
    }

    /// The caps module learnt features (of a verification string, or of one entity): those
    /// holding them whose last items waited for them get them now.
    pub async fn caps_learned(&self, state: &Arc<ServerState>, learned: &Learned) {
        let Some(caps) = state.modules.find::<Caps>() else {
            return;
        };
        let mut due = Vec::new();
        for mut entry in self.online.iter_mut() {
            let owner = entry.key().clone();
            for (entity, delivered) in entry.value_mut().iter_mut() {
                let jid = Jid::from(entity.clone());
                let key = caps.key_of(&jid);
                let concerned = match learned {
                    Learned::Key(learned) => key.as_ref() == Some(learned),
                    Learned::Entity(learned) => *learned == jid,
                };
                if concerned && *delivered != key {
                    *delivered = key;
                    due.push((owner.clone(), entity.clone()));
                }
            }
        }
        for (owner, entity) in due {
            if let Some(features) = caps.features_of(&Jid::from(entity.clone())) {
                self.send_last_items(state, &owner, &entity, &features)
                    .await;
            }
        }
    }

    /// §4.3.2: the newest item of each of `owner`'s nodes that `entity` wants (+notify) and
    /// may see.
    async fn send_last_items(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        entity: &FullJid,
        features: &std::collections::BTreeSet<String>,
    ) {
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        let (last, nodes) = match (
            store.pep_last_items(domain, user).await,
            store.pep_nodes(domain, user).await,
        ) {
            (Ok(last), Ok(nodes)) => (last, nodes),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("PEP storage failed reading {owner}'s last items: {e}");
                return;
            }
        };
        let configs: HashMap<String, NodeConfig> = nodes
            .into_iter()
            .map(|(node, config)| (node, NodeConfig::decode(&config)))
            .collect();
        let contact = entity.to_bare();
        let mut subscribed = None;
        for (node, item) in last {
            let Some(config) = configs.get(&node) else {
                continue;
            };
            if config.send_last_published_item != node_config::SendLast::OnSubAndPresence
                || !config.deliver_notifications
                || !features.contains(&format!("{node}+notify"))
            {
                continue;
            }
            if contact != *owner && config.access_model != Access::Open {
                if config.access_model == Access::Whitelist {
                    continue;
                }
                if subscribed.is_none() {
                    subscribed = Some(is_subscriber(state, owner, &contact).await);
                }
                if subscribed != Some(true) {
                    continue;
                }
            }
            let event = items_event(&node, &item, config.deliver_payloads);
            self.send_event(state, owner, &Jid::from(entity.clone()), event)
                .await;
        }
    }

    /// Whoever hears of a change to `node` of `owner`: its own available resources and, but
    /// for whitelist nodes, the available resources of the contacts subscribed to its
    /// presence; each only with `node+notify` in its caps.
    async fn audience(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        node: &str,
        config: &NodeConfig,
    ) -> Vec<FullJid> {
        let mut candidates: Vec<FullJid> = state
            .sessions
            .all_resources(owner)
            .into_iter()
            .filter(|(jid, _)| state.sessions.presence_of(jid).is_some())
            .map(|(jid, _)| jid)
            .collect();
        if config.access_model != Access::Whitelist {
            let (domain, user) = account_parts(owner);
            let roster = match state.storage.roster.roster(domain, user).await {
                Ok((_, roster)) => roster,
                Err(e) => {
                    tracing::warn!("roster storage failed for {owner}'s PEP notification: {e}");
                    Vec::new()
                }
            };
            let subscribers: HashSet<BareJid> = roster
                .iter()
                .filter(|item| shares_presence(item.subscription))
                .filter_map(|item| BareJid::new(&item.contact).ok())
                .collect();
            for contact in &subscribers {
                if state.is_local_domain(contact.domain().as_str()) {
                    candidates.extend(
                        state
                            .sessions
                            .all_resources(contact)
                            .into_iter()
                            .filter(|(jid, _)| state.sessions.presence_of(jid).is_some())
                            .map(|(jid, _)| jid),
                    );
                }
            }
            if let Some(online) = self.online.get(owner) {
                candidates.extend(
                    online
                        .keys()
                        .filter(|e| !state.is_local_domain(e.domain().as_str()))
                        .filter(|e| subscribers.contains(&e.to_bare()))
                        .cloned(),
                );
            }
        }
        let Some(caps) = state.modules.find::<Caps>() else {
            return Vec::new();
        };
        let wanted = format!("{node}+notify");
        let mut seen = HashSet::new();
        candidates
            .into_iter()
            .filter(|jid| seen.insert(jid.clone()))
            .filter(|jid| {
                caps.features_of(&Jid::from(jid.clone()))
                    .is_some_and(|f| f.contains(&wanted))
            })
            .collect()
    }

    /// Sends `event` about `owner`'s node to everyone who hears of it.
    async fn notify(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        config: &NodeConfig,
        event: Event,
    ) {
        if !config.deliver_notifications {
            return;
        }
        for jid in self.audience(state, owner, &event.node, config).await {
            let one = Event {
                node: event.node.clone(),
                payload: event.payload.clone(),
            };
            self.send_event(state, owner, &Jid::from(jid), one).await;
        }
    }

    /// XEP-0060 §7.1.2.1: a headline message from the owner's bare JID.
    async fn send_event(&self, state: &Arc<ServerState>, owner: &BareJid, to: &Jid, event: Event) {
        let id = format!("pep-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let message = Element::builder("message", ns::CLIENT)
            .attr(xml_ncname!("from").into(), owner.as_str())
            .attr(xml_ncname!("to").into(), to.as_str())
            .attr(xml_ncname!("type").into(), "headline")
            .attr(xml_ncname!("id").into(), id)
            .append(
                Element::builder("event", NS_EVENT)
                    .append(event.payload)
                    .build(),
            )
            .build();
        crate::router::dispatch(state, message).await;
    }

    /// What the server does after a client's publish: avatars to the vCard, bookmarks from
    /// and to their legacy forms.
    async fn convert_published(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        node: &str,
        payload: Option<&Element>,
    ) {
        match (node, payload) {
            (avatar::AVATAR_METADATA, Some(payload)) => {
                self.avatar_published(state, owner, payload).await
            }
            (bookmarks::BOOKMARKS2, _) => self.bookmarks_changed(state, owner).await,
            (bookmarks::LEGACY, Some(payload)) => {
                self.legacy_bookmarks_stored(state, owner, payload).await
            }
            _ => {}
        }
    }

    /// The account has a node now: its contacts' presence is followed from here on.
    fn has_nodes(&self, owner: &BareJid) {
        self.owners.insert(owner.as_str().to_string());
    }

    /// The account's last node went.
    fn has_no_nodes(&self, owner: &BareJid) {
        self.owners.remove(owner.as_str());
        self.online.remove(owner);
    }
}

/// Whether `contact` is subscribed to `owner`'s presence ('from' or 'both' on the owner's
/// roster).
async fn is_subscriber(state: &Arc<ServerState>, owner: &BareJid, contact: &BareJid) -> bool {
    let (domain, user) = account_parts(owner);
    match state
        .storage
        .roster
        .roster_item(domain, user, contact.as_str())
        .await
    {
        Ok(item) => item.is_some_and(|i| shares_presence(i.subscription)),
        Err(e) => {
            tracing::warn!("roster storage failed checking {contact} on {owner}'s roster: {e}");
            false
        }
    }
}

fn shares_presence(s: Subscription) -> bool {
    matches!(s, Subscription::From | Subscription::Both)
}

/// `<items node='N'><item id='X'>payload</item></items>` for an event.
fn items_event(node: &str, item: &PepItem, with_payload: bool) -> Event {
    let mut el =
        Element::builder("item", NS_EVENT).attr(xml_ncname!("id").into(), item.id.as_str());
    if with_payload && !item.payload.is_empty() {
        if let Ok(payload) = item.payload.parse::<Element>() {
            el = el.append(payload);
        }
    }
    Event {
        node: node.to_string(),
        payload: Element::builder("items", NS_EVENT)
            .attr(xml_ncname!("node").into(), node)
            .append(el.build())
            .build(),
    }
}
