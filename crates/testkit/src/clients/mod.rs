//! Scripted XMPP clients for tests. Each speaks one framing; `login` works over any of them.

pub mod bosh;
pub mod tcp;
pub mod ws;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use minidom::Element;
use weft_sasl::{Hash, ScramClient};

pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The SASL mechanism a test logs in with.
#[derive(Clone, Debug)]
pub enum Login {
    ScramSha256,
    ScramSha1,
    Plain,
    /// SCRAM-SHA-256-PLUS with the given channel-binding type name and data.
    ScramSha256Plus(String, Vec<u8>),
}

/// What the login-driving code needs from a client.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// Sends raw XML (one element on WebSocket).
    async fn send(&mut self, xml: &str);
    /// The next element from the server, panicking after `REPLY_TIMEOUT`.
    async fn recv(&mut self) -> Element;
    /// Opens (or re-opens, after SASL) the stream to `to` and returns the `<features/>`.
    async fn open_stream(&mut self, to: &str) -> Element;
}

/// The mechanisms offered in a `<features/>`.
pub fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", SASL)
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

/// Authenticates, restarts and binds; returns the bound full JID.
pub async fn login<C: Client>(
    c: &mut C,
    user: &str,
    password: &str,
    how: Login,
    resource: Option<&str>,
) -> String {
    login_at(c, crate::DOMAIN, user, password, how, resource).await
}

/// `login` on a server for another domain than `localhost`.
pub async fn login_at<C: Client>(
    c: &mut C,
    domain: &str,
    user: &str,
    password: &str,
    how: Login,
    resource: Option<&str>,
) -> String {
    authenticate_at(c, domain, user, password, how).await;
    let result = bind(c, resource).await;
    assert_eq!(
        result.attr("type"),
        Some("result"),
        "bind result: {}",
        show(&result)
    );
    result
        .get_child("bind", BIND)
        .and_then(|b| b.get_child("jid", BIND))
        .map(|j| j.text())
        .expect("bound JID")
}

/// Sends a bind request and returns the server's reply (result or error).
pub async fn bind<C: Client>(c: &mut C, resource: Option<&str>) -> Element {
    let resource = resource
        .map(|r| format!("<resource>{r}</resource>"))
        .unwrap_or_default();
    c.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='{BIND}'>{resource}</bind></iq>"
    ))
    .await;
    c.recv().await
}

/// Opens the stream, authenticates and restarts; returns the post-SASL features.
pub async fn authenticate<C: Client>(c: &mut C, user: &str, password: &str, how: Login) -> Element {
    authenticate_at(c, crate::DOMAIN, user, password, how).await
}

pub async fn authenticate_at<C: Client>(
    c: &mut C,
    domain: &str,
    user: &str,
    password: &str,
    how: Login,
) -> Element {
    let features = c.open_stream(domain).await;
    let offered = mechanisms(&features);
    type ChannelBinding = Option<(String, Vec<u8>)>;
    let (name, hash, cb): (&str, Option<Hash>, ChannelBinding) = match &how {
        Login::ScramSha256 => ("SCRAM-SHA-256", Some(Hash::Sha256), None),
        Login::ScramSha1 => ("SCRAM-SHA-1", Some(Hash::Sha1), None),
        Login::Plain => ("PLAIN", None, None),
        Login::ScramSha256Plus(t, d) => (
            "SCRAM-SHA-256-PLUS",
            Some(Hash::Sha256),
            Some((t.clone(), d.clone())),
        ),
    };
    assert!(
        offered.iter().any(|m| m == name),
        "{name} not offered: {offered:?}"
    );
    match hash {
        None => {
            let msg = format!("\0{user}\0{password}");
            c.send(&format!(
                "<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>",
                BASE64.encode(msg)
            ))
            .await;
        }
        Some(hash) => {
            let mut scram = ScramClient::new(hash, user, password);
            if let Some((t, d)) = cb {
                scram = scram.with_channel_binding(&t, &d);
            }
            c.send(&format!(
                "<auth xmlns='{SASL}' mechanism='{name}'>{}</auth>",
                BASE64.encode(scram.client_first())
            ))
            .await;
            let challenge = c.recv().await;
            assert_eq!(
                challenge.name(),
                "challenge",
                "expected a challenge, got {}",
                show(&challenge)
            );
            let server_first = BASE64.decode(challenge.text()).expect("base64 challenge");
            let client_final = scram
                .client_final(&server_first)
                .expect("server-first parses");
            c.send(&format!(
                "<response xmlns='{SASL}'>{}</response>",
                BASE64.encode(client_final)
            ))
            .await;
            let success = c.recv().await;
            assert_eq!(
                success.name(),
                "success",
                "expected success, got {}",
                show(&success)
            );
            let server_final = BASE64.decode(success.text()).expect("base64 success");
            assert!(
                scram.verify_server_final(&server_final),
                "server signature must verify"
            );
        }
    }
    if hash.is_none() {
        let success = c.recv().await;
        assert_eq!(
            success.name(),
            "success",
            "expected success, got {}",
            show(&success)
        );
    }
    let features = c.open_stream(domain).await;
    assert!(
        features.has_child("bind", BIND),
        "bind feature after SASL: {}",
        show(&features)
    );
    features
}

