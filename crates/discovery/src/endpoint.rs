//! XEP-0156 / XEP-0487 / XEP-0468: the link relations weft understands, the endpoint model both host-meta formats parse into, and the per-link validation they share. No I/O.

use std::net::IpAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// XEP-0468: s2s over WebSocket (`wss://` only).
pub const REL_S2S_WEBSOCKET: &str = "urn:xmpp:alt-connections:s2s-websocket";
/// XEP-0156 / RFC 7395: c2s over WebSocket.
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
/// XEP-0487 §2.1: s2s Direct TLS (XEP-0368), a `port` instead of an `href`.
pub const REL_S2S_TLS: &str = "urn:xmpp:alt-connections:s2s-tls";
/// XEP-0487 §2.1: c2s Direct TLS (XEP-0368).
pub const REL_TLS: &str = "urn:xmpp:alt-connections:tls";
/// XEP-0487 §2.1: s2s QUIC (XEP-0467).
pub const REL_S2S_QUIC: &str = "urn:xmpp:alt-connections:s2s-quic";
/// XEP-0487 §2.1: c2s QUIC (XEP-0467).
pub const REL_QUIC: &str = "urn:xmpp:alt-connections:quic";

/// Default `priority` for a link without one (plain XEP-0156 links carry none).
pub const DEFAULT_PRIORITY: u16 = 0;
/// Default `weight` for a link without one.
pub const DEFAULT_WEIGHT: u16 = 0;
/// Default port of a `wss://` URL without one.
pub const WSS_DEFAULT_PORT: u16 = 443;

/// At most this many XMPP links are taken from one document; the rest are rejected. A
/// hostile document cannot make us resolve and try thousands of endpoints.
pub const MAX_LINKS: usize = 32;
/// At most this many `ips` per link.
pub const MAX_IPS_PER_LINK: usize = 16;
/// Longest `href` accepted, in bytes.
pub const MAX_HREF_BYTES: usize = 2048;

/// Which connection method a host-meta link describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// `urn:xmpp:alt-connections:s2s-websocket` (XEP-0468).
    S2sWebSocket,
    /// `urn:xmpp:alt-connections:websocket` (XEP-0156, RFC 7395).
    C2sWebSocket,
    /// `urn:xmpp:alt-connections:s2s-tls` (XEP-0487, XEP-0368).
    S2sDirectTls,
    /// `urn:xmpp:alt-connections:tls` (XEP-0487, XEP-0368).
    C2sDirectTls,
    /// `urn:xmpp:alt-connections:s2s-quic` (XEP-0487, XEP-0467). Parsed, never a candidate.
    S2sQuic,
    /// `urn:xmpp:alt-connections:quic` (XEP-0487, XEP-0467). Parsed, never a candidate.
    C2sQuic,
}

impl EndpointKind {
    /// The kind for a link relation, `None` for relations weft does not use (BOSH, lrdd, …).
    pub fn from_rel(rel: &str) -> Option<Self> {
        Some(match rel {
            REL_S2S_WEBSOCKET => EndpointKind::S2sWebSocket,
            REL_WEBSOCKET => EndpointKind::C2sWebSocket,
            REL_S2S_TLS => EndpointKind::S2sDirectTls,
            REL_TLS => EndpointKind::C2sDirectTls,
            REL_S2S_QUIC => EndpointKind::S2sQuic,
            REL_QUIC => EndpointKind::C2sQuic,
            _ => return None,
        })
    }

    /// The link relation of this kind.
    pub fn rel(self) -> &'static str {
        match self {
            EndpointKind::S2sWebSocket => REL_S2S_WEBSOCKET,
            EndpointKind::C2sWebSocket => REL_WEBSOCKET,
            EndpointKind::S2sDirectTls => REL_S2S_TLS,
            EndpointKind::C2sDirectTls => REL_TLS,
            EndpointKind::S2sQuic => REL_S2S_QUIC,
            EndpointKind::C2sQuic => REL_QUIC,
        }
    }

    /// WebSocket kinds are located by `href`; the others by `port` (XEP-0487 §2.1).
    pub fn uses_href(self) -> bool {
        matches!(
            self,
            EndpointKind::S2sWebSocket | EndpointKind::C2sWebSocket
        )
    }

    /// Whether this is a server-to-server method.
    pub fn is_s2s(self) -> bool {
        matches!(
            self,
            EndpointKind::S2sWebSocket | EndpointKind::S2sDirectTls | EndpointKind::S2sQuic
        )
    }
}

