//! RFC 6120 §3.2, XEP-0156, XEP-0368, XEP-0468, XEP-0487: where to connect for server-to-server XMPP to a remote domain. Discovery only — no XMPP stream logic, no connection policy beyond ordering.
//!
//! [`Discovery::s2s_candidates`] is the entry point the s2s layer calls. It
//!
//! 1. fetches the domain's host-meta over HTTPS only — `host-meta.json` (JRD) first, then
//!    `host-meta` (XRD) — with a body cap, an HTTPS-only redirect limit, connect and total
//!    timeouts and certificate verification against the caller's roots, and caches the
//!    outcome (XEP-0487 `ttl`, clamped; failures for a negative TTL);
//! 2. looks up `_xmpps-server._tcp` (XEP-0368 Direct TLS) and `_xmpp-server._tcp`
//!    (STARTTLS) concurrently, falling back to the domain on 5269;
//! 3. resolves every candidate's addresses (static overrides first, then DNS), and returns
//!    them in the operator's transport order, by priority and weight inside each kind.
//!
//! The host-meta parsers [`parse_jrd`] and [`parse_xrd`] and the RFC 2782 ordering
//! [`rfc2782_order`] are pure functions, usable on their own.
//!
//! Certificates: a [`Candidate`] tells which names the peer's certificate may be valid for
//! ([`Candidate::reference_names`]): the XMPP domain always; the delegated WebSocket host
//! or XEP-0487 `sni` only when the link came from host-meta fetched over verified HTTPS
//! (RFC 7395 §6). Verifying the peer is the s2s layer's job.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod candidate;
mod config;
mod discovery;
mod dns;
mod endpoint;
mod error;
mod fetch;
mod jrd;
mod srv;
mod xrd;

pub use candidate::Candidate;
pub use config::{CacheLimits, DiscoveryConfig, DnsMode, HttpLimits, Overrides, TransportPref};
pub use discovery::Discovery;
pub use endpoint::{
    parse_wss_url, Endpoint, EndpointKind, HostMeta2, HostMetaDoc, HostMetaFormat, Rejected,
    DEFAULT_PRIORITY, DEFAULT_WEIGHT, MAX_HREF_BYTES, MAX_IPS_PER_LINK, MAX_LINKS, REL_QUIC,
    REL_S2S_QUIC, REL_S2S_TLS, REL_S2S_WEBSOCKET, REL_TLS, REL_WEBSOCKET, WSS_DEFAULT_PORT,
};
pub use error::{DiscoveryError, HostMetaError};
pub use jrd::parse_jrd;
pub use srv::{rfc2782_order, SrvRecord, MAX_SRV_RECORDS, XMPP_SERVER_PORT};
pub use xrd::{parse_xrd, XRD_NS};

/// A host-meta document as fetched for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMeta {
    /// The parsed document.
    pub doc: HostMetaDoc,
    /// The URL it was finally served from (after redirects). Under a
    /// [`Overrides::host_meta_base`] override this names the domain, not the override
    /// address.
    pub url: String,
    /// Whether it came over HTTPS with a certificate verified for the URL's host. Always
    /// `true` for documents this crate fetches (there is no other path); the field exists so
    /// that the s2s layer's decision to widen accepted certificate names (RFC 7395 §6) is
    /// explicit where it is made.
    pub verified_via_https: bool,
}
