//! XEP-0288 bidirectional server-to-server links: the connecting server asks for bidi after
//! TLS; once it authenticated, the receiving server's stanzas for it travel back on the same
//! connection instead of a second one. Over TCP (STARTTLS, Direct TLS) and WebSocket.

use weft_testkit::federation::{auth_counts, exchange};
use weft_testkit::{TestCa, TestServer};

/// a.test connects to b.test over `kind`; b.test has no route to a.test at all, so its
/// answers can only travel on a's link.
async fn one_link_both_ways(kind: &str) {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| c.s2s.dns_lookups = false).await;
    let b = TestServer::start_federating("b.test", &ca, true, |c| c.s2s.dns_lookups = false).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route(kind)]);
    b.running.state.s2s.set_routes("a.test", vec![]);
    exchange(&a, &b).await;
    assert_eq!(
        auth_counts(&b),
        (1, 0),
        "a authenticated to b once, with EXTERNAL ({kind})"
    );
    assert_eq!(auth_counts(&a), (0, 0), "b never connected to a ({kind})");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bidi_over_starttls() {
    one_link_both_ways("tcp").await;
}

#[tokio::test]
async fn bidi_over_direct_tls() {
    one_link_both_ways("tls").await;
}

#[tokio::test]
async fn bidi_over_websocket() {
    one_link_both_ways("wss").await;
}

#[tokio::test]
async fn without_bidi_each_direction_has_its_link() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| c.s2s.dns_lookups = false).await;
    let b = TestServer::start_federating("b.test", &ca, true, |c| {
        c.s2s.dns_lookups = false;
        c.s2s.bidi = false;
    })
    .await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    assert_eq!(auth_counts(&b), (1, 0));
    assert_eq!(auth_counts(&a), (1, 0), "b opened its own link to a");
    a.stop().await;
    b.stop().await;
}

/// Bidi only with a peer whose certificate checks out: with dialback (a's certificate not
/// trusted by b... and b's not by a), a does not ask, and b connects back on its own.
#[tokio::test]
async fn no_bidi_without_a_verified_peer_certificate() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, false, |c| c.s2s.dns_lookups = false).await;
    let b = TestServer::start_federating("b.test", &ca, false, |c| c.s2s.dns_lookups = false).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    assert_eq!(auth_counts(&b), (0, 1), "a used dialback");
    assert_eq!(auth_counts(&a), (0, 1), "b opened its own link to a");
    a.stop().await;
    b.stop().await;
}

/// `s2s.trace_domains`: every element of a link with such a domain is logged at trace level
/// (target `weft::xml`), negotiation included; links with other domains are not.
#[tokio::test]
async fn the_xml_of_a_traced_domain_is_logged() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("weft::xml=trace")
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the servers' tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| {
        c.s2s.dns_lookups = false;
        c.s2s.trace_domains = vec!["b.test".into()];
    })
    .await;
    let b = TestServer::start_federating("b.test", &ca, true, |c| c.s2s.dns_lookups = false).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running.state.s2s.set_routes("a.test", vec![]);
    exchange(&a, &b).await;
    a.stop().await;
    b.stop().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // a's side of its link to b: what it sent (STARTTLS, EXTERNAL, the stanzas) and read.
    assert!(
        log.contains("peer=b.test dir=\"out\"") || log.contains("peer=b.test dir=out"),
        "{log}"
    );
    assert!(log.contains("<starttls"), "negotiation is traced: {log}");
    assert!(
        log.contains("mechanism=\"EXTERNAL\"") || log.contains("mechanism='EXTERNAL'"),
        "{log}"
    );
    assert!(
        log.contains("hello b") && log.contains("hello a"),
        "stanzas both ways: {log}"
    );
    // b traces nothing: a.test is not in its list.
    assert!(!log.contains("peer=a.test"), "{log}");
}
