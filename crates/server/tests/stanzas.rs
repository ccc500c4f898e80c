//! Stanzas once bound (RFC 6120 §8, RFC 6121 §8.5 basics): 'from' stamping, delivery between
//! local sessions over any transport, server IQs (XEP-0199, XEP-0030), and stanza errors.

use weft_testkit::clients::{drain, error_condition, show};
use weft_testkit::{Client, Login, TestServer};

#[tokio::test]
async fn websocket_and_tcp_clients_exchange_messages_both_ways() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;

    alice
        .send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='m1'><body>hi bob</body></message>"))
        .await;
    let got = bob.recv().await;
    assert_eq!(
        got.attr("from"),
        Some(alice_jid.as_str()),
        "server stamps 'from'"
    );
    assert_eq!(got.attr("to"), Some(bob_jid.as_str()));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hi bob".into())
    );

    // A client-supplied 'from' of its own bare JID is accepted and replaced by the full JID.
    bob.send(&format!(
        "<message xmlns='jabber:client' from='bob@localhost' to='{alice_jid}' type='chat'><body>hi &amp; bye</body></message>"
    ))
    .await;
    let got = alice.recv().await;
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hi & bye".into())
    );
    drop((alice, bob));
    server.stop().await;
}

#[tokio::test]
async fn a_full_jid_in_any_spelling_reaches_its_session() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = weft_testkit::clients::login(
        &mut bob,
        "bob",
        weft_testkit::PASSWORD,
        Login::ScramSha256,
        Some("desk"),
    )
    .await;
    assert_eq!(bob_jid, "bob@localhost/desk");
    // The exact string (found without parsing 'to') and other spellings of the same JID
    // (parsed and normalised: nodeprep and nameprep fold case) reach bob alike.
    for (i, to) in ["bob@localhost/desk", "BOB@LocalHost/desk"]
        .iter()
        .enumerate()
    {
        alice
            .send(&format!(
                "<message xmlns='jabber:client' to='{to}' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
        let got = bob.recv().await;
        assert_eq!(got.attr("id"), Some(format!("m{i}").as_str()), "to='{to}'");
        assert_eq!(got.attr("to"), Some(*to), "'to' is passed on as written");
    }
    // A malformed 'to' is still refused as before.
    alice
        .send(
            "<message xmlns='jabber:client' to='bob@localhost/' id='bad'><body>x</body></message>",
        )
        .await;
    let err = alice.recv().await;
    assert_eq!(err.attr("type"), Some("error"));
    assert_eq!(error_condition(&err).as_deref(), Some("jid-malformed"));
    drop((alice, bob));
    server.stop().await;
}

#[tokio::test]
async fn spoofed_from_is_invalid_from() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    alice
        .send("<message xmlns='jabber:client' from='bob@localhost/x' to='carol@localhost'><body>x</body></message>")
        .await;
    alice.expect_stream_error("invalid-from").await;
    server.stop().await;
}

#[tokio::test]
async fn bare_jid_messages_reach_available_resources_only() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    let bob_jid = bob.login("bob", Login::ScramSha256).await;
    // Bob has not sent presence: RFC 6121 §8.5.2.2, no available resource. The message is
    // kept offline (XEP-0160; tests/offline.rs) and comes with his first presence.
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' id='m1' type='chat'><body>1</body></message>")
        .await;
    // Stored before Bob's presence: Alice's session handles her stanzas in order.
    assert!(drain(&mut alice).await.is_empty(), "kept, not refused");
    bob.send("<presence xmlns='jabber:client'/>").await;
    let kept = bob.recv().await;
    assert_eq!(kept.attr("id"), Some("m1"), "{}", show(&kept));
    // Initial presence is reflected to the sender's own available resources (RFC 6121 §4.2.2).
    let own = bob.recv().await;
    assert_eq!(own.name(), "presence");
    assert_eq!(own.attr("from"), Some(bob_jid.as_str()));
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' id='m2' type='chat'><body>2</body></message>")
        .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("id"), Some("m2"));
    assert_eq!(got.attr("to"), Some("bob@localhost"));
    drop((alice, bob));
    server.stop().await;
}

