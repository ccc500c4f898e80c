//! XEP-0045 multi-user chat on the wire: creating and configuring rooms, entering (errors
//! included), presence, messages, history, subject, private messages, nick changes, kicks and
//! bans, affiliation lists, self-pings (XEP-0410), occupant ids (XEP-0421), disco.

use minidom::Element;
use weft_testkit::clients::{drain, error_condition, iq, show};
use weft_testkit::{Client, Login, TestServer};

const MUC: &str = "http://jabber.org/protocol/muc";
const USER: &str = "http://jabber.org/protocol/muc#user";
const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const OWNER: &str = "http://jabber.org/protocol/muc#owner";
const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
const ROOM: &str = "coven@conference.localhost";

/// The next stanza `pick` accepts, skipping others; panics after 50.
async fn next<C: Client>(c: &mut C, what: &str, pick: impl Fn(&Element) -> bool) -> Element {
    for _ in 0..50 {
        let el = c.recv().await;
        if pick(&el) {
            return el;
        }
    }
    panic!("no {what}")
}

fn codes(p: &Element) -> Vec<String> {
    p.get_child("x", USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", USER))
                .filter_map(|c| c.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn item(p: &Element) -> &Element {
    p.get_child("x", USER)
        .and_then(|x| x.get_child("item", USER))
        .unwrap_or_else(|| panic!("no muc#user item in {}", show(p)))
}

fn body(m: &Element) -> String {
    m.get_child("body", "jabber:client")
        .map(|b| b.text())
        .unwrap_or_default()
}

/// Enters `ROOM` as `nick`; returns everything up to and including the subject message,
/// which ends the entering (XEP-0045 §7.2.15).
async fn enter<C: Client>(c: &mut C, nick: &str, x: &str) -> Vec<Element> {
    c.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='{MUC}'>{x}</x></presence>"
    ))
    .await;
    let mut got = Vec::new();
    for _ in 0..60 {
        let el = c.recv().await;
        let end = el.name() == "message" && el.has_child("subject", "jabber:client")
            || el.attr("type") == Some("error");
        got.push(el);
        if end {
            return got;
        }
    }
    panic!("entering {ROOM} as {nick} did not end")
}

async fn configure<C: Client>(c: &mut C, id: &str, fields: &str) -> Element {
    iq(
        c,
        id,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='{id}' to='{ROOM}'><query xmlns='{OWNER}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             {fields}</x></query></iq>"
        ),
    )
    .await
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

#[tokio::test]
async fn a_room_is_created_configured_and_lived_in() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = bob.login("bob", Login::ScramSha1).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;

    // Creation: alice is the owner and a moderator; the room is locked until configured.
    let got = enter(&mut alice, "Alice", "").await;
    let own = got
        .iter()
        .find(|p| p.name() == "presence")
        .expect("own presence");
    assert_eq!(own.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
    let mut c = codes(own);
    c.sort();
    assert_eq!(c, ["110", "170", "201"], "{}", show(own));
    assert_eq!(item(own).attr("affiliation"), Some("owner"));
    assert_eq!(item(own).attr("role"), Some("moderator"));
    assert!(own.has_child("occupant-id", OCCUPANT_ID));
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("item-not-found"),
        "a locked room: {}",
        show(refused.last().unwrap())
    );

    // The configuration form, then an instant room with a name.
    let form = iq(
        &mut alice,
        "form",
        &format!("<iq xmlns='jabber:client' type='get' id='form' to='{ROOM}'><query xmlns='{OWNER}'/></iq>"),
    )
    .await;
    let x = form
        .get_child("query", OWNER)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("no form: {}", show(&form)));
    assert!(x
        .children()
        .any(|f| f.attr("var") == Some("muc#roomconfig_membersonly")));
    let done = configure(
        &mut alice,
        "cfg",
        &field("muc#roomconfig_roomname", "The Coven"),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));

    // Bob enters: he sees alice, then himself (110), then the subject; alice sees him, with no
    // real JID (semi-anonymous) and with an occupant id.
    let got = enter(&mut bob, "Bob", "").await;
    let presences: Vec<&Element> = got.iter().filter(|e| e.name() == "presence").collect();
    assert_eq!(
        presences.len(),
        2,
        "{:?}",
        got.iter().map(show).collect::<Vec<_>>()
    );
    assert_eq!(
        presences[0].attr("from"),
        Some(format!("{ROOM}/Alice").as_str())
    );
    assert_eq!(
        presences[1].attr("from"),
        Some(format!("{ROOM}/Bob").as_str())
    );
    assert_eq!(
        codes(presences[1]),
        ["110", "170"],
        "its own, and the room is logged"
    );
    assert_eq!(item(presences[1]).attr("role"), Some("participant"));
    assert_eq!(item(presences[0]).attr("jid"), None, "bob is no moderator");
    let seen = next(&mut alice, "bob's presence", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bob"))
    })
    .await;
    assert_eq!(
        item(&seen).attr("jid"),
        Some(bob_jid.as_str()),
        "moderators see JIDs"
    );
    let bob_id = seen
        .get_child("occupant-id", OCCUPANT_ID)
        .and_then(|o| o.attr("id"))
        .unwrap()
        .to_owned();

    // A nick in use by someone else.
    let refused = enter(&mut carol, "Bob", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("conflict")
    );

    // Messages to all, the sender's included, with its occupant id; a forged one is dropped.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='g1'><body>hail</body>\
         <occupant-id xmlns='{OCCUPANT_ID}' id='forged'/></message>"
    ))
    .await;
    let m = next(&mut alice, "bob's message", |e| {
        e.name() == "message" && body(e) == "hail"
    })
    .await;
    assert_eq!(m.attr("from"), Some(format!("{ROOM}/Bob").as_str()));
    assert_eq!(m.attr("type"), Some("groupchat"));
    let ids: Vec<_> = m
        .children()
        .filter(|c| c.is("occupant-id", OCCUPANT_ID))
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].attr("id"), Some(bob_id.as_str()));
    let echo = next(&mut bob, "the reflection", |e| {
        e.name() == "message" && body(e) == "hail"
    })
    .await;
    assert_eq!(echo.attr("id"), Some("g1"));

    // The subject: participants may not set it here; moderators may.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><subject>mine</subject></message>"
    ))
    .await;
    let e = next(&mut bob, "an error", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><subject>Spells</subject></message>"
        ))
        .await;
    next(&mut bob, "the subject", |e| {
        e.has_child("subject", "jabber:client")
    })
    .await;

    // Carol enters later: the history (with delays), then the subject by Alice.
    let got = enter(&mut carol, "Carol", "<history maxstanzas='5'/>").await;
    let history: Vec<&Element> = got
        .iter()
        .filter(|e| e.name() == "message" && !body(e).is_empty())
        .collect();
    assert_eq!(
        history.len(),
        1,
        "{:?}",
        got.iter().map(show).collect::<Vec<_>>()
    );
    assert!(history[0].has_child("delay", "urn:xmpp:delay"));
    let subject = got.last().unwrap();
    assert_eq!(
        subject
            .get_child("subject", "jabber:client")
            .unwrap()
            .text(),
        "Spells"
    );
    assert_eq!(subject.attr("from"), Some(format!("{ROOM}/Alice").as_str()));

    // A private message, with the muc#user marker.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}/Carol' type='chat'><body>psst</body></message>"
    ))
    .await;
    let pm = next(&mut carol, "the PM", |e| body(e) == "psst").await;
    assert_eq!(pm.attr("from"), Some(format!("{ROOM}/Bob").as_str()));
    assert!(pm.has_child("x", USER));

    // Nick change: 303 with the new nick, then the new presence.
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/Robert'/>"
    ))
    .await;
    let gone = next(&mut carol, "bob's 303", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bob"))
    })
    .await;
    assert_eq!(codes(&gone), ["303"]);
    assert_eq!(item(&gone).attr("nick"), Some("Robert"));
    next(&mut carol, "Robert", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Robert"))
    })
    .await;

    // Self-ping (XEP-0410): an occupant is answered by the room, an outsider is not.
    let pong = iq(&mut carol, "sp", &format!("<iq xmlns='jabber:client' type='get' id='sp' to='{ROOM}/Carol'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", show(&pong));

    // Only moderators kick; a kicked occupant hears 307.
    let no = iq(&mut carol, "k0", &format!("<iq xmlns='jabber:client' type='set' id='k0' to='{ROOM}'><query xmlns='{ADMIN}'><item nick='Robert' role='none'/></query></iq>")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("forbidden"),
        "{}",
        show(&no)
    );
    let ok = iq(&mut alice, "k1", &format!("<iq xmlns='jabber:client' type='set' id='k1' to='{ROOM}'><query xmlns='{ADMIN}'><item nick='Robert' role='none'><reason>rude</reason></item></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let kicked = next(&mut bob, "the kick", |e| {
        e.name() == "presence"
            && e.attr("type") == Some("unavailable")
            && e.attr("from") == Some(&format!("{ROOM}/Robert"))
    })
    .await;
    let mut c = codes(&kicked);
    c.sort();
    assert_eq!(c, ["110", "307"]);
    // §8.2: the moderator and the reason in the item, not in a <status/> text.
    let item = kicked
        .get_child("x", USER)
        .and_then(|x| x.get_child("item", USER))
        .expect("an item");
    assert_eq!(
        item.get_child("reason", USER).map(|r| r.text()).as_deref(),
        Some("rude"),
        "{}",
        show(&kicked)
    );
    assert!(
        item.get_child("actor", USER)
            .and_then(|a| a.attr("nick"))
            .is_some_and(|n| !n.is_empty()),
        "{}",
        show(&kicked)
    );
    assert!(kicked.get_child("status", "jabber:client").is_none());

    // A ban keeps him out, and lists him.
    let ok = iq(&mut alice, "b1", &format!("<iq xmlns='jabber:client' type='set' id='b1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='outcast'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("forbidden")
    );
    let list = iq(&mut alice, "l1", &format!("<iq xmlns='jabber:client' type='get' id='l1' to='{ROOM}'><query xmlns='{ADMIN}'><item affiliation='outcast'/></query></iq>")).await;
    let items: Vec<_> = list
        .get_child("query", ADMIN)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(items, ["bob@localhost"]);
    // The last owner stays an owner.
    let no = iq(&mut alice, "o1", &format!("<iq xmlns='jabber:client' type='set' id='o1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='alice@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("conflict"),
        "{}",
        show(&no)
    );

    // Disco: the service lists the room by name; the room describes itself.
    let items = iq(&mut carol, "di", "<iq xmlns='jabber:client' type='get' id='di' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let listed: Vec<_> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| (i.attr("jid").unwrap_or(""), i.attr("name").unwrap_or("")))
        .collect();
    assert_eq!(listed, [(ROOM, "The Coven")]);
    let info = iq(&mut carol, "dinfo", &format!("<iq xmlns='jabber:client' type='get' id='dinfo' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    let features: Vec<_> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .children()
        .filter_map(|f| f.attr("var"))
        .collect();
    for f in [
        MUC,
        "muc_semianonymous",
        "muc_temporary",
        "muc_open",
        OCCUPANT_ID,
    ] {
        assert!(features.contains(&f), "{f} missing: {}", show(&info));
    }

    // Leaving: carol's session ends, alice hears it; alice leaves, the empty temporary room
    // goes.
    drop(carol);
    let left = next(&mut alice, "carol leaving", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Carol"))
    })
    .await;
    assert_eq!(left.attr("type"), Some("unavailable"));
    alice
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/Alice' type='unavailable'/>"
        ))
        .await;
    let own = next(&mut alice, "own unavailable", |e| e.name() == "presence").await;
    assert_eq!(codes(&own), ["110"]);
    drain(&mut alice).await;
    let items = iq(&mut alice, "di2", "<iq xmlns='jabber:client' type='get' id='di2' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    assert_eq!(
        items
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .unwrap()
            .children()
            .count(),
        0
    );
    let _ = alice_jid;
}

#[tokio::test]
async fn passwords_members_only_and_entering_errors() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;

    enter(&mut alice, "Alice", "").await;
    let done = configure(
        &mut alice,
        "cfg",
        &format!(
            "{}{}{}",
            field("muc#roomconfig_passwordprotectedroom", "1"),
            field("muc#roomconfig_roomsecret", "cauldron"),
            field("muc#roomconfig_whois", "anyone")
        ),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    let refused = enter(&mut bob, "Bob", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("not-authorized")
    );
    let refused = enter(&mut bob, "Bob", "<password>toad</password>").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("not-authorized")
    );
    let got = enter(&mut bob, "Bob", "<password>cauldron</password>").await;
    let own = got.iter().rfind(|e| e.name() == "presence").unwrap();
    let mut c = codes(own);
    c.sort();
    assert_eq!(c, ["100", "110", "170"], "non-anonymous: {}", show(own));
    assert!(item(own).attr("jid").is_some(), "everyone sees JIDs");

    // §10.2.1: logging turned off is announced with 104 and 171.
    let done = configure(
        &mut alice,
        "cfg-log",
        &field("muc#roomconfig_enablelogging", "0"),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    let note = next(&mut bob, "the configuration change", |e| {
        e.name() == "message" && !codes(e).is_empty()
    })
    .await;
    let mut c = codes(&note);
    c.sort();
    assert_eq!(c, ["104", "171"], "{}", show(&note));

    // Members only: bob (no affiliation) is removed with 322; made a member, he may enter.
    let done = configure(
        &mut alice,
        "cfg2",
        &field("muc#roomconfig_membersonly", "1"),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"));
    let out = next(&mut bob, "removal", |e| {
        e.name() == "presence" && e.attr("type") == Some("unavailable")
    })
    .await;
    assert!(codes(&out).contains(&"322".to_string()), "{}", show(&out));
    let refused = enter(&mut bob, "Bob", "<password>cauldron</password>").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("registration-required")
    );
    let ok = iq(&mut alice, "m1", &format!("<iq xmlns='jabber:client' type='set' id='m1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"));
    let got = enter(&mut bob, "Bob", "<password>cauldron</password>").await;
    assert!(got.last().unwrap().has_child("subject", "jabber:client"));
    // A member may not promote himself.
    let no = iq(&mut bob, "a1", &format!("<iq xmlns='jabber:client' type='set' id='a1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='admin'/></query></iq>")).await;
    assert_eq!(error_condition(&no).as_deref(), Some("forbidden"));
    // Entering without a nick.
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let e = next(&mut bob, "jid-malformed", |e| {
        e.attr("type") == Some("error")
    })
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("jid-malformed"));
    // Cancelling a new room's first configuration destroys it.
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    carol.send("<presence xmlns='jabber:client' to='attic@conference.localhost/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    next(&mut carol, "the subject", |e| {
        e.has_child("subject", "jabber:client")
    })
    .await;
    let ok = iq(&mut carol, "c1", &format!("<iq xmlns='jabber:client' type='set' id='c1' to='attic@conference.localhost'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"));
    let gone = iq(&mut carol, "c2", &format!("<iq xmlns='jabber:client' type='get' id='c2' to='attic@conference.localhost'><query xmlns='{OWNER}'/></iq>")).await;
    assert_eq!(error_condition(&gone).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn persistent_rooms_outlive_a_restart_and_temporary_ones_do_not() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    let done = configure(
        &mut alice,
        "cfg",
        &format!(
            "{}{}",
            field("muc#roomconfig_persistentroom", "1"),
            field("muc#roomconfig_roomname", "Kept")
        ),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><subject>Old spells</subject></message>"
        ))
        .await;
    let ok = iq(&mut alice, "m1", &format!("<iq xmlns='jabber:client' type='set' id='m1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"));
    // A temporary room beside it.
    alice.send("<presence xmlns='jabber:client' to='attic@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    next(&mut alice, "the attic's subject", |e| {
        e.has_child("subject", "jabber:client")
            && e.attr("from").is_some_and(|f| f.starts_with("attic@"))
    })
    .await;
    drop(alice);

    let server = server.restart().await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let items = iq(&mut bob, "di", "<iq xmlns='jabber:client' type='get' id='di' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let listed: Vec<_> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| i.attr("name").unwrap_or("").to_owned())
        .collect();
    assert_eq!(listed, ["Kept"], "{}", show(&items));
    // Bob is still a member (a participant on entering) and the subject is kept.
    let got = enter(&mut bob, "Bob", "").await;
    let own = got.iter().rfind(|e| e.name() == "presence").unwrap();
    assert_eq!(
        item(own).attr("affiliation"),
        Some("member"),
        "{}",
        show(own)
    );
    let subject = got.last().unwrap();
    assert_eq!(
        subject
            .get_child("subject", "jabber:client")
            .unwrap()
            .text(),
        "Old spells"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_room_archive_pages_with_stanza_ids_by_the_room() {
    const MAM: &str = "urn:xmpp:mam:2";
    const SID: &str = "urn:xmpp:sid:0";
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(&mut alice, "cfg", "").await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        alice
            .send(&format!(
                "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>spell {i}</body>\
                 <stanza-id xmlns='{SID}' by='{ROOM}' id='forged'/></message>"
            ))
            .await;
        let echo = next(&mut alice, "the reflection", |e| {
            body(e) == format!("spell {i}")
        })
        .await;
        let sids: Vec<_> = echo.children().filter(|c| c.is("stanza-id", SID)).collect();
        assert_eq!(sids.len(), 1, "{}", show(&echo));
        assert_eq!(sids[0].attr("by"), Some(ROOM));
        assert_ne!(sids[0].attr("id"), Some("forged"));
        ids.push(sids[0].attr("id").unwrap().to_owned());
    }
    // The history carries the same ids.
    let got = enter(&mut bob, "Bob", "<history maxstanzas='1'/>").await;
    let h = got.iter().find(|e| body(e) == "spell 5").expect("history");
    assert_eq!(
        h.get_child("stanza-id", SID).and_then(|s| s.attr("id")),
        Some(ids[4].as_str())
    );
    // The last page of two, then the one before, from the room's archive.
    let page = |before: &str| {
        format!(
            "<iq xmlns='jabber:client' type='set' id='q' to='{ROOM}'><query xmlns='{MAM}' queryid='qq'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>{before}</before></set></query></iq>"
        )
    };
    for (before, want) in [("", &ids[3..5]), (ids[3].as_str(), &ids[1..3])] {
        bob.send(&page(before)).await;
        let mut results = Vec::new();
        let fin = loop {
            let el = bob.recv().await;
            if el.name() == "iq" && el.attr("id") == Some("q") {
                break el;
            }
            if let Some(r) = el.get_child("result", MAM) {
                assert_eq!(el.attr("from"), Some(ROOM));
                let m = r
                    .get_child("forwarded", "urn:xmpp:forward:0")
                    .and_then(|f| f.get_child("message", "jabber:client"))
                    .unwrap();
                assert_eq!(m.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
                results.push(r.attr("id").unwrap().to_owned());
            }
        };
        assert_eq!(fin.attr("type"), Some("result"), "{}", show(&fin));
        assert_eq!(results, want);
    }
    // Members-only: an outsider may not read it.
    configure(
        &mut alice,
        "cfg2",
        &field("muc#roomconfig_membersonly", "1"),
    )
    .await;
    let no = iq(
        &mut carol,
        "q2",
        &format!(
            "<iq xmlns='jabber:client' type='set' id='q2' to='{ROOM}'><query xmlns='{MAM}'/></iq>"
        ),
    )
    .await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("forbidden"),
        "{}",
        show(&no)
    );
}

#[tokio::test]
async fn visitors_ask_for_voice_and_owners_give_the_room_an_avatar() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(
        &mut alice,
        "cfg",
        &field("muc#roomconfig_moderatedroom", "1"),
    )
    .await;
    let got = enter(&mut bob, "Bob", "").await;
    let own = got.iter().rfind(|e| e.name() == "presence").unwrap();
    assert_eq!(item(own).attr("role"), Some("visitor"), "{}", show(own));
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>hi</body></message>"
    ))
    .await;
    let e = next(&mut bob, "no voice", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));

    // §8.6: the request reaches the moderator as a form; her approval gives voice.
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#role'><value>participant</value></field></x></message>"
    ))
    .await;
    let request = next(&mut alice, "the voice request", |e| {
        e.name() == "message" && e.has_child("x", "jabber:x:data")
    })
    .await;
    let fields = |m: &Element| -> Vec<(String, String)> {
        m.get_child("x", "jabber:x:data")
            .unwrap()
            .children()
            .filter_map(|f| {
                Some((
                    f.attr("var")?.to_owned(),
                    f.get_child("value", "jabber:x:data")
                        .map(|v| v.text())
                        .unwrap_or_default(),
                ))
            })
            .collect()
    };
    let got = fields(&request);
    assert!(
        got.contains(&("muc#roomnick".into(), "Bob".into())),
        "{}",
        show(&request)
    );
    assert!(
        got.contains(&("muc#jid".into(), "bob@localhost".into())),
        "{}",
        show(&request)
    );
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field>\
             <field var='muc#roomnick'><value>Bob</value></field>\
             <field var='muc#request_allow'><value>true</value></field></x></message>"
        ))
        .await;
    let voiced = next(&mut bob, "voice", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bob"))
    })
    .await;
    assert_eq!(
        item(&voiced).attr("role"),
        Some("participant"),
        "{}",
        show(&voiced)
    );

    // The room's vCard: owners set it, occupants learn the photo's hash, anyone reads it.
    let no = iq(&mut bob, "v0", &format!("<iq xmlns='jabber:client' type='set' id='v0' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>")).await;
    assert_eq!(error_condition(&no).as_deref(), Some("forbidden"));
    // BINVAL: base64 of "hi"; its SHA-1 is the XEP-0153 hash.
    let ok = iq(&mut alice, "v1", &format!("<iq xmlns='jabber:client' type='set' id='v1' to='{ROOM}'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>aGk=</BINVAL></PHOTO></vCard></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let p = next(&mut bob, "the room's presence", |e| {
        e.name() == "presence" && e.attr("from") == Some(ROOM)
    })
    .await;
    let hash = p
        .get_child("x", "vcard-temp:x:update")
        .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
        .map(|h| h.text());
    assert_eq!(
        hash.as_deref(),
        Some("c22b5f9178342609428d6f51b2c5af4c0bde6a42")
    );
    let card = iq(&mut bob, "v2", &format!("<iq xmlns='jabber:client' type='get' id='v2' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>")).await;
    assert!(show(&card).contains("aGk="), "{}", show(&card));
}

