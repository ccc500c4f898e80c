//! XEP-0160 offline messages: a chat or normal message for an account none of whose resources
//! takes it is kept, stamped with XEP-0203 delay, and delivered once, in arrival order, with
//! the account's first available presence of non-negative priority. A per-account quota
//! refuses more with a stanza error to the sender.

use crate::compliance::Claim;
use std::sync::Arc;

use dashmap::DashSet;
use minidom::Element;
use serde::Deserialize;
use weft_config::ConfigError;
use weft_storage::StorageError;

use super::api::account_parts;
use super::{Flow, Module, ModuleDef, ModuleSpec, Priority, Section, StanzaEvent, StanzaHook};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "offline",
    default_enabled: true,
    spec: &SPEC,
    build,
};

const NS_OFFLINE: &str = "msgoffline";

static SPEC: ModuleSpec = ModuleSpec {
    stanza_hooks: &[
        (StanzaHook::MessageNoResource, Priority::FALLBACK),
        // Before the roster module takes the presence for its broadcast: the stored
        // messages go out with the first presence.
        (StanzaHook::PresenceFromLocal, Priority(-10)),
    ],
    server_features: &[NS_OFFLINE],
    specs: &[Claim::xep(
        160,
        "1.0.1",
        "modules::offline: per-account quota, delivered once in order with delay",
    )],
    ..ModuleSpec::named("offline")
};

/// `[modules.offline]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineSettings {
    /// Messages kept per account; beyond it senders get `<service-unavailable/>`.
    pub max_messages: usize,
}

impl Default for OfflineSettings {
    fn default() -> Self {
        OfflineSettings { max_messages: 1000 }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: OfflineSettings = section.parse()?;
    if settings.max_messages == 0 {
        return Err(vec![section.error(
            "max_messages",
            "must be at least 1 (turn the module off with enabled = false)",
        )]);
    }
    Ok(Arc::new(Offline {
        settings,
        waiting: DashSet::new(),
    }))
}

pub struct Offline {
    settings: OfflineSettings,
    /// Accounts (bare JIDs) with messages waiting, read from the store at start and kept
    /// current: a presence of any other account does not ask the store at all.
    waiting: DashSet<String>,
}

#[async_trait::async_trait]
impl Module for Offline {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let result = match hook {
            StanzaHook::MessageNoResource => self.keep(state, event).await,
            StanzaHook::PresenceFromLocal => self.hand_over(state, event).await,
            _ => return Flow::Continue(event.stanza),
        };
        result.unwrap_or_else(|(e, flow)| {
            tracing::warn!("offline storage failed: {e}");
            flow
        })
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        for (domain, user) in state.storage.offline.accounts_with_offline().await? {
            self.waiting.insert(format!("{user}@{domain}"));
        }
        Ok(())
    }
}

type Failed = (StorageError, Flow);

impl Offline {
    /// A message no resource took (RFC 6121 §8.5.2.2.1, XEP-0160 §3).
    async fn keep(&self, state: &ServerState, event: StanzaEvent<'_>) -> Result<Flow, Failed> {
        let StanzaEvent { stanza, to, .. } = event;
        // XEP-0085 §5.6: a chat state for someone offline is neither kept nor bounced.
        if crate::stanza::is_chat_state_only(&stanza) {
            return Ok(Flow::Done(Vec::new()));
        }
        let Some(to) = to.filter(|_| crate::stanza::worth_storing(&stanza)) else {
            return Ok(Flow::Continue(stanza));
        };
        let user = to.to_bare();
        let (domain, node) = account_parts(&user);
        let mut kept = stanza.clone();
        crate::stanza::stamp_delay(&mut kept, domain, std::time::SystemTime::now());
        let max = self.settings.max_messages;
        match state
            .storage
            .offline
            .store_offline(domain, node, &String::from(&kept), Some(max))
            .await
        {
            Ok(_) => {
                self.waiting.insert(user.to_string());
                Ok(Flow::Done(Vec::new()))
            }
            Err(StorageError::LimitReached) => {
                let error = StanzaError::new(StanzaErrorCondition::ServiceUnavailable).with_text(
                    format!("the recipient is offline and has {max} messages waiting already"),
                );
                Ok(Flow::Done(error.reply_to(&stanza).into_iter().collect()))
            }
            Err(e) => Err((e, Flow::Continue(stanza))),
        }
    }

    /// A client's broadcast presence: the first available one of non-negative priority
    /// (XEP-0160 §3) gets the stored messages.
    async fn hand_over(&self, state: &ServerState, event: StanzaEvent<'_>) -> Result<Flow, Failed> {
        let StanzaEvent {
            stanza,
            from,
            to,
            to_sender,
            ..
        } = event;
        let available = stanza.attr("type").is_none() && to.is_none();
        let priority = stanza
            .get_child("priority", ns::CLIENT)
            .and_then(|p| p.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let Ok(full) = from.clone().try_into_full() else {
            return Ok(Flow::Continue(stanza));
        };
        let user = full.to_bare();
        if !available || priority < 0 || self.waiting.remove(user.as_str()).is_none() {
            return Ok(Flow::Continue(stanza));
        }
        let (domain, node) = account_parts(&user);
        let store = &state.storage.offline;
        let waiting = match store.offline_messages(domain, node).await {
            Ok(w) => w,
            Err(e) => {
                // Still waiting: the next presence tries again.
                self.waiting.insert(user.to_string());
                return Err((e, Flow::Continue(stanza)));
            }
        };
        if waiting.is_empty() {
            return Ok(Flow::Continue(stanza));
        }
        let mut ids = Vec::with_capacity(waiting.len());
        for message in waiting {
            // As addressed (XEP-0160 §3: a message to the bare JID keeps it).
            match message.stanza.parse::<Element>() {
                Ok(el) => to_sender.push(el),
                Err(e) => tracing::warn!(%user, "dropping an unreadable offline message: {e}"),
            }
            ids.push(message.id);
        }
        if let Err(e) = store.remove_offline(domain, node, &ids).await {
            return Err((e, Flow::Continue(stanza)));
        }
        Ok(Flow::Continue(stanza))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn what_is_kept_and_archived() {
        assert!(crate::stanza::worth_storing(&msg("<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>")));
        assert!(!crate::stanza::worth_storing(&msg("<message xmlns='jabber:client' type='chat'><stanza-id xmlns='urn:xmpp:sid:0' id='1' by='a@b'/></message>")));
        assert!(crate::stanza::worth_storing(&msg(
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
        )));
        assert!(crate::stanza::worth_storing(&msg(
            "<message xmlns='jabber:client'><body>hi</body></message>"
        )));
        assert!(crate::stanza::worth_storing(&msg("<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>")));
        let state = msg("<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(!crate::stanza::worth_storing(&state) && crate::stanza::is_chat_state_only(&state));
        assert!(!crate::stanza::worth_storing(&msg(
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>"
        )));
        assert!(!crate::stanza::worth_storing(&msg(
            "<message xmlns='jabber:client' type='groupchat'><body>x</body></message>"
        )));
        assert!(!crate::stanza::worth_storing(&msg("<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>")));
    }
}
