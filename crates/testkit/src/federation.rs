//! Helpers for federation tests: a logged-in client per server, the two-way exchange every
//! federation test runs, and how a server authenticated its incoming links.

use crate::clients::{login_at, show};
use crate::{Client, Login, TestServer, WsClient, PASSWORD};

/// A WebSocket client logged in as `user` on `server` (resource "r"), and its full JID.
pub async fn client(server: &TestServer, user: &str) -> (WsClient, String) {
    let mut c = server.ws().await;
    let jid = login_at(
        &mut c,
        server.domain(),
        user,
        PASSWORD,
        Login::ScramSha256,
        Some("r"),
    )
    .await;
    (c, jid)
}

/// How each server authenticated its incoming links: (EXTERNAL, dialback).
pub fn auth_counts(s: &TestServer) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let s2s = &s.running.state.s2s;
    (
        s2s.authenticated_by_external.load(Relaxed),
        s2s.authenticated_by_dialback.load(Relaxed),
    )
}

/// Messages both ways and directed presence both ways.
pub async fn exchange(a: &TestServer, b: &TestServer) {
    let (mut alice, alice_jid) = client(a, "alice").await;
    let (mut bob, bob_jid) = client(b, "bob").await;
    alice
        .send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='m1'><body>hello b</body></message>"))
        .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()), "{}", show(&got));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hello b".into()),
        "{}",
        show(&got)
    );
    bob.send(&format!("<message xmlns='jabber:client' to='{alice_jid}' type='chat'><body>hello a</body></message>"))
        .await;
    let got = alice.recv().await;
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hello a".into())
    );
    alice
        .send(&format!("<presence xmlns='jabber:client' to='{bob_jid}'/>"))
        .await;
    let p = bob.recv().await;
    assert_eq!(
        (p.name(), p.attr("from")),
        ("presence", Some(alice_jid.as_str()))
    );
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{alice_jid}'><show>away</show></presence>"
    ))
    .await;
    let p = alice.recv().await;
    assert_eq!(
        (p.name(), p.attr("from")),
        ("presence", Some(bob_jid.as_str()))
    );
    assert_eq!(
        p.get_child("show", "jabber:client").map(|s| s.text()),
        Some("away".into())
    );
}
