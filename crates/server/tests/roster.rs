//! RFC 6121 on the wire: roster get/set/remove with pushes and versioning (§2), the
//! subscription handshake, its cancellation and pre-approval (§3), presence broadcast,
//! probes on login, directed presence and unavailable on abrupt loss (§4), between clients
//! on WebSocket and TCP.

use minidom::Element;
use weft_testkit::clients::{drain, error_condition, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};

const ROSTER: &str = "jabber:iq:roster";

/// The next element `wanted` accepts, skipping others (stanzas of other features arrive in
/// between); panics if none comes within the client's reply timeout.
async fn recv_until<C: Client>(
    c: &mut C,
    what: &str,
    wanted: impl Fn(&Element) -> bool,
) -> Element {
    let mut skipped = Vec::new();
    for _ in 0..50 {
        let el = c.recv().await;
        if wanted(&el) {
            return el;
        }
        skipped.push(show(&el));
    }
    panic!("no {what}; got {skipped:#?}")
}

fn is_iq(el: &Element, kind: &str, id: &str) -> bool {
    el.name() == "iq" && el.attr("type") == Some(kind) && el.attr("id") == Some(id)
}

fn is_push(el: &Element) -> bool {
    el.name() == "iq" && el.attr("type") == Some("set") && el.has_child("query", ROSTER)
}

fn is_presence(el: &Element, kind: Option<&str>, from_prefix: &str) -> bool {
    el.name() == "presence"
        && el.attr("type") == kind
        && el.attr("from").is_some_and(|f| f.starts_with(from_prefix))
}

/// The single item of a roster push or result.
fn item(el: &Element) -> Element {
    el.get_child("query", ROSTER)
        .and_then(|q| q.get_child("item", ROSTER))
        .cloned()
        .unwrap_or_else(|| panic!("no roster item in {}", show(el)))
}

/// Asks for the roster (becoming an interested resource) and returns the result.
async fn get_roster<C: Client>(c: &mut C, id: &str, ver: Option<&str>) -> Element {
    let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    c.send(&format!(
        "<iq xmlns='jabber:client' type='get' id='{id}'><query xmlns='{ROSTER}'{ver}/></iq>"
    ))
    .await;
    recv_until(c, "roster result", |e| is_iq(e, "result", id)).await
}

async fn set_item<C: Client>(c: &mut C, id: &str, item: &str) -> Element {
    set_item_seeing(c, id, item).await.0
}

/// A roster set, its answer, and what arrived before the answer (the push to the setting
/// resource may come first: RFC 6121 §2.3.2 does not order them).
async fn set_item_seeing<C: Client>(c: &mut C, id: &str, item: &str) -> (Element, Vec<Element>) {
    c.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='{ROSTER}'>{item}</query></iq>"
    ))
    .await;
    let mut before = Vec::new();
    for _ in 0..50 {
        let el = c.recv().await;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            return (el, before);
        }
        before.push(el);
    }
    panic!("no answer to roster set {id}: {before:#?}")
}

/// RFC 6121 §2.1.2.5: a missing 'subscription' means none.
fn subscription(item: &Element) -> &str {
    item.attr("subscription").unwrap_or("none")
}

async fn initial_presence<C: Client>(c: &mut C, own: &str) {
    c.send("<presence xmlns='jabber:client'/>").await;
    recv_until(c, "own presence reflected", |e| {
        e.name() == "presence" && e.attr("from") == Some(own) && e.attr("type").is_none()
    })
    .await;
}