/// Everything `c` gets until its stream ends (the stream error of the shutdown).
async fn until_stream_error<C: Client>(c: &mut C) -> Vec<Element> {
    let mut got = Vec::new();
    for _ in 0..60 {
        let el = c.recv().await;
        let end = el.name() == "error" && el.ns() == "http://etherx.jabber.org/streams";
        got.push(el);
        if end {
            return got;
        }
    }
    panic!("the stream did not end")
}

#[tokio::test]
async fn a_stopping_server_tells_each_occupant_332_and_keeps_persistent_rooms() {
    let server = TestServer::start().await;
    // Alice on ws:// (deliveries written by the room's task), bob on Direct TLS (a queue his
    // session writes): both get their last presence before the stream closes.
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    bob.login("bob", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    let done = configure(
        &mut alice,
        "cfg",
        &field("muc#roomconfig_persistentroom", "1"),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    enter(&mut bob, "Bob", "").await;
    // A temporary room beside it, with bob in both.
    bob.send("<presence xmlns='jabber:client' to='attic@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    next(&mut bob, "the attic's subject", |e| {
        e.has_child("subject", "jabber:client")
            && e.attr("from").is_some_and(|f| f.starts_with("attic@"))
    })
    .await;
    drain(&mut alice).await;
    drain(&mut bob).await;

    let server = server.restart().await;
    let last = |got: &[Element], from: &str| -> Vec<String> {
        let p = got
            .iter()
            .find(|e| e.name() == "presence" && e.attr("from") == Some(from))
            .unwrap_or_else(|| {
                panic!(
                    "no presence from {from}: {:?}",
                    got.iter().map(show).collect::<Vec<_>>()
                )
            });
        assert_eq!(p.attr("type"), Some("unavailable"), "{}", show(p));
        assert_eq!(item(p).attr("role"), Some("none"), "{}", show(p));
        let mut c = codes(p);
        c.sort();
        c
    };
    let got = until_stream_error(&mut alice).await;
    assert_eq!(last(&got, &format!("{ROOM}/Alice")), ["110", "332"]);
    // Only her own: the others' 332 are theirs alone.
    assert!(
        !got.iter()
            .any(|e| e.attr("from") == Some(&format!("{ROOM}/Bob"))),
        "{:?}",
        got.iter().map(show).collect::<Vec<_>>()
    );
    let got = until_stream_error(&mut bob).await;
    assert_eq!(last(&got, &format!("{ROOM}/Bob")), ["110", "332"]);
    assert_eq!(last(&got, "attic@conference.localhost/Bob"), ["110", "332"]);

    // The persistent room is still there after the restart, empty; the temporary one is not.
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    let items = iq(&mut carol, "di", "<iq xmlns='jabber:client' type='get' id='di' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let listed: Vec<_> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| i.attr("jid").unwrap_or("").to_owned())
        .collect();
    assert_eq!(listed, [ROOM], "{}", show(&items));
    let got = enter(&mut carol, "Carol", "").await;
    let presences: Vec<_> = got.iter().filter(|e| e.name() == "presence").collect();
    assert_eq!(presences.len(), 1, "nobody else is in the room");
    server.stop().await;
}

fn from_nick(els: &[Element], nick: &str) -> Vec<Element> {
    els.iter()
        .filter(|e| e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/{nick}")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn presence_is_broadcast_for_the_configured_roles_and_the_member_list_for_some() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    let form = iq(&mut alice, "form", &format!("<iq xmlns='jabber:client' type='get' id='form' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")).await;
    let shown: Vec<String> = form
        .get_child("query", OWNER)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some("muc#roomconfig_presencebroadcast"))
        })
        .map(|f| {
            f.children()
                .filter(|v| v.name() == "value")
                .map(|v| v.text())
                .collect()
        })
        .unwrap_or_else(|| panic!("no presencebroadcast field: {}", show(&form)));
    assert_eq!(shown, ["moderator", "participant", "visitor"]);
    let done = configure(
        &mut alice,
        "cfg",
        &field("muc#roomconfig_presencebroadcast", "moderator"),
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    drain(&mut alice).await;

    // Bob and carol, participants: each sees alice (a moderator) and itself only; nobody
    // hears of them.
    let got = enter(&mut bob, "Bob", "").await;
    assert_eq!(from_nick(&got, "Alice").len(), 1);
    assert_eq!(from_nick(&got, "Bob").len(), 1, "bob's own");
    let got = enter(&mut carol, "Carol", "").await;
    assert_eq!(from_nick(&got, "Alice").len(), 1);
    assert!(
        from_nick(&got, "Bob").is_empty(),
        "bob is not shown to carol"
    );
    assert!(from_nick(&drain(&mut alice).await, "Bob").is_empty());
    assert!(from_nick(&drain(&mut alice).await, "Carol").is_empty());
    assert!(from_nick(&drain(&mut bob).await, "Carol").is_empty());
    // Not in the room's disco#items either, but for oneself.
    let items = iq(&mut carol, "di", &format!("<iq xmlns='jabber:client' type='get' id='di' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")).await;
    let listed: Vec<_> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(listed, [format!("{ROOM}/Alice"), format!("{ROOM}/Carol")]);

    // Bob made a moderator: now everyone sees him; back to participant, he leaves their view.
    let ok = iq(&mut alice, "m", &format!("<iq xmlns='jabber:client' type='set' id='m' to='{ROOM}'><query xmlns='{ADMIN}'><item nick='Bob' role='moderator'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let seen = next(&mut carol, "bob shown", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bob"))
    })
    .await;
    assert_eq!(seen.attr("type"), None, "{}", show(&seen));
    assert_eq!(item(&seen).attr("role"), Some("moderator"));
    let ok = iq(&mut alice, "p", &format!("<iq xmlns='jabber:client' type='set' id='p' to='{ROOM}'><query xmlns='{ADMIN}'><item nick='Bob' role='participant'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let gone = next(&mut carol, "bob hidden", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bob"))
    })
    .await;
    assert_eq!(gone.attr("type"), Some("unavailable"), "{}", show(&gone));
    let own = next(&mut bob, "bob's new role", |e| {
        e.name() == "presence"
            && e.attr("from") == Some(&format!("{ROOM}/Bob"))
            && item(e).attr("role") != Some("moderator")
    })
    .await;
    assert_eq!(own.attr("type"), None, "{}", show(&own));
    assert_eq!(item(&own).attr("role"), Some("participant"));
    drain(&mut alice).await;
    // His status change and his leaving reach himself only.
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/Bob'><show>away</show></presence>"
    ))
    .await;
    next(&mut bob, "own away", |e| {
        e.name() == "presence" && e.has_child("show", "jabber:client")
    })
    .await;
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/Bob' type='unavailable'/>"
    ))
    .await;
    next(&mut bob, "own unavailable", |e| {
        e.name() == "presence" && e.attr("type") == Some("unavailable")
    })
    .await;
    drain(&mut bob).await;
    assert!(from_nick(&drain(&mut carol).await, "Bob").is_empty());
    assert!(from_nick(&drain(&mut alice).await, "Bob").is_empty());

    // The member list: carol, a participant without affiliation, may not get it by default;
    // once participants may (muc#roomconfig_getmemberlist), she does.
    let ok = iq(&mut alice, "mb", &format!("<iq xmlns='jabber:client' type='set' id='mb' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let members = format!("<iq xmlns='jabber:client' type='get' id='ml' to='{ROOM}'><query xmlns='{ADMIN}'><item affiliation='member'/></query></iq>");
    let no = iq(&mut carol, "ml", &members).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("forbidden"),
        "{}",
        show(&no)
    );
    let done = configure(
        &mut alice,
        "cfg2",
        "<field var='muc#roomconfig_getmemberlist'><value>moderator</value><value>participant</value></field>",
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    let list = iq(&mut carol, "ml", &members).await;
    let jids: Vec<_> = list
        .get_child("query", ADMIN)
        .unwrap_or_else(|| panic!("{}", show(&list)))
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(jids, ["bob@localhost"]);
    // Other lists stay with admins.
    let no = iq(&mut carol, "ol", &format!("<iq xmlns='jabber:client' type='get' id='ol' to='{ROOM}'><query xmlns='{ADMIN}'><item affiliation='owner'/></query></iq>")).await;
    assert_eq!(error_condition(&no).as_deref(), Some("forbidden"));

    // Participants shown from now on: alice gets carol's presence without carol doing a thing.
    drain(&mut alice).await;
    let done = configure(
        &mut alice,
        "cfg3",
        "<field var='muc#roomconfig_presencebroadcast'><value>moderator</value><value>participant</value></field>",
    )
    .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", show(&done));
    let seen = next(&mut alice, "carol shown", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Carol"))
    })
    .await;
    assert_eq!(seen.attr("type"), None, "{}", show(&seen));
}