/// One usable connection method from a host-meta document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// What the link describes.
    pub kind: EndpointKind,
    /// WebSocket kinds: the `href`, checked to be a `wss://` URL. `None` for the others.
    pub url: Option<String>,
    /// WebSocket kinds: the URL's host, lower-cased, without IPv6 brackets. `None` for
    /// port-only kinds, whose host is the XMPP domain itself.
    pub host: Option<String>,
    /// The URL's port (443 when it names none), or the link's `port`.
    pub port: u16,
    /// XEP-0487 `ips`: connect to these instead of resolving the host. May be empty.
    pub ips: Vec<IpAddr>,
    /// XEP-0487 / RFC 2782 `priority` (lower first); [`DEFAULT_PRIORITY`] when absent.
    pub priority: u16,
    /// XEP-0487 / RFC 2782 `weight`; [`DEFAULT_WEIGHT`] when absent.
    pub weight: u16,
    /// XEP-0487 `sni`: the name to send in SNI, lower-cased.
    pub sni: Option<String>,
    /// The link's own `ttl` if it carries one, else the document's XEP-0487 `xmpp.ttl`.
    pub ttl: Option<Duration>,
}

/// A link (or document field) that was left out, and why. Also logged at debug level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The link relation, or the document field (`xmpp.ttl`, …).
    pub what: String,
    /// Why it was left out.
    pub reason: String,
}

/// Which format a document came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostMetaFormat {
    /// `host-meta.json`, JRD (RFC 6415 Appendix A).
    Jrd,
    /// `host-meta`, XRD (RFC 6415 §3).
    Xrd,
}

/// The top-level XEP-0487 `xmpp` object. Its presence means the document claims to list
/// every connection method (XEP-0487 §2.2 rule 2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostMeta2 {
    /// `ttl`: how long the document may be cached (mandatory in XEP-0487; `None` if absent
    /// or malformed).
    pub ttl: Option<Duration>,
    /// `public-key-pins-sha-256`, decoded: SHA-256 hashes of SubjectPublicKeyInfo (RFC 7469)
    /// that XEP-0487 allows trusting in place of a CA-verified certificate. Not applied by
    /// this crate.
    pub public_key_pins_sha256: Vec<[u8; 32]>,
}

/// A parsed host-meta document: what weft can use of it, and what it left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMetaDoc {
    /// JRD or XRD.
    pub format: HostMetaFormat,
    /// Usable XMPP endpoints, in document order, duplicates removed.
    pub endpoints: Vec<Endpoint>,
    /// The XEP-0487 `xmpp` object, if present (JRD only).
    pub host_meta2: Option<HostMeta2>,
    /// XMPP links and fields that were left out, with reasons.
    pub rejected: Vec<Rejected>,
}

impl HostMetaDoc {
    pub(crate) fn new(format: HostMetaFormat) -> Self {
        HostMetaDoc {
            format,
            endpoints: Vec::new(),
            host_meta2: None,
            rejected: Vec::new(),
        }
    }

    /// The endpoints of one kind, in document order.
    pub fn endpoints_of(&self, kind: EndpointKind) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(move |e| e.kind == kind)
    }

    /// The document's XEP-0487 cache lifetime, if it states one.
    pub fn ttl(&self) -> Option<Duration> {
        self.host_meta2.as_ref().and_then(|h| h.ttl)
    }

    pub(crate) fn reject(&mut self, what: &str, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::debug!(what, reason = %reason, "host-meta: left out");
        self.rejected.push(Rejected {
            what: what.to_owned(),
            reason,
        });
    }

    /// Add a validated endpoint unless an identical one is already there (duplicate rels
    /// with the same target are common in hand-written files) or the link cap is reached.
    pub(crate) fn push(&mut self, endpoint: Endpoint) {
        let rel = endpoint.kind.rel();
        if self.endpoints.contains(&endpoint) {
            self.reject(rel, "duplicate of an earlier link");
        } else if self.endpoints.len() >= MAX_LINKS {
            self.reject(rel, format!("more than {MAX_LINKS} XMPP links"));
        } else {
            self.endpoints.push(endpoint);
        }
    }
}

/// The raw pieces of one link, whichever format they came from.
#[derive(Default)]
pub(crate) struct LinkParts<'a> {
    pub href: Option<&'a str>,
    pub port: Option<u16>,
    pub ips: Vec<IpAddr>,
    pub priority: Option<u16>,
    pub weight: Option<u16>,
    pub sni: Option<String>,
    pub ttl: Option<Duration>,
}

/// Turn a link's parts into an [`Endpoint`], or say why not.
pub(crate) fn build_endpoint(kind: EndpointKind, parts: LinkParts<'_>) -> Result<Endpoint, String> {
    let (url, host, port) = if kind.uses_href() {
        let href = parts.href.ok_or("no href")?;
        let (host, port) = parse_wss_url(href)?;
        (Some(href.to_owned()), Some(host), port)
    } else {
        // XEP-0487 §2.1: Direct TLS and QUIC links carry a port instead of an href.
        let port = parts.port.ok_or("no port")?;
        (None, None, port)
    };
    Ok(Endpoint {
        kind,
        url,
        host,
        port,
        ips: parts.ips,
        priority: parts.priority.unwrap_or(DEFAULT_PRIORITY),
        weight: parts.weight.unwrap_or(DEFAULT_WEIGHT),
        sni: parts.sni,
        ttl: parts.ttl,
    })
}

