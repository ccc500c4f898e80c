//! Framing: turns a transport's bytes or WebSocket messages into stream events and back. TCP
//! (RFC 6120 streaming XML) and WebSocket (RFC 7395 / XEP-0468, one element per message) differ
//! only here; everything above sees the same `Incoming` events.

pub mod bosh;
pub mod tcp;
pub mod websocket;

use minidom::Element;
use weft_xml::{StreamHeader, XmlError};

use crate::error::StreamError;
use crate::stanza::StanzaText;
use crate::transport::shared::{Refused, SharedWriter};

pub use bosh::BoshFraming;
pub use tcp::TcpFraming;
pub use websocket::WsFraming;

/// A stream event from the peer.
#[derive(Debug)]
pub enum Incoming {
    /// `<stream:stream>` or `<open/>`; namespace checks are the negotiation's job.
    Header(StreamHeader),
    Element(Element),
    /// `</stream:stream>` or `<close/>`.
    Close,
}

/// Why a stream cannot go on reading.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// Bad XML from the peer: answered with a stream error.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// A framing rule broken (RFC 7395 §3.2 binary frame, §3.3.3 whitespace message, …).
    #[error("{}", .0.text)]
    Protocol(StreamError),
    /// The peer stopped answering WebSocket pings.
    #[error("peer did not answer pings")]
    PingTimeout,
    /// The connection dropped without a stream close.
    #[error("connection closed by peer")]
    Disconnected,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FramingError {
    /// The stream error to send, when the connection is still writable.
    pub fn stream_error(&self) -> Option<StreamError> {
        match self {
            FramingError::Xml(e) => Some(StreamError::from(e)),
            FramingError::Protocol(e) => Some(e.clone()),
            FramingError::PingTimeout => Some(StreamError::new(
                crate::error::StreamErrorCondition::ConnectionTimeout,
                "no answer to WebSocket pings",
            )),
            FramingError::Disconnected | FramingError::Io(_) => None,
        }
    }
}

/// How a stanza is written into a shared connection (`transport::shared`) by the task that
/// delivers it: the same bytes the session's own framing would write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A c2s TCP stream: `jabber:client` is the stream's default namespace.
    TcpClient,
    /// RFC 7395: one text frame per stanza, which carries its own namespace.
    WebSocket,
}

impl Wire {
    /// Writes `el` to the connection; `text`, when given, is `el` as
    /// [`weft_xml::write_element`] writes it, copied instead of serialising `el` again.
    pub fn deliver(
        self,
        writer: &std::sync::Arc<SharedWriter>,
        el: &Element,
        text: Option<&StanzaText>,
    ) -> Result<(), Refused> {
        let parts = text.map(StanzaText::parts);
        match self {
            Wire::TcpClient => writer.deliver(0, |buf, _| {
                match parts.and_then(|[head, child, tail]| {
                    Some((in_client_stream(el, head)?, child, tail))
                }) {
                    Some(((open, rest), child, tail)) => {
                        for part in [open, rest, child, tail] {
                            buf.extend_from_slice(part.as_bytes());
                        }
                    }
                    None => weft_xml::write_element_in(el, crate::ns::CLIENT, buf),
                }
                0
            }),
            Wire::WebSocket => writer.deliver(websocket::MAX_HEADER, |buf, start| {
                let payload = start + websocket::MAX_HEADER;
                match parts {
                    Some(parts) => {
                        for part in parts {
                            buf.extend_from_slice(part.as_bytes());
                        }
                    }
                    None => weft_xml::write_element(el, buf),
                }
                let len = buf.len() - payload;
                websocket::text_frame_header(&mut buf[start..payload], len)
            }),
        }
    }
}

/// One stanza for many recipients that differ only in its `to` (a room's message to each of
/// its occupants), serialised once per wire form on first use: a copy written straight into a
/// connection is then a byte copy, where a cloned element serialised per recipient cost a
/// 500-occupant room most of its CPU.
pub struct Copies {
    el: Element,
    tcp: std::sync::OnceLock<weft_xml::Slotted>,
    ws: std::sync::OnceLock<weft_xml::Slotted>,
}

impl Copies {
    /// `el` has no `to`.
    pub fn new(el: Element) -> Copies {
        Copies {
            el,
            tcp: std::sync::OnceLock::new(),
            ws: std::sync::OnceLock::new(),
        }
    }

    /// The copy for `to` as an element, for the recipients that take elements.
    pub fn element_to(&self, to: &str) -> Element {
        let mut copy = self.el.clone();
        crate::stanza::set_attr(&mut copy, rxml::xml_ncname!("to").into(), to);
        copy
    }
}

