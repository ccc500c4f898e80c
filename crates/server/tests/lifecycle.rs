//! Graceful shutdown and draining (RFC 7395 §3.6.1 see-other-uri), health, and XEP-0156
//! host-meta documents.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_testkit::clients::show;
use weft_testkit::{Client, Login, TestServer};

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    resp
}

#[tokio::test]
async fn shutdown_redirects_websocket_streams_and_closes_tcp_ones() {
    let server = TestServer::start_with(|c| {
        c.websocket.see_other_uri = Some("wss://xmpp2.example/xmpp-websocket".into());
    })
    .await;
    let mut ws = server.ws().await;
    ws.login("alice", Login::ScramSha256).await;
    let mut wss = server.wss().await;
    wss.login("bob", Login::ScramSha256).await;
    let mut tcp = server.tcp_direct_tls().await;
    tcp.login("carol", Login::ScramSha256).await;
    let stopping = tokio::spawn(async move { server.stop().await });

    // ws:// and wss:// may both go to a wss:// URI.
    for c in [&mut ws, &mut wss] {
        let close = c.recv().await;
        assert!(close.is("close", FRAMING), "{}", show(&close));
        assert_eq!(
            close.attr("see-other-uri"),
            Some("wss://xmpp2.example/xmpp-websocket")
        );
        c.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            .await;
        c.expect_close_frame().await;
    }
    tcp.expect_stream_error("system-shutdown").await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn no_redirect_from_wss_to_ws() {
    let server = TestServer::start_with(|c| {
        c.websocket.see_other_uri = Some("ws://plain.example/xmpp-websocket".into());
    })
    .await;
    let mut wss = server.wss().await;
    wss.login("alice", Login::ScramSha256).await;
    let mut ws = server.ws().await;
    ws.login("bob", Login::ScramSha256).await;
    let stopping = tokio::spawn(async move { server.stop().await });
    // The ws:// stream may be redirected to ws://; the wss:// one must not be downgraded.
    let close = ws.recv().await;
    assert_eq!(
        close.attr("see-other-uri"),
        Some("ws://plain.example/xmpp-websocket")
    );
    ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    ws.expect_close_frame().await;
    let err = wss.expect_stream_error("system-shutdown").await;
    assert!(!show(&err).contains("plain.example"));
    wss.expect_close_frame().await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn drain_redirects_existing_and_new_streams_and_fails_health() {
    let server = TestServer::start_with(|c| {
        c.websocket.see_other_uri = Some("wss://xmpp2.example/ws".into());
    })
    .await;
    assert!(http_get(server.http_addr(), "/health")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut ws = server.ws().await;
    ws.login("alice", Login::ScramSha256).await;
    server.running.state.drain();
    let close = ws.recv().await;
    assert_eq!(close.attr("see-other-uri"), Some("wss://xmpp2.example/ws"));
    // A new stream is answered with <open/> and sent on at once.
    let mut late = server.ws().await;
    late.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
        .await;
    assert!(late.recv().await.is("open", FRAMING));
    let close = late.recv().await;
    assert!(close.is("close", FRAMING));
    assert_eq!(close.attr("see-other-uri"), Some("wss://xmpp2.example/ws"));
    let health = http_get(server.http_addr(), "/health").await;
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    drop((ws, late));
    server.stop().await;
}

#[tokio::test]
async fn host_meta_xml_and_json_with_cors_only_there() {
    let server = TestServer::start().await;
    let port = server.running.https[0].port();
    let xrd = http_get(server.http_addr(), "/.well-known/host-meta").await;
    assert!(xrd.starts_with("HTTP/1.1 200"), "{xrd}");
    assert!(
        xrd.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{xrd}"
    );
    assert!(xrd.contains("application/xrd+xml"));
    assert!(
        xrd.contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"),
        "{xrd}"
    );
    assert!(
        xrd.contains(&format!("<Link rel='urn:xmpp:alt-connections:websocket' href='wss://localhost:{port}/xmpp-websocket'/>")),
        "{xrd}"
    );
    let jrd = http_get(server.http_addr(), "/.well-known/host-meta.json").await;
    assert!(jrd
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: *"));
    let body = jrd.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let links = json["links"].as_array().unwrap();
    assert!(links
        .iter()
        .any(|l| l["rel"] == "urn:xmpp:alt-connections:websocket"
            && l["href"] == format!("wss://localhost:{port}/xmpp-websocket")));
    // XEP-0468 / XEP-0487: the s2s WebSocket endpoint, with the fields peers need.
    let s2s_link = format!(
        "<Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://localhost:{port}/xmpp-websocket'/>"
    );
    assert!(xrd.contains(&s2s_link), "{xrd}");
    let s2s = links
        .iter()
        .find(|l| l["rel"] == "urn:xmpp:alt-connections:s2s-websocket")
        .expect("s2s link");
    assert_eq!(
        s2s["href"],
        format!("wss://localhost:{port}/xmpp-websocket")
    );
    assert_eq!(s2s["ips"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(s2s["sni"], "localhost");
    assert!(s2s["priority"].is_u64() && s2s["weight"].is_u64());
    let tls = links
        .iter()
        .find(|l| l["rel"] == "urn:xmpp:alt-connections:s2s-tls")
        .expect("s2s-tls link");
    assert_eq!(tls["port"], server.running.s2s_direct_tls[0].port());
    assert_eq!(json["xmpp"]["ttl"], 300, "XEP-0487 top-level object");
    let health = http_get(server.http_addr(), "/health").await;
    assert!(
        !health
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{health}"
    );
    server.stop().await;
}

#[tokio::test]
async fn host_meta_uses_configured_public_urls() {
    let server = TestServer::start_with(|c| {
        c.host_meta.websocket_urls = vec!["wss://chat.example.org/ws".into()];
    })
    .await;
    let jrd = http_get(server.http_addr(), "/.well-known/host-meta.json").await;
    let body = jrd.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let c2s: Vec<_> = json["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "urn:xmpp:alt-connections:websocket")
        .collect();
    assert_eq!(c2s.len(), 1);
    assert_eq!(c2s[0]["href"], "wss://chat.example.org/ws");
    server.stop().await;
}
