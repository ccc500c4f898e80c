//! XEP-0115 on the wire: the server asks a client for the features behind a verification
//! string it has not met, from the client's own bare JID, checks the answer against the
//! string, and asks no other client that announces the same string once it is verified.

use minidom::Element;
use weft_testkit::clients::{drain, login, show};
use weft_testkit::{Client, Login, TestServer, PASSWORD};
use xmpp_parsers::caps::{compute_disco, hash_caps};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;

const CAPS: &str = "http://jabber.org/protocol/caps";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const NODE: &str = "https://example.org/test-client";

fn info(features: &[&str]) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "pc", "en", "test")],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: vec![],
    }
}

fn ver(features: &[&str]) -> String {
    hash_caps(&compute_disco(&info(features)), Algo::Sha_1)
        .unwrap()
        .to_base64()
}

fn presence(ver: &str) -> String {
    format!(
        "<presence xmlns='jabber:client'><c xmlns='{CAPS}' hash='sha-1' node='{NODE}' ver='{ver}'/></presence>"
    )
}

/// The server's disco#info query among what arrives before a ping answer, if any.
async fn query_in<C: Client>(c: &mut C) -> Option<Element> {
    drain(c)
        .await
        .into_iter()
        .find(|e| e.name() == "iq" && e.attr("type") == Some("get") && e.has_child("query", INFO))
}

async fn answer<C: Client>(c: &mut C, q: &Element, features: &[&str]) {
    let mut result = info(features);
    result.node = q
        .get_child("query", INFO)
        .unwrap()
        .attr("node")
        .map(String::from);
    let query = String::from(&Element::from(result));
    c.send(&format!(
        "<iq xmlns='jabber:client' type='result' id='{}' to='{}'>{query}</iq>",
        q.attr("id").unwrap(),
        q.attr("from").unwrap()
    ))
    .await;
}

#[tokio::test]
async fn a_verification_string_is_asked_once_and_only_trusted_when_it_matches() {
    let server = TestServer::start().await;
    let features = [
        INFO,
        "urn:xmpp:bookmarks:1+notify",
        "urn:xmpp:avatar:metadata+notify",
    ];
    let good = ver(&features);

    let mut alice = server.ws().await;
    let alice_jid = alice.login("alice", Login::ScramSha256).await;
    alice.send(&presence(&good)).await;
    let q = query_in(&mut alice)
        .await
        .expect("weft asks for the features behind a new string");
    assert_eq!(q.attr("from"), Some("alice@localhost"), "{}", show(&q));
    assert_eq!(q.attr("to"), Some(alice_jid.as_str()));
    assert_eq!(
        q.get_child("query", INFO).unwrap().attr("node"),
        Some(format!("{NODE}#{good}").as_str())
    );
    answer(&mut alice, &q, &features).await;
    // Nothing comes back for the answer (the server took it).
    let after = drain(&mut alice).await;
    assert!(after.iter().all(|e| e.name() != "iq"), "{after:#?}");

    // Bob's client announces the same string: verified already, he is not asked.
    let mut bob = server.tcp_direct_tls().await;
    bob.login("bob", Login::ScramSha1).await;
    bob.send(&presence(&good)).await;
    assert!(
        query_in(&mut bob).await.is_none(),
        "a known string is not asked again"
    );

    // Carol's client lies: its answer does not hash to its string, so the string stays
    // unknown and the next client announcing it is asked again.
    let lie = ver(&[INFO, "urn:xmpp:lie+notify"]);
    let mut carol = server.ws().await;
    carol.login("carol", Login::ScramSha256).await;
    carol.send(&presence(&lie)).await;
    let q = query_in(&mut carol).await.expect("a new string is asked");
    answer(&mut carol, &q, &features).await;
    drain(&mut carol).await;
    let mut carol2 = server.ws().await;
    login(
        &mut carol2,
        "carol",
        PASSWORD,
        Login::ScramSha256,
        Some("second"),
    )
    .await;
    carol2.send(&presence(&lie)).await;
    assert!(
        query_in(&mut carol2).await.is_some(),
        "a string whose answer did not match is asked again"
    );
    server.stop().await;
}

