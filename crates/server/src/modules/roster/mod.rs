//! RFC 6121, the IM core: rosters (§2, `items`), presence subscriptions (§3 and Appendix A,
//! `subscription`) and presence (§4, `presence`). One module: subscriptions change roster
//! items, and presence follows subscriptions.

mod items;
mod presence;
pub mod subscription;

use crate::compliance::Claim;
use std::sync::Arc;

use dashmap::DashMap;
use jid::{BareJid, FullJid, Jid};
use serde::Deserialize;
use weft_config::ConfigError;
use xmpp_parsers::roster::Roster;

use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, Section, SessionHook,
    StanzaEvent, StanzaHook,
};
use crate::error::StanzaErrorCondition;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "roster",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "jabber:iq:roster";
/// RFC 6121 §2.6.1: the stream feature announcing roster versioning.
const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";
/// RFC 6121 §3.4.1: the stream feature announcing subscription pre-approval.
const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    stanza_hooks: &[
        (StanzaHook::PresenceFromLocal, Priority::NORMAL),
        (StanzaHook::PresenceToLocal, Priority::NORMAL),
    ],
    session_hooks: &[(SessionHook::Closed, Priority::NORMAL)],
    stream_features: &[("ver", NS_ROSTERVER), ("sub", NS_PRE_APPROVAL)],
    specs: &[
        Claim::rfc(6121, "modules::roster: rosters with versioning and pre-approval, the subscription states of Appendix A, presence, probes, directed presence; local and federated contacts"),
    ],
    ..ModuleSpec::named("roster")
};

/// `[modules.roster]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RosterSettings {
    /// Most contacts one roster may hold; adding more gets `<not-allowed/>`.
    pub max_items: usize,
    /// Longest contact name or group name, in characters (RFC 6121 §2.3.3:
    /// `<not-acceptable/>` beyond it).
    pub max_name_length: usize,
    /// Most subscriber JIDs kept in memory, over all online accounts, to send presence
    /// broadcasts without reading rosters (about 100 bytes each); past it rosters are read.
    pub presence_cache_contacts: usize,
}

impl Default for RosterSettings {
    fn default() -> Self {
        RosterSettings {
            max_items: 5000,
            max_name_length: 1023,
            presence_cache_contacts: 1_000_000,
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: RosterSettings = section.parse()?;
    if settings.max_items == 0 {
        return Err(vec![section.error("max_items", "must be at least 1")]);
    }
    Ok(Arc::new(RosterModule::new(settings)))
}

/// The module: its settings and what it knows of the sessions online.
pub struct RosterModule {
    settings: RosterSettings,
    /// RFC 6121 §2.1.6: the "interested resources" of each account, which get roster pushes.
    interested: DashMap<BareJid, Vec<FullJid>>,
    /// The presence each session sent and whom it sent directed presence to.
    presence: presence::Sessions,
    /// The presence subscribers of online accounts.
    subscribers: presence::Subscribers,
}

impl RosterModule {
    pub fn new(settings: RosterSettings) -> Self {
        RosterModule {
            subscribers: presence::Subscribers::new(settings.presence_cache_contacts),
            settings,
            interested: DashMap::new(),
            presence: presence::Sessions::default(),
        }
    }

    fn mark_interested(&self, full: &FullJid) {
        let mut resources = self.interested.entry(full.to_bare()).or_default();
        if !resources.contains(full) {
            resources.push(full.clone());
        }
    }

    fn forget_session(&self, full: &FullJid) {
        let bare = full.to_bare();
        if let Some(mut resources) = self.interested.get_mut(&bare) {
            resources.retain(|r| r != full);
        }
        self.interested.remove_if(&bare, |_, r| r.is_empty());
    }
}

#[async_trait::async_trait]
impl Module for RosterModule {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    /// Its hook acts on subscriptions and probes, which no room sends to its occupants.
    fn concerns_room_copies(&self, _kind: crate::stanza::Kind, _account: &str) -> bool {
        false
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" {
            return IqOutcome::NotMine;
        }
        // RFC 6121 §2.1.5: only the account itself reads and changes its roster.
        let (Some(user), Some(full)) = (account_of(req.to), req.local_sender(state)) else {
            return error(StanzaErrorCondition::Forbidden, "not your roster");
        };
        if !req.from_owner() {
            return error(StanzaErrorCondition::Forbidden, "not your roster");
        }
        let query = match Roster::try_from(req.payload.clone()) {
            Ok(q) => q,
            Err(e) => return error(StanzaErrorCondition::BadRequest, &format!("{e}")),
        };
        let result = if req.is_set {
            self.set(state, &user, query).await
        } else {
            self.get(state, &user, &full, query).await
        };
        result.unwrap_or_else(|e| IqOutcome::storage_failed("roster", e))
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let result = match hook {
            StanzaHook::PresenceFromLocal => self.presence_from_local(state, event).await,
            StanzaHook::PresenceToLocal => self.presence_to_local(state, event).await,
            _ => return Flow::Continue(event.stanza),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!("roster storage failed: {e}");
            Flow::Done(Vec::new())
        })
    }

    async fn session(&self, state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        self.forget_session(jid);
        if let Err(e) = self.session_closed(state, jid).await {
            tracing::warn!(%jid, "presence on logout failed: {e}");
        }
        // Hooks run before the registry forgets the session: alone there, it was the last.
        let user = jid.to_bare();
        if state
            .sessions
            .all_resources(&user)
            .iter()
            .all(|(r, _)| r == jid)
        {
            self.subscribers.forget(&user);
        }
    }
}

use crate::modules::api::account_parts as parts;

fn error(condition: StanzaErrorCondition, text: &str) -> IqOutcome {
    IqOutcome::error(condition, text)
}

fn account_of(jid: &Jid) -> Option<BareJid> {
    jid.node().is_some().then(|| jid.to_bare())
}