#[tokio::test]
async fn roster_set_get_remove_with_pushes_and_versions() {
    let server = TestServer::start().await;
    let mut a1 = server.ws().await;
    let a1_jid = login(&mut a1, "alice", PASSWORD, Login::ScramSha256, Some("web")).await;
    let mut a2 = server.tcp_direct_tls().await;
    login(&mut a2, "alice", PASSWORD, Login::ScramSha1, Some("desk")).await;

    // Versioning is announced and an empty roster has a version.
    let first = get_roster(&mut a1, "g1", None).await;
    let v0 = first
        .get_child("query", ROSTER)
        .and_then(|q| q.attr("ver"))
        .expect("a version")
        .to_string();
    assert_eq!(
        first.get_child("query", ROSTER).unwrap().children().count(),
        0
    );
    get_roster(&mut a2, "g2", None).await;

    let (result, before) = set_item_seeing(
        &mut a1,
        "s1",
        "<item jid='Bob@Localhost' name='Bob'><group>Friends</group><group>Work</group></item>",
    )
    .await;
    assert_eq!(result.attr("type"), Some("result"), "{}", show(&result));
    let push1 = match before.into_iter().find(is_push) {
        Some(push) => push,
        None => recv_until(&mut a1, "push to the setting resource", is_push).await,
    };
    let push2 = recv_until(&mut a2, "push to the other resource", is_push).await;
    for push in [&push1, &push2] {
        let it = item(push);
        assert_eq!(it.attr("jid"), Some("bob@localhost"), "normalised");
        assert_eq!(it.attr("name"), Some("Bob"));
        assert_eq!(subscription(&it), "none");
        let groups: Vec<String> = it.children().map(|g| g.text()).collect();
        assert_eq!(groups, ["Friends", "Work"]);
        assert_eq!(
            push.attr("to").map(|t| t.starts_with("alice@localhost/")),
            Some(true)
        );
    }
    let v1 = push1
        .get_child("query", ROSTER)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_string();
    assert_ne!(v1, v0);

    // §2.6.3: the current version gets an empty result, an old one the roster.
    let same = get_roster(&mut a1, "g3", Some(&v1)).await;
    assert!(same.get_child("query", ROSTER).is_none(), "{}", show(&same));
    let full = get_roster(&mut a1, "g4", Some(&v0)).await;
    assert_eq!(item(&full).attr("jid"), Some("bob@localhost"));

    // Update, then remove.
    set_item(&mut a1, "s2", "<item jid='bob@localhost' name='Robert'/>").await;
    let push = recv_until(&mut a2, "update push", is_push).await;
    assert_eq!(item(&push).attr("name"), Some("Robert"));
    assert_eq!(item(&push).children().count(), 0, "groups replaced");
    let removed = set_item(
        &mut a1,
        "s3",
        "<item jid='bob@localhost' subscription='remove'/>",
    )
    .await;
    assert_eq!(removed.attr("type"), Some("result"));
    let push = recv_until(&mut a2, "removal push", is_push).await;
    assert_eq!(subscription(&item(&push)), "remove");
    let empty = get_roster(&mut a1, "g5", None).await;
    assert_eq!(
        empty.get_child("query", ROSTER).unwrap().children().count(),
        0
    );
    assert!(a1_jid.starts_with("alice@localhost/web"));
    server.stop().await;
}

