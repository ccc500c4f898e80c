//! RFC 6121 §2: the roster IQ — get (with §2.6 versioning), set and remove — and roster
//! pushes to every resource that asked for the roster (§2.1.6).

use std::sync::Arc;

use jid::{BareJid, FullJid};
use minidom::Element;
use rxml::xml_ncname;
use weft_storage::{RosterItem, StorageError, Subscription};
use xmpp_parsers::roster::{Ask, Group, Item, Roster};

use super::{error, parts, RosterModule};
use crate::error::StanzaErrorCondition;
use crate::modules::IqOutcome;
use crate::ns;
use crate::state::ServerState;

impl RosterModule {
    /// RFC 6121 §2.1.3 and §2.6.3: the whole roster, or an empty result when the client's
    /// version is current.
    pub(super) async fn get(
        &self,
        state: &ServerState,
        user: &BareJid,
        full: &FullJid,
        query: Roster,
    ) -> Result<IqOutcome, StorageError> {
        self.mark_interested(full);
        let (domain, node) = parts(user);
        let store = &state.storage.roster;
        if let Some(ver) = &query.ver {
            if ver == &store.roster_version(domain, node).await?.to_string() {
                return Ok(IqOutcome::Result(None));
            }
        }
        let (version, items) = store.roster(domain, node).await?;
        let roster = Roster {
            ver: Some(version.to_string()),
            items: items
                .iter()
                .filter(|i| i.listed)
                .filter_map(to_wire)
                .collect(),
        };
        Ok(IqOutcome::Result(Some(with_subscription(roster.into()))))
    }

