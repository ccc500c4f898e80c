//! XEP-0357 Push Notifications: a client registers an app server (a pubsub service and node)
//! for its account, and while it cannot be reached the server publishes a summary there, which
//! the app server turns into a push to the device.
//!
//! Registrations are kept per account (bounded, persisted, with the session that made them and
//! the publish-options to send along). A notification is due for a message worth storing, or a
//! subscription request, to an account that has no session (offline storage: every
//! registration), and for one handed to a session whose client is away (hibernating under
//! XEP-0198, inactive under XEP-0352: the registrations that session made). Each registration
//! has one sender task while it has work: what happens while a notification awaits its answer,
//! or before `min_interval` has passed, is coalesced into the next one. Routing never waits
//! for an app server. An error answer other than `wait` removes the registration.

use crate::compliance::Claim;
use crate::stanza::bare_part;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use jid::{FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use serde::Deserialize;
use tokio::sync::oneshot;
use weft_config::{ConfigError, HumanDuration};
use weft_storage::{PushRegistration, StorageError};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};

use super::account_set::AccountSet;
use super::api::account_parts;
use super::{
    Away, Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, Section,
    SessionHook, StanzaEvent, StanzaHook,
};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "push",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_DATA: &str = "jabber:x:data";
const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const SUMMARY: &str = "urn:xmpp:push:summary";
/// The prefix of the ids of notification IQs, so that other answers pass by quickly.
const ID_PREFIX: &str = "push-";
/// Stanzas remembered per registration to count a stanza seen twice once.
const RECENT: usize = 32;

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    stanza_hooks: &[
        // Before offline storage takes the message (which ends the hook).
        (StanzaHook::MessageNoResource, Priority::NORMAL),
        // Before the roster module takes a subscription request.
        (StanzaHook::PresenceToLocal, Priority(-10)),
        // The app server's answers, addressed to the account's bare JID.
        (StanzaHook::IqToLocal, Priority::NORMAL),
    ],
    // The user is back: what was counted was delivered.
    session_hooks: &[
        (SessionHook::Bound, Priority::NORMAL),
        (SessionHook::Resumed, Priority::NORMAL),
    ],
    account_features: &[NS],
    away_deliveries: true,
    specs: &[Claim::xep(
        357,
        "0.4.1",
        "modules::push: summary notifications for offline, hibernated and inactive sessions, \
         publish-options, coalesced and rate-limited",
    )],
    ..ModuleSpec::named("push")
};

/// `[modules.push]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Registrations one account may hold; one more is refused.
    pub max_registrations: usize,
    /// Whether notifications carry the last message's body (`last-message-body`): it goes to
    /// the app server and from there to the push provider.
    pub include_body: bool,
    /// Whether notifications carry the last message's sender (`last-message-sender`).
    pub include_sender: bool,
    /// The shortest time between two notifications to one registration; what happens in
    /// between goes out, counted, with the next.
    pub min_interval: HumanDuration,
    /// How long an app server has to answer a notification.
    pub reply_timeout: HumanDuration,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            max_registrations: 5,
            include_body: false,
            include_sender: true,
            min_interval: HumanDuration(Duration::from_secs(5)),
            reply_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: PushSettings = section.parse()?;
    if settings.max_registrations == 0 {
        return Err(vec![section.error(
            "max_registrations",
            "must be at least 1 (turn the module off with enabled = false)",
        )]);
    }
    if settings.reply_timeout.0.is_zero() {
        return Err(vec![section.error("reply_timeout", "must be above 0")]);
    }
    Ok(Arc::new(Push {
        inner: Arc::new(Inner {
            settings,
            accounts: AccountSet::default(),
            registrations: DashMap::new(),
            awaiting: DashMap::new(),
            queues: Mutex::new(HashMap::new()),
        }),
    }))
}

pub struct Push {
    inner: Arc<Inner>,
}

/// One registration, as kept in memory.
#[derive(Clone, Debug)]
struct Registration {
    service: Jid,
    node: String,
    /// The full JID of the session that made it.
    enabled_by: String,
    publish_options: Option<Element>,
}

