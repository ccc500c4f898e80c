//! XEP-0160 offline messages on the wire: kept for an account with no available resource,
//! delivered once, in order, with a XEP-0203 delay, at the first presence of non-negative
//! priority; the quota answers the sender with an error; chat states alone are not kept.

use minidom::Element;
use weft_testkit::clients::{drain, error_condition, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};

const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const DELAY: &str = "urn:xmpp:delay";

fn chat(to: &str, id: &str, body: &str) -> String {
    format!("<message xmlns='jabber:client' to='{to}' id='{id}' type='chat'><body>{body}</body></message>")
}

#[tokio::test]
async fn kept_in_order_with_delay_and_delivered_once() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    for i in 1..=3 {
        alice
            .send(&chat(
                "bob@localhost",
                &format!("m{i}"),
                &format!("body {i}"),
            ))
            .await;
    }
    // To a full JID that is not online: kept the same way (RFC 6121 §8.5.3.2.1).
    alice
        .send(&chat("bob@localhost/gone", "m4", "body 4"))
        .await;
    // A chat state alone is not worth keeping, and nothing comes back for it.
    alice
        .send("<message xmlns='jabber:client' to='bob@localhost' id='cs' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    let meanwhile = drain(&mut alice).await;
    assert!(
        meanwhile.is_empty(),
        "no errors for kept messages: {meanwhile:#?}"
    );

    // Bob's first presence with a negative priority does not take them (XEP-0160 §3).
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("phone")).await;
    bob.send("<presence xmlns='jabber:client'><priority>-1</priority></presence>")
        .await;
    let seen = drain(&mut bob).await;
    assert!(
        seen.iter().all(|e| e.name() != "message"),
        "nothing for a negative priority: {seen:#?}"
    );
    bob.send("<presence xmlns='jabber:client'><priority>5</priority></presence>")
        .await;
    let seen = drain(&mut bob).await;
    let messages: Vec<&Element> = seen.iter().filter(|e| e.name() == "message").collect();
    let ids: Vec<&str> = messages.iter().filter_map(|m| m.attr("id")).collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4"], "in arrival order: {seen:#?}");
    for m in &messages {
        assert_eq!(m.attr("from"), Some(alice_jid.as_str()));
        // As addressed (XEP-0160 §3).
        let addressed = if m.attr("id") == Some("m4") {
            "bob@localhost/gone"
        } else {
            "bob@localhost"
        };
        assert_eq!(m.attr("to"), Some(addressed));
        let delay = m
            .get_child("delay", DELAY)
            .unwrap_or_else(|| panic!("no delay: {}", show(m)));
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").unwrap_or_default();
        assert!(
            stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "XEP-0082: {stamp}"
        );
    }

    // Delivered once: a second session of Bob's finds nothing waiting.
    let mut bob2 = server.ws().await;
    login(&mut bob2, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob2.send("<presence xmlns='jabber:client'/>").await;
    let seen = drain(&mut bob2).await;
    assert!(seen.iter().all(|e| e.name() != "message"), "{seen:#?}");
    server.stop().await;
}

#[tokio::test]
async fn the_quota_answers_the_sender() {
    let server = TestServer::start_with(|c| {
        let mut section = toml::Table::new();
        section.insert("max_messages".into(), toml::Value::Integer(2));
        c.modules
            .insert("offline".into(), toml::Value::Table(section));
    })
    .await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    for i in 1..=3 {
        alice
            .send(&chat("carol@localhost", &format!("q{i}"), "x"))
            .await;
    }
    let answers = drain(&mut alice).await;
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!(answers[0].attr("id"), Some("q3"));
    assert_eq!(
        error_condition(&answers[0]).as_deref(),
        Some("service-unavailable")
    );
    let text = answers[0]
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("text", STANZAS))
        .map(|t| t.text())
        .unwrap_or_default();
    assert!(
        text.contains("2 messages waiting"),
        "a clear reason: {text}"
    );

    // A message to an account that does not exist is not kept (RFC 6121 §8.5.2.2.1 via §8.5.1).
    alice.send(&chat("nobody@localhost", "n1", "x")).await;
    let answers = drain(&mut alice).await;
    assert_eq!(
        error_condition(&answers[0]).as_deref(),
        Some("service-unavailable")
    );
    server.stop().await;
}
