//! Federation between two weft servers (a.test and b.test) on loopback: RFC 6120 s2s over TCP
//! with STARTTLS and Direct TLS, XEP-0468 over wss, authenticated by SASL EXTERNAL (shared test
//! CA) or XEP-0220 dialback (untrusted certificates), and failures that come back as errors.

use weft_testkit::clients::show;
use weft_testkit::federation::{auth_counts, client, exchange};
use weft_testkit::{Client, TestCa, TestServer, WsClient};

/// Two servers with a route to each other. XEP-0288 is off here, so that each direction
/// opens and authenticates its own link (tests/s2s_bidi.rs covers one link for both).
async fn pair(trust: bool, route: &str) -> (TestServer, TestServer) {
    let ca = TestCa::new();
    let no_bidi = |c: &mut weft_config::Config| c.s2s.bidi = false;
    let a = TestServer::start_federating("a.test", &ca, trust, no_bidi).await;
    let b = TestServer::start_federating("b.test", &ca, trust, no_bidi).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route(route)]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route(route)]);
    (a, b)
}

#[tokio::test]
async fn tcp_starttls_with_sasl_external() {
    let (a, b) = pair(true, "tcp").await;
    exchange(&a, &b).await;
    assert_eq!(
        (auth_counts(&a), auth_counts(&b)),
        ((1, 0), (1, 0)),
        "one EXTERNAL link each way"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn direct_tls_with_sasl_external() {
    let (a, b) = pair(true, "tls").await;
    exchange(&a, &b).await;
    assert_eq!((auth_counts(&a), auth_counts(&b)), ((1, 0), (1, 0)));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn websocket_with_sasl_external() {
    let (a, b) = pair(true, "wss").await;
    exchange(&a, &b).await;
    assert_eq!((auth_counts(&a), auth_counts(&b)), ((1, 0), (1, 0)));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn tcp_with_dialback_when_certificates_are_not_trusted() {
    let (a, b) = pair(false, "tcp").await;
    exchange(&a, &b).await;
    assert_eq!(
        (auth_counts(&a), auth_counts(&b)),
        ((0, 1), (0, 1)),
        "dialback each way"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn websocket_with_dialback_when_certificates_are_not_trusted() {
    let (a, b) = pair(false, "wss").await;
    exchange(&a, &b).await;
    assert_eq!((auth_counts(&a), auth_counts(&b)), ((0, 1), (0, 1)));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unreachable_peer_gives_remote_server_not_found() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |_| {}).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    a.running
        .state
        .s2s
        .set_routes("c.test", vec![format!("tcp://{closed}")]);
    let (mut alice, _) = client(&a, "alice").await;
    for i in 0..3 {
        alice
            .send(&format!("<message xmlns='jabber:client' to='carol@c.test' id='q{i}'><body>x</body></message>"))
            .await;
    }
    // Every queued stanza comes back with an error; none is lost silently.
    for i in 0..3 {
        let err = alice.recv().await;
        assert_eq!(err.attr("type"), Some("error"), "{}", show(&err));
        assert_eq!(err.attr("id"), Some(format!("q{i}").as_str()));
        assert!(
            err.get_child("error", "jabber:client")
                .is_some_and(|e| e.has_child(
                    "remote-server-not-found",
                    "urn:ietf:params:xml:ns:xmpp-stanzas"
                )),
            "{}",
            show(&err)
        );
    }
    a.stop().await;
}

const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' ";

/// A raw peer on b's Direct TLS s2s port presenting a certificate for `as_domain`.
async fn raw_peer(b: &TestServer, ca: &TestCa, as_domain: &str) -> weft_testkit::TcpClient {
    let server_domain = b.domain().to_string();
    let pki = ca.issue(&[as_domain.to_string()]);
    let mut cfg = (*pki.client_config_with_identity()).clone();
    cfg.alpn_protocols = vec![b"xmpp-server".to_vec()];
    weft_testkit::TcpClient::connect_direct_tls_as(
        b.running.s2s_direct_tls[0],
        std::sync::Arc::new(cfg),
        &server_domain,
    )
    .await
    .unwrap()
}

async fn expect_features(c: &mut weft_testkit::TcpClient) -> minidom::Element {
    match c.recv_event().await {
        Some(weft_xml::StreamEvent::Header(h)) => assert!(h.attr("id").is_some()),
        other => panic!("expected a header, got {other:?}"),
    }
    c.recv().await
}

#[tokio::test]
async fn incoming_checks_host_auth_and_from() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;

    // A stream to a domain b does not host.
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='nope.test' version='1.0'>"
    ))
    .await;
    c.expect_stream_error("host-unknown").await;

    // A stanza before authentication.
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    let features = expect_features(&mut c).await;
    assert!(show(&features).contains("EXTERNAL"), "{}", show(&features));
    c.send("<message from='x@a.test' to='bob@b.test'><body>early</body></message>")
        .await;
    c.expect_stream_error("not-authorized").await;

    // Authenticated as a.test, a stanza claiming another domain is refused, and one that fits
    // before it was delivered.
    let mut bob = server_client(&b, "bob").await;
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>")
        .await;
    assert_eq!(c.recv().await.name(), "success");
    c.restart();
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.send(
        "<message from='alice@a.test/r' to='bob@b.test/r' type='chat'><body>legit</body></message>",
    )
    .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("from"), Some("alice@a.test/r"));
    c.send("<message from='mallory@evil.test/r' to='bob@b.test/r'><body>spoof</body></message>")
        .await;
    c.expect_stream_error("invalid-from").await;

    // EXTERNAL for a domain the certificate is not valid for.
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>ZXZpbC50ZXN0</auth>",
    )
    .await;
    let failure = c.recv().await;
    assert!(
        failure.has_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl"),
        "{}",
        show(&failure)
    );
    drop((c, bob));
    b.stop().await;
}

