//! XEP-0012 Last Activity: the server's uptime for its own JID (§5), and for an account how
//! long ago its last resource went offline (§4), told to the account itself and to its
//! presence subscribers only. (The status of the last unavailable presence is not kept yet.)

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jid::FullJid;
use minidom::Element;
use rxml::xml_ncname;

use super::api::account_parts;
use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, SessionHook};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "last",
    default_enabled: true,
    build: |_| {
        Ok(Arc::new(Last {
            started: Instant::now(),
        }))
    },
};

pub const NS: &str = "jabber:iq:last";
/// The private-storage key of an account's last logout: "<unix seconds> <status>".
const KEY: &str = "jabber:iq:last";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    session_hooks: &[(SessionHook::Closed, Priority::NORMAL)],
    server_features: &[NS],
    account_features: &[NS],
    ..ModuleSpec::named("last")
};

pub struct Last {
    started: Instant,
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

    /// The account's last resource went away: remember when.
    async fn session(&self, state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        let user = jid.to_bare();
        // The closing session is still listed while the hooks run.
        let others = state.sessions.all_resources(&user);
        if !others.iter().all(|(other, _)| other == jid) {
            return;
        }
        let (domain, node) = account_parts(&user);
        let record = format!("{} ", now_secs());
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
