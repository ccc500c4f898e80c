//! XEP-0191 Blocking Command: an account's blocklist (JIDs, bare JIDs, domains), kept in its
//! private storage; nothing from a blocked entity reaches the account (messages and IQs are
//! refused, presence dropped), and the account's own stanzas to it are refused with
//! `<blocked/>` (messages, IQ requests) or dropped (presence, its broadcast included). A newly
//! blocked subscriber sees the account go unavailable, an unblocked one gets its presence
//! again (§3.3, §3.4). Changes are pushed to every resource that asked for the list.

use crate::compliance::Claim;
use std::sync::Arc;

use dashmap::DashMap;

use super::account_set::AccountSet;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;

use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, SessionHook, StanzaEvent,
    StanzaHook,
};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::stanza::Kind;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "blocking",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Blocking::default())),
};

pub const NS: &str = "urn:xmpp:blocking";
const NS_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Entries one blocklist may hold (it is checked on every stanza of a blocking account).
const MAX_ITEMS: usize = 1000;
/// The private-storage key of the list.
const KEY: &str = "urn:xmpp:blocking";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    stanza_hooks: &[
        (StanzaHook::MessageFromLocal, Priority::FILTER),
        (StanzaHook::PresenceFromLocal, Priority::FILTER),
        (StanzaHook::MessageToLocal, Priority::FILTER),
        (StanzaHook::PresenceToLocal, Priority::FILTER),
        (StanzaHook::IqToLocal, Priority::FILTER),
        (StanzaHook::MessageNoResource, Priority::FILTER),
        (StanzaHook::IqFromLocal, Priority::FILTER),
        (StanzaHook::PresenceFromAccount, Priority::FILTER),
    ],
    // Bound too: a new session of a full JID starts without the state of one it replaced.
    session_hooks: &[
        (SessionHook::Bound, Priority::NORMAL),
        (SessionHook::Closed, Priority::NORMAL),
    ],
    server_features: &[NS],
    specs: &[Claim::xep(
        191,
        "1.3",
        "modules::blocking: messages, presence and IQs",
    )],
    ..ModuleSpec::named("blocking")
};

#[derive(Default)]
pub struct Blocking {
    /// Accounts whose list is not empty (read at start, kept current): the only ones whose
    /// stanzas are looked at.
    with_list: AccountSet,
    /// The lists of those accounts once read, and of accounts that asked for theirs.
    lists: DashMap<String, Arc<Vec<Jid>>>,
    /// Resources that asked for the list: they get the pushes (XEP-0191 §3.3, §3.4).
    interested: DashMap<String, Vec<FullJid>>,
}

