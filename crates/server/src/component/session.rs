//! One XEP-0114 component connection, as the accepting server: the stream header names the
//! component's domain, `<handshake/>` proves its secret (§3), then stanzas flow both ways —
//! ours from the domain's queue, the component's checked against its domain and routed.

use std::sync::Arc;

use base64::Engine;
use jid::Jid;
use minidom::Element;
use tokio::time::Instant;

use super::{handshake, renamespace, Attached};
use crate::error::{StreamError, StreamErrorCondition};
use crate::framing::{Framed, FramingError, HeaderOut, Incoming};
use crate::ns;
use crate::stanza::Kind;
use crate::state::ServerState;
use crate::transport::io::PeerInfo;

/// Stanzas for the component written per flush.
const WRITE_BATCH: usize = 64;

/// What woke the established stream up.
enum Event {
    Frame(Result<Incoming, FramingError>),
    Ours(Option<Element>),
}

enum End {
    Error(StreamError),
    PeerClosed,
    Disconnected,
    Shutdown,
    /// A newer connection took the domain over (`conflict = "replace"`).
    Replaced,
}

impl From<FramingError> for End {
    fn from(e: FramingError) -> Self {
        e.stream_error()
            .map(End::Error)
            .unwrap_or(End::Disconnected)
    }
}

fn error(condition: StreamErrorCondition, text: impl Into<String>) -> End {
    End::Error(StreamError::new(condition, text))
}

struct ComponentIn {
    state: Arc<ServerState>,
    framed: Framed,
    peer: PeerInfo,
    stream_id: String,
    /// The 'from' of our header: the component's domain once the peer named one we serve.
    local: String,
    /// The component's domain, once its header named a configured one.
    domain: Option<String>,
    header_sent: bool,
}

/// Serves one connection on a `listen.component` listener.
pub async fn serve(state: Arc<ServerState>, framed: Framed, peer: PeerInfo) {
    let mut c = ComponentIn {
        local: state.config.default_domain().to_string(),
        state: state.clone(),
        framed,
        peer,
        stream_id: String::new(),
        domain: None,
        header_sent: false,
    };
    // The header and the handshake share the unauthenticated streams' deadline.
    let deadline = Instant::now() + state.config.c2s.unauthenticated_timeout.0;
    let authenticated = tokio::select! {
        r = c.authenticate() => r,
        _ = tokio::time::sleep_until(deadline) => Err(error(
            StreamErrorCondition::ConnectionTimeout,
            "no handshake in time (XEP-0114 §3)",
        )),
        _ = state.shutdown.cancelled() => Err(End::Shutdown),
    };
    let (end, attached) = match authenticated {
        Err(end) => (end, None),
        Ok(mut attached) => (c.established(&mut attached).await, Some(attached)),
    };
    let domain = c.domain.clone().unwrap_or_default();
    if let Some(a) = &attached {
        state.components.detach(&domain, a.id);
        let why = match &end {
            End::Error(e) => e.condition.name(),
            End::PeerClosed => "closed by the component",
            End::Disconnected => "connection lost",
            End::Shutdown => "shutdown",
            End::Replaced => "replaced by a new connection",
        };
        tracing::info!(%domain, peer = %c.peer.addr, "component disconnected: {why}");
    }
    c.finish(end).await;
    // What was queued for this connection and never written goes to its successor, or back
    // to its senders as errors: nothing vanishes.
    if let Some(mut a) = attached {
        a.rx.close();
        while let Ok(stanza) = a.rx.try_recv() {
            if let Some(reply) = super::deliver(&state, &domain, stanza) {
                crate::router::dispatch(&state, reply).await;
            }
        }
    }
}

