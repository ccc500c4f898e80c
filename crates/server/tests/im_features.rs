//! Everyday IM features on the wire: XEP-0280 carbons, XEP-0191 blocking, XEP-0054 vcard-temp
//! with XEP-0153 hashes, XEP-0049 private storage, XEP-0202 time, and what disco says of
//! them.

use minidom::Element;
use weft_testkit::clients::{befriend, drain, error_condition, iq, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const BLOCKING: &str = "urn:xmpp:blocking";

fn forwarded<'a>(carbon: &'a Element, direction: &str) -> Option<&'a Element> {
    carbon
        .get_child(direction, CARBONS)?
        .get_child("forwarded", FORWARD)?
        .get_child("message", "jabber:client")
}

#[tokio::test]
async fn carbons_copy_sent_and_received_messages_to_enabled_resources() {
    let server = TestServer::start().await;
    let mut phone = server.ws().await;
    let phone_jid = login(
        &mut phone,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let mut desk = server.tcp_direct_tls().await;
    let desk_jid = login(&mut desk, "alice", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut bob = server.ws().await;
    let bob_jid = bob.login("bob", Login::ScramSha256).await;
    phone.send("<presence xmlns='jabber:client'/>").await;
    desk.send("<presence xmlns='jabber:client'/>").await;
    // Each drain proves the client's own presence was handled, so the other's copy of it
    // is out of the way before the checks below.
    drain(&mut desk).await;
    drain(&mut phone).await;

    // Not enabled: no copies.
    phone.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='c0'><body>before</body></message>")).await;
    bob.recv().await;
    assert!(drain(&mut desk).await.iter().all(|e| e.name() != "message"));

    let r = iq(
        &mut desk,
        "en",
        &format!("<iq xmlns='jabber:client' type='set' id='en'><enable xmlns='{CARBONS}'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", show(&r));

    // Sent by the phone: the desk gets <sent/>.
    phone.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='c1'><body>hi bob</body></message>")).await;
    assert_eq!(bob.recv().await.attr("id"), Some("c1"));
    let copies: Vec<Element> = drain(&mut desk)
        .await
        .into_iter()
        .filter(|e| e.name() == "message")
        .collect();
    assert_eq!(copies.len(), 1, "{copies:#?}");
    assert_eq!(copies[0].attr("from"), Some("alice@localhost"));
    let inner = forwarded(&copies[0], "sent").expect("a <sent/> carbon");
    assert_eq!(inner.attr("id"), Some("c1"));
    assert_eq!(inner.attr("from"), Some(phone_jid.as_str()));

    // Received by the phone (addressed to it): the desk gets <received/>.
    bob.send(&format!("<message xmlns='jabber:client' to='{phone_jid}' type='chat' id='c2'><body>hi phone</body></message>")).await;
    assert_eq!(phone.recv().await.attr("id"), Some("c2"));
    drain(&mut bob).await;
    let copies: Vec<Element> = drain(&mut desk)
        .await
        .into_iter()
        .filter(|e| e.name() == "message")
        .collect();
    assert_eq!(copies.len(), 1, "{copies:#?}");
    let inner = forwarded(&copies[0], "received").expect("a <received/> carbon");
    assert_eq!(inner.attr("id"), Some("c2"));
    assert_eq!(inner.attr("from"), Some(bob_jid.as_str()));

    // <private/> is not copied; after disable nothing is.
    phone.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='c3'><body>p</body><private xmlns='{CARBONS}'/></message>")).await;
    bob.recv().await;
    assert!(drain(&mut desk).await.iter().all(|e| e.name() != "message"));
    iq(
        &mut desk,
        "dis",
        &format!("<iq xmlns='jabber:client' type='set' id='dis'><disable xmlns='{CARBONS}'/></iq>"),
    )
    .await;
    phone.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='c4'><body>x</body></message>")).await;
    bob.recv().await;
    assert!(drain(&mut desk).await.iter().all(|e| e.name() != "message"));
    assert!(desk_jid.ends_with("/desk"));
    server.stop().await;
}

#[tokio::test]
async fn blocking_refuses_both_ways_and_pushes_the_list() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut alice2 = server.tcp_direct_tls().await;
    login(
        &mut alice2,
        "alice",
        PASSWORD,
        Login::ScramSha1,
        Some("two"),
    )
    .await;
    let mut bob = server.ws().await;
    let bob_jid = bob.login("bob", Login::ScramSha256).await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;

    let list = iq(
        &mut alice2,
        "l",
        &format!(
            "<iq xmlns='jabber:client' type='get' id='l'><blocklist xmlns='{BLOCKING}'/></iq>"
        ),
    )
    .await;
    assert_eq!(
        list.get_child("blocklist", BLOCKING)
            .map(|b| b.children().count()),
        Some(0)
    );
    let r = iq(&mut alice, "b", &format!("<iq xmlns='jabber:client' type='set' id='b'><block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", show(&r));
    // The push reaches the resource that asked for the list.
    let pushes: Vec<Element> = drain(&mut alice2).await;
    assert!(
        pushes
            .iter()
            .any(|e| e.get_child("block", BLOCKING).is_some()),
        "{pushes:#?}"
    );

    // Bob's message and IQ to Alice are refused, his presence dropped.
    bob.send(&format!("<message xmlns='jabber:client' to='{alice_jid}' type='chat' id='m1'><body>hi</body></message>")).await;
    let refused = bob.recv().await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("service-unavailable")
    );
    bob.send("<message xmlns='jabber:client' to='alice@localhost' type='chat' id='m2'><body>hi</body></message>").await;
    assert_eq!(
        error_condition(&bob.recv().await).as_deref(),
        Some("service-unavailable")
    );
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{alice_jid}'/>"
    ))
    .await;
    let got = drain(&mut alice).await;
    assert!(got.is_empty(), "nothing from Bob: {got:#?}");

    // Alice's message to Bob is refused with <blocked/>.
    alice.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='m3'><body>x</body></message>")).await;
    let err = alice.recv().await;
    assert_eq!(error_condition(&err).as_deref(), Some("not-acceptable"));
    assert!(err
        .get_child("error", "jabber:client")
        .unwrap()
        .has_child("blocked", "urn:xmpp:blocking:errors"));
    assert!(drain(&mut bob).await.is_empty());

    // Unblock all: messages flow again.
    iq(
        &mut alice,
        "u",
        &format!("<iq xmlns='jabber:client' type='set' id='u'><unblock xmlns='{BLOCKING}'/></iq>"),
    )
    .await;
    bob.send(&format!("<message xmlns='jabber:client' to='{alice_jid}' type='chat' id='m4'><body>again</body></message>")).await;
    assert_eq!(alice.recv().await.attr("id"), Some("m4"));
    server.stop().await;
}