#[async_trait::async_trait]
impl Module for Blocking {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    /// Only accounts with a non-empty list: everyone else's stanzas pass untouched.
    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.with_list.contains(account)
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), weft_storage::StorageError> {
        for (domain, user) in state.storage.private_xml.accounts_with_private(KEY).await? {
            self.with_list.insert(format!("{user}@{domain}"));
        }
        Ok(())
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        let Some(full) = req.local_sender(state).filter(|_| req.from_owner()) else {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        let user = full.to_bare();
        let list = match self.list(state, user.as_str()).await {
            Ok(list) => list,
            Err(e) => return IqOutcome::storage_failed("blocklist", e),
        };
        match (req.payload.name(), req.is_set) {
            ("blocklist", false) => {
                let mut resources = self.interested.entry(user.to_string()).or_default();
                if !resources.contains(&full) {
                    resources.push(full.clone());
                }
                drop(resources);
                IqOutcome::Result(Some(items_element("blocklist", &list)))
            }
            ("block", true) | ("unblock", true) => {
                let block = req.payload.name() == "block";
                let mut jids = Vec::new();
                for item in req.payload.children().filter(|c| c.is("item", NS)) {
                    match item.attr("jid").map(Jid::new) {
                        Some(Ok(jid)) => jids.push(jid),
                        _ => {
                            return IqOutcome::Error(
                                StanzaError::new(StanzaErrorCondition::JidMalformed)
                                    .with_text("an item's 'jid' is not a valid JID"),
                            )
                        }
                    }
                }
                // XEP-0191 §3.2: block names at least one JID; unblock without any is all.
                if block && jids.is_empty() {
                    return IqOutcome::Error(
                        StanzaError::new(StanzaErrorCondition::BadRequest)
                            .with_text("block needs at least one item (XEP-0191 §3.2)"),
                    );
                }
                let mut new: Vec<Jid> = list.as_ref().clone();
                // Unblocking everything lifts every entry.
                let lifted = if !block && jids.is_empty() {
                    list.as_ref().clone()
                } else {
                    jids.clone()
                };
                if block {
                    for jid in &jids {
                        if !new.contains(jid) {
                            new.push(jid.clone());
                        }
                    }
                    if new.len() > MAX_ITEMS {
                        return IqOutcome::error(
                            StanzaErrorCondition::NotAllowed,
                            &format!("a blocklist holds at most {MAX_ITEMS} entries"),
                        );
                    }
                } else if jids.is_empty() {
                    new.clear();
                } else {
                    new.retain(|j| !jids.contains(j));
                }
                if block {
                    // §3.3: the contact sees the user go before the block holds.
                    presence_to(state, &user, &jids, false).await;
                }
                if let Err(e) = self.save(state, &user, new).await {
                    return IqOutcome::storage_failed("blocklist", e);
                }
                if !block {
                    // §3.4: and come back once it is lifted.
                    presence_to(state, &user, &lifted, true).await;
                }
                self.push(state, &user, req.payload.name(), &jids);
                IqOutcome::Result(None)
            }
            _ => IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let stanza = event.stanza;
        let outbound = matches!(
            hook,
            StanzaHook::MessageFromLocal
                | StanzaHook::PresenceFromLocal
                | StanzaHook::IqFromLocal
                | StanzaHook::PresenceFromAccount
        );
        let (account, other) = if outbound {
            (event.from.to_bare(), event.to)
        } else {
            match event.to {
                Some(to) => (to.to_bare(), Some(event.from)),
                None => return Flow::Continue(stanza),
            }
        };
        let Some(other) = other else {
            return Flow::Continue(stanza);
        };
        let list = match self.list(state, account.as_str()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("blocklist lookup failed: {e}");
                return Flow::Continue(stanza);
            }
        };
        if !list.iter().any(|item| matches(item, other)) {
            return Flow::Continue(stanza);
        }
        // Only a request is answered (a message or an IQ get/set): presence, errors and IQ
        // answers are dropped silently.
        let request = match Kind::of(&stanza, ns::CLIENT) {
            Some(Kind::Message) => stanza.attr("type") != Some("error"),
            Some(Kind::Iq) => matches!(stanza.attr("type"), Some("get" | "set")),
            _ => false,
        };
        let refusal = request.then(|| {
            if outbound {
                // §3.5: the user is told why.
                StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("you blocked this recipient (XEP-0191)")
                    .with_app_condition("blocked", NS_ERRORS)
            } else {
                // §3.3: the blocked entity learns nothing beyond a generic error.
                StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
            }
        });
        let replies = refusal
            .and_then(|e| e.reply_to(&stanza))
            .into_iter()
            .collect();
        Flow::Done(replies)
    }

    async fn session(&self, state: &Arc<ServerState>, hook: SessionHook, jid: &FullJid) {
        let account = jid.to_bare().to_string();
        if let Some(mut list) = self.interested.get_mut(&account) {
            list.retain(|r| r != jid);
        }
        self.interested.remove_if(&account, |_, l| l.is_empty());
        if hook != SessionHook::Closed {
            return;
        }
        // The closing session is still listed while the hooks run.
        let others = state.sessions.all_resources(&jid.to_bare());
        if others.iter().all(|(other, _)| other == jid) {
            self.lists.remove(&account);
        }
    }
}

