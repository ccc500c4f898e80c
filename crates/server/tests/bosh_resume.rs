//! XEP-0198 over XEP-0206: a BOSH session with stream management hibernates when its HTTP
//! side ends (inactivity) and is resumed over WebSocket; a WebSocket session is resumed
//! over BOSH. Every unacknowledged stanza comes again, once.

use std::time::Duration;

use minidom::Element;
use weft_testkit::clients::{authenticate, bind, show, Client};
use weft_testkit::{Login, TestServer, PASSWORD};

const SM: &str = "urn:xmpp:sm:3";

/// The next stanza, skipping XEP-0198 requests and acks.
async fn next_stanza<C: Client>(c: &mut C) -> Element {
    loop {
        let el = c.recv().await;
        if !el.has_ns(SM) {
            return el;
        }
    }
}

async fn login_resumable<C: Client>(c: &mut C, user: &str, resource: &str) -> (String, String) {
    let features = authenticate(c, user, PASSWORD, Login::ScramSha256).await;
    assert!(features.has_child("sm", SM), "{}", show(&features));
    let bound = bind(c, Some(resource)).await;
    assert_eq!(bound.attr("type"), Some("result"), "{}", show(&bound));
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = next_stanza_or_sm(c, "enabled").await;
    let id = enabled.attr("id").expect("an SM-ID").to_string();
    (format!("{user}@localhost/{resource}"), id)
}

async fn next_stanza_or_sm<C: Client>(c: &mut C, name: &str) -> Element {
    loop {
        let el = c.recv().await;
        if el.name() == name {
            return el;
        }
        assert!(el.is("r", SM) || el.is("a", SM), "{}", show(&el));
    }
}

async fn resume<C: Client>(c: &mut C, user: &str, previd: &str, h: u32) -> Element {
    authenticate(c, user, PASSWORD, Login::ScramSha256).await;
    c.send(&format!("<resume xmlns='{SM}' previd='{previd}' h='{h}'/>"))
        .await;
    loop {
        let el = c.recv().await;
        if el.is("resumed", SM) || el.is("failed", SM) {
            return el;
        }
    }
}

fn chat(to: &str, id: &str) -> String {
    format!("<message xmlns='jabber:client' to='{to}' id='{id}' type='chat'><body>{id}</body></message>")
}

#[tokio::test]
async fn a_bosh_session_is_resumed_over_websocket() {
    let server = TestServer::start_with(|c| {
        c.bosh.inactivity.0 = Duration::from_secs(2);
        c.bosh.polling.0 = Duration::from_secs(1);
    })
    .await;
    let mut alice = server.bosh();
    alice.wait = 5;
    let (alice_jid, id) = login_resumable(&mut alice, "alice", "web").await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send(&chat(&alice_jid, "m1")).await;
    let got = next_stanza(&mut alice).await;
    assert_eq!(got.attr("id"), Some("m1"), "{}", show(&got));
    // Alice's browser tab sleeps: no more requests. The BOSH session ends on inactivity,
    // and the c2s session hibernates; m2 waits in it.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(
        server.running.state.bosh.is_empty(),
        "the BOSH session ended"
    );
    bob.send(&chat(&alice_jid, "m2")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // She comes back over WebSocket having handled nothing (h=0): m1 and m2 again.
    let mut ws = server.ws().await;
    let resumed = resume(&mut ws, "alice", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    let ids: Vec<String> = [next_stanza(&mut ws).await, next_stanza(&mut ws).await]
        .iter()
        .map(|m| m.attr("id").unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    // The resumed session is the same resource: bob's next message arrives on WebSocket.
    bob.send(&chat(&alice_jid, "m3")).await;
    assert_eq!(next_stanza(&mut ws).await.attr("id"), Some("m3"));
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_session_is_resumed_over_bosh() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    let (alice_jid, id) = login_resumable(&mut ws, "alice", "phone").await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.send(&chat(&alice_jid, "w1")).await;
    let mut alice = server.bosh();
    alice.wait = 5;
    let resumed = resume(&mut alice, "alice", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    assert_eq!(next_stanza(&mut alice).await.attr("id"), Some("w1"));
    bob.send(&chat(&alice_jid, "w2")).await;
    assert_eq!(next_stanza(&mut alice).await.attr("id"), Some("w2"));
    server.stop().await;
}
