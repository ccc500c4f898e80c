//! A lean, server-agnostic c2s login: stream open, optional STARTTLS (RFC 6120 §5), SASL
//! (§6: SCRAM-SHA-1/256 or PLAIN), restart, resource binding (§7), the legacy session when a
//! server still requires it (RFC 3921 §3), and initial presence (RFC 6121 §4.2).
//!
//! Written against what any server may legally send: prefixed or unprefixed features, the SCRAM
//! server-final in `<success/>` or in a last `<challenge/>`, unrelated stanzas in between.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::conn::{Conn, Dialer, Event, Text, Transport};
use crate::scram::{Hash, ScramCache, ScramLogin};
use crate::xml;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mech {
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    Plain,
}

impl Mech {
    pub fn sasl_name(self) -> &'static str {
        match self {
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::Plain => "PLAIN",
        }
    }
}

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// A logged-in session, ready for stanzas.
pub struct Session {
    pub conn: Conn,
    /// The full JID the server bound.
    pub jid: String,
}

pub struct LoginSpec<'a> {
    pub dialer: &'a Dialer,
    pub mech: Mech,
    pub cache: &'a ScramCache,
    pub resource: &'a str,
}

/// The next first-level element, skipping stream headers; stream errors and closes fail.
pub async fn next_element(conn: &mut Conn) -> anyhow::Result<Text> {
    loop {
        match conn.recv().await? {
            Event::Header => continue,
            Event::Closed => bail!("the server closed the stream"),
            Event::Element(t) if xml::name(&t) == "error" => bail!("stream error: {}", &*t),
            Event::Element(t) => return Ok(t),
        }
    }
}

/// Waits for an element with this local name; anything else in between is skipped unless it
/// is a SASL `<failure/>`.
async fn expect(conn: &mut Conn, name: &str) -> anyhow::Result<Text> {
    loop {
        let el = next_element(conn).await?;
        match xml::name(&el) {
            n if n == name => return Ok(el),
            "failure" => bail!("SASL failure: {}", &*el),
            _ => {}
        }
    }
}

/// The result of the IQ with this id, or an error if the server answered with an error.
pub async fn iq_result(conn: &mut Conn, id: &str) -> anyhow::Result<Text> {
    loop {
        let el = next_element(conn).await?;
        if xml::name(&el) == "iq" && xml::attr(&el, "id") == Some(id) {
            if xml::attr(&el, "type") != Some("result") {
                bail!("IQ {id} failed: {}", &*el);
            }
            return Ok(el);
        }
    }
}

pub async fn login(
    spec: &LoginSpec<'_>,
    index: usize,
    user: &str,
    password: &str,
) -> anyhow::Result<Session> {
    let mut s = bind(spec, index, user, password).await?;
    s.conn
        .send("<presence xmlns='jabber:client'/>".into())
        .await?;
    s.conn.flush().await?;
    Ok(s)
}

/// [`login`] up to a bound resource (and the legacy session where required), before the
/// initial presence: for scenarios that do more first (a roster get).
pub async fn bind(
    spec: &LoginSpec<'_>,
    index: usize,
    user: &str,
    password: &str,
) -> anyhow::Result<Session> {
    let d = spec.dialer;
    let mut conn = d.connect(index, None).await?;
    conn.open_stream(&d.domain).await?;
    let mut features = expect(&mut conn, "features").await?;
    if d.transport == Transport::TcpTls {
        if !xml::has_child(&features, "starttls") {
            bail!("STARTTLS not offered: {}", &*features);
        }
        conn.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".into())
            .await?;
        conn.flush().await?;
        expect(&mut conn, "proceed").await?;
        conn = d.starttls(conn).await?;
        conn.open_stream(&d.domain).await?;
        features = expect(&mut conn, "features").await?;
    }
    let name = spec.mech.sasl_name();
    if !xml::descendants(&features, "mechanism").any(|m| xml::text(m) == name) {
        bail!("{name} not offered: {}", &*features);
    }
    authenticate(&mut conn, spec, user, password).await?;

    conn.open_stream(&d.domain).await?;
    let features = expect(&mut conn, "features").await?;
    let bind = format!(
        "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{}</resource></bind></iq>",
        spec.resource
    );
    conn.send(bind).await?;
    conn.flush().await?;
    let result = iq_result(&mut conn, "bind1").await?;
    let jid = xml::child_text(&result, "jid").context("bind result without <jid/>")?;
    let jid = xml::unescape(jid).into_owned();
    // RFC 3921 session establishment, only where the server does not mark it optional.
    if let Some(session) = xml::descendants(&features, "session").next() {
        let tag_end = session.find('>').unwrap_or(0);
        let body = &session[tag_end..];
        let body = &body[..body.find("session>").unwrap_or(body.len())];
        let required = session[..tag_end].ends_with('/') || !body.contains("optional");
        if required {
            conn.send("<iq xmlns='jabber:client' type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>".into()).await?;
            conn.flush().await?;
            iq_result(&mut conn, "sess1").await?;
        }
    }
    Ok(Session { conn, jid })
}

async fn authenticate(
    conn: &mut Conn,
    spec: &LoginSpec<'_>,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    let hash = match spec.mech {
        Mech::Plain => {
            // RFC 4616: empty authzid, authcid, password.
            let msg = B64.encode(format!("\0{user}\0{password}"));
            conn.send(format!(
                "<auth xmlns='{SASL}' mechanism='PLAIN'>{msg}</auth>"
            ))
            .await?;
            conn.flush().await?;
            expect(conn, "success").await?;
            return Ok(());
        }
        Mech::ScramSha1 => Hash::Sha1,
        Mech::ScramSha256 => Hash::Sha256,
    };
    let mut scram = ScramLogin::new(hash, user);
    let first = B64.encode(scram.client_first());
    conn.send(format!(
        "<auth xmlns='{SASL}' mechanism='{}'>{first}</auth>",
        spec.mech.sasl_name()
    ))
    .await?;
    conn.flush().await?;
    let challenge = expect(conn, "challenge").await?;
    let server_first = String::from_utf8(B64.decode(xml::text(&challenge).trim())?)?;
    let response = B64.encode(scram.client_final(&server_first, spec.cache)?);
    conn.send(format!("<response xmlns='{SASL}'>{response}</response>"))
        .await?;
    conn.flush().await?;
    loop {
        let el = next_element(conn).await?;
        let kind = xml::name(&el);
        if kind == "failure" {
            bail!("SASL failure: {}", &*el);
        }
        if kind != "success" && kind != "challenge" {
            continue;
        }
        // RFC 6120 §6.4.6: "=" stands for empty data; a success may also carry none at all.
        let raw = xml::text(&el).trim();
        let data = if raw == "=" {
            Vec::new()
        } else {
            B64.decode(raw).context("SASL data is not base64")?
        };
        let server_final = String::from_utf8_lossy(&data);
        if kind == "success" {
            if !data.is_empty() && !scram.verify_server_final(&server_final) {
                bail!("server signature does not verify: {server_final}");
            }
            return Ok(());
        }
        // The server-final came as a last challenge: verify it and answer with an empty response.
        if !scram.verify_server_final(&server_final) {
            bail!("server signature does not verify: {server_final}");
        }
        conn.send(format!("<response xmlns='{SASL}'/>")).await?;
        conn.flush().await?;
    }
}
