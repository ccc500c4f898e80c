//! RFC 6120 §3.2, XEP-0156, XEP-0368, XEP-0468, XEP-0487: the one entry point — host-meta (JRD, then XRD, cached) and SRV lookups for a remote domain, turned into an ordered list of connection candidates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::join_all;
use rustls::pki_types::ServerName;
use tokio::time::{timeout, Instant};

use crate::cache::Cache;
use crate::candidate::{arrange, Candidate};
use crate::config::{normalise, DiscoveryConfig, TransportPref};
use crate::dns::Resolver;
use crate::endpoint::{Endpoint, EndpointKind};
use crate::error::{DiscoveryError, HostMetaError, LookupError};
use crate::fetch::{Fetcher, HttpsUrl, Pin};
use crate::srv::{plan_tcp, rfc2782_order, SrvRecord, TcpPlan, TcpService, XMPP_SERVER_PORT};
use crate::{parse_jrd, parse_xrd, HostMeta};

const JRD_PATH: &str = "/.well-known/host-meta.json";
const XRD_PATH: &str = "/.well-known/host-meta";
const ACCEPT_JRD: &str = "application/jrd+json, application/json;q=0.9";
const ACCEPT_XRD: &str = "application/xrd+xml, application/xml;q=0.9, text/xml;q=0.8";

/// Finds where to connect for s2s to a remote domain. Cheap to clone (shared state); the
/// host-meta cache is shared between clones.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    config: DiscoveryConfig,
    resolver: Resolver,
    fetcher: Fetcher,
    cache: Cache,
    /// Parsed host-meta base overrides: the pin and the path prefix, or why unusable.
    bases: HashMap<String, Result<(Pin, String), String>>,
}

/// One source of candidates, waiting for its addresses.
enum Pending {
    WebSocket(Endpoint),
    HostMetaTls(Endpoint),
    Srv(TcpService, SrvRecord),
    Fallback,
}

impl Discovery {
    /// Build from `config`. Never fails: an unusable part of the configuration (a resolver
    /// that cannot be built, a bad override URL) is logged and reported by the lookups that
    /// need it. Use [`Discovery::try_new`] to refuse such a configuration at start-up.
    pub fn new(config: DiscoveryConfig) -> Discovery {
        let resolver = Resolver::new(&config.dns, config.dns_timeout, config.overrides.clone());
        let fetcher = Fetcher::new(&config.tls, config.http);
        let cache = Cache::new(config.cache);
        let bases = config
            .overrides
            .host_meta_base
            .iter()
            .map(|(domain, base)| (domain.clone(), parse_base(domain, base)))
            .collect();
        Discovery {
            inner: Arc::new(Inner {
                config,
                resolver,
                fetcher,
                cache,
                bases,
            }),
        }
    }

    /// Like [`Discovery::new`], but an unusable DNS configuration or override is an error.
    pub fn try_new(config: DiscoveryConfig) -> Result<Discovery, DiscoveryError> {
        let discovery = Discovery::new(config);
        if let Some(e) = discovery.inner.resolver.build_error() {
            return Err(DiscoveryError::Config(e.to_owned()));
        }
        for (domain, base) in &discovery.inner.bases {
            if let Err(reason) = base {
                return Err(DiscoveryError::Config(format!(
                    "host-meta override for {domain}: {reason}"
                )));
            }
        }
        Ok(discovery)
    }

