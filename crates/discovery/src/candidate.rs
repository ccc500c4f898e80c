//! RFC 6120 §3.2, XEP-0368, XEP-0468, XEP-0487: the connection candidates for one remote domain, which certificate names each may present (RFC 7395 §6 delegation), and their assembly in the operator's transport order. No I/O.

use std::net::SocketAddr;

use rustls::pki_types::ServerName;

use crate::config::TransportPref;

/// One way to reach a remote domain, to be tried in list order until one yields an
/// authenticated stream (XEP-0487 §5.2: keep trying every candidate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// s2s over WebSocket (XEP-0468), from host-meta.
    WebSocket {
        /// The `wss://` URL to open (subprotocol `xmpp`).
        url: String,
        /// Where to connect: the link's XEP-0487 `ips` on the URL's port, or the URL host's
        /// resolved addresses. Never empty.
        connect_addrs: Vec<SocketAddr>,
        /// The name to send as SNI: the link's XEP-0487 `sni`, else the URL's host, else
        /// (for an IP-literal URL) the XMPP domain.
        sni: String,
        /// Whether the link came from a host-meta document fetched over HTTPS with a
        /// verified certificate (always so for documents fetched by this crate). Only then
        /// may the peer certificate be valid for the URL's host or `sni` instead of the
        /// XMPP domain (RFC 7395 §6, XEP-0156 §3.2 rule 1). See
        /// [`Candidate::reference_names`].
        verified_via_https: bool,
    },
    /// TLS from the first byte (XEP-0368), ALPN `xmpp-server`.
    DirectTls {
        /// The SRV target, or for an XEP-0487 `s2s-tls` link the XMPP domain.
        host: String,
        /// The port to connect to.
        port: u16,
        /// Resolved addresses of `host` (or the link's `ips`) on `port`. Never empty.
        addrs: Vec<SocketAddr>,
        /// SNI: the XMPP domain for SRV records (XEP-0368 §3 rule 6); an XEP-0487 link's
        /// `sni` if it has one.
        sni: String,
        /// `true` for an XEP-0487 `s2s-tls` link from verified HTTPS host-meta (the peer may
        /// then present a certificate for `sni`); `false` for SRV, where only the XMPP
        /// domain is acceptable (no DNSSEC here).
        verified_via_https: bool,
    },
    /// Plain TCP, then STARTTLS (RFC 6120 §5): an `_xmpp-server._tcp` SRV target or the
    /// domain itself on 5269. SNI and the accepted certificate name are the XMPP domain.
    StartTls {
        /// The SRV target, or the XMPP domain for the 5269 fallback.
        host: String,
        /// The port to connect to.
        port: u16,
        /// Resolved addresses. Never empty.
        addrs: Vec<SocketAddr>,
    },
}

impl Candidate {
    /// The socket addresses to try for this candidate, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        match self {
            Candidate::WebSocket { connect_addrs, .. } => connect_addrs,
            Candidate::DirectTls { addrs, .. } | Candidate::StartTls { addrs, .. } => addrs,
        }
    }

    /// The transport this candidate uses.
    pub fn transport(&self) -> TransportPref {
        match self {
            Candidate::WebSocket { .. } => TransportPref::WebSocket,
            Candidate::DirectTls { .. } => TransportPref::DirectTls,
            Candidate::StartTls { .. } => TransportPref::StartTls,
        }
    }

    /// The DNS names (lower case) a peer certificate may be valid for so that this
    /// connection authenticates `domain`.
    ///
    /// Always `domain` (RFC 6125 / RFC 6120 §13.7.2). For candidates from host-meta fetched
    /// over verified HTTPS, also the delegated endpoint: the WebSocket URL's host and the
    /// XEP-0487 `sni` (RFC 7395 §6 item 2, XEP-0156 §3.2 rule 1, XEP-0487 §2.2 rule 1).
    /// Never widened for SRV answers: without DNSSEC they are not a secure delegation.
    pub fn reference_names(&self, domain: &str) -> Vec<String> {
        let mut names = vec![domain.trim_end_matches('.').to_ascii_lowercase()];
        let mut add = |name: &str| {
            let is_dns = matches!(ServerName::try_from(name), Ok(ServerName::DnsName(_)));
            if is_dns && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        };
        match self {
            Candidate::WebSocket {
                url,
                sni,
                verified_via_https: true,
                ..
            } => {
                if let Ok((host, _)) = crate::endpoint::parse_wss_url(url) {
                    add(&host);
                }
                add(sni);
            }
            Candidate::DirectTls {
                sni,
                verified_via_https: true,
                ..
            } => add(sni),
            _ => {}
        }
        names
    }

    fn matches(&self, pref: TransportPref) -> bool {
        match pref {
            TransportPref::WebSocket => matches!(self, Candidate::WebSocket { .. }),
            TransportPref::Tcp => !matches!(self, Candidate::WebSocket { .. }),
            TransportPref::DirectTls => matches!(self, Candidate::DirectTls { .. }),
            TransportPref::StartTls => matches!(self, Candidate::StartTls { .. }),
        }
    }
}

