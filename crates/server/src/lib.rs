//! weft's server: transports, framing, stream negotiation, sessions, the router and feature
//! modules, and the HTTP side (host-meta, WebSocket). See docs/architecture.md for the map.
#![forbid(unsafe_code)]

pub mod compliance;
pub mod component;
pub mod error;
pub mod framing;
pub mod http;
pub mod modules;
pub mod negotiation;
pub mod ns;
pub mod router;
pub mod s2s;
pub mod session;
pub mod stanza;
pub mod state;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
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
    pub s2s: Vec<SocketAddr>,
    pub s2s_direct_tls: Vec<SocketAddr>,
    /// XEP-0114 external components.
    pub component: Vec<SocketAddr>,
}

/// Binds every configured listener (port 0 picks a free port) and starts serving.
pub async fn start(
    mut config: Config,
    storage: Storage,
    tls: TlsSetup,
) -> anyhow::Result<RunningServer> {
    let http = bind_all(&config.listen.http, "http").await?;
    let https = bind_all(&config.listen.https, "https").await?;
    let c2s = bind_all(&config.listen.c2s, "c2s").await?;
    let c2s_direct_tls = bind_all(&config.listen.c2s_direct_tls, "c2s_direct_tls").await?;
    let (s2s_addrs, s2s_tls_addrs) = if config.s2s.enabled {
        (
            config.listen.s2s.clone(),
            config.listen.s2s_direct_tls.clone(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let s2s = bind_all(&s2s_addrs, "s2s").await?;
    let s2s_direct_tls = bind_all(&s2s_tls_addrs, "s2s_direct_tls").await?;
    let component = bind_all(&config.listen.component, "component").await?;
    // From here on the configuration names the bound addresses (host-meta derives URLs from them).
    let addrs = |ls: &[TcpListener]| {
        ls.iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
    };
    config.listen.http = addrs(&http)?;
    config.listen.https = addrs(&https)?;
    config.listen.c2s = addrs(&c2s)?;
    config.listen.c2s_direct_tls = addrs(&c2s_direct_tls)?;
    config.listen.s2s = addrs(&s2s)?;
    config.listen.s2s_direct_tls = addrs(&s2s_direct_tls)?;
    config.listen.component = addrs(&component)?;
    let state = ServerState::new(config, storage, Arc::new(tls))?;
    state.modules.start(&state).await?;
    let listen = &state.config.listen;
    let running = RunningServer {
        state: state.clone(),
        http: listen.http.clone(),
        https: listen.https.clone(),
        c2s: listen.c2s.clone(),
        c2s_direct_tls: listen.c2s_direct_tls.clone(),
        s2s: listen.s2s.clone(),
        s2s_direct_tls: listen.s2s_direct_tls.clone(),
        component: listen.component.clone(),
    };
    for l in http {
        state.tracker.spawn(http::serve(state.clone(), l, None));
    }
    for l in https {
        let acceptor = TlsAcceptor::from(state.tls.https.clone());
        state
            .tracker
            .spawn(http::serve(state.clone(), l, Some(acceptor)));
    }
    use transport::tcp::Role;
    for (listeners, role, direct_tls) in [
        (c2s, Role::C2s, false),
        (c2s_direct_tls, Role::C2s, true),
        (s2s, Role::S2s, false),
        (s2s_direct_tls, Role::S2s, true),
        (component, Role::Component, false),
    ] {
        for l in listeners {
            state
                .tracker
                .spawn(transport::tcp::serve(state.clone(), l, role, direct_tls));
        }
    }
    Ok(running)
}

async fn bind_all(addrs: &[SocketAddr], what: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(bind(*a, what).await?);
    }
    Ok(out)
}

/// The accept queue of every listener. `TcpListener::bind` asks for std's 128 (mio 1.x): a
/// burst of connections beyond it (clients reconnecting after a restart, BOSH sessions
/// opening their second connection at once) overflows the queue, and each dropped SYN costs
/// its client a one-second retransmission.
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does on Unix: a restarted server can listen again at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().with_context(|| format!("cannot listen on {addr} (listen.{what})"))
}

impl RunningServer {
    /// Lets the modules say their last words ([`Module::stopping`](modules::Module::stopping)),
    /// closes every stream (with `see-other-uri` where configured) and waits up to `grace` for
    /// the closing handshakes to finish.
    pub async fn shutdown(&self, grace: Duration) {
        // Last words to the clients first (rooms' 332), while their sessions still take them.
        self.state.modules.stopping(&self.state).await;
        self.state.shutdown.cancel();
        self.state
            .sessions
            .stop_all(crate::session::stop::StopReason::Shutdown);
        self.state.tracker.close();
        if tokio::time::timeout(grace, self.state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {grace:?}");
        }
        self.state.modules.stop(&self.state).await;
    }
}
