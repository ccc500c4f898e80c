//! A raw RFC 6120 TCP client with STARTTLS and Direct TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_xml::{StreamEvent, StreamParser};

use super::{lenient_limits, show, Client, Login};
use crate::clients::ws::Io;
use crate::REPLY_TIMEOUT;

pub struct TcpClient {
    io: Option<Box<dyn Io>>,
    tcp: Option<TcpStream>,
    parser: StreamParser,
    /// TLS exporter value of the current TLS session, for -PLUS tests.
    pub tls_exporter: Option<Vec<u8>>,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<TcpClient> {
        let tcp = TcpStream::connect(addr).await?;
        Ok(TcpClient {
            io: None,
            tcp: Some(tcp),
            parser: StreamParser::new(lenient_limits()),
            tls_exporter: None,
        })
    }

    pub async fn connect_direct_tls(
        addr: SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<TcpClient> {
        let mut c = Self::connect(addr).await?;
        c.tls(cfg).await?;
        Ok(c)
    }

    /// Direct TLS verifying the server as `server_name`.
    pub async fn connect_direct_tls_as(
        addr: SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<TcpClient> {
        let mut c = Self::connect(addr).await?;
        c.tls_as(cfg, server_name).await?;
        Ok(c)
    }

    async fn tls(&mut self, cfg: Arc<rustls::ClientConfig>) -> anyhow::Result<()> {
        self.tls_as(cfg, "localhost").await
    }

    async fn tls_as(
        &mut self,
        cfg: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<()> {
        let tcp = self.tcp.take().expect("TLS starts on a plain connection");
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await?;
        let mut out = vec![0u8; 32];
        let exported = tls
            .get_ref()
            .1
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .is_ok();
        self.tls_exporter = exported.then_some(out);
        self.io = Some(Box::new(tls));
        self.parser = StreamParser::new(lenient_limits());
        Ok(())
    }

    /// Expects a new stream from the server (after SASL success, RFC 6120 §4.3.3).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(lenient_limits());
    }

    /// Sends `<starttls/>`, expects `<proceed/>` and upgrades.
    pub async fn starttls(&mut self, cfg: Arc<rustls::ClientConfig>) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = self.recv().await;
        assert_eq!(proceed.name(), "proceed", "got {}", show(&proceed));
        self.tls(cfg).await.expect("TLS handshake");
    }

    pub async fn send_bytes(&mut self, data: &[u8]) {
        let r = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.write_all(data).await,
            (None, Some(tcp)) => tcp.write_all(data).await,
            _ => unreachable!(),
        };
        r.expect("write");
    }

    /// The next stream event; None when the connection closed.
    pub async fn recv_event(&mut self) -> Option<StreamEvent> {
        let fut = async {
            let mut buf = vec![0u8; 8192];
            loop {
                if let Some(ev) = self.parser.next_event() {
                    return Some(ev);
                }
                let n = match (&mut self.io, &mut self.tcp) {
                    (Some(io), _) => io.read(&mut buf).await,
                    (None, Some(tcp)) => tcp.read(&mut buf).await,
                    _ => unreachable!(),
                };
                match n {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.parser.feed(&buf[..n]).expect("server sent valid XML"),
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, fut)
            .await
            .expect("no reply within the reply timeout")
    }

    /// Expects `<stream:error>` with `condition`, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) -> Element {
        let err = loop {
            match self.recv_event().await {
                Some(StreamEvent::Header(_)) => continue,
                Some(StreamEvent::Element(e)) => break e,
                other => panic!("expected a stream error, got {other:?}"),
            }
        };
        assert!(
            err.name() == "error"
                && err.has_child(condition, "urn:ietf:params:xml:ns:xmpp-streams"),
            "expected <{condition}/>, got {}",
            show(&err)
        );
        match self.recv_event().await {
            Some(StreamEvent::Close) | None => {}
            other => panic!("expected the stream to close, got {other:?}"),
        }
        err
    }

    pub async fn login(&mut self, user: &str, how: Login) -> String {
        super::login(self, user, crate::PASSWORD, how, None).await
    }
}

impl Client for TcpClient {
    async fn send(&mut self, xml: &str) {
        self.send_bytes(xml.as_bytes()).await;
    }

    async fn recv(&mut self) -> Element {
        match self.recv_event().await {
            Some(StreamEvent::Element(e)) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    async fn open_stream(&mut self, to: &str) -> Element {
        self.parser = StreamParser::new(lenient_limits());
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        ))
        .await;
        match self.recv_event().await {
            Some(StreamEvent::Header(h)) => assert_eq!(h.attr("from"), Some(to)),
            other => panic!("expected a stream header, got {other:?}"),
        }
        let features = self.recv().await;
        assert!(
            features.is("features", super::STREAM),
            "expected features, got {}",
            show(&features)
        );
        features
    }
}
