//! XEP-0124 / XEP-0206 BOSH on the wire, over real HTTP to an in-process server: session
//! creation, SASL with xmpp:restart and bind, messages with a WebSocket user, long polling,
//! the rid window and retransmission, polling and inactivity limits, terminate, CORS,
//! host-meta, the body size limit, drain and shutdown. Resumption: `bosh_resume.rs`.

use std::time::{Duration, Instant};

use minidom::Element;
use weft_testkit::clients::bosh::{http, BoshClient, HTTPBIND, XBOSH};
use weft_testkit::clients::{drain, show, Client};
use weft_testkit::{Login, TestServer};

const STREAM: &str = "http://etherx.jabber.org/streams";
const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn attr_ns<'a>(el: &'a Element, ns: &str, name: &str) -> Option<&'a str> {
    el.attrs()
        .iter()
        .find(|((ans, n), _)| ans.as_str() == ns && n.as_str() == name)
        .map(|(_, v)| v.as_str())
}

fn bound(server: &TestServer, jid: &str) -> bool {
    let jid = jid::FullJid::new(jid).expect("a full JID");
    server.running.state.sessions.is_bound(&jid)
}

fn assert_terminate(el: &Element, condition: &str) {
    assert!(el.is("body", HTTPBIND), "{}", show(el));
    assert_eq!(el.attr("type"), Some("terminate"), "{}", show(el));
    assert_eq!(el.attr("condition"), Some(condition), "{}", show(el));
}

/// A logged-in BOSH client whose `wait` is `wait` seconds.
async fn bosh_login(server: &TestServer, user: &str, wait: u32) -> (BoshClient, String) {
    let mut c = server.bosh();
    c.wait = wait;
    let jid = c.login(user, Login::ScramSha256).await;
    (c, jid)
}

fn chat(to: &str, id: &str, text: &str) -> String {
    format!("<message xmlns='jabber:client' to='{to}' id='{id}' type='chat'><body>{text}</body></message>")
}

#[tokio::test]
async fn session_creation_response_carries_the_parameters_and_features() {
    let server = TestServer::start().await;
    let mut c = server.bosh();
    c.wait = 300; // above bosh.max_wait: capped
    let body = c.create("localhost", " ack='1'").await;
    let sid = body.attr("sid").expect("sid");
    assert!(sid.len() >= 16, "{sid}");
    assert_eq!(body.attr("wait"), Some("60"), "capped to bosh.max_wait");
    assert_eq!(body.attr("hold"), Some("1"));
    assert_eq!(body.attr("requests"), Some("2"));
    assert_eq!(body.attr("inactivity"), Some("60"));
    assert_eq!(body.attr("polling"), Some("2"));
    assert_eq!(body.attr("ver"), Some("1.11"));
    assert_eq!(body.attr("from"), Some("localhost"));
    assert_eq!(body.attr("ack"), Some(c.rid.to_string().as_str()));
    assert!(body.attr("authid").is_some_and(|a| !a.is_empty()));
    assert_eq!(attr_ns(&body, XBOSH, "version"), Some("1.0"));
    assert_eq!(attr_ns(&body, XBOSH, "restartlogic"), Some("true"));
    let features = body.get_child("features", STREAM).expect("stream features");
    let mechs: Vec<String> = features
        .get_child("mechanisms", SASL)
        .unwrap()
        .children()
        .map(|m| m.text())
        .collect();
    assert_eq!(
        mechs,
        ["SCRAM-SHA-256", "SCRAM-SHA-1"],
        "no -PLUS over BOSH"
    );
    assert!(!features.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    server.stop().await;
}

#[tokio::test]
async fn creation_needs_a_hosted_to_and_requests_a_known_sid() {
    let server = TestServer::start().await;
    let c = server.bosh();
    let r = c
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='7' wait='5' hold='1' to='elsewhere.example'/>"
        ))
        .await;
    assert_terminate(&r.xml(), "host-unknown");
    let r = c
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='7' wait='5' hold='1'/>"
        ))
        .await;
    assert_terminate(&r.xml(), "improper-addressing");
    let r = c.post("<body xmlns='jabber:client' rid='7'/>").await;
    assert_terminate(&r.xml(), "bad-request");
    let r = c.post(&format!("<body xmlns='{HTTPBIND}' rid='7'")).await;
    assert_eq!(r.status, 400);
    let r = c
        .post(&format!("<body xmlns='{HTTPBIND}' rid='7' sid='nope'/>"))
        .await;
    assert_terminate(&r.xml(), "item-not-found");
    assert!(server.running.state.bosh.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn sessions_count_toward_the_connections_per_ip() {
    // Each session holds one of its address's connection slots (the HTTP connections that
    // carry its requests hold theirs while open), so sessions stop before the tenth.
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 3).await;
    let mut clients = Vec::new();
    let mut refused = None;
    for _ in 0..10 {
        let c = server.bosh();
        let r = c
            .post(&format!(
                "<body xmlns='{HTTPBIND}' rid='7' wait='5' hold='1' to='localhost'/>"
            ))
            .await;
        let el = r.xml();
        if el.attr("type") == Some("terminate") {
            refused = Some(el);
            break;
        }
        clients.push(c);
    }
    let refused = refused.expect("sessions beyond the per-IP cap were created");
    assert_terminate(&refused, "policy-violation");
    assert!(server.running.state.bosh.len() < 3);
    server.stop().await;
}