const REGISTER: &str = "jabber:iq:register";

fn register_form(id: &str, nick: &str) -> String {
    format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='{ROOM}'><query xmlns='{REGISTER}'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
         <field var='muc#register_roomnick'><value>{nick}</value></field></x></query></iq>"
    )
}

/// The reserved nick the room tells `c` (XEP-0045 §7.12), if any.
async fn reserved_nick<C: Client>(c: &mut C) -> Option<String> {
    let info = iq(c, "rn", &format!("<iq xmlns='jabber:client' type='get' id='rn' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>")).await;
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap_or_else(|| panic!("{}", show(&info)));
    assert_eq!(q.attr("node"), Some("x-roomuser-item"));
    q.children().find(|i| i.name() == "identity").map(|i| {
        assert_eq!(i.attr("category"), Some("conference"));
        i.attr("name").unwrap_or("").to_owned()
    })
}

#[tokio::test]
async fn registering_with_a_room_reserves_a_nick_and_makes_a_member() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(
        &mut alice,
        "cfg",
        &field("muc#roomconfig_persistentroom", "1"),
    )
    .await;
    let info = iq(&mut bob, "dinfo", &format!("<iq xmlns='jabber:client' type='get' id='dinfo' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    assert!(
        info.get_child("query", "http://jabber.org/protocol/disco#info")
            .unwrap()
            .children()
            .any(|f| f.name() == "feature" && f.attr("var") == Some(REGISTER)),
        "{}",
        show(&info)
    );

    // The form, with muc#register_roomnick; bob registers from outside the room.
    let form = iq(&mut bob, "rg", &format!("<iq xmlns='jabber:client' type='get' id='rg' to='{ROOM}'><query xmlns='{REGISTER}'/></iq>")).await;
    let x = form
        .get_child("query", REGISTER)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("no form: {}", show(&form)));
    assert!(x
        .children()
        .any(|f| f.attr("var") == Some("muc#register_roomnick")));
    assert_eq!(reserved_nick(&mut bob).await, None);
    let ok = iq(&mut bob, "r1", &register_form("r1", "Bobby")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    assert_eq!(reserved_nick(&mut bob).await.as_deref(), Some("Bobby"));
    assert_eq!(reserved_nick(&mut carol).await, None, "carol has none");
    let again = iq(&mut bob, "rg2", &format!("<iq xmlns='jabber:client' type='get' id='rg2' to='{ROOM}'><query xmlns='{REGISTER}'/></iq>")).await;
    let q = again.get_child("query", REGISTER).unwrap();
    assert!(q.has_child("registered", REGISTER), "{}", show(&again));
    assert_eq!(
        q.get_child("username", REGISTER)
            .map(|u| u.text())
            .as_deref(),
        Some("Bobby")
    );
    // He is a member now, listed with his nick.
    let list = iq(&mut alice, "ml", &format!("<iq xmlns='jabber:client' type='get' id='ml' to='{ROOM}'><query xmlns='{ADMIN}'><item affiliation='member'/></query></iq>")).await;
    let members: Vec<_> = list
        .get_child("query", ADMIN)
        .unwrap()
        .children()
        .map(|i| (i.attr("jid").unwrap_or(""), i.attr("nick").unwrap_or("")))
        .collect();
    assert_eq!(members, [("bob@localhost", "Bobby")]);

    // Nobody else takes it: not on entering, not by registering, not by a nick change.
    let refused = enter(&mut carol, "Bobby", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("conflict"),
        "{}",
        show(refused.last().unwrap())
    );
    let no = iq(&mut carol, "r2", &register_form("r2", "Bobby")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("conflict"),
        "{}",
        show(&no)
    );
    enter(&mut carol, "Carol", "").await;
    carol
        .send(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/Bobby'/>"
        ))
        .await;
    let e = next(&mut carol, "the nick change refused", |e| {
        e.name() == "presence" && e.attr("type") == Some("error")
    })
    .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("conflict"),
        "{}",
        show(&e)
    );
    // Nor a nick someone in the room uses.
    let no = iq(&mut bob, "r3", &register_form("r3", "Carol")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("conflict"),
        "{}",
        show(&no)
    );
    drop(carol);

    // Kept with the room across a restart; bob enters with it as a member.
    drop(alice);
    drop(bob);
    let server = server.restart().await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    assert_eq!(reserved_nick(&mut bob).await.as_deref(), Some("Bobby"));
    let refused = enter(&mut carol, "Bobby", "").await;
    assert_eq!(
        error_condition(refused.last().unwrap()).as_deref(),
        Some("conflict")
    );
    let got = enter(&mut bob, "Bobby", "").await;
    let own = got.iter().rfind(|e| e.name() == "presence").unwrap();
    assert_eq!(
        item(own).attr("affiliation"),
        Some("member"),
        "{}",
        show(own)
    );

    // Unregistering: the reservation and the membership go (his presence says so).
    let ok = iq(&mut bob, "r4", &format!("<iq xmlns='jabber:client' type='set' id='r4' to='{ROOM}'><query xmlns='{REGISTER}'><remove/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let p = next(&mut bob, "the new affiliation", |e| {
        e.name() == "presence" && e.attr("from") == Some(&format!("{ROOM}/Bobby"))
    })
    .await;
    assert_eq!(item(&p).attr("affiliation"), Some("none"), "{}", show(&p));
    assert_eq!(reserved_nick(&mut bob).await, None);
    bob.send(&format!(
        "<presence xmlns='jabber:client' to='{ROOM}/Bobby' type='unavailable'/>"
    ))
    .await;
    drain(&mut bob).await;
    let got = enter(&mut carol, "Bobby", "").await;
    assert!(
        got.last().unwrap().has_child("subject", "jabber:client"),
        "{}",
        show(got.last().unwrap())
    );
    server.stop().await;
}

