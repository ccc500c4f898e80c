//! XEP-0352 Client State Indication: while a client says it is inactive (a phone in a
//! pocket), presence updates and chat states for it are held back, the newest per sender
//! only, and everything held goes out, in order, with the next stanza that matters (a
//! message with content, an IQ, a subscription request) or when the client is active again.

use crate::compliance::Claim;
use std::sync::{Arc, Mutex, Weak};

use jid::FullJid;
use minidom::Element;
use serde::Deserialize;
use weft_config::ConfigError;

use super::{Away, Module, ModuleDef, ModuleSpec, Priority, Section, SessionHook};
use crate::session::registry::DeliveryFilter;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "csi",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "urn:xmpp:csi:0";

static SPEC: ModuleSpec = ModuleSpec {
    stream_features: &[("csi", NS)],
    nonzas: &[("active", NS), ("inactive", NS)],
    // XEP-0352 §4: a new stream starts active, a resumed one too.
    session_hooks: &[(SessionHook::Resumed, Priority::NORMAL)],
    specs: &[Claim::xep(
        352,
        "1.0.0",
        "modules::csi: presence and chat states held back while inactive",
    )],
    ..ModuleSpec::named("csi")
};

/// `[modules.csi]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsiSettings {
    /// Stanzas held for one inactive session at most; one more flushes them all.
    pub max_held: usize,
}

impl Default for CsiSettings {
    fn default() -> Self {
        CsiSettings { max_held: 100 }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: CsiSettings = section.parse()?;
    if settings.max_held == 0 {
        return Err(vec![section.error("max_held", "must be at least 1")]);
    }
    Ok(Arc::new(Csi { settings }))
}

pub struct Csi {
    settings: CsiSettings,
}

#[async_trait::async_trait]
impl Module for Csi {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn nonza(
        &self,
        state: &Arc<ServerState>,
        jid: &FullJid,
        element: &Element,
    ) -> Vec<Element> {
        match element.name() {
            "inactive" => {
                let mut hold = Hold::new(self.settings.max_held);
                if state.modules.wants_away() {
                    hold.away = Some((Arc::downgrade(state), jid.clone()));
                }
                let hold = Arc::new(hold);
                // Already inactive: keep what the old filter held.
                if let Some(old) = state.sessions.set_filter(jid, Some(hold.clone())) {
                    for held in old.release() {
                        hold.offer(held);
                    }
                }
            }
            _ => active(state, jid),
        }
        // XEP-0352 §4: no answer to either.
        Vec::new()
    }

    async fn session(&self, state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        active(state, jid);
    }
}

/// The session is active: what was held is delivered, in order.
fn active(state: &ServerState, jid: &FullJid) {
    if let Some(old) = state.sessions.set_filter(jid, None) {
        for held in old.release() {
            let _ = state.sessions.deliver_to_full(jid, held);
        }
    }
}

/// The filter of an inactive session.
struct Hold {
    max: usize,
    held: Mutex<Vec<Element>>,
    /// The server and the session, when modules want to hear of what the session is offered
    /// while inactive. Weak: the registry holding this filter is the server's.
    away: Option<(Weak<ServerState>, FullJid)>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Hold {
    fn new(max: usize) -> Self {
        Hold {
            max,
            held: Mutex::new(Vec::new()),
            away: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Element>> {
        // Push and drain only: a panic cannot leave the list half-changed.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DeliveryFilter for Hold {
    fn offer(&self, stanza: Element) -> Vec<Element> {
        if let Some((state, jid)) = &self.away {
            if let Some(state) = state.upgrade() {
                state
                    .modules
                    .away_delivery(&state, jid, &stanza, Away::Inactive);
            }
        }
        let mut held = self.lock();
        if urgent(&stanza) || held.len() >= self.max {
            let mut out = std::mem::take(&mut *held);
            out.push(stanza);
            return out;
        }
        // The newest presence, or chat state, of a sender replaces the one held before it.
        let replaces = |old: &Element| {
            old.name() == stanza.name()
                && old.attr("from") == stanza.attr("from")
                && (stanza.name() == "presence" || crate::stanza::is_chat_state_only(old))
        };
        held.retain(|old| !replaces(old));
        held.push(stanza);
        Vec::new()
    }

    fn release(&self) -> Vec<Element> {
        std::mem::take(&mut *self.lock())
    }
}

/// What the user should get at once: anything but presence updates and bare chat states.
fn urgent(stanza: &Element) -> bool {
    match stanza.name() {
        "presence" => matches!(
            stanza.attr("type"),
            Some("subscribe")
                | Some("subscribed")
                | Some("unsubscribe")
                | Some("unsubscribed")
                | Some("error")
        ),
        "message" => !crate::stanza::is_chat_state_only(stanza),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn holds_the_newest_and_flushes_in_order() {
        let hold = Hold::new(10);
        let p1 = el("<presence xmlns='jabber:client' from='b@x/1'><show>away</show></presence>");
        let p2 = el("<presence xmlns='jabber:client' from='b@x/1'><show>xa</show></presence>");
        let p3 = el("<presence xmlns='jabber:client' from='c@x/1'/>");
        let cs = el("<message xmlns='jabber:client' from='b@x/1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        for s in [&p1, &p2, &p3, &cs] {
            assert!(hold.offer(s.clone()).is_empty(), "held");
        }
        let msg = el("<message xmlns='jabber:client' from='b@x/1'><body>hi</body></message>");
        let out = hold.offer(msg.clone());
        assert_eq!(
            out,
            vec![p2, p3, cs, msg],
            "newest presence per sender, then the message"
        );
        assert!(hold.release().is_empty());
        let sub = el("<presence xmlns='jabber:client' from='d@x' type='subscribe'/>");
        assert_eq!(
            hold.offer(sub.clone()),
            vec![sub],
            "subscription requests are urgent"
        );
    }

    #[test]
    fn a_full_hold_flushes() {
        let hold = Hold::new(2);
        for from in ["a@x/1", "b@x/1"] {
            assert!(hold
                .offer(el(&format!(
                    "<presence xmlns='jabber:client' from='{from}'/>"
                )))
                .is_empty());
        }
        assert_eq!(
            hold.offer(el("<presence xmlns='jabber:client' from='c@x/1'/>"))
                .len(),
            3
        );
    }
}