/// The defined condition of a stanza error (RFC 6120 §8.3.3), e.g. `service-unavailable`.
pub fn error_condition(el: &Element) -> Option<String> {
    let err = el.get_child("error", "jabber:client")?;
    err.children()
        .find(|c| c.has_ns(STANZAS) && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// Sends a ping and returns everything that arrived before its answer: the server handled
/// the client's earlier stanzas (a session's stanzas are processed in order), and deliveries
/// made meanwhile came first.
/// Sends `xml` (an IQ with this `id`) and returns the IQ answering it, skipping whatever else
/// arrives first (pushes, presence, other features' stanzas); panics if 100 stanzas pass
/// without it, or when the client's reply timeout runs out.
pub async fn iq<C: Client>(c: &mut C, id: &str, xml: &str) -> Element {
    c.send(xml).await;
    for _ in 0..100 {
        let el = c.recv().await;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            return el;
        }
    }
    panic!("no answer to IQ {id}")
}

pub async fn drain<C: Client>(c: &mut C) -> Vec<Element> {
    c.send("<iq xmlns='jabber:client' type='get' id='drain'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut before = Vec::new();
    loop {
        let el = c.recv().await;
        if el.name() == "iq" && el.attr("id") == Some("drain") {
            return before;
        }
        before.push(el);
    }
}

/// Makes two logged-in users contacts with subscription 'both' (RFC 6121 §3). Each sender's
/// own drain comes first: its session has handled what it sent (in order) before the other
/// side answers, so no answer overtakes the request it answers.
pub async fn befriend<A: Client, B: Client>(a: &mut A, a_bare: &str, b: &mut B, b_bare: &str) {
    a.send(&format!(
        "<presence xmlns='jabber:client' to='{b_bare}' type='subscribe'/>"
    ))
    .await;
    drain(a).await;
    drain(b).await;
    b.send(&format!(
        "<presence xmlns='jabber:client' to='{a_bare}' type='subscribed'/>"
    ))
    .await;
    b.send(&format!(
        "<presence xmlns='jabber:client' to='{a_bare}' type='subscribe'/>"
    ))
    .await;
    drain(b).await;
    drain(a).await;
    a.send(&format!(
        "<presence xmlns='jabber:client' to='{b_bare}' type='subscribed'/>"
    ))
    .await;
    drain(a).await;
    drain(b).await;
}

/// An element as XML text, for assertion messages.
pub fn show(el: &Element) -> String {
    let mut out = Vec::new();
    weft_xml::write_element(el, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn lenient_limits() -> weft_xml::Limits {
    weft_xml::Limits {
        max_stanza_bytes: 16 * 1024 * 1024,
        max_depth: 64,
    }
}
