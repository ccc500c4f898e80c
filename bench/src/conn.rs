//! Client connections of the load generator: RFC 7395 over ws:// and wss://, RFC 6120 over TCP
//! (plain, STARTTLS, or XEP-0368 Direct TLS), XEP-0206 BOSH over http:// (`crate::bosh`), each
//! from one of several loopback source addresses.
//!
//! Every connection binds its own 127.0.0.x source before connecting so that tens of thousands
//! of sessions do not exhaust one address's ephemeral ports. Certificates are not verified: the
//! servers under test run on loopback with self-signed certificates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::bosh::BoshConn;
use crate::split::{Piece, Splitter};
use crate::xml;

pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Ws,
    Wss,
    Tcp,
    /// TCP with STARTTLS (RFC 6120 §5).
    TcpTls,
    /// XEP-0368 Direct TLS.
    TcpDirectTls,
    /// XEP-0124 / XEP-0206 BOSH over http://, up to two kept-alive connections per session.
    Bosh,
}

impl Transport {
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Ws | Transport::Bosh => 5280,
            Transport::Wss => 5443,
            Transport::Tcp | Transport::TcpTls => 5222,
            Transport::TcpDirectTls => 5223,
        }
    }
    pub fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Tcp => "tcp",
            Transport::TcpTls => "tcp-tls",
            Transport::TcpDirectTls => "tcp-direct-tls",
            Transport::Bosh => "bosh",
        }
    }
    /// The HTTP path when `--path` is not given.
    pub fn default_path(self) -> &'static str {
        match self {
            Transport::Bosh => "/http-bind",
            _ => "/xmpp-websocket",
        }
    }
}

/// Where and how to connect.
pub struct Dialer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub path: String,
    pub domain: String,
    sources: Vec<Ipv4Addr>,
    tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    pub fn new(
        transport: Transport,
        addr: SocketAddr,
        path: &str,
        domain: &str,
        sources: usize,
    ) -> Self {
        // 127.0.0.2 onwards; all of 127.0.0.0/8 reaches the loopback interface on Linux.
        let sources = if addr.ip().is_loopback() && sources > 0 {
            (0..sources.min(250))
                .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
                .collect()
        } else {
            Vec::new()
        };
        Dialer {
            transport,
            addr,
            path: path.into(),
            domain: domain.into(),
            sources,
            tls: Arc::new(crate::tls::client_config()),
        }
    }

    /// The source address of connection number `index`, if sources are spread.
    fn source(&self, index: usize) -> Option<Ipv4Addr> {
        (!self.sources.is_empty() && self.addr.is_ipv4())
            .then(|| self.sources[index % self.sources.len()])
    }

    async fn tcp(&self, index: usize) -> anyhow::Result<TcpStream> {
        dial(self.addr, self.source(index)).await
    }

    async fn tls(&self, io: Box<dyn Io>) -> anyhow::Result<Box<dyn Io>> {
        let name = ServerName::try_from(self.domain.clone())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, io)
            .await?;
        Ok(Box::new(tls))
    }

    /// Opens connection number `index` (which picks the source address); `path` overrides the
    /// WebSocket path (the relay pairs clients by path).
    pub async fn connect(&self, index: usize, path: Option<&str>) -> anyhow::Result<Conn> {
        let tcp = self.tcp(index).await?;
        if self.transport == Transport::Bosh {
            let path = path.unwrap_or(&self.path);
            return Ok(Conn::Bosh(BoshConn::new(
                tcp,
                self.addr,
                self.source(index),
                path,
                &self.domain,
            )));
        }
        let io: Box<dyn Io> = match self.transport {
            Transport::Wss | Transport::TcpDirectTls => self.tls(Box::new(tcp)).await?,
            _ => Box::new(tcp),
        };
        if !self.transport.is_ws() {
            return Ok(Conn::Tcp(TcpConn {
                io,
                rbuf: Vec::with_capacity(4096),
                split: Splitter::default(),
                wbuf: Vec::new(),
            }));
        }
        let scheme = if self.transport == Transport::Wss {
            "wss"
        } else {
            "ws"
        };
        let url = format!(
            "{scheme}://{}:{}{}",
            self.domain,
            self.addr.port(),
            path.unwrap_or(&self.path)
        );
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        // Small read buffers: thousands of idle sessions live in this one process.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, resp) =
            tokio_tungstenite::client_async_with_config(request, io, Some(config)).await?;
        if resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .is_none_or(|p| p != "xmpp")
        {
            bail!("server did not select the xmpp subprotocol (RFC 7395 §3.1)");
        }
        Ok(Conn::Ws(ws))
    }

    /// STARTTLS (RFC 6120 §5.4.3.3) on an open TCP connection, after `<proceed/>`.
    pub async fn starttls(&self, conn: Conn) -> anyhow::Result<Conn> {
        let Conn::Tcp(t) = conn else {
            bail!("STARTTLS on a WebSocket")
        };
        let io = self.tls(t.io).await?;
        Ok(Conn::Tcp(TcpConn {
            io,
            rbuf: Vec::with_capacity(4096),
            split: Splitter::default(),
            wbuf: Vec::new(),
        }))
    }
}

