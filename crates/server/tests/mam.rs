//! XEP-0313 message archive management and XEP-0359 stanza ids on the wire: what is archived
//! for whom, paging both ways, filters, preferences, metadata, errors.

use minidom::Element;
use weft_testkit::clients::{drain, error_condition, iq, show};
use weft_testkit::{Client, Login, TestServer};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SID: &str = "urn:xmpp:sid:0";
const FORWARD: &str = "urn:xmpp:forward:0";

/// Sends a query and collects its result messages up to the IQ answer.
async fn query<C: Client>(c: &mut C, id: &str, inner: &str) -> (Vec<Element>, Element) {
    c.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='{MAM}' queryid='q-{id}'>{inner}</query></iq>"
    ))
    .await;
    let mut results = Vec::new();
    for _ in 0..400 {
        let el = c.recv().await;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            return (results, el);
        }
        if let Some(r) = el.get_child("result", MAM) {
            assert_eq!(
                r.attr("queryid"),
                Some(format!("q-{id}").as_str()),
                "{}",
                show(&el)
            );
            results.push(el.clone());
        }
    }
    panic!("no answer to query {id}")
}

/// The body of each result, in order.
fn bodies(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .map(|m| {
            m.get_child("result", MAM)
                .and_then(|r| r.get_child("forwarded", FORWARD))
                .and_then(|f| f.get_child("message", "jabber:client"))
                .and_then(|m| m.get_child("body", "jabber:client"))
                .map(|b| b.text())
                .unwrap_or_else(|| panic!("no forwarded body in {}", show(m)))
        })
        .collect()
}