impl Registration {
    fn from_stored(account: &str, stored: PushRegistration) -> Option<Registration> {
        let Ok(service) = Jid::new(&stored.service) else {
            tracing::warn!(%account, service = stored.service, "ignoring a push registration with a bad JID");
            return None;
        };
        let publish_options = stored
            .publish_options
            .and_then(|o| o.parse::<Element>().ok());
        Some(Registration {
            service,
            node: stored.node,
            enabled_by: stored.enabled_by,
            publish_options,
        })
    }
}

/// (account's bare JID, app server's JID, node).
type Key = (String, String, String);

/// What is due to one registration.
#[derive(Default)]
struct Queue {
    /// Messages since the user was last back (a session bound or resumed).
    messages: u32,
    /// Subscription requests since then.
    subscriptions: u32,
    last_sender: Option<String>,
    last_body: Option<String>,
    /// Something happened since the last notification went out.
    due: bool,
    /// A task is sending this registration's notifications.
    running: bool,
    /// (from, id) of the stanzas counted lately: a stanza seen twice (held while inactive and
    /// then left unacknowledged by a lost connection, or kept by a hibernated session and then
    /// stored offline) counts once.
    recent: VecDeque<(String, String)>,
}

/// What a notification says (XEP-0357 §5, `urn:xmpp:push:summary`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Summary {
    messages: u32,
    subscriptions: u32,
    last_sender: Option<String>,
    last_body: Option<String>,
}

/// Something worth a notification.
enum Event {
    Message {
        sender: Option<String>,
        body: Option<String>,
    },
    Subscription,
}

struct Inner {
    settings: PushSettings,
    /// Accounts with at least one registration: everyone else's stanzas pass untouched.
    accounts: AccountSet,
    /// Registrations by account (bare JID), as stored.
    registrations: DashMap<String, Vec<Registration>>,
    /// Notifications awaiting their answer, by IQ id: the app server's JID and who waits.
    awaiting: DashMap<String, (Jid, oneshot::Sender<Element>)>,
    queues: Mutex<HashMap<Key, Queue>>,
}

#[async_trait::async_trait]
impl Module for Push {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.inner.accounts.contains(account)
    }

    /// Its hook acts on subscription requests only, which no room sends (sessions it wakes
    /// for are hibernated, and those take their stanzas through their task anyway).
    fn concerns_room_copies(&self, _kind: crate::stanza::Kind, _account: &str) -> bool {
        false
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        for (domain, user, stored) in state.storage.push.all_push_registrations().await? {
            let account = format!("{user}@{domain}");
            if let Some(r) = Registration::from_stored(&account, stored) {
                self.inner
                    .registrations
                    .entry(account.clone())
                    .or_default()
                    .push(r);
                self.inner.accounts.insert(account);
            }
        }
        Ok(())
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        let enable = match req.payload.name() {
            "enable" => true,
            "disable" => false,
            _ => return IqOutcome::NotMine,
        };
        // XEP-0357 §5, §6: the account's own client, to its own account.
        let Some(full) = req.local_sender(state).filter(|_| req.from_owner()) else {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        if !req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        let service = match req.payload.attr("jid").map(Jid::new) {
            Some(Ok(jid)) => jid,
            Some(Err(_)) => {
                return IqOutcome::error(StanzaErrorCondition::JidMalformed, "'jid' is no JID")
            }
            None => {
                return IqOutcome::error(
                    StanzaErrorCondition::BadRequest,
                    "the app server's 'jid' is required",
                )
            }
        };
        let node = req.payload.attr("node").filter(|n| !n.is_empty());
        if enable {
            let Some(node) = node else {
                return IqOutcome::error(
                    StanzaErrorCondition::BadRequest,
                    "the 'node' at the app server is required",
                );
            };
            self.enable(state, &full, service, node, req.payload).await
        } else {
            self.disable(state, &full, &service, node).await
        }
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        match hook {
            StanzaHook::IqToLocal => return self.inner.answer(event),
            StanzaHook::MessageNoResource => {
                // Offline storage keeps it (or refuses it past its quota): every registration
                // of the account hears of it.
                if let (Some(to), Some(what)) = (event.to, important(&event.stanza)) {
                    let account = bare_part(to.as_str());
                    self.inner
                        .notify(state, account, None, what, dedupe_key(&event.stanza));
                }
            }
            // A subscription request for an account with no session: the roster keeps it
            // for the next login. One with sessions reaches them (and their away hooks).
            StanzaHook::PresenceToLocal if event.stanza.attr("type") == Some("subscribe") => {
                if let Some(bare) = event.to.map(|to| to.to_bare()) {
                    if state.sessions.all_resources(&bare).is_empty() {
                        let account = bare.as_str();
                        self.inner
                            .notify(state, account, None, Event::Subscription, None);
                    }
                }
            }
            _ => {}
        }
        Flow::Continue(event.stanza)
    }

    fn away_delivery(
        &self,
        state: &Arc<ServerState>,
        jid: &FullJid,
        stanza: &Element,
        _away: Away,
    ) {
        let account = bare_part(jid.as_str());
        if !self.inner.accounts.contains(account) {
            return;
        }
        if let Some(what) = important(stanza) {
            // The registrations this session made: it is this device that cannot see it.
            self.inner
                .notify(state, account, Some(jid.as_str()), what, dedupe_key(stanza));
        }
    }

    async fn session(&self, _state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        let account = bare_part(jid.as_str());
        if self.inner.accounts.contains(account) {
            self.inner.back(account);
        }
    }
}

