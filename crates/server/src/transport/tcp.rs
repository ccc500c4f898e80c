//! TCP listeners for c2s and s2s: STARTTLS (RFC 6120 §5) on one port, Direct TLS (XEP-0368) on
//! another; and for XEP-0114 components, plain TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::framing::{Framed, TcpFraming};
use crate::negotiation::c2s::Transport;
use crate::state::ServerState;
use crate::transport::io::{MaybeTlsStream, PeerInfo};

/// A TLS handshake that takes longer than this is abandoned.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Which kind of stream a TCP listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    C2s,
    S2s,
    /// XEP-0114 external components (no TLS: they are expected on loopback or a private link).
    Component,
}

/// Accepts c2s or s2s connections until shutdown. `direct_tls` selects XEP-0368 on this port.
pub async fn serve(state: Arc<ServerState>, listener: TcpListener, role: Role, direct_tls: bool) {
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(guard) = state.limiter.try_acquire(addr.ip()) else {
            state.tracker.spawn(refuse_over_limit(stream, role));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state2 = state.clone();
        state.tracker.spawn(async move {
            let Some((io, peer)) = handshake(&state2, stream, addr, role, direct_tls).await else {
                return;
            };
            // The session gets a task of its own and this one ends: a task's memory is that of
            // its largest state (the TLS handshake), which an idle session should not keep.
            // The per-IP slot lives as long as the session.
            let tracker = state2.tracker.clone();
            match role {
                Role::C2s => {
                    let transport = Transport::Tcp { tls: peer.secure };
                    let framed = Framed::Tcp(Box::new(TcpFraming::new(
                        io,
                        state2.limits,
                        crate::ns::CLIENT,
                    )));
                    let session = crate::session::c2s::serve(state2, framed, peer, transport, None);
                    // `map` keeps the slot beside the future; an async block would hold the
                    // future twice (captured and awaited).
                    tracker.spawn(session.map(move |()| drop(guard)));
                }
                Role::S2s => {
                    let framed = Framed::Tcp(Box::new(TcpFraming::new(
                        io,
                        state2.limits,
                        crate::ns::SERVER,
                    )));
                    let session = crate::s2s::incoming::serve(state2, framed, peer, None);
                    // Boxed: the s2s future is large and incoming s2s links are few.
                    tracker.spawn(Box::pin(session).map(move |()| drop(guard)));
                }
                Role::Component => {
                    let framed = Framed::Tcp(Box::new(TcpFraming::new(
                        io,
                        state2.limits,
                        crate::ns::COMPONENT,
                    )));
                    let session = crate::component::session::serve(state2, framed, peer);
                    tracker.spawn(Box::pin(session).map(move |()| drop(guard)));
                }
            }
        });
    }
}

async fn handshake(
    state: &ServerState,
    stream: TcpStream,
    addr: SocketAddr,
    role: Role,
    direct_tls: bool,
) -> Option<(MaybeTlsStream, PeerInfo)> {
    if !direct_tls {
        return Some((MaybeTlsStream::Plain(stream), PeerInfo::plain(addr)));
    }
    let config = match role {
        Role::C2s => state.tls.direct_tls.clone(),
        // Never asked: component listeners have no Direct TLS.
        Role::S2s | Role::Component => state.tls.s2s_server.clone(),
    };
    let acceptor = TlsAcceptor::from(config);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let peer = PeerInfo::tls(addr, tls.get_ref().1, &state.tls.server_end_point);
            Some((MaybeTlsStream::Tls(Box::new(tls)), peer))
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

/// Over the per-IP cap: a stream error without waiting for the client's header
/// (RFC 6120 §4.9.1.3 lets the server open the stream to report it).
async fn refuse_over_limit(mut stream: TcpStream, role: Role) {
    let content = match role {
        Role::C2s => "jabber:client",
        Role::S2s => "jabber:server",
        Role::Component => crate::ns::COMPONENT,
    };
    let msg = concat!(
        "<?xml version='1.0'?><stream:stream xmlns='CONTENT' ",
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many connections from your address</text>",
        "</stream:error></stream:stream>"
    );
    let msg = msg.replace("CONTENT", content);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