impl Wire {
    /// Writes the copy of `copies` for `to` (see `Wire::deliver`).
    pub fn deliver_copy(
        self,
        writer: &std::sync::Arc<SharedWriter>,
        copies: &Copies,
        to: &str,
    ) -> Result<(), Refused> {
        match self {
            Wire::TcpClient => {
                let slotted = copies.tcp.get_or_init(|| {
                    weft_xml::Slotted::new(&copies.el, Some(crate::ns::CLIENT), "to")
                });
                writer.deliver(0, |buf, _| {
                    slotted.write(to, buf);
                    0
                })
            }
            Wire::WebSocket => {
                let slotted = copies
                    .ws
                    .get_or_init(|| weft_xml::Slotted::new(&copies.el, None, "to"));
                writer.deliver(websocket::MAX_HEADER, |buf, start| {
                    let payload = start + websocket::MAX_HEADER;
                    slotted.write(to, buf);
                    let len = buf.len() - payload;
                    websocket::text_frame_header(&mut buf[start..payload], len)
                })
            }
        }
    }
}

/// `text` (`el` by `weft_xml::write_element`) as `weft_xml::write_element_in(el,
/// jabber:client)` writes it, in two pieces: the same bytes without the root's
/// `xmlns='jabber:client'`, which a stream in that namespace leaves out. None when `el` is in
/// another namespace (or `text` does not begin as expected).
fn in_client_stream<'t>(el: &Element, text: &'t str) -> Option<(&'t str, &'t str)> {
    const DECL: &str = " xmlns='jabber:client'";
    if !el.has_ns(crate::ns::CLIENT) {
        return None;
    }
    if !text.strip_prefix('<')?.starts_with(el.name()) {
        return None;
    }
    let open = 1 + el.name().len();
    let rest = text.get(open..)?.strip_prefix(DECL)?;
    Some((&text[..open], rest))
}

/// The attributes of our response header.
pub struct HeaderOut<'a> {
    /// Our stream id; empty on the initiating side of s2s, which sends none.
    pub id: &'a str,
    pub from: &'a str,
    pub to: Option<&'a str>,
    /// `jabber:client` or `jabber:server` (TCP only: WebSocket stanzas carry their own).
    pub content_ns: &'a str,
}

fn trace_xml(peer: &str, dir: &str, el: &Element) {
    tracing::trace!(target: "weft::xml", %peer, dir, "{}", String::from(el));
}

/// A stream over either transport. One per connection, so variant sizes only matter for
/// memory per session: the TCP parser state is boxed since it is the larger.
#[allow(clippy::large_enum_variant)]
pub enum Framed {
    Tcp(Box<TcpFraming>),
    WebSocket(WsFraming),
    /// XEP-0124 / XEP-0206: c2s only.
    Bosh(BoshFraming),
}

impl Framed {
    pub async fn recv(&mut self) -> Result<Incoming, FramingError> {
        let r = match self {
            Framed::Tcp(f) => f.recv().await,
            Framed::WebSocket(f) => f.recv().await,
            Framed::Bosh(f) => f.recv().await,
        };
        if let (Some(peer), Ok(event)) = (self.trace(), &r) {
            match event {
                Incoming::Element(el) => trace_xml(&peer, "in", el),
                Incoming::Header(h) => {
                    tracing::trace!(target: "weft::xml", %peer, dir = "in", "header <{} from={:?} to={:?}>", h.name, h.attr("from"), h.attr("to"))
                }
                Incoming::Close => tracing::trace!(target: "weft::xml", %peer, dir = "in", "close"),
            }
        }
        r
    }

    /// Traces every element this connection reads and writes (at trace level, target
    /// `weft::xml`), labelled `peer`: an operator's opt-in for a link that misbehaves.
    pub fn set_trace(&mut self, peer: &str) {
        let label = Some(std::sync::Arc::from(peer));
        match self {
            Framed::Tcp(f) => f.trace = label,
            Framed::WebSocket(f) => f.trace = label,
            Framed::Bosh(f) => f.trace = label,
        }
    }

    fn trace(&self) -> Option<std::sync::Arc<str>> {
        match self {
            Framed::Tcp(f) => f.trace.clone(),
            Framed::WebSocket(f) => f.trace.clone(),
            Framed::Bosh(f) => f.trace.clone(),
        }
    }