impl Blocking {
    /// The account's list, from the cache or the store.
    async fn list(
        &self,
        state: &ServerState,
        account: &str,
    ) -> Result<Arc<Vec<Jid>>, weft_storage::StorageError> {
        if let Some(list) = self.lists.get(account) {
            return Ok(list.clone());
        }
        let (node, domain) = account.split_once('@').unwrap_or(("", account));
        let stored = state
            .storage
            .private_xml
            .get_private(domain, node, KEY)
            .await?;
        let list: Vec<Jid> = stored
            .and_then(|xml| xml.parse::<Element>().ok())
            .map(|el| {
                el.children()
                    .filter_map(|i| i.attr("jid").and_then(|j| Jid::new(j).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let list = Arc::new(list);
        self.lists.insert(account.to_string(), list.clone());
        Ok(list)
    }

    async fn save(
        &self,
        state: &ServerState,
        user: &BareJid,
        list: Vec<Jid>,
    ) -> Result<(), weft_storage::StorageError> {
        let (domain, node) = (
            user.domain().as_str(),
            user.node().map_or("", |n| n.as_str()),
        );
        let xml = String::from(&items_element("blocklist", &list));
        state
            .storage
            .private_xml
            .set_private(domain, node, KEY, &xml)
            .await?;
        if list.is_empty() {
            self.with_list.remove(user.as_str());
        } else {
            self.with_list.insert(user.to_string());
        }
        self.lists.insert(user.to_string(), Arc::new(list));
        Ok(())
    }

    /// §3.3 / §3.4: the change to every interested resource.
    fn push(&self, state: &ServerState, user: &BareJid, what: &str, jids: &[Jid]) {
        let Some(resources) = self.interested.get(user.as_str()).map(|r| r.clone()) else {
            return;
        };
        let payload = items_element(what, jids);
        for full in resources {
            let n: u64 = rand::random();
            let push = Element::builder("iq", ns::CLIENT)
                .attr(xml_ncname!("type").into(), "set")
                .attr(xml_ncname!("id").into(), format!("block-{n:016x}"))
                .attr(xml_ncname!("to").into(), full.as_str())
                .append(payload.clone())
                .build();
            let _ = state.sessions.deliver_to_full(&full, push);
        }
    }
}

/// The current presence of each of the user's available resources (or their unavailable) to
/// every subscriber in the roster (subscription from or both) that one of `jids` matches:
/// only those had the user's presence (§3.3, §3.4).
async fn presence_to(state: &Arc<ServerState>, user: &BareJid, jids: &[Jid], available: bool) {
    let (domain, node) = crate::modules::api::account_parts(user);
    let roster = match state.storage.roster.roster(domain, node).await {
        Ok((_, roster)) => roster,
        Err(e) => {
            tracing::warn!("roster lookup for the blocklist failed: {e}");
            return;
        }
    };
    let presences = state.sessions.presences(user);
    for item in roster {
        use weft_storage::Subscription::{Both, From};
        let Ok(contact) = Jid::new(&item.contact) else {
            continue;
        };
        if !matches!(item.subscription, From | Both) || !jids.iter().any(|j| matches(j, &contact)) {
            continue;
        }
        for last in presences.iter().filter_map(|p| p.parse::<Element>().ok()) {
            let from = last.attr("from").unwrap_or(user.as_str()).to_owned();
            let mut presence = if available {
                last
            } else {
                Element::builder("presence", ns::CLIENT)
                    .attr(xml_ncname!("type").into(), "unavailable")
                    .build()
            };
            crate::stanza::set_attr(&mut presence, xml_ncname!("from").into(), &from);
            crate::stanza::set_attr(&mut presence, xml_ncname!("to").into(), contact.as_str());
            crate::router::dispatch(state, presence).await;
        }
    }
}

fn items_element(name: &str, jids: &[Jid]) -> Element {
    let mut el = Element::builder(name, NS);
    for jid in jids {
        el = el.append(
            Element::builder("item", NS)
                .attr(xml_ncname!("jid").into(), jid.as_str())
                .build(),
        );
    }
    el.build()
}

/// XEP-0191 §3.3 with XEP-0016 §2.1's JID matching: a full JID matches itself, a bare JID
/// every resource of it, a domain everything at it, and domain/resource that resource.
fn matches(item: &Jid, jid: &Jid) -> bool {
    if item.domain() != jid.domain() {
        return false;
    }
    match (item.node(), item.resource()) {
        (None, None) => true,
        (None, Some(res)) => jid.node().is_none() && jid.resource() == Some(res),
        (Some(node), None) => jid.node() == Some(node),
        (Some(_), Some(_)) => item == jid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_matching() {
        let j = |s: &str| Jid::new(s).unwrap();
        assert!(matches(&j("spam.example"), &j("bot@spam.example/x")));
        assert!(matches(&j("eve@example.org"), &j("eve@example.org/phone")));
        assert!(!matches(&j("eve@example.org"), &j("bob@example.org/phone")));
        assert!(matches(
            &j("eve@example.org/phone"),
            &j("eve@example.org/phone")
        ));
        assert!(!matches(
            &j("eve@example.org/phone"),
            &j("eve@example.org/desk")
        ));
        assert!(!matches(&j("example.org"), &j("eve@example.com")));
    }
}
