//! XEP-0280 Message Carbons: a resource that enables carbons gets a copy of the messages its
//! account's other resources send (`<sent/>`) and of those addressed to another of its
//! resources (`<received/>`), so every device shows the whole conversation.

use crate::compliance::Claim;
use std::sync::Arc;

use dashmap::DashMap;
use jid::{FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;

use super::account_set::AccountSet;
use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, SessionHook, StanzaEvent,
    StanzaHook,
};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "carbons",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Carbons::default())),
};

pub const NS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0045: a private message in a room carries this; the room sends the copies itself.
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    stanza_hooks: &[
        // After filters such as blocking: a refused message has no copies.
        (StanzaHook::MessageFromLocal, Priority::NORMAL),
        (StanzaHook::MessageToLocal, Priority::NORMAL),
    ],
    // Bound too: a new session of a full JID starts without the state of one it replaced.
    session_hooks: &[
        (SessionHook::Bound, Priority::NORMAL),
        (SessionHook::Closed, Priority::NORMAL),
    ],
    server_features: &[NS],
    specs: &[Claim::xep(280, "1.0.1", "modules::carbons")],
    ..ModuleSpec::named("carbons")
};

/// The resources that enabled carbons, by account (bare JID).
#[derive(Default)]
pub struct Carbons {
    enabled: DashMap<String, Vec<FullJid>>,
    /// The accounts of `enabled`, for the fast-path question.
    accounts: AccountSet,
}

#[async_trait::async_trait]
impl Module for Carbons {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    /// Only accounts with a carbons-enabled resource: everyone else's messages take the
    /// fast path.
    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.accounts.contains(account)
    }

    /// §6: groupchat messages are never copied (see `eligible`).
    fn concerns_room_copies(&self, _kind: crate::stanza::Kind, _account: &str) -> bool {
        false
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        let enable = match req.payload.name() {
            "enable" => true,
            "disable" => false,
            _ => return IqOutcome::NotMine,
        };
        // XEP-0280 §4: a set from the client's own session, to its own account.
        let Some(full) = req.local_sender(state).filter(|_| req.from_owner()) else {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        if !req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        if enable {
            let account = full.to_bare().to_string();
            let mut list = self.enabled.entry(account.clone()).or_default();
            if !list.contains(&full) {
                list.push(full);
            }
            drop(list);
            self.accounts.insert(account);
        } else {
            self.forget(&full);
        }
        IqOutcome::Result(None)
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let stanza = event.stanza;
        if !eligible(&stanza) {
            return Flow::Continue(stanza);
        }
        match hook {
            // §6: copies of what one resource sends, to the account's other resources.
            StanzaHook::MessageFromLocal => {
                let from = event.from;
                self.copy(state, from.to_bare().as_str(), Some(from), "sent", &stanza);
            }
            // §6: a message addressed to one resource (a bare-JID message reaches every
            // resource anyway), copied to the others while that resource is online.
            StanzaHook::MessageToLocal => {
                let addressed = event.to.and_then(|t| t.clone().try_into_full().ok());
                if let Some(to) = addressed.filter(|t| state.sessions.is_bound(t)) {
                    let to_jid = Jid::from(to.clone());
                    self.copy(
                        state,
                        to.to_bare().as_str(),
                        Some(&to_jid),
                        "received",
                        &stanza,
                    );
                }
            }
            _ => {}
        }
        Flow::Continue(stanza)
    }

    async fn session(&self, _state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        self.forget(jid);
    }
}

impl Carbons {
    fn forget(&self, full: &FullJid) {
        let bare = full.to_bare().to_string();
        if let Some(mut list) = self.enabled.get_mut(&bare) {
            list.retain(|r| r != full);
        }
        if self
            .enabled
            .remove_if(&bare, |_, list| list.is_empty())
            .is_some()
        {
            self.accounts.remove(&bare);
        }
    }

    /// Sends `<message><{direction}><forwarded>…</forwarded></{direction}></message>` to every
    /// carbons-enabled resource of `account` except `except`.
    fn copy(
        &self,
        state: &ServerState,
        account: &str,
        except: Option<&Jid>,
        direction: &str,
        message: &Element,
    ) {
        let Some(targets) = self.enabled.get(account).map(|l| l.clone()) else {
            return;
        };
        for target in targets {
            if except.is_some_and(|e| e.as_str() == target.as_str()) {
                continue;
            }
            let mut wrapper = Element::builder("message", ns::CLIENT)
                .attr(xml_ncname!("from").into(), account)
                .attr(xml_ncname!("to").into(), target.as_str());
            if let Some(kind) = message.attr("type") {
                wrapper = wrapper.attr(xml_ncname!("type").into(), kind);
            }
            let copy = wrapper
                .append(
                    Element::builder(direction, NS)
                        .append(
                            Element::builder("forwarded", NS_FORWARD)
                                .append(message.clone())
                                .build(),
                        )
                        .build(),
                )
                .build();
            let _ = state.sessions.deliver_to_full(&target, copy);
        }
    }
}

/// XEP-0280 §6: chat messages, and normal ones with a body; not when marked `<private/>` or
/// `<no-copy/>`, not errors, group chat or headlines, not carbons themselves, not MUC private
/// messages (the room copies those).
fn eligible(message: &Element) -> bool {
    let chat = match message.attr("type") {
        Some("chat") => true,
        None | Some("normal") => message.has_child("body", ns::CLIENT),
        _ => false,
    };
    chat && !message.has_child("private", NS)
        && !message.has_child("no-copy", NS_HINTS)
        && !message.has_child("sent", NS)
        && !message.has_child("received", NS)
        && !message.has_child("x", NS_MUC_USER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_copied() {
        let m = |xml: &str| xml.parse::<Element>().unwrap();
        assert!(eligible(&m("<message xmlns='jabber:client' type='chat'/>")));
        assert!(eligible(&m(
            "<message xmlns='jabber:client'><body>x</body></message>"
        )));
        assert!(!eligible(&m("<message xmlns='jabber:client'/>")));
        assert!(!eligible(&m(
            "<message xmlns='jabber:client' type='headline'><body>x</body></message>"
        )));
        assert!(!eligible(&m("<message xmlns='jabber:client' type='chat'><private xmlns='urn:xmpp:carbons:2'/></message>")));
        assert!(!eligible(&m("<message xmlns='jabber:client' type='chat'><no-copy xmlns='urn:xmpp:hints'/></message>")));
    }
}
