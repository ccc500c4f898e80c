//! Federation: outgoing links pooled per (local domain, remote domain), incoming streams, and
//! their authentication (SASL EXTERNAL on certificates, XEP-0220 dialback). TCP (RFC 6120) and
//! WebSocket (XEP-0468) differ only in framing, as for clients.

pub mod certs;
mod delegation;
pub mod dialback;
pub mod incoming;
mod link;
mod outgoing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use minidom::Element;
use tokio::sync::mpsc;

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;
use certs::PeerCertVerifier;
use dialback::DialbackKeys;

/// Discovery for outgoing links: HTTPS host-meta verified against the same roots as peers'
/// certificates, the configured nameservers, and `s2s.host_meta_base` overrides.
pub fn discovery_for(
    config: &weft_config::Config,
    roots: Arc<rustls::RootCertStore>,
) -> anyhow::Result<weft_discovery::Discovery> {
    let mut tls =
        rustls::ClientConfig::builder_with_provider(crate::transport::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut dc = weft_discovery::DiscoveryConfig::new(Arc::new(tls));
    if !config.s2s.dns_lookups {
        dc.dns = weft_discovery::DnsMode::StaticOnly;
    } else if !config.s2s.nameservers.is_empty() {
        dc.dns = weft_discovery::DnsMode::Nameservers(config.s2s.nameservers.clone());
    }
    let mut overrides = weft_discovery::Overrides::default();
    for (domain, base) in &config.s2s.host_meta_base {
        overrides = overrides.host_meta_base(domain, base);
    }
    dc.overrides = overrides;
    weft_discovery::Discovery::try_new(dc).map_err(|e| anyhow::anyhow!("s2s discovery: {e}"))
}

/// The queue of one outgoing link.
#[derive(Clone)]
struct Pool {
    id: u64,
    tx: mpsc::Sender<Element>,
}

pub struct S2s {
    pools: Mutex<HashMap<(String, String), Pool>>,
    /// Routes set at run time (tests, admin), consulted before `s2s.routes` in the config.
    routes: std::sync::RwLock<HashMap<String, Vec<String>>>,
    next_id: AtomicU64,
    pub keys: DialbackKeys,
    pub verifier: PeerCertVerifier,
    /// XEP-0156 host-meta and SRV lookups, with their cache.
    pub discovery: weft_discovery::Discovery,
    /// Incoming authentications by method, for metrics and tests.
    pub authenticated_by_external: AtomicU64,
    pub authenticated_by_dialback: AtomicU64,
}

impl S2s {
    pub fn new(
        keys: DialbackKeys,
        verifier: PeerCertVerifier,
        discovery: weft_discovery::Discovery,
    ) -> Self {
        S2s {
            pools: Mutex::new(HashMap::new()),
            routes: std::sync::RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            keys,
            verifier,
            discovery,
            authenticated_by_external: AtomicU64::new(0),
            authenticated_by_dialback: AtomicU64::new(0),
        }
    }

    /// Queues `stanza` (in jabber:client or jabber:server) for `remote`, starting a link when
    /// none exists. Fails only when the queue is full or federation with `remote` is refused,
    /// and then hands the stanza back for the error reply (no copy on the way out); later
    /// failures come back to the sender as stanza errors.
    pub fn send(
        state: &Arc<ServerState>,
        local: &str,
        remote: &str,
        stanza: Element,
    ) -> Result<(), Box<(StanzaError, Element)>> {
        let s2s = &state.s2s;
        if !state.config.s2s.enabled {
            let err = StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
                .with_text("federation is disabled on this server");
            return Err(Box::new((err, stanza)));
        }
        if !state.config.s2s.allows(remote) {
            let err = StanzaError::new(StanzaErrorCondition::NotAllowed)
                .with_text("this server does not federate with that domain");
            return Err(Box::new((err, stanza)));
        }
        let mut stanza = stanza;
        // Two tries: a link that is just closing refuses with Closed, and a new one is made.
        for _ in 0..2 {
            let pool = s2s.pool(state, local, remote);
            match pool.tx.try_send(stanza) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    let err = StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                        .with_text("too many stanzas waiting for that server");
                    return Err(Box::new((err, back)));
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    s2s.forget(local, remote, pool.id);
                    stanza = back;
                }
            }
        }
        Err(Box::new((
            StanzaError::new(StanzaErrorCondition::RemoteServerTimeout),
            stanza,
        )))
    }

    fn pool(&self, state: &Arc<ServerState>, local: &str, remote: &str) -> Pool {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_string(), remote.to_string());
        if let Some(p) = pools.get(&key) {
            return p.clone();
        }
        let (tx, rx) = mpsc::channel(state.config.s2s.queue_size);
        let pool = Pool {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
        };
        pools.insert(key, pool.clone());
        state.tracker.spawn(outgoing::run(
            state.clone(),
            local.to_string(),
            remote.to_string(),
            pool.id,
            rx,
        ));
        pool
    }

    /// XEP-0288: an incoming stream the peer made bidirectional and authenticated as
    /// `remote` carries our stanzas from `local` to it when no link for that pair exists: the
    /// pair's new queue, for that stream to write. `None` when a link exists already.
    pub(crate) fn adopt(
        &self,
        state: &ServerState,
        local: &str,
        remote: &str,
    ) -> Option<(u64, mpsc::Receiver<Element>)> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_string(), remote.to_string());
        if pools.contains_key(&key) {
            return None;
        }
        let (tx, rx) = mpsc::channel(state.config.s2s.queue_size);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        pools.insert(key, Pool { id, tx });
        Some((id, rx))
    }

    /// Removes a pool entry, unless it was since replaced.
    pub(crate) fn forget(&self, local: &str, remote: &str, id: u64) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_string(), remote.to_string());
        if pools.get(&key).is_some_and(|p| p.id == id) {
            pools.remove(&key);
        }
    }

    /// Sets the routes for `domain` ("wss://…", "tcp://host:port", "tls://host:port").
    pub fn set_routes(&self, domain: &str, routes: Vec<String>) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_string(), routes);
    }

    fn runtime_routes(&self, domain: &str) -> Option<Vec<String>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
            .cloned()
    }

    /// Number of outgoing links (established or being set up).
    pub fn links(&self) -> usize {
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