/// §5.1 sorts the features as strings, then follows each with '<': a feature that another
/// one extends ("muc" and "muc#user", a PEP node and its "+notify") sorts first. slixmpp,
/// Prosody and the example below hash that way; xmpp_parsers' `compute_disco` (0.23) sorts
/// with the '<' appended, which put "X+notify" before "X", so weft rejected such clients'
/// strings and never learnt their +notify features (slixmpp-omemo clients got no device list
/// notifications). The string here is computed independently, per the XEP, from
/// "client/pc/en/test<" and the five features in i;octet order, each followed by '<'.
#[tokio::test]
async fn a_feature_extending_another_is_hashed_in_the_order_of_xep_0115() {
    let server = TestServer::start().await;
    let features = [
        INFO,
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/muc#user",
        "urn:xmpp:omemo:2:devices",
        "urn:xmpp:omemo:2:devices+notify",
    ];
    let good = "o5nBxR9ibgHHyLf1Duv/vF6UnWI=";

    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    alice.send(&presence(good)).await;
    let q = query_in(&mut alice).await.expect("a new string is asked");
    answer(&mut alice, &q, &features).await;
    drain(&mut alice).await;

    // Verified: the next client announcing it is not asked.
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send(&presence(good)).await;
    assert!(
        query_in(&mut bob).await.is_none(),
        "the answer matched its string, so the string is known"
    );
    server.stop().await;
}

/// Converse.js 14's disco#info answer (from the interop suite's Chromium) and the verification
/// string Converse announced with it. "vcard-temp" sorts before "vcard-temp:x:update" (§5.1
/// sorts the features), but after it once each has its '<' appended, which is how
/// xmpp-parsers' compute_disco sorted them: weft found Converse's correct string false, kept
/// none of its features, and PEP never notified it (+notify) nor sent it last items.
const CONVERSE_VER: &str = "aU8gtptxi4fPJB8IPibd7tJbTLE=";
const CONVERSE_FEATURES: [&str; 21] = [
    "eu.siacs.conversations.axolotl.devicelist+notify",
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/rosterx",
    "jabber:x:conference",
    "jabber:x:oob",
    "storage:bookmarks+notify",
    "urn:ietf:params:xml:ns:conference-info+notify",
    "urn:xmpp:carbons:2",
    "urn:xmpp:http:upload:0",
    "urn:xmpp:idle:1",
    "urn:xmpp:mam:2",
    "urn:xmpp:message-correct:0",
    "urn:xmpp:omemo:2:devices+notify",
    "urn:xmpp:reactions:0",
    "urn:xmpp:reply:0",
    "urn:xmpp:spoiler:0",
    "urn:xmpp:xbosh",
    "vcard-temp",
    "vcard-temp:x:update",
];

#[tokio::test]
async fn converse_js_caps_with_a_feature_extending_another_verify() {
    let server = TestServer::start().await;
    let mut alice = server.ws().await;
    alice.login("alice", Login::ScramSha256).await;
    alice.send(&presence(CONVERSE_VER)).await;
    let q = query_in(&mut alice)
        .await
        .expect("weft asks for the features behind a new string");
    let features: String = CONVERSE_FEATURES
        .iter()
        .map(|f| format!("<feature var='{f}'/>"))
        .collect();
    alice
        .send(&format!(
            "<iq xmlns='jabber:client' type='result' id='{}' to='{}'>\
             <query xmlns='{INFO}' node='{NODE}#{CONVERSE_VER}'>\
             <identity category='client' name='Converse' type='web'/>{features}</query></iq>",
            q.attr("id").unwrap(),
            q.attr("from").unwrap()
        ))
        .await;
    drain(&mut alice).await;

    // Verified: the next client announcing the string is not asked.
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send(&presence(CONVERSE_VER)).await;
    assert!(
        query_in(&mut bob).await.is_none(),
        "Converse's string verified and is known"
    );
    server.stop().await;
}