#[tokio::test]
async fn admins_reserve_nicks_on_the_member_list_and_members_only_rooms_keep_registration_to_members(
) {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(&mut alice, "cfg", &field("muc#roomconfig_membersonly", "1")).await;
    // §9.5: a member with a nick.
    let ok = iq(&mut alice, "m1", &format!("<iq xmlns='jabber:client' type='set' id='m1' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member' nick='Robert'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    assert_eq!(reserved_nick(&mut bob).await.as_deref(), Some("Robert"));
    // Carol, no member, may not register here.
    let no = iq(&mut carol, "r1", &register_form("r1", "Cee")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("not-allowed"),
        "{}",
        show(&no)
    );
    // Bob, a member, may change his reservation.
    let ok = iq(&mut bob, "r2", &register_form("r2", "Bob")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    assert_eq!(reserved_nick(&mut bob).await.as_deref(), Some("Bob"));
    // The reservation goes with the membership; an empty nick drops it alone.
    let ok = iq(&mut alice, "m2", &format!("<iq xmlns='jabber:client' type='set' id='m2' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='member' nick=''/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    assert_eq!(reserved_nick(&mut bob).await, None);
    iq(&mut bob, "r3", &register_form("r3", "Bob")).await;
    let ok = iq(&mut alice, "m3", &format!("<iq xmlns='jabber:client' type='set' id='m3' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='outcast'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", show(&ok));
    let no = iq(&mut bob, "r4", &register_form("r4", "Bob")).await;
    assert_eq!(
        error_condition(&no).as_deref(),
        Some("not-allowed"),
        "{}",
        show(&no)
    );
    let ok = iq(&mut alice, "m4", &format!("<iq xmlns='jabber:client' type='set' id='m4' to='{ROOM}'><query xmlns='{ADMIN}'><item jid='bob@localhost' affiliation='none'/></query></iq>")).await;
    assert_eq!(ok.attr("type"), Some("result"));
    assert_eq!(
        reserved_nick(&mut bob).await,
        None,
        "a ban drops the reservation"
    );
}

/// A server whose `[modules.muc]` is `settings`.
async fn start_muc(settings: &str) -> TestServer {
    let table: toml::Table = toml::from_str(settings).expect("settings");
    TestServer::start_with(move |c| {
        c.modules.insert("muc".into(), toml::Value::Table(table));
    })
    .await
}

#[tokio::test]
async fn a_user_in_too_many_rooms_may_not_enter_one_more() {
    let server = start_muc("max_rooms_per_user = 2\nadmins = ['carol@localhost']").await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    let mut bob2 = server.tcp_direct_tls().await;
    bob2.login("bob", Login::ScramSha256).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    let entering = |room: &str, nick: &str| {
        format!(
            "<presence xmlns='jabber:client' to='{room}@conference.localhost/{nick}'><x xmlns='{MUC}'/></presence>"
        )
    };
    async fn answer<C: Client>(c: &mut C, room: &str) -> Element {
        next(c, "the end of entering", |e| {
            e.attr("from")
                .is_some_and(|f| f.starts_with(&format!("{room}@")))
                && (e.attr("type") == Some("error") || e.has_child("subject", "jabber:client"))
        })
        .await
    }
    for room in ["one", "two"] {
        bob.send(&entering(room, "Bob")).await;
        let got = answer(&mut bob, room).await;
        assert!(got.has_child("subject", "jabber:client"), "{}", show(&got));
    }
    // A second session in a room he is in already, under another nick too, is no new room.
    bob2.send(&entering("two", "Bob")).await;
    answer(&mut bob2, "two").await;
    bob2.send(&entering("one", "Robert")).await;
    let got = answer(&mut bob2, "one").await;
    assert!(got.has_child("subject", "jabber:client"), "{}", show(&got));
    // A third room is one too many, from either session.
    bob2.send(&entering("three", "Bob")).await;
    let refused = answer(&mut bob2, "three").await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&refused)
    );
    assert!(
        show(&refused).contains("too many rooms"),
        "{}",
        show(&refused)
    );
    // Leaving one (every nick and session of his in it) makes room for another.
    bob.send(
        "<presence xmlns='jabber:client' to='one@conference.localhost/Bob' type='unavailable'/>",
    )
    .await;
    bob2.send(
        "<presence xmlns='jabber:client' to='one@conference.localhost/Robert' type='unavailable'/>",
    )
    .await;
    drain(&mut bob).await;
    drain(&mut bob2).await;
    bob.send(&entering("three", "Bob")).await;
    let got = answer(&mut bob, "three").await;
    assert!(got.has_child("subject", "jabber:client"), "{}", show(&got));
    // His second session ending leaves him in the rooms his first one is in.
    drop(bob2);
    bob.send(&entering("four", "Bob")).await;
    let refused = answer(&mut bob, "four").await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("resource-constraint")
    );
    // The service's admins are not counted.
    for room in ["one", "two", "three"] {
        carol.send(&entering(room, "Carol")).await;
        let got = answer(&mut carol, room).await;
        assert!(got.has_child("subject", "jabber:client"), "{}", show(&got));
    }
}

#[tokio::test]
async fn an_occupant_sending_too_fast_is_held_back() {
    let server = start_muc("occupant_message_rate = 1.0\noccupant_message_burst = 3").await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(&mut alice, "cfg", "").await;
    enter(&mut bob, "Bob", "").await;
    // Five at once: the burst of three goes to everyone, the other two come back refused.
    for i in 1..=5 {
        alice
            .send(&format!(
                "<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m{i}'><body>spell {i}</body></message>"
            ))
            .await;
    }
    let got = drain(&mut alice).await;
    let errors: Vec<&Element> = got
        .iter()
        .filter(|e| e.name() == "message" && e.attr("type") == Some("error"))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "{:?}",
        got.iter().map(show).collect::<Vec<_>>()
    );
    for e in &errors {
        assert_eq!(error_condition(e).as_deref(), Some("resource-constraint"));
        assert_eq!(
            e.get_child("error", "jabber:client")
                .and_then(|e| e.attr("type")),
            Some("wait"),
            "{}",
            show(e)
        );
    }
    assert_eq!(errors[0].attr("id"), Some("m4"));
    let bodies: Vec<String> = drain(&mut bob)
        .await
        .iter()
        .filter(|e| e.name() == "message")
        .map(body)
        .collect();
    assert_eq!(bodies, ["spell 1", "spell 2", "spell 3"]);
    // A second later there is a token again; bob's own budget was never touched.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>spell 6</body></message>"
        ))
        .await;
    next(&mut bob, "spell 6", |e| body(e) == "spell 6").await;
    bob.send(&format!(
        "<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>mine</body></message>"
    ))
    .await;
    next(&mut alice, "bob's", |e| body(e) == "mine").await;
}

