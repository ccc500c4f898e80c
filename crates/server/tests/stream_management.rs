//! XEP-0198 stream management on the wire: enable, acks and their counters, resumption after
//! a dropped connection onto the same or another transport with every stanza exactly once and
//! in order, the timeout that sends what was not acknowledged to offline storage (IQs back as
//! errors), the queue bound, and the errors of §3-§5.

use std::time::Duration;

use minidom::Element;
use weft_testkit::clients::{
    authenticate, bind, drain, error_condition, login, show, Client, Login,
};
use weft_testkit::{TestServer, PASSWORD};

const SM: &str = "urn:xmpp:sm:3";
const DELAY: &str = "urn:xmpp:delay";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn chat(to: &str, n: usize) -> String {
    format!(
        "<message xmlns='jabber:client' to='{to}' id='m{n}' type='chat'><body>{n}</body></message>"
    )
}

fn is_stanza(el: &Element) -> bool {
    matches!(el.name(), "message" | "presence" | "iq")
}

/// A client's side of XEP-0198: counts what it handles, answers the server's `<r/>`.
struct Counter {
    h: u32,
}

impl Counter {
    /// The next stanza, counted; acks requests on the way; returns non-stanza elements of
    /// other namespaces (stream errors) as they come.
    async fn next<C: Client>(&mut self, c: &mut C) -> Element {
        loop {
            let el = c.recv().await;
            if el.is("r", SM) {
                c.send(&format!("<a xmlns='{SM}' h='{}'/>", self.h)).await;
                continue;
            }
            if el.is("a", SM) {
                continue;
            }
            if is_stanza(&el) {
                self.h = self.h.wrapping_add(1);
            }
            return el;
        }
    }

    /// Stanzas up to the answer to a ping (the server handled everything sent before it).
    async fn drain<C: Client>(&mut self, c: &mut C) -> Vec<Element> {
        c.send(
            "<iq xmlns='jabber:client' type='get' id='sm-drain'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
        let mut before = Vec::new();
        loop {
            let el = self.next(c).await;
            if el.attr("id") == Some("sm-drain") {
                return before;
            }
            before.push(el);
        }
    }
}

/// Logs in and enables stream management with resumption; returns the full JID and SM-ID.
async fn login_resumable<C: Client>(c: &mut C, user: &str, resource: &str) -> (String, String) {
    let features = authenticate(c, user, PASSWORD, Login::ScramSha256).await;
    assert!(
        features.has_child("sm", SM),
        "sm offered after SASL: {}",
        show(&features)
    );
    let bound = bind(c, Some(resource)).await;
    assert_eq!(bound.attr("type"), Some("result"), "{}", show(&bound));
    let jid = format!("{user}@localhost/{resource}");
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = c.recv().await;
    assert!(enabled.is("enabled", SM), "{}", show(&enabled));
    assert!(
        matches!(enabled.attr("resume"), Some("true" | "1")),
        "{}",
        show(&enabled)
    );
    assert!(enabled.attr("max").is_some(), "{}", show(&enabled));
    let id = enabled.attr("id").expect("an SM-ID").to_string();
    (jid, id)
}

/// Authenticates a new stream and asks to resume; returns `<resumed/>` or `<failed/>`.
async fn resume<C: Client>(c: &mut C, user: &str, previd: &str, h: u32) -> Element {
    authenticate(c, user, PASSWORD, Login::ScramSha256).await;
    c.send(&format!("<resume xmlns='{SM}' previd='{previd}' h='{h}'/>"))
        .await;
    c.recv().await
}

fn ids(els: &[Element]) -> Vec<String> {
    els.iter()
        .filter(|e| e.name() == "message")
        .filter_map(|e| e.attr("id").map(str::to_string))
        .collect()
}

fn expected(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("m{n}")).collect()
}