    /// The configuration in use.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.inner.config
    }

    /// Forget all cached host-meta results.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// The host-meta document of `domain`, from the cache or fetched: `host-meta.json`
    /// first, then `host-meta` (XEP-0156 §3), over verified HTTPS only, within
    /// [`crate::HttpLimits`]. Failures are cached too (negative TTL).
    pub async fn host_meta(&self, domain: &str) -> Result<Arc<HostMeta>, HostMetaError> {
        let domain = normalise_domain(domain).map_err(|reason| HostMetaError::InvalidDomain {
            domain: domain.to_owned(),
            reason,
        })?;
        let inner = &self.inner;
        let slot = inner.cache.slot(&domain, Instant::now());
        let entry = slot
            .cell
            .get_or_init(|| async {
                let limit = inner.config.http.total_timeout;
                let result = match timeout(limit, self.fetch_host_meta(&domain)).await {
                    Ok(result) => result,
                    Err(_) => Err(HostMetaError::Timeout {
                        domain: domain.clone(),
                        after: limit,
                    }),
                };
                match &result {
                    Ok(hm) => tracing::debug!(%domain, url = %hm.url, endpoints = hm.doc.endpoints.len(), "host-meta fetched"),
                    Err(e) => tracing::debug!(%domain, error = %e, "no host-meta"),
                }
                inner.cache.entry(&slot, result, Instant::now())
            })
            .await;
        entry.result.clone()
    }

    async fn fetch_host_meta(&self, domain: &str) -> Result<HostMeta, HostMetaError> {
        let inner = &self.inner;
        let (pin, prefix) = match inner.bases.get(domain) {
            None => (None, ""),
            Some(Ok((pin, prefix))) => (Some(pin), prefix.as_str()),
            Some(Err(reason)) => {
                return Err(HostMetaError::BadOverride {
                    domain: domain.to_owned(),
                    base: inner.config.overrides.host_meta_base[domain].clone(),
                    reason: reason.clone(),
                })
            }
        };
        let url = |path: &str| HttpsUrl {
            host: domain.to_owned(),
            port: 443,
            path: format!("{prefix}{path}"),
        };
        let resolver = &inner.resolver;
        let json = match inner
            .fetcher
            .get(resolver, url(JRD_PATH), pin, ACCEPT_JRD)
            .await
        {
            Ok(fetched) => match parse_jrd(&fetched.body) {
                Ok(doc) => return Ok(host_meta(doc, fetched.url)),
                Err(e) => e,
            },
            // XRD lives on the same host; it would fail the same way, only later.
            Err(e) if e.is_transport() => return Err(e),
            Err(e) => e,
        };
        tracing::debug!(%domain, error = %json, "host-meta.json unusable; trying host-meta");
        let xml = match inner
            .fetcher
            .get(resolver, url(XRD_PATH), pin, ACCEPT_XRD)
            .await
        {
            Ok(fetched) => match parse_xrd(&fetched.body) {
                Ok(doc) => return Ok(host_meta(doc, fetched.url)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        Err(HostMetaError::BothFailed {
            json: Box::new(json),
            xml: Box::new(xml),
        })
    }

    /// Where to connect for s2s to `domain`, best first, in the operator's `order` of
    /// transports (empty: [`TransportPref::DEFAULT`]).
    ///
    /// * WebSocket: `s2s-websocket` links of the (cached) host-meta document, by XEP-0487
    ///   priority and weight.
    /// * TCP: XEP-0487 `s2s-tls` links, then `_xmpps-server._tcp` and `_xmpp-server._tcp`
    ///   SRV targets mixed by RFC 2782 priority and weight (XEP-0368 §3), or the domain on
    ///   5269 when there are no SRV records (RFC 6120 §3.2.2). Skipped when an XEP-0487
    ///   document offers s2s endpoints and [`DiscoveryConfig::skip_srv_for_host_meta2`].
    ///
    /// Host-meta and SRV are looked up concurrently; every candidate's addresses are
    /// resolved before returning, so the caller only connects. A failure of one source only
    /// removes its candidates; the error comes when nothing is left.
    pub async fn s2s_candidates(
        &self,
        domain: &str,
        order: &[TransportPref],
    ) -> Result<Vec<Candidate>, DiscoveryError> {
        let domain = normalise_domain(domain).map_err(|reason| DiscoveryError::InvalidDomain {
            domain: domain.to_owned(),
            reason,
        })?;
        let order = if order.is_empty() {
            TransportPref::DEFAULT
        } else {
            order
        };
        let want_ws = order.contains(&TransportPref::WebSocket);
        let want_tcp = order.iter().any(|p| *p != TransportPref::WebSocket);
        let resolver = &self.inner.resolver;
        let host_meta = async {
            match want_ws {
                true => Some(self.host_meta(&domain).await),
                false => None,
            }
        };
        let (xmpps_name, xmpp_name) = (
            format!("_xmpps-server._tcp.{domain}"),
            format!("_xmpp-server._tcp.{domain}"),
        );
        let srv = async {
            match want_tcp {
                true => Some(tokio::join!(
                    resolver.srv(&xmpps_name),
                    resolver.srv(&xmpp_name)
                )),
                false => None,
            }
        };
        let (host_meta, srv) = tokio::join!(host_meta, srv);

        let mut failures = Failures::default();
        let mut pending = Vec::new();
        let mut skip_srv = false;
        match host_meta {
            Some(Ok(hm)) => {
                let mut rng = rand::thread_rng();
                let of = |kind| hm.doc.endpoints_of(kind).cloned().collect::<Vec<_>>();
                let key = |e: &Endpoint| (e.priority, e.weight);
                let ws = rfc2782_order(of(EndpointKind::S2sWebSocket), key, &mut rng);
                let tls = rfc2782_order(of(EndpointKind::S2sDirectTls), key, &mut rng);
                let offers_tls = want_tcp && !tls.is_empty();
                if ws.is_empty() && !offers_tls {
                    failures.note(format!(
                        "host-meta of {domain} offers no s2s-websocket link"
                    ));
                }
                skip_srv = self.inner.config.skip_srv_for_host_meta2
                    && hm.doc.host_meta2.is_some()
                    && !(ws.is_empty() && tls.is_empty());
                pending.extend(ws.into_iter().map(Pending::WebSocket));
                if want_tcp {
                    pending.extend(tls.into_iter().map(Pending::HostMetaTls));
                }
            }
            Some(Err(e)) => failures.host_meta(&e),
            None => {}
        }
        if let Some((xmpps, xmpp)) = srv.filter(|_| !skip_srv) {
            for answer in [&xmpps, &xmpp] {
                if let Err(e) = answer {
                    failures.lookup(e, false);
                }
            }
            match plan_tcp(&xmpps, &xmpp, &mut rand::thread_rng()) {
                TcpPlan::Targets(targets) => {
                    pending.extend(targets.into_iter().map(|(s, r)| Pending::Srv(s, r)));
                }
                TcpPlan::Fallback => pending.push(Pending::Fallback),
                TcpPlan::NotOffered => failures.not_offered = true,
            }
        }

        let resolved = join_all(pending.into_iter().map(|p| self.resolve(&domain, p))).await;
        let (mut websocket, mut tcp) = (Vec::new(), Vec::new());
        for result in resolved {
            match result {
                Ok(c @ Candidate::WebSocket { .. }) => websocket.push(c),
                Ok(c) => tcp.push(c),
                Err((e, is_domain)) => failures.lookup(&e, is_domain),
            }
        }
        let candidates = arrange(websocket, tcp, order);
        if candidates.is_empty() {
            return Err(failures.into_error(domain));
        }
        tracing::debug!(%domain, count = candidates.len(), left_out = ?failures.reasons, "s2s candidates");
        Ok(candidates)
    }

    /// Resolve one pending source into a candidate. The error says whether the name that
    /// failed was the XMPP domain itself (for `NotFound`).
    async fn resolve(
        &self,
        domain: &str,
        pending: Pending,
    ) -> Result<Candidate, (LookupError, bool)> {
        let resolver = &self.inner.resolver;
        let with_ips = |e: &Endpoint| -> Vec<SocketAddr> {
            e.ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, e.port))
                .collect()
        };
        match pending {
            Pending::WebSocket(e) => {
                let host = e.host.clone().unwrap_or_else(|| domain.to_owned());
                let connect_addrs = match with_ips(&e) {
                    ips if !ips.is_empty() => ips,
                    _ => resolver
                        .socket_addrs(&host, e.port)
                        .await
                        .map_err(|err| (err, host == domain))?,
                };
                let host_is_dns = matches!(
                    ServerName::try_from(host.as_str()),
                    Ok(ServerName::DnsName(_))
                );
                let sni = e.sni.clone().unwrap_or_else(|| match host_is_dns {
                    true => host.clone(),
                    false => domain.to_owned(),
                });
                Ok(Candidate::WebSocket {
                    url: e.url.clone().unwrap_or_default(),
                    connect_addrs,
                    sni,
                    verified_via_https: true,
                })
            }
            Pending::HostMetaTls(e) => {
                // XEP-0487 links without `ips` (mandatory there) name no host but the domain.
                let addrs = match with_ips(&e) {
                    ips if !ips.is_empty() => ips,
                    _ => resolver
                        .socket_addrs(domain, e.port)
                        .await
                        .map_err(|err| (err, true))?,
                };
                Ok(Candidate::DirectTls {
                    host: domain.to_owned(),
                    port: e.port,
                    addrs,
                    sni: e.sni.unwrap_or_else(|| domain.to_owned()),
                    verified_via_https: true,
                })
            }
            Pending::Srv(service, record) => {
                let addrs = resolver
                    .socket_addrs(&record.target, record.port)
                    .await
                    .map_err(|err| (err, record.target == domain))?;
                Ok(match service {
                    TcpService::DirectTls => Candidate::DirectTls {
                        host: record.target,
                        port: record.port,
                        addrs,
                        sni: domain.to_owned(),
                        verified_via_https: false,
                    },
                    TcpService::StartTls => Candidate::StartTls {
                        host: record.target,
                        port: record.port,
                        addrs,
                    },
                })
            }
            Pending::Fallback => {
                let addrs = resolver
                    .socket_addrs(domain, XMPP_SERVER_PORT)
                    .await
                    .map_err(|err| (err, true))?;
                Ok(Candidate::StartTls {
                    host: domain.to_owned(),
                    port: XMPP_SERVER_PORT,
                    addrs,
                })
            }
        }
    }
}

