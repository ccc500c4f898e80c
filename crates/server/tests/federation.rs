//! Federation between two weft servers (a.test and b.test) on loopback: RFC 6120 s2s over TCP
//! with STARTTLS and Direct TLS, XEP-0468 over wss, authenticated by SASL EXTERNAL (shared test
//! CA) or XEP-0220 dialback (untrusted certificates), and failures that come back as errors.

use weft_testkit::clients::{login_at, show};
use weft_testkit::{Client, Login, TestCa, TestServer, WsClient, PASSWORD};

async fn pair(trust: bool, route: &str) -> (TestServer, TestServer) {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, trust, |_| {}).await;
    let b = TestServer::start_federating("b.test", &ca, trust, |_| {}).await;
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

async fn client(server: &TestServer, user: &str) -> (WsClient, String) {
    let mut c = server.ws().await;
    let jid = login_at(
        &mut c,
        server.domain(),
        user,
        PASSWORD,
        Login::ScramSha256,
        Some("r"),
    )
    .await;
    (c, jid)
}

/// How each server authenticated its incoming links: (EXTERNAL, dialback).
fn auth_counts(s: &TestServer) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let s2s = &s.running.state.s2s;
    (
        s2s.authenticated_by_external.load(Relaxed),
        s2s.authenticated_by_dialback.load(Relaxed),
    )
}

/// Messages both ways and directed presence both ways.
async fn exchange(a: &TestServer, b: &TestServer) {
    let (mut alice, alice_jid) = client(a, "alice").await;
    let (mut bob, bob_jid) = client(b, "bob").await;
    alice
        .send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='m1'><body>hello b</body></message>"))
        .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()), "{}", show(&got));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hello b".into()),
        "{}",
        show(&got)
    );
    bob.send(&format!("<message xmlns='jabber:client' to='{alice_jid}' type='chat'><body>hello a</body></message>"))
        .await;
    let got = alice.recv().await;
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hello a".into())
    );
    alice
        .send(&format!("<presence xmlns='jabber:client' to='{bob_jid}'/>"))
        .await;
    let p = bob.recv().await;
    assert_eq!(
        (p.name(), p.attr("from")),
        ("presence", Some(alice_jid.as_str()))
    );
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{alice_jid}'><show>away</show></presence>"
    ))
    .await;
    let p = alice.recv().await;
    assert_eq!(
        (p.name(), p.attr("from")),
        ("presence", Some(bob_jid.as_str()))
    );
    assert_eq!(
        p.get_child("show", "jabber:client").map(|s| s.text()),
        Some("away".into())
    );
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