async fn server_client(server: &TestServer, user: &str) -> WsClient {
    client(server, user).await.0
}

#[tokio::test]
async fn wrong_domain_or_expired_certificates_are_refused_when_required() {
    let ca = TestCa::new();
    // b's certificate is expired; a requires valid certificates, so no dialback fallback.
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s.require_valid_certificates = true
    })
    .await;
    let b = TestServer::start_federating_expired("b.test", &ca, |_| {}).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    let (mut alice, _) = client(&a, "alice").await;
    alice
        .send("<message xmlns='jabber:client' to='bob@b.test' id='x1'><body>x</body></message>")
        .await;
    let err = alice.recv().await;
    assert_eq!(
        (err.attr("type"), err.attr("id")),
        (Some("error"), Some("x1")),
        "{}",
        show(&err)
    );
    // A certificate for the wrong domain: a raw peer claiming a.test with a c.test certificate.
    let mut c = raw_peer(&a, &ca, "c.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='b.test' to='a.test' version='1.0'>"
    ))
    .await;
    c.expect_stream_error("not-authorized").await;
    drop(alice);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_and_loses_nothing() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s.connect_timeout = weft_config::HumanDuration(std::time::Duration::from_millis(500));
    })
    .await;
    // Accepts TCP connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    a.running
        .state
        .s2s
        .set_routes("quiet.test", vec![format!("tcp://{addr}")]);
    let (mut alice, _) = client(&a, "alice").await;
    for i in 0..2 {
        alice.send(&format!("<message xmlns='jabber:client' to='x@quiet.test' id='t{i}'><body>x</body></message>")).await;
    }
    for i in 0..2 {
        let err = alice.recv().await;
        assert_eq!(err.attr("id"), Some(format!("t{i}").as_str()));
        assert!(
            show(&err).contains("remote-server-timeout"),
            "{}",
            show(&err)
        );
    }
    holder.abort();
    drop(alice);
    a.stop().await;
}

#[tokio::test]
async fn websocket_discovered_through_host_meta_json() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;
    let b_https = format!("https://{}", b.running.https[0]);
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s.host_meta_base.insert("b.test".into(), b_https);
        // No DNS leaves the machine: the host-meta base and its XEP-0487 ips are enough.
        c.s2s.dns_lookups = false;
    })
    .await;
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    // a reached b over wss (found in b's host-meta.json) and authenticated with EXTERNAL.
    assert_eq!(auth_counts(&b), (1, 0));
    let meta = a
        .running
        .state
        .s2s
        .discovery
        .host_meta("b.test")
        .await
        .expect("cached host-meta");
    assert!(meta.verified_via_https);
    assert!(
        meta.url.ends_with("/.well-known/host-meta.json"),
        "{}",
        meta.url
    );
    a.stop().await;
    b.stop().await;
}

/// A stand-in web server for b.test that serves only the XRD host-meta (no JSON), over HTTPS
/// with a certificate for b.test, pointing at `wss_url`.
async fn xrd_only_host_meta(
    ca: &TestCa,
    wss_url: String,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let body = format!(
        "<?xml version='1.0'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
         <Link rel='urn:xmpp:alt-connections:s2s-websocket' href='{wss_url}'/>\n</XRD>\n"
    );
    weft_testkit::web::https_document(
        ca,
        "b.test",
        "/.well-known/host-meta",
        "application/xrd+xml",
        body,
    )
    .await
}

