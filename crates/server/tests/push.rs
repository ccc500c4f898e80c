//! XEP-0357 push notifications on the wire. The app server is written here: carol's session
//! `carol@localhost/push` takes the pubsub publishes and answers them as the test says.
//! Covered: enable and disable (owner only, bounded), the account's disco#info, notifications
//! for a message to an account without a session (summary, publish-options, body only when
//! configured), for a subscription request, for a hibernated (XEP-0198) and an inactive
//! (XEP-0352) session (only that session's registration; nothing stale after resumption),
//! coalescing under `min_interval`, and an error answer removing the registration.

use std::collections::HashMap;
use std::time::Duration;

use minidom::Element;
use weft_testkit::clients::{authenticate, bind, drain, error_condition, iq, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};

const PUSH: &str = "urn:xmpp:push:0";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const DATA: &str = "jabber:x:data";
const SM: &str = "urn:xmpp:sm:3";
const APP: &str = "carol@localhost/push";

/// A server with `[modules.push]` set to `settings` (TOML), on top of `min_interval = "0s"`.
async fn server(settings: &str) -> TestServer {
    let mut table: toml::Table = settings.parse().expect("push settings");
    table
        .entry("min_interval")
        .or_insert_with(|| toml::Value::String("0s".into()));
    TestServer::start_with(|c| {
        c.modules.insert("push".into(), toml::Value::Table(table));
    })
    .await
}

fn chat(to: &str, id: &str, body: &str) -> String {
    format!("<message xmlns='jabber:client' to='{to}' id='{id}' type='chat'><body>{body}</body></message>")
}

fn enable(id: &str, node: &str, extra: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><enable xmlns='{PUSH}' jid='{APP}' node='{node}'>{extra}</enable></iq>"
    )
}

const OPTIONS: &str = "<x xmlns='jabber:x:data' type='submit'>\
    <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
    <field var='secret'><value>s3cr3t</value></field></x>";

/// Sends `xml` (an IQ with this id) and asserts a result.
async fn ok<C: Client>(c: &mut C, id: &str, xml: &str) {
    let answer = iq(c, id, xml).await;
    assert_eq!(answer.attr("type"), Some("result"), "{}", show(&answer));
}

/// The app server's session.
async fn app_server(server: &TestServer) -> weft_testkit::WsClient {
    let mut carol = server.ws().await;
    let jid = login(
        &mut carol,
        "carol",
        PASSWORD,
        Login::ScramSha256,
        Some("push"),
    )
    .await;
    assert_eq!(jid, APP);
    carol
}

/// The next notification the app server gets (other stanzas are skipped).
async fn next_notification<C: Client>(app: &mut C) -> Element {
    for _ in 0..20 {
        let el = app.recv().await;
        if el.name() == "iq" && el.attr("type") == Some("set") && el.has_child("pubsub", PUBSUB) {
            return el;
        }
    }
    panic!("no notification")
}

/// Answers a notification with a result, or with an error of `kind` and `condition`.
async fn answer<C: Client>(app: &mut C, notification: &Element, error: Option<(&str, &str)>) {
    let to = notification.attr("from").unwrap();
    let id = notification.attr("id").unwrap();
    let xml = match error {
        None => format!("<iq xmlns='jabber:client' type='result' to='{to}' id='{id}'/>"),
        Some((kind, condition)) => format!(
            "<iq xmlns='jabber:client' type='error' to='{to}' id='{id}'><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ),
    };
    app.send(&xml).await;
}

/// Waits a moment (notifications leave on a task of their own) and asserts that the app
/// server got no notification meanwhile.
async fn quiet<C: Client>(app: &mut C, wait: Duration) {
    tokio::time::sleep(wait).await;
    let seen = drain(app).await;
    assert!(
        !seen.iter().any(|e| e.has_child("pubsub", PUBSUB)),
        "no notification expected: {seen:#?}"
    );
}

/// The node a notification publishes to and its summary form's fields.
fn summary(notification: &Element) -> (String, HashMap<String, String>) {
    let publish = notification
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("publish", PUBSUB))
        .unwrap_or_else(|| panic!("publish: {}", show(notification)));
    let form = publish
        .get_child("item", PUBSUB)
        .and_then(|i| i.get_child("notification", PUSH))
        .and_then(|n| n.get_child("x", DATA))
        .unwrap_or_else(|| panic!("summary form: {}", show(notification)));
    assert_eq!(form.attr("type"), Some("submit"));
    let fields = form
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            let value = f
                .get_child("value", DATA)
                .map(|v| v.text())
                .unwrap_or_default();
            (f.attr("var").unwrap_or("").to_string(), value)
        })
        .collect();
    (publish.attr("node").unwrap().to_string(), fields)
}

