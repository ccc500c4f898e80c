//! What every task of a running server shares.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_config::Config;
use weft_storage::Storage;

use crate::session::registry::SessionRegistry;
use crate::session::resumption::ResumptionTable;
use crate::transport::limits::ConnectionLimiter;
use crate::transport::tls::TlsSetup;

pub struct ServerState {
    pub config: Config,
    pub domains: HashSet<String>,
    pub storage: Storage,
    pub tls: Arc<TlsSetup>,
    pub sessions: SessionRegistry,
    /// The feature modules and their dispatch tables.
    pub modules: crate::modules::Modules,
    pub limiter: Arc<ConnectionLimiter>,
    pub limits: weft_xml::Limits,
    /// Cancelled on SIGTERM/SIGINT: every stream closes.
    pub shutdown: CancellationToken,
    /// Cancelled to drain this node (SIGUSR1): every stream is closed with the configured
    /// redirect, and new ones are redirected right after their header; listeners stay up.
    pub draining: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Where closed WebSocket streams are redirected (RFC 7395 §3.6.1); settable at runtime to
    /// drain a node.
    pub see_other_uri: RwLock<Option<String>>,
    /// Federation: outgoing link pools, dialback keys, peer certificate checks.
    pub s2s: crate::s2s::S2s,
    /// XEP-0198: resumable c2s sessions by SM-ID.
    pub resumption: ResumptionTable<crate::session::c2s::TakeoverSlot>,
    /// XEP-0114: the external components' domains and their connections.
    pub components: crate::component::Components,
    /// XEP-0124: the BOSH sessions by sid.
    pub bosh: crate::framing::bosh::Sessions,
}

impl ServerState {
    pub fn new(config: Config, storage: Storage, tls: Arc<TlsSetup>) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let modules = crate::modules::load(&config).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            anyhow::anyhow!("module settings: {}", lines.join("; "))
        })?;
        let limits = weft_xml::Limits {
            max_stanza_bytes: config.limits.max_stanza_size.as_usize(),
            max_depth: config.limits.max_depth,
        };
        let ca_pem = match &config.s2s.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading s2s.ca_file {}", path.display()))?,
            ),
            None => None,
        };
        let verifier = crate::s2s::certs::PeerCertVerifier::new(
            crate::transport::tls::crypto_provider(),
            config.s2s.system_roots,
            ca_pem.as_deref(),
        )?;
        // Without a configured secret (the binary persists one in data_dir), a random one:
        // dialback keys then only need to survive this process.
        let secret = config.s2s.dialback_secret.clone().unwrap_or_else(|| {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        });
        let discovery = crate::s2s::discovery_for(&config, verifier.roots.clone())?;
        let s2s = crate::s2s::S2s::new(
            crate::s2s::dialback::DialbackKeys::new(&secret),
            verifier,
            discovery,
        );
        // An ended session's count answers resumption attempts for as long again as it waited.
        let remember = config.c2s.stream_management.resume_timeout.0 * 2;
        // A component cannot take a module's service JID (upload.DOMAIN): the one would hide
        // the other.
        for c in &config.components {
            for hosted in &config.server.domains {
                if let Some((_, name)) = modules
                    .service_items(hosted)
                    .into_iter()
                    .find(|(jid, _)| *jid == c.domain)
                {
                    anyhow::bail!(
                        "components: {} is the JID of the module service '{name}'; give the component another domain",
                        c.domain
                    );
                }
            }
        }
        let components =
            crate::component::Components::new(&config.components, config.limits.session_queue);
        Ok(Arc::new(ServerState {
            s2s,
            resumption: ResumptionTable::new(remember),
            components,
            bosh: Default::default(),
            domains: config.server.domains.iter().cloned().collect(),
            limiter: ConnectionLimiter::new(config.limits.max_connections_per_ip),
            see_other_uri: RwLock::new(config.websocket.see_other_uri.clone()),
            modules,
            sessions: SessionRegistry::default(),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limits,
            storage,
            tls,
            config,
        }))
    }

    /// Starts draining: see `draining`.
    pub fn drain(&self) {
        tracing::info!("draining: closing every stream with its redirect");
        self.draining.cancel();
        self.sessions
            .stop_all(crate::session::stop::StopReason::Shutdown);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    /// A domain this server answers for on s2s: a hosted domain or an external component's
    /// (XEP-0114), which federates through this server.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.is_local_domain(domain)
            || self.components.serves(domain)
            || self.modules.service(self, domain).is_some()
    }

    /// The redirect for a stream closing now, if one is set and it does not lower security:
    /// a wss:// stream is never sent to ws:// (RFC 7395 §3.6.1).
    pub fn redirect_for(&self, current_is_tls: bool) -> Option<String> {
        let uri = self
            .see_other_uri
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        if current_is_tls && !uri.starts_with("wss://") {
            return None;
        }
        Some(uri)
    }
}