    /// The write side of this connection for other tasks to deliver into, once the session
    /// is bound; None where it cannot be shared (TLS).
    pub fn share_writer(&mut self, limit: usize) -> Option<(std::sync::Arc<SharedWriter>, Wire)> {
        match self {
            Framed::Tcp(f) => f.share_writer(limit).map(|w| (w, Wire::TcpClient)),
            Framed::WebSocket(f) => f.shared_writer().map(|w| (w, Wire::WebSocket)),
            // Responses are made by the requests that take them.
            Framed::Bosh(_) => None,
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self, Framed::WebSocket(_))
    }

    /// Where a stream this server closes is sent (RFC 7395 §3.6.1 `see-other-uri`, XEP-0124
    /// §17.3), never to a less secure scheme; TCP has no redirect.
    pub fn redirect_for(&self, state: &crate::state::ServerState, tls: bool) -> Option<String> {
        match self {
            Framed::Tcp(_) => None,
            Framed::WebSocket(_) => state.redirect_for(tls),
            Framed::Bosh(_) => state
                .config
                .bosh
                .see_other_uri
                .clone()
                .filter(|uri| !tls || uri.starts_with("https://")),
        }
    }

    /// Queues our stream header (`<stream:stream>` or `<open/>`).
    pub fn queue_header(&mut self, h: &HeaderOut<'_>) {
        match self {
            Framed::Tcp(f) => f.queue_header(h),
            Framed::WebSocket(f) => f.queue_header(h),
            Framed::Bosh(f) => f.queue_header(h),
        }
    }

    /// Queues an element of the stream namespace (features, error) with its children.
    pub fn queue_stream_element(&mut self, el: &Element) {
        if let Some(peer) = self.trace() {
            trace_xml(&peer, "out", el);
        }
        match self {
            Framed::Tcp(f) => f.queue_stream_element(el),
            Framed::WebSocket(f) => f.queue_stream_element(el),
            Framed::Bosh(f) => f.queue_stream_element(el),
        }
    }

    /// Queues a stanza or a negotiation element.
    pub fn queue(&mut self, el: &Element) {
        if let Some(peer) = self.trace() {
            trace_xml(&peer, "out", el);
        }
        match self {
            Framed::Tcp(f) => f.queue(el),
            Framed::WebSocket(f) => f.queue(el),
            Framed::Bosh(f) => f.queue(el),
        }
    }

    /// Writes what is queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Framed::Tcp(f) => f.flush().await,
            Framed::WebSocket(f) => f.flush().await,
            Framed::Bosh(f) => f.flush().await,
        }
    }

    /// After STARTTLS or SASL success the peer sends a new header (RFC 6120 §4.3.3).
    pub fn restart(&mut self) {
        match self {
            Framed::Tcp(f) => f.restart(),
            Framed::WebSocket(f) => f.restart(),
            Framed::Bosh(_) => {}
        }
    }

    /// Closes the stream and the connection: our close (with `see_other_uri` on WebSocket),
    /// then the peer's close awaited briefly, then the WebSocket closing handshake or TCP FIN.
    /// `peer_closed` says the peer already sent its stream close.
    pub async fn close(&mut self, peer_closed: bool, see_other_uri: Option<&str>) {
        match self {
            Framed::Tcp(f) => f.close(peer_closed).await,
            Framed::WebSocket(f) => f.close(peer_closed, see_other_uri).await,
            Framed::Bosh(f) => f.close(peer_closed, see_other_uri).await,
        }
    }

    /// Sends a stream error and closes (RFC 6120 §4.9.1.1, RFC 7395 §3.5). When the error comes
    /// before our header was sent, the header goes first.
    pub async fn fail(&mut self, err: &StreamError, header: Option<&HeaderOut<'_>>) {
        if let Some(h) = header {
            self.queue_header(h);
        }
        self.queue_stream_element(&err.to_element());
        self.close(false, None).await;
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn a_stanzas_text_in_a_client_stream_drops_the_roots_namespace() {
        let el: Element = "<message xmlns='jabber:client' to='a@b'><body>x</body>\
             <x xmlns='urn:example'/></message>"
            .parse()
            .unwrap();
        let mut text = Vec::new();
        weft_xml::write_element(&el, &mut text);
        let text = String::from_utf8(text).unwrap();
        let (open, rest) = in_client_stream(&el, &text).unwrap();
        let mut want = Vec::new();
        weft_xml::write_element_in(&el, crate::ns::CLIENT, &mut want);
        assert_eq!(format!("{open}{rest}").as_bytes(), want);
        let other: Element = "<iq xmlns='jabber:server' type='get'/>".parse().unwrap();
        assert!(in_client_stream(&other, "<iq xmlns='jabber:server' type='get'/>").is_none());
        assert!(in_client_stream(&el, "<presence xmlns='jabber:client'/>").is_none());
    }
}
