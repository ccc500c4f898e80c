//! XEP-0114 Jabber Component Protocol: external components serving domains of their own
//! (gateways, bots, MUC or pubsub services written elsewhere). This file owns which domains are
//! components, which of them are connected, delivery to them and the routing of what they
//! send; `session.rs` runs one component connection, `handshake.rs` checks its secret.

pub mod handshake;
pub mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jid::Jid;
use minidom::{Element, Node};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_config::{ComponentConfig, ComponentConflict};

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;

/// The configured components and the connections serving them.
pub struct Components {
    /// In configuration order (the order of disco#items).
    configured: Vec<ComponentConfig>,
    by_domain: HashMap<String, usize>,
    connected: RwLock<HashMap<String, Link>>,
    next_id: AtomicU64,
    /// Stanzas waiting to be written to one component (`limits.session_queue`).
    queue: usize,
}

/// The connection serving a domain, as the router reaches it.
struct Link {
    id: u64,
    tx: mpsc::Sender<Element>,
    /// Cancelled when a newer connection takes the domain over (`conflict = "replace"`).
    replaced: CancellationToken,
}

/// A connection's place in the registry, once its handshake succeeded.
pub(crate) struct Attached {
    pub id: u64,
    pub rx: mpsc::Receiver<Element>,
    pub replaced: CancellationToken,
}

