//! The registry of bound c2s sessions: who is online under which resource, and the handle to
//! reach each session's task. RFC 6120 §7 (binding) and §7.7.2.2 (conflicts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use jid::{BareJid, FullJid};
use minidom::Element;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_config::ResourceConflict;

/// What other tasks can ask of a session.
#[derive(Debug)]
pub enum Outbound {
    /// A stanza to write to the client. Boxed: the channel allocates its slots in blocks up
    /// front, and a pointer per slot instead of a whole element keeps idle sessions small.
    Stanza(Box<Element>),
}

/// The way to reach one session's task; cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled when a new session takes over this resource (RFC 6120 §7.7.2.2).
    pub replaced: CancellationToken,
}

/// Why a stanza could not be handed to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The session is gone.
    Gone,
    /// The session's queue is full: it is not reading fast enough.
    Congested,
}

impl SessionHandle {
    /// Queues `stanza` for the session; on failure the stanza comes back, so callers need no
    /// copy of it (the stanza path is hot) to build an error reply.
    pub fn deliver(&self, stanza: Element) -> Result<(), (DeliveryError, Element)> {
        self.tx
            .try_send(Outbound::Stanza(Box::new(stanza)))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(Outbound::Stanza(s)) => {
                    (DeliveryError::Congested, *s)
                }
                mpsc::error::TrySendError::Closed(Outbound::Stanza(s)) => (DeliveryError::Gone, *s),
            })
    }
}

#[derive(Debug)]
struct Resource {
    name: String,
    handle: SessionHandle,
    /// RFC 6121 §4.2: an available resource has sent initial presence.
    available: bool,
    priority: i8,
}

/// Bound sessions by bare JID.
#[derive(Default)]
pub struct SessionRegistry {
    accounts: RwLock<HashMap<BareJid, Vec<Resource>>>,
    next_id: AtomicU64,
}

/// The outcome of a bind.
pub enum BindOutcome {
    Bound,
    /// Bound, and this older session with the same resource must be closed.
    Replaced(SessionHandle),
    /// Refused: the resource is taken and the policy is to reject.
    Conflict,
}

impl SessionRegistry {
    pub fn new_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn bind(
        &self,
        jid: &FullJid,
        handle: SessionHandle,
        policy: ResourceConflict,
    ) -> BindOutcome {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let resources = accounts.entry(jid.to_bare()).or_default();
        let name = jid.resource().as_str();
        if let Some(pos) = resources.iter().position(|r| r.name == name) {
            return match policy {
                ResourceConflict::Reject => BindOutcome::Conflict,
                ResourceConflict::Replace => {
                    let old = std::mem::replace(
                        &mut resources[pos],
                        Resource {
                            name: name.to_string(),
                            handle,
                            available: false,
                            priority: 0,
                        },
                    );
                    BindOutcome::Replaced(old.handle)
                }
            };
        }
        resources.push(Resource {
            name: name.to_string(),
            handle,
            available: false,
            priority: 0,
        });
        BindOutcome::Bound
    }

    /// Removes the session, unless the resource was since taken over by another session.
    pub fn unbind(&self, jid: &FullJid, session_id: u64) {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let bare = jid.to_bare();
        if let Some(resources) = accounts.get_mut(&bare) {
            resources.retain(|r| !(r.name == jid.resource().as_str() && r.handle.id == session_id));
            if resources.is_empty() {
                accounts.remove(&bare);
            }
        }
    }

    pub fn is_bound(&self, jid: &FullJid) -> bool {
        self.lookup(jid).is_some()
    }

    pub fn lookup(&self, jid: &FullJid) -> Option<SessionHandle> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts
            .get(&jid.to_bare())?
            .iter()
            .find(|r| r.name == jid.resource().as_str())
            .map(|r| r.handle.clone())
    }

    /// Records presence availability and priority (RFC 6121 §4.7.2.3).
    pub fn set_presence(&self, jid: &FullJid, available: bool, priority: i8) {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = accounts
            .get_mut(&jid.to_bare())
            .and_then(|rs| rs.iter_mut().find(|r| r.name == jid.resource().as_str()))
        {
            r.available = available;
            r.priority = priority;
        }
    }

    /// RFC 6121 §8.5.2.1.1: available resources with non-negative priority, for a message to a
    /// bare JID; all of them share the highest priority's delivery.
    pub fn message_targets(&self, bare: &BareJid) -> Vec<(FullJid, SessionHandle)> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let Some(resources) = accounts.get(bare) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter(|r| r.available && r.priority >= 0)
            .filter_map(|r| {
                let full = bare.with_resource_str(&r.name).ok()?;
                Some((full, r.handle.clone()))
            })
            .collect()
    }

    /// Every bound resource of the account (for presence to a bare JID, RFC 6121 §8.5.2.1.2).
    pub fn all_resources(&self, bare: &BareJid) -> Vec<(FullJid, SessionHandle)> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let Some(resources) = accounts.get(bare) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|r| Some((bare.with_resource_str(&r.name).ok()?, r.handle.clone())))
            .collect()
    }

    /// Number of bound sessions.
    pub fn len(&self) -> usize {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(reg: &SessionRegistry) -> (SessionHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        (
            SessionHandle {
                id: reg.new_session_id(),
                tx,
                replaced: CancellationToken::new(),
            },
            rx,
        )
    }

    #[test]
    fn bind_conflict_policies() {
        let reg = SessionRegistry::default();
        let jid: FullJid = "alice@localhost/phone".parse().unwrap();
        let (h1, _r1) = handle(&reg);
        let (h2, _r2) = handle(&reg);
        let (h3, _r3) = handle(&reg);
        assert!(matches!(
            reg.bind(&jid, h1.clone(), ResourceConflict::Replace),
            BindOutcome::Bound
        ));
        assert!(matches!(
            reg.bind(&jid, h2.clone(), ResourceConflict::Reject),
            BindOutcome::Conflict
        ));
        match reg.bind(&jid, h3.clone(), ResourceConflict::Replace) {
            BindOutcome::Replaced(old) => assert_eq!(old.id, h1.id),
            _ => panic!("expected replace"),
        }
        // The replaced session unbinding must not remove its successor.
        reg.unbind(&jid, h1.id);
        assert_eq!(reg.lookup(&jid).map(|h| h.id), Some(h3.id));
        reg.unbind(&jid, h3.id);
        assert!(reg.is_empty());
    }

    #[test]
    fn message_targets_need_available_non_negative_priority() {
        let reg = SessionRegistry::default();
        let a: FullJid = "bob@localhost/a".parse().unwrap();
        let b: FullJid = "bob@localhost/b".parse().unwrap();
        let (ha, _ra) = handle(&reg);
        let (hb, _rb) = handle(&reg);
        reg.bind(&a, ha, ResourceConflict::Replace);
        reg.bind(&b, hb, ResourceConflict::Replace);
        let bare = a.to_bare();
        assert!(reg.message_targets(&bare).is_empty());
        reg.set_presence(&a, true, 0);
        reg.set_presence(&b, true, -1);
        let targets: Vec<String> = reg
            .message_targets(&bare)
            .into_iter()
            .map(|(j, _)| j.to_string())
            .collect();
        assert_eq!(targets, vec!["bob@localhost/a".to_string()]);
        assert_eq!(reg.all_resources(&bare).len(), 2);
    }
}