impl ComponentIn {
    /// Up to a successful handshake: the domain taken in the registry.
    async fn authenticate(&mut self) -> Result<Attached, End> {
        loop {
            match self.framed.recv().await? {
                Incoming::Header(h) => self.open(&h).await?,
                Incoming::Close => return Err(End::PeerClosed),
                Incoming::Element(el) => {
                    if !self.header_sent {
                        return Err(error(
                            StreamErrorCondition::BadFormat,
                            "the stream must begin with a header",
                        ));
                    }
                    if el.is("error", ns::STREAM) {
                        return Err(self.peer_error(&el));
                    }
                    if !el.is("handshake", ns::COMPONENT) {
                        return Err(error(
                            StreamErrorCondition::NotAuthorized,
                            "send <handshake/> first (XEP-0114 §3)",
                        ));
                    }
                    return self.handshake(&el).await;
                }
            }
        }
    }

    /// The component's header: `jabber:component:accept`, 'to' a configured component.
    async fn open(&mut self, h: &weft_xml::StreamHeader) -> Result<(), End> {
        if self.header_sent {
            return Err(error(
                StreamErrorCondition::BadFormat,
                "XEP-0114 streams are not restarted",
            ));
        }
        let ok = h.name == "stream"
            && h.ns == ns::STREAM
            && h.default_ns.as_deref() == Some(ns::COMPONENT);
        if !ok {
            return Err(error(
                StreamErrorCondition::InvalidNamespace,
                "expected a jabber:component:accept stream (XEP-0114)",
            ));
        }
        let Some(to) = h.attr("to").map(str::to_ascii_lowercase) else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "the stream header must name the component's domain in 'to' (XEP-0114 §3)",
            ));
        };
        if !self.state.components.serves(&to) {
            return Err(error(
                StreamErrorCondition::HostUnknown,
                format!("{to} is not a component configured here"),
            ));
        }
        self.local = to.clone();
        self.domain = Some(to);
        self.queue_header();
        self.flush().await
    }

    fn queue_header(&mut self) {
        let bytes: [u8; 12] = rand::random();
        self.stream_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let h = HeaderOut {
            id: &self.stream_id,
            from: &self.local,
            to: None,
            content_ns: ns::COMPONENT,
        };
        self.framed.queue_header(&h);
        self.header_sent = true;
    }

    /// XEP-0114 §3: the digest of our stream id and the shared secret; then the domain is
    /// this connection's, unless another holds it (see `Components::attach`).
    async fn handshake(&mut self, el: &Element) -> Result<Attached, End> {
        let domain = self.domain.clone().unwrap_or_default();
        let secret = match self.state.components.config(&domain) {
            Some(c) => c.secret.clone(),
            None => String::new(),
        };
        let valid = el.children().next().is_none()
            && !secret.is_empty()
            && handshake::verify(&self.stream_id, &secret, &el.text());
        if !valid {
            tracing::info!(%domain, peer = %self.peer.addr, "component handshake failed: wrong secret");
            return Err(error(
                StreamErrorCondition::NotAuthorized,
                "the handshake does not match the secret (XEP-0114 §3)",
            ));
        }
        let Ok(attached) = self.state.components.attach(&domain) else {
            tracing::warn!(%domain, peer = %self.peer.addr, "component refused: another connection serves its domain");
            return Err(error(
                StreamErrorCondition::Conflict,
                format!("a connection for {domain} exists already"),
            ));
        };
        self.framed
            .queue(&Element::builder("handshake", ns::COMPONENT).build());
        self.flush().await?;
        tracing::info!(%domain, peer = %self.peer.addr, "component connected (XEP-0114)");
        Ok(attached)
    }

    /// The authenticated stream: the component's stanzas in, ours out, until one side ends it.
    async fn established(&mut self, attached: &mut Attached) -> End {
        let shutdown = self.state.shutdown.clone();
        loop {
            let event = tokio::select! {
                r = self.framed.recv() => Event::Frame(r),
                el = attached.rx.recv() => Event::Ours(el),
                _ = attached.replaced.cancelled() => return End::Replaced,
                _ = shutdown.cancelled() => return End::Shutdown,
            };
            let result = match event {
                Event::Frame(Ok(Incoming::Element(el))) => self.stanza(el).await,
                Event::Frame(Ok(Incoming::Close)) => Err(End::PeerClosed),
                Event::Frame(Ok(Incoming::Header(_))) => Err(error(
                    StreamErrorCondition::BadFormat,
                    "XEP-0114 streams are not restarted",
                )),
                Event::Frame(Err(e)) => Err(End::from(e)),
                Event::Ours(Some(first)) => self.write_ours(first, attached).await,
                // Our queue left the registry, which only a successor makes happen.
                Event::Ours(None) => Err(End::Replaced),
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    async fn write_ours(&mut self, first: Element, attached: &mut Attached) -> Result<(), End> {
        self.framed
            .queue(&renamespace(&first, ns::CLIENT, ns::COMPONENT));
        for _ in 1..WRITE_BATCH {
            match attached.rx.try_recv() {
                Ok(el) => self
                    .framed
                    .queue(&renamespace(&el, ns::CLIENT, ns::COMPONENT)),
                Err(_) => break,
            }
        }
        self.flush().await
    }

    /// A top-level element from the authenticated component. A stanza needs 'to' and a
    /// 'from' at the component's own domain (not its subdomains), else the stream ends, as on
    /// s2s (RFC 6120 §4.9.3.7, §4.9.3.9); Prosody and ejabberd check the same.
    async fn stanza(&mut self, el: Element) -> Result<(), End> {
        if el.is("error", ns::STREAM) {
            return Err(self.peer_error(&el));
        }
        // Components may write their stanzas in jabber:client, as Prosody allows.
        let stanza = Kind::of(&el, ns::COMPONENT).or_else(|| Kind::of(&el, ns::CLIENT));
        if stanza.is_none() {
            return Err(error(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}/> is not a stanza", el.name()),
            ));
        };
        let domain = self.domain.as_deref().unwrap_or_default();
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "a component's stanzas need 'from' and 'to' (RFC 6120 §4.9.3.7)",
            ));
        };
        match Jid::new(from) {
            Ok(jid) if jid.domain().as_str() == domain => {}
            _ => {
                return Err(error(
                    StreamErrorCondition::InvalidFrom,
                    format!("'{from}' is not a JID at {domain}"),
                ))
            }
        }
        let el = renamespace(&el, ns::COMPONENT, ns::CLIENT);
        let to = match Jid::new(to) {
            Ok(to) => to,
            Err(_) => {
                // Not fatal: a gateway may pass on an address a user typed.
                let err = crate::error::StanzaError::new(
                    crate::error::StanzaErrorCondition::JidMalformed,
                );
                if let Some(reply) = err.reply_to(&el) {
                    let _ = self.state.components.send(domain, reply);
                }
                return Ok(());
            }
        };
        let domain = domain.to_string();
        super::route_from(&self.state, el, &domain, &to).await;
        Ok(())
    }

    /// RFC 6120 §4.9.1.2: the component ended the stream with an error; none goes back.
    fn peer_error(&self, el: &Element) -> End {
        let condition = el
            .children()
            .next()
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        tracing::info!(domain = ?self.domain, peer = %self.peer.addr, "component sent stream error <{condition}/>");
        End::PeerClosed
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    async fn finish(&mut self, end: End) {
        let err = match end {
            End::Disconnected => return,
            End::PeerClosed => {
                self.framed.close(true, None).await;
                return;
            }
            End::Error(e) => e,
            End::Shutdown => StreamError::new(
                StreamErrorCondition::SystemShutdown,
                "the server is shutting down",
            ),
            End::Replaced => StreamError::new(
                StreamErrorCondition::Conflict,
                "replaced by a new connection for this domain",
            ),
        };
        tracing::debug!(peer = %self.peer.addr, domain = ?self.domain, "component stream error: {}: {}", err.condition.name(), err.text);
        if !self.header_sent {
            // RFC 6120 §4.9.1.1: our header first, even to refuse the stream.
            self.queue_header();
        }
        self.framed.fail(&err, None).await;
    }
}