#[tokio::test]
async fn login_over_bosh_and_chat_with_a_websocket_user() {
    let server = TestServer::start().await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 10).await;
    assert!(alice_jid.starts_with("alice@localhost/"), "{alice_jid}");
    let mut bob = server.ws().await;
    let bob_jid = bob.login("bob", Login::ScramSha256).await;
    bob.send(&chat(&alice_jid, "b1", "hi over http")).await;
    let got = alice.recv().await;
    assert!(got.is("message", "jabber:client"), "{}", show(&got));
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(
        got.get_child("body", "jabber:client").unwrap().text(),
        "hi over http"
    );
    // A stanza without xmlns inside <body/> is jabber:client (XEP-0206 §2).
    alice
        .send(&format!(
            "<message to='{bob_jid}' type='chat' id='a1'><body>back</body></message>"
        ))
        .await;
    let got = bob.recv().await;
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()), "{}", show(&got));
    assert_eq!(
        got.get_child("body", "jabber:client").unwrap().text(),
        "back"
    );
    drain(&mut alice).await;
    server.stop().await;
}

#[tokio::test]
async fn a_held_request_waits_for_wait_or_a_stanza() {
    let server = TestServer::start().await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 2).await;
    // Nothing to say: answered empty after 'wait'.
    let started = Instant::now();
    alice.spawn("", "");
    let (_, body) = alice.next_response().await;
    let held = started.elapsed();
    assert!(body.children().next().is_none(), "{}", show(&body));
    assert!(
        held >= Duration::from_millis(1900) && held < Duration::from_secs(4),
        "{held:?}"
    );
    // A stanza for the session answers the held request at once.
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // keeps the polling rule
    alice.spawn("", "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    bob.send(&chat(&alice_jid, "now", "now")).await;
    let (_, body) = alice.next_response().await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        body.get_child("message", "jabber:client").is_some(),
        "{}",
        show(&body)
    );
    // A second request makes more than 'hold' (1): the older one is answered at once.
    let first = alice.spawn("", "");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pushed = Instant::now();
    alice.spawn("", "");
    let (rid, body) = alice.next_response().await;
    assert_eq!(rid, first);
    assert!(pushed.elapsed() < Duration::from_secs(1));
    assert!(body.children().next().is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_retransmitted_rid_gets_the_same_response() {
    let server = TestServer::start().await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 5).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send(&chat(&alice_jid, "once", "1")).await;
    drain(&mut bob).await;
    let (rid, body) = alice.body("", "");
    let first = alice.post(&body).await;
    assert!(first.body.contains("id='once'"), "{}", first.body);
    // The response was lost on the way: the client sends the same request again.
    let again = alice.post(&body).await;
    assert_eq!(again.body, first.body, "rid {rid}");
    // And the session goes on with the next rid.
    drain(&mut alice).await;
    server.stop().await;
}

