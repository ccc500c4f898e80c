//! RFC 6120 §4 TCP framing: one long-lived XML document per direction, parsed incrementally.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use weft_xml::{Limits, StreamEvent, StreamParser};

use super::{FramingError, HeaderOut, Incoming};
use crate::ns;
use crate::transport::io::{MaybeTlsStream, PeerInfo};
use crate::transport::shared::SharedWriter;

/// Bytes read per syscall; stanzas larger than this simply take several reads.
const READ_CHUNK: usize = 4096;
/// How long we wait for the peer's `</stream:stream>` after sending ours (RFC 6120 §4.4).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub struct TcpFraming {
    /// None only if a TLS handshake failed half-way; the stream is then dead.
    io: Option<MaybeTlsStream>,
    parser: StreamParser,
    limits: Limits,
    read_buf: Box<[u8]>,
    out: Vec<u8>,
    /// `jabber:client` or `jabber:server`, declared on our stream header.
    content_ns: &'static str,
    /// The peer's label when its XML is traced (`s2s.trace_domains`).
    pub(crate) trace: Option<Arc<str>>,
}

impl TcpFraming {
    pub fn new(io: MaybeTlsStream, limits: Limits, content_ns: &'static str) -> Self {
        TcpFraming {
            io: Some(io),
            parser: StreamParser::new(limits),
            limits,
            read_buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            content_ns,
            trace: None,
        }
    }

