//! The HTTP and HTTPS listeners: XEP-0156 host-meta, the RFC 7395 WebSocket endpoint, the
//! XEP-0206 BOSH endpoint, health.

mod bosh;
mod host_meta;
mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::state::ServerState;
use crate::transport::io::{MaybeTlsStream, PeerInfo};
use crate::transport::limits::ConnectionGuard;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Slow or idle HTTP clients may not hold a connection before sending their request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// What a request knows about its connection. The guard keeps the per-IP slot for as long as
/// the connection lives, including after a WebSocket upgrade.
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: PeerInfo,
    pub _slot: Arc<ConnectionGuard>,
}

pub fn router(state: Arc<ServerState>) -> Router {
    let mut app = Router::new();
    // Routes of feature modules (XEP-0363 uploads).
    for routes in state.modules.http_routes() {
        app = app.merge(routes);
    }
    if state.config.bosh.enabled {
        // XEP-0206 on both listeners.
        app = app.route(
            &state.config.bosh.path,
            axum::routing::post(bosh::post)
                .options(bosh::preflight)
                .get(bosh::info),
        );
    }
    app.route("/.well-known/host-meta", get(host_meta::xrd))
        .route("/.well-known/host-meta.json", get(host_meta::jrd))
        .route(&state.config.websocket.path, get(websocket::upgrade))
        .route("/health", get(health))
        .with_state(state)
}

/// 200 while serving, 503 while draining, so load balancers move new clients elsewhere.
async fn health(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
) -> (StatusCode, &'static str) {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Serves HTTP (or HTTPS with `tls`) on `listener` until shutdown.
pub async fn serve(state: Arc<ServerState>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let app = router(state.clone());
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let slot = state.limiter.try_acquire(addr.ip());
        let (app, state2, tls) = (app.clone(), state.clone(), tls.clone());
        state.tracker.spawn(async move {
            let (io, peer) = match tls {
                None => (MaybeTlsStream::Plain(stream), PeerInfo::plain(addr)),
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let peer =
                                PeerInfo::tls(addr, tls.get_ref().1, &state2.tls.server_end_point);
                            (MaybeTlsStream::Tls(Box::new(tls)), peer)
                        }
                        _ => return,
                    }
                }
            };
            serve_connection(state2, app, io, peer, slot).await;
        });
    }
}

async fn serve_connection(
    state: Arc<ServerState>,
    app: Router,
    io: MaybeTlsStream,
    peer: PeerInfo,
    slot: Option<ConnectionGuard>,
) {
    let io = TokioIo::new(io);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let Some(slot) = slot else {
        // Over the per-IP cap: every request on this connection gets 429.
        let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header("connection", "close")
                    .body(Body::from("too many connections from your address\n"))
                    .unwrap_or_default(),
            )
        });
        let _ = builder.serve_connection(io, svc).await;
        return;
    };
    let info = ConnInfo {
        peer,
        _slot: Arc::new(slot),
    };
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        app.clone().oneshot(req.map(Body::new))
    });
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// The listener's address, for logs and URLs.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}
