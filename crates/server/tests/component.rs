//! XEP-0114 external components on the wire: the handshake (right secret, wrong secret,
//! unknown domain, a second connection), stanzas both ways between clients and a component,
//! the check of the component's 'from', errors while it is away, the unauthenticated timeout,
//! disco#items, limits, and a component federating with another server.

use std::time::Duration;

use sha1::Digest;
use weft_config::{ComponentConfig, ComponentConflict, Config};
use weft_testkit::clients::{error_condition, iq, show};
use weft_testkit::federation::client;
use weft_testkit::{Client, TcpClient, TestCa, TestServer};
use weft_xml::{StreamEvent, StreamHeader};

const GW: &str = "gw.localhost";
const SECRET: &str = "component s3cret";
const ACCEPT: &str = "jabber:component:accept";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

fn component(domain: &str, secret: &str) -> ComponentConfig {
    ComponentConfig {
        domain: domain.into(),
        secret: secret.into(),
        name: None,
        conflict: ComponentConflict::Reject,
    }
}

/// A server for `localhost` with a component listener and the component `gw.localhost`.
async fn server_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.listen.component = vec!["127.0.0.1:0".parse().unwrap()];
        c.components = vec![ComponentConfig {
            name: Some("Gateway".into()),
            ..component(GW, SECRET)
        }];
        adjust(c);
    })
    .await
}

/// Opens a component stream to `to` and returns the server's header.
async fn open(server: &TestServer, to: Option<&str>, ns: &str) -> (TcpClient, StreamHeader) {
    let mut c = TcpClient::connect(server.running.component[0])
        .await
        .expect("component listener");
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ns}' \
         xmlns:stream='http://etherx.jabber.org/streams'{to}>"
    ))
    .await;
    match c.recv_event().await {
        Some(StreamEvent::Header(h)) => (c, h),
        other => panic!("expected the server's stream header, got {other:?}"),
    }
}

