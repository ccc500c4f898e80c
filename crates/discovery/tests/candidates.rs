//! RFC 6120 §3.2, XEP-0368, XEP-0468, XEP-0487: `Discovery::s2s_candidates` end to end with static SRV/A answers and a local host-meta server.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use weft_discovery::{Candidate, Discovery, DiscoveryError, Overrides, SrvRecord, TransportPref};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn lo(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, n])
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
    SrvRecord::new(priority, weight, port, target)
}

/// A domain with SRV for both services; no host-meta server at all.
fn srv_only() -> Overrides {
    Overrides::default()
        .srv(
            "_xmpps-server._tcp.b.test",
            vec![srv(20, 0, 5270, "tls.b.test")],
        )
        .srv(
            "_xmpp-server._tcp.b.test",
            vec![
                srv(10, 0, 5269, "xmpp1.b.test"),
                srv(30, 0, 5269, "xmpp2.b.test"),
            ],
        )
        .addrs("tls.b.test", vec![lo(3)])
        .addrs("xmpp1.b.test", vec![lo(1)])
        .addrs("xmpp2.b.test", vec![lo(2), "::1".parse().unwrap()])
}

#[tokio::test]
async fn srv_targets_are_mixed_by_priority_with_resolved_addresses() {
    let ca = TestCa::new();
    let d = Discovery::new(config(&ca, srv_only()));
    let got = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Candidate::StartTls {
                host: "xmpp1.b.test".into(),
                port: 5269,
                addrs: vec![addr("127.0.0.1:5269")]
            },
            Candidate::DirectTls {
                host: "tls.b.test".into(),
                port: 5270,
                addrs: vec![addr("127.0.0.3:5270")],
                sni: "b.test".into(),
                verified_via_https: false,
            },
            Candidate::StartTls {
                host: "xmpp2.b.test".into(),
                port: 5269,
                addrs: vec![addr("127.0.0.2:5269"), addr("[::1]:5269")]
            },
        ]
    );
    assert_eq!(got[1].reference_names("b.test"), ["b.test"]);
    // Operator prefers Direct TLS, then STARTTLS.
    let got = d
        .s2s_candidates(
            "b.test",
            &[TransportPref::DirectTls, TransportPref::StartTls],
        )
        .await
        .unwrap();
    let hosts: Vec<_> = got
        .iter()
        .map(|c| match c {
            Candidate::DirectTls { host, .. } | Candidate::StartTls { host, .. } => host.as_str(),
            Candidate::WebSocket { .. } => "ws",
        })
        .collect();
    assert_eq!(hosts, ["tls.b.test", "xmpp1.b.test", "xmpp2.b.test"]);
}

#[tokio::test]
async fn default_order_puts_host_meta_websocket_first_then_tcp() {
    let ca = TestCa::new();
    let server = HttpsServer::start(ca.server_config(&["b.test"]), |path| match path {
        "/.well-known/host-meta.json" => Reply::ok(S2S_JRD),
        _ => Reply::not_found(),
    })
    .await;
    let overrides = srv_only()
        .host_meta_base("b.test", &server.base())
        .addrs("b.test", vec![lo(9)]);
    let d = Discovery::new(config(&ca, overrides));
    let got = d.s2s_candidates("b.test", &[]).await.unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0],
        Candidate::WebSocket {
            url: "wss://b.test/xmpp-s2s".into(),
            connect_addrs: vec![addr("127.0.0.9:443")],
            sni: "b.test".into(),
            verified_via_https: true,
        }
    );
    assert!(matches!(&got[1], Candidate::StartTls { host, .. } if host == "xmpp1.b.test"));
    // TCP only: host-meta is not even fetched.
    let before = server.requests().len();
    let tcp = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert_eq!(tcp.len(), 3);
    assert_eq!(server.requests().len(), before);
    // WebSocket only.
    let ws = d
        .s2s_candidates("b.test", &[TransportPref::WebSocket])
        .await
        .unwrap();
    assert_eq!(ws, got[..1]);
    // TCP first, WebSocket last.
    let rev = d
        .s2s_candidates("b.test", &[TransportPref::Tcp, TransportPref::WebSocket])
        .await
        .unwrap();
    assert_eq!(rev[3], got[0]);
}