    /// Shares the write side of a plain connection (see `transport::shared`); None on TLS.
    pub fn share_writer(&mut self, limit: usize) -> Option<Arc<SharedWriter>> {
        match self.io.take() {
            Some(MaybeTlsStream::Plain(tcp)) => {
                let (stream, writer) = SharedWriter::split(tcp, limit);
                self.io = Some(MaybeTlsStream::Shared(stream));
                Some(writer)
            }
            Some(MaybeTlsStream::Shared(stream)) => {
                let writer = stream.writer().clone();
                self.io = Some(MaybeTlsStream::Shared(stream));
                Some(writer)
            }
            other => {
                self.io = other;
                None
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Some(MaybeTlsStream::Tls(_)))
    }

    /// Cancel-safe: bytes are only consumed once a read completes.
    pub async fn recv(&mut self) -> Result<Incoming, FramingError> {
        loop {
            if let Some(ev) = self.parser.next_event() {
                return Ok(match ev {
                    StreamEvent::Header(h) => Incoming::Header(h),
                    StreamEvent::Element(e) => Incoming::Element(e),
                    StreamEvent::Close => Incoming::Close,
                });
            }
            let n = io(&mut self.io)?.read(&mut self.read_buf).await?;
            if n == 0 {
                return Err(FramingError::Disconnected);
            }
            self.parser.feed(&self.read_buf[..n])?;
        }
    }

    pub fn queue_header(&mut self, h: &HeaderOut<'_>) {
        self.out
            .extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
        self.out.extend_from_slice(h.content_ns.as_bytes());
        self.out.extend_from_slice(b"' xmlns:stream='");
        self.out.extend_from_slice(ns::STREAM.as_bytes());
        self.out.push(b'\'');
        if h.content_ns == ns::SERVER {
            // XEP-0220: dialback elements use the db prefix on TCP streams.
            self.out
                .extend_from_slice(b" xmlns:db='jabber:server:dialback'");
        }
        if !h.id.is_empty() {
            push_attr(&mut self.out, "id", h.id);
        }
        push_attr(&mut self.out, "from", h.from);
        if let Some(to) = h.to {
            push_attr(&mut self.out, "to", to);
        }
        self.out.extend_from_slice(b" version='1.0' xml:lang='en'>");
    }

    pub fn queue_stream_element(&mut self, el: &Element) {
        write_prefixed_stream_element(el, &mut self.out, false);
    }

    /// Stanzas in the stream's content namespace are written without a redundant `xmlns`.
    pub fn queue(&mut self, el: &Element) {
        if el.has_ns(crate::s2s::dialback::NS) {
            crate::s2s::dialback::write_prefixed(el, &mut self.out, false);
            return;
        }
        weft_xml::write_element_in(el, self.content_ns, &mut self.out);
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        let io = io(&mut self.io)?;
        if !self.out.is_empty() {
            io.write_all(&self.out).await?;
            self.out.clear();
        }
        io.flush().await
    }

    pub fn restart(&mut self) {
        self.parser = StreamParser::new(self.limits);
    }

    /// RFC 6120 §5.4.3.3: after `<proceed/>` is flushed, the TLS handshake; any bytes the peer
    /// sent after `<starttls/>` are discarded with the old parser. Returns what the handshake
    /// tells about the peer (channel bindings, its certificate).
    pub async fn starttls(
        &mut self,
        acceptor: &TlsAcceptor,
        server_end_point: &[u8],
    ) -> std::io::Result<PeerInfo> {
        self.flush().await?;
        let plain = self.take_plain()?;
        let addr = plain.peer_addr()?;
        let tls = acceptor.accept(plain).await?;
        let peer = PeerInfo::tls(addr, tls.get_ref().1, server_end_point);
        self.io = Some(MaybeTlsStream::Tls(Box::new(tls)));
        Ok(peer)
    }

    /// The initiating side of STARTTLS (outgoing s2s), after the peer's `<proceed/>`. Returns
    /// the certificate chain the peer presented.
    pub async fn starttls_client(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> std::io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
        let plain = self.take_plain()?;
        let tls = connector.connect(server_name, plain).await?;
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        self.io = Some(MaybeTlsStream::ClientTls(Box::new(tls)));
        Ok(certs)
    }

    /// Takes the plain TCP stream out for a TLS handshake, resetting the parser: nothing read
    /// before TLS may be used after it.
    fn take_plain(&mut self) -> std::io::Result<tokio::net::TcpStream> {
        self.restart();
        match self.io.take() {
            Some(MaybeTlsStream::Plain(s)) => Ok(s),
            other => {
                self.io = other;
                Err(std::io::Error::other("TLS already established"))
            }
        }
    }

    pub async fn close(&mut self, peer_closed: bool) {
        self.out.extend_from_slice(b"</stream:stream>");
        if self.flush().await.is_err() {
            return;
        }
        if !peer_closed {
            // Wait for the peer to close its side, discarding what it still sends. Reading raw
            // bytes (not through the parser, which may have failed) also keeps unread input
            // from turning our close into an RST that could destroy the stream error.
            if let Some(io) = self.io.as_mut() {
                let buf = &mut self.read_buf;
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while let Ok(n) = io.read(buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        if let Some(io) = self.io.as_mut() {
            let _ = io.shutdown().await;
        }
    }
}

fn io(io: &mut Option<MaybeTlsStream>) -> std::io::Result<&mut MaybeTlsStream> {
    io.as_mut()
        .ok_or_else(|| std::io::Error::other("connection lost during the TLS handshake"))
}

fn push_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    out.extend_from_slice(weft_xml::escape(value).as_bytes());
    out.push(b'\'');
}

/// Writes `<stream:NAME>` with its children; `declare` adds `xmlns:stream` (needed when the
/// element stands alone, as in a WebSocket message, RFC 7395 §3.3.1).
pub(crate) fn write_prefixed_stream_element(el: &Element, out: &mut Vec<u8>, declare: bool) {
    out.extend_from_slice(b"<stream:");
    out.extend_from_slice(el.name().as_bytes());
    if declare {
        out.extend_from_slice(b" xmlns:stream='");
        out.extend_from_slice(ns::STREAM.as_bytes());
        out.push(b'\'');
    }
    out.push(b'>');
    for node in el.nodes() {
        match node {
            minidom::Node::Element(child) => weft_xml::write_element(child, out),
            minidom::Node::Text(text) => {
                out.extend_from_slice(weft_xml::escape_text(text).as_bytes())
            }
        }
    }
    out.extend_from_slice(b"</stream:");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}
