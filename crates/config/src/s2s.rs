//! `[s2s]`: federation (RFC 6120 s2s over TCP, XEP-0468 over WebSocket), its discovery and
//! authentication (SASL EXTERNAL, XEP-0220 dialback) settings.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::HumanDuration;

/// A transport for outgoing links, in the operator's order of preference.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum S2sTransport {
    /// XEP-0468 over wss://, found through XEP-0156 host-meta.
    Websocket,
    /// RFC 6120 over TCP, found through SRV (XEP-0368 Direct TLS first, then STARTTLS).
    Tcp,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Federate at all.
    pub enabled: bool,
    /// Order in which outgoing links try transports.
    pub transports: Vec<S2sTransport>,
    /// Time to connect, secure and authenticate an outgoing link.
    pub connect_timeout: HumanDuration,
    /// Links carrying no stanza for this long are closed.
    pub idle_timeout: HumanDuration,
    /// Stanzas queued per remote domain while its link is being set up.
    pub queue_size: usize,
    /// Offer and use XEP-0220 dialback when certificates cannot authenticate a peer.
    pub dialback: bool,
    /// XEP-0288: offer and use bidirectional links (one connection carries both directions).
    pub bidi: bool,
    /// Remote domains whose links' XML is logged element by element, at trace level under
    /// the target `weft::xml` (e.g. RUST_LOG=weft::xml=trace): to debug a link with its
    /// operator. Stanzas are logged whole: turn it on only for as long as it is needed.
    pub trace_domains: Vec<String>,
    /// The dialback key secret; generated once into data_dir when unset.
    pub dialback_secret: Option<String>,
    /// Refuse peers whose certificate is not valid for their domain (no dialback fallback).
    pub require_valid_certificates: bool,
    /// Extra trusted CA certificates (PEM) for peers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Trust the operating system's CA store.
    pub system_roots: bool,
    /// If non-empty, federate only with these domains.
    pub allow_domains: Vec<String>,
    /// Never federate with these domains.
    pub deny_domains: Vec<String>,
    /// Reverse proxies (by IP) allowed to forward a peer's client certificate in
    /// `client_cert_header` when they terminate TLS for WebSocket s2s (XEP-0468 HTTPS hosting).
    pub trusted_proxies: Vec<IpAddr>,
    /// Header carrying the URL-encoded PEM client certificate (nginx `$ssl_client_escaped_cert`).
    pub client_cert_header: String,
    /// DNS servers for SRV and address lookups; empty uses the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Use DNS at all for federation (SRV, addresses). Off: only routes, host-meta bases given
    /// by address, and the addresses host-meta itself lists (XEP-0487 `ips`).
    pub dns_lookups: bool,
    /// Fixed routes per remote domain, bypassing discovery: "wss://host:port/path",
    /// "tcp://host:port" (STARTTLS) or "tls://host:port" (Direct TLS).
    pub routes: BTreeMap<String, Vec<String>>,
    /// Base URL per remote domain for host-meta discovery (e.g. "https://127.0.0.1:8443");
    /// the certificate is still checked for the domain itself.
    pub host_meta_base: BTreeMap<String, String>,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: true,
            transports: vec![S2sTransport::Websocket, S2sTransport::Tcp],
            connect_timeout: HumanDuration(Duration::from_secs(15)),
            idle_timeout: HumanDuration(Duration::from_secs(600)),
            queue_size: 1000,
            dialback: true,
            bidi: true,
            trace_domains: Vec::new(),
            dialback_secret: None,
            require_valid_certificates: false,
            ca_file: None,
            system_roots: true,
            allow_domains: Vec::new(),
            deny_domains: Vec::new(),
            trusted_proxies: Vec::new(),
            client_cert_header: "X-SSL-Client-Cert".into(),
            nameservers: Vec::new(),
            dns_lookups: true,
            routes: BTreeMap::new(),
            host_meta_base: BTreeMap::new(),
        }
    }
}

impl S2sConfig {
    /// Whether federation with `domain` is allowed by the allow/deny lists.
    pub fn allows(&self, domain: &str) -> bool {
        !self.deny_domains.iter().any(|d| d == domain)
            && (self.allow_domains.is_empty() || self.allow_domains.iter().any(|d| d == domain))
    }

    /// Every problem types alone cannot catch, as (key path, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.transports.is_empty() {
            out.push((
                "s2s.transports".into(),
                "at least one transport is required".into(),
            ));
        }
        if self.queue_size == 0 {
            out.push(("s2s.queue_size".into(), "must be at least 1".into()));
        }
        for (domain, routes) in &self.routes {
            for (i, r) in routes.iter().enumerate() {
                let ok = ["wss://", "tcp://", "tls://"]
                    .iter()
                    .any(|p| r.starts_with(p));
                if !ok {
                    out.push((
                        format!("s2s.routes.{domain}[{i}]"),
                        "must start with wss://, tcp:// or tls:// (XEP-0468 requires wss)".into(),
                    ));
                }
            }
        }
        for (domain, base) in &self.host_meta_base {
            if !base.starts_with("https://") {
                out.push((
                    format!("s2s.host_meta_base.{domain}"),
                    "host-meta is only fetched over HTTPS".into(),
                ));
            }
        }
        out
    }
}
