//! RFC 7395 WebSocket framing (and XEP-0468 for s2s): every message one complete element,
//! `<open/>`/`<close/>` in the framing namespace, text frames only, WebSocket pings instead of
//! whitespace keepalives.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use weft_xml::{Limits, StreamHeader, XmlError};

use super::{FramingError, HeaderOut, Incoming};
use crate::error::{StreamError, StreamErrorCondition};
use crate::transport::shared::SharedWriter;

/// How long we wait for the peer's `<close/>` or WebSocket close frame when closing.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// RFC 6455 §7.4.1 close codes.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

/// Any byte stream a WebSocket runs over: an upgraded HTTP connection (server side) or a TLS
/// stream we opened (outgoing s2s). Boxed so both directions share one framing type.
pub trait WsIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> WsIo for T {}

pub type WsSocket = WebSocketStream<Box<dyn WsIo>>;

/// tungstenite's read buffer is allocated per connection and kept for its life, so it is
/// most of an idle session's memory; a stanza is usually a few hundred bytes, and bigger
/// frames grow the buffer as they arrive.
const READ_CHUNK_BYTES: usize = 1024;

/// Frames queued by one flush are written together up to this many bytes: a write buffer of
/// 0 made tungstenite send one syscall per stanza, which halved throughput under load.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// tungstenite settings from our limits: one message may not exceed the stanza limit, and
/// buffers start small so idle sessions stay cheap.
pub fn socket_config(limits: Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_stanza_bytes))
        .max_frame_size(Some(limits.max_stanza_bytes))
        .read_buffer_size(READ_CHUNK_BYTES)
        .write_buffer_size(WRITE_BATCH_BYTES)
}

pub struct WsFraming {
    /// The peer's label when its XML is traced (`s2s.trace_domains`).
    pub(crate) trace: Option<Arc<str>>,
    socket: WsSocket,
    limits: Limits,
    /// `urn:ietf:params:xml:ns:xmpp-framing` (c2s) or `…-framing-server` (XEP-0468 s2s).
    framing_ns: &'static str,
    out: Vec<Utf8Bytes>,
    ping: Interval,
    ping_timeout: Duration,
    awaiting_pong_since: Option<Instant>,
    close_code: u16,
    /// tokio-tungstenite ends the read side after any error; writing still works.
    read_failed: bool,
    /// The connection's write side when it is shared (plain TCP): handed to the registry at
    /// bind so that stanzas for this session are written by whoever routes them.
    shared: Option<Arc<SharedWriter>>,
}

/// The longest RFC 6455 frame header we write (a server's frames are not masked).
pub const MAX_HEADER: usize = 10;

/// RFC 6455 §5.2: the header of a final text frame of `len` bytes, written at the end of
/// `slot` (`MAX_HEADER` bytes) so that the payload can follow it; returns its length. The
/// delivering tasks frame stanzas themselves (`Wire::WebSocket`) since they do not own the
/// session's tungstenite state.
pub fn text_frame_header(slot: &mut [u8], len: usize) -> usize {
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x81; // FIN, text
    let used = if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    slot[MAX_HEADER - used..].copy_from_slice(&header[..used]);
    used
}

impl WsFraming {
    pub fn new(
        socket: WsSocket,
        limits: Limits,
        framing_ns: &'static str,
        ping_interval: Duration,
        ping_timeout: Duration,
    ) -> Self {
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        WsFraming {
            trace: None,
            socket,
            limits,
            framing_ns,
            out: Vec::new(),
            ping,
            ping_timeout,
            awaiting_pong_since: None,
            close_code: CLOSE_NORMAL,
            read_failed: false,
            shared: None,
        }
    }

    /// Notes that the socket's write side is `writer` (see `shared_writer`).
    pub fn with_shared_writer(mut self, writer: Option<Arc<SharedWriter>>) -> Self {
        self.shared = writer;
        self
    }

    pub fn shared_writer(&self) -> Option<Arc<SharedWriter>> {
        self.shared.clone()
    }