#[tokio::test]
async fn enable_disable_and_the_account_feature() {
    let server = server("").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    let alice_jid = login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let info = iq(
        &mut alice,
        "d1",
        "<iq xmlns='jabber:client' type='get' to='alice@localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    let features: Vec<String> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| {
            q.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(features.iter().any(|f| f == PUSH), "{}", show(&info));
    // To the own bare JID or without 'to': both are the account's own.
    ok(&mut alice, "e1", &enable("e1", "n1", OPTIONS)).await;
    ok(
        &mut alice,
        "e2",
        &format!("<iq xmlns='jabber:client' type='set' to='alice@localhost' id='e2'><enable xmlns='{PUSH}' jid='{APP}' node='n2'/></iq>"),
    )
    .await;
    // Bob writes while alice is not available (no presence): both registrations hear of it.
    let mut bob = server.ws().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send(&chat("alice@localhost", "m1", "secret words"))
        .await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let n = next_notification(&mut app).await;
        assert_eq!(n.attr("from"), Some("alice@localhost"), "{}", show(&n));
        assert_eq!(n.attr("to"), Some(APP));
        let (node, fields) = summary(&n);
        assert_eq!(fields["FORM_TYPE"], "urn:xmpp:push:summary");
        assert_eq!(fields["message-count"], "1");
        assert_eq!(fields["last-message-sender"], bob_jid);
        assert!(
            !fields.contains_key("last-message-body"),
            "no body by default: {fields:?}"
        );
        let options = n
            .get_child("pubsub", PUBSUB)
            .and_then(|p| p.get_child("publish-options", PUBSUB));
        if node == "n1" {
            let text = options.map(show).unwrap_or_default();
            assert!(
                text.contains("s3cr3t"),
                "publish-options sent along: {}",
                show(&n)
            );
        } else {
            assert!(options.is_none(), "{}", show(&n));
        }
        nodes.push(node);
        answer(&mut app, &n, None).await;
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    // Disabling every node of the app server (no 'node'): nothing more.
    ok(
        &mut alice,
        "x1",
        &format!("<iq xmlns='jabber:client' type='set' id='x1'><disable xmlns='{PUSH}' jid='{APP}'/></iq>"),
    )
    .await;
    bob.send(&chat("alice@localhost", "m2", "again")).await;
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
    let _ = alice_jid;
}

#[tokio::test]
async fn the_body_only_when_configured() {
    let server = server("include_body = true\ninclude_sender = false").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    drop(alice);
    let mut bob = server.ws().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send(&chat("alice@localhost", "m1", "wherefore art thou"))
        .await;
    let n = next_notification(&mut app).await;
    let (_, fields) = summary(&n);
    assert_eq!(fields["last-message-body"], "wherefore art thou");
    assert!(!fields.contains_key("last-message-sender"), "{fields:?}");
}

#[tokio::test]
async fn only_the_owner_enables_and_the_number_is_bounded() {
    let server = server("max_registrations = 2").await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let mut bob = server.ws().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    // Bob for alice's account, and for the server.
    for to in ["alice@localhost", "localhost"] {
        let refused = iq(
            &mut bob,
            "b1",
            &format!("<iq xmlns='jabber:client' type='set' to='{to}' id='b1'><enable xmlns='{PUSH}' jid='{APP}' node='evil'/></iq>"),
        )
        .await;
        assert_eq!(
            error_condition(&refused).as_deref(),
            Some("forbidden"),
            "{}",
            show(&refused)
        );
    }
    // Malformed requests.
    for (id, payload, condition) in [
        (
            "g",
            "<enable xmlns='urn:xmpp:push:0' jid='push.example' node='n'/>",
            "bad-request",
        ),
        (
            "nonode",
            "<enable xmlns='urn:xmpp:push:0' jid='push.example'/>",
            "bad-request",
        ),
        (
            "nojid",
            "<enable xmlns='urn:xmpp:push:0' node='n'/>",
            "bad-request",
        ),
        (
            "badjid",
            "<enable xmlns='urn:xmpp:push:0' jid='@' node='n'/>",
            "jid-malformed",
        ),
    ] {
        let kind = if id == "g" { "get" } else { "set" };
        let refused = iq(
            &mut alice,
            id,
            &format!("<iq xmlns='jabber:client' type='{kind}' id='{id}'>{payload}</iq>"),
        )
        .await;
        assert_eq!(
            error_condition(&refused).as_deref(),
            Some(condition),
            "{}",
            show(&refused)
        );
    }
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    ok(&mut alice, "e2", &enable("e2", "n2", "")).await;
    let refused = iq(&mut alice, "e3", &enable("e3", "n3", "")).await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("policy-violation"),
        "{}",
        show(&refused)
    );
    // Enabling one again replaces it; after a disable there is room again.
    ok(&mut alice, "e4", &enable("e4", "n1", OPTIONS)).await;
    ok(
        &mut alice,
        "x1",
        &format!("<iq xmlns='jabber:client' type='set' id='x1'><disable xmlns='{PUSH}' jid='{APP}' node='n1'/></iq>"),
    )
    .await;
    ok(&mut alice, "e5", &enable("e5", "n3", "")).await;
    // Bob's registration for his own account is his own: alice's limit does not count.
    ok(&mut bob, "b2", &enable("b2", "bn", "")).await;
}