fn host_meta(doc: crate::HostMetaDoc, url: String) -> HostMeta {
    HostMeta {
        doc,
        url,
        // Fetcher only speaks HTTPS with rustls verifying the certificate for the URL's
        // host (or, under an override, for the domain); there is no unverified path.
        verified_via_https: true,
    }
}

/// Lower case, no trailing dot, and a DNS name (not an IP literal).
fn normalise_domain(domain: &str) -> Result<String, String> {
    let d = normalise(domain);
    if d.is_empty() {
        return Err("empty".into());
    }
    if d.len() > 253 {
        return Err("longer than 253 bytes".into());
    }
    match ServerName::try_from(d.as_str()) {
        Ok(ServerName::DnsName(_)) => Ok(d),
        Ok(_) => Err("an IP address has no SRV records or host-meta".into()),
        Err(_) => Err("not a valid DNS name".into()),
    }
}

/// A host-meta base override: `https://` only; the pin goes to its host and port, its path
/// becomes a prefix.
fn parse_base(domain: &str, base: &str) -> Result<(Pin, String), String> {
    let url = HttpsUrl::parse(base).map_err(|scheme| match scheme {
        Some(s) => format!("scheme {s} refused: host-meta is fetched over HTTPS only"),
        None => "not an https:// URL with a host".to_owned(),
    })?;
    if url.path.contains('?') {
        return Err("a query is not allowed".into());
    }
    let prefix = url.path.trim_end_matches('/').to_owned();
    Ok((
        Pin {
            host: domain.to_owned(),
            connect_host: url.host,
            connect_port: url.port,
        },
        prefix,
    ))
}

