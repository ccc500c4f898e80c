//! XEP-0163 PEP on the wire: publishing (with auto-create and publish-options), +notify
//! filtered through XEP-0115 caps, access models (presence, open, whitelist), last items on
//! presence (also once a client's caps become known), retract and delete notifications,
//! node configuration and the service's disco.

use minidom::Element;
use weft_testkit::clients::{befriend, drain, error_condition, iq, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};
use xmpp_parsers::caps::{compute_disco, hash_caps};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;

const CAPS: &str = "http://jabber.org/protocol/caps";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const AVATAR: &str = "urn:xmpp:avatar:metadata";
const DEVICES: &str = "urn:xmpp:omemo:2:devices";
const SECRET: &str = "urn:example:secret";

const FEATURES: &[&str] = &[
    INFO,
    "urn:xmpp:avatar:metadata+notify",
    "urn:xmpp:omemo:2:devices+notify",
    "urn:example:secret+notify",
];

fn info(features: &[&str]) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "pc", "en", "pep-test")],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: vec![],
    }
}

fn ver(features: &[&str]) -> String {
    hash_caps(&compute_disco(&info(features)), Algo::Sha_1)
        .unwrap()
        .to_base64()
}

fn presence(features: &[&str]) -> String {
    format!(
        "<presence xmlns='jabber:client'><c xmlns='{CAPS}' hash='sha-1' node='https://example.org/pep' ver='{}'/></presence>",
        ver(features)
    )
}

/// When `el` is the server's disco#info query for our caps, answers it with `features`.
async fn answer_caps_query<C: Client>(c: &mut C, el: &Element, features: &[&str]) -> bool {
    if el.name() != "iq" || el.attr("type") != Some("get") || !el.has_child("query", INFO) {
        return false;
    }
    let mut result = info(features);
    result.node = el
        .get_child("query", INFO)
        .unwrap()
        .attr("node")
        .map(String::from);
    c.send(&format!(
        "<iq xmlns='jabber:client' type='result' id='{}' to='{}'>{}</iq>",
        el.attr("id").unwrap(),
        el.attr("from").unwrap(),
        String::from(&Element::from(result))
    ))
    .await;
    true
}

/// Sends an available presence with caps for `features` and answers the server's disco#info
/// query if one comes; returns every other stanza that arrived meanwhile.
async fn announce<C: Client>(c: &mut C, features: &[&str]) -> Vec<Element> {
    c.send(&presence(features)).await;
    let mut others = Vec::new();
    for el in drain(c).await {
        if !answer_caps_query(c, &el, features).await {
            others.push(el);
        }
    }
    others.extend(drain(c).await);
    others
}

fn publish(id: &str, node: &str, item: &str, payload: &str, options: &[(&str, &str)]) -> String {
    let options = if options.is_empty() {
        String::new()
    } else {
        let fields: String = options
            .iter()
            .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
            .collect();
        format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>{fields}</x></publish-options>")
    };
    format!("<iq xmlns='jabber:client' type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item}'>{payload}</item></publish>{options}</pubsub></iq>")
}

fn get_items(id: &str, to: &str, node: &str) -> String {
    format!("<iq xmlns='jabber:client' type='get' id='{id}' to='{to}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>")
}

/// The PEP events among `got`: (from, node, the event's first child's name, item or
/// retracted ids).
fn events(got: &[Element]) -> Vec<(String, String, String, Vec<String>)> {
    got.iter()
        .filter(|e| e.name() == "message" && e.attr("type") == Some("headline"))
        .filter_map(|m| {
            let event = m.get_child("event", EVENT)?;
            let child = event.children().next()?;
            let ids = child
                .children()
                .filter_map(|i| i.attr("id").map(String::from))
                .collect();
            Some((
                m.attr("from")?.to_string(),
                child.attr("node")?.to_string(),
                child.name().to_string(),
                ids,
            ))
        })
        .collect()
}

