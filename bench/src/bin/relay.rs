//! weft-relay: a bare WebSocket relay, the ceiling any WebSocket XMPP router can approach.
//!
//! It accepts the `xmpp` subprotocol (RFC 7395 §3.1), pairs the two connections that ask for
//! the same path, and forwards every text or binary frame from one to the other unparsed. No
//! XML, no routing table, no authentication: what is left is tokio, tungstenite and the kernel.
//! `weft-bench throughput --target relay` drives it with the same messages as a server.
//! Runs on one thread (pin it with `taskset`) and exits by itself after `--max-seconds`.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Parser)]
#[command(about = "Bare WebSocket relay: pairs connections by path and forwards frames")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5290")]
    listen: SocketAddr,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

type Ws = WebSocketStream<TcpStream>;
/// Connections waiting for their partner, by path.
type Waiting = Rc<RefCell<HashMap<String, oneshot::Sender<Ws>>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!(
            "weft-relay listening on ws://{}/ (pairs by path)",
            args.listen
        );
        let waiting: Waiting = Rc::default();
        let serve = async {
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::task::spawn_local(accept(stream, waiting.clone()));
            }
        };
        tokio::select! {
            r = serve => r,
            _ = tokio::time::sleep(Duration::from_secs(args.max_seconds)) => {
                println!("weft-relay: --max-seconds reached, exiting");
                Ok(())
            }
        }
    })
}

// tungstenite's handshake callback signature returns a whole HTTP response as its error.
#[allow(clippy::result_large_err)]
async fn accept(stream: TcpStream, waiting: Waiting) {
    let path = Rc::new(RefCell::new(String::new()));
    let seen = path.clone();
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offers_xmpp = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|p| p.trim() == "xmpp"));
        if !offers_xmpp {
            let mut err = ErrorResponse::new(Some("the xmpp subprotocol is required".into()));
            *err.status_mut() = StatusCode::BAD_REQUEST;
            return Err(err);
        }
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        *seen.borrow_mut() = req.uri().path().to_string();
        Ok(resp)
    };
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let path = path.borrow().clone();
    let partner = waiting.borrow_mut().remove(&path);
    match partner {
        // The first of the pair waits here; the second hands its socket over and is done.
        Some(tx) => {
            let _ = tx.send(ws);
        }
        None => {
            let (tx, rx) = oneshot::channel();
            waiting.borrow_mut().insert(path, tx);
            if let Ok(other) = rx.await {
                let (a_tx, a_rx) = ws.split();
                let (b_tx, b_rx) = other.split();
                tokio::task::spawn_local(forward(a_rx, b_tx));
                forward(b_rx, a_tx).await;
            }
        }
    }
}

/// Copies frames from one side to the other, writing whatever has already arrived with one
/// flush (one syscall) instead of one per frame.
async fn forward(mut from: SplitStream<Ws>, mut to: SplitSink<Ws, Message>) {
    while let Some(Ok(msg)) = from.next().await {
        if !(msg.is_text() || msg.is_binary()) {
            continue; // pings are answered by tungstenite itself; a close ends the loop below
        }
        if to.feed(msg).await.is_err() {
            break;
        }
        for _ in 0..256 {
            let Some(Some(Ok(more))) = from.next().now_or_never() else {
                break;
            };
            if (more.is_text() || more.is_binary()) && to.feed(more).await.is_err() {
                return;
            }
        }
        if to.flush().await.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}
