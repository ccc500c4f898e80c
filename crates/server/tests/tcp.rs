//! RFC 6120 TCP c2s on the wire: STARTTLS (§5), SASL (§6), Direct TLS (XEP-0368), keepalives.

use weft_testkit::clients::{mechanisms, show};
use weft_testkit::{Client, Login, TestServer};

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

#[tokio::test]
async fn starttls_is_required_before_sasl() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    let features = c.open_stream("localhost").await;
    let starttls = features
        .get_child("starttls", TLS_NS)
        .expect("STARTTLS offered");
    assert!(starttls.has_child("required", TLS_NS));
    assert!(
        mechanisms(&features).is_empty(),
        "no SASL before TLS: {}",
        show(&features)
    );
    // Trying anyway gets encryption-required.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>")
        .await;
    let failure = c.recv().await;
    assert!(
        failure.has_child("encryption-required", SASL),
        "{}",
        show(&failure)
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn starttls_then_scram_sha_256_and_bind() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.open_stream("localhost").await;
    c.starttls(server.pki.client_config()).await;
    let jid = c.login("alice", Login::ScramSha256).await;
    assert!(jid.starts_with("alice@localhost/"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn direct_tls_with_scram_sha_1_and_plain() {
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    assert!(c
        .login("bob", Login::ScramSha1)
        .await
        .starts_with("bob@localhost/"));
    let mut c = server.tcp_direct_tls().await;
    assert!(c
        .login("carol", Login::Plain)
        .await
        .starts_with("carol@localhost/"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn scram_plus_with_tls_exporter_binds_to_the_tls_session() {
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    let exporter = c.tls_exporter.clone().expect("TLS 1.3 exporter");
    let jid = c
        .login(
            "alice",
            Login::ScramSha256Plus("tls-exporter".into(), exporter),
        )
        .await;
    assert!(jid.starts_with("alice@localhost/"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn scram_plus_with_tls_server_end_point() {
    use sha2::Digest;
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    let hash = sha2::Sha256::digest(server.pki.server_cert.as_ref()).to_vec();
    let jid = c
        .login(
            "alice",
            Login::ScramSha256Plus("tls-server-end-point".into(), hash),
        )
        .await;
    assert!(jid.starts_with("alice@localhost/"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_fails_and_attempts_are_bounded() {
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    c.open_stream("localhost").await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for attempt in 1..=3 {
        c.send(&format!(
            "<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>",
            b64.encode("\0alice\0wrong")
        ))
        .await;
        if attempt < 3 {
            let failure = c.recv().await;
            assert!(
                failure.has_child("not-authorized", SASL),
                "{}",
                show(&failure)
            );
        }
    }
    // The third failure is reported, then the stream ends with policy-violation.
    let failure = c.recv().await;
    assert!(failure.has_child("not-authorized", SASL));
    c.expect_stream_error("policy-violation").await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_user_and_bad_mechanism() {
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    c.open_stream("localhost").await;
    c.send(&format!("<auth xmlns='{SASL}' mechanism='DIGEST-MD5'/>"))
        .await;
    assert!(c.recv().await.has_child("invalid-mechanism", SASL));
    let mut scram = weft_sasl::ScramClient::new(weft_sasl::Hash::Sha256, "nobody", "x");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64.encode(scram.client_first())
    ))
    .await;
    // No user enumeration: an unknown user gets a normal-looking challenge.
    let challenge = c.recv().await;
    assert_eq!(challenge.name(), "challenge");
    let cf = scram
        .client_final(&b64.decode(challenge.text()).unwrap())
        .unwrap();
    c.send(&format!(
        "<response xmlns='{SASL}'>{}</response>",
        b64.encode(cf)
    ))
    .await;
    assert!(c.recv().await.has_child("not-authorized", SASL));
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>not base64!</auth>"
    ))
    .await;
    assert!(c.recv().await.has_child("incorrect-encoding", SASL));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn whitespace_keepalives_are_tolerated_on_tcp() {
    let server = TestServer::start().await;
    let mut c = server.tcp_direct_tls().await;
    c.login("alice", Login::ScramSha256).await;
    c.send_bytes(b"   \n ").await;
    c.send("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let reply = c.recv().await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    assert_eq!(reply.attr("id"), Some("p1"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() {
    let server = TestServer::start().await;
    let mut c = server.tcp().await;
    c.send(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         to='localhost' version='1.0'>",
    )
    .await;
    c.expect_stream_error("invalid-namespace").await;
    server.stop().await;
}

#[tokio::test]
async fn plain_is_not_offered_without_tls_even_when_tls_is_optional() {
    let server = TestServer::start_with(|c| c.c2s.require_encryption = false).await;
    let mut c = server.tcp().await;
    let features = c.open_stream("localhost").await;
    assert_eq!(mechanisms(&features), vec!["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    drop(c);
    server.stop().await;
}