#[tokio::test]
async fn enable_acks_and_counts() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let (_, _) = login_resumable(&mut alice, "alice", "phone").await;
    // The client's count: two pings handled.
    for id in ["p1", "p2"] {
        alice
            .send(&format!(
                "<iq xmlns='jabber:client' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
    }
    alice.send(&format!("<r xmlns='{SM}'/>")).await;
    let mut seen = Vec::new();
    let a = loop {
        let el = alice.recv().await;
        if el.is("a", SM) {
            break el;
        }
        seen.push(el);
    };
    assert_eq!(a.attr("h"), Some("2"), "two stanzas handled");
    // The server asked for an ack of what it sent (the two results).
    let results = seen.iter().filter(|e| e.name() == "iq").count();
    assert_eq!(results, 2, "{seen:#?}");
    assert!(
        seen.iter().any(|e| e.is("r", SM)),
        "the server requests acks: {seen:#?}"
    );
    // Acknowledging more than was sent (xmpp.js 0.14 counts a stanza it got just before
    // <enabled/>) is taken as everything sent, not a stream error; an older ack is ignored.
    alice.send(&format!("<a xmlns='{SM}' h='3'/>")).await;
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await;
    let mut counter = Counter { h: 2 };
    assert!(counter.drain(&mut alice).await.is_empty());
    alice.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = loop {
        let el = alice.recv().await;
        if el.is("a", SM) {
            break el;
        }
    };
    assert_eq!(
        a.attr("h"),
        Some("3"),
        "three pings handled, the stream goes on"
    );
}

#[tokio::test]
async fn enabling_needs_a_bound_resource_and_happens_once() {
    let server = TestServer::start().await;
    let mut alice = server.tcp_direct_tls().await;
    authenticate(&mut alice, "alice", PASSWORD, Login::ScramSha1).await;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await;
    let failed = alice.recv().await;
    assert!(failed.is("failed", SM), "{}", show(&failed));
    assert!(
        failed.has_child("unexpected-request", STANZAS),
        "{}",
        show(&failed)
    );
    // The stream goes on: bind, enable without resumption, then a second enable.
    let bound = bind(&mut alice, None).await;
    assert_eq!(bound.attr("type"), Some("result"));
    alice.send(&format!("<enable xmlns='{SM}'/>")).await;
    let enabled = alice.recv().await;
    assert!(enabled.is("enabled", SM), "{}", show(&enabled));
    assert!(
        enabled.attr("id").is_none() && !matches!(enabled.attr("resume"), Some("true" | "1")),
        "no resumption asked, none offered: {}",
        show(&enabled)
    );
    alice.send(&format!("<enable xmlns='{SM}'/>")).await;
    alice.expect_stream_error("policy-violation").await;
}

#[tokio::test]
async fn switched_off_in_the_config() {
    let server = TestServer::start_with(|c| c.c2s.stream_management.enabled = false).await;
    let mut alice = server.ws().await;
    let features = authenticate(&mut alice, "alice", PASSWORD, Login::ScramSha1).await;
    assert!(!features.has_child("sm", SM), "{}", show(&features));
    alice
        .send(&format!("<resume xmlns='{SM}' previd='x' h='0'/>"))
        .await;
    let failed = alice.recv().await;
    assert!(
        failed.is("failed", SM) && failed.has_child("feature-not-implemented", STANZAS),
        "{}",
        show(&failed)
    );
    bind(&mut alice, None).await;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await;
    let failed = alice.recv().await;
    assert!(
        failed.is("failed", SM) && failed.has_child("feature-not-implemented", STANZAS),
        "{}",
        show(&failed)
    );
}

/// Bob keeps sending while Alice's connection drops; she resumes on `second` and gets every
/// message exactly once, in order.
async fn drop_and_resume<A: Client, B: Client>(server: &TestServer, mut first: A, mut second: B) {
    const TOTAL: usize = 60;
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let (alice_jid, id) = login_resumable(&mut first, "alice", "phone").await;
    let mut counter = Counter { h: 0 };
    for n in 1..=20 {
        bob.send(&chat(&alice_jid, n)).await;
    }
    // Alice reads some, acknowledges fewer, and her connection drops while more are on the way.
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(counter.next(&mut first).await);
    }
    first.send(&format!("<a xmlns='{SM}' h='5'/>")).await;
    let read_before_drop = counter.h;
    drop(first);
    for n in 21..=TOTAL {
        bob.send(&chat(&alice_jid, n)).await;
    }
    // Everything bob sent was taken (none bounced), while alice was away.
    let to_bob = drain(&mut bob).await;
    assert!(to_bob.is_empty(), "no errors to the sender: {to_bob:#?}");
    let resumed = resume(&mut second, "alice", &id, read_before_drop).await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    // Alice's count of the pings she never sent: the server handled nothing of hers yet.
    assert_eq!(resumed.attr("h"), Some("0"));
    got.extend(counter.drain(&mut second).await);
    assert_eq!(ids(&got), expected(1..=TOTAL), "exactly once, in order");
    // The session went on with its presence and resource: bob still reaches it.
    bob.send(&chat(&alice_jid, TOTAL + 1)).await;
    let next = counter.next(&mut second).await;
    assert_eq!(next.attr("id"), Some(format!("m{}", TOTAL + 1).as_str()));
    // And the counters go on: the server handled alice's ping.
    second.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = loop {
        let el = second.recv().await;
        if el.is("a", SM) {
            break el;
        }
    };
    assert_eq!(a.attr("h"), Some("1"));
}