fn result_ids(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .map(|m| {
            m.get_child("result", MAM)
                .unwrap()
                .attr("id")
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn fin(answer: &Element) -> &Element {
    answer
        .get_child("fin", MAM)
        .unwrap_or_else(|| panic!("no fin in {}", show(answer)))
}

fn complete(answer: &Element) -> bool {
    fin(answer).attr("complete") == Some("true")
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut x = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
    );
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x + "</x>"
}

fn rsm(inner: &str) -> String {
    format!("<set xmlns='{RSM}'>{inner}</set>")
}

#[tokio::test]
async fn both_parties_archive_with_stanza_ids_and_pages_go_both_ways() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;

    // Twelve messages, a chat state alone and a no-store one in between; a forged stanza-id.
    let mut delivered_ids = Vec::new();
    for i in 1..=12 {
        alice
            .send(&format!(
                "<message xmlns='jabber:client' to='{bob_jid}' type='chat' id='m{i}'><body>m{i}</body>\
                 <stanza-id xmlns='{SID}' id='forged' by='bob@localhost'/></message>"
            ))
            .await;
        if i == 6 {
            alice.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
            alice.send(&format!("<message xmlns='jabber:client' to='{bob_jid}' type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>")).await;
        }
    }
    while delivered_ids.len() < 12 {
        let m = bob.recv().await;
        if m.name() != "message" || !m.has_child("body", "jabber:client") {
            continue;
        }
        let body = m.get_child("body", "jabber:client").unwrap().text();
        let ids: Vec<_> = m.children().filter(|c| c.is("stanza-id", SID)).collect();
        if body == "secret" {
            assert!(
                ids.is_empty(),
                "a no-store message got a stanza-id: {}",
                show(&m)
            );
            continue;
        }
        assert_eq!(ids.len(), 1, "exactly our stanza-id: {}", show(&m));
        assert_eq!(ids[0].attr("by"), Some("bob@localhost"));
        assert_ne!(ids[0].attr("id"), Some("forged"));
        delivered_ids.push(ids[0].attr("id").unwrap().to_owned());
    }

    // Bob's archive: all twelve in order, under the ids he was given; nothing else.
    let (all, answer) = query(&mut bob, "all", &rsm("<max>100</max>")).await;
    assert_eq!(
        bodies(&all),
        (1..=12).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(result_ids(&all), delivered_ids);
    assert!(complete(&answer));
    let first = all[0]
        .get_child("result", MAM)
        .unwrap()
        .get_child("forwarded", FORWARD)
        .unwrap();
    assert!(
        first.has_child("delay", "urn:xmpp:delay"),
        "{}",
        show(&all[0])
    );
    assert_eq!(all[0].attr("to"), Some(bob_jid.as_str()));
    let set = fin(&answer).get_child("set", RSM).unwrap();
    assert_eq!(
        set.get_child("first", RSM).unwrap().text(),
        delivered_ids[0]
    );
    assert_eq!(
        set.get_child("last", RSM).unwrap().text(),
        delivered_ids[11]
    );

    // Forward paging by fives.
    let (p1, a1) = query(&mut bob, "p1", &rsm("<max>5</max>")).await;
    assert_eq!(result_ids(&p1), delivered_ids[0..5]);
    assert!(!complete(&a1));
    let (p2, _) = query(
        &mut bob,
        "p2",
        &rsm(&format!("<max>5</max><after>{}</after>", delivered_ids[4])),
    )
    .await;
    assert_eq!(result_ids(&p2), delivered_ids[5..10]);
    let (p3, a3) = query(
        &mut bob,
        "p3",
        &rsm(&format!("<max>5</max><after>{}</after>", delivered_ids[9])),
    )
    .await;
    assert_eq!(result_ids(&p3), delivered_ids[10..12]);
    assert!(complete(&a3));

    // Backwards from the end, each page in order; flip-page reverses one.
    let (b1, ab1) = query(&mut bob, "b1", &rsm("<max>5</max><before/>")).await;
    assert_eq!(result_ids(&b1), delivered_ids[7..12]);
    assert!(!complete(&ab1));
    let (b2, _) = query(
        &mut bob,
        "b2",
        &rsm(&format!(
            "<max>5</max><before>{}</before>",
            delivered_ids[7]
        )),
    )
    .await;
    assert_eq!(result_ids(&b2), delivered_ids[2..7]);
    let (b3, ab3) = query(
        &mut bob,
        "b3",
        &rsm(&format!(
            "<max>5</max><before>{}</before>",
            delivered_ids[2]
        )),
    )
    .await;
    assert_eq!(result_ids(&b3), delivered_ids[0..2]);
    assert!(complete(&ab3));
    bob.send(&format!("<iq xmlns='jabber:client' type='set' id='flip'><query xmlns='{MAM}' queryid='q-flip'>{}<flip-page/></query></iq>", rsm("<max>3</max><before/>"))).await;
    let mut flipped = Vec::new();
    loop {
        let el = bob.recv().await;
        if el.name() == "iq" {
            break;
        }
        flipped.push(el);
    }
    let mut expected = delivered_ids[9..12].to_vec();
    expected.reverse();
    assert_eq!(result_ids(&flipped), expected);

    // Filters: ids, after-id, and with; Alice's archive holds the same twelve as sent.
    let (chosen, _) = query(&mut bob, "ids", &form(&[("ids", &delivered_ids[3])])).await;
    assert_eq!(bodies(&chosen), ["m4"]);
    let (after, _) = query(&mut bob, "aid", &form(&[("after-id", &delivered_ids[9])])).await;
    assert_eq!(bodies(&after), ["m11", "m12"]);
    let (with_carol, a) = query(&mut bob, "wc", &form(&[("with", "carol@localhost")])).await;
    assert!(with_carol.is_empty() && complete(&a));
    let (sent, _) = query(&mut alice, "sent", &form(&[("with", "bob@localhost")])).await;
    assert_eq!(bodies(&sent).len(), 12);
    let (future, _) = query(
        &mut alice,
        "fut",
        &form(&[("start", "2999-01-01T00:00:00Z")]),
    )
    .await;
    assert!(future.is_empty());
    let (past, _) = query(
        &mut alice,
        "past",
        &form(&[("end", "2001-01-01T00:00:00Z")]),
    )
    .await;
    assert!(past.is_empty());

    // Errors: an unknown paging id, an unknown field, someone else's archive.
    let (_, unknown) = query(&mut bob, "bad-after", &rsm("<after>12345</after>")).await;
    assert_eq!(
        error_condition(&unknown).as_deref(),
        Some("item-not-found"),
        "{}",
        show(&unknown)
    );
    let (_, field) = query(&mut bob, "bad-field", &form(&[("colour", "red")])).await;
    assert_eq!(error_condition(&field).as_deref(), Some("bad-request"));
    let other = iq(&mut alice, "steal", &format!("<iq xmlns='jabber:client' type='set' to='bob@localhost' id='steal'><query xmlns='{MAM}'/></iq>")).await;
    assert_eq!(
        error_condition(&other).as_deref(),
        Some("forbidden"),
        "{}",
        show(&other)
    );

    // The form and the metadata.
    let f = iq(
        &mut bob,
        "form",
        &format!("<iq xmlns='jabber:client' type='get' id='form'><query xmlns='{MAM}'/></iq>"),
    )
    .await;
    assert!(show(&f).contains("after-id"), "{}", show(&f));
    let meta = iq(
        &mut bob,
        "meta",
        &format!("<iq xmlns='jabber:client' type='get' id='meta'><metadata xmlns='{MAM}'/></iq>"),
    )
    .await;
    let md = meta
        .get_child("metadata", MAM)
        .unwrap_or_else(|| panic!("{}", show(&meta)));
    assert_eq!(
        md.get_child("start", MAM).unwrap().attr("id"),
        Some(delivered_ids[0].as_str())
    );
    assert_eq!(
        md.get_child("end", MAM).unwrap().attr("id"),
        Some(delivered_ids[11].as_str())
    );
    drop(alice_jid);
    server.stop().await;
}

/// The one received message with a body, and its only stanza-id's id (by `owner`).
async fn stamped_message<C: Client>(c: &mut C, owner: &str) -> (Element, String) {
    loop {
        let m = c.recv().await;
        if m.name() != "message" || !m.has_child("body", "jabber:client") {
            continue;
        }
        let ids: Vec<_> = m.children().filter(|c| c.is("stanza-id", SID)).collect();
        assert_eq!(ids.len(), 1, "exactly our stanza-id: {}", show(&m));
        assert_eq!(ids[0].attr("by"), Some(owner), "{}", show(&m));
        let id = ids[0].attr("id").unwrap().to_owned();
        return (m, id);
    }
}

/// Recipients on plain connections (ws, TCP) get the archived text with their stanza-id
/// written in, rather than a fresh serialisation: the same message, addressed alike.
#[tokio::test]
async fn recipients_on_plain_connections_get_the_archived_text_with_their_stanza_id() {
    // TCP without TLS, as behind a TLS-terminating proxy.
    let server = TestServer::start_with(|c| c.c2s.require_encryption = false).await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha1).await;
    let mut bob = server.tcp().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    let mut carol = server.ws().await;
    let carol_jid = carol.login("carol", Login::ScramSha1).await;
    for (to, i) in [(&bob_jid, 1), (&carol_jid, 2)] {
        alice
            .send(&format!(
                "<message xmlns='jabber:client' to='{to}' type='chat' id='t{i}'>\
                 <body>1 &lt; 2 &amp; &apos;q&apos; {i}</body>\
                 <stanza-id xmlns='{SID}' id='forged' by='{}'/>\
                 <x xmlns='urn:example'><y a='&quot;'/>tail</x></message>",
                to.split('/').next().unwrap()
            ))
            .await;
    }
    let (for_bob, bob_id) = stamped_message(&mut bob, "bob@localhost").await;
    let (for_carol, carol_id) = stamped_message(&mut carol, "carol@localhost").await;
    for (m, to, i) in [(&for_bob, &bob_jid, 1), (&for_carol, &carol_jid, 2)] {
        assert_eq!(m.attr("to"), Some(to.as_str()));
        assert_eq!(m.attr("id"), Some(format!("t{i}").as_str()));
        let body = m.get_child("body", "jabber:client").unwrap().text();
        assert_eq!(body, format!("1 < 2 & 'q' {i}"));
        let x = m.get_child("x", "urn:example").unwrap();
        assert_eq!(
            x.get_child("y", "urn:example").unwrap().attr("a"),
            Some("\"")
        );
        assert_eq!(x.text(), "tail");
    }
    // Each archive holds it under the id its recipient was given.
    let (bobs, _) = query(&mut bob, "qb", "").await;
    assert_eq!(result_ids(&bobs), [bob_id]);
    let (carols, _) = query(&mut carol, "qc", "").await;
    assert_eq!(result_ids(&carols), [carol_id]);
    assert_eq!(bodies(&carols), ["1 < 2 & 'q' 2"]);
    server.stop().await;
}

#[tokio::test]
async fn preferences_decide_what_is_archived_and_offline_messages_keep_their_id() {
    let server = TestServer::start().await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    // Available, so that messages to Bob's bare JID reach him; Carol stays unavailable.
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut bob).await;

    let prefs = iq(
        &mut bob,
        "pg",
        &format!("<iq xmlns='jabber:client' type='get' id='pg'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    assert_eq!(
        prefs
            .get_child("prefs", MAM)
            .and_then(|p| p.attr("default")),
        Some("always")
    );
    let set = iq(
        &mut bob,
        "ps",
        &format!(
            "<iq xmlns='jabber:client' type='set' id='ps'><prefs xmlns='{MAM}' default='never'>\
         <always><jid>carol@localhost</jid></always><never/></prefs></iq>"
        ),
    )
    .await;
    assert_eq!(set.attr("type"), Some("result"), "{}", show(&set));
    // Lists are bounded: they are checked for every message.
    let many: String = (0..1001)
        .map(|i| format!("<jid>c{i}@localhost</jid>"))
        .collect();
    let too_many = iq(&mut bob, "pmany", &format!(
        "<iq xmlns='jabber:client' type='set' id='pmany'><prefs xmlns='{MAM}' default='always'><always>{many}</always><never/></prefs></iq>"
    ))
    .await;
    assert_eq!(
        error_condition(&too_many).as_deref(),
        Some("not-acceptable"),
        "{}",
        show(&too_many)
    );
    let got = iq(
        &mut bob,
        "pg2",
        &format!("<iq xmlns='jabber:client' type='get' id='pg2'><prefs xmlns='{MAM}'/></iq>"),
    )
    .await;
    let p = got.get_child("prefs", MAM).unwrap();
    assert_eq!(p.attr("default"), Some("never"));
    assert!(show(p).contains("carol@localhost"));

    alice.send("<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>from alice</body></message>").await;
    carol.send("<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>from carol</body></message>").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = bob.recv().await;
        if let Some(b) = m.get_child("body", "jabber:client") {
            seen.push((b.text(), m.has_child("stanza-id", SID)));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [("from alice".into(), false), ("from carol".into(), true)]
    );
    let (kept, _) = query(&mut bob, "kept", "").await;
    assert_eq!(bodies(&kept), ["from carol"]);
    // Alice's own archive follows her (default) preferences.
    let (alice_sent, _) = query(&mut alice, "as", "").await;
    assert_eq!(bodies(&alice_sent), ["from alice"]);

    // A message for an account without available resource is archived and keeps its
    // stanza-id in offline storage.
    alice.send("<message xmlns='jabber:client' to='carol@localhost' type='chat'><body>while away</body></message>").await;
    let (for_carol, _) = query(&mut carol, "c1", "").await;
    assert_eq!(bodies(&for_carol), ["from carol", "while away"]);
    let archived_id = result_ids(&for_carol)[1].clone();
    carol.send("<presence xmlns='jabber:client'/>").await;
    let stored = loop {
        let m = carol.recv().await;
        if m.name() == "message" && m.has_child("body", "jabber:client") {
            break m;
        }
    };
    let sid = stored
        .get_child("stanza-id", SID)
        .unwrap_or_else(|| panic!("{}", show(&stored)));
    assert_eq!(sid.attr("id"), Some(archived_id.as_str()));
    assert_eq!(sid.attr("by"), Some("carol@localhost"));
    server.stop().await;
}