#[tokio::test]
async fn an_error_answer_removes_the_registration_and_wait_does_not() {
    let server = server("").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    drop(alice);
    let mut bob = server.ws().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send(&chat("alice@localhost", "m1", "one")).await;
    let n = next_notification(&mut app).await;
    answer(&mut app, &n, Some(("wait", "resource-constraint"))).await;
    // Still registered: the next message is notified, with both counted.
    drain(&mut app).await;
    bob.send(&chat("alice@localhost", "m2", "two")).await;
    let n = next_notification(&mut app).await;
    assert_eq!(summary(&n).1["message-count"], "2");
    answer(&mut app, &n, Some(("cancel", "item-not-found"))).await;
    drain(&mut app).await;
    bob.send(&chat("alice@localhost", "m3", "three")).await;
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_subscription_request_for_an_account_without_a_session() {
    let server = server("").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    alice
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    while alice.recv_message().await.is_some() {}
    let mut bob = server.ws().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send("<presence xmlns='jabber:client' to='alice@localhost' type='subscribe'/>")
        .await;
    let n = next_notification(&mut app).await;
    let (_, fields) = summary(&n);
    assert_eq!(fields["pending-subscription-count"], "1", "{fields:?}");
    assert_eq!(fields["message-count"], "0", "{fields:?}");
}

#[tokio::test]
async fn notifications_are_coalesced_under_the_minimum_interval() {
    let server = server("min_interval = \"2s\"").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    let mut bob = server.ws().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send(&chat("alice@localhost", "m1", "one")).await;
    let first = next_notification(&mut app).await;
    assert_eq!(summary(&first).1["message-count"], "1");
    // While the first awaits its answer: nothing more.
    bob.send(&chat("alice@localhost", "m2", "two")).await;
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
    answer(&mut app, &first, None).await;
    // Answered, but within the interval: still nothing.
    for n in 3..=4 {
        bob.send(&chat("alice@localhost", &format!("m{n}"), "more"))
            .await;
    }
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
    // Then one notification for all of them.
    let second = next_notification(&mut app).await;
    let (_, fields) = summary(&second);
    assert_eq!(fields["message-count"], "4", "{fields:?}");
    assert_eq!(fields["last-message-sender"], bob_jid);
    answer(&mut app, &second, None).await;
    quiet(&mut app, Duration::from_millis(2300)).await;
}

/// A client's side of XEP-0198: counts the stanzas it handles, answers `<r/>`.
struct Counter {
    h: u32,
}

impl Counter {
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
            if matches!(el.name(), "message" | "presence" | "iq") {
                self.h = self.h.wrapping_add(1);
            }
            return el;
        }
    }

    /// Stanzas up to the answer to a ping.
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