#[tokio::test]
async fn roster_errors() {
    let server = TestServer::start_with(|c| {
        let mut section = toml::Table::new();
        section.insert("max_items".into(), toml::Value::Integer(1));
        c.modules
            .insert("roster".into(), toml::Value::Table(section));
    })
    .await;
    let mut a = server.ws().await;
    a.login("alice", Login::ScramSha256).await;
    let cases = [
        (
            "<item jid='x@localhost'/><item jid='y@localhost'/>",
            "bad-request",
        ),
        (
            "<item jid='x@localhost'><group>G</group><group>G</group></item>",
            "bad-request",
        ),
        (
            "<item jid='x@localhost'><group></group></item>",
            "not-acceptable",
        ),
        (
            "<item jid='nobody@localhost' subscription='remove'/>",
            "item-not-found",
        ),
    ];
    for (i, (xml, condition)) in cases.iter().enumerate() {
        let answer = set_item(&mut a, &format!("e{i}"), xml).await;
        assert_eq!(answer.attr("type"), Some("error"), "{xml}");
        assert_eq!(
            error_condition(&answer).as_deref(),
            Some(*condition),
            "{xml}: {}",
            show(&answer)
        );
    }
    // The configured limit: one contact fits, the second does not.
    assert_eq!(
        set_item(&mut a, "l1", "<item jid='x@localhost'/>")
            .await
            .attr("type"),
        Some("result")
    );
    let full = set_item(&mut a, "l2", "<item jid='y@localhost'/>").await;
    assert_eq!(error_condition(&full).as_deref(), Some("not-allowed"));
    // Someone else's roster.
    a.send(&format!(
        "<iq xmlns='jabber:client' type='get' id='other' to='bob@localhost'><query xmlns='{ROSTER}'/></iq>"
    ))
    .await;
    let other = recv_until(&mut a, "answer", |e| is_iq(e, "error", "other")).await;
    assert_eq!(error_condition(&other).as_deref(), Some("forbidden"));
    server.stop().await;
}

#[tokio::test]
async fn subscription_handshake_presence_and_cancellation() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    get_roster(&mut alice, "ra", None).await;
    get_roster(&mut bob, "rb", None).await;
    initial_presence(&mut alice, &alice_jid).await;
    initial_presence(&mut bob, &bob_jid).await;

    // Alice asks (§3.1.2): her roster shows the pending request, Bob gets it from her bare JID.
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost' type='subscribe'/>")
        .await;
    let push = recv_until(&mut alice, "push ask=subscribe", is_push).await;
    assert_eq!(item(&push).attr("ask"), Some("subscribe"));
    assert_eq!(subscription(&item(&push)), "none");
    let request = recv_until(&mut bob, "subscribe", |e| {
        is_presence(e, Some("subscribe"), "alice@")
    })
    .await;
    assert_eq!(request.attr("from"), Some("alice@localhost"));
    assert!(
        drain(&mut bob).await.iter().all(|e| !is_push(e)),
        "no roster item for a request"
    );

    // Bob approves (§3.1.5): Alice is subscribed to him and gets his presence.
    bob.send("<presence xmlns='jabber:client' to='alice@localhost' type='subscribed'/>")
        .await;
    let push = recv_until(&mut bob, "push subscription=from", is_push).await;
    assert_eq!(subscription(&item(&push)), "from");
    assert_eq!(
        recv_until(&mut alice, "subscribed", |e| is_presence(
            e,
            Some("subscribed"),
            "bob@"
        ))
        .await
        .attr("from"),
        Some("bob@localhost")
    );
    let push = recv_until(&mut alice, "push subscription=to", is_push).await;
    assert_eq!(subscription(&item(&push)), "to");
    assert_eq!(item(&push).attr("ask"), None);
    let presence = recv_until(&mut alice, "Bob's presence", |e| {
        is_presence(e, None, "bob@")
    })
    .await;
    assert_eq!(presence.attr("from"), Some(bob_jid.as_str()));

    // Presence follows the subscription one way only (§4.2).
    bob.send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    let away = recv_until(&mut alice, "Bob away", |e| is_presence(e, None, "bob@")).await;
    assert_eq!(
        away.get_child("show", "jabber:client").map(|s| s.text()),
        Some("away".into())
    );
    alice
        .send("<presence xmlns='jabber:client'><show>dnd</show></presence>")
        .await;
    let before = drain(&mut bob).await;
    assert!(
        !before.iter().any(|e| is_presence(e, None, "alice@")),
        "Bob has no subscription to Alice: {before:#?}"
    );

    // Bob cancels Alice's subscription (§3.2): she is told, and sees him unavailable.
    bob.send("<presence xmlns='jabber:client' to='alice@localhost' type='unsubscribed'/>")
        .await;
    recv_until(&mut alice, "unsubscribed", |e| {
        is_presence(e, Some("unsubscribed"), "bob@")
    })
    .await;
    let push = recv_until(&mut alice, "push subscription=none", is_push).await;
    assert_eq!(subscription(&item(&push)), "none");
    recv_until(&mut alice, "Bob unavailable", |e| {
        is_presence(e, Some("unavailable"), "bob@")
    })
    .await;
    let push = recv_until(&mut bob, "Bob's push", is_push).await;
    assert_eq!(subscription(&item(&push)), "none");

    // Bob's next presence no longer reaches Alice: the server's copy of his subscribers
    // (made at his "away") follows the roster change.
    bob.send("<presence xmlns='jabber:client'><show>xa</show></presence>")
        .await;
    recv_until(&mut bob, "Bob's own xa", |e| is_presence(e, None, "bob@")).await;
    let after = drain(&mut alice).await;
    assert!(
        !after.iter().any(|e| is_presence(e, None, "bob@")),
        "Alice's subscription was cancelled: {after:#?}"
    );
    server.stop().await;
}