/// Opens a TCP connection to `addr` from `src` (a loopback source address), without Nagle.
pub async fn dial(addr: SocketAddr, src: Option<Ipv4Addr>) -> anyhow::Result<TcpStream> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(src) = src {
        socket
            .bind(SocketAddr::new(src.into(), 0))
            .with_context(|| format!("bind {src}"))?;
    }
    let stream = socket.connect(addr).await.context("connect")?;
    // Stanzas are small and latency is measured: never wait for Nagle.
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub struct TcpConn {
    io: Box<dyn Io>,
    rbuf: Vec<u8>,
    split: Splitter,
    wbuf: Vec<u8>,
}

// One per session, moved only once after login: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Ws(WebSocketStream<Box<dyn Io>>),
    Tcp(TcpConn),
    Bosh(BoshConn),
}

/// A received element's text, without copying WebSocket payloads.
pub enum Text {
    Ws(Utf8Bytes),
    Owned(String),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Ws(b) => b.as_str(),
            Text::Owned(s) => s,
        }
    }
}

pub enum Event {
    /// `<open/>` or `<stream:stream>`; over BOSH the session creation response and the
    /// response to a restart.
    Header,
    Element(Text),
    /// `<close/>`, `</stream:stream>`, a close frame or end of file; over BOSH a
    /// `type='terminate'` body without a condition (one with a condition is an error).
    Closed,
}

impl Conn {
    /// Sends the stream header for a new stream or a restart (RFC 7395 §3.4, RFC 6120 §4.2).
    /// Over BOSH: the session creation request, then restarts (XEP-0206 §5).
    pub async fn open_stream(&mut self, domain: &str) -> anyhow::Result<()> {
        let header = match self {
            Conn::Bosh(b) => return b.open_stream().await,
            Conn::Ws(_) => format!(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>"
            ),
            Conn::Tcp(t) => {
                t.split.restart();
                t.rbuf.clear();
                format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")
            }
        };
        self.send(header).await?;
        self.flush().await
    }

    /// Queues one element; nothing reaches the socket before [`Conn::flush`] (batching; over
    /// BOSH, all elements of one flush go in one `<body/>`).
    pub async fn send(&mut self, s: String) -> anyhow::Result<()> {
        match self {
            Conn::Ws(ws) => ws.feed(Message::Text(s.into())).await?,
            Conn::Tcp(t) => {
                t.wbuf.extend_from_slice(s.as_bytes());
                if t.wbuf.len() >= 64 * 1024 {
                    t.io.write_all(&t.wbuf).await?;
                    t.wbuf.clear();
                }
            }
            Conn::Bosh(b) => b.send(s).await?,
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Conn::Ws(ws) => ws.flush().await?,
            Conn::Tcp(t) => {
                if !t.wbuf.is_empty() {
                    t.io.write_all(&t.wbuf).await?;
                    t.wbuf.clear();
                }
                t.io.flush().await?;
            }
            Conn::Bosh(b) => b.flush().await?,
        }
        Ok(())
    }

    /// The next event. Cancel-safe, so it can sit in `select!` next to a sender.
    pub async fn recv(&mut self) -> anyhow::Result<Event> {
        match self {
            Conn::Ws(ws) => loop {
                let text = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(b))) => Utf8Bytes::try_from(b)?,
                    Some(Ok(Message::Close(_))) | None => return Ok(Event::Closed),
                    Some(Ok(_)) => continue, // pings are answered by tungstenite
                    Some(Err(e)) => return Err(e.into()),
                };
                return Ok(match xml::name(&text) {
                    "open" => Event::Header,
                    "close" => Event::Closed,
                    _ => Event::Element(Text::Ws(text)),
                });
            },
            Conn::Tcp(t) => loop {
                if let Some(piece) = t.split.next(&t.rbuf) {
                    let ev = match piece {
                        Piece::Header(_) => Event::Header,
                        Piece::End => Event::Closed,
                        Piece::Element(r) => {
                            Event::Element(Text::Owned(String::from_utf8(t.rbuf[r].to_vec())?))
                        }
                    };
                    return Ok(ev);
                }
                t.split.compact(&mut t.rbuf);
                if t.rbuf.capacity() - t.rbuf.len() < 1024 {
                    t.rbuf.reserve(4096);
                }
                if t.io.read_buf(&mut t.rbuf).await? == 0 {
                    return Ok(Event::Closed);
                }
            },
            Conn::Bosh(b) => b.recv().await,
        }
    }

    /// Ends the stream politely (RFC 7395 §3.6, RFC 6120 §4.4) without waiting for the answer.
    pub async fn close(&mut self) {
        let end = match self {
            // A terminate body (XEP-0124 §13); it waits briefly for the answer, so that the
            // sockets closing do not cut it off.
            Conn::Bosh(b) => return b.close().await,
            Conn::Ws(_) => "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
            Conn::Tcp(_) => "</stream:stream>",
        };
        if self.send(end.into()).await.is_ok() {
            let _ = self.flush().await;
        }
    }
}
