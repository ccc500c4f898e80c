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
    /// The peer answered but broke the protocol or refused us.
    #[error("the server refused the link: {0}")]
    Refused(String),
}

impl LinkError {
    /// The stanza error queued stanzas get (RFC 6120 §8.3.3.14/.15).
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            LinkError::Unreachable(_) => StanzaErrorCondition::RemoteServerNotFound,
            LinkError::Refused(_) => StanzaErrorCondition::RemoteServerNotFound,
        }
    }
}

fn refused(why: impl Into<String>) -> LinkError {
    LinkError::Refused(why.into())
}

/// Where to connect for a remote domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// XEP-0468 over wss://.
    WebSocket(String),
    /// RFC 6120 TCP with STARTTLS.
    StartTls(String, u16),
    /// XEP-0368 Direct TLS.
    DirectTls(String, u16),
}

/// The routes to try, in the operator's transport order: configured routes, else the domain
/// on 5269 (host-meta and SRV discovery plug in here).
pub fn routes(state: &ServerState, remote: &str) -> Vec<Route> {
    let runtime = state.s2s.runtime_routes(remote);
    let configured = runtime
        .as_ref()
        .or_else(|| state.config.s2s.routes.get(remote));
    let mut routes: Vec<Route> = match configured {
        Some(list) => list.iter().filter_map(|r| parse_route(r)).collect(),
        None => vec![Route::StartTls(remote.to_string(), 5269)],
    };
    let rank = |r: &Route| {
        let kind = match r {
            Route::WebSocket(_) => weft_config::S2sTransport::Websocket,
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
    routes
}

fn parse_route(r: &str) -> Option<Route> {
    if r.starts_with("wss://") {
        return Some(Route::WebSocket(r.to_string()));
    }
    let (scheme, rest) = r.split_once("://")?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    let port = port.parse().ok()?;
    match scheme {
        "tcp" => Some(Route::StartTls(host.to_string(), port)),
        "tls" => Some(Route::DirectTls(host.to_string(), port)),
        _ => None,
    }
}

/// An authenticated outgoing stream.
pub struct Link {
    pub framed: Framed,
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
}

async fn connect(state: &ServerState, route: &Route, remote: &str) -> Result<Connected, LinkError> {
    let limits = state.limits;
    let unreachable = |e: std::io::Error| LinkError::Unreachable(e.to_string());
    let server_name = |host: &str| -> Result<ServerName<'static>, LinkError> {
        // Verify (and send SNI) for the domain we want, unless the route names another host.
        let name = if host.parse::<std::net::IpAddr>().is_ok() {
            remote
        } else {
            host
        };
        ServerName::try_from(name.to_string()).map_err(|e| refused(e.to_string()))
    };
    match route {
        Route::StartTls(host, port) => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(unreachable)?;
            let _ = tcp.set_nodelay(true);
            let framed = Framed::Tcp(Box::new(TcpFraming::new(
                MaybeTlsStream::Plain(tcp),
                limits,
                ns::SERVER,
            )));
            Ok(Connected {
                framed,
                tls: false,
                peer_certs: Vec::new(),
            })
        }
        Route::DirectTls(host, port) => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(unreachable)?;
            let _ = tcp.set_nodelay(true);
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
            })
        }
        Route::WebSocket(url) => {
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
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(unreachable)?;
            let _ = tcp.set_nodelay(true);
            let connector = tokio_rustls::TlsConnector::from(state.tls.s2s_client_https.clone());
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
            let connector = tokio_rustls::TlsConnector::from(state.tls.s2s_client.clone());
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
        let peer_valid = state.s2s.verifier.valid_for(&c.peer_certs, remote);
        if cfg.require_valid_certificates && !peer_valid {
            return Err(refused(format!(
                "the peer's certificate is not valid for {remote}"
            )));
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
                    Some("valid") => Ok(stream_id),
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
    for route in routes(state, remote) {
        let attempt = async {
            let mut c = connect(state, &route, remote).await?;
            negotiate(state, &mut c, local, remote, Purpose::Stanzas).await?;
            Ok::<_, LinkError>(Link { framed: c.framed })
        };
        match attempt.await {
            Ok(link) => {
                tracing::info!(%local, %remote, ?route, "s2s link up");
                return Ok(link);
            }
            Err(e) => {
                tracing::info!(%local, %remote, ?route, "s2s route failed: {e}");
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
    for route in routes(state, originating) {
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
