//! RFC 6120 §3.2 name resolution for s2s: SRV and A/AAAA answers from static overrides first, then from hickory-resolver (system configuration or caller-given name servers).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::config::{normalise, DnsMode, Overrides};
use crate::error::LookupError;
use crate::srv::{SrvAnswer, SrvRecord};

/// At most this many addresses per host are used.
pub(crate) const MAX_ADDRS_PER_HOST: usize = 16;

/// Overrides plus the real resolver.
pub(crate) struct Resolver {
    overrides: Overrides,
    backend: Backend,
}

enum Backend {
    Dns(Box<TokioResolver>),
    StaticOnly,
    /// The resolver could not be built; every lookup that reaches DNS fails with this.
    Unavailable(String),
}

impl Resolver {
    /// Build the resolver. Never fails: a resolver that cannot be built (unreadable
    /// `/etc/resolv.conf`, …) is remembered and reported on each DNS lookup, so that
    /// overrides keep working; [`Resolver::build_error`] exposes it for `try_new`.
    pub(crate) fn new(mode: &DnsMode, query_timeout: Duration, overrides: Overrides) -> Self {
        let backend = match build(mode, query_timeout) {
            Ok(Some(r)) => Backend::Dns(Box::new(r)),
            Ok(None) => Backend::StaticOnly,
            Err(e) => {
                tracing::warn!(error = %e, "s2s discovery: DNS resolver unavailable");
                Backend::Unavailable(e)
            }
        };
        Resolver { overrides, backend }
    }

    pub(crate) fn build_error(&self) -> Option<&str> {
        match &self.backend {
            Backend::Unavailable(e) => Some(e),
            _ => None,
        }
    }

