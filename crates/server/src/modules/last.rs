//! XEP-0012 Last Activity: the server's uptime for its own JID (§5), and for an account how
//! long ago its last resource went offline (§4), told to the account itself and to its
//! presence subscribers only, with the status of its last unavailable presence (§4).

use crate::compliance::Claim;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use jid::FullJid;
use minidom::Element;
use rxml::xml_ncname;

use super::api::account_parts;
use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, SessionHook, StanzaEvent,
    StanzaHook,
};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "last",
    default_enabled: true,
    spec: &SPEC,
    build: |_| {
        Ok(Arc::new(Last {
            started: Instant::now(),
            statuses: DashMap::new(),
        }))
    },
};

pub const NS: &str = "jabber:iq:last";
/// The private-storage key of an account's last logout: "<unix seconds> <status>".
const KEY: &str = "jabber:iq:last";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    // Before the roster module broadcasts (and takes) the presence.
    stanza_hooks: &[(StanzaHook::PresenceFromLocal, Priority(-10))],
    session_hooks: &[(SessionHook::Closed, Priority::NORMAL)],
    server_features: &[NS],
    account_features: &[NS],
    specs: &[Claim::xep(12, "2.0", "modules::last")],
    ..ModuleSpec::named("last")
};

pub struct Last {
    started: Instant,
    /// The status text of each session's unavailable broadcast, until the session ends.
    statuses: DashMap<String, String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn query(seconds: u64, status: &str) -> Element {
    let mut q =
        Element::builder("query", NS).attr(xml_ncname!("seconds").into(), seconds.to_string());
    if !status.is_empty() {
        q = q.append(status);
    }
    q.build()
}

#[async_trait::async_trait]
impl Module for Last {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        // §5: the server's own JID answers with its uptime.
        if req.to.node().is_none() {
            return IqOutcome::Result(Some(query(self.started.elapsed().as_secs(), "")));
        }
        let user = req.to.to_bare();
        let (domain, node) = account_parts(&user);
        // §4: only for the account itself and those allowed to see its presence.
        if !req.from_owner() {
            let contact = req.from.to_bare();
            let item = state
                .storage
                .roster
                .roster_item(domain, node, contact.as_str())
                .await;
            let subscribed = matches!(
                item,
                Ok(Some(ref i)) if matches!(i.subscription, weft_storage::Subscription::From | weft_storage::Subscription::Both)
            );
            if !subscribed {
                return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
            }
        }
        // Online: no idle time to tell at the account level (§4: 0 when a resource is on).
        if !state.sessions.all_resources(&user).is_empty() {
            return IqOutcome::Result(Some(query(0, "")));
        }
        match state
            .storage
            .private_xml
            .get_private(domain, node, KEY)
            .await
        {
            Ok(Some(text)) => {
                let (when, status) = text.split_once(' ').unwrap_or((&text, ""));
                let when: u64 = when.parse().unwrap_or(0);
                IqOutcome::Result(Some(query(now_secs().saturating_sub(when), status)))
            }
            // Never logged out since records began.
            Ok(None) => IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound)),
            Err(e) => {
                tracing::warn!("last activity lookup failed: {e}");
                IqOutcome::Error(StanzaError::new(StanzaErrorCondition::InternalServerError))
            }
        }
    }

    /// A session's unavailable broadcast: its status is the account's if it is the last.
    async fn stanza(
        &self,
        _state: &Arc<ServerState>,
        _hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let stanza = event.stanza;
        if event.to.is_none() && stanza.attr("type") == Some("unavailable") {
            let status = stanza
                .get_child("status", crate::ns::CLIENT)
                .map(|s| s.text())
                .unwrap_or_default();
            // One line: the record is "<seconds> <status>".
            let status: String = status.chars().filter(|c| *c != '\n').take(1024).collect();
            self.statuses.insert(event.from.to_string(), status);
        } else if event.to.is_none() && stanza.attr("type").is_none() {
            // Available again: an earlier status is no longer the last word.
            self.statuses.remove(event.from.as_str());
        }
        Flow::Continue(stanza)
    }

    /// The account's last resource went away: remember when, and what it said.
    async fn session(&self, state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        let status = self
            .statuses
            .remove(jid.as_str())
            .map(|(_, s)| s)
            .unwrap_or_default();
        let user = jid.to_bare();
        // The closing session is still listed while the hooks run.
        let others = state.sessions.all_resources(&user);
        if !others.iter().all(|(other, _)| other == jid) {
            return;
        }
        let (domain, node) = account_parts(&user);
        let record = format!("{} {status}", now_secs());
        if let Err(e) = state
            .storage
            .private_xml
            .set_private(domain, node, KEY, &record)
            .await
        {
            tracing::warn!(%jid, "recording last activity failed: {e}");
        }
    }
}
