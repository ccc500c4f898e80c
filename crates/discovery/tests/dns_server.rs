//! RFC 6120 §3.2 / XEP-0368 through real DNS: a tiny in-process UDP name server on 127.0.0.1 (built from hickory-proto messages) queried by `DnsMode::Nameservers`.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use weft_discovery::{Candidate, Discovery, DiscoveryError, DnsMode, Overrides, TransportPref};

/// One zone: answers for (name, type); names absent from every entry are NXDOMAIN.
struct Zone(Vec<(&'static str, RecordType, RData)>);

struct DnsServer {
    addr: SocketAddr,
    queries: Arc<Mutex<Vec<String>>>,
    _task: JoinSet<()>,
}

impl DnsServer {
    async fn start(zone: Zone) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let log = queries.clone();
        let mut task = JoinSet::new();
        task.spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = request.queries.first().cloned() else {
                    continue;
                };
                let name = query
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                let rtype = query.query_type();
                log.lock().unwrap().push(format!("{name} {rtype}"));
                let exists = zone.0.iter().any(|(n, _, _)| *n == name);
                let mut response = Message::response(request.metadata.id, OpCode::Query);
                response.metadata.recursion_desired = request.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                response.metadata.authoritative = true;
                response.add_query(query.clone());
                if !exists {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                for (n, t, data) in &zone.0 {
                    if *n == name && *t == rtype {
                        response.add_answer(Record::from_rdata(
                            query.name().clone(),
                            300,
                            data.clone(),
                        ));
                    }
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        DnsServer {
            addr,
            queries,
            _task: task,
        }
    }
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(
        priority,
        weight,
        port,
        Name::from_ascii(target).unwrap(),
    ))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn discovery(dns: &DnsServer, overrides: Overrides) -> Discovery {
    let ca = support::TestCa::new();
    let mut config = support::config(&ca, overrides);
    config.dns = DnsMode::Nameservers(vec![dns.addr]);
    Discovery::try_new(config).expect("resolver with a loopback name server")
}

#[tokio::test]
async fn srv_and_addresses_come_from_the_name_server() {
    let dns = DnsServer::start(Zone(vec![
        (
            "_xmpps-server._tcp.b.test",
            RecordType::SRV,
            srv(5, 0, 5270, "tls.b.test."),
        ),
        (
            "_xmpp-server._tcp.b.test",
            RecordType::SRV,
            srv(10, 0, 5269, "xmpp.b.test."),
        ),
        ("tls.b.test", RecordType::A, a([127, 0, 0, 31])),
        ("xmpp.b.test", RecordType::A, a([127, 0, 0, 32])),
        ("xmpp.b.test", RecordType::A, a([127, 0, 0, 33])),
    ]))
    .await;
    let d = discovery(&dns, Overrides::default());
    let got = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Candidate::DirectTls {
                host: "tls.b.test".into(),
                port: 5270,
                addrs: vec!["127.0.0.31:5270".parse().unwrap()],
                sni: "b.test".into(),
                verified_via_https: false,
            },
            Candidate::StartTls {
                host: "xmpp.b.test".into(),
                port: 5269,
                addrs: vec![
                    "127.0.0.32:5269".parse().unwrap(),
                    "127.0.0.33:5269".parse().unwrap()
                ],
            },
        ]
    );
    let queries = dns.queries.lock().unwrap().clone();
    assert!(
        queries.contains(&"_xmpps-server._tcp.b.test SRV".to_string()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&"_xmpp-server._tcp.b.test SRV".to_string()),
        "{queries:?}"
    );
}

#[tokio::test]
async fn static_overrides_win_over_the_name_server() {
    let dns = DnsServer::start(Zone(vec![
        (
            "_xmpp-server._tcp.b.test",
            RecordType::SRV,
            srv(10, 0, 5269, "xmpp.b.test."),
        ),
        ("xmpp.b.test", RecordType::A, a([127, 0, 0, 32])),
    ]))
    .await;
    let overrides = Overrides::default().addrs("xmpp.b.test", vec![IpAddr::from([127, 0, 0, 99])]);
    let d = discovery(&dns, overrides);
    let got = d
        .s2s_candidates("b.test", &[TransportPref::StartTls])
        .await
        .unwrap();
    assert_eq!(got[0].addrs(), ["127.0.0.99:5269".parse().unwrap()]);
}

#[tokio::test]
async fn no_srv_falls_back_to_a_records_and_nxdomain_is_not_found() {
    let dns = DnsServer::start(Zone(vec![("b.test", RecordType::A, a([127, 0, 0, 40]))])).await;
    let d = discovery(&dns, Overrides::default());
    let got = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Candidate::StartTls {
            host: "b.test".into(),
            port: 5269,
            addrs: vec!["127.0.0.40:5269".parse().unwrap()],
        }]
    );
    let err = d
        .s2s_candidates("c.test", &[TransportPref::Tcp])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DiscoveryError::NotFound {
            domain: "c.test".into()
        }
    );
}

#[tokio::test]
async fn dot_target_from_dns_means_no_service() {
    let dns = DnsServer::start(Zone(vec![
        (
            "_xmpp-server._tcp.b.test",
            RecordType::SRV,
            srv(0, 0, 0, "."),
        ),
        ("b.test", RecordType::A, a([127, 0, 0, 40])),
    ]))
    .await;
    let d = discovery(&dns, Overrides::default());
    assert!(matches!(
        d.s2s_candidates("b.test", &[TransportPref::Tcp]).await,
        Err(DiscoveryError::NotOffered { .. })
    ));
}