/// Arrange candidates by the operator's preference: for each preference in turn, the
/// candidates of that transport in their given (priority/weight) order, each candidate at
/// most once. An empty `order` means [`TransportPref::DEFAULT`].
pub(crate) fn arrange(
    websocket: Vec<Candidate>,
    tcp: Vec<Candidate>,
    order: &[TransportPref],
) -> Vec<Candidate> {
    let order = if order.is_empty() {
        TransportPref::DEFAULT
    } else {
        order
    };
    let all: Vec<Candidate> = websocket.into_iter().chain(tcp).collect();
    let mut taken = vec![false; all.len()];
    let mut out = Vec::with_capacity(all.len());
    for &pref in order {
        for (i, candidate) in all.iter().enumerate() {
            if !taken[i] && candidate.matches(pref) {
                taken[i] = true;
                if !out.contains(candidate) {
                    out.push(candidate.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(url: &str, verified: bool) -> Candidate {
        Candidate::WebSocket {
            url: url.into(),
            connect_addrs: vec!["127.0.0.1:443".parse().unwrap()],
            sni: "b.test".into(),
            verified_via_https: verified,
        }
    }

    fn dtls(host: &str) -> Candidate {
        Candidate::DirectTls {
            host: host.into(),
            port: 5270,
            addrs: vec!["127.0.0.1:5270".parse().unwrap()],
            sni: "b.test".into(),
            verified_via_https: false,
        }
    }

    fn stls(host: &str) -> Candidate {
        Candidate::StartTls {
            host: host.into(),
            port: 5269,
            addrs: vec!["127.0.0.1:5269".parse().unwrap()],
        }
    }

    #[test]
    fn arrangement_follows_preference() {
        let w = vec![ws("wss://h.test/ws", true)];
        let tcp = vec![stls("s1"), dtls("d1"), stls("s2")];
        assert_eq!(
            arrange(w.clone(), tcp.clone(), &[]),
            vec![w[0].clone(), stls("s1"), dtls("d1"), stls("s2")]
        );
        assert_eq!(
            arrange(
                w.clone(),
                tcp.clone(),
                &[TransportPref::Tcp, TransportPref::WebSocket]
            ),
            vec![stls("s1"), dtls("d1"), stls("s2"), w[0].clone()]
        );
        assert_eq!(
            arrange(
                w.clone(),
                tcp.clone(),
                &[TransportPref::DirectTls, TransportPref::StartTls]
            ),
            vec![dtls("d1"), stls("s1"), stls("s2")]
        );
        // Tcp after DirectTls adds only what is left; repeats add nothing.
        assert_eq!(
            arrange(
                w.clone(),
                tcp.clone(),
                &[
                    TransportPref::DirectTls,
                    TransportPref::Tcp,
                    TransportPref::Tcp
                ]
            ),
            vec![dtls("d1"), stls("s1"), stls("s2")]
        );
        assert_eq!(arrange(w, vec![], &[TransportPref::StartTls]), vec![]);
        assert_eq!(
            arrange(vec![], vec![stls("s"), stls("s")], &[]),
            vec![stls("s")]
        );
    }

    #[test]
    fn reference_names_widen_only_for_verified_host_meta() {
        assert_eq!(
            ws("wss://Host.example/ws", true).reference_names("B.test."),
            ["b.test", "host.example"]
        );
        assert_eq!(
            ws("wss://host.example/ws", false).reference_names("b.test"),
            ["b.test"]
        );
        assert_eq!(
            ws("wss://127.0.0.1/ws", true).reference_names("b.test"),
            ["b.test"]
        );
        let hm_tls = Candidate::DirectTls {
            host: "b.test".into(),
            port: 443,
            addrs: vec!["127.0.0.1:443".parse().unwrap()],
            sni: "hosting.example".into(),
            verified_via_https: true,
        };
        assert_eq!(
            hm_tls.reference_names("b.test"),
            ["b.test", "hosting.example"]
        );
        assert_eq!(dtls("xmpp.b.test").reference_names("b.test"), ["b.test"]);
        assert_eq!(stls("xmpp.b.test").reference_names("b.test"), ["b.test"]);
    }
}