#[test]
fn bad_muc_limits_are_rejected_with_their_key_path() {
    let config = weft_config::Config::parse(
        "[modules.muc]\noccupant_message_rate = -1.0\nmax_rooms_per_usr = 3\n",
    )
    .expect("the TOML itself is fine");
    let text: Vec<String> = match weft_server::modules::load(&config) {
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
        Ok(_) => panic!("bad muc settings accepted"),
    };
    assert!(
        text.iter()
            .any(|t| t.starts_with("modules.muc.max_rooms_per_usr:")),
        "{text:?}"
    );
    let config =
        weft_config::Config::parse("[modules.muc]\noccupant_message_rate = -1.0\n").unwrap();
    let text: Vec<String> = match weft_server::modules::load(&config) {
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
        Ok(_) => panic!("a negative rate accepted"),
    };
    assert!(
        text.iter()
            .any(|t| t.starts_with("modules.muc.occupant_message_rate:")),
        "{text:?}"
    );
    let config = weft_config::Config::parse(
        "[modules.muc]\noccupant_message_rate = 5\noccupant_message_burst = 0\n",
    )
    .unwrap();
    let text: Vec<String> = match weft_server::modules::load(&config) {
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
        Ok(_) => panic!("a zero burst accepted"),
    };
    assert!(
        text.iter()
            .any(|t| t.starts_with("modules.muc.occupant_message_burst:")),
        "{text:?}"
    );
    // No limits at all is a choice.
    let config = weft_config::Config::parse(
        "[modules.muc]\noccupant_message_rate = 0\noccupant_message_burst = 0\nmax_rooms_per_user = 0\n",
    )
    .unwrap();
    assert!(weft_server::modules::load(&config).is_ok());
}