/// Mutual subscriptions set up through the protocol itself.
async fn befriend<A: Client, B: Client>(a: &mut A, a_user: &str, b: &mut B, b_user: &str) {
    a.send(&format!(
        "<presence xmlns='jabber:client' to='{b_user}@localhost' type='subscribe'/>"
    ))
    .await;
    recv_until(b, "request", |e| {
        is_presence(e, Some("subscribe"), &format!("{a_user}@"))
    })
    .await;
    b.send(&format!(
        "<presence xmlns='jabber:client' to='{a_user}@localhost' type='subscribed'/>"
    ))
    .await;
    b.send(&format!(
        "<presence xmlns='jabber:client' to='{a_user}@localhost' type='subscribe'/>"
    ))
    .await;
    recv_until(a, "request back", |e| {
        is_presence(e, Some("subscribe"), &format!("{b_user}@"))
    })
    .await;
    a.send(&format!(
        "<presence xmlns='jabber:client' to='{b_user}@localhost' type='subscribed'/>"
    ))
    .await;
    recv_until(b, "approval", |e| {
        is_presence(e, Some("subscribed"), &format!("{a_user}@"))
    })
    .await;
}

#[tokio::test]
async fn probes_at_login_pending_requests_and_abrupt_loss() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    befriend(&mut alice, "alice", &mut bob, "bob").await;
    initial_presence(&mut bob, &bob_jid).await;
    recv_until(&mut alice, "Bob's presence", |e| {
        is_presence(e, None, "bob@")
    })
    .await;

    // A second resource of Alice's logs in: its initial presence probes Bob (§4.3) and the
    // answer carries Bob's current presence.
    let mut alice2 = server.tcp_direct_tls().await;
    let alice2_jid = login(
        &mut alice2,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    initial_presence(&mut alice2, &alice2_jid).await;
    let probed = recv_until(&mut alice2, "Bob's presence from the probe", |e| {
        is_presence(e, None, "bob@")
    })
    .await;
    assert_eq!(probed.attr("from"), Some(bob_jid.as_str()));
    // §4.3.1: the probe is from the user's bare JID, and so the answer is to it.
    assert_eq!(probed.attr("to"), Some("alice@localhost"));

    // A request to Carol while she is offline waits for her initial presence (§3.1.3).
    alice
        .send("<presence xmlns='jabber:client' to='carol@localhost' type='subscribe'/>")
        .await;
    // Handled before Carol logs in: Alice's stanzas are processed in order.
    drain(&mut alice).await;
    let mut carol = server.ws().await;
    let carol_jid = carol.login("carol", Login::ScramSha256).await;
    carol.send("<presence xmlns='jabber:client'/>").await;
    let waiting = recv_until(&mut carol, "the waiting request", |e| {
        is_presence(e, Some("subscribe"), "alice@")
    })
    .await;
    assert_eq!(waiting.attr("to"), Some(carol_jid.as_str()));

    // Bob's connection drops without a word: his subscribers see him unavailable (§4.5.2).
    drop(bob);
    let gone = recv_until(&mut alice2, "Bob unavailable", |e| {
        is_presence(e, Some("unavailable"), "bob@")
    })
    .await;
    assert_eq!(gone.attr("from"), Some(bob_jid.as_str()));
    assert!(alice_jid.starts_with("alice@"));
    server.stop().await;
}