/// Check a WebSocket `href` and return its host (lower-cased, unbracketed) and port.
///
/// Only `wss://` is accepted: XEP-0468 makes TLS mandatory for s2s, and XEP-0156 §3.2 rule 1
/// allows only `https`/`wss` connection URLs for c2s too. User information in the URL is
/// refused: it has no meaning for a WebSocket endpoint and is a classic way to disguise the
/// real host.
pub fn parse_wss_url(href: &str) -> Result<(String, u16), String> {
    if href.len() > MAX_HREF_BYTES {
        return Err(format!("href longer than {MAX_HREF_BYTES} bytes"));
    }
    let uri: http::Uri = href
        .parse()
        .map_err(|e| format!("href is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("wss") => {}
        Some(s) => {
            return Err(format!(
            "scheme {s:?} refused: WebSocket endpoints must be wss:// (XEP-0468 §2, XEP-0156 §3.2)"
        ))
        }
        None => return Err("href is not an absolute URL".into()),
    }
    let authority = uri.authority().ok_or("href has no host")?;
    if authority.as_str().contains('@') {
        return Err("user information in the href is refused".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    check_host(&host)?;
    let port = crate::fetch::port_of(authority)
        .map_err(|_| "port not in 1..=65535".to_owned())?
        .unwrap_or(WSS_DEFAULT_PORT);
    Ok((host, port))
}

/// A host must be an IP address or a DNS name rustls can verify a certificate for.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    ServerName::try_from(host)
        .map(|_| ())
        .map_err(|_| format!("{host:?} is neither a DNS name nor an IP address"))
}

/// Check an XEP-0487 `sni` value: a DNS name (SNI cannot carry an IP address, RFC 6066 §3).
pub(crate) fn parse_sni(sni: &str) -> Result<String, String> {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    match ServerName::try_from(sni.as_str()) {
        Ok(ServerName::DnsName(_)) => Ok(sni),
        _ => Err(format!("sni {sni:?} is not a DNS name")),
    }
}

/// Check one XEP-0487 `ips` entry. Addresses nobody can connect to (unspecified, multicast,
/// broadcast) are refused; loopback and private ranges are allowed because test setups and
/// special deployments use them (the same holds for DNS answers).
pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} in ips is not an IP address"))?;
    let unusable = ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if unusable {
        return Err(format!("{ip} in ips cannot be connected to"));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wss_urls() {
        assert_eq!(
            parse_wss_url("wss://Other.Example.org/xmpp-websocket"),
            Ok(("other.example.org".into(), 443))
        );
        assert_eq!(
            parse_wss_url("wss://web.example.com:5281/ws?x=1"),
            Ok(("web.example.com".into(), 5281))
        );
        assert_eq!(
            parse_wss_url("WSS://[fd00::1]:8443/ws"),
            Ok(("fd00::1".into(), 8443))
        );
        assert_eq!(
            parse_wss_url("wss://192.0.2.1/ws"),
            Ok(("192.0.2.1".into(), 443))
        );
    }

    #[test]
    fn non_wss_urls_are_refused() {
        for bad in [
            "ws://example.org/ws",
            "https://example.org/ws",
            "http://example.org/",
            "/relative/ws",
            "wss://",
            "wss://user:pw@example.org/ws",
            "wss://example.org:0/ws",
            "wss://exa mple.org/ws",
            "wss://example.org:99999/ws",
            "",
            "wss://-",
        ] {
            assert!(parse_wss_url(bad).is_err(), "{bad} accepted");
        }
        let long = format!("wss://example.org/{}", "a".repeat(MAX_HREF_BYTES));
        assert!(parse_wss_url(&long).is_err());
    }

    #[test]
    fn sni_and_ips() {
        assert_eq!(parse_sni("Example.ORG."), Ok("example.org".into()));
        assert!(parse_sni("1.2.3.4").is_err());
        assert!(parse_sni("not a name").is_err());
        assert!(parse_ip("fd00:feed:dad:beef::1").is_ok());
        assert!(parse_ip("127.0.0.1").is_ok());
        for bad in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "1.2.3",
            "x",
        ] {
            assert!(parse_ip(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            EndpointKind::S2sWebSocket,
            EndpointKind::C2sWebSocket,
            EndpointKind::S2sDirectTls,
            EndpointKind::C2sDirectTls,
            EndpointKind::S2sQuic,
            EndpointKind::C2sQuic,
        ] {
            assert_eq!(EndpointKind::from_rel(kind.rel()), Some(kind));
        }
        assert_eq!(
            EndpointKind::from_rel("urn:xmpp:alt-connections:xbosh"),
            None
        );
    }
}
