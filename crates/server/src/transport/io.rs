//! A TCP stream that may be upgraded to TLS in place (STARTTLS) or start as TLS (Direct TLS).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use weft_sasl::ChannelBindings;

use crate::transport::shared::SharedStream;

/// What a stream knows about the connection under it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// TLS is terminated by weft on this connection.
    pub secure: bool,
    /// Channel-binding data for SCRAM -PLUS; empty without TLS.
    pub bindings: ChannelBindings,
    /// The certificate chain the peer presented in the TLS handshake (s2s), if any.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl PeerInfo {
    pub fn plain(addr: SocketAddr) -> Self {
        PeerInfo {
            addr,
            secure: false,
            bindings: ChannelBindings::default(),
            certs: None,
        }
    }

    /// What an established server-side TLS connection tells about its peer.
    pub fn tls(addr: SocketAddr, conn: &rustls::ServerConnection, server_end_point: &[u8]) -> Self {
        PeerInfo {
            addr,
            secure: true,
            bindings: crate::transport::tls::channel_bindings(conn, server_end_point),
            certs: conn
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
        }
    }
}

pub enum MaybeTlsStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Our side of an outgoing s2s link.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Plain TCP whose write side other tasks deliver into (a bound c2s session).
    Shared(SharedStream),
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTlsStream::Shared(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTlsStream::Shared(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTlsStream::Shared(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTlsStream::Shared(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
