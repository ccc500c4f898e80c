//! Bad input gets the right stream error and harms nobody else (RFC 6120 §4.9.3, §11;
//! RFC 7395 §3.3.3): malformed XML, restricted XML, oversized or deep stanzas, bad UTF-8,
//! slow authentication, too many connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::clients::show;
use weft_testkit::{Client, Login, TestServer};

async fn ws_case(server: &TestServer, payload: &str, condition: &str) {
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    c.send(payload).await;
    let err = c.expect_stream_error(condition).await;
    let _ = show(&err);
}

async fn tcp_case(server: &TestServer, payload: &[u8], condition: &str) {
    let mut c = server.tcp().await;
    c.open_stream("localhost").await;
    c.send_bytes(payload).await;
    c.expect_stream_error(condition).await;
}

#[tokio::test]
async fn malformed_and_restricted_xml_over_websocket() {
    let server = TestServer::start().await;
    ws_case(
        &server,
        "<message xmlns='jabber:client'><body>x</message>",
        "not-well-formed",
    )
    .await;
    ws_case(
        &server,
        "<message xmlns='jabber:client'/><message xmlns='jabber:client'/>",
        "not-well-formed",
    )
    .await;
    ws_case(
        &server,
        "<message xmlns='jabber:client'><!-- hi --></message>",
        "restricted-xml",
    )
    .await;
    ws_case(
        &server,
        "<?xml-stylesheet href='x'?><message xmlns='jabber:client'/>",
        "restricted-xml",
    )
    .await;
    ws_case(
        &server,
        "<!DOCTYPE x [<!ENTITY a 'b'>]><message xmlns='jabber:client'/>",
        "restricted-xml",
    )
    .await;
    ws_case(
        &server,
        "<message xmlns='jabber:client'>&custom;</message>",
        "restricted-xml",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_restricted_xml_over_tcp() {
    let server = TestServer::start().await;
    tcp_case(&server, b"<message><body>x</message>", "not-well-formed").await;
    tcp_case(&server, b"<message><!-- hi --></message>", "restricted-xml").await;
    tcp_case(&server, b"<?pi data?>", "restricted-xml").await;
    tcp_case(&server, b"junk text", "not-well-formed").await;
    tcp_case(
        &server,
        b"<message><body>\xff\xfe</body></message>",
        "unsupported-encoding",
    )
    .await;
    // A DOCTYPE before the stream header.
    let mut c = server.tcp().await;
    c.send_bytes(b"<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>")
        .await;
    c.expect_stream_error("restricted-xml").await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_deep_stanzas_are_policy_violations_on_both_transports() {
    let server = TestServer::start_with(|c| {
        c.limits.max_stanza_size = weft_config::ByteSize::kib(10);
        c.limits.max_depth = 8;
    })
    .await;
    let big = format!(
        "<message xmlns='jabber:client'><body>{}</body></message>",
        "a".repeat(11 * 1024)
    );
    ws_case(&server, &big, "policy-violation").await;
    tcp_case(&server, big.as_bytes(), "policy-violation").await;
    let deep = format!(
        "<message xmlns='jabber:client'>{}{}</message>",
        "<a>".repeat(10),
        "</a>".repeat(10)
    );
    ws_case(&server, &deep, "policy-violation").await;
    tcp_case(&server, deep.as_bytes(), "policy-violation").await;
    // Far over the limit, in one frame: refused by the WebSocket layer with the same error.
    let huge = format!(
        "<message xmlns='jabber:client'><body>{}</body></message>",
        "a".repeat(1024 * 1024)
    );
    ws_case(&server, &huge, "policy-violation").await;
    // Just under the limit passes.
    let mut c = server.ws().await;
    let jid = c.login("alice", Login::ScramSha256).await;
    let fits = format!(
        "<message xmlns='jabber:client' to='{jid}'><body>{}</body></message>",
        "a".repeat(9 * 1024)
    );
    c.send(&fits).await;
    let echoed = c.recv().await;
    assert_eq!(echoed.name(), "message");
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_client_does_not_disturb_others() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send("<message xmlns='jabber:client'><!-- x --></message>")
        .await;
    bob.expect_stream_error("restricted-xml").await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    carol
        .send(&format!(
            "<message xmlns='jabber:client' to='{alice_jid}'><body>still here?</body></message>"
        ))
        .await;
    assert_eq!(
        alice
            .recv()
            .await
            .get_child("body", "jabber:client")
            .map(|b| b.text()),
        Some("still here?".into())
    );
    drop((alice, carol));
    server.stop().await;
}

#[tokio::test]
async fn unauthenticated_streams_time_out() {
    let server = TestServer::start_with(|c| {
        c.c2s.unauthenticated_timeout = weft_config::HumanDuration(Duration::from_millis(300));
    })
    .await;
    let mut ws = server.ws().await;
    ws.open_stream("localhost").await;
    let mut tcp = server.tcp().await;
    tcp.open_stream("localhost").await;
    ws.expect_stream_error("connection-timeout").await;
    tcp.expect_stream_error("connection-timeout").await;
    // A client that authenticates in time is not affected.
    let mut ok = server.ws().await;
    ok.login("alice", Login::ScramSha256).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok.send("<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(ok.recv().await.attr("type"), Some("result"));
    drop(ok);
    server.stop().await;
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 2).await;
    let a = server.tcp().await;
    let b = server.ws().await;
    // Third TCP connection: a stream error straight away.
    let mut c = server.tcp().await;
    c.expect_stream_error("policy-violation").await;
    // Third HTTP connection: 429 with a reason.
    let mut http = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(5), http.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(resp.contains("too many connections"), "{resp}");
    // Slots free up when connections end.
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = server.tcp().await;
    d.open_stream("localhost").await;
    drop(d);
    server.stop().await;
}

#[tokio::test]
async fn a_flooding_client_is_slowed_down_not_cut_off() {
    let server = TestServer::start_with(|c| {
        c.limits.c2s_stanza_rate = 20;
        c.limits.c2s_stanza_burst = 5;
    })
    .await;
    let mut c = server.ws().await;
    c.login("alice", Login::ScramSha256).await;
    let started = std::time::Instant::now();
    for i in 0..25 {
        c.send(&format!("<iq xmlns='jabber:client' type='get' id='p{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
            .await;
    }
    for i in 0..25 {
        let r = c.recv().await;
        assert_eq!(
            r.attr("id"),
            Some(format!("p{i}").as_str()),
            "every stanza answered, in order"
        );
    }
    // 20 stanzas over the burst at 20/s cannot be through in less than about a second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    drop(c);
    server.stop().await;
}
