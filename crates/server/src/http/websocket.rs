//! The RFC 7395 WebSocket upgrade: the `xmpp` subprotocol is required (§3.1), the Origin is
//! checked against the allow-list, and the socket is handed to a c2s session.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::ConnInfo;
use crate::framing::{Framed, WsFraming};
use crate::negotiation::c2s::Transport;
use crate::ns;
use crate::state::ServerState;

pub const SUBPROTOCOL: &str = "xmpp";

/// Does the `Sec-WebSocket-Protocol` list include `xmpp`?
fn offers_xmpp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
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

pub async fn upgrade(
    State(state): State<Arc<ServerState>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !offers_xmpp(&headers) {
        return (
            StatusCode::BAD_REQUEST,
            "RFC 7395 §3.1: the WebSocket handshake must offer the 'xmpp' subprotocol in Sec-WebSocket-Protocol\n",
        )
            .into_response();
    }
    if !origin_allowed(&state, &headers) {
        return (
            StatusCode::FORBIDDEN,
            "this Origin is not allowed to open XMPP WebSocket connections here\n",
        )
            .into_response();
    }
    let max = state.limits.max_stanza_bytes;
    ws.protocols([SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .on_upgrade(move |socket| {
            let tracker = state.tracker.clone();
            tracker.track_future(async move {
                let ws_cfg = &state.config.websocket;
                let framing = WsFraming::new(
                    socket,
                    state.limits,
                    ns::FRAMING,
                    ws_cfg.ping_interval.0,
                    ws_cfg.ping_timeout.0,
                );
                let transport = Transport::WebSocket {
                    tls: conn.peer.secure,
                };
                let peer = conn.peer.clone();
                // Keep the per-IP slot for the life of the session.
                let _slot = conn;
                crate::session::c2s::serve(state, Framed::WebSocket(framing), peer, transport)
                    .await;
            })
        })
}