#[test]
fn the_example_configuration_documents_the_muc_module() {
    let text = include_str!("../../../weft.example.toml");
    let config = weft_config::Config::parse(text).expect("the example parses");
    let section = config
        .modules
        .get("muc")
        .expect("[modules.muc] in the example");
    for key in [
        "subdomain",
        "max_occupants",
        "max_rooms_per_user",
        "occupant_message_rate",
        "occupant_message_burst",
    ] {
        assert!(section.get(key).is_some(), "{key} not documented");
    }
    let modules = weft_server::modules::load(&config).expect("the example's modules load");
    assert!(modules.names().contains(&"muc"));
}

/// A room's message reaches a session on a plain connection as bytes serialised once for every
/// such session, and a TLS session (or one that a module watches) as an element through the
/// router: both get the same message, addressed to themselves, carrying the room's
/// `<stanza-id/>` alone (ids an occupant put in, even one naming a recipient's account, are
/// dropped: XEP-0359 §4).
#[tokio::test]
async fn every_occupant_gets_the_same_copy_whatever_its_connection() {
    const SID: &str = "urn:xmpp:sid:0";
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    let bob_jid = bob.login("bob", Login::ScramSha256).await;
    let mut carol = server.tcp_direct_tls().await;
    let carol_jid = carol.login("carol", Login::ScramSha256).await;
    enter(&mut alice, "Alice", "").await;
    configure(&mut alice, "cfg", "").await;
    enter(&mut bob, "Bob", "").await;
    enter(&mut carol, "Carol", "").await;
    alice
        .send(&format!(
            "<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'>\
             <body>toil &amp; &lt;trouble&gt; 'n' \"bubble\"</body>\
             <stanza-id xmlns='{SID}' by='bob@localhost' id='forged-bob'/>\
             <stanza-id xmlns='{SID}' by='{ROOM}' id='forged-room'/></message>"
        ))
        .await;
    let text = "toil & <trouble> 'n' \"bubble\"";
    let bob_copy = next(&mut bob, "the room's message", |e| body(e) == text).await;
    let carol_copy = next(&mut carol, "the room's message", |e| body(e) == text).await;
    let mut copies = Vec::new();
    for (mut copy, jid) in [(bob_copy, &bob_jid), (carol_copy, &carol_jid)] {
        assert_eq!(copy.attr("to"), Some(jid.as_str()), "{}", show(&copy));
        assert_eq!(copy.attr("from"), Some(format!("{ROOM}/Alice").as_str()));
        assert_eq!(copy.attr("id"), Some("m1"));
        let sids: Vec<_> = copy.children().filter(|c| c.is("stanza-id", SID)).collect();
        assert_eq!(sids.len(), 1, "{}", show(&copy));
        assert_eq!(sids[0].attr("by"), Some(ROOM));
        assert!(!sids[0].attr("id").unwrap_or("").starts_with("forged"));
        copy.attrs_mut().remove(&rxml::Namespace::NONE, "to");
        copies.push(copy);
    }
    assert_eq!(
        copies[0],
        copies[1],
        "{} vs {}",
        show(&copies[0]),
        show(&copies[1])
    );
}