/// Sends an IQ and returns its answer with everything that arrived before it.
async fn iq_and<C: Client>(c: &mut C, id: &str, xml: &str) -> (Element, Vec<Element>) {
    c.send(xml).await;
    let mut before = Vec::new();
    loop {
        let el = c.recv().await;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            before.extend(drain(c).await);
            return (el, before);
        }
        before.push(el);
    }
}

fn ok(r: &Element) {
    assert_eq!(r.attr("type"), Some("result"), "{}", show(r));
}

fn app_error(r: &Element) -> Option<String> {
    r.get_child("error", "jabber:client")?
        .children()
        .find(|c| c.ns() == ERRORS)
        .map(|c| c.name().to_string())
}

#[tokio::test]
async fn publish_notify_access_and_last_items() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.tcp_direct_tls().await;
    let bob_jid = login(&mut bob, "bob", PASSWORD, Login::ScramSha1, Some("desk")).await;
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;
    drain(&mut bob).await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    announce(&mut alice, FEATURES).await;
    announce(&mut bob, FEATURES).await;
    announce(&mut carol, FEATURES).await;

    // The account's disco#info shows a PEP service with publish-options.
    let r = iq(&mut bob, "d1", &format!("<iq xmlns='jabber:client' type='get' id='d1' to='alice@localhost'><query xmlns='{INFO}'/></iq>")).await;
    let q = r.get_child("query", INFO).unwrap();
    assert!(q.children().any(|c| c.name() == "identity"
        && c.attr("category") == Some("pubsub")
        && c.attr("type") == Some("pep")));
    assert!(q
        .children()
        .any(|c| c.attr("var") == Some("http://jabber.org/protocol/pubsub#publish-options")));

    // Only the owner publishes.
    let r = iq(
        &mut bob,
        "p0",
        &publish(
            "p0",
            AVATAR,
            "x",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            &[],
        )
        .replace("id='p0'>", "id='p0' to='alice@localhost'>"),
    )
    .await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("forbidden"),
        "{}",
        show(&r)
    );

    // Auto-create on publish: Alice's own resource and Bob (a 'both' contact with +notify)
    // hear of it; Carol, no contact, does not.
    let meta = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='h1' bytes='10' type='image/png'/></metadata>";
    let (r, own) = iq_and(&mut alice, "p1", &publish("p1", AVATAR, "h1", meta, &[])).await;
    ok(&r);
    let published = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("publish", PUBSUB)
        .unwrap();
    assert_eq!(
        published.get_child("item", PUBSUB).unwrap().attr("id"),
        Some("h1")
    );
    let expected = vec![(
        "alice@localhost".to_string(),
        AVATAR.to_string(),
        "items".to_string(),
        vec!["h1".to_string()],
    )];
    assert_eq!(events(&own), expected);
    let got = drain(&mut bob).await;
    assert_eq!(events(&got), expected);
    let event = got.iter().find(|e| e.name() == "message").unwrap();
    assert_eq!(event.attr("to"), Some(bob_jid.as_str()));
    assert!(
        event
            .get_child("event", EVENT)
            .unwrap()
            .get_child("items", EVENT)
            .unwrap()
            .get_child("item", EVENT)
            .unwrap()
            .has_child("metadata", AVATAR),
        "{}",
        show(event)
    );
    assert!(events(&drain(&mut carol).await).is_empty());

    // Presence access: Bob reads the item, Carol may not.
    let r = iq(&mut bob, "i1", &get_items("i1", "alice@localhost", AVATAR)).await;
    ok(&r);
    let items = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap();
    assert_eq!(
        items
            .children()
            .filter_map(|i| i.attr("id"))
            .collect::<Vec<_>>(),
        ["h1"]
    );
    let r = iq(
        &mut carol,
        "i2",
        &get_items("i2", "alice@localhost", AVATAR),
    )
    .await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-authorized"),
        "{}",
        show(&r)
    );
    assert_eq!(
        app_error(&r).as_deref(),
        Some("presence-subscription-required")
    );

    // Open access through publish-options (OMEMO): Carol reads it; contradicting options on
    // the existing node fail their precondition and change nothing.
    let devices = "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices>";
    ok(&iq(
        &mut alice,
        "p2",
        &publish(
            "p2",
            DEVICES,
            "current",
            devices,
            &[("pubsub#access_model", "open"), ("pubsub#max_items", "max")],
        ),
    )
    .await);
    let r = iq(
        &mut carol,
        "i3",
        &get_items("i3", "alice@localhost", DEVICES),
    )
    .await;
    ok(&r);
    let r = iq(
        &mut alice,
        "p3",
        &publish(
            "p3",
            DEVICES,
            "current",
            devices,
            &[("pubsub#access_model", "presence")],
        ),
    )
    .await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("conflict"),
        "{}",
        show(&r)
    );
    assert_eq!(app_error(&r).as_deref(), Some("precondition-not-met"));
    ok(&iq(
        &mut carol,
        "i4",
        &get_items("i4", "alice@localhost", DEVICES),
    )
    .await);

    // XEP-0223 private data: whitelist, only the owner hears of it and reads it.
    drain(&mut bob).await;
    let (r, own) = iq_and(
        &mut alice,
        "p4",
        &publish(
            "p4",
            SECRET,
            "s",
            "<secret xmlns='urn:example:secret'>42</secret>",
            &[
                ("pubsub#access_model", "whitelist"),
                ("pubsub#persist_items", "true"),
            ],
        ),
    )
    .await;
    ok(&r);
    assert_eq!(events(&own).len(), 1);
    assert!(events(&drain(&mut bob).await).iter().all(|e| e.1 != SECRET));
    let r = iq(&mut bob, "i5", &get_items("i5", "alice@localhost", SECRET)).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-allowed"),
        "{}",
        show(&r)
    );
    assert_eq!(app_error(&r).as_deref(), Some("closed-node"));

    // The service's items: Bob sees the nodes he may read, not the private one.
    let r = iq(&mut bob, "d2", &format!("<iq xmlns='jabber:client' type='get' id='d2' to='alice@localhost'><query xmlns='{ITEMS}'/></iq>")).await;
    let mut nodes: Vec<_> = r
        .get_child("query", ITEMS)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("node"))
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, [AVATAR, DEVICES]);

    // A new resource of Bob's gets the last item of each node it wants and may see, once.
    let mut bob2 = server.ws().await;
    login(
        &mut bob2,
        "bob",
        PASSWORD,
        Login::ScramSha256,
        Some("phone"),
    )
    .await;
    let got = announce(&mut bob2, FEATURES).await;
    let mut last: Vec<_> = events(&got)
        .into_iter()
        .filter(|e| e.0 == "alice@localhost")
        .map(|e| e.1)
        .collect();
    last.sort_unstable();
    assert_eq!(last, [AVATAR, DEVICES], "{got:#?}");
    let again = announce(&mut bob2, FEATURES).await;
    assert!(
        events(&again).is_empty(),
        "a presence change does not send them again"
    );

    // A resource whose caps are unknown gets them once its answer verified them.
    let mut bob3 = server.ws().await;
    login(
        &mut bob3,
        "bob",
        PASSWORD,
        Login::ScramSha256,
        Some("tablet"),
    )
    .await;
    let only_avatar = [INFO, "urn:xmpp:avatar:metadata+notify", "urn:example:other"];
    let got = announce(&mut bob3, &only_avatar).await;
    let last: Vec<_> = events(&got)
        .into_iter()
        .filter(|e| e.0 == "alice@localhost")
        .map(|e| e.1)
        .collect();
    assert_eq!(last, [AVATAR], "{got:#?}");

    // Retract with notify, then delete: both told to Bob.
    drain(&mut bob).await;
    ok(&iq(&mut alice, "r1", &format!("<iq xmlns='jabber:client' type='set' id='r1'><pubsub xmlns='{PUBSUB}'><retract node='{AVATAR}' notify='true'><item id='h1'/></retract></pubsub></iq>")).await);
    let got = events(&drain(&mut bob).await);
    assert_eq!(
        got,
        vec![(
            "alice@localhost".into(),
            AVATAR.into(),
            "items".into(),
            vec!["h1".into()]
        )]
    );
    let r = iq(&mut alice, "r2", &format!("<iq xmlns='jabber:client' type='set' id='r2'><pubsub xmlns='{PUBSUB}'><retract node='{AVATAR}'><item id='h1'/></retract></pubsub></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    ok(&iq(&mut alice, "x1", &format!("<iq xmlns='jabber:client' type='set' id='x1'><pubsub xmlns='{OWNER}'><delete node='{DEVICES}'/></pubsub></iq>")).await);
    let got = drain(&mut bob).await;
    assert!(
        got.iter().any(|m| m
            .get_child("event", EVENT)
            .and_then(|e| e.get_child("delete", EVENT))
            .and_then(|d| d.attr("node"))
            == Some(DEVICES)),
        "{got:#?}"
    );
    let r = iq(
        &mut carol,
        "i6",
        &get_items("i6", "alice@localhost", DEVICES),
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let _ = alice_jid;
    server.stop().await;
}

#[tokio::test]
async fn node_configuration_and_max_items() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    const NODE: &str = "urn:xmpp:bookmarks:1";
    for n in 1..=3 {
        let payload = format!("<conference xmlns='urn:xmpp:bookmarks:1' name='room {n}'/>");
        ok(&iq(
            &mut alice,
            "p",
            &publish(
                "p",
                NODE,
                &format!("room{n}@muc.example"),
                &payload,
                &[
                    ("pubsub#max_items", "max"),
                    ("pubsub#access_model", "whitelist"),
                ],
            ),
        )
        .await);
    }
    let r = iq(&mut alice, "i", &get_items("i", "alice@localhost", NODE)).await;
    let ids: Vec<_> = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 3, "{}", show(&r));
    // max_items on the request: the newest.
    let r = iq(&mut alice, "i", &format!("<iq xmlns='jabber:client' type='get' id='i'><pubsub xmlns='{PUBSUB}'><items node='{NODE}' max_items='1'/></pubsub></iq>")).await;
    let ids: Vec<_> = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .collect();
    assert_eq!(ids, ["room3@muc.example"]);

    // The configuration form shows what publish-options set; a new max_items trims.
    let r = iq(&mut alice, "c", &format!("<iq xmlns='jabber:client' type='get' id='c'><pubsub xmlns='{OWNER}'><configure node='{NODE}'/></pubsub></iq>")).await;
    let form = r
        .get_child("pubsub", OWNER)
        .unwrap()
        .get_child("configure", OWNER)
        .unwrap()
        .get_child("x", "jabber:x:data")
        .unwrap();
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", "jabber:x:data"))
            .map(|v| v.text())
    };
    assert_eq!(value("pubsub#access_model").as_deref(), Some("whitelist"));
    assert_eq!(value("pubsub#max_items").as_deref(), Some("max"));
    ok(&iq(&mut alice, "c2", &format!("<iq xmlns='jabber:client' type='set' id='c2'><pubsub xmlns='{OWNER}'><configure node='{NODE}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items'><value>2</value></field></x></configure></pubsub></iq>")).await);
    let r = iq(&mut alice, "i", &get_items("i", "alice@localhost", NODE)).await;
    let ids: Vec<_> = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("id"))
        .collect();
    assert_eq!(ids, ["room3@muc.example", "room2@muc.example"]);
    // An unknown access model is refused.
    let r = iq(&mut alice, "c3", &format!("<iq xmlns='jabber:client' type='set' id='c3'><pubsub xmlns='{OWNER}'><configure node='{NODE}'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>authorize</value></field></x></configure></pubsub></iq>")).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("not-acceptable"),
        "{}",
        show(&r)
    );
    // The default configuration.
    let r = iq(&mut alice, "df", &format!("<iq xmlns='jabber:client' type='get' id='df'><pubsub xmlns='{OWNER}'><default/></pubsub></iq>")).await;
    ok(&r);
    // A refused first publish leaves no node behind.
    let r = iq(
        &mut alice,
        "e",
        &format!("<iq xmlns='jabber:client' type='set' id='e'><pubsub xmlns='{PUBSUB}'><publish node='empty'><item id='x'/></publish></pubsub></iq>"),
    )
    .await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("bad-request"),
        "{}",
        show(&r)
    );
    assert_eq!(app_error(&r).as_deref(), Some("payload-required"));
    let r = iq(
        &mut alice,
        "e2",
        &get_items("e2", "alice@localhost", "empty"),
    )
    .await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("item-not-found"),
        "{}",
        show(&r)
    );
    // Create: a second create of one node conflicts; purge empties it.
    ok(&iq(&mut alice, "n1", &format!("<iq xmlns='jabber:client' type='set' id='n1'><pubsub xmlns='{PUBSUB}'><create node='fresh'/></pubsub></iq>")).await);
    let r = iq(&mut alice, "n2", &format!("<iq xmlns='jabber:client' type='set' id='n2'><pubsub xmlns='{PUBSUB}'><create node='fresh'/></pubsub></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
    ok(&iq(&mut alice, "pg", &format!("<iq xmlns='jabber:client' type='set' id='pg'><pubsub xmlns='{OWNER}'><purge node='{NODE}'/></pubsub></iq>")).await);
    let r = iq(&mut alice, "i", &get_items("i", "alice@localhost", NODE)).await;
    assert_eq!(
        r.get_child("pubsub", PUBSUB)
            .unwrap()
            .get_child("items", PUBSUB)
            .unwrap()
            .children()
            .count(),
        0
    );
    server.stop().await;
}

const VCARD: &str = "vcard-temp";
const DATA: &str = "urn:xmpp:avatar:data";
const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
const PRIVATE: &str = "jabber:iq:private";

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn vcard_photo<C: Client>(c: &mut C, of: &str) -> Option<(String, String)> {
    let r = iq(
        c,
        "vc",
        &format!(
            "<iq xmlns='jabber:client' type='get' id='vc' to='{of}'><vCard xmlns='{VCARD}'/></iq>"
        ),
    )
    .await;
    let photo = r.get_child("vCard", VCARD)?.get_child("PHOTO", VCARD)?;
    Some((
        photo.get_child("TYPE", VCARD)?.text(),
        photo.get_child("BINVAL", VCARD)?.text(),
    ))
}

#[tokio::test]
async fn avatars_convert_between_pep_and_vcard() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;
    drain(&mut bob).await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    announce(&mut alice, FEATURES).await;
    announce(&mut bob, FEATURES).await;

    let r = iq(&mut bob, "d", &format!("<iq xmlns='jabber:client' type='get' id='d' to='alice@localhost'><query xmlns='{INFO}'/></iq>")).await;
    let q = r.get_child("query", INFO).unwrap();
    for feature in [
        "urn:xmpp:pep-vcard-conversion:0",
        "urn:xmpp:bookmarks:1#compat",
    ] {
        assert!(
            q.children().any(|c| c.attr("var") == Some(feature)),
            "{feature}: {}",
            show(&r)
        );
    }

    // PEP to vCard: data, then metadata naming it.
    let image = b"not really a png, but bytes all the same";
    let id = sha1_hex(image);
    ok(&iq(
        &mut alice,
        "a1",
        &publish(
            "a1",
            DATA,
            &id,
            &format!("<data xmlns='{DATA}'>{}</data>", b64(image)),
            &[],
        ),
    )
    .await);
    ok(&iq(&mut alice, "a2", &publish("a2", AVATAR, &id, &format!("<metadata xmlns='{AVATAR}'><info id='{id}' bytes='{}' type='image/png'/></metadata>", image.len()), &[])).await);
    assert_eq!(
        vcard_photo(&mut bob, "alice@localhost").await,
        Some(("image/png".into(), b64(image)))
    );
    // XEP-0398 §4: her presence carries the hash from now on.
    drain(&mut bob).await;
    alice
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    drain(&mut alice).await;
    let got = drain(&mut bob).await;
    let p = got
        .iter()
        .find(|e| e.name() == "presence")
        .expect("alice's presence");
    assert_eq!(
        p.get_child("x", "vcard-temp:x:update")
            .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
            .map(|p| p.text()),
        Some(id.clone()),
        "{}",
        show(p)
    );
    // Empty metadata (avatar off) removes the photo.
    ok(&iq(
        &mut alice,
        "a3",
        &publish(
            "a3",
            AVATAR,
            "off",
            &format!("<metadata xmlns='{AVATAR}'/>"),
            &[],
        ),
    )
    .await);
    assert_eq!(vcard_photo(&mut bob, "alice@localhost").await, None);

    // vCard to PEP: Bob's new photo reaches Alice as avatar metadata, its data readable.
    drain(&mut alice).await;
    let photo = b"bob's face";
    let bob_id = sha1_hex(photo);
    ok(&iq(&mut bob, "v1", &format!("<iq xmlns='jabber:client' type='set' id='v1'><vCard xmlns='{VCARD}'><FN>Bob</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>", b64(photo))).await);
    let got = drain(&mut alice).await;
    let meta = got
        .iter()
        .filter_map(|m| m.get_child("event", EVENT))
        .filter_map(|e| e.get_child("items", EVENT))
        .find(|i| i.attr("node") == Some(AVATAR))
        .expect("metadata event");
    let info = meta
        .get_child("item", EVENT)
        .unwrap()
        .get_child("metadata", AVATAR)
        .unwrap()
        .get_child("info", AVATAR)
        .unwrap();
    assert_eq!(info.attr("id"), Some(bob_id.as_str()));
    assert_eq!(info.attr("type"), Some("image/jpeg"));
    assert_eq!(info.attr("bytes"), Some(photo.len().to_string().as_str()));
    let r = iq(&mut alice, "g", &format!("<iq xmlns='jabber:client' type='get' id='g' to='bob@localhost'><pubsub xmlns='{PUBSUB}'><items node='{DATA}'><item id='{bob_id}'/></items></pubsub></iq>")).await;
    let data = r
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("data", DATA))
        .map(|d| d.text());
    assert_eq!(data, Some(b64(photo)), "{}", show(&r));
    // The same vCard again publishes nothing new.
    ok(&iq(&mut bob, "v2", &format!("<iq xmlns='jabber:client' type='set' id='v2'><vCard xmlns='{VCARD}'><FN>Bobby</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>", b64(photo))).await);
    assert!(events(&drain(&mut alice).await).is_empty());
    server.stop().await;
}

