//! XEP-0402 PEP native bookmarks, kept in step with the legacy XEP-0048 forms (§5.3 "compat";
//! the older XEP-0411 conversion): a `storage:bookmarks` document in XEP-0049 private XML
//! storage or on the legacy PEP node of that name.
//!
//! The `urn:xmpp:bookmarks:1` node (one item per room, id = the room's JID) is the truth:
//! - a legacy document stored by a client (either way) is turned into items: new and changed
//!   rooms published, rooms missing from it retracted (extensions of items kept);
//! - a private XML read of `storage:bookmarks` is made from the items (with the document's
//!   URL bookmarks, which XEP-0402 has no place for);
//! - a change to the items rewrites the legacy PEP node when an account has one.

use std::sync::Arc;

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::bookmarks::{Conference as LegacyConference, Storage};
use xmpp_parsers::bookmarks2::Conference;

use super::node_config::{Access, MaxItems, SendLast};
use super::requests::Publication;
use super::{NodeConfig, Pep};
use crate::modules::api::account_parts;
use crate::state::ServerState;

pub const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
pub const LEGACY: &str = "storage:bookmarks";

/// XEP-0402 §3: private, every room an item, not sent on presence.
fn bookmarks2_config() -> NodeConfig {
    NodeConfig {
        access_model: Access::Whitelist,
        max_items: MaxItems::Max,
        send_last_published_item: SendLast::Never,
        ..NodeConfig::default()
    }
}

/// XEP-0048 §3.3 (with XEP-0223): one private item.
fn legacy_config() -> NodeConfig {
    NodeConfig {
        access_model: Access::Whitelist,
        ..NodeConfig::default()
    }
}

impl Pep {
    /// The XEP-0402 items as (room, conference), or `None` when the account has no such node.
    async fn rooms(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
    ) -> Option<Vec<(BareJid, Element)>> {
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        match store.pep_node(domain, user, BOOKMARKS2).await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("PEP storage failed reading {owner}'s bookmarks: {e}");
                return None;
            }
        }
        let items = match store.pep_items(domain, user, BOOKMARKS2, None).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("PEP storage failed reading {owner}'s bookmarks: {e}");
                return None;
            }
        };
        Some(
            items
                .into_iter()
                .filter_map(|item| {
                    let room = BareJid::new(&item.id).ok()?;
                    Some((room, item.payload.parse::<Element>().ok()?))
                })
                .collect(),
        )
    }

    /// A private XML read of `storage:bookmarks`: the document made from the XEP-0402 items
    /// (with `stored`'s URLs), or `None` to serve the stored document as it is (no items).
    pub async fn legacy_bookmarks(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        stored: Option<&Element>,
    ) -> Option<Element> {
        let rooms = self.rooms(state, owner).await?;
        let mut storage = Storage::new();
        for (room, payload) in rooms {
            let Ok(conference) = Conference::try_from(payload) else {
                continue;
            };
            storage.conferences.push(LegacyConference {
                autojoin: conference.autojoin,
                jid: room,
                name: conference.name,
                nick: conference.nick,
                password: conference.password,
            });
        }
        if let Some(Ok(old)) = stored.map(|s| Storage::try_from(s.clone())) {
            storage.urls = old.urls;
        }
        Some(storage.into())
    }

    /// A client stored a legacy document (private XML, or the legacy PEP node): the XEP-0402
    /// items follow it.
    pub async fn legacy_bookmarks_stored(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        document: &Element,
    ) {
        let Ok(storage) = Storage::try_from(document.clone()) else {
            tracing::debug!("{owner} stored legacy bookmarks that do not parse; not converted");
            return;
        };
        let existing = self.rooms(state, owner).await.unwrap_or_default();
        let publisher = Jid::from(owner.clone());
        let mut kept = Vec::new();
        for legacy in storage.conferences {
            let (room, mut conference) = legacy.into_bookmarks2();
            let old = existing.iter().find(|(r, _)| *r == room).map(|(_, p)| p);
            // Extensions have no legacy form: an item keeps its own.
            if let Some(Ok(old)) = old.map(|p| Conference::try_from(p.clone())) {
                conference.extensions = old.extensions;
            }
            let payload: Element = conference.into();
            kept.push(room.clone());
            if old.is_some_and(|o| String::from(o) == String::from(&payload)) {
                continue;
            }
            let publication = Publication {
                node: BOOKMARKS2,
                id: Some(room.to_string()),
                payload: Some(payload),
                options: None,
                on_behalf: Some(bookmarks2_config()),
            };
            if let Err(e) = self.publish(state, owner, &publisher, publication).await {
                tracing::warn!(
                    "converting {owner}'s legacy bookmark of {room} failed: {:?}",
                    e.condition
                );
            }
        }
        let gone: Vec<String> = existing
            .into_iter()
            .filter(|(room, _)| !kept.contains(room))
            .map(|(room, _)| room.to_string())
            .collect();
        if !gone.is_empty() {
            if let Err(e) = self.retract(state, owner, BOOKMARKS2, &gone, true).await {
                tracing::warn!(
                    "retracting {owner}'s removed bookmarks failed: {:?}",
                    e.condition
                );
            }
        }
    }

    /// The XEP-0402 items changed: the legacy PEP node, when the account has one, is
    /// rewritten from them (private XML is made from them when read).
    pub(super) async fn bookmarks_changed(&self, state: &Arc<ServerState>, owner: &BareJid) {
        let (domain, user) = account_parts(owner);
        match state.storage.pep.pep_node(domain, user, LEGACY).await {
            Ok(Some(_)) => {}
            _ => return,
        }
        let Some(document) = self.legacy_bookmarks(state, owner, None).await else {
            return;
        };
        let publication = Publication {
            node: LEGACY,
            id: Some("current".into()),
            payload: Some(document),
            options: None,
            on_behalf: Some(legacy_config()),
        };
        if let Err(e) = self
            .publish(state, owner, &Jid::from(owner.clone()), publication)
            .await
        {
            tracing::warn!(
                "rewriting {owner}'s legacy PEP bookmarks failed: {:?}",
                e.condition
            );
        }
    }
}