#[tokio::test]
async fn vcards_private_storage_and_time() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    bob.login("bob", Login::ScramSha1).await;

    // vcard-temp: set by the owner (with a photo: "abc"), read by anyone.
    let set = iq(&mut alice, "v1", "<iq xmlns='jabber:client' type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>YWJj</BINVAL></PHOTO></vCard></iq>").await;
    assert_eq!(set.attr("type"), Some("result"), "{}", show(&set));
    let got = iq(&mut bob, "v2", "<iq xmlns='jabber:client' type='get' id='v2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>").await;
    assert_eq!(got.attr("from"), Some("alice@localhost"));
    let card = got.get_child("vCard", "vcard-temp").expect("a vCard");
    assert_eq!(
        card.get_child("FN", "vcard-temp").map(|f| f.text()),
        Some("Alice".into())
    );
    let forbidden = iq(&mut bob, "v3", "<iq xmlns='jabber:client' type='set' id='v3' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>").await;
    assert_eq!(error_condition(&forbidden).as_deref(), Some("forbidden"));
    let empty = iq(&mut alice, "v4", "<iq xmlns='jabber:client' type='get' id='v4' to='carol@localhost'><vCard xmlns='vcard-temp'/></iq>").await;
    assert_eq!(
        empty
            .get_child("vCard", "vcard-temp")
            .map(|c| c.children().count()),
        Some(0)
    );

    // XEP-0153: Alice's broadcast presence carries her photo's hash.
    alice.send("<presence xmlns='jabber:client'/>").await;
    let own = alice.recv().await;
    let photo = own
        .get_child("x", "vcard-temp:x:update")
        .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
        .map(|p| p.text());
    assert_eq!(
        photo.as_deref(),
        Some("a9993e364706816aba3e25717850c26c9cd0d89d"),
        "{}",
        show(&own)
    );
    assert_eq!(own.attr("from"), Some(alice_jid.as_str()));

    // XEP-0049: private to its owner; an empty fragment when nothing is stored.
    let stored = iq(&mut alice, "p1", "<iq xmlns='jabber:client' type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'><theme>dark</theme></prefs></query></iq>").await;
    assert_eq!(stored.attr("type"), Some("result"));
    let back = iq(&mut alice, "p2", "<iq xmlns='jabber:client' type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'/></query></iq>").await;
    let theme = back
        .get_child("query", "jabber:iq:private")
        .and_then(|q| q.get_child("prefs", "example:prefs"))
        .and_then(|p| p.get_child("theme", "example:prefs"))
        .map(|t| t.text());
    assert_eq!(theme.as_deref(), Some("dark"));
    let other = iq(&mut bob, "p3", "<iq xmlns='jabber:client' type='get' id='p3'><query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'/></query></iq>").await;
    let prefs = other
        .get_child("query", "jabber:iq:private")
        .and_then(|q| q.get_child("prefs", "example:prefs"))
        .expect("empty fragment");
    assert_eq!(prefs.children().count(), 0, "Bob's own storage is empty");
    let sneaky = iq(&mut bob, "p4", "<iq xmlns='jabber:client' type='get' id='p4' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='example:prefs'/></query></iq>").await;
    assert_eq!(error_condition(&sneaky).as_deref(), Some("forbidden"));
    let reserved = iq(&mut alice, "p5", "<iq xmlns='jabber:client' type='set' id='p5'><query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query></iq>").await;
    assert_eq!(
        error_condition(&reserved).as_deref(),
        Some("not-acceptable")
    );

    // XEP-0202, and disco lists what is on.
    let time = iq(&mut alice, "t", "<iq xmlns='jabber:client' type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>").await;
    let utc = time
        .get_child("time", "urn:xmpp:time")
        .and_then(|t| t.get_child("utc", "urn:xmpp:time"))
        .map(|u| u.text())
        .unwrap_or_default();
    assert!(utc.ends_with('Z') && utc.len() == 24, "{utc}");
    let info = iq(&mut alice, "d", "<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let features: Vec<String> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| {
            q.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for f in [
        CARBONS,
        BLOCKING,
        "vcard-temp",
        "urn:xmpp:time",
        "msgoffline",
        "urn:xmpp:ping",
    ] {
        assert!(
            features.iter().any(|x| x == f),
            "{f} missing from {features:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn csi_holds_presence_until_something_matters() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    bob.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    // Presence (the newest of two) and a chat state wait...
    for show in ["away", "xa"] {
        alice
            .send(&format!(
                "<presence xmlns='jabber:client' to='{bob_jid}'><show>{show}</show></presence>"
            ))
            .await;
    }
    alice.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    drain(&mut alice).await;
    let held = drain(&mut bob).await;
    assert!(held.is_empty(), "held while inactive: {held:#?}");
    // ...until a message with a body: then all of it, in order.
    alice.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='urgent'><body>call me</body></message>")).await;
    drain(&mut alice).await;
    let got = drain(&mut bob).await;
    let names: Vec<&str> = got.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["presence", "message", "message"], "{got:#?}");
    assert_eq!(
        got[0].get_child("show", "jabber:client").map(|s| s.text()),
        Some("xa".into())
    );
    assert_eq!(got[2].attr("id"), Some("urgent"));
    // Held again, then released by <active/>.
    alice
        .send(&format!("<presence xmlns='jabber:client' to='{bob_jid}'/>"))
        .await;
    drain(&mut alice).await;
    assert!(drain(&mut bob).await.is_empty());
    bob.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    let released = drain(&mut bob).await;
    assert_eq!(released.len(), 1, "{released:#?}");
    assert_eq!(released[0].attr("from"), Some(alice_jid.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn last_activity_and_caps() {
    let server = TestServer::start().await;
    // XEP-0115: the stream features after authentication carry the server's caps.
    let mut probe = server.ws().await;
    let features =
        weft_testkit::clients::authenticate(&mut probe, "carol", PASSWORD, Login::ScramSha256)
            .await;
    let caps = features
        .get_child("c", "http://jabber.org/protocol/caps")
        .expect("caps in the stream features");
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    assert!(
        caps.attr("ver").is_some_and(|v| v.len() == 28),
        "{}",
        show(caps)
    );
    drop(probe);

    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let uptime = iq(&mut alice, "up", "<iq xmlns='jabber:client' type='get' id='up' to='localhost'><query xmlns='jabber:iq:last'/></iq>").await;
    assert!(uptime
        .get_child("query", "jabber:iq:last")
        .and_then(|q| q.attr("seconds"))
        .is_some());
    // Bob is not Alice's subscriber: refused.
    let mut bob = server.tcp_direct_tls().await;
    bob.login("bob", Login::ScramSha1).await;
    let refused = iq(&mut bob, "l1", "<iq xmlns='jabber:client' type='get' id='l1' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>").await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    // Online: 0. Once Alice subscribed to Bob and Bob logged out: how long ago.
    let online = iq(&mut bob, "l2", "<iq xmlns='jabber:client' type='get' id='l2' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>").await;
    assert_eq!(
        online
            .get_child("query", "jabber:iq:last")
            .and_then(|q| q.attr("seconds")),
        Some("0")
    );
    alice
        .send("<presence xmlns='jabber:client' to='bob@localhost' type='subscribe'/>")
        .await;
    drain(&mut alice).await;
    bob.send("<presence xmlns='jabber:client' to='alice@localhost' type='subscribed'/>")
        .await;
    drain(&mut bob).await;
    // §4: the status of the last unavailable presence comes with the idle time.
    bob.send("<presence xmlns='jabber:client' type='unavailable'><status>off to lunch</status></presence>")
        .await;
    drain(&mut bob).await;
    drop(bob);
    let mut gone = None;
    for _ in 0..50 {
        let r = iq(&mut alice, "l3", "<iq xmlns='jabber:client' type='get' id='l3' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>").await;
        if r.attr("type") == Some("result")
            && r.get_child("query", "jabber:iq:last")
                .and_then(|q| q.attr("seconds"))
                != Some("0")
        {
            gone = Some(r);
            break;
        }
        if r.attr("type") == Some("result") {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        gone = Some(r);
        break;
    }
    let gone = gone.expect("an answer after the logout");
    // Logged out less than a few seconds ago (0 in the first second, then 1, …).
    let seconds: u64 = gone
        .get_child("query", "jabber:iq:last")
        .and_then(|q| q.attr("seconds"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", show(&gone)));
    assert!(seconds < 10, "{seconds}");
    assert_eq!(
        gone.get_child("query", "jabber:iq:last").map(|q| q.text()),
        Some("off to lunch".into())
    );
    server.stop().await;
}

fn presence_from<'a>(got: &'a [Element], from: &str) -> Vec<&'a Element> {
    got.iter()
        .filter(|e| e.name() == "presence" && e.attr("from") == Some(from))
        .collect()
}

#[tokio::test]
async fn blocking_a_subscriber_withholds_presence_and_iqs_and_unblocking_brings_presence_back() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;
    drain(&mut bob).await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;

    // §3.3: blocking a subscriber shows it the user going unavailable, once.
    let r = iq(&mut alice, "b", &format!("<iq xmlns='jabber:client' type='set' id='b'><block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", show(&r));
    let got = drain(&mut bob).await;
    let seen = presence_from(&got, &alice_jid);
    assert_eq!(seen.len(), 1, "{got:#?}");
    assert_eq!(seen[0].attr("type"), Some("unavailable"));

    // Then none of the user's presence reaches the blocked contact: not its broadcast ...
    alice
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    drain(&mut alice).await;
    let got = drain(&mut bob).await;
    assert!(presence_from(&got, &alice_jid).is_empty(), "{got:#?}");
    // ... nor the answer to the probe of a new session of the contact.
    let mut bob2 = server.ws().await;
    login(&mut bob2, "bob", PASSWORD, Login::ScramSha1, Some("phone")).await;
    bob2.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut bob2).await;
    let got = drain(&mut bob2).await;
    assert!(presence_from(&got, &alice_jid).is_empty(), "{got:#?}");

    // §3.5: the user's IQ requests to the blocked contact are refused with <blocked/>; an
    // answer is dropped silently.
    let err = iq(&mut alice, "v", &format!("<iq xmlns='jabber:client' type='get' id='v' to='{bob_jid}'><query xmlns='jabber:iq:version'/></iq>")).await;
    assert_eq!(
        error_condition(&err).as_deref(),
        Some("not-acceptable"),
        "{}",
        show(&err)
    );
    assert!(err
        .get_child("error", "jabber:client")
        .is_some_and(|e| e.has_child("blocked", "urn:xmpp:blocking:errors")));
    alice
        .send(&format!(
            "<iq xmlns='jabber:client' type='result' id='x' to='{bob_jid}'/>"
        ))
        .await;
    assert!(drain(&mut alice).await.is_empty());
    let got = drain(&mut bob).await;
    assert!(
        got.iter()
            .all(|e| e.attr("from") != Some(alice_jid.as_str())),
        "{got:#?}"
    );

    // §3.4: unblocking sends the user's current presence again.
    iq(&mut alice, "u", &format!("<iq xmlns='jabber:client' type='set' id='u'><unblock xmlns='{BLOCKING}'><item jid='bob@localhost'/></unblock></iq>")).await;
    let got = drain(&mut bob).await;
    let seen = presence_from(&got, &alice_jid);
    assert_eq!(seen.len(), 1, "{got:#?}");
    assert_eq!(seen[0].attr("type"), None);
    assert_eq!(
        seen[0].get_child("show", "jabber:client").map(|s| s.text()),
        Some("away".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_replaced_by_a_new_bind_of_its_resource_is_not_reported_gone() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = login(
        &mut alice,
        "alice",
        PASSWORD,
        Login::ScramSha1,
        Some("phone"),
    )
    .await;
    let mut bob = server.tcp_direct_tls().await;
    login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;
    drain(&mut bob).await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    // The phone reconnects with the same resource: the new session replaces the old one.
    let mut again = server.tcp_direct_tls().await;
    login(
        &mut again,
        "alice",
        PASSWORD,
        Login::ScramSha1,
        Some("phone"),
    )
    .await;
    alice.expect_stream_error("conflict").await;
    // The new session does not hear of its own resource as gone (RFC 6121 §4.5.2 is for a
    // resource that went away, and this one did not).
    let mut own = Vec::new();
    for _ in 0..3 {
        own.extend(drain(&mut again).await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        presence_from(&own, &alice_jid)
            .iter()
            .all(|p| p.attr("type") != Some("unavailable")),
        "{own:#?}"
    );
    again
        .send("<presence xmlns='jabber:client'><show>chat</show></presence>")
        .await;
    drain(&mut again).await;
    // Bob sees the resource's new presence and never an unavailable for it.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(drain(&mut bob).await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let from_phone = presence_from(&seen, &alice_jid);
    assert!(
        from_phone.iter().all(|p| p.attr("type").is_none()),
        "{seen:#?}"
    );
    assert!(!from_phone.is_empty(), "{seen:#?}");
    server.stop().await;
}
