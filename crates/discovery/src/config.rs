//! Configuration of s2s discovery (XEP-0156 / XEP-0487 fetching limits, RFC 6120 §3.2 DNS source) and the resolver overrides that let tests and special deployments say where a domain lives.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::srv::SrvRecord;

/// Everything [`crate::Discovery`] needs. Build with [`DiscoveryConfig::new`] and adjust the
/// public fields.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// TLS client configuration for fetching host-meta: its root store decides which
    /// certificates are trusted. weft clones it and sets ALPN to `http/1.1`; everything
    /// else (roots, client certificate, versions) is used as given. Certificate
    /// verification is never switched off by this crate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Where DNS answers come from.
    pub dns: DnsMode,
    /// Timeout of one DNS query (hickory retries once more before giving up).
    pub dns_timeout: Duration,
    /// Limits for the HTTPS fetch.
    pub http: HttpLimits,
    /// Lifetimes of cached host-meta results.
    pub cache: CacheLimits,
    /// Static answers that take precedence over DNS.
    pub overrides: Overrides,
    /// XEP-0487 §2.2 rule 2: when a host-meta document carries the `xmpp` object and offers
    /// at least one usable s2s endpoint, legacy SRV lookups SHOULD be skipped. `true`
    /// (default) follows that; `false` still appends the SRV/5269 candidates after them.
    pub skip_srv_for_host_meta2: bool,
}

impl DiscoveryConfig {
    /// Defaults: system DNS configuration with a 5 s query timeout, [`HttpLimits::default`],
    /// [`CacheLimits::default`], no overrides.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        DiscoveryConfig {
            tls,
            dns: DnsMode::System,
            dns_timeout: Duration::from_secs(5),
            http: HttpLimits::default(),
            cache: CacheLimits::default(),
            overrides: Overrides::default(),
            skip_srv_for_host_meta2: true,
        }
    }
}

/// Where DNS answers come from (after [`Overrides`] were consulted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsMode {
    /// The system configuration (`/etc/resolv.conf` on Unix).
    System,
    /// These name servers (UDP, then TCP), e.g. a test DNS server on `127.0.0.53:53` or on a
    /// random loopback port. Search domains are not used.
    Nameservers(Vec<SocketAddr>),
    /// No DNS at all: a name without an override does not exist (NXDOMAIN). For tests that
    /// must never leave the machine.
    StaticOnly,
}

/// Limits for fetching host-meta over HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// TCP connect plus TLS handshake, per address tried.
    pub connect_timeout: Duration,
    /// The whole host-meta discovery for one domain: both documents, all redirects.
    pub total_timeout: Duration,
    /// Largest body accepted, in bytes (announced by `Content-Length` or received).
    pub max_body_bytes: usize,
    /// Most redirects followed per document (HTTPS to HTTPS only).
    pub max_redirects: u8,
}

impl Default for HttpLimits {
    /// 5 s connect, 15 s total, 64 KiB body, 3 redirects.
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_body_bytes: 64 * 1024,
            max_redirects: 3,
        }
    }
}

/// Lifetimes of cached host-meta results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Lifetime of a document without an XEP-0487 `ttl`.
    pub default_ttl: Duration,
    /// Lower bound for a document's `ttl` (a `ttl` of 0 must not mean a fetch per stanza).
    pub min_ttl: Duration,
    /// Upper bound for a document's `ttl`; XEP-0487 §7 advises at most one week.
    pub max_ttl: Duration,
    /// Lifetime of a failure (no host-meta, unreachable, invalid), so that a domain without
    /// host-meta does not cost an HTTPS attempt per connection attempt.
    pub negative_ttl: Duration,
    /// XEP-0487 §5.2: when a refresh fails, a document that expired at most this long ago is
    /// used still (and the refresh retried after `negative_ttl`). Zero disables this.
    pub max_stale: Duration,
    /// Most domains kept; expired entries are dropped first, then the soonest to expire.
    pub max_entries: usize,
}

impl Default for CacheLimits {
    /// 1 h default, 1 min to 7 days for XEP-0487 `ttl`, 5 min negative, 1 day stale, 10 000
    /// domains.
    fn default() -> Self {
        CacheLimits {
            default_ttl: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            negative_ttl: Duration::from_secs(300),
            max_stale: Duration::from_secs(24 * 3600),
            max_entries: 10_000,
        }
    }
}

/// Static answers consulted before DNS: for tests (everything on loopback, the test CA) and
/// for deployments that pin where a peer lives.
///
/// Names are matched case-insensitively and without a trailing dot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub(crate) host_meta_base: HashMap<String, String>,
    pub(crate) srv: HashMap<String, Vec<SrvRecord>>,
    pub(crate) addrs: HashMap<String, Vec<IpAddr>>,
}

impl Overrides {
    /// Fetch `DOMAIN`'s host-meta from `base` instead of `https://DOMAIN`: e.g. `b.test` →
    /// `https://127.0.0.1:8443` requests `https://127.0.0.1:8443/.well-known/host-meta.json`
    /// (a path in `base` is prepended). The TLS connection goes to `base`'s address but the
    /// certificate is still verified for `DOMAIN` (sent as SNI and `Host`), so such a result
    /// still counts as verified HTTPS. `base` must be `https://`.
    pub fn host_meta_base(mut self, domain: &str, base: &str) -> Self {
        self.host_meta_base
            .insert(normalise(domain), base.to_owned());
        self
    }

    /// Answer the SRV query `name` (e.g. `_xmpp-server._tcp.b.test`) with `records`. An
    /// empty list means "no records" (NODATA); a record with target `.` means "not offered".
    pub fn srv(mut self, name: &str, records: Vec<SrvRecord>) -> Self {
        self.srv.insert(normalise(name), records);
        self
    }

    /// Answer A/AAAA queries for `host` with `ips`; an empty list means "no addresses".
    pub fn addrs(mut self, host: &str, ips: Vec<IpAddr>) -> Self {
        self.addrs.insert(normalise(host), ips);
        self
    }

    /// Whether no override is set.
    pub fn is_empty(&self) -> bool {
        self.host_meta_base.is_empty() && self.srv.is_empty() && self.addrs.is_empty()
    }
}

/// Lower case, no trailing dot: the form every table is keyed by.
pub(crate) fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Which transports to try, in the operator's order of preference.
///
/// Each entry appends the candidates of its kind that are not already in the list, so
/// `[DirectTls, StartTls]` prefers Direct TLS, while `[Tcp]` mixes both as XEP-0368 §3
/// describes. Kinds not named are not tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportPref {
    /// s2s over WebSocket (XEP-0468), from host-meta.
    WebSocket,
    /// Direct TLS and STARTTLS, mixed by priority and weight (XEP-0368 §3).
    Tcp,
    /// Direct TLS only: `_xmpps-server._tcp` SRV and XEP-0487 `s2s-tls` links.
    DirectTls,
    /// STARTTLS only: `_xmpp-server._tcp` SRV, or the domain on 5269.
    StartTls,
}

impl TransportPref {
    /// The default order: WebSocket when host-meta offers it, then TCP.
    pub const DEFAULT: &'static [TransportPref] = &[TransportPref::WebSocket, TransportPref::Tcp];
}