impl Components {
    pub fn new(configured: &[ComponentConfig], queue: usize) -> Self {
        Components {
            by_domain: configured
                .iter()
                .enumerate()
                .map(|(i, c)| (c.domain.clone(), i))
                .collect(),
            configured: configured.to_vec(),
            connected: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }

    /// Whether `domain` is a component's (connected or not): its JIDs are routed to it.
    pub fn serves(&self, domain: &str) -> bool {
        !self.configured.is_empty() && self.by_domain.contains_key(domain)
    }

    pub fn config(&self, domain: &str) -> Option<&ComponentConfig> {
        self.by_domain.get(domain).map(|&i| &self.configured[i])
    }

    /// Whether a connection serves `domain` now.
    pub fn is_connected(&self, domain: &str) -> bool {
        self.read().contains_key(domain)
    }

    /// Takes `domain` for a connection whose handshake succeeded. When another connection has
    /// it: `Err` under `conflict = "reject"`, else that one is told to go and this one takes
    /// its place.
    pub(crate) fn attach(&self, domain: &str) -> Result<Attached, ()> {
        let policy = self.config(domain).map(|c| c.conflict).unwrap_or_default();
        let mut connected = self.write();
        if let Some(old) = connected.get(domain) {
            if policy == ComponentConflict::Reject {
                return Err(());
            }
            old.replaced.cancel();
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        connected.insert(
            domain.to_string(),
            Link {
                id,
                tx,
                replaced: replaced.clone(),
            },
        );
        Ok(Attached { id, rx, replaced })
    }

    /// Gives `domain` up, unless a newer connection has it since.
    pub(crate) fn detach(&self, domain: &str, id: u64) {
        let mut connected = self.write();
        if connected.get(domain).is_some_and(|l| l.id == id) {
            connected.remove(domain);
        }
    }

    /// Queues `stanza` (in jabber:client) for the component serving `domain`; hands it back
    /// with the error its sender gets when none takes it. Never waits: a full queue is
    /// `<resource-constraint/>`, as for a client that does not read.
    pub fn send(&self, domain: &str, stanza: Element) -> Result<(), Box<(StanzaError, Element)>> {
        let refused = match self.read().get(domain) {
            Some(link) => match link.tx.try_send(stanza) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => (
                    StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                        .with_text("the component is not reading fast enough"),
                    back,
                ),
                // Its connection is ending and has not given the domain up yet.
                Err(mpsc::error::TrySendError::Closed(back)) => (not_connected(domain), back),
            },
            None => (not_connected(domain), stanza),
        };
        Err(Box::new(refused))
    }

    /// The components to list in the disco#items of the hosted domain `hosted` (XEP-0030
    /// §4.1), as (JID, name): those on a subdomain of it; a component on no subdomain of any
    /// hosted domain is listed under the first hosted domain, so that none is hidden.
    pub fn disco_items(&self, state: &ServerState, hosted: &str) -> Vec<(String, Option<String>)> {
        self.configured
            .iter()
            .filter(|c| {
                let parent = |d: &str| {
                    c.domain
                        .strip_suffix(d)
                        .is_some_and(|rest| rest.ends_with('.'))
                };
                parent(hosted)
                    || (hosted == state.config.default_domain()
                        && !state.config.server.domains.iter().any(|d| parent(d)))
            })
            .map(|c| (c.domain.clone(), c.name.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Link>> {
        self.connected.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Link>> {
        self.connected.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// RFC 6120 §8.3.3.19: the component is configured but not connected. Prosody answers the
/// same (before 0.12; since, remote-server-timeout); ejabberd, which forgets the domain,
/// service-unavailable too.
fn not_connected(domain: &str) -> StanzaError {
    StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
        .with_text(format!("the component {domain} is not connected"))
        .by(domain)
}

/// Hands a stanza for the component domain `domain` to it; returns the error reply for its
/// sender when it cannot take it (none for errors and IQ results, RFC 6120 §8.3.1).
pub fn deliver(state: &ServerState, domain: &str, stanza: Element) -> Option<Element> {
    match state.components.send(domain, stanza) {
        Ok(()) => None,
        Err(refused) => {
            let (err, stanza) = *refused;
            tracing::debug!(%domain, "stanza for component not delivered: {}", err.condition.name());
            err.reply_to(&stanza)
        }
    }
}

/// Routes a stanza a component sent (in jabber:client, its 'from' checked) like one from any
/// other server: to local accounts and the server (with the hooks stanzas from elsewhere
/// pass), to components, or over s2s as its own domain. Errors come back to the component.
pub(crate) async fn route_from(
    state: &Arc<ServerState>,
    stanza: Element,
    from_domain: &str,
    to: &Jid,
) {
    let domain = to.domain().as_str();
    if state.is_local_domain(domain)
        || state.components.serves(domain)
        || state.modules.service(state, domain).is_some()
    {
        crate::router::deliver_local(state, stanza).await;
        return;
    }
    if let Err(refused) = crate::s2s::S2s::send(state, from_domain, domain, stanza) {
        let (err, stanza) = *refused;
        if let Some(reply) = err.reply_to(&stanza) {
            crate::router::deliver_local(state, reply).await;
        }
    }
}

/// `el` with its namespace `from` changed to `to`, with every descendant that inherits it
/// (body, error, …); elements of other namespaces keep their whole subtree, so a forwarded
/// `jabber:client` message inside a payload stays one (XEP-0297).
pub(crate) fn renamespace(el: &Element, from: &str, to: &str) -> Element {
    if !el.has_ns(from) {
        return el.clone();
    }
    let mut out = Element::bare(el.name(), to);
    *out.attrs_mut() = el.attrs().clone();
    for node in el.nodes() {
        match node {
            Node::Element(child) if child.has_ns(from) => {
                out.append_child(renamespace(child, from, to));
            }
            Node::Element(child) => {
                out.append_child(child.clone());
            }
            Node::Text(text) => out.append_text_node(text.as_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(domain: &str, conflict: ComponentConflict) -> ComponentConfig {
        ComponentConfig {
            domain: domain.into(),
            secret: "s".into(),
            name: None,
            conflict,
        }
    }

    fn message() -> Element {
        "<message xmlns='jabber:client' to='gw.example' from='a@example/r'><body>hi</body></message>"
            .parse()
            .unwrap()
    }

    #[test]
    fn delivery_needs_a_connection_and_room_in_its_queue() {
        let c = Components::new(&[config("gw.example", ComponentConflict::Reject)], 1);
        assert!(c.serves("gw.example") && !c.serves("example"));
        let refused = c.send("gw.example", message()).unwrap_err();
        assert_eq!(
            refused.0.condition,
            StanzaErrorCondition::ServiceUnavailable
        );
        let mut attached = c.attach("gw.example").unwrap();
        assert!(c.is_connected("gw.example"));
        c.send("gw.example", message()).unwrap();
        let full = c.send("gw.example", message()).unwrap_err();
        assert_eq!(full.0.condition, StanzaErrorCondition::ResourceConstraint);
        assert!(attached.rx.try_recv().is_ok());
        c.detach("gw.example", attached.id);
        assert!(!c.is_connected("gw.example"));
    }

    #[test]
    fn conflicts_follow_the_policy() {
        let c = Components::new(
            &[
                config("keep.example", ComponentConflict::Reject),
                config("swap.example", ComponentConflict::Replace),
            ],
            8,
        );
        let first = c.attach("keep.example").unwrap();
        assert!(c.attach("keep.example").is_err());
        assert!(!first.replaced.is_cancelled());
        let old = c.attach("swap.example").unwrap();
        let new = c.attach("swap.example").unwrap();
        assert!(old.replaced.is_cancelled() && !new.replaced.is_cancelled());
        // The replaced connection leaving does not take the domain from its successor.
        c.detach("swap.example", old.id);
        assert!(c.is_connected("swap.example"));
        c.detach("swap.example", new.id);
        assert!(!c.is_connected("swap.example"));
    }

    #[test]
    fn renamespace_stops_at_foreign_payloads() {
        let el: Element = "<message xmlns='jabber:component:accept' to='a@b'><body>x</body>\
            <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>y</body></message></forwarded>\
            </message>"
            .parse()
            .unwrap();
        let out = renamespace(&el, crate::ns::COMPONENT, crate::ns::CLIENT);
        assert!(out.is("message", crate::ns::CLIENT));
        assert_eq!(out.attr("to"), Some("a@b"));
        assert!(out.has_child("body", crate::ns::CLIENT));
        let inner = out
            .get_child("forwarded", "urn:xmpp:forward:0")
            .and_then(|f| f.get_child("message", crate::ns::CLIENT))
            .expect("forwarded message kept in jabber:client");
        assert!(inner.has_child("body", crate::ns::CLIENT));
        let back = renamespace(&out, crate::ns::CLIENT, crate::ns::COMPONENT);
        assert!(back.has_child("body", crate::ns::COMPONENT));
        // The forwarded message is a payload: it stays jabber:client.
        assert!(back
            .get_child("forwarded", "urn:xmpp:forward:0")
            .is_some_and(|f| f.has_child("message", crate::ns::CLIENT)));
    }
}