#[tokio::test]
async fn a_retransmission_of_a_held_request_takes_its_place() {
    let server = TestServer::start().await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 10).await;
    let (rid, body) = alice.body("", "");
    // The first copy's connection is dropped while it is held.
    let (addr, path, copy) = (alice.addr, alice.path.clone(), body.clone());
    let dropped = tokio::spawn(async move { http(addr, "POST", &path, &[], &copy).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    dropped.abort();
    alice.spawn_raw(rid, body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = server.ws().await;
    bob.login("bob", Login::ScramSha256).await;
    bob.send(&chat(&alice_jid, "m", "1")).await;
    let (got, body) = alice.next_response().await;
    assert_eq!(got, rid);
    assert!(
        body.get_child("message", "jabber:client").is_some(),
        "{}",
        show(&body)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_rid_outside_the_window_ends_the_session() {
    let server = TestServer::start().await;
    let (mut alice, _) = bosh_login(&server, "alice", 5).await;
    let held = alice.spawn("", "");
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.rid += 100;
    let (_, body) = alice.body("", "");
    assert_terminate(&alice.post(&body).await.xml(), "item-not-found");
    // The request it held ends with it (XEP-0124 §17.2 other-request).
    let (rid, body) = alice.next_response().await;
    assert_eq!(rid, held);
    assert_terminate(&body, "other-request");
    // The session is gone.
    alice.rid -= 101;
    let (_, body) = alice.body("", "");
    assert_terminate(&alice.post(&body).await.xml(), "item-not-found");
    assert!(server.running.state.bosh.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn requests_out_of_order_are_taken_in_rid_order() {
    let server = TestServer::start().await;
    let (mut alice, _) = bosh_login(&server, "alice", 5).await;
    let ping = |id: &str| {
        format!("<iq xmlns='jabber:client' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>")
    };
    let (r1, b1) = alice.body("", &ping("one"));
    let (r2, b2) = alice.body("", &ping("two"));
    alice.spawn_raw(r2, b2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.spawn_raw(r1, b1);
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let el = alice.recv().await;
        ids.extend(el.attr("id").map(str::to_string));
    }
    assert_eq!(ids, ["one", "two"]);
    server.stop().await;
}

#[tokio::test]
async fn empty_polls_faster_than_polling_are_a_policy_violation() {
    let server = TestServer::start_with(|c| c.bosh.polling.0 = Duration::from_secs(2)).await;
    let mut c = server.bosh();
    c.hold = 0; // polling mode: every request is answered at once
    let created = c.create("localhost", "").await;
    assert_eq!(created.attr("hold"), Some("0"));
    let (_, body) = c.body("", "");
    let first = c.post(&body).await.xml();
    assert!(first.attr("type").is_none(), "{}", show(&first));
    let (_, body) = c.body("", "");
    assert_terminate(&c.post(&body).await.xml(), "policy-violation");
    assert!(server.running.state.bosh.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn polls_at_the_polling_interval_are_fine() {
    let server = TestServer::start_with(|c| c.bosh.polling.0 = Duration::from_secs(1)).await;
    let mut c = server.bosh();
    c.hold = 0;
    c.create("localhost", "").await;
    for _ in 0..3 {
        let (_, body) = c.body("", "");
        let r = c.post(&body).await.xml();
        assert!(r.attr("type").is_none(), "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn inactivity_ends_the_session() {
    let server = TestServer::start_with(|c| {
        c.bosh.inactivity.0 = Duration::from_secs(2);
        c.bosh.polling.0 = Duration::from_secs(1);
    })
    .await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 5).await;
    assert!(bound(&server, &alice_jid));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        server.running.state.bosh.is_empty(),
        "the BOSH session ended"
    );
    assert!(!bound(&server, &alice_jid), "and its resource is gone");
    let (_, body) = alice.body("", "");
    assert_terminate(&alice.post(&body).await.xml(), "item-not-found");
    server.stop().await;
}

#[tokio::test]
async fn the_client_terminates_its_session() {
    let server = TestServer::start().await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 5).await;
    let (_, body) = alice.body(
        " type='terminate'",
        "<presence xmlns='jabber:client' type='unavailable'/>",
    );
    let r = alice.post(&body).await.xml();
    assert_eq!(r.attr("type"), Some("terminate"), "{}", show(&r));
    assert!(r.attr("condition").is_none(), "a normal end: {}", show(&r));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!bound(&server, &alice_jid));
    let (_, body) = alice.body("", "");
    assert_terminate(&alice.post(&body).await.xml(), "item-not-found");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_error_is_a_remote_stream_error_terminate() {
    let server = TestServer::start().await;
    let (mut alice, _) = bosh_login(&server, "alice", 5).await;
    alice
        .send("<message xmlns='jabber:client' from='mallory@localhost/x' to='bob@localhost'/>")
        .await;
    let t = alice.expect_terminate().await;
    assert_terminate(&t, "remote-stream-error");
    let err = t
        .get_child("error", STREAM)
        .expect("<stream:error/> inside");
    assert!(
        err.has_child("invalid-from", "urn:ietf:params:xml:ns:xmpp-streams"),
        "{}",
        show(&t)
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_origin_policy() {
    let server = TestServer::start_with(|c| {
        c.bosh.allowed_origins = Some(vec!["https://chat.example".into()]);
    })
    .await;
    let addr = server.http_addr();
    let preflight = [
        ("Origin", "https://chat.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let ok = http(addr, "OPTIONS", "/http-bind", &preflight, "")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    assert!(ok
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));
    let evil = [("Origin", "https://evil.example")];
    let denied = http(addr, "OPTIONS", "/http-bind", &evil, "")
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    let body = format!("<body xmlns='{HTTPBIND}' rid='5' to='localhost' wait='5' hold='1'/>");
    let denied = http(addr, "POST", "/http-bind", &evil, &body)
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    let good = [("Origin", "https://chat.example")];
    let created = http(addr, "POST", "/http-bind", &good, &body)
        .await
        .unwrap();
    assert_eq!(created.status, 200);
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    assert!(created
        .header("content-type")
        .unwrap()
        .starts_with("text/xml"));
    assert!(created.xml().attr("sid").is_some());
    server.stop().await;
}

#[tokio::test]
async fn any_origin_by_default() {
    let server = TestServer::start().await;
    let origin = [("Origin", "https://a.example")];
    let r = http(server.http_addr(), "OPTIONS", "/http-bind", &origin, "")
        .await
        .unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}

#[tokio::test]
async fn host_meta_advertises_the_bosh_endpoint() {
    let server = TestServer::start().await;
    let addr = server.http_addr();
    let url = format!("http://localhost:{}/http-bind", addr.port());
    let host = [("Host", "localhost")];
    let xrd = http(addr, "GET", "/.well-known/host-meta", &host, "")
        .await
        .unwrap();
    assert!(
        xrd.body.contains(&format!(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='{url}'/>"
        )),
        "{}",
        xrd.body
    );
    let jrd = http(addr, "GET", "/.well-known/host-meta.json", &host, "")
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&jrd.body).unwrap();
    let links = doc["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "urn:xmpp:alt-connections:xbosh" && l["href"] == url.as_str()),
        "{}",
        jrd.body
    );
    server.stop().await;
}

#[tokio::test]
async fn bodies_and_stanzas_above_the_limits_are_refused() {
    let server =
        TestServer::start_with(|c| c.limits.max_stanza_size = weft_config::ByteSize::kib(16)).await;
    let (mut alice, alice_jid) = bosh_login(&server, "alice", 5).await;
    // Several stanzas within the limit ride in one body, as clients batch them.
    let fits = "y".repeat(10 * 1024);
    let batch: String = (0..3)
        .map(|i| chat("bob@localhost", &format!("b{i}"), &fits))
        .collect();
    alice.send(&batch).await;
    drain(&mut alice).await;
    // A body above four times the stanza limit is refused before it is read.
    let huge = "x".repeat(70 * 1024);
    let (_, body) = alice.body("", &chat("bob@localhost", "huge", &huge));
    let r = alice.post(&body).await;
    assert_eq!(r.status, 413);
    assert_terminate(&r.xml(), "policy-violation");
    assert!(
        bound(&server, &alice_jid),
        "an unread body does not end the session"
    );
    // One stanza above the stanza limit ends the session, as on the other transports.
    alice.rid -= 1;
    let big = "x".repeat(20 * 1024);
    let (_, body) = alice.body("", &chat("bob@localhost", "big", &big));
    let r = alice.post(&body).await;
    assert_eq!(r.status, 200);
    assert_terminate(&r.xml(), "policy-violation");
    assert!(server.running.state.bosh.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn draining_ends_sessions_with_see_other_uri() {
    let server = TestServer::start_with(|c| {
        c.bosh.see_other_uri = Some("http://xmpp2.example/http-bind".into());
    })
    .await;
    let (mut alice, _) = bosh_login(&server, "alice", 10).await;
    alice.spawn("", "");
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.running.state.drain();
    let (_, body) = alice.next_response().await;
    assert_terminate(&body, "see-other-uri");
    assert_eq!(
        body.get_child("uri", HTTPBIND).map(|u| u.text()).as_deref(),
        Some("http://xmpp2.example/http-bind")
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_without_redirect_is_system_shutdown() {
    let server = TestServer::start().await;
    let (mut alice, _) = bosh_login(&server, "alice", 10).await;
    alice.spawn("", "");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(async move { server.stop().await });
    let (_, body) = alice.next_response().await;
    assert_terminate(&body, "system-shutdown");
    stopping.await.unwrap();
}