/// XEP-0114 §3, computed here rather than with weft's own function.
fn digest(id: &str, secret: &str) -> String {
    let hash = sha1::Sha1::digest(format!("{id}{secret}").as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A component connected for `domain` with `secret`, its handshake accepted.
async fn connect(server: &TestServer, domain: &str, secret: &str) -> TcpClient {
    let (mut c, header) = open(server, Some(domain), ACCEPT).await;
    assert_eq!(header.default_ns.as_deref(), Some(ACCEPT));
    assert_eq!(header.attr("from"), Some(domain));
    let id = header.attr("id").expect("stream id").to_string();
    c.send(&format!("<handshake>{}</handshake>", digest(&id, secret)))
        .await;
    let answer = c.recv().await;
    assert!(
        answer.is("handshake", ACCEPT)
            && answer.children().next().is_none()
            && answer.text().is_empty(),
        "expected an empty <handshake/>, got {}",
        show(&answer)
    );
    c
}

/// Waits until the server lists `domain` as connected (the handshake answer is written
/// just after, so this is at most a moment).
async fn wait_connected(server: &TestServer, domain: &str, connected: bool) {
    for _ in 0..200 {
        if server.running.state.components.is_connected(domain) == connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{domain} connected: expected {connected}");
}

#[tokio::test]
async fn a_component_gets_its_domains_stanzas_and_answers_them() {
    let server = server_with(|_| {}).await;
    let mut gw = connect(&server, GW, SECRET).await;
    let (mut alice, alice_jid) = client(&server, "alice").await;

    // A message to a JID at the component's domain reaches the component, stamped.
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='bob@{GW}' type='chat' id='m1'><body>hi gateway</body></message>"
        ))
        .await;
    let got = gw.recv().await;
    assert!(got.is("message", ACCEPT), "{}", show(&got));
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()));
    assert_eq!(got.attr("to"), Some(format!("bob@{GW}").as_str()));
    assert_eq!(
        got.get_child("body", ACCEPT).map(|b| b.text()),
        Some("hi gateway".into())
    );

    // Its answer reaches the client, from the JID the component chose.
    gw.send(&format!(
        "<message from='bob@{GW}/legacy' to='{alice_jid}' type='chat'><body>hi alice</body></message>"
    ))
    .await;
    let reply = alice.recv().await;
    assert_eq!(
        reply.attr("from"),
        Some(format!("bob@{GW}/legacy").as_str())
    );
    assert_eq!(
        reply.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hi alice".into())
    );

    // An IQ to the component's own domain goes to the component, and its result back.
    alice
        .send(&format!(
            "<iq xmlns='jabber:client' type='get' to='{GW}' id='d1'><query xmlns='{DISCO_INFO}'/></iq>"
        ))
        .await;
    let req = gw.recv().await;
    assert!(
        req.is("iq", ACCEPT) && req.attr("type") == Some("get"),
        "{}",
        show(&req)
    );
    assert!(req.has_child("query", DISCO_INFO));
    assert_eq!(req.attr("from"), Some(alice_jid.as_str()));
    gw.send(&format!(
        "<iq type='result' from='{GW}' to='{alice_jid}' id='d1'><query xmlns='{DISCO_INFO}'>\
         <identity category='gateway' type='irc' name='Test gateway'/></query></iq>"
    ))
    .await;
    let result = alice.recv().await;
    assert_eq!(result.attr("id"), Some("d1"));
    assert_eq!(result.attr("type"), Some("result"));
    assert_eq!(result.attr("from"), Some(GW));
    let identity = result
        .get_child("query", DISCO_INFO)
        .and_then(|q| q.get_child("identity", DISCO_INFO))
        .expect("the component's identity");
    assert_eq!(identity.attr("category"), Some("gateway"));

    // The component's own IQ to the server is answered by the server.
    gw.send(&format!(
        "<iq type='get' from='{GW}' to='localhost' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let pong = gw.recv().await;
    assert_eq!(
        (pong.attr("type"), pong.attr("id"), pong.attr("to")),
        (Some("result"), Some("p1"), Some(GW)),
        "{}",
        show(&pong)
    );

    // A stanza to a local account that does not exist is answered to the component.
    gw.send(&format!(
        "<iq type='get' from='bob@{GW}' to='nobody@localhost' id='v1'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let err = gw.recv().await;
    assert_eq!(err.attr("type"), Some("error"), "{}", show(&err));
    assert_eq!(err.attr("to"), Some(format!("bob@{GW}").as_str()));

    // Closing the stream ends the connection; the domain is free again.
    gw.send("</stream:stream>").await;
    assert!(matches!(
        gw.recv_event().await,
        Some(StreamEvent::Close) | None
    ));
    wait_connected(&server, GW, false).await;
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_not_authorized() {
    let server = server_with(|_| {}).await;
    let (mut c, header) = open(&server, Some(GW), ACCEPT).await;
    let id = header.attr("id").unwrap().to_string();
    c.send(&format!(
        "<handshake>{}</handshake>",
        digest(&id, "not the secret")
    ))
    .await;
    c.expect_stream_error("not-authorized").await;
    // A digest for another stream id is as wrong.
    let (mut c, _) = open(&server, Some(GW), ACCEPT).await;
    c.send(&format!("<handshake>{}</handshake>", digest(&id, SECRET)))
        .await;
    c.expect_stream_error("not-authorized").await;
    // Stanzas before the handshake are refused.
    let (mut c, _) = open(&server, Some(GW), ACCEPT).await;
    c.send(&format!("<message from='x@{GW}' to='alice@localhost'/>"))
        .await;
    c.expect_stream_error("not-authorized").await;
    assert!(!server.running.state.components.is_connected(GW));
    // The right secret, upper-case, is accepted (as Prosody and ejabberd accept it).
    let (mut c, header) = open(&server, Some(GW), ACCEPT).await;
    let id = header.attr("id").unwrap().to_string();
    c.send(&format!(
        "<handshake>{}</handshake>",
        digest(&id, SECRET).to_uppercase()
    ))
    .await;
    assert!(c.recv().await.is("handshake", ACCEPT));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn headers_must_name_a_configured_component_in_its_namespace() {
    let server = server_with(|_| {}).await;
    let (mut c, h) = open(&server, Some("nope.localhost"), ACCEPT).await;
    assert_eq!(h.default_ns.as_deref(), Some(ACCEPT));
    c.expect_stream_error("host-unknown").await;
    // The server's own domain is no component.
    let (mut c, _) = open(&server, Some("localhost"), ACCEPT).await;
    c.expect_stream_error("host-unknown").await;
    let (mut c, _) = open(&server, None, ACCEPT).await;
    c.expect_stream_error("improper-addressing").await;
    let (mut c, _) = open(&server, Some(GW), "jabber:client").await;
    c.expect_stream_error("invalid-namespace").await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_connection_for_a_connected_domain_gets_conflict() {
    let server = server_with(|c| {
        c.components.push(ComponentConfig {
            conflict: ComponentConflict::Replace,
            ..component("swap.localhost", "other secret")
        });
    })
    .await;
    let (mut alice, alice_jid) = client(&server, "alice").await;

    // Default (Prosody's kick_new): the newcomer is refused, the first one keeps working.
    let mut first = connect(&server, GW, SECRET).await;
    let (mut second, header) = open(&server, Some(GW), ACCEPT).await;
    let id = header.attr("id").unwrap().to_string();
    second
        .send(&format!("<handshake>{}</handshake>", digest(&id, SECRET)))
        .await;
    second.expect_stream_error("conflict").await;
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{GW}'><body>still you</body></message>"
        ))
        .await;
    let got = first.recv().await;
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()), "{}", show(&got));

    // conflict = "replace" (kick_old): the old connection goes, the newcomer takes over.
    let mut old = connect(&server, "swap.localhost", "other secret").await;
    let mut new = connect(&server, "swap.localhost", "other secret").await;
    old.expect_stream_error("conflict").await;
    alice
        .send("<message xmlns='jabber:client' to='swap.localhost'><body>to the new one</body></message>")
        .await;
    let got = new.recv().await;
    assert_eq!(
        got.get_child("body", ACCEPT).map(|b| b.text()),
        Some("to the new one".into())
    );
    drop((first, new));
    server.stop().await;
}

#[tokio::test]
async fn a_component_may_only_send_from_its_own_domain() {
    let server = server_with(|_| {}).await;
    let (mut bob, bob_jid) = client(&server, "bob").await;
    for (stanza, condition) in [
        (
            format!("<message from='alice@localhost' to='{bob_jid}'><body>spoof</body></message>"),
            "invalid-from",
        ),
        (
            format!("<message from='x@sub.{GW}' to='{bob_jid}'><body>sub</body></message>"),
            "invalid-from",
        ),
        (
            format!("<presence from='{GW}x' to='{bob_jid}'/>"),
            "invalid-from",
        ),
        (
            format!("<message to='{bob_jid}'><body>no from</body></message>"),
            "improper-addressing",
        ),
        (
            format!("<message from='x@{GW}'><body>no to</body></message>"),
            "improper-addressing",
        ),
        (
            "<foo xmlns='urn:example'/>".to_string(),
            "unsupported-stanza-type",
        ),
    ] {
        let mut gw = connect(&server, GW, SECRET).await;
        gw.send(&stanza).await;
        gw.expect_stream_error(condition).await;
        wait_connected(&server, GW, false).await;
    }
    // None of it reached bob; a stanza from the component's domain does.
    let mut gw = connect(&server, GW, SECRET).await;
    gw.send(&format!(
        "<message from='x@{GW}' to='{bob_jid}' id='ok'><body>fine</body></message>"
    ))
    .await;
    let got = bob.recv().await;
    assert_eq!(
        (got.attr("id"), got.attr("from")),
        (Some("ok"), Some(format!("x@{GW}").as_str())),
        "{}",
        show(&got)
    );
    drop(gw);
    // A 'to' that is no JID is answered, not fatal.
    let mut gw = connect(&server, GW, SECRET).await;
    gw.send(&format!(
        "<message from='x@{GW}' to='a@b@c' id='bad'><body>?</body></message>"
    ))
    .await;
    let err = gw.recv().await;
    assert_eq!(
        (err.attr("type"), err.attr("id")),
        (Some("error"), Some("bad")),
        "{}",
        show(&err)
    );
    assert!(err
        .get_child("error", ACCEPT)
        .is_some_and(|e| e.has_child("jid-malformed", "urn:ietf:params:xml:ns:xmpp-stanzas")));
    drop(gw);
    server.stop().await;
}

#[tokio::test]
async fn stanzas_for_a_component_that_is_not_connected_come_back_as_errors() {
    let server = server_with(|_| {}).await;
    let (mut alice, _) = client(&server, "alice").await;
    let check = |reply: &weft_testkit::Element, id: &str| {
        assert_eq!(reply.attr("id"), Some(id), "{}", show(reply));
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(
            error_condition(reply).as_deref(),
            Some("service-unavailable"),
            "{}",
            show(reply)
        );
    };
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='bob@{GW}' id='m1'><body>anyone?</body></message>"
        ))
        .await;
    check(&alice.recv().await, "m1");
    let reply = iq(
        &mut alice,
        "i1",
        &format!("<iq xmlns='jabber:client' type='get' to='{GW}' id='i1'><query xmlns='{DISCO_INFO}'/></iq>"),
    )
    .await;
    check(&reply, "i1");
    // Connected, then gone again: the same.
    let gw = connect(&server, GW, SECRET).await;
    drop(gw);
    wait_connected(&server, GW, false).await;
    let reply = iq(
        &mut alice,
        "i2",
        &format!("<iq xmlns='jabber:client' type='get' to='{GW}' id='i2'><query xmlns='{DISCO_INFO}'/></iq>"),
    )
    .await;
    check(&reply, "i2");
    server.stop().await;
}