#[tokio::test]
async fn pre_approval_and_directed_presence() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    get_roster(&mut bob, "rb", None).await;
    initial_presence(&mut alice, &alice_jid).await;
    initial_presence(&mut bob, &bob_jid).await;

    // §3.4: Bob pre-approves Alice; nothing is sent to her, his roster shows approved='true'.
    bob.send("<presence xmlns='jabber:client' to='alice@localhost' type='subscribed'/>")
        .await;
    let push = recv_until(&mut bob, "pre-approval push", is_push).await;
    assert_eq!(item(&push).attr("approved"), Some("true"));
    assert!(drain(&mut alice).await.is_empty());
    // Her request is then approved by the server without asking Bob.
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost' type='subscribe'/>")
        .await;
    recv_until(&mut alice, "approval", |e| {
        is_presence(e, Some("subscribed"), "bob@")
    })
    .await;
    recv_until(&mut alice, "Bob's presence", |e| {
        is_presence(e, None, "bob@")
    })
    .await;
    let seen = drain(&mut bob).await;
    assert!(
        !seen
            .iter()
            .any(|e| is_presence(e, Some("subscribe"), "alice@")),
        "{seen:#?}"
    );

    // §4.6: directed presence to Carol, who has no subscription; she gets the unavailable
    // when Alice's session ends.
    let mut carol = server.ws().await;
    let carol_jid = carol.login("carol", Login::ScramSha256).await;
    alice
        .send(&format!(
            "<presence xmlns='jabber:client' to='{carol_jid}'><status>hi</status></presence>"
        ))
        .await;
    recv_until(&mut carol, "directed presence", |e| {
        is_presence(e, None, "alice@")
    })
    .await;
    drop(alice);
    let gone = recv_until(&mut carol, "unavailable after the directed presence", |e| {
        is_presence(e, Some("unavailable"), "alice@")
    })
    .await;
    assert_eq!(gone.attr("from"), Some(alice_jid.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn modules_can_be_turned_off_and_bad_sections_refused() {
    let server = TestServer::start_with(|c| {
        let mut off = toml::Table::new();
        off.insert("enabled".into(), toml::Value::Boolean(false));
        c.modules.insert("roster".into(), toml::Value::Table(off));
    })
    .await;
    let mut a = server.ws().await;
    a.login("alice", Login::ScramSha256).await;
    a.send(&format!(
        "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='{ROSTER}'/></iq>"
    ))
    .await;
    let answer = recv_until(&mut a, "answer", |e| e.attr("id") == Some("r")).await;
    assert_eq!(
        error_condition(&answer).as_deref(),
        Some("service-unavailable")
    );
    server.stop().await;

    let mut config = weft_config::Config::default();
    let mut bad = toml::Table::new();
    bad.insert("max_itemz".into(), toml::Value::Integer(3));
    bad.insert("max_name_length".into(), toml::Value::String("long".into()));
    config
        .modules
        .insert("roster".into(), toml::Value::Table(bad));
    config
        .modules
        .insert("rooster".into(), toml::Value::Table(toml::Table::new()));
    let problems = match weft_server::modules::load(&config) {
        Err(p) => p,
        Ok(_) => panic!("bad module sections accepted"),
    };
    let keys: Vec<String> = problems
        .iter()
        .map(|p| {
            p.to_string()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for key in [
        "modules.rooster",
        "modules.roster.max_itemz",
        "modules.roster.max_name_length",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
}
