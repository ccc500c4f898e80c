//! Incoming certificate delegation (XEP-0468 with XEP-0487): a peer whose certificate names
//! the host its domain's host-meta delegates to (`sni` of an s2s link) is accepted for SASL
//! EXTERNAL, when that host-meta came over HTTPS verified for the domain; nothing else
//! widens what an incoming certificate counts for. Also the host-meta's priorities.

use std::net::SocketAddr;

use weft_testkit::clients::show;
use weft_testkit::federation::{auth_counts, client, exchange};
use weft_testkit::{Client, TestCa, TestServer};

/// A web server standing in for `domain`'s website: HTTPS with a certificate for
/// `cert_for`, serving a host-meta.json whose s2s link delegates to `sni`.
async fn host_meta_site(
    ca: &TestCa,
    cert_for: &str,
    sni: &str,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let body = serde_json::json!({
        "xmpp": {"ttl": 300},
        "links": [{
            "rel": "urn:xmpp:alt-connections:s2s-websocket",
            "href": format!("wss://{sni}/xmpp-websocket"),
            "ips": ["127.0.0.1"], "priority": 10, "weight": 50, "sni": sni,
        }]
    })
    .to_string();
    weft_testkit::web::https_document(
        ca,
        cert_for,
        "/.well-known/host-meta.json",
        "application/json",
        body,
    )
    .await
}

/// a.test's service runs with a certificate for hosting.test only; b.test (no dialback)
/// learns from a.test's host-meta at `site` whether that certificate counts for a.test.
async fn pair(ca: &TestCa, site: SocketAddr) -> (TestServer, TestServer) {
    let b = TestServer::start_federating("b.test", ca, true, |c| {
        c.s2s.dialback = false;
        c.s2s.dns_lookups = false;
        c.s2s
            .host_meta_base
            .insert("a.test".into(), format!("https://{site}"));
    })
    .await;
    let a = TestServer::start_federating_with_cert("a.test", ca, &["hosting.test"], |c| {
        c.s2s.dns_lookups = false;
    })
    .await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    (a, b)
}

#[tokio::test]
async fn a_certificate_of_the_host_the_domain_delegates_to_is_accepted() {
    let ca = TestCa::new();
    let (site, task) = host_meta_site(&ca, "a.test", "hosting.test").await;
    let (a, b) = pair(&ca, site).await;
    // Only a.test → b.test is delegated: b.test's answers go back on a link b opens to
    // a.test, whose certificate a.test checks for b.test directly.
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    exchange(&a, &b).await;
    assert_eq!(
        auth_counts(&b),
        (1, 0),
        "b accepted a's link with SASL EXTERNAL"
    );
    task.abort();
    a.stop().await;
    b.stop().await;
}

/// Sends from a.test to b.test and expects the link to fail (b offers nothing a can use).
async fn refused(a: &TestServer, b: &TestServer) {
    let (mut alice, _) = client(a, "alice").await;
    alice
        .send("<message xmlns='jabber:client' to='bob@b.test' id='x'><body>hi</body></message>")
        .await;
    let err = alice.recv().await;
    assert_eq!(err.attr("type"), Some("error"), "{}", show(&err));
    assert_eq!(auth_counts(b), (0, 0));
}

#[tokio::test]
async fn no_delegation_from_a_host_meta_for_another_host() {
    let ca = TestCa::new();
    // a.test's host-meta names elsewhere.test, not the host its certificate is for.
    let (site, task) = host_meta_site(&ca, "a.test", "elsewhere.test").await;
    let (a, b) = pair(&ca, site).await;
    refused(&a, &b).await;
    task.abort();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn no_delegation_from_a_host_meta_not_verified_for_the_domain() {
    let ca = TestCa::new();
    // The right names, but served with a certificate that is not a.test's.
    let (site, task) = host_meta_site(&ca, "hosting.test", "hosting.test").await;
    let (a, b) = pair(&ca, site).await;
    refused(&a, &b).await;
    task.abort();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn host_meta_priorities_as_configured() {
    let server = TestServer::start_with(|c| {
        c.host_meta.s2s_websocket_priority = 30;
        c.host_meta.s2s_websocket_weight = 7;
        c.host_meta.s2s_tls_priority = 5;
        c.host_meta.s2s_tls_weight = 60;
    })
    .await;
    let body = reqwest_like_get(server.http_addr(), "/.well-known/host-meta.json").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s2s: Vec<&serde_json::Value> = json["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"].as_str().is_some_and(|r| r.contains(":s2s-")))
        .collect();
    // Direct TLS first now: its priority is the lower.
    assert_eq!(s2s[0]["rel"], "urn:xmpp:alt-connections:s2s-tls");
    assert_eq!(
        (s2s[0]["priority"].as_u64(), s2s[0]["weight"].as_u64()),
        (Some(5), Some(60))
    );
    assert_eq!(s2s[1]["rel"], "urn:xmpp:alt-connections:s2s-websocket");
    assert_eq!(
        (s2s[1]["priority"].as_u64(), s2s[1]["weight"].as_u64()),
        (Some(30), Some(7))
    );
    server.stop().await;
    // The defaults prefer wss.
    let server = TestServer::start().await;
    let body = reqwest_like_get(server.http_addr(), "/.well-known/host-meta.json").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = json["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"].as_str().is_some_and(|r| r.contains(":s2s-")))
        .unwrap();
    assert_eq!(first["rel"], "urn:xmpp:alt-connections:s2s-websocket");
    server.stop().await;
}

/// A plain HTTP GET on loopback; the body.
async fn reqwest_like_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}