#[tokio::test]
async fn resumed_on_websocket_after_a_websocket_drop() {
    let server = TestServer::start().await;
    let (a, b) = (server.ws().await, server.ws().await);
    drop_and_resume(&server, a, b).await;
}

#[tokio::test]
async fn resumed_on_tcp_after_a_websocket_drop() {
    let server = TestServer::start().await;
    let (a, b) = (server.ws().await, server.tcp_direct_tls().await);
    drop_and_resume(&server, a, b).await;
}

#[tokio::test]
async fn resumed_on_websocket_after_a_tcp_drop() {
    let server = TestServer::start().await;
    let (a, b) = (server.tcp_direct_tls().await, server.wss().await);
    drop_and_resume(&server, a, b).await;
}

#[tokio::test]
async fn resuming_a_live_session_closes_its_old_stream() {
    let server = TestServer::start().await;
    let mut old = server.ws().await;
    let (_, id) = login_resumable(&mut old, "alice", "phone").await;
    let mut new = server.tcp_direct_tls().await;
    let resumed = resume(&mut new, "alice", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    old.expect_stream_error("conflict").await;
    // The session is alive on the new stream.
    let mut counter = Counter { h: 0 };
    assert!(counter.drain(&mut new).await.is_empty());
}

#[tokio::test]
async fn unknown_or_foreign_sessions_are_not_resumed() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let (_, id) = login_resumable(&mut alice, "alice", "phone").await;
    // Bob cannot take alice's session, even with its SM-ID.
    let mut bob = server.ws().await;
    let failed = resume(&mut bob, "bob", &id, 0).await;
    assert!(
        failed.is("failed", SM) && failed.has_child("item-not-found", STANZAS),
        "{}",
        show(&failed)
    );
    // After <failed/> the stream may bind a new session.
    let bound = bind(&mut bob, None).await;
    assert_eq!(bound.attr("type"), Some("result"));
    let mut other = server.ws().await;
    let failed = resume(&mut other, "alice", "no-such-id", 0).await;
    assert!(
        failed.has_child("item-not-found", STANZAS),
        "{}",
        show(&failed)
    );
    // Alice's session was not disturbed.
    assert!(drain(&mut alice).await.is_empty());
}