#[tokio::test]
async fn no_srv_records_fall_back_to_the_domain_on_5269() {
    let ca = TestCa::new();
    let overrides = Overrides::default().addrs("b.test", vec![lo(7)]);
    let d = Discovery::new(config(&ca, overrides));
    // No host-meta override: fetching https://b.test goes to 127.0.0.7:443, where nothing
    // listens; that failure only removes the WebSocket candidates.
    let got = d.s2s_candidates("b.test", &[]).await.unwrap();
    assert_eq!(
        got,
        vec![Candidate::StartTls {
            host: "b.test".into(),
            port: 5269,
            addrs: vec![addr("127.0.0.7:5269")]
        }]
    );
}

#[tokio::test]
async fn dot_targets_mean_no_service() {
    let ca = TestCa::new();
    let dot = || vec![srv(0, 0, 0, ".")];
    // `_xmpp-server` is ".": no s2s, and no A/AAAA fallback.
    let overrides = Overrides::default()
        .srv("_xmpp-server._tcp.b.test", dot())
        .addrs("b.test", vec![lo(7)]);
    let d = Discovery::new(config(&ca, overrides));
    let err = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DiscoveryError::NotOffered {
            domain: "b.test".into()
        }
    );
    assert!(!err.is_timeout());
    // `_xmpps-server` is "." and `_xmpp-server` absent: no fallback either (XEP-0368 §5).
    let overrides = Overrides::default()
        .srv("_xmpps-server._tcp.b.test", dot())
        .addrs("b.test", vec![lo(7)]);
    let d = Discovery::new(config(&ca, overrides));
    assert!(matches!(
        d.s2s_candidates("b.test", &[TransportPref::Tcp]).await,
        Err(DiscoveryError::NotOffered { .. })
    ));
    // `_xmpps-server` is "." but `_xmpp-server` has records: those are used.
    let overrides = Overrides::default()
        .srv("_xmpps-server._tcp.b.test", dot())
        .srv(
            "_xmpp-server._tcp.b.test",
            vec![srv(0, 0, 5269, "x.b.test")],
        )
        .addrs("x.b.test", vec![lo(8)]);
    let d = Discovery::new(config(&ca, overrides));
    let got = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert!(matches!(&got[..], [Candidate::StartTls { host, .. }] if host == "x.b.test"));
}

#[tokio::test]
async fn an_unknown_domain_is_not_found() {
    let ca = TestCa::new();
    let d = Discovery::new(config(&ca, Overrides::default()));
    let err = d.s2s_candidates("nowhere.test", &[]).await.unwrap_err();
    assert_eq!(
        err,
        DiscoveryError::NotFound {
            domain: "nowhere.test".into()
        }
    );
    for bad in ["", "127.0.0.1", "a b", "[::1]"] {
        assert!(matches!(
            d.s2s_candidates(bad, &[]).await,
            Err(DiscoveryError::InvalidDomain { .. })
        ));
    }
}

