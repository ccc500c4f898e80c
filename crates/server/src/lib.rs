//! weft's server: transports, framing, stream negotiation, sessions, the router and feature
//! modules, and the HTTP side (host-meta, WebSocket). See docs/architecture.md for the map.
#![forbid(unsafe_code)]

pub mod error;
pub mod framing;
pub mod http;
pub mod modules;
pub mod negotiation;
pub mod ns;
pub mod router;
pub mod session;
pub mod stanza;
pub mod state;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use weft_config::Config;
use weft_storage::Storage;

pub use state::ServerState;
pub use transport::tls::TlsSetup;

/// A started server: where it listens, and the handle to stop it.
pub struct RunningServer {
    pub state: Arc<ServerState>,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub c2s: Vec<SocketAddr>,
    pub c2s_direct_tls: Vec<SocketAddr>,
}

/// Binds every configured listener (port 0 picks a free port) and starts serving.
pub async fn start(
    config: Config,
    storage: Storage,
    tls: TlsSetup,
) -> anyhow::Result<RunningServer> {
    let listen = config.listen.clone();
    let state = ServerState::new(config, storage, Arc::new(tls));
    let mut running = RunningServer {
        state: state.clone(),
        http: Vec::new(),
        https: Vec::new(),
        c2s: Vec::new(),
        c2s_direct_tls: Vec::new(),
    };
    for addr in &listen.http {
        let l = bind(*addr, "http").await?;
        running.http.push(l.local_addr()?);
        state.tracker.spawn(http::serve(state.clone(), l, None));
    }
    for addr in &listen.https {
        let l = bind(*addr, "https").await?;
        running.https.push(l.local_addr()?);
        let acceptor = TlsAcceptor::from(state.tls.https.clone());
        state
            .tracker
            .spawn(http::serve(state.clone(), l, Some(acceptor)));
    }
    for addr in &listen.c2s {
        let l = bind(*addr, "c2s").await?;
        running.c2s.push(l.local_addr()?);
        state
            .tracker
            .spawn(transport::tcp::serve_c2s(state.clone(), l, false));
    }
    for addr in &listen.c2s_direct_tls {
        let l = bind(*addr, "c2s_direct_tls").await?;
        running.c2s_direct_tls.push(l.local_addr()?);
        state
            .tracker
            .spawn(transport::tcp::serve_c2s(state.clone(), l, true));
    }
    Ok(running)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (listen.{what})"))
}

impl RunningServer {
    /// Closes every stream (with `see-other-uri` where configured) and waits up to `grace` for
    /// the closing handshakes to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.state.shutdown.cancel();
        self.state.tracker.close();
        if tokio::time::timeout(grace, self.state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {grace:?}");
        }
    }
}