#[tokio::test]
async fn components_that_do_not_authenticate_in_time_are_closed() {
    let server = server_with(|c| {
        c.c2s.unauthenticated_timeout = weft_config::HumanDuration(Duration::from_millis(300));
    })
    .await;
    // A header, then nothing.
    let (mut quiet, _) = open(&server, Some(GW), ACCEPT).await;
    // Not even a header: the error comes after one from the server.
    let mut silent = TcpClient::connect(server.running.component[0])
        .await
        .unwrap();
    quiet.expect_stream_error("connection-timeout").await;
    silent.expect_stream_error("connection-timeout").await;
    // A component that completed its handshake is not affected.
    let mut gw = connect(&server, GW, SECRET).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.send(&format!(
        "<iq type='get' from='{GW}' to='localhost' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    assert_eq!(gw.recv().await.attr("type"), Some("result"));
    drop(gw);
    server.stop().await;
}

#[tokio::test]
async fn oversized_stanzas_from_a_component_end_its_stream() {
    let server = server_with(|c| c.limits.max_stanza_size = weft_config::ByteSize::kib(2)).await;
    let mut gw = connect(&server, GW, SECRET).await;
    let body = "x".repeat(4096);
    gw.send(&format!(
        "<message from='x@{GW}' to='alice@localhost'><body>{body}</body></message>"
    ))
    .await;
    gw.expect_stream_error("policy-violation").await;
    server.stop().await;
}

#[tokio::test]
async fn components_are_listed_in_disco_items_and_reach_each_other() {
    let server = server_with(|c| {
        c.components.push(component("bots.example", "bots secret"));
    })
    .await;
    let (mut alice, _) = client(&server, "alice").await;
    let items = iq(
        &mut alice,
        "it",
        &format!("<iq xmlns='jabber:client' type='get' to='localhost' id='it'><query xmlns='{DISCO_ITEMS}'/></iq>"),
    )
    .await;
    let listed: Vec<(Option<String>, Option<String>)> = items
        .get_child("query", DISCO_ITEMS)
        .expect("items")
        .children()
        .map(|i| {
            (
                i.attr("jid").map(String::from),
                i.attr("name").map(String::from),
            )
        })
        .collect();
    assert!(
        listed.contains(&(Some(GW.into()), Some("Gateway".into()))),
        "{listed:?}"
    );
    // Not a subdomain of any hosted domain: listed under the first one, without a name.
    assert!(
        listed.contains(&(Some("bots.example".into()), None)),
        "{listed:?}"
    );

    let mut gw = connect(&server, GW, SECRET).await;
    let mut bots = connect(&server, "bots.example", "bots secret").await;
    gw.send(&format!(
        "<message from='a@{GW}' to='b@bots.example' id='c2c'><body>hello bots</body></message>"
    ))
    .await;
    let got = bots.recv().await;
    assert_eq!(
        got.attr("from"),
        Some(format!("a@{GW}").as_str()),
        "{}",
        show(&got)
    );
    assert_eq!(got.attr("id"), Some("c2c"));
    drop((gw, bots));
    server.stop().await;
}

/// A component of a.test federates under its own domain: dialback for gw.a.test is answered by
/// a.test, so b.test's users and the component talk both ways.
#[tokio::test]
async fn a_component_federates_under_its_own_domain() {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, false, |c| {
        c.s2s.bidi = false;
        c.listen.component = vec!["127.0.0.1:0".parse().unwrap()];
        c.components = vec![component("gw.a.test", SECRET)];
    })
    .await;
    let b = TestServer::start_federating("b.test", &ca, false, |c| c.s2s.bidi = false).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    for domain in ["a.test", "gw.a.test"] {
        b.running
            .state
            .s2s
            .set_routes(domain, vec![a.s2s_route("tcp")]);
    }
    let mut gw = connect(&a, "gw.a.test", SECRET).await;
    let (mut bob, bob_jid) = client(&b, "bob").await;

    gw.send(&format!(
        "<message from='echo@gw.a.test/x' to='{bob_jid}' type='chat'><body>from the gateway</body></message>"
    ))
    .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("from"), Some("echo@gw.a.test/x"), "{}", show(&got));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("from the gateway".into())
    );
    bob.send(
        "<message xmlns='jabber:client' to='echo@gw.a.test/x' type='chat'><body>back to you</body></message>",
    )
    .await;
    let got = gw.recv().await;
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()), "{}", show(&got));
    assert_eq!(
        got.get_child("body", ACCEPT).map(|b| b.text()),
        Some("back to you".into())
    );
    drop(gw);
    a.stop().await;
    b.stop().await;
}