#[tokio::test]
async fn unresolvable_srv_targets_are_skipped() {
    let ca = TestCa::new();
    let overrides = Overrides::default()
        .srv(
            "_xmpp-server._tcp.b.test",
            vec![
                srv(0, 0, 5269, "gone.b.test"),
                srv(1, 0, 5269, "here.b.test"),
            ],
        )
        .addrs("here.b.test", vec![lo(5)]);
    let d = Discovery::new(config(&ca, overrides));
    let got = d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap();
    assert!(matches!(&got[..], [Candidate::StartTls { host, .. }] if host == "here.b.test"));
    // All targets unresolvable: an error listing why.
    let overrides = Overrides::default().srv(
        "_xmpp-server._tcp.b.test",
        vec![srv(0, 0, 5269, "gone.b.test")],
    );
    let d = Discovery::new(config(&ca, overrides));
    match d
        .s2s_candidates("b.test", &[TransportPref::Tcp])
        .await
        .unwrap_err()
    {
        DiscoveryError::NoCandidates { reasons, .. } => {
            assert!(
                reasons.iter().any(|r| r.contains("gone.b.test")),
                "{reasons:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn host_meta2_links_give_ips_sni_and_skip_srv() {
    let body = r#"{
      "xmpp": {"ttl": 3000},
      "links": [
        {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://ws2.hosting.test/s2s",
         "ips":["127.0.0.22"],"priority":20,"weight":1,"sni":"hosting.test"},
        {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://ws1.hosting.test:8443/s2s",
         "ips":["127.0.0.21","::1"],"priority":10,"weight":1,"sni":"hosting.test"},
        {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"ws://insecure.hosting.test/s2s",
         "ips":["127.0.0.23"],"priority":0,"weight":1,"sni":"hosting.test"},
        {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5223,"ips":["127.0.0.24"],
         "priority":5,"weight":1,"sni":"tls.hosting.test"},
        {"rel":"urn:xmpp:alt-connections:s2s-quic","port":443,"ips":["127.0.0.25"],
         "priority":0,"weight":1,"sni":"hosting.test"}
      ]}"#;
    let ca = TestCa::new();
    let server = HttpsServer::start(ca.server_config(&["b.test"]), move |_| Reply::ok(body)).await;
    let overrides = srv_only().host_meta_base("b.test", &server.base());
    let d = Discovery::new(config(&ca, overrides.clone()));
    let got = d.s2s_candidates("b.test", &[]).await.unwrap();
    assert_eq!(
        got,
        vec![
            Candidate::WebSocket {
                url: "wss://ws1.hosting.test:8443/s2s".into(),
                connect_addrs: vec![addr("127.0.0.21:8443"), addr("[::1]:8443")],
                sni: "hosting.test".into(),
                verified_via_https: true,
            },
            Candidate::WebSocket {
                url: "wss://ws2.hosting.test/s2s".into(),
                connect_addrs: vec![addr("127.0.0.22:443")],
                sni: "hosting.test".into(),
                verified_via_https: true,
            },
            Candidate::DirectTls {
                host: "b.test".into(),
                port: 5223,
                addrs: vec![addr("127.0.0.24:5223")],
                sni: "tls.hosting.test".into(),
                verified_via_https: true,
            },
        ],
        "ws:// link dropped, QUIC ignored, SRV skipped (XEP-0487 §2.2 rule 2)"
    );
    assert_eq!(
        got[0].reference_names("b.test"),
        ["b.test", "ws1.hosting.test", "hosting.test"]
    );
    assert_eq!(
        got[2].reference_names("b.test"),
        ["b.test", "tls.hosting.test"]
    );

    // With skipping turned off, the SRV candidates follow.
    let mut cfg = config(&ca, overrides);
    cfg.skip_srv_for_host_meta2 = false;
    let d = Discovery::new(cfg);
    assert_eq!(d.s2s_candidates("b.test", &[]).await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_hanging_host_meta_server_is_a_timeout_when_nothing_else_is_wanted() {
    let ca = TestCa::new();
    let server = HttpsServer::start(ca.server_config(&["b.test"]), |_| Reply::Hang).await;
    let mut cfg = config(
        &ca,
        Overrides::default().host_meta_base("b.test", &server.base()),
    );
    cfg.http.total_timeout = Duration::from_secs(1);
    let d = Discovery::new(cfg);
    let err = d
        .s2s_candidates("b.test", &[TransportPref::WebSocket])
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // With TCP allowed, the hanging host-meta costs only its timeout.
    let d2 = {
        let mut cfg = config(
            &ca,
            Overrides::default()
                .host_meta_base("b.test", &server.base())
                .addrs("b.test", vec![lo(7)]),
        );
        cfg.http.total_timeout = Duration::from_secs(1);
        Discovery::new(cfg)
    };
    let got = d2.s2s_candidates("b.test", &[]).await.unwrap();
    assert!(matches!(&got[..], [Candidate::StartTls { port: 5269, .. }]));
    // SRV says "no TCP service" but host-meta could not be read: that is a timeout, not a
    // definite "not offered".
    let d3 = {
        let mut cfg = config(
            &ca,
            Overrides::default()
                .host_meta_base("b.test", &server.base())
                .srv("_xmpp-server._tcp.b.test", vec![srv(0, 0, 0, ".")]),
        );
        cfg.http.total_timeout = Duration::from_secs(1);
        Discovery::new(cfg)
    };
    let err = d3.s2s_candidates("b.test", &[]).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn host_meta_without_s2s_links_leaves_tcp() {
    let ca = TestCa::new();
    let c2s_only =
        r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"wss://b.test/ws"}]}"#;
    let server =
        HttpsServer::start(ca.server_config(&["b.test"]), move |_| Reply::ok(c2s_only)).await;
    let overrides = srv_only().host_meta_base("b.test", &server.base());
    let d = Discovery::new(config(&ca, overrides));
    let got = d.s2s_candidates("b.test", &[]).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|c| !matches!(c, Candidate::WebSocket { .. })));
    match d
        .s2s_candidates("b.test", &[TransportPref::WebSocket])
        .await
        .unwrap_err()
    {
        DiscoveryError::NoCandidates { reasons, .. } => {
            assert!(reasons[0].contains("no s2s-websocket"), "{reasons:?}")
        }
        other => panic!("{other:?}"),
    }
}
