//! The initiating side of an s2s stream (RFC 6120 §4–§6 as initiating entity): connecting by
//! route, TLS with our certificate as client certificate, then SASL EXTERNAL or XEP-0220
//! dialback. Also the one-shot `db:verify` connection a receiving server makes to a peer's
//! authoritative server.

use std::sync::Arc;

use base64::Engine;
use minidom::Element;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::dialback;
use crate::error::StanzaErrorCondition;
use crate::framing::websocket::{socket_config, WsIo};
use crate::framing::{Framed, HeaderOut, Incoming, TcpFraming, WsFraming};
use crate::ns;
use crate::state::ServerState;
use crate::transport::io::MaybeTlsStream;

/// Why a link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No route answered (DNS, refused connections, no usable endpoint).
    #[error("no route to the server: {0}")]
    Unreachable(String),
    /// Discovery or the peer did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The peer answered but broke the protocol or refused us.
    #[error("the server refused the link: {0}")]
    Refused(String),
}

impl LinkError {
    /// The stanza error queued stanzas get (RFC 6120 §8.3.3.14/.15).
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            LinkError::Unreachable(_) | LinkError::Refused(_) => {
                StanzaErrorCondition::RemoteServerNotFound
            }
            LinkError::Timeout(_) => StanzaErrorCondition::RemoteServerTimeout,
        }
    }
}

fn refused(why: impl Into<String>) -> LinkError {
    LinkError::Refused(why.into())
}

/// Where to connect for a remote domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    /// Addresses to connect to; empty means resolve `host`.
    pub addrs: Vec<std::net::SocketAddr>,
    /// SNI and verification name for the TLS handshake.
    pub sni: Option<String>,
    /// Names a peer certificate may be valid for: the domain, widened only by host-meta
    /// fetched over verified HTTPS (RFC 7395 §6).
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// XEP-0468 over wss://.
    WebSocket(String),
    /// RFC 6120 TCP with STARTTLS.
    StartTls(String, u16),
    /// XEP-0368 Direct TLS.
    DirectTls(String, u16),
}

/// XEP-0288 stream feature and request.
pub const NS_BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
pub const NS_BIDI: &str = "urn:xmpp:bidi";

impl RouteKind {
    /// The transport's name, for logs.
    pub fn transport(&self) -> &'static str {
        match self {
            RouteKind::WebSocket(_) => "wss",
            RouteKind::StartTls(..) => "STARTTLS",
            RouteKind::DirectTls(..) => "Direct TLS",
        }
    }
}

/// When a link fails the way a peer fails that did not accept our certificate (it closes
/// the TLS connection, or sends a certificate alert, right after our certificate went out),
/// a hint for the operator: nothing else in the error says so.
fn certificate_hint(error: &str, local: &str) -> String {
    let e = error.to_ascii_lowercase();
    let closed = e.contains("close_notify") || e.contains("unexpected eof");
    let alert = [
        "badcertificate",
        "unknownca",
        "certificateunknown",
        "bad certificate",
        "unknown ca",
        "certificate unknown",
        "decrypterror",
    ]
    .iter()
    .any(|a| e.contains(a));
    if closed || alert {
        format!(" (the peer may not trust weft's certificate for {local})")
    } else {
        String::new()
    }
}

impl Route {
    fn fixed(kind: RouteKind, remote: &str) -> Route {
        Route {
            kind,
            addrs: Vec::new(),
            sni: None,
            names: vec![remote.to_string()],
        }
    }

    fn from_candidate(c: weft_discovery::Candidate, remote: &str) -> Route {
        use weft_discovery::Candidate as C;
        let names = c.reference_names(remote);
        match c {
            C::WebSocket {
                url,
                connect_addrs,
                sni,
                ..
            } => Route {
                kind: RouteKind::WebSocket(url),
                addrs: connect_addrs,
                sni: Some(sni),
                names,
            },
            C::DirectTls {
                host,
                port,
                addrs,
                sni,
                ..
            } => Route {
                kind: RouteKind::DirectTls(host, port),
                addrs,
                sni: Some(sni),
                names,
            },
            C::StartTls { host, port, addrs } => Route {
                kind: RouteKind::StartTls(host, port),
                addrs,
                sni: None,
                names,
            },
        }
    }
}