    /// Cancel-safe: `WebSocket::recv` and `Interval::tick` both are.
    pub async fn recv(&mut self) -> Result<Incoming, FramingError> {
        loop {
            tokio::select! {
                // The socket first: a frame that is already in is returned without touching
                // the ping timer (and without select!'s random draw); the timer is polled
                // whenever the socket has nothing, so it still fires on an idle connection.
                biased;
                msg = self.socket.next() => {
                    let msg = match msg {
                        None => return Err(FramingError::Disconnected),
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            self.read_failed = true;
                            let err = map_ws_error(e, self.limits);
                            self.close_code = match &err {
                                FramingError::Xml(XmlError::InvalidUtf8) => CLOSE_INVALID_PAYLOAD,
                                FramingError::Xml(XmlError::StanzaTooLarge { .. }) => CLOSE_TOO_BIG,
                                _ => self.close_code,
                            };
                            return Err(err);
                        }
                    };
                    match msg {
                        Message::Text(text) => return self.decode(&text),
                        Message::Binary(_) => {
                            self.close_code = CLOSE_UNSUPPORTED_DATA;
                            return Err(FramingError::Protocol(StreamError::new(
                                StreamErrorCondition::UnsupportedEncoding,
                                "RFC 7395 §3.2: XMPP messages must be WebSocket text frames",
                            )));
                        }
                        Message::Pong(_) => self.awaiting_pong_since = None,
                        // tungstenite answers pings by itself.
                        Message::Ping(_) => {}
                        Message::Close(_) => return Err(FramingError::Disconnected),
                        Message::Frame(_) => {}
                    }
                }
                _ = self.ping.tick() => {
                    match self.awaiting_pong_since {
                        Some(since) if since.elapsed() >= self.ping_timeout => {
                            return Err(FramingError::PingTimeout);
                        }
                        Some(_) => {}
                        None => {
                            self.awaiting_pong_since = Some(Instant::now());
                            if self.socket.send(Message::Ping(Default::default())).await.is_err() {
                                return Err(FramingError::Disconnected);
                            }
                        }
                    }
                }
            }
        }
    }

    fn decode(&mut self, text: &str) -> Result<Incoming, FramingError> {
        // RFC 7395 §3.3.3 / §3.8: a message is one element; whitespace keepalives are not used.
        if text.trim().is_empty() {
            return Err(FramingError::Protocol(StreamError::new(
                StreamErrorCondition::NotWellFormed,
                "RFC 7395 §3.8: whitespace keepalives are not allowed; use WebSocket pings",
            )));
        }
        if !text.starts_with('<') {
            return Err(FramingError::Xml(XmlError::NotWellFormed(
                "RFC 7395 §3.3.3: a message must start with '<'".into(),
            )));
        }
        let el = weft_xml::parse_message(text, self.limits)?;
        if el.name() == "open" {
            return Ok(Incoming::Header(header_of(&el)));
        }
        if el.name() == "close" && (el.ns() == self.framing_ns || is_compat_close(&el)) {
            return Ok(Incoming::Close);
        }
        Ok(Incoming::Element(el))
    }

    pub fn queue_header(&mut self, h: &HeaderOut<'_>) {
        let mut s = String::with_capacity(160);
        s.push_str("<open xmlns='");
        s.push_str(self.framing_ns);
        s.push('\'');
        if !h.id.is_empty() {
            push_attr(&mut s, "id", h.id);
        }
        push_attr(&mut s, "from", h.from);
        if let Some(to) = h.to {
            push_attr(&mut s, "to", to);
        }
        s.push_str(" version='1.0' xml:lang='en'/>");
        self.out.push(s.into());
    }

    pub fn queue_stream_element(&mut self, el: &Element) {
        let mut buf = Vec::with_capacity(128);
        super::tcp::write_prefixed_stream_element(el, &mut buf, true);
        self.push_bytes(buf);
    }

    pub fn queue(&mut self, el: &Element) {
        let mut buf = Vec::with_capacity(256);
        if el.has_ns(crate::s2s::dialback::NS) {
            crate::s2s::dialback::write_prefixed(el, &mut buf, true);
        } else {
            weft_xml::write_element(el, &mut buf);
        }
        self.push_bytes(buf);
    }

    fn push_bytes(&mut self, buf: Vec<u8>) {
        // The serialiser only writes UTF-8; a failure here would be our bug, not the peer's.
        match String::from_utf8(buf) {
            Ok(s) => self.out.push(s.into()),
            Err(e) => tracing::error!("serialiser produced invalid UTF-8: {e}"),
        }
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        for text in self.out.drain(..) {
            self.socket
                .feed(Message::Text(text))
                .await
                .map_err(std::io::Error::other)?;
        }
        self.socket.flush().await.map_err(std::io::Error::other)
    }

    /// Switches to the XEP-0468 namespace once an s2s `<open/>` was seen on a shared endpoint.
    pub fn set_framing_ns(&mut self, framing_ns: &'static str) {
        self.framing_ns = framing_ns;
    }

    /// A new `<open/>` follows without `<close/>` (RFC 7395 §3.7); nothing to reset per message.
    pub fn restart(&mut self) {}

    pub async fn close(&mut self, peer_closed: bool, see_other_uri: Option<&str>) {
        let mut s = format!("<close xmlns='{}'", self.framing_ns);
        if let Some(uri) = see_other_uri {
            push_attr(&mut s, "see-other-uri", uri);
        }
        s.push_str("/>");
        self.out.push(s.into());
        if self.flush().await.is_err() {
            return;
        }
        if self.read_failed {
            // Nothing more can be read: end with our close frame at once.
            let frame = CloseFrame {
                code: CloseCode::from(self.close_code),
                reason: Utf8Bytes::from_static(""),
            };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
            // Lingering close: bytes of the refused frame may still be unread, and closing a
            // socket with unread input makes the kernel send RST, which can destroy the error
            // and close frame before the peer reads them. Drain until the peer closes.
            use tokio::io::AsyncReadExt;
            let io = self.socket.get_mut();
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            return;
        }
        if !peer_closed {
            // Wait for the peer's <close/> (RFC 7395 §3.6), dropping anything else it sends.
            let waited = tokio::time::timeout(CLOSE_WAIT, async {
                loop {
                    match self.socket.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(el) = weft_xml::parse_message(&t, self.limits) {
                                if el.name() == "close" {
                                    return PeerAfterClose::SentClose;
                                }
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return PeerAfterClose::Gone,
                        // A broken frame after our close: still end with a close frame.
                        Some(Err(_)) => return PeerAfterClose::SentClose,
                        Some(Ok(_)) => {}
                    }
                }
            })
            .await;
            if matches!(waited, Ok(PeerAfterClose::Gone)) {
                // The peer closed the WebSocket itself; tungstenite has answered it.
                let _ = self.socket.flush().await;
                return;
            }
        } else {
            // The peer closed first, so it starts the WebSocket closing handshake; we answer it.
            // If it never does, we start it ourselves.
            let got_close = tokio::time::timeout(CLOSE_WAIT, async {
                loop {
                    match self.socket.next().await {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => {}
                    }
                }
            })
            .await;
            if got_close.is_ok() {
                // tungstenite already queued the close reply; drive it out.
                let _ = self.socket.flush().await;
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(self.close_code),
            reason: Utf8Bytes::from_static(""),
        };
        if self.socket.send(Message::Close(Some(frame))).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(m)) = self.socket.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

/// What the peer did after we sent `<close/>`.
enum PeerAfterClose {
    SentClose,
    Gone,
}

/// COMPAT(xmpp-proxy): it sends `<close/>` in the c2s framing namespace on s2s streams too.
fn is_compat_close(el: &Element) -> bool {
    el.ns() == crate::ns::FRAMING
}

fn header_of(el: &Element) -> StreamHeader {
    StreamHeader {
        name: el.name().to_string(),
        ns: el.ns(),
        default_ns: Some(el.ns()),
        attrs: el
            .attrs()
            .iter()
            .map(|((ns, name), v)| {
                let key = if ns.is_empty() {
                    name.to_string()
                } else if ns.as_str() == rxml::parser::XMLNS_XML {
                    format!("xml:{name}")
                } else {
                    format!("{{{}}}{name}", ns.as_str())
                };
                (key, v.to_string())
            })
            .collect(),
    }
}

fn push_attr(s: &mut String, name: &str, value: &str) {
    s.push(' ');
    s.push_str(name);
    s.push_str("='");
    s.push_str(&weft_xml::escape(value));
    s.push('\'');
}

fn map_ws_error(e: tungstenite::Error, limits: Limits) -> FramingError {
    match e {
        tungstenite::Error::Capacity(_) => FramingError::Xml(XmlError::StanzaTooLarge {
            limit: limits.max_stanza_bytes,
        }),
        tungstenite::Error::Utf8(_) => FramingError::Xml(XmlError::InvalidUtf8),
        tungstenite::Error::Io(io) => FramingError::Io(io),
        _ => FramingError::Disconnected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    #[test]
    fn text_frame_headers_match_tungstenites_for_every_length_form() {
        for len in [0, 1, 125, 126, 300, 65535, 65536, 200_000] {
            let payload = vec![b'a'; len];
            let mut expected = Vec::new();
            Frame::message(payload.clone(), OpCode::Data(Data::Text), true)
                .format(&mut expected)
                .unwrap();
            let mut slot = [0u8; MAX_HEADER];
            let used = text_frame_header(&mut slot, len);
            let mut ours = slot[MAX_HEADER - used..].to_vec();
            ours.extend_from_slice(&payload);
            assert_eq!(ours, expected, "payload of {len} bytes");
        }
    }
}