impl Push {
    async fn enable(
        &self,
        state: &Arc<ServerState>,
        full: &FullJid,
        service: Jid,
        node: &str,
        payload: &Element,
    ) -> IqOutcome {
        // §5: an optional publish-options form, sent along with each notification.
        let options = payload.get_child("x", NS_DATA).cloned();
        if let Some(form) = &options {
            if DataForm::try_from(form.clone()).is_err() || form.attr("type") != Some("submit") {
                return IqOutcome::error(
                    StanzaErrorCondition::BadRequest,
                    "publish-options must be a data form of type 'submit'",
                );
            }
        }
        let account = full.to_bare();
        let (domain, user) = account_parts(&account);
        let stored = PushRegistration {
            service: service.to_string(),
            node: node.to_string(),
            enabled_by: full.to_string(),
            publish_options: options.as_ref().map(String::from),
        };
        let max = self.inner.settings.max_registrations;
        match state
            .storage
            .push
            .put_push(domain, user, &stored, Some(max))
            .await
        {
            Ok(()) => {}
            Err(StorageError::LimitReached) => {
                return IqOutcome::error(
                    StanzaErrorCondition::PolicyViolation,
                    &format!("at most {max} push registrations per account"),
                )
            }
            Err(e) => return IqOutcome::storage_failed("push registration", e),
        }
        let registration = Registration {
            service,
            node: node.to_string(),
            enabled_by: full.to_string(),
            publish_options: options,
        };
        let account = account.to_string();
        {
            let mut list = self.inner.registrations.entry(account.clone()).or_default();
            list.retain(|r| !(r.service == registration.service && r.node == registration.node));
            list.push(registration);
        }
        self.inner.accounts.insert(account);
        tracing::debug!(jid = %full, "push notifications enabled");
        IqOutcome::Result(None)
    }

    async fn disable(
        &self,
        state: &Arc<ServerState>,
        full: &FullJid,
        service: &Jid,
        node: Option<&str>,
    ) -> IqOutcome {
        let account = full.to_bare();
        let (domain, user) = account_parts(&account);
        let service_str = service.to_string();
        if let Err(e) = state
            .storage
            .push
            .remove_push(domain, user, &service_str, node)
            .await
        {
            return IqOutcome::storage_failed("push registration", e);
        }
        self.inner.forget(account.as_str(), service, node);
        tracing::debug!(jid = %full, "push notifications disabled");
        IqOutcome::Result(None)
    }
}