/// What went wrong on the way, to pick the error when nothing is left.
#[derive(Default)]
struct Failures {
    reasons: Vec<String>,
    timeout: bool,
    not_offered: bool,
    /// Some failure was not "the domain does not exist".
    other: bool,
    /// Some lookup said the domain itself does not exist.
    domain_missing: bool,
}

impl Failures {
    fn note(&mut self, reason: String) {
        self.other = true;
        self.reasons.push(reason);
    }

    fn host_meta(&mut self, e: &HostMetaError) {
        self.timeout |= e.is_timeout();
        match e {
            HostMetaError::Resolve {
                not_found: true, ..
            } => self.domain_missing = true,
            _ => self.other = true,
        }
        self.reasons.push(format!("host-meta: {e}"));
    }

    fn lookup(&mut self, e: &LookupError, is_domain: bool) {
        self.timeout |= matches!(e, LookupError::Timeout(_));
        if is_domain && e.is_empty_answer() {
            self.domain_missing = true;
        } else if !e.is_empty_answer() {
            self.other = true;
        }
        self.reasons.push(format!("DNS: {e}"));
    }

    /// A timeout wins over "not offered": an unreachable host-meta may well have offered
    /// WebSocket even where SRV says "no TCP service".
    fn into_error(self, domain: String) -> DiscoveryError {
        if self.timeout {
            DiscoveryError::Timeout {
                domain,
                reasons: self.reasons,
            }
        } else if self.not_offered {
            DiscoveryError::NotOffered { domain }
        } else if self.domain_missing && !self.other {
            DiscoveryError::NotFound { domain }
        } else {
            let mut reasons = self.reasons;
            if reasons.is_empty() {
                reasons.push("no transport in the preference list applies".into());
            }
            DiscoveryError::NoCandidates { domain, reasons }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The s2s layer spawns these futures: they must be Send, and the handle shareable.
    #[allow(dead_code)]
    fn futures_are_send(d: &Discovery) {
        fn send<T: Send>(_: T) {}
        fn sync<T: Send + Sync + Clone + 'static>(_: &T) {}
        send(d.s2s_candidates("b.test", &[]));
        send(d.host_meta("b.test"));
        sync(d);
    }

    #[test]
    fn domains() {
        assert_eq!(normalise_domain("B.Test."), Ok("b.test".into()));
        for bad in ["", ".", "127.0.0.1", "::1", "a b", &"a".repeat(300)] {
            assert!(normalise_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bases() {
        let (pin, prefix) = parse_base("b.test", "https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (pin.connect_host.as_str(), pin.connect_port, prefix.as_str()),
            ("127.0.0.1", 8443, "")
        );
        let (_, prefix) = parse_base("b.test", "https://localhost/hm/").unwrap();
        assert_eq!(prefix, "/hm");
        assert!(parse_base("b.test", "http://127.0.0.1:8080")
            .unwrap_err()
            .contains("HTTPS only"));
        assert!(parse_base("b.test", "https://x/?q").is_err());
        assert!(parse_base("b.test", "127.0.0.1:8443").is_err());
    }
}