    /// RFC 6121 §2.3 (add or update) and §2.5 (remove).
    pub(super) async fn set(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        query: Roster,
    ) -> Result<IqOutcome, StorageError> {
        let mut items = query.items.into_iter();
        let (Some(item), None) = (items.next(), items.next()) else {
            return Ok(error(
                StanzaErrorCondition::BadRequest,
                "a roster set carries exactly one item (RFC 6121 §2.3.3)",
            ));
        };
        let contact = item.jid.to_string();
        if item.subscription == xmpp_parsers::roster::Subscription::Remove {
            return self.remove(state, user, &contact).await;
        }
        let max = self.settings.max_name_length;
        if item.name.as_ref().is_some_and(|n| n.chars().count() > max) {
            return Ok(error(
                StanzaErrorCondition::NotAcceptable,
                &format!("the name is longer than {max} characters"),
            ));
        }
        let mut groups: Vec<String> = Vec::with_capacity(item.groups.len());
        for Group(name) in item.groups {
            if name.is_empty() || name.chars().count() > max {
                return Ok(error(
                    StanzaErrorCondition::NotAcceptable,
                    &format!("a group name must have 1 to {max} characters (RFC 6121 §2.3.3)"),
                ));
            }
            if groups.contains(&name) {
                return Ok(error(
                    StanzaErrorCondition::BadRequest,
                    "the same group twice (RFC 6121 §2.3.3)",
                ));
            }
            groups.push(name);
        }
        groups.sort();
        let (domain, node) = parts(user);
        let store = &state.storage.roster;
        // The client's 'subscription' and 'ask' are ignored (RFC 6121 §2.1.2.5, §2.1.2.1):
        // only subscription stanzas change them.
        let mut stored = store
            .roster_item(domain, node, &contact)
            .await?
            .unwrap_or_else(|| RosterItem::new(contact.clone()));
        stored.name = item.name;
        stored.groups = groups;
        stored.listed = true;
        let version = match store
            .put_roster_item(domain, node, &stored, Some(self.settings.max_items))
            .await
        {
            Ok(version) => version,
            Err(StorageError::LimitReached) => {
                return Ok(error(
                    StanzaErrorCondition::NotAllowed,
                    &format!(
                        "the roster is full (at most {} contacts)",
                        self.settings.max_items
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        if let Some(wire) = to_wire(&stored) {
            push(state, self, user, version, wire).await;
        }
        Ok(IqOutcome::Result(None))
    }

    /// RFC 6121 §2.5: the item goes, and with it both subscriptions: the contact is told
    /// (`unsubscribe` for ours to theirs, `unsubscribed` for theirs to ours).
    async fn remove(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        contact: &str,
    ) -> Result<IqOutcome, StorageError> {
        let (domain, node) = parts(user);
        let store = &state.storage.roster;
        let existing = store.roster_item(domain, node, contact).await?;
        let Some(existing) = existing.filter(|i| i.listed) else {
            return Ok(error(
                StanzaErrorCondition::ItemNotFound,
                "no such contact in the roster (RFC 6121 §2.5.3)",
            ));
        };
        let Some(version) = store.remove_roster_item(domain, node, contact).await? else {
            return Ok(error(StanzaErrorCondition::ItemNotFound, "no such contact"));
        };
        if let Ok(jid) = BareJid::new(contact) {
            let removed = Item {
                jid: jid.clone(),
                name: None,
                subscription: xmpp_parsers::roster::Subscription::Remove,
                ask: Ask::None,
                groups: Vec::new(),
                approved: None,
            };
            push(state, self, user, version, removed).await;
            let theirs = matches!(existing.subscription, Subscription::To | Subscription::Both);
            let ours = matches!(
                existing.subscription,
                Subscription::From | Subscription::Both
            );
            if theirs || existing.pending_out {
                send_presence(state, user, &jid, "unsubscribe").await;
            }
            if ours || existing.pending_in {
                send_presence(state, user, &jid, "unsubscribed").await;
            }
        }
        Ok(IqOutcome::Result(None))
    }
}

/// A subscription stanza from the user's bare JID to a contact (RFC 6121 §3), routed like
/// any other: to a local account or over s2s.
pub(super) async fn send_presence(
    state: &Arc<ServerState>,
    user: &BareJid,
    contact: &BareJid,
    kind: &str,
) {
    let presence = Element::builder("presence", ns::CLIENT)
        .attr(xml_ncname!("type").into(), kind)
        .attr(xml_ncname!("from").into(), user.as_str())
        .attr(xml_ncname!("to").into(), contact.as_str())
        .build();
    crate::router::dispatch(state, presence).await;
}

/// A stored item as the wire shows it (RFC 6121 §2.1.2); `None` for a stored contact that is
/// not a valid JID any more.
pub(super) fn to_wire(item: &RosterItem) -> Option<Item> {
    let jid = BareJid::new(&item.contact).ok()?;
    let subscription = match item.subscription {
        Subscription::None => xmpp_parsers::roster::Subscription::None,
        Subscription::To => xmpp_parsers::roster::Subscription::To,
        Subscription::From => xmpp_parsers::roster::Subscription::From,
        Subscription::Both => xmpp_parsers::roster::Subscription::Both,
    };
    Some(Item {
        jid,
        name: item.name.clone(),
        subscription,
        ask: if item.pending_out {
            Ask::Subscribe
        } else {
            Ask::None
        },
        groups: item.groups.iter().cloned().map(Group).collect(),
        // RFC 6121 §3.4: shown only where pre-approval is offered, which it is.
        approved: item.approved.then_some(true),
    })
}

/// A roster push (RFC 6121 §2.1.6) of one item, or of its removal, to every interested
/// resource of the account.
pub(super) async fn push(
    state: &Arc<ServerState>,
    module: &RosterModule,
    user: &BareJid,
    version: u64,
    item: Item,
) {
    let query = with_subscription(
        Roster {
            ver: Some(version.to_string()),
            items: vec![item],
        }
        .into(),
    );
    let Some(resources) = module.interested.get(user) else {
        return;
    };
    for full in resources.iter() {
        let push = Element::builder("iq", ns::CLIENT)
            .attr(xml_ncname!("type").into(), "set")
            .attr(xml_ncname!("id").into(), push_id())
            .attr(xml_ncname!("to").into(), full.as_str())
            .append(query.clone())
            .build();
        let _ = state.sessions.deliver_to_full(full, push);
    }
}

fn push_id() -> String {
    let n: u64 = rand::random();
    format!("push-{n:016x}")
}

/// Every item with its 'subscription', 'none' included: RFC 6121 makes it the default, but
/// clients such as slixmpp 1.17 ignore a pushed item without it.
fn with_subscription(mut query: Element) -> Element {
    for item in query.children_mut() {
        if item.attr("subscription").is_none() {
            crate::stanza::set_attr(item, xml_ncname!("subscription").into(), "none");
        }
    }
    query
}