#[tokio::test]
async fn a_session_not_resumed_in_time_leaves_its_messages_offline_and_iqs_answered() {
    let server = TestServer::start_with(|c| {
        c.c2s.stream_management.resume_timeout = weft_config::HumanDuration(Duration::from_secs(1))
    })
    .await;
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut alice = server.ws().await;
    let (alice_jid, id) = login_resumable(&mut alice, "alice", "phone").await;
    // Before and after alice's connection drops: none acknowledged.
    for n in 1..=3 {
        bob.send(&chat(&alice_jid, n)).await;
    }
    // Read, never acknowledged (the server's <r/> goes unanswered).
    let mut read = 0;
    while read < 3 {
        if alice.recv().await.name() == "message" {
            read += 1;
        }
    }
    drop(alice);
    for n in 4..=5 {
        bob.send(&chat(&alice_jid, n)).await;
    }
    bob.send(&format!(
        "<iq xmlns='jabber:client' type='get' id='q1' to='{alice_jid}'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    // A chat state alone is not kept.
    bob.send(&format!("<message xmlns='jabber:client' to='{alice_jid}' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    let meanwhile = drain(&mut bob).await;
    assert!(
        meanwhile.is_empty(),
        "taken while resumable: {meanwhile:#?}"
    );
    // Then the session times out: the IQ comes back as an error.
    let error = tokio::time::timeout(Duration::from_secs(10), bob.recv())
        .await
        .expect("the IQ is answered when the session ends");
    assert_eq!(error.attr("id"), Some("q1"), "{}", show(&error));
    assert_eq!(error.attr("type"), Some("error"));
    assert_eq!(error.attr("from"), Some(alice_jid.as_str()));
    assert_eq!(
        error_condition(&error).as_deref(),
        Some("service-unavailable")
    );
    // Resuming now fails, with the count of alice's stanzas the server had handled.
    let mut late = server.ws().await;
    let failed = resume(&mut late, "alice", &id, 3).await;
    assert!(
        failed.is("failed", SM) && failed.has_child("item-not-found", STANZAS),
        "{}",
        show(&failed)
    );
    assert_eq!(failed.attr("h"), Some("0"), "{}", show(&failed));
    // A new session finds every message in offline storage, with its first delivery time.
    bind(&mut late, Some("phone")).await;
    late.send("<presence xmlns='jabber:client'/>").await;
    let seen = drain(&mut late).await;
    let messages: Vec<Element> = seen.into_iter().filter(|e| e.name() == "message").collect();
    assert_eq!(ids(&messages), expected(1..=5), "{messages:#?}");
    for m in &messages {
        let delay = m.get_child("delay", DELAY).expect("delay");
        assert_eq!(delay.attr("from"), Some("localhost"));
        assert_eq!(
            m.children().filter(|c| c.is("delay", DELAY)).count(),
            1,
            "one delay: {}",
            show(m)
        );
    }
}

#[tokio::test]
async fn too_many_unacknowledged_stanzas_end_the_session_without_losing_them() {
    let server = TestServer::start_with(|c| c.c2s.stream_management.max_unacked = 5).await;
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut alice = server.tcp_direct_tls().await;
    let (alice_jid, _) = login_resumable(&mut alice, "alice", "phone").await;
    for n in 1..=8 {
        bob.send(&chat(&alice_jid, n)).await;
    }
    // Alice reads but never acknowledges.
    let err = loop {
        let el = alice.recv().await;
        if el.name() == "error" {
            break el;
        }
    };
    assert!(
        err.has_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{}",
        show(&err)
    );
    drop(alice);
    let meanwhile = drain(&mut bob).await;
    assert!(meanwhile.is_empty(), "{meanwhile:#?}");
    // The next session gets all of them from offline storage.
    let mut again = server.ws().await;
    login(
        &mut again,
        "alice",
        PASSWORD,
        Login::ScramSha1,
        Some("phone"),
    )
    .await;
    again.send("<presence xmlns='jabber:client'/>").await;
    let seen = drain(&mut again).await;
    assert_eq!(ids(&seen), expected(1..=8), "{seen:#?}");
}

#[tokio::test]
async fn a_clean_close_ends_the_session_and_unacknowledged_messages_go_offline() {
    let server = TestServer::start().await;
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut alice = server.ws().await;
    let (alice_jid, id) = login_resumable(&mut alice, "alice", "phone").await;
    for n in 1..=2 {
        bob.send(&chat(&alice_jid, n)).await;
    }
    let mut counter = Counter { h: 0 };
    counter.next(&mut alice).await;
    counter.next(&mut alice).await;
    // Acknowledges the first only, then closes the stream (XEP-0198 §5: no resumption after).
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await;
    alice
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    // The server's close (after its pending <r/>).
    loop {
        match alice.recv_message().await {
            Some(tokio_tungstenite::tungstenite::Message::Close(_)) | None => break,
            _ => continue,
        }
    }
    let mut again = server.ws().await;
    let failed = resume(&mut again, "alice", &id, 2).await;
    assert!(failed.is("failed", SM), "{}", show(&failed));
    bind(&mut again, Some("phone")).await;
    again.send("<presence xmlns='jabber:client'/>").await;
    let seen = drain(&mut again).await;
    assert_eq!(ids(&seen), ["m2"], "only the unacknowledged one: {seen:#?}");
}

#[tokio::test]
async fn a_resumed_stream_starts_active_and_gets_what_csi_held() {
    let server = TestServer::start().await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut alice = server.ws().await;
    let (alice_jid, id) = login_resumable(&mut alice, "alice", "phone").await;
    // XEP-0352: inactive, so a directed presence is held back.
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    let mut counter = Counter { h: 0 };
    assert!(counter.drain(&mut alice).await.is_empty());
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{alice_jid}'><status>here</status></presence>"
    ))
    .await;
    drain(&mut bob).await;
    assert!(
        counter.drain(&mut alice).await.is_empty(),
        "held while inactive"
    );
    drop(alice);
    let mut again = server.tcp_direct_tls().await;
    let resumed = resume(&mut again, "alice", &id, counter.h).await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    let got = counter.drain(&mut again).await;
    assert!(
        got.iter()
            .any(|e| e.name() == "presence" && e.attr("from") == Some(bob_jid.as_str())),
        "the resumed stream is active: {got:#?}"
    );
}