/// The next element `c` receives that `want` accepts, skipping others (roster pushes, …).
async fn recv_until<C: Client>(
    c: &mut C,
    what: &str,
    want: impl Fn(&weft_testkit::Element) -> bool,
) -> weft_testkit::Element {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let el = c.recv().await;
        if want(&el) {
            return el;
        }
        seen.push(show(&el));
    }
    panic!("no {what}; got {seen:?}");
}

/// A gateway's contacts are presence subscriptions like any other (RFC 6121): subscription
/// requests and answers, the probe at login and the broadcast reach the component.
#[tokio::test]
async fn a_component_takes_part_in_presence_subscriptions() {
    let server = server_with(|_| {}).await;
    let mut gw = connect(&server, GW, SECRET).await;
    let (mut alice, _) = client(&server, "alice").await;
    let presence = |kind: Option<&'static str>| {
        move |el: &weft_testkit::Element| el.name() == "presence" && el.attr("type") == kind
    };

    // Roster pushes go to resources that asked for the roster (RFC 6121 §2.1.6).
    iq(
        &mut alice,
        "r",
        "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    alice
        .send(&format!(
            "<presence xmlns='jabber:client' to='{GW}' type='subscribe'/>"
        ))
        .await;
    let req = recv_until(&mut gw, "subscribe", presence(Some("subscribe"))).await;
    assert_eq!(req.attr("from"), Some("alice@localhost"), "{}", show(&req));
    gw.send(&format!(
        "<presence from='{GW}' to='alice@localhost' type='subscribed'/>"
    ))
    .await;
    let push = recv_until(&mut alice, "roster push", |el| {
        el.name() == "iq"
            && el
                .get_child("query", "jabber:iq:roster")
                .and_then(|q| q.get_child("item", "jabber:iq:roster"))
                .is_some_and(|i| i.attr("jid") == Some(GW) && i.attr("subscription") == Some("to"))
    })
    .await;
    assert_eq!(push.attr("type"), Some("set"));

    // Alice's initial presence: the gateway is probed, and its answer reaches her.
    alice
        .send("<presence xmlns='jabber:client'><status>here</status></presence>")
        .await;
    let probe = recv_until(&mut gw, "probe", presence(Some("probe"))).await;
    assert_eq!(
        (probe.attr("from"), probe.attr("to")),
        (Some("alice@localhost"), Some(GW))
    );
    gw.send(&format!(
        "<presence from='{GW}' to='alice@localhost'><show>dnd</show></presence>"
    ))
    .await;
    let p = recv_until(&mut alice, "the gateway's presence", |el| {
        el.name() == "presence" && el.attr("from") == Some(GW)
    })
    .await;
    assert_eq!(
        p.get_child("show", "jabber:client").map(|s| s.text()),
        Some("dnd".into())
    );

    // The gateway subscribes to alice; once she approves, it gets her presence.
    gw.send(&format!(
        "<presence from='{GW}' to='alice@localhost' type='subscribe'/>"
    ))
    .await;
    recv_until(
        &mut alice,
        "the gateway's request",
        presence(Some("subscribe")),
    )
    .await;
    alice
        .send(&format!(
            "<presence xmlns='jabber:client' to='{GW}' type='subscribed'/>"
        ))
        .await;
    recv_until(&mut gw, "subscribed", presence(Some("subscribed"))).await;
    let available = recv_until(&mut gw, "alice's presence", presence(None)).await;
    assert!(
        available
            .attr("from")
            .is_some_and(|f| f.starts_with("alice@localhost/")),
        "{}",
        show(&available)
    );
    assert_eq!(
        available.get_child("status", ACCEPT).map(|s| s.text()),
        Some("here".into())
    );
    drop((gw, alice));
    server.stop().await;
}
