//! A raw RFC 7395 client over tokio-tungstenite.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{lenient_limits, show, Client, Login};
use crate::REPLY_TIMEOUT;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct WsClient {
    pub ws: WebSocketStream<Box<dyn Io>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

/// The outcome of a handshake that may be refused.
pub enum Handshake {
    Upgraded(Box<WsClient>),
    Refused { status: u16, body: String },
}

impl WsClient {
    pub async fn connect(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<WsClient> {
        match Self::handshake(url, tls, Some("xmpp"), &[]).await? {
            Handshake::Upgraded(c) => Ok(*c),
            Handshake::Refused { status, body } => anyhow::bail!("refused: {status} {body}"),
        }
    }

    /// A handshake with explicit subprotocol and extra headers.
    pub async fn handshake(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        protocol: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> anyhow::Result<Handshake> {
        let mut request = url.into_client_request()?;
        if let Some(p) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p)?);
        }
        for (k, v) in headers {
            request.headers_mut().insert(*k, HeaderValue::from_str(v)?);
        }
        let host = request.uri().host().unwrap_or("127.0.0.1").to_string();
        let port = request.uri().port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from("localhost".to_string())?;
                Box::new(
                    tokio_rustls::TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await?,
                )
            }
        };
        match tokio_tungstenite::client_async(request, io).await {
            Ok((ws, resp)) => {
                let protocol = resp
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok(Handshake::Upgraded(Box::new(WsClient { ws, protocol })))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(Handshake::Refused {
                status: resp.status().as_u16(),
                body: resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::Binary(data.to_vec().into()))
            .await
            .expect("send");
    }

    /// The next data message (text or binary) or close, skipping pings and pongs.
    pub async fn recv_message(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(m)) => return Some(m),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await;
        next.expect("no WebSocket message within the reply timeout")
    }

    /// The next text message, raw.
    pub async fn recv_text(&mut self) -> String {
        match self.recv_message().await {
            Some(Message::Text(t)) => t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads until the server's close frame (answering it) and returns its code and reason,
    /// if it had any; panics if the connection ended without a close frame.
    pub async fn expect_close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match self.recv_message().await {
                Some(Message::Close(frame)) => {
                    // Drive out tungstenite's queued close reply, as a browser would.
                    let _ = self.ws.flush().await;
                    return frame;
                }
                Some(Message::Text(t)) => panic!("expected a close frame, got text {t}"),
                None => panic!("the connection ended without a WebSocket close frame"),
                Some(_) => {}
            }
        }
    }

    /// Expects the stream error with `condition`, then `<close/>`, then a close frame.
    pub async fn expect_stream_error(&mut self, condition: &str) -> Element {
        let err = self.recv().await;
        assert!(
            err.name() == "error" && err.has_ns(super::STREAM),
            "expected a stream error, got {}",
            show(&err)
        );
        assert!(
            err.has_child(condition, "urn:ietf:params:xml:ns:xmpp-streams"),
            "expected <{condition}/>, got {}",
            show(&err)
        );
        let close = self.recv().await;
        assert!(
            close.is("close", "urn:ietf:params:xml:ns:xmpp-framing"),
            "expected <close/>, got {}",
            show(&close)
        );
        // Answer as a well-behaved client does (RFC 7395 §3.6).
        let _ = self
            .ws
            .send(Message::Text(
                "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".into(),
            ))
            .await;
        err
    }

    pub async fn login(&mut self, user: &str, how: Login) -> String {
        super::login(self, user, crate::PASSWORD, how, None).await
    }
}

impl Client for WsClient {
    async fn send(&mut self, xml: &str) {
        self.ws
            .send(Message::Text(xml.to_string().into()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> Element {
        let text = self.recv_text().await;
        weft_xml::parse_message(&text, lenient_limits())
            .unwrap_or_else(|e| panic!("server sent invalid XML ({e}): {text}"))
    }

    async fn open_stream(&mut self, to: &str) -> Element {
        self.send(&format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{to}' version='1.0'/>"
        ))
        .await;
        let open = self.recv().await;
        assert!(
            open.is("open", "urn:ietf:params:xml:ns:xmpp-framing"),
            "expected <open/>, got {}",
            show(&open)
        );
        let features = self.recv().await;
        assert!(
            features.is("features", super::STREAM),
            "expected features, got {}",
            show(&features)
        );
        features
    }
}
