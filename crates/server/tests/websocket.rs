//! RFC 7395 XMPP over WebSocket, on the wire: §3.1 handshake, §3.2 text frames, §3.3 framing,
//! §3.5 errors, §3.6 closing, §3.7 restarts, §3.8 keepalives, §3.9 no STARTTLS.

use weft_testkit::clients::ws::Handshake;
use weft_testkit::clients::{mechanisms, Client};
use weft_testkit::{Login, TestServer, WsClient};

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const OPEN: &str =
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

#[tokio::test]
async fn upgrade_requires_the_xmpp_subprotocol() {
    let server = TestServer::start().await;
    match WsClient::handshake(&server.ws_url(), None, None, &[])
        .await
        .unwrap()
    {
        Handshake::Refused { status, body } => {
            assert_eq!(status, 400);
            assert!(body.contains("'xmpp' subprotocol"), "body says why: {body}");
        }
        Handshake::Upgraded(_) => panic!("upgrade without subprotocol must be refused"),
    }
    match WsClient::handshake(&server.ws_url(), None, Some("chat, soap"), &[])
        .await
        .unwrap()
    {
        Handshake::Refused { status, .. } => assert_eq!(status, 400),
        Handshake::Upgraded(_) => panic!("upgrade without xmpp must be refused"),
    }
    match WsClient::handshake(&server.ws_url(), None, Some("chat, xmpp"), &[])
        .await
        .unwrap()
    {
        Handshake::Upgraded(c) => assert_eq!(c.protocol.as_deref(), Some("xmpp")),
        Handshake::Refused { status, body } => panic!("refused: {status} {body}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn open_is_answered_with_open_and_features_without_starttls() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.send(OPEN).await;
    let open = c.recv().await;
    assert!(open.is("open", FRAMING));
    assert_eq!(open.attr("from"), Some("localhost"));
    assert_eq!(open.attr("version"), Some("1.0"));
    assert!(open.attr("id").is_some_and(|id| id.len() >= 8));
    let raw = c.recv_text().await;
    // RFC 7395 §3.3.3: the streams prefix, when used, is declared in the message itself.
    assert!(
        raw.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"),
        "{raw}"
    );
    assert!(
        !raw.contains("starttls"),
        "§3.9: no STARTTLS on WebSocket: {raw}"
    );
    let features = weft_xml::parse_message(&raw, Default::default()).unwrap();
    assert_eq!(mechanisms(&features), vec!["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn starttls_asked_for_on_websocket_fails_and_the_server_lives_on() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    let failure = c.recv().await;
    assert!(failure.is("failure", "urn:ietf:params:xml:ns:xmpp-tls"));
    // The session task ended cleanly (it used to panic): the server takes the next client.
    let mut next = server.ws().await;
    next.login("alice", weft_testkit::Login::ScramSha256).await;
    server.stop().await;
}

#[tokio::test]
async fn wss_offers_plus_plain_and_channel_binding_types() {
    let server = TestServer::start().await;
    let mut c = server.wss().await;
    let features = c.open_stream("localhost").await;
    assert_eq!(
        mechanisms(&features),
        vec![
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
    let cb: Vec<String> = features
        .get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .expect("XEP-0440 element")
        .children()
        .filter_map(|c| c.attr("type").map(str::to_string))
        .collect();
    assert_eq!(cb, vec!["tls-exporter", "tls-server-end-point"]);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn wrong_namespace_gets_open_error_close_and_closing_handshake() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.send("<open xmlns='jabber:client' to='localhost' version='1.0'/>")
        .await;
    // RFC 7395 §3.5: <open/> first, then the error, then <close/>, then the closing handshake.
    let open = c.recv().await;
    assert!(open.is("open", FRAMING));
    c.expect_stream_error("invalid-namespace").await;
    let frame = c.expect_close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn unknown_host_is_host_unknown() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.send(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere.example' version='1.0'/>",
    )
    .await;
    assert!(c.recv().await.is("open", FRAMING));
    c.expect_stream_error("host-unknown").await;
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn binary_frame_is_a_stream_error_then_close_1003() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    c.send_binary(b"<presence/>").await;
    c.expect_stream_error("unsupported-encoding").await;
    let frame = c.expect_close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1003);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn whitespace_keepalive_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    c.send(" ").await;
    let err = c.expect_stream_error("not-well-formed").await;
    assert!(weft_testkit::clients::show(&err).contains("§3.8"));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn client_close_is_answered_with_close_and_handshake() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    c.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    let close = c.recv().await;
    assert!(close.is("close", FRAMING));
    // The client closed the stream, so it starts the WebSocket closing handshake.
    c.ws.close(None).await.unwrap();
    // The server answers the close frame (panics if the connection just drops).
    c.expect_close_frame().await;
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn restart_after_sasl_is_a_new_open_and_binds() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    let jid = c.login("alice", Login::ScramSha256).await;
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    let mut c = server.ws().await;
    let jid = c.login("bob", Login::ScramSha1).await;
    assert!(jid.starts_with("bob@localhost/"), "{jid}");
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn scram_sha_256_plus_over_wss_with_tls_exporter() {
    let server = TestServer::start().await;
    // The exporter value is only known to a client holding the TLS session; over WebSocket we
    // check that a wrong binding is refused (the right one is tested over TCP, where the test
    // client can read it).
    let mut c = server.wss().await;
    let features = c.open_stream("localhost").await;
    assert!(mechanisms(&features).contains(&"SCRAM-SHA-256-PLUS".to_string()));
    let mut scram =
        weft_sasl::ScramClient::new(weft_sasl::Hash::Sha256, "alice", weft_testkit::PASSWORD)
            .with_channel_binding("tls-exporter", &[0u8; 32]);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>{}</auth>",
        b64.encode(scram.client_first())
    ))
    .await;
    let challenge = c.recv().await;
    let cf = scram
        .client_final(&b64.decode(challenge.text()).unwrap())
        .unwrap();
    c.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        b64.encode(cf)
    ))
    .await;
    let failure = c.recv().await;
    assert!(failure.is("failure", "urn:ietf:params:xml:ns:xmpp-sasl"));
    assert!(failure.has_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl"));
    drop(c);
    server.stop().await;
}

/// Writes one masked client frame by hand, for payloads a WebSocket library refuses to send.
async fn raw_frame(c: &mut WsClient, opcode: u8, payload: &[u8]) {
    use tokio::io::AsyncWriteExt;
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let io = c.ws.get_mut();
    io.write_all(&frame).await.unwrap();
    io.flush().await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_is_unsupported_encoding_then_close_1007() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    raw_frame(&mut c, 0x1, b"<presence>\xff\xfe</presence>").await;
    c.expect_stream_error("unsupported-encoding").await;
    let frame = c.expect_close_frame().await.expect("a close code");
    assert_eq!(u16::from(frame.code), 1007);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn origin_allow_list() {
    let server = TestServer::start_with(|c| {
        c.websocket.allowed_origins = vec!["https://app.example".into()]
    })
    .await;
    let url = server.ws_url();
    match WsClient::handshake(
        &url,
        None,
        Some("xmpp"),
        &[("Origin", "https://evil.example")],
    )
    .await
    .unwrap()
    {
        Handshake::Refused { status, body } => {
            assert_eq!(status, 403);
            assert!(body.contains("Origin"), "{body}");
        }
        Handshake::Upgraded(_) => panic!("a foreign origin must be refused"),
    }
    match WsClient::handshake(
        &url,
        None,
        Some("xmpp"),
        &[("Origin", "https://app.example")],
    )
    .await
    .unwrap()
    {
        Handshake::Upgraded(c) => assert_eq!(c.protocol.as_deref(), Some("xmpp")),
        Handshake::Refused { status, body } => panic!("allowed origin refused: {status} {body}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn server_pings_and_drops_peers_that_stop_answering() {
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start_with(|c| {
        c.websocket.ping_interval = weft_config::HumanDuration(Duration::from_millis(200));
        c.websocket.ping_timeout = weft_config::HumanDuration(Duration::from_millis(300));
    })
    .await;
    let mut c = server.ws().await;
    c.open_stream("localhost").await;
    // An answering peer sees pings and stays connected (tungstenite answers them as we read).
    let ping = tokio::time::timeout(Duration::from_secs(2), c.ws.next())
        .await
        .unwrap();
    assert!(matches!(ping, Some(Ok(Message::Ping(_)))), "{ping:?}");
    // A peer that stops reading stops answering: after the timeout it gets dropped.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut saw_timeout = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), c.ws.next()).await {
        if let Message::Text(t) = &m {
            saw_timeout |= t.contains("connection-timeout");
        }
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
    assert!(saw_timeout, "the dropped peer is told why");
    drop(c);
    server.stop().await;
}

/// A client that sends its first frame in the same write as the upgrade request (RFC 6455
/// §4.1 says to wait for the 101; hyper reads the frame along with the request): the frame is
/// not lost, the server answers the <open/>.
#[tokio::test]
async fn frame_sent_with_the_upgrade_request_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    let mut bytes = b"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
        .to_vec();
    // One masked text frame (RFC 6455 §5.2, §5.3) carrying the <open/>.
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    assert!(OPEN.len() < 126);
    bytes.extend_from_slice(&[0x81, 0x80 | OPEN.len() as u8]);
    bytes.extend_from_slice(&mask);
    bytes.extend(OPEN.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&bytes).await.unwrap();

    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("<open ") {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("the server answers the <open/> sent with the upgrade request")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains(&format!("xmlns='{FRAMING}'")), "{text}");
    server.stop().await;
}