#[tokio::test]
async fn websocket_discovered_through_host_meta_xml() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;
    let (web, web_task) = xrd_only_host_meta(&ca, b.wss_url()).await;
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s
            .host_meta_base
            .insert("b.test".into(), format!("https://{web}"));
        c.s2s.dns_lookups = false;
    })
    .await;
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    assert_eq!(
        auth_counts(&b),
        (1, 0),
        "a reached b over wss and used EXTERNAL"
    );
    let meta = a
        .running
        .state
        .s2s
        .discovery
        .host_meta("b.test")
        .await
        .expect("cached host-meta");
    assert!(
        meta.url.ends_with("/.well-known/host-meta"),
        "JSON failed, XRD used: {}",
        meta.url
    );
    web_task.abort();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn idle_links_close_and_reopen_on_demand() {
    let ca = TestCa::new();
    let idle = |c: &mut weft_config::Config| {
        c.s2s.idle_timeout = weft_config::HumanDuration(std::time::Duration::from_millis(300));
    };
    let a = TestServer::start_federating("a.test", &ca, true, idle).await;
    let b = TestServer::start_federating("b.test", &ca, true, idle).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    assert_eq!(a.running.state.s2s.links(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(a.running.state.s2s.links(), 0, "the idle link was closed");
    exchange(&a, &b).await;
    assert_eq!(auth_counts(&b), (2, 0), "a second link was authenticated");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn deny_lists_refuse_federation_both_ways() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s.deny_domains = vec!["c.test".into()]
    })
    .await;
    let b = TestServer::start_federating("b.test", &ca, true, |c| {
        c.s2s.deny_domains = vec!["a.test".into()]
    })
    .await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    let (mut alice, _) = client(&a, "alice").await;
    // Outgoing: a refuses to federate with c.test at once.
    alice
        .send("<message xmlns='jabber:client' to='x@c.test' id='d1'><body>x</body></message>")
        .await;
    let err = alice.recv().await;
    assert!(show(&err).contains("not-allowed"), "{}", show(&err));
    // Incoming: b refuses a.test; alice's message comes back as an error, not lost.
    alice
        .send("<message xmlns='jabber:client' to='bob@b.test' id='d2'><body>x</body></message>")
        .await;
    let err = alice.recv().await;
    assert_eq!(
        (err.attr("type"), err.attr("id")),
        (Some("error"), Some("d2")),
        "{}",
        show(&err)
    );
    drop(alice);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn stanza_size_limit_applies_to_s2s() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |c| {
        c.limits.max_stanza_size = weft_config::ByteSize::kib(4)
    })
    .await;
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>")
        .await;
    assert_eq!(c.recv().await.name(), "success");
    c.restart();
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    let big = "a".repeat(5000);
    c.send(&format!(
        "<message from='x@a.test' to='bob@b.test'><body>{big}</body></message>"
    ))
    .await;
    c.expect_stream_error("policy-violation").await;
    b.stop().await;
}

#[tokio::test]
async fn only_unauthenticated_incoming_streams_time_out() {
    let ca = TestCa::new();
    let quick = |c: &mut weft_config::Config| {
        c.s2s.connect_timeout = weft_config::HumanDuration(std::time::Duration::from_millis(300));
    };
    let a = TestServer::start_federating("a.test", &ca, true, quick).await;
    let b = TestServer::start_federating("b.test", &ca, true, quick).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    // Well past the authentication deadline, the authenticated links still carry stanzas.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    exchange(&a, &b).await;
    assert_eq!(auth_counts(&b), (1, 0), "the same link, not a new one");
    // A peer that never authenticates is dropped.
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.expect_stream_error("connection-timeout").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_peer_stream_error_ends_the_stream_without_an_answer() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;
    let mut c = raw_peer(&b, &ca, "a.test").await;
    c.send(&format!(
        "{SERVER_HEADER}from='a.test' to='b.test' version='1.0'>"
    ))
    .await;
    expect_features(&mut c).await;
    c.send(
        "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
    )
    .await;
    // b closes its side; it does not answer an error with an error (RFC 6120 §4.9.1.2).
    match c.recv_event().await {
        Some(weft_xml::StreamEvent::Close) | None => {}
        other => panic!("expected the stream to close, got {other:?}"),
    }
    b.stop().await;
}