/// The routes to try, in the operator's transport order: runtime overrides, then
/// `[s2s.routes]`, else discovery (XEP-0156 host-meta, then SRV, then the domain on 5269).
pub async fn routes(state: &ServerState, remote: &str) -> Result<Vec<Route>, LinkError> {
    let prefs: Vec<weft_discovery::TransportPref> = state
        .config
        .s2s
        .transports
        .iter()
        .map(|t| match t {
            weft_config::S2sTransport::Websocket => weft_discovery::TransportPref::WebSocket,
            weft_config::S2sTransport::Tcp => weft_discovery::TransportPref::Tcp,
        })
        .collect();
    let runtime = state.s2s.runtime_routes(remote);
    let Some(configured) = runtime
        .as_ref()
        .or_else(|| state.config.s2s.routes.get(remote))
    else {
        let candidates = state
            .s2s
            .discovery
            .s2s_candidates(remote, &prefs)
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    LinkError::Timeout(e.to_string())
                } else {
                    LinkError::Unreachable(e.to_string())
                }
            })?;
        return Ok(candidates
            .into_iter()
            .map(|c| Route::from_candidate(c, remote))
            .collect());
    };
    let mut routes: Vec<Route> = configured
        .iter()
        .filter_map(|r| parse_route(r))
        .map(|k| Route::fixed(k, remote))
        .collect();
    let rank = |r: &Route| {
        let kind = match r.kind {
            RouteKind::WebSocket(_) => weft_config::S2sTransport::Websocket,
            _ => weft_config::S2sTransport::Tcp,
        };
        state
            .config
            .s2s
            .transports
            .iter()
            .position(|t| *t == kind)
            .unwrap_or(usize::MAX)
    };
    routes.sort_by_key(rank);
    routes.retain(|r| rank(r) != usize::MAX);
    Ok(routes)
}

fn parse_route(r: &str) -> Option<RouteKind> {
    if r.starts_with("wss://") {
        return Some(RouteKind::WebSocket(r.to_string()));
    }
    let (scheme, rest) = r.split_once("://")?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    let port = port.parse().ok()?;
    match scheme {
        "tcp" => Some(RouteKind::StartTls(host.to_string(), port)),
        "tls" => Some(RouteKind::DirectTls(host.to_string(), port)),
        _ => None,
    }
}

/// An authenticated outgoing stream.
pub struct Link {
    pub framed: Framed,
    /// XEP-0288: the peer may send its stanzas for us over this link too.
    pub bidi: bool,
}

/// What the stream is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Stanzas,
    /// Only to send `db:verify` (XEP-0220 §2.1.2): TLS, no authentication.
    Verify,
}

/// A connected, not yet negotiated stream and what TLS told us about the peer.
struct Connected {
    framed: Framed,
    tls: bool,
    peer_certs: Vec<CertificateDer<'static>>,
    /// Names the peer's certificate may be valid for.
    names: Vec<String>,
    /// How the link authenticated: "SASL EXTERNAL" or "dialback" (for logs).
    mechanism: &'static str,
    /// What the check of the peer's certificate found (for logs).
    certificate: String,
    /// XEP-0288 was asked for on this stream.
    bidi: bool,
}