impl Inner {
    fn lock_queues(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Queue>> {
        // Counters and flags only: a panic cannot leave them inconsistent in a harmful way.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `what` for the account's registrations (those `only` the session of that full
    /// JID made, if given) and starts a sender for those without one. Never waits.
    fn notify(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        account: &str,
        only: Option<&str>,
        what: Event,
        dedupe: Option<(String, String)>,
    ) {
        let targets: Vec<Key> = match self.registrations.get(account) {
            Some(list) => list
                .iter()
                .filter(|r| only.is_none_or(|jid| r.enabled_by == jid))
                .map(|r| (account.to_string(), r.service.to_string(), r.node.clone()))
                .collect(),
            None => return,
        };
        let mut queues = self.lock_queues();
        for key in targets {
            let queue = queues.entry(key.clone()).or_default();
            if let Some(seen) = &dedupe {
                if queue.recent.contains(seen) {
                    continue;
                }
                if queue.recent.len() == RECENT {
                    queue.recent.pop_front();
                }
                queue.recent.push_back(seen.clone());
            }
            match &what {
                Event::Message { sender, body } => {
                    queue.messages = queue.messages.saturating_add(1);
                    queue.last_sender = sender.clone();
                    queue.last_body = body.clone();
                }
                Event::Subscription => {
                    queue.subscriptions = queue.subscriptions.saturating_add(1);
                }
            }
            queue.due = true;
            if !queue.running {
                queue.running = true;
                tokio::spawn(self.clone().send_loop(state.clone(), key));
            }
        }
    }

    /// The user is back (a session of the account bound or resumed): nothing counted so far is
    /// news any more, and nothing still due goes out.
    fn back(&self, account: &str) {
        let mut queues = self.lock_queues();
        queues.retain(|(a, _, _), queue| {
            if a != account {
                return true;
            }
            queue.messages = 0;
            queue.subscriptions = 0;
            queue.last_sender = None;
            queue.last_body = None;
            queue.due = false;
            queue.running
        });
    }

    /// Sends one registration's notifications while they are due, one at a time, at most one
    /// per `min_interval`.
    async fn send_loop(self: Arc<Self>, state: Arc<ServerState>, key: Key) {
        loop {
            let summary = {
                let mut queues = self.lock_queues();
                let Some(queue) = queues.get_mut(&key) else {
                    return;
                };
                if !queue.due || state.shutdown.is_cancelled() {
                    queue.running = false;
                    return;
                }
                queue.due = false;
                Summary {
                    messages: queue.messages,
                    subscriptions: queue.subscriptions,
                    last_sender: queue.last_sender.clone(),
                    last_body: queue.last_body.clone(),
                }
            };
            let Some(registration) = self.registration(&key) else {
                self.lock_queues().remove(&key);
                return;
            };
            let sent_at = tokio::time::Instant::now();
            match self.publish(&state, &key.0, &registration, &summary).await {
                Answer::Refused(why) => {
                    tracing::info!(
                        account = key.0,
                        service = key.1,
                        node = key.2,
                        "the app server refused a notification ({why}): push registration removed"
                    );
                    self.unregister(&state, &key, &registration).await;
                    return;
                }
                Answer::Accepted | Answer::Later | Answer::None => {}
            }
            let next = sent_at + self.settings.min_interval.0;
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = state.shutdown.cancelled() => {}
            }
        }
    }

    /// The registration of `key`, if it is still there.
    fn registration(&self, (account, service, node): &Key) -> Option<Registration> {
        self.registrations.get(account).and_then(|list| {
            list.iter()
                .find(|r| r.service.as_str() == service && &r.node == node)
                .cloned()
        })
    }

    /// Publishes one notification and waits for the app server's answer.
    async fn publish(
        &self,
        state: &Arc<ServerState>,
        account: &str,
        registration: &Registration,
        summary: &Summary,
    ) -> Answer {
        let id = format!("{ID_PREFIX}{:016x}", rand::random::<u64>());
        let iq = notification(account, registration, &id, summary, &self.settings);
        let (tx, rx) = oneshot::channel();
        self.awaiting
            .insert(id.clone(), (registration.service.clone(), tx));
        crate::router::dispatch(state, iq).await;
        let answer = tokio::select! {
            answer = tokio::time::timeout(self.settings.reply_timeout.0, rx) => {
                answer.ok().and_then(Result::ok)
            }
            _ = state.shutdown.cancelled() => None,
        };
        self.awaiting.remove(&id);
        let Some(answer) = answer else {
            tracing::debug!(account, service = %registration.service, "no answer to a push notification");
            return Answer::None;
        };
        if answer.attr("type") == Some("result") {
            return Answer::Accepted;
        }
        let error = answer.get_child("error", ns::CLIENT);
        let kind = error.and_then(|e| e.attr("type")).unwrap_or("cancel");
        let condition = error
            .and_then(|e| {
                e.children()
                    .find(|c| c.has_ns(ns::STANZAS) && c.name() != "text")
            })
            .map_or("undefined-condition", |c| c.name());
        if kind == "wait" {
            tracing::debug!(account, service = %registration.service, "push notification deferred: {condition}");
            return Answer::Later;
        }
        Answer::Refused(format!("{kind}/{condition}"))
    }

    /// The app server's answer to a notification (an IQ to the account's bare JID): taken
    /// when it answers one of ours and comes from its addressee.
    fn answer(&self, event: StanzaEvent<'_>) -> Flow {
        let stanza = event.stanza;
        let is_answer = matches!(stanza.attr("type"), Some("result" | "error"));
        let id = stanza.attr("id").filter(|id| id.starts_with(ID_PREFIX));
        let (true, Some(id)) = (is_answer, id) else {
            return Flow::Continue(stanza);
        };
        let taken = self
            .awaiting
            .remove_if(id, |_, (service, _)| service == event.from);
        match taken {
            Some((_, (_, waiting))) => {
                let _ = waiting.send(stanza);
                Flow::Done(Vec::new())
            }
            None => Flow::Continue(stanza),
        }
    }

    /// Removes a registration the app server refused, from the store and from memory.
    async fn unregister(&self, state: &Arc<ServerState>, key: &Key, registration: &Registration) {
        let (account, service, node) = key;
        if let Some((user, domain)) = account.split_once('@') {
            if let Err(e) = state
                .storage
                .push
                .remove_push(domain, user, service, Some(node))
                .await
            {
                tracing::warn!("removing a push registration failed: {e}");
            }
        }
        self.forget(account, &registration.service, Some(node));
    }

    /// Drops the account's registrations at `service` (of `node`, or all) from memory.
    fn forget(&self, account: &str, service: &Jid, node: Option<&str>) {
        let gone = |r: &Registration| &r.service == service && node.is_none_or(|n| r.node == n);
        if let Some(mut list) = self.registrations.get_mut(account) {
            list.retain(|r| !gone(r));
        }
        if self
            .registrations
            .remove_if(account, |_, list| list.is_empty())
            .is_some()
        {
            self.accounts.remove(account);
        }
        let service = service.to_string();
        self.lock_queues().retain(|(a, s, n), _| {
            !(a == account && *s == service && node.is_none_or(|node| n == node))
        });
    }
}

/// What became of a notification.
enum Answer {
    Accepted,
    /// An error of type 'wait': tried again with the next one.
    Later,
    /// Any other error: the registration goes.
    Refused(String),
    /// No answer in time.
    None,
}

/// Whether a stanza for an account that cannot see it is worth a notification: a message
/// worth storing (not a carbon copy: the resource it was for had it), or a subscription
/// request.
fn important(stanza: &Element) -> Option<Event> {
    match stanza.name() {
        "message" => {
            if !crate::stanza::worth_storing(stanza)
                || stanza.children().any(|c| c.has_ns(NS_CARBONS))
            {
                return None;
            }
            Some(Event::Message {
                sender: stanza.attr("from").map(str::to_string),
                body: stanza
                    .get_child("body", ns::CLIENT)
                    .map(|b| b.text())
                    .filter(|b| !b.is_empty()),
            })
        }
        "presence" if stanza.attr("type") == Some("subscribe") => Some(Event::Subscription),
        _ => None,
    }
}

/// A stanza's (from, id), when it has an id: how the same stanza is known again.
fn dedupe_key(stanza: &Element) -> Option<(String, String)> {
    let id = stanza.attr("id")?;
    Some((
        stanza.attr("from").unwrap_or("").to_string(),
        id.to_string(),
    ))
}

/// The notification IQ (XEP-0357 §5): a pubsub publish of the summary to the registration's
/// node, with its publish-options, from the account's bare JID.
fn notification(
    account: &str,
    registration: &Registration,
    id: &str,
    summary: &Summary,
    settings: &PushSettings,
) -> Element {
    let mut fields = vec![Field::text_single(
        "message-count",
        &summary.messages.to_string(),
    )];
    if summary.subscriptions > 0 {
        fields.push(Field::text_single(
            "pending-subscription-count",
            &summary.subscriptions.to_string(),
        ));
    }
    if settings.include_sender {
        if let Some(sender) = &summary.last_sender {
            fields.push(Field::text_single("last-message-sender", sender));
        }
    }
    if settings.include_body {
        if let Some(body) = &summary.last_body {
            fields.push(Field::text_single("last-message-body", body));
        }
    }
    let form = DataForm::new(DataFormType::Submit, SUMMARY, fields);
    let item = Element::builder("item", NS_PUBSUB)
        .append(
            Element::builder("notification", NS)
                .append(Element::from(form))
                .build(),
        )
        .build();
    let mut pubsub = Element::builder("pubsub", NS_PUBSUB).append(
        Element::builder("publish", NS_PUBSUB)
            .attr(xml_ncname!("node").into(), registration.node.as_str())
            .append(item)
            .build(),
    );
    if let Some(options) = &registration.publish_options {
        pubsub = pubsub.append(
            Element::builder("publish-options", NS_PUBSUB)
                .append(options.clone())
                .build(),
        );
    }
    Element::builder("iq", ns::CLIENT)
        .attr(xml_ncname!("type").into(), "set")
        .attr(xml_ncname!("id").into(), id)
        .attr(xml_ncname!("from").into(), account)
        .attr(xml_ncname!("to").into(), registration.service.as_str())
        .append(pubsub.build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn what_is_worth_a_notification() {
        let yes = [
            "<message xmlns='jabber:client' from='b@x/1' type='chat'><body>hi</body></message>",
            "<message xmlns='jabber:client' from='b@x/1'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
            "<presence xmlns='jabber:client' from='b@x' type='subscribe'/>",
        ];
        for xml in yes {
            assert!(important(&el(xml)).is_some(), "{xml}");
        }
        let no = [
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>x</body></message>",
            "<message xmlns='jabber:client' type='error'><body>x</body></message>",
            "<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'/></received></message>",
            "<presence xmlns='jabber:client' from='b@x/1'/>",
            "<presence xmlns='jabber:client' from='b@x' type='subscribed'/>",
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        ];
        for xml in no {
            assert!(important(&el(xml)).is_none(), "{xml}");
        }
    }

    #[test]
    fn the_summary_carries_the_body_only_when_configured() {
        let registration = Registration {
            service: Jid::new("push.example").unwrap(),
            node: "n1".into(),
            enabled_by: "a@x/phone".into(),
            publish_options: Some(el("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>s3</value></field></x>")),
        };
        let summary = Summary {
            messages: 2,
            subscriptions: 0,
            last_sender: Some("b@x/1".into()),
            last_body: Some("hello".into()),
        };
        let mut settings = PushSettings::default();
        let iq = notification("a@x", &registration, "push-1", &summary, &settings);
        let text = String::from(&iq);
        assert!(
            text.contains("urn:xmpp:push:summary") && text.contains("b@x/1"),
            "{text}"
        );
        assert!(
            !text.contains("hello") && !text.contains("pending-subscription"),
            "{text}"
        );
        assert!(
            text.contains("<publish-options><x") && text.contains("s3"),
            "{text}"
        );
        settings.include_body = true;
        settings.include_sender = false;
        let text = String::from(&notification(
            "a@x",
            &registration,
            "push-1",
            &summary,
            &settings,
        ));
        assert!(text.contains("hello") && !text.contains("b@x/1"), "{text}");
    }
}