/// Logs in as alice/`resource` with resumable stream management and available presence.
async fn resumable_alice<C: Client>(c: &mut C, resource: &str, counter: &mut Counter) -> String {
    authenticate(c, "alice", PASSWORD, Login::ScramSha256).await;
    let bound = bind(c, Some(resource)).await;
    assert_eq!(bound.attr("type"), Some("result"), "{}", show(&bound));
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let enabled = c.recv().await;
    assert!(enabled.is("enabled", SM), "{}", show(&enabled));
    c.send("<presence xmlns='jabber:client'/>").await;
    counter.drain(c).await;
    enabled.attr("id").unwrap().to_string()
}

#[tokio::test]
async fn a_hibernated_session_notifies_its_own_registration_and_nothing_stale_after_resuming() {
    let server = server("min_interval = \"3s\"").await;
    let mut app = app_server(&server).await;
    // Alice's tablet registered too, and is gone: it is not the hibernated session.
    let mut tablet = server.ws().await;
    login(
        &mut tablet,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("tablet"),
    )
    .await;
    ok(&mut tablet, "t1", &enable("t1", "tablet", "")).await;
    drop(tablet);
    let mut phone = server.ws().await;
    let mut counter = Counter { h: 0 };
    let previd = resumable_alice(&mut phone, "phone", &mut counter).await;
    phone.send(&enable("p1", "phone", "")).await;
    let enabled = counter.next(&mut phone).await;
    assert_eq!(enabled.attr("type"), Some("result"), "{}", show(&enabled));
    // The connection drops without a close: the session hibernates.
    drop(phone);
    let mut bob = server.ws().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    bob.send(&chat("alice@localhost/phone", "m1", "are you there"))
        .await;
    let n = next_notification(&mut app).await;
    let (node, fields) = summary(&n);
    assert_eq!(
        node,
        "phone",
        "only the hibernated session's registration: {}",
        show(&n)
    );
    assert_eq!(fields["message-count"], "1");
    assert_eq!(fields["last-message-sender"], bob_jid);
    answer(&mut app, &n, None).await;
    // A second message within the interval waits to be coalesced…
    bob.send(&chat("alice@localhost/phone", "m2", "hello?"))
        .await;
    let seen = drain(&mut bob).await;
    assert!(
        seen.is_empty(),
        "kept for the session, no errors: {seen:#?}"
    );
    // …and the phone comes back first: it gets both, and no notification follows.
    let mut again = server.ws().await;
    authenticate(&mut again, "alice", PASSWORD, Login::ScramSha256).await;
    again
        .send(&format!(
            "<resume xmlns='{SM}' previd='{previd}' h='{}'/>",
            counter.h
        ))
        .await;
    let resumed = again.recv().await;
    assert!(resumed.is("resumed", SM), "{}", show(&resumed));
    let got = counter.drain(&mut again).await;
    let ids: Vec<&str> = got.iter().filter_map(|e| e.attr("id")).collect();
    assert_eq!(ids, ["m1", "m2"], "{got:#?}");
    bob.send(&chat("alice@localhost/phone", "m3", "live")).await;
    let m3 = counter.next(&mut again).await;
    assert_eq!(m3.attr("id"), Some("m3"));
    quiet(&mut app, Duration::from_millis(3300)).await;
}

#[tokio::test]
async fn an_inactive_session_notifies_until_it_is_active() {
    let server = server("").await;
    let mut app = app_server(&server).await;
    let mut alice = server.ws().await;
    login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    ok(&mut alice, "e1", &enable("e1", "n1", "")).await;
    let mut bob = server.ws().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha256, Some("desk")).await;
    // Active: delivered, no notification.
    bob.send(&chat("alice@localhost", "m1", "hi")).await;
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    drain(&mut alice).await;
    // Inactive: delivered and notified; presence alone is not worth one.
    bob.send("<presence xmlns='jabber:client' to='alice@localhost/phone'/>")
        .await;
    bob.send(&chat("alice@localhost", "m2", "still there?"))
        .await;
    let n = next_notification(&mut app).await;
    let (_, fields) = summary(&n);
    assert_eq!(fields["message-count"], "1", "{fields:?}");
    assert_eq!(fields["last-message-sender"], bob_jid);
    answer(&mut app, &n, None).await;
    let seen = drain(&mut alice).await;
    assert!(seen.iter().any(|e| e.attr("id") == Some("m2")), "{seen:#?}");
    alice.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    drain(&mut alice).await;
    bob.send(&chat("alice@localhost", "m3", "back")).await;
    drain(&mut bob).await;
    quiet(&mut app, Duration::from_millis(300)).await;
}