#[tokio::test]
async fn server_iqs_ping_disco_version_and_unknown() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    let jid = c.login("alice", Login::ScramSha256).await;
    c.send("<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let r = c.recv().await;
    assert_eq!(
        (r.attr("type"), r.attr("id"), r.attr("from")),
        (Some("result"), Some("p"), Some("localhost"))
    );
    assert_eq!(r.attr("to"), Some(jid.as_str()));

    c.send("<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = c.recv().await;
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .expect("disco result");
    let features: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
    assert!(features.contains(&"urn:xmpp:ping"), "{features:?}");
    let identity = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("server"), Some("im"))
    );

    c.send("<iq xmlns='jabber:client' type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>").await;
    let r = c.recv().await;
    assert_eq!(
        r.get_child("query", "jabber:iq:version")
            .and_then(|q| q.get_child("name", "jabber:iq:version"))
            .map(|n| n.text()),
        Some("weft".into())
    );

    c.send("<iq xmlns='jabber:client' type='get' id='u' to='localhost'><query xmlns='urn:example:nothing'/></iq>").await;
    let r = c.recv().await;
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));

    c.send("<iq xmlns='jabber:client' type='get' id='two'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let r = c.recv().await;
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));

    // No 'to': the server answers for the account (RFC 6120 §10.3.3), from its bare JID.
    c.send("<iq xmlns='jabber:client' type='get' id='self'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c.recv().await;
    assert_eq!(
        (r.attr("type"), r.attr("from")),
        (Some("result"), Some("alice@localhost"))
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn stanza_errors_for_what_cannot_be_delivered() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.login("alice", Login::ScramSha256).await;
    let cases = [
        ("<message xmlns='jabber:client' to='nobody@localhost' id='a'><body>x</body></message>", "service-unavailable"),
        ("<message xmlns='jabber:client' to='someone@remote.example' id='b'><body>x</body></message>", "remote-server-not-found"),
        ("<message xmlns='jabber:client' to='@@bad@@' id='c'><body>x</body></message>", "jid-malformed"),
        ("<iq xmlns='jabber:client' to='bob@localhost/gone' type='get' id='d'><ping xmlns='urn:xmpp:ping'/></iq>", "service-unavailable"),
        ("<message xmlns='jabber:client' to='localhost' id='e'><body>x</body></message>", "service-unavailable"),
    ];
    for (stanza, condition) in cases {
        c.send(stanza).await;
        let r = c.recv().await;
        assert_eq!(r.attr("type"), Some("error"), "{stanza} -> {}", show(&r));
        assert_eq!(
            error_condition(&r).as_deref(),
            Some(condition),
            "{stanza} -> {}",
            show(&r)
        );
    }
    // Unknown top-level elements end the stream (RFC 6120 §4.9.3.24).
    c.send("<foo xmlns='jabber:client'/>").await;
    c.expect_stream_error("unsupported-stanza-type").await;
    server.stop().await;
}

#[tokio::test]
async fn resource_conflict_replaces_the_old_session_by_default() {
    let server = TestServer::start().await;
    let mut first = server.ws().await;
    weft_testkit::clients::login(
        &mut first,
        "alice",
        weft_testkit::PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let mut second = server.tcp_direct_tls().await;
    let jid = weft_testkit::clients::login(
        &mut second,
        "alice",
        weft_testkit::PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    assert_eq!(jid, "alice@localhost/phone");
    first.expect_stream_error("conflict").await;
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn resource_conflict_rejects_when_configured() {
    use weft_testkit::clients::{authenticate, bind, login};
    use weft_testkit::PASSWORD;
    let server =
        TestServer::start_with(|c| c.c2s.resource_conflict = weft_config::ResourceConflict::Reject)
            .await;
    let mut first = server.ws().await;
    login(
        &mut first,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let mut second = server.ws().await;
    authenticate(&mut second, "alice", PASSWORD, Login::ScramSha256).await;
    let refused = bind(&mut second, Some("phone")).await;
    assert_eq!(refused.attr("type"), Some("error"), "{}", show(&refused));
    assert_eq!(error_condition(&refused).as_deref(), Some("conflict"));
    // The client may then pick another resource on the same stream.
    let ok = bind(&mut second, Some("laptop")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    // And a server-generated resource is unique and unguessable.
    let mut third = server.ws().await;
    let jid = login(&mut third, "alice", PASSWORD, Login::ScramSha256, None).await;
    assert!(
        jid.starts_with("alice@localhost/weft-") && jid.len() > "alice@localhost/weft-".len() + 8,
        "{jid}"
    );
    drop((first, second, third));
    server.stop().await;
}

#[tokio::test]
async fn legacy_session_request_after_bind_succeeds() {
    let server = TestServer::start().await;
    let mut c = server.ws().await;
    c.login("alice", Login::ScramSha256).await;
    c.send("<iq xmlns='jabber:client' type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await;
    let r = c.recv().await;
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("s1")),
        "{}",
        show(&r)
    );
    drop(c);
    server.stop().await;
}

/// A recipient that stops reading: the server keeps at most `limits.session_queue` stanzas
/// waiting for its socket, refuses the rest with `resource-constraint` (the sender learns which),
/// and once the recipient reads again it gets every accepted stanza, in order. Recipients over
/// ws:// and plain TCP are written to by the sender's task (`transport::shared`), over wss:// through
/// the session's queue: both are checked.
#[tokio::test]
async fn a_recipient_that_stops_reading_loses_nothing_that_was_accepted() {
    const SENT: usize = 300;
    let server = TestServer::start_with(|c| {
        c.limits.session_queue = 2;
        // Plain TCP on loopback, as in the benchmark: the shared write side needs it.
        c.c2s.require_encryption = false;
    })
    .await;
    let body = "x".repeat(64 * 1024);
    for recipient in ["ws", "tcp", "wss"] {
        let mut alice = server.ws().await;
        alice.login("alice", Login::ScramSha256).await;
        let (mut bob_ws, mut bob_tcp) = (None, None);
        let bob_jid = match recipient {
            "ws" => {
                bob_ws
                    .insert(server.ws().await)
                    .login("bob", Login::ScramSha1)
                    .await
            }
            "wss" => {
                bob_ws
                    .insert(server.wss().await)
                    .login("bob", Login::ScramSha1)
                    .await
            }
            _ => {
                bob_tcp
                    .insert(server.tcp().await)
                    .login("bob", Login::ScramSha1)
                    .await
            }
        };
        let mut refused = Vec::new();
        let drain = |el: minidom::Element, refused: &mut Vec<usize>| {
            assert_eq!(el.attr("type"), Some("error"), "{}", show(&el));
            assert_eq!(error_condition(&el).as_deref(), Some("resource-constraint"));
            let id = el.attr("id").and_then(|id| id.parse().ok()).expect("id");
            refused.push(id);
        };
        for i in 0..SENT {
            alice
                .send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='{i}'><body>{body}</body></message>"))
                .await;
            // Errors come back while sending: reading them keeps alice's socket from filling.
            while let Ok(el) =
                tokio::time::timeout(std::time::Duration::from_millis(1), alice.recv()).await
            {
                drain(el, &mut refused);
            }
        }
        while let Ok(el) =
            tokio::time::timeout(std::time::Duration::from_millis(500), alice.recv()).await
        {
            drain(el, &mut refused);
        }
        assert!(
            !refused.is_empty(),
            "{recipient}: {SENT} messages of 64 KiB to a client that does not read were all accepted"
        );
        let accepted: Vec<usize> = (0..SENT).filter(|i| !refused.contains(i)).collect();
        let mut got = Vec::new();
        while got.len() < accepted.len() {
            let el = match (&mut bob_ws, &mut bob_tcp) {
                (Some(ws), _) => ws.recv().await,
                (_, Some(tcp)) => tcp.recv().await,
                _ => unreachable!(),
            };
            if el.name() == "message" {
                assert_eq!(
                    el.get_child("body", "jabber:client")
                        .map(|b| b.text().len()),
                    Some(body.len())
                );
                got.push(
                    el.attr("id")
                        .and_then(|id| id.parse::<usize>().ok())
                        .expect("id"),
                );
            }
        }
        assert_eq!(
            got, accepted,
            "{recipient}: every accepted message, in order"
        );
        drop((alice, bob_ws, bob_tcp));
    }
    server.stop().await;
}