fn rooms_in(storage: &Element) -> Vec<String> {
    let mut rooms: Vec<String> = storage
        .children()
        .filter(|c| c.name() == "conference")
        .filter_map(|c| c.attr("jid"))
        .map(String::from)
        .collect();
    rooms.sort_unstable();
    rooms
}

async fn native_rooms<C: Client>(c: &mut C) -> Vec<String> {
    let r = iq(c, "nb", &get_items("nb", "alice@localhost", BOOKMARKS2)).await;
    let mut rooms: Vec<String> = r
        .get_child("pubsub", PUBSUB)
        .map(|p| {
            p.get_child("items", PUBSUB)
                .unwrap()
                .children()
                .filter_map(|i| i.attr("id"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    rooms.sort_unstable();
    rooms
}

async fn private_bookmarks<C: Client>(c: &mut C) -> Element {
    let r = iq(c, "pb", &format!("<iq xmlns='jabber:client' type='get' id='pb'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query></iq>")).await;
    r.get_child("query", PRIVATE)
        .unwrap()
        .get_child("storage", "storage:bookmarks")
        .unwrap()
        .clone()
}

#[tokio::test]
async fn legacy_and_native_bookmarks_stay_in_step() {
    let server = TestServer::start().await;
    let mut legacy = server.ws().await;
    legacy.login("alice", Login::ScramSha256).await;
    let mut modern = server.ws().await;
    login(
        &mut modern,
        "alice",
        PASSWORD,
        Login::ScramSha256,
        Some("modern"),
    )
    .await;
    let notify = [INFO, "urn:xmpp:bookmarks:1+notify"];
    announce(&mut modern, &notify).await;

    // A legacy client stores private XML bookmarks: native items appear, and are announced.
    ok(&iq(&mut legacy, "s1", &format!("<iq xmlns='jabber:client' type='set' id='s1'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'><conference jid='one@muc.example' name='One' autojoin='true'><nick>al</nick></conference><conference jid='two@muc.example'/><url name='site' url='https://example.org/'/></storage></query></iq>")).await);
    let got = events(&drain(&mut modern).await);
    let mut announced: Vec<String> = got
        .iter()
        .filter(|e| e.1 == BOOKMARKS2)
        .flat_map(|e| e.3.clone())
        .collect();
    announced.sort_unstable();
    assert_eq!(announced, ["one@muc.example", "two@muc.example"]);
    assert_eq!(
        native_rooms(&mut modern).await,
        ["one@muc.example", "two@muc.example"]
    );
    let r = iq(&mut modern, "one", &format!("<iq xmlns='jabber:client' type='get' id='one'><pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS2}'><item id='one@muc.example'/></items></pubsub></iq>")).await;
    let conf = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .get_child("item", PUBSUB)
        .unwrap()
        .get_child("conference", BOOKMARKS2)
        .unwrap()
        .clone();
    assert_eq!(conf.attr("name"), Some("One"));
    assert_eq!(conf.attr("autojoin"), Some("true"));
    assert_eq!(
        conf.get_child("nick", BOOKMARKS2)
            .map(|n| n.text())
            .as_deref(),
        Some("al")
    );

    // A modern client adds a room: the legacy read shows it, the URL kept.
    ok(&iq(
        &mut modern,
        "n1",
        &publish(
            "n1",
            BOOKMARKS2,
            "three@muc.example",
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Three'/>",
            &[
                ("pubsub#access_model", "whitelist"),
                ("pubsub#max_items", "max"),
                ("pubsub#send_last_published_item", "never"),
                ("pubsub#persist_items", "true"),
            ],
        ),
    )
    .await);
    let storage = private_bookmarks(&mut legacy).await;
    assert_eq!(
        rooms_in(&storage),
        ["one@muc.example", "three@muc.example", "two@muc.example"]
    );
    assert!(
        storage
            .children()
            .any(|c| c.name() == "url" && c.attr("url") == Some("https://example.org/")),
        "{}",
        show(&storage)
    );

    // And removes one; the legacy client's next store drops another.
    ok(&iq(&mut modern, "r1", &format!("<iq xmlns='jabber:client' type='set' id='r1'><pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS2}' notify='true'><item id='two@muc.example'/></retract></pubsub></iq>")).await);
    assert_eq!(
        rooms_in(&private_bookmarks(&mut legacy).await),
        ["one@muc.example", "three@muc.example"]
    );
    drain(&mut modern).await;
    ok(&iq(&mut legacy, "s2", &format!("<iq xmlns='jabber:client' type='set' id='s2'><query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'><conference jid='three@muc.example' name='Three'/></storage></query></iq>")).await);
    let got = drain(&mut modern).await;
    assert_eq!(native_rooms(&mut modern).await, ["three@muc.example"]);
    assert!(
        got.iter().any(|m| m
            .get_child("event", EVENT)
            .and_then(|e| e.get_child("items", EVENT))
            .and_then(|i| i.get_child("retract", EVENT))
            .and_then(|r| r.attr("id"))
            == Some("one@muc.example")),
        "{got:#?}"
    );

    // XEP-0048 over PEP: the legacy node converts too, and is rewritten from native changes.
    ok(&iq(&mut legacy, "l1", &publish("l1", "storage:bookmarks", "current", "<storage xmlns='storage:bookmarks'><conference jid='three@muc.example' name='Three'/><conference jid='four@muc.example' name='Four'/></storage>", &[("pubsub#access_model", "whitelist")])).await);
    assert_eq!(
        native_rooms(&mut modern).await,
        ["four@muc.example", "three@muc.example"]
    );
    ok(&iq(
        &mut modern,
        "n2",
        &publish(
            "n2",
            BOOKMARKS2,
            "five@muc.example",
            "<conference xmlns='urn:xmpp:bookmarks:1'/>",
            &[],
        ),
    )
    .await);
    let r = iq(
        &mut legacy,
        "lg",
        &get_items("lg", "alice@localhost", "storage:bookmarks"),
    )
    .await;
    let storage = r
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .get_child("item", PUBSUB)
        .unwrap()
        .get_child("storage", "storage:bookmarks")
        .unwrap()
        .clone();
    assert_eq!(
        rooms_in(&storage),
        ["five@muc.example", "four@muc.example", "three@muc.example"]
    );
    server.stop().await;
}

/// Receives until `wanted` matches, answering disco#info queries for `features` meanwhile
/// (a remote server asks when it meets our caps); panics after 200 stanzas or the client's
/// reply timeout.
async fn until<C: Client>(
    c: &mut C,
    features: &[&str],
    wanted: impl Fn(&Element) -> bool,
) -> Element {
    for _ in 0..200 {
        let el = c.recv().await;
        if answer_caps_query(c, &el, features).await {
            continue;
        }
        if wanted(&el) {
            return el;
        }
    }
    panic!("the awaited stanza did not come")
}

fn event_item(el: &Element, node: &str) -> Option<String> {
    let items = el.get_child("event", EVENT)?.get_child("items", EVENT)?;
    (items.attr("node") == Some(node))
        .then(|| items.get_child("item", EVENT)?.attr("id").map(String::from))?
}

/// A contact on another server: its caps are asked over s2s (from the account's bare JID),
/// it gets the last item once they are verified, and later notifications.
#[tokio::test]
async fn remote_contacts_get_last_items_and_notifications() {
    use weft_testkit::TestCa;
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |_| {}).await;
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    let (mut alice, _) = weft_testkit::federation::client(&a, "alice").await;
    let (mut bob, bob_jid) = weft_testkit::federation::client(&b, "bob").await;
    alice.send("<presence xmlns='jabber:client'/>").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    drain(&mut alice).await;
    drain(&mut bob).await;
    // Mutual subscription over s2s.
    alice
        .send("<presence xmlns='jabber:client' to='bob@b.test' type='subscribe'/>")
        .await;
    until(&mut bob, FEATURES, |e| e.attr("type") == Some("subscribe")).await;
    bob.send("<presence xmlns='jabber:client' to='alice@a.test' type='subscribed'/>")
        .await;
    bob.send("<presence xmlns='jabber:client' to='alice@a.test' type='subscribe'/>")
        .await;
    until(&mut alice, FEATURES, |e| {
        e.attr("type") == Some("subscribe")
    })
    .await;
    alice
        .send("<presence xmlns='jabber:client' to='bob@b.test' type='subscribed'/>")
        .await;
    until(&mut bob, FEATURES, |e| {
        e.name() == "presence"
            && e.attr("type").is_none()
            && e.attr("from")
                .is_some_and(|f| f.starts_with("alice@a.test"))
    })
    .await;

    // Alice's first item; then Bob's presence (with caps) reaches her server, which asks his
    // client for the features and sends him the item once they check out.
    let meta = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='h1' bytes='1' type='image/png'/></metadata>";
    ok(&iq(&mut alice, "p1", &publish("p1", AVATAR, "h1", meta, &[])).await);
    bob.send(&presence(FEATURES)).await;
    let got = until(&mut bob, FEATURES, |e| event_item(e, AVATAR).is_some()).await;
    assert_eq!(got.attr("from"), Some("alice@a.test"));
    assert_eq!(got.attr("to"), Some(bob_jid.as_str()));
    assert_eq!(event_item(&got, AVATAR).as_deref(), Some("h1"));

    // A new publish is told to him at once.
    ok(&iq(
        &mut alice,
        "p2",
        &publish("p2", AVATAR, "h2", &meta.replace("h1", "h2"), &[]),
    )
    .await);
    let got = until(&mut bob, FEATURES, |e| event_item(e, AVATAR).is_some()).await;
    assert_eq!(event_item(&got, AVATAR).as_deref(), Some("h2"));
    // And he reads her items over s2s.
    let r = iq(&mut bob, "i", &get_items("i", "alice@a.test", AVATAR)).await;
    ok(&r);
    a.stop().await;
    b.stop().await;
}