async fn tcp_connect(route: &Route, host: &str, port: u16) -> Result<TcpStream, LinkError> {
    let r = if route.addrs.is_empty() {
        TcpStream::connect((host, port)).await
    } else {
        TcpStream::connect(&route.addrs[..]).await
    };
    let tcp = r.map_err(|e| LinkError::Unreachable(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn connect(state: &ServerState, route: &Route, remote: &str) -> Result<Connected, LinkError> {
    let limits = state.limits;
    let unreachable = |e: std::io::Error| LinkError::Unreachable(e.to_string());
    let server_name = |host: &str| -> Result<ServerName<'static>, LinkError> {
        // SNI: what discovery says; else the host, unless it is an address (then the domain).
        let name = match &route.sni {
            Some(sni) => sni.as_str(),
            None if host.parse::<std::net::IpAddr>().is_ok() => remote,
            None => host,
        };
        ServerName::try_from(name.to_string()).map_err(|e| refused(e.to_string()))
    };
    let names = route.names.clone();
    match &route.kind {
        RouteKind::StartTls(host, port) => {
            let tcp = tcp_connect(route, host, *port).await?;
            let framed = Framed::Tcp(Box::new(TcpFraming::new(
                MaybeTlsStream::Plain(tcp),
                limits,
                ns::SERVER,
            )));
            Ok(Connected {
                framed,
                tls: false,
                peer_certs: Vec::new(),
                names,
                mechanism: "",
                certificate: String::new(),
                bidi: false,
            })
        }
        RouteKind::DirectTls(host, port) => {
            let tcp = tcp_connect(route, host, *port).await?;
            let connector = tokio_rustls::TlsConnector::from(state.tls.s2s_client.clone());
            let tls = connector
                .connect(server_name(host)?, tcp)
                .await
                .map_err(unreachable)?;
            let peer_certs = peer_certs(tls.get_ref().1);
            let framed = Framed::Tcp(Box::new(TcpFraming::new(
                MaybeTlsStream::ClientTls(Box::new(tls)),
                limits,
                ns::SERVER,
            )));
            Ok(Connected {
                framed,
                tls: true,
                peer_certs,
                names,
                mechanism: "",
                certificate: String::new(),
                bidi: false,
            })
        }
        RouteKind::WebSocket(url) => {
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| refused(e.to_string()))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
            let host = request
                .uri()
                .host()
                .unwrap_or(remote)
                .trim_matches(['[', ']'])
                .to_string();
            let port = request.uri().port_u16().unwrap_or(443);
            let tcp = tcp_connect(route, &host, port).await?;
            let connector = tokio_rustls::TlsConnector::from(state.tls.s2s_client_plain.clone());
            let tls = connector
                .connect(server_name(&host)?, tcp)
                .await
                .map_err(unreachable)?;
            let peer_certs = peer_certs(tls.get_ref().1);
            let io: Box<dyn WsIo> = Box::new(tls);
            let (socket, response) = tokio_tungstenite::client_async_with_config(
                request,
                io,
                Some(socket_config(limits)),
            )
            .await
            .map_err(|e| refused(format!("WebSocket handshake: {e}")))?;
            let protocol = response.headers().get("Sec-WebSocket-Protocol");
            if protocol.map(HeaderValue::as_bytes) != Some(b"xmpp") {
                return Err(refused("the peer did not select the 'xmpp' subprotocol"));
            }
            let ws = &state.config.websocket;
            let framing = WsFraming::new(
                socket,
                limits,
                ns::FRAMING_SERVER,
                ws.ping_interval.0,
                ws.ping_timeout.0,
            );
            Ok(Connected {
                framed: Framed::WebSocket(framing),
                tls: true,
                peer_certs,
                names,
                mechanism: "",
                certificate: String::new(),
                bidi: false,
            })
        }
    }
}

fn peer_certs(conn: &rustls::ClientConnection) -> Vec<CertificateDer<'static>> {
    conn.peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// Receives the next element, failing on close, error or a header out of place.
async fn next_element(framed: &mut Framed) -> Result<Element, LinkError> {
    match framed.recv().await {
        Ok(Incoming::Element(el)) => {
            if el.is("error", ns::STREAM) {
                let cond = el
                    .children()
                    .next()
                    .map(|c| c.name().to_string())
                    .unwrap_or_default();
                return Err(refused(format!("stream error <{cond}/>")));
            }
            Ok(el)
        }
        Ok(Incoming::Close) => Err(refused("the peer closed the stream")),
        Ok(Incoming::Header(_)) => Err(refused("unexpected stream header")),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// Opens a stream and returns the receiving server's stream id and features.
async fn open(
    framed: &mut Framed,
    local: &str,
    remote: &str,
) -> Result<(String, Element), LinkError> {
    framed.queue_header(&HeaderOut {
        id: "",
        from: local,
        to: Some(remote),
        content_ns: ns::SERVER,
    });
    framed
        .flush()
        .await
        .map_err(|e| LinkError::Unreachable(e.to_string()))?;
    let header = match framed.recv().await {
        Ok(Incoming::Header(h)) => h,
        Ok(_) => return Err(refused("expected a stream header")),
        Err(e) => return Err(refused(e.to_string())),
    };
    let ok = if framed.is_websocket() {
        header.name == "open" && header.ns == ns::FRAMING_SERVER
    } else {
        header.name == "stream"
            && header.ns == ns::STREAM
            && header.default_ns.as_deref() == Some(ns::SERVER)
    };
    if !ok {
        return Err(refused(format!("stream header in namespace {}", header.ns)));
    }
    let id = header.attr("id").unwrap_or_default().to_string();
    let features = next_element(framed).await?;
    if !features.is("features", ns::STREAM) {
        return Err(refused("expected stream features"));
    }
    Ok((id, features))
}

/// Negotiates a connected stream up to `purpose`. Returns the stream id of the last stream.
async fn negotiate(
    state: &ServerState,
    c: &mut Connected,
    local: &str,
    remote: &str,
    purpose: Purpose,
) -> Result<String, LinkError> {
    let cfg = &state.config.s2s;
    if cfg.trace_domains.iter().any(|d| d == remote) {
        c.framed.set_trace(remote);
    }
    let mut authenticated = false;
    loop {
        let (stream_id, features) = open(&mut c.framed, local, remote).await?;
        if authenticated {
            return Ok(stream_id);
        }
        if !c.tls {
            let Framed::Tcp(tcp) = &mut c.framed else {
                return Err(refused("WebSocket s2s must use wss"));
            };
            if !features.has_child("starttls", ns::TLS) {
                return Err(refused(
                    "the peer does not offer STARTTLS; s2s requires TLS",
                ));
            }
            tcp.queue(&Element::builder("starttls", ns::TLS).build());
            tcp.flush()
                .await
                .map_err(|e| LinkError::Unreachable(e.to_string()))?;
            let proceed = next_element(&mut c.framed).await?;
            if !proceed.is("proceed", ns::TLS) {
                return Err(refused("STARTTLS refused"));
            }
            let Framed::Tcp(tcp) = &mut c.framed else {
                unreachable!()
            };
            let connector = tokio_rustls::TlsConnector::from(state.tls.s2s_client_plain.clone());
            let name =
                ServerName::try_from(remote.to_string()).map_err(|e| refused(e.to_string()))?;
            c.peer_certs = tcp
                .starttls_client(&connector, name)
                .await
                .map_err(|e| refused(format!("TLS: {e}")))?;
            c.tls = true;
            continue;
        }
        if purpose == Purpose::Verify {
            return Ok(stream_id);
        }
        let checked: Vec<(&String, Result<(), String>)> = c
            .names
            .iter()
            .map(|n| (n, state.s2s.verifier.check(&c.peer_certs, n)))
            .collect();
        let peer_valid = checked.iter().any(|(_, r)| r.is_ok());
        c.certificate = match checked.iter().find(|(_, r)| r.is_ok()) {
            Some((name, _)) if *name == remote => format!("valid for {remote}"),
            Some((name, _)) => format!("valid for {name}, which {remote}'s host-meta delegates to"),
            None => {
                let why = checked
                    .first()
                    .and_then(|(_, r)| r.clone().err())
                    .unwrap_or_else(|| "no certificate".into());
                format!("NOT valid for {remote}: {why}")
            }
        };
        if cfg.require_valid_certificates && !peer_valid {
            return Err(refused(format!(
                "the peer's certificate is not valid for {remote}"
            )));
        }
        // XEP-0288: one link for both directions, before authenticating. Only with a peer
        // whose certificate is valid for its domain: what it sends back is accepted as from
        // that domain, as SASL EXTERNAL would accept it on an incoming link.
        if cfg.bidi
            && peer_valid
            && purpose == Purpose::Stanzas
            && !c.bidi
            && features.has_child("bidi", NS_BIDI_FEATURE)
        {
            c.framed.queue(&Element::builder("bidi", NS_BIDI).build());
            c.bidi = true;
        }
        let offers_external = features
            .get_child("mechanisms", ns::SASL)
            .is_some_and(|m| m.children().any(|c| c.text().trim() == "EXTERNAL"));
        if offers_external {
            let authzid = base64::engine::general_purpose::STANDARD.encode(local);
            let auth = Element::builder("auth", ns::SASL)
                .attr(rxml::xml_ncname!("mechanism").into(), "EXTERNAL")
                .append(authzid)
                .build();
            c.framed.queue(&auth);
            c.framed
                .flush()
                .await
                .map_err(|e| LinkError::Unreachable(e.to_string()))?;
            let answer = next_element(&mut c.framed).await?;
            if answer.is("success", ns::SASL) {
                authenticated = true;
                c.mechanism = "SASL EXTERNAL";
                c.framed.restart();
                continue;
            }
            tracing::info!(%remote, "SASL EXTERNAL refused; trying dialback");
        }
        if !cfg.dialback || cfg.require_valid_certificates {
            return Err(refused(
                "no authentication method left (EXTERNAL refused, dialback off)",
            ));
        }
        // XEP-0220 §2.1.1; also sent to peers that do not advertise the feature, as older
        // servers do not.
        let key = state.s2s.keys.key(remote, local, &stream_id);
        c.framed
            .queue(&dialback::result_request(local, remote, &key));
        c.framed
            .flush()
            .await
            .map_err(|e| LinkError::Unreachable(e.to_string()))?;
        loop {
            let el = next_element(&mut c.framed).await?;
            if el.is("result", dialback::NS) {
                return match el.attr("type") {
                    Some("valid") => {
                        c.mechanism = "dialback";
                        Ok(stream_id)
                    }
                    other => Err(refused(format!("dialback answered {other:?}"))),
                };
            }
        }
    }
}

/// Connects to `remote` and authenticates as `local`, trying each route in turn.
pub async fn establish(
    state: &Arc<ServerState>,
    local: &str,
    remote: &str,
) -> Result<Link, LinkError> {
    let mut last = LinkError::Unreachable(format!("no route for {remote}"));
    for route in routes(state, remote).await? {
        let attempt = async {
            let mut c = connect(state, &route, remote).await?;
            negotiate(state, &mut c, local, remote, Purpose::Stanzas).await?;
            let link = Link {
                framed: c.framed,
                bidi: c.bidi,
            };
            Ok::<_, LinkError>((link, c.mechanism, c.certificate))
        };
        match attempt.await {
            Ok((link, mechanism, certificate)) => {
                let transport = route.kind.transport();
                let bidi = link.bidi;
                tracing::info!(%local, %remote, ?route, transport, mechanism, bidi, peer_certificate = %certificate, "s2s link up");
                return Ok(link);
            }
            Err(e) => {
                let hint = certificate_hint(&e.to_string(), local);
                tracing::info!(%local, %remote, ?route, "s2s route failed: {e}{hint}");
                last = e;
            }
        }
    }
    Err(last)
}

/// XEP-0220 §2.1.2: as receiving server, asks `originating`'s authoritative server whether
/// `key` is right for the stream `stream_id` it opened to us (`receiving`).
pub async fn verify_dialback(
    state: &Arc<ServerState>,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, LinkError> {
    let mut last = LinkError::Unreachable(format!("no route for {originating}"));
    for route in routes(state, originating).await? {
        let attempt = async {
            let mut c = connect(state, &route, originating).await?;
            negotiate(state, &mut c, receiving, originating, Purpose::Verify).await?;
            c.framed.queue(&dialback::verify_request(
                receiving,
                originating,
                stream_id,
                key,
            ));
            c.framed
                .flush()
                .await
                .map_err(|e| LinkError::Unreachable(e.to_string()))?;
            loop {
                let el = next_element(&mut c.framed).await?;
                if el.is("verify", dialback::NS) && el.attr("id") == Some(stream_id) {
                    let valid = el.attr("type") == Some("valid");
                    c.framed.close(false, None).await;
                    return Ok::<_, LinkError>(valid);
                }
            }
        };
        match attempt.await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod hint_tests {
    use super::certificate_hint;

    #[test]
    fn hints_at_our_certificate_only_for_certificate_failures() {
        let closed = "TLS: peer closed connection without sending TLS close_notify";
        assert!(certificate_hint(closed, "a.example")
            .contains("may not trust weft's certificate for a.example"));
        assert!(
            certificate_hint("received fatal alert: BadCertificate", "a.example")
                .contains("a.example")
        );
        assert_eq!(certificate_hint("connection refused", "a.example"), "");
    }
}
