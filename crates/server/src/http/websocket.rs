//! The RFC 7395 WebSocket upgrade (RFC 6455 §4.2): the `xmpp` subprotocol is required (§3.1),
//! the Origin is checked against the allow-list, and the upgraded connection becomes a c2s
//! session. The handshake is answered here rather than through axum's WebSocket extractor so
//! that incoming and outgoing WebSocket streams share one tokio-tungstenite framing type.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::ConnInfo;
use crate::framing::websocket::{socket_config, WsIo};
use crate::framing::{Framed, WsFraming};
use crate::negotiation::c2s::Transport;
use crate::ns;
use crate::state::ServerState;
use crate::transport::io::{MaybeTlsStream, PeerInfo};
use crate::transport::shared::SharedWriter;

pub const SUBPROTOCOL: &str = "xmpp";

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// Does the `Sec-WebSocket-Protocol` list include `xmpp`?
fn offers_xmpp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn origin_allowed(state: &ServerState, headers: &HeaderMap) -> bool {
    let allowed = &state.config.websocket.allowed_origins;
    if allowed.is_empty() {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| allowed.iter().any(|a| a == o))
}

/// Behind a trusted TLS-terminating proxy (XEP-0468's HTTPS-only hosting) the connection
/// counts as secure, and a client certificate it forwards counts as presented.
fn forwarded_peer(state: &ServerState, peer: &PeerInfo, proxy_cert: &Option<String>) -> PeerInfo {
    let mut peer = peer.clone();
    if state.config.s2s.trusted_proxies.contains(&peer.addr.ip()) {
        peer.secure = true;
        if let Some(chain) = proxy_cert
            .as_deref()
            .and_then(crate::s2s::certs::chain_from_header)
        {
            peer.certs = Some(std::sync::Arc::new(chain));
        }
    }
    peer
}

pub async fn upgrade(State(state): State<Arc<ServerState>>, mut req: Request) -> Response {
    let headers = req.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this is the XMPP WebSocket endpoint (RFC 7395): use a WebSocket client\n",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "RFC 6455 §4.2.1: Sec-WebSocket-Version must be 13\n",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "RFC 6455 §4.2.1: Sec-WebSocket-Key is missing\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    // More than one copy means a proxy appended ours to a peer's forged one: believe neither.
    let mut copies = headers
        .get_all(state.config.s2s.client_cert_header.as_str())
        .iter();
    let proxy_cert = match (copies.next(), copies.next()) {
        (Some(v), None) => v.to_str().ok().map(str::to_string),
        (Some(_), Some(_)) => {
            tracing::warn!("several client certificate headers on one request; ignoring them");
            None
        }
        _ => None,
    };
    if !offers_xmpp(headers) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "RFC 7395 §3.1: the WebSocket handshake must offer the 'xmpp' subprotocol in Sec-WebSocket-Protocol\n",
        );
    }
    if !origin_allowed(&state, headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this Origin is not allowed to open XMPP WebSocket connections here\n",
        );
    }
    let Some(conn) = req.extensions().get::<ConnInfo>().cloned() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no connection information\n",
        );
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded\n",
        );
    };
    let tracker = state.tracker.clone();
    tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("WebSocket upgrade failed: {e}");
                return;
            }
        };
        let (io, shared) = unwrap_upgraded(upgraded, state.config.limits.session_queue);
        let socket =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config(state.limits)))
                .await;
        let ws_cfg = &state.config.websocket;
        // c2s and s2s share the endpoint: the namespace of the first <open/> decides
        // (RFC 7395 framing for clients, XEP-0468's framing-server for servers).
        let framing = WsFraming::new(
            socket,
            state.limits,
            ns::FRAMING,
            ws_cfg.ping_interval.0,
            ws_cfg.ping_timeout.0,
        )
        .with_shared_writer(shared);
        let mut framed = Framed::WebSocket(framing);
        let wait = state.config.c2s.unauthenticated_timeout.0;
        let first = tokio::time::timeout(wait, framed.recv()).await.ok();
        let peer = forwarded_peer(&state, &conn.peer, &proxy_cert);
        // The session gets a task of its own and this one ends: a task's memory is that of its
        // largest state (the upgrade, the first read), which an idle session should not keep.
        // The per-IP slot lives as long as the session.
        let tracker = state.tracker.clone();
        match &first {
            Some(Ok(crate::framing::Incoming::Header(h))) if h.ns == ns::FRAMING_SERVER => {
                if let Framed::WebSocket(f) = &mut framed {
                    f.set_framing_ns(ns::FRAMING_SERVER);
                }
                let session =
                    crate::s2s::incoming::serve(state, framed, peer, first.and_then(Result::ok));
                // Boxed: the s2s future is large and incoming s2s links are few.
                tracker.spawn(Box::pin(session).map(move |()| drop(conn)));
            }
            _ => {
                let transport = Transport::WebSocket { tls: peer.secure };
                let session = crate::session::c2s::serve(state, framed, peer, transport, first);
                // `map` keeps the slot beside the future; an async block would hold the
                // future twice (captured and awaited).
                tracker.spawn(session.map(move |()| drop(conn)));
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL)
        .body(Body::empty())
        .unwrap_or_default()
}

/// The connection under hyper's upgrade wrapper, read and written directly: hyper's wrapper
/// adds a rewind buffer and two layers of dynamic dispatch to every read and write of the
/// session. Bytes hyper read past the request (a client that sent frames before our 101,
/// which RFC 6455 §4.1 forbids but which loses nothing here) are read first.
fn unwrap_upgraded(
    upgraded: hyper::upgrade::Upgraded,
    queue_limit: usize,
) -> (Box<dyn WsIo>, Option<Arc<SharedWriter>>) {
    match upgraded.downcast::<TokioIo<MaybeTlsStream>>() {
        Ok(parts) if parts.read_buf.is_empty() => match parts.io.into_inner() {
            // Plain TCP: the write side is shared, see transport::shared.
            MaybeTlsStream::Plain(tcp) => {
                let (io, writer) = SharedWriter::split(tcp, queue_limit);
                (Box::new(io), Some(writer))
            }
            io => (Box::new(io), None),
        },
        Ok(parts) => (
            Box::new(Prefixed {
                prefix: parts.read_buf,
                io: parts.io.into_inner(),
            }),
            None,
        ),
        Err(upgraded) => (Box::new(TokioIo::new(upgraded)), None),
    }
}

/// A stream with bytes already read from it put back in front.
struct Prefixed {
    prefix: bytes::Bytes,
    io: MaybeTlsStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