    /// One SRV lookup, e.g. `_xmpp-server._tcp.example.org`.
    pub(crate) async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupError> {
        let key = normalise(name);
        let records = match self.overrides.srv.get(&key) {
            Some(records) => records.clone(),
            None => match &self.backend {
                Backend::StaticOnly => return Err(LookupError::NxDomain(key)),
                Backend::Unavailable(e) => return Err(unavailable(&key, e)),
                Backend::Dns(r) => {
                    // A trailing dot makes the name absolute: no search-domain guessing.
                    let lookup = r
                        .srv_lookup(format!("{key}."))
                        .await
                        .map_err(|e| map_error(&key, &e))?;
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::SRV(srv) => Some(SrvRecord::new(
                                srv.priority,
                                srv.weight,
                                srv.port,
                                &srv.target.to_ascii(),
                            )),
                            _ => None,
                        })
                        .collect()
                }
            },
        };
        SrvAnswer::from_records(records).ok_or(LookupError::NoRecords(key))
    }

    /// A and AAAA for `host` (an IP literal is its own answer).
    pub(crate) async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        let key = normalise(host);
        let mut ips: Vec<IpAddr> = match self.overrides.addrs.get(&key) {
            Some(ips) => ips.clone(),
            None => match &self.backend {
                Backend::StaticOnly => return Err(LookupError::NxDomain(key)),
                Backend::Unavailable(e) => return Err(unavailable(&key, e)),
                Backend::Dns(r) => r
                    .lookup_ip(format!("{key}."))
                    .await
                    .map_err(|e| map_error(&key, &e))?
                    .iter()
                    .collect(),
            },
        };
        ips.dedup();
        ips.truncate(MAX_ADDRS_PER_HOST);
        if ips.is_empty() {
            return Err(LookupError::NoRecords(key));
        }
        Ok(ips)
    }

    /// Socket addresses for `host:port`.
    pub(crate) async fn socket_addrs(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, LookupError> {
        Ok(self
            .addrs(host)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

fn build(mode: &DnsMode, query_timeout: Duration) -> Result<Option<TokioResolver>, String> {
    let mut builder = match mode {
        DnsMode::StaticOnly => return Ok(None),
        DnsMode::System => TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?,
        DnsMode::Nameservers(servers) => {
            if servers.is_empty() {
                return Err("no name servers configured".into());
            }
            let name_servers = servers
                .iter()
                .map(|addr| {
                    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut c| {
                            c.port = addr.port();
                            c
                        })
                        .collect();
                    NameServerConfig::new(addr.ip(), true, connections)
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                TokioRuntimeProvider::default(),
            )
        }
    };
    // Both families: the caller decides how to race them (happy eyeballs is a connect
    // concern, not a discovery one).
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.options_mut().timeout = query_timeout;
    builder
        .build()
        .map(Some)
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

fn unavailable(name: &str, reason: &str) -> LookupError {
    LookupError::Failed {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

fn map_error(name: &str, e: &NetError) -> LookupError {
    if e.is_nx_domain() {
        LookupError::NxDomain(name.to_owned())
    } else if e.is_no_records_found() {
        LookupError::NoRecords(name.to_owned())
    } else if matches!(e, NetError::Timeout) {
        LookupError::Timeout(name.to_owned())
    } else {
        LookupError::Failed {
            name: name.to_owned(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_answers_and_static_only_nxdomain() {
        let overrides = Overrides::default()
            .srv(
                "_xmpp-server._tcp.B.test.",
                vec![SrvRecord::new(0, 0, 5269, "xmpp.b.test.")],
            )
            .srv(
                "_xmpps-server._tcp.b.test",
                vec![SrvRecord::new(0, 0, 0, ".")],
            )
            .srv("_xmpp-server._tcp.empty.test", vec![])
            .addrs("xmpp.b.test", vec!["127.0.0.2".parse().unwrap()])
            .addrs("none.test", vec![]);
        let r = Resolver::new(&DnsMode::StaticOnly, Duration::from_secs(1), overrides);
        assert!(r.build_error().is_none());
        assert_eq!(
            r.srv("_xmpp-server._tcp.b.test").await,
            Ok(SrvAnswer::Records(vec![SrvRecord::new(
                0,
                0,
                5269,
                "xmpp.b.test"
            )]))
        );
        assert_eq!(
            r.srv("_xmpps-server._tcp.b.test").await,
            Ok(SrvAnswer::NotOffered)
        );
        assert!(matches!(
            r.srv("_xmpp-server._tcp.empty.test").await,
            Err(LookupError::NoRecords(_))
        ));
        assert!(matches!(
            r.srv("_xmpp-server._tcp.c.test").await,
            Err(LookupError::NxDomain(_))
        ));
        assert_eq!(
            r.socket_addrs("XMPP.b.test", 5270).await,
            Ok(vec!["127.0.0.2:5270".parse().unwrap()])
        );
        assert_eq!(r.addrs("[::1]").await, Ok(vec!["::1".parse().unwrap()]));
        assert!(matches!(
            r.addrs("none.test").await,
            Err(LookupError::NoRecords(_))
        ));
        assert!(matches!(
            r.addrs("c.test").await,
            Err(LookupError::NxDomain(_))
        ));
    }

    /// `Discovery::new` may run before the runtime exists (configuration loading).
    #[test]
    fn builds_outside_a_runtime() {
        for mode in [
            DnsMode::System,
            DnsMode::Nameservers(vec!["127.0.0.1:53".parse().unwrap()]),
        ] {
            let r = Resolver::new(&mode, Duration::from_secs(1), Overrides::default());
            if let Some(e) = r.build_error() {
                // A machine without /etc/resolv.conf: reported, not a panic.
                assert!(mode == DnsMode::System, "{e}");
            }
        }
    }

    #[tokio::test]
    async fn no_nameservers_is_reported_not_fatal() {
        let overrides = Overrides::default().addrs("a.test", vec!["127.0.0.1".parse().unwrap()]);
        let r = Resolver::new(
            &DnsMode::Nameservers(vec![]),
            Duration::from_secs(1),
            overrides,
        );
        assert!(r.build_error().is_some());
        assert!(r.addrs("a.test").await.is_ok());
        assert!(matches!(
            r.addrs("b.test").await,
            Err(LookupError::Failed { .. })
        ));
    }
}
