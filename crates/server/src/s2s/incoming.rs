//! Incoming s2s streams (RFC 6120 as receiving entity), over TCP or XEP-0468 WebSocket:
//! STARTTLS, then SASL EXTERNAL when the peer's certificate is valid for the domain it claims,
//! else XEP-0220 dialback; then stanzas, each accepted only from a domain authenticated on this
//! stream and to a domain we host.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use jid::Jid;
use minidom::Element;
use rxml::xml_ncname;
use tokio::time::Instant;

use super::dialback;
use crate::error::{StreamError, StreamErrorCondition};
use crate::framing::{Framed, FramingError, HeaderOut, Incoming};
use crate::ns;
use crate::session::rate::StanzaBudget;
use crate::stanza::Kind;
use crate::state::ServerState;
use crate::transport::io::PeerInfo;

enum End {
    Error(StreamError),
    PeerClosed,
    Disconnected,
    Shutdown,
}

impl From<FramingError> for End {
    fn from(e: FramingError) -> Self {
        e.stream_error()
            .map(End::Error)
            .unwrap_or(End::Disconnected)
    }
}

fn error(condition: StreamErrorCondition, text: &str) -> End {
    End::Error(StreamError::new(condition, text))
}

struct S2sIn {
    state: Arc<ServerState>,
    framed: Framed,
    peer: PeerInfo,
    stream_id: String,
    /// The local domain this stream is addressed to.
    local: String,
    /// The 'from' of the peer's header, if any.
    claimed: Option<String>,
    header_sent: bool,
    /// Domains authenticated on this stream (several with dialback piggybacking).
    authenticated: HashSet<String>,
    /// Authenticated by SASL, after which the stream restarts and dialback is no longer needed.
    sasl_done: bool,
    /// The name the peer's certificate was found valid for (its claimed domain, or a host
    /// that domain's host-meta delegates to), once checked: what SASL EXTERNAL rests on.
    cert_accepts: Option<Result<String, String>>,
    /// TLS from the first byte (Direct TLS or wss), not by STARTTLS.
    started_secure: bool,
    /// The peer asked for XEP-0288 bidirectionality.
    bidi: bool,
    /// XEP-0288: our stanzas for the peer's domain, carried on this stream once it
    /// authenticated (the pool entry's queue; none while another link serves the pair).
    reverse: Option<Reverse>,
}

/// The queue of our stanzas from `local` to `remote` that a bidirectional stream writes.
struct Reverse {
    local: String,
    remote: String,
    pool_id: u64,
    rx: tokio::sync::mpsc::Receiver<Element>,
}

/// What woke the stream up.
enum Event {
    Frame(Result<Incoming, crate::framing::FramingError>),
    Ours(Option<Element>),
    TooSlow,
}

/// Serves one incoming server stream. `first` is an event already read (WebSocket dispatch).
pub async fn serve(
    state: Arc<ServerState>,
    framed: Framed,
    peer: PeerInfo,
    first: Option<Incoming>,
) {
    let mut s = S2sIn {
        state: state.clone(),
        framed,
        stream_id: String::new(),
        local: state.config.default_domain().to_string(),
        claimed: None,
        header_sent: false,
        authenticated: HashSet::new(),
        sasl_done: false,
        cert_accepts: None,
        started_secure: peer.secure,
        peer,
        bidi: false,
        reverse: None,
    };
    let end = tokio::select! {
        end = s.run(first) => end,
        _ = state.shutdown.cancelled() => End::Shutdown,
    };
    s.finish(end).await;
    if let Some(r) = s.reverse.take() {
        super::outgoing::requeue(&state, &r.local, &r.remote, r.pool_id, r.rx).await;
    }
}

impl S2sIn {
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
        };
        tracing::debug!(peer = %self.peer.addr, "s2s stream error: {}: {}", err.condition.name(), err.text);
        if !self.header_sent {
            self.queue_header();
        }
        self.framed.fail(&err, None).await;
    }

    fn queue_header(&mut self) {
        if self.stream_id.is_empty() {
            let bytes: [u8; 12] = rand::random();
            self.stream_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        }
        let h = HeaderOut {
            id: &self.stream_id,
            from: &self.local,
            to: self.claimed.as_deref(),
            content_ns: ns::SERVER,
        };
        self.framed.queue_header(&h);
        self.header_sent = true;
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    async fn run(&mut self, mut first: Option<Incoming>) -> End {
        let limits = &self.state.config.limits;
        let mut budget = StanzaBudget::new(limits.s2s_stanza_rate, limits.s2s_stanza_burst);
        // A peer gets this long to authenticate some domain; authenticated streams live on.
        let deadline = Instant::now() + self.state.config.s2s.connect_timeout.0 * 2;
        loop {
            let incoming = match first.take() {
                Some(ev) => ev,
                None => {
                    // Not between SASL success and the restarted stream's header.
                    let ready = self.header_sent;
                    let framed = &mut self.framed;
                    let reverse = &mut self.reverse;
                    let event = tokio::select! {
                        r = framed.recv() => Event::Frame(r),
                        el = async {
                            match reverse {
                                Some(r) if ready => r.rx.recv().await,
                                _ => std::future::pending().await,
                            }
                        } => Event::Ours(el),
                        _ = tokio::time::sleep_until(deadline), if self.authenticated.is_empty() => Event::TooSlow,
                    };
                    match event {
                        Event::Frame(Ok(ev)) => ev,
                        Event::Frame(Err(e)) => return End::from(e),
                        Event::TooSlow => {
                            return error(
                                StreamErrorCondition::ConnectionTimeout,
                                "authentication took too long",
                            );
                        }
                        Event::Ours(Some(first)) => {
                            if let Err(end) = self.write_ours(first).await {
                                return end;
                            }
                            continue;
                        }
                        // The pool entry was replaced: nothing more to write here.
                        Event::Ours(None) => {
                            self.reverse = None;
                            continue;
                        }
                    }
                }
            };
            let result = match incoming {
                Incoming::Header(h) => self.open(&h).await,
                Incoming::Close => return End::PeerClosed,
                Incoming::Element(el) => {
                    let r = self.element(el).await;
                    if let Some(until) = budget.spend() {
                        tokio::time::sleep_until(until).await;
                    }
                    r
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// XEP-0288: writes our queued stanzas for the peer on its stream, a batch at a time.
    async fn write_ours(&mut self, first: Element) -> Result<(), End> {
        self.framed.queue(&super::outgoing::to_server_ns(&first));
        if let Some(r) = &mut self.reverse {
            for _ in 1..64 {
                match r.rx.try_recv() {
                    Ok(el) => self.framed.queue(&super::outgoing::to_server_ns(&el)),
                    Err(_) => break,
                }
            }
        }
        self.flush().await
    }

    /// XEP-0288: once the peer authenticated `remote` on a stream it made bidirectional, our
    /// stanzas from `local` to it travel here, unless a link for the pair exists already.
    fn carry_ours(&mut self, local: &str, remote: &str) {
        if !self.bidi || self.reverse.is_some() || !self.state.config.s2s.bidi {
            return;
        }
        if let Some((pool_id, rx)) = self.state.s2s.adopt(&self.state, local, remote) {
            tracing::info!(peer = %self.peer.addr, %local, %remote, "s2s incoming link is bidirectional (XEP-0288): it carries our stanzas too");
            self.reverse = Some(Reverse {
                local: local.to_string(),
                remote: remote.to_string(),
                pool_id,
                rx,
            });
        }
    }

    /// A new stream header (first, or after STARTTLS / SASL).
    async fn open(&mut self, h: &weft_xml::StreamHeader) -> Result<(), End> {
        self.stream_id.clear();
        self.header_sent = false;
        let ok = if self.framed.is_websocket() {
            h.name == "open" && h.ns == ns::FRAMING_SERVER
        } else {
            h.name == "stream" && h.ns == ns::STREAM && h.default_ns.as_deref() == Some(ns::SERVER)
        };
        if !ok {
            return Err(error(
                StreamErrorCondition::InvalidNamespace,
                "expected a jabber:server stream",
            ));
        }
        let to = h.attr("to").unwrap_or("").to_ascii_lowercase();
        // Components (XEP-0114) federate through us under their own domains.
        if !self.state.serves_domain(&to) {
            return Err(error(
                StreamErrorCondition::HostUnknown,
                "this server does not host that domain",
            ));
        }
        self.local = to;
        self.claimed = h.attr("from").map(|f| f.to_ascii_lowercase());
        if let Some(from) = &self.claimed {
            if self.state.config.s2s.trace_domains.contains(from) {
                self.framed.set_trace(from);
            }
        }
        if let Some(from) = &self.claimed {
            if !self.state.config.s2s.allows(from) {
                return Err(error(
                    StreamErrorCondition::PolicyViolation,
                    "this server does not federate with your domain",
                ));
            }
        }
        self.queue_header();
        let mut features = Element::builder("features", ns::STREAM);
        let tls = self.peer.secure;
        if self.state.config.s2s.bidi && !self.sasl_done {
            // XEP-0288 §2: offered before and after TLS.
            features =
                features.append(Element::builder("bidi", super::link::NS_BIDI_FEATURE).build());
        }
        if !tls {
            let Framed::Tcp(_) = &self.framed else {
                return Err(error(
                    StreamErrorCondition::PolicyViolation,
                    "XEP-0468: WebSocket s2s requires wss",
                ));
            };
            features = features.append(
                Element::builder("starttls", ns::TLS)
                    .append(Element::builder("required", ns::TLS).build())
                    .build(),
            );
        } else if !self.sasl_done {
            let cert_ok = self.check_certificate().await;
            if !cert_ok && self.state.config.s2s.require_valid_certificates {
                return Err(error(
                    StreamErrorCondition::NotAuthorized,
                    "your certificate is not valid for the domain in 'from' (RFC 6120 §13.7.2)",
                ));
            }
            if cert_ok {
                features = features.append(
                    Element::builder("mechanisms", ns::SASL)
                        .append(
                            Element::builder("mechanism", ns::SASL)
                                .append("EXTERNAL")
                                .build(),
                        )
                        .build(),
                );
            }
            if self.state.config.s2s.dialback && !self.state.config.s2s.require_valid_certificates {
                features = features.append(dialback::feature());
            }
        }
        self.framed.queue_stream_element(&features.build());
        self.flush().await
    }

    /// How the stream reached us, for the logs.
    fn transport(&self) -> &'static str {
        if self.framed.is_websocket() {
            "wss"
        } else if self.started_secure {
            "Direct TLS"
        } else {
            "STARTTLS"
        }
    }

    /// Whether the peer's certificate is valid for the domain it claims: for the domain
    /// itself, or (XEP-0468 §5, XEP-0487) for a host the domain's own host-meta, fetched over
    /// verified HTTPS, names as the `sni` of one of its s2s links (`s2s/delegation.rs`; the
    /// host of a link's URL alone delegates nothing here: it is where weft connects to, not
    /// whom the peer's operator vouches for). Checked once per stream and logged either way.
    async fn check_certificate(&mut self) -> bool {
        if let Some(outcome) = &self.cert_accepts {
            return outcome.is_ok();
        }
        let transport = self.transport();
        let (Some(certs), Some(domain)) = (self.peer.certs.clone(), self.claimed.clone()) else {
            let why = if self.claimed.is_none() {
                "the stream header names no 'from'"
            } else {
                "no client certificate was presented"
            };
            tracing::info!(peer = %self.peer.addr, from = ?self.claimed, transport, "s2s incoming: certificate not checked: {why}");
            self.cert_accepts = Some(Err(why.into()));
            return false;
        };
        let verifier = &self.state.s2s.verifier;
        let outcome = match verifier.check(&certs, &domain) {
            Ok(()) => {
                tracing::info!(peer = %self.peer.addr, %domain, transport, "s2s incoming: certificate valid for {domain}");
                Ok(domain.clone())
            }
            Err(direct) => match super::delegation::delegated_names(&self.state, &domain).await {
                Ok(names) => match names.iter().find(|n| verifier.valid_for(&certs, n)) {
                    Some(name) => {
                        tracing::info!(peer = %self.peer.addr, %domain, transport, "s2s incoming: certificate valid for {name}, which {domain}'s host-meta delegates to");
                        Ok(name.clone())
                    }
                    None => {
                        let why = format!(
                            "{direct}; nor for the hosts its host-meta delegates to ({})",
                            names.join(", ")
                        );
                        tracing::info!(peer = %self.peer.addr, %domain, transport, "s2s incoming: certificate not valid for {domain}: {why}");
                        Err(why)
                    }
                },
                Err(no_delegation) => {
                    let why = format!("{direct}; no delegation: {no_delegation}");
                    tracing::info!(peer = %self.peer.addr, %domain, transport, "s2s incoming: certificate not valid for {domain}: {why}");
                    Err(why)
                }
            },
        };
        let ok = outcome.is_ok();
        self.cert_accepts = Some(outcome);
        ok
    }

    async fn element(&mut self, el: Element) -> Result<(), End> {
        if !self.header_sent {
            return Err(error(
                StreamErrorCondition::BadFormat,
                "the stream must begin with a header",
            ));
        }
        if el.is("error", ns::STREAM) {
            // RFC 6120 §4.9.1.2: the peer ended the stream with an error; no error goes back.
            let condition = el
                .children()
                .next()
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            tracing::info!(peer = %self.peer.addr, "peer sent stream error <{condition}/>");
            return Err(End::PeerClosed);
        }
        if el.is("starttls", ns::TLS) {
            return self.starttls().await;
        }
        if el.is("bidi", super::link::NS_BIDI) {
            // XEP-0288 §3: after TLS, before authenticating.
            if self.peer.secure && self.authenticated.is_empty() {
                self.bidi = true;
            }
            return Ok(());
        }
        if el.is("auth", ns::SASL) {
            return self.sasl_external(&el).await;
        }
        if el.is("result", dialback::NS) {
            return self.dialback_result(&el).await;
        }
        if el.is("verify", dialback::NS) {
            return self.dialback_verify(&el).await;
        }
        self.stanza(el).await
    }

    async fn starttls(&mut self) -> Result<(), End> {
        let Framed::Tcp(tcp) = &mut self.framed else {
            return Err(error(
                StreamErrorCondition::UnsupportedFeature,
                "no STARTTLS on WebSocket",
            ));
        };
        if self.peer.secure {
            return Err(error(
                StreamErrorCondition::PolicyViolation,
                "TLS is already in place",
            ));
        }
        tcp.queue(&Element::builder("proceed", ns::TLS).build());
        let acceptor = tokio_rustls::TlsAcceptor::from(self.state.tls.s2s_server.clone());
        self.peer = tcp
            .starttls(&acceptor, &self.state.tls.server_end_point)
            .await
            .map_err(|_| End::Disconnected)?;
        self.header_sent = false;
        Ok(())
    }

    /// XEP-0178: EXTERNAL on the certificate the peer presented.
    async fn sasl_external(&mut self, auth: &Element) -> Result<(), End> {
        let failure = |cond: &str| {
            Element::builder("failure", ns::SASL)
                .append(Element::builder(cond, ns::SASL).build())
                .build()
        };
        if auth.attr("mechanism") != Some("EXTERNAL") || !self.peer.secure {
            self.framed.queue(&failure("invalid-mechanism"));
            return self.flush().await;
        }
        let text = auth.text();
        let authzid = match text.trim() {
            "" | "=" => None,
            t => base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok()),
        };
        let domain = authzid
            .or_else(|| self.claimed.clone())
            .map(|d| d.to_ascii_lowercase());
        // The certificate was checked for the claimed domain when the features were offered
        // (directly or by delegation); an authzid may only repeat that domain.
        let valid = match (&domain, &self.claimed, &self.cert_accepts) {
            (Some(d), Some(claimed), Some(Ok(_))) => d == claimed,
            (Some(d), None, _) => self
                .peer
                .certs
                .as_ref()
                .is_some_and(|certs| self.state.s2s.verifier.valid_for(certs, d)),
            _ => false,
        };
        let Some(domain) = domain.filter(|_| valid) else {
            self.framed.queue(&failure("not-authorized"));
            return self.flush().await;
        };
        self.framed
            .queue(&Element::builder("success", ns::SASL).build());
        self.flush().await?;
        let transport = self.transport();
        let certificate_of = match &self.cert_accepts {
            Some(Ok(name)) => name.clone(),
            _ => domain.clone(),
        };
        tracing::info!(peer = %self.peer.addr, %domain, transport, %certificate_of, "s2s authenticated (SASL EXTERNAL)");
        let local = self.local.clone();
        self.carry_ours(&local, &domain);
        self.authenticated.insert(domain);
        self.state
            .s2s
            .authenticated_by_external
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sasl_done = true;
        self.framed.restart();
        self.header_sent = false;
        Ok(())
    }

    /// XEP-0220 §2.1.1–2.1.3 as receiving server: check the key with the originating domain's
    /// authoritative server, then answer.
    async fn dialback_result(&mut self, el: &Element) -> Result<(), End> {
        let cfg = &self.state.config.s2s;
        if !cfg.dialback || cfg.require_valid_certificates || !self.peer.secure {
            return Err(error(
                StreamErrorCondition::NotAuthorized,
                "dialback is not accepted here",
            ));
        }
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "db:result needs from and to",
            ));
        };
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        if !self.state.serves_domain(&to) {
            return Err(error(
                StreamErrorCondition::HostUnknown,
                "this server does not host that domain",
            ));
        }
        if !cfg.allows(&from) {
            self.framed
                .queue(&dialback::result_answer(&to, &from, false));
            return self.flush().await;
        }
        let key = el.text();
        let state = self.state.clone();
        let verified = tokio::time::timeout(
            cfg.connect_timeout.0,
            super::link::verify_dialback(&state, &to, &from, &self.stream_id, key.trim()),
        )
        .await;
        let valid = matches!(verified, Ok(Ok(true)));
        // XEP-0220 §2.4: a key that could not be checked is an error, not invalid.
        let unchecked = match &verified {
            Err(_) => Some("remote-server-timeout"),
            Ok(Err(_)) => Some("remote-server-not-found"),
            Ok(Ok(_)) => None,
        };
        if let Some(condition) = unchecked {
            tracing::info!(peer = %self.peer.addr, %from, condition, "dialback could not be checked: {verified:?}");
            self.framed
                .queue(&dialback::result_error(&to, &from, condition));
            return self.flush().await;
        }
        if !valid {
            tracing::info!(peer = %self.peer.addr, %from, "dialback failed: {verified:?}");
        } else {
            let transport = self.transport();
            tracing::info!(peer = %self.peer.addr, %from, transport, "s2s authenticated (dialback)");
            self.authenticated.insert(from.clone());
            self.carry_ours(&to, &from);
            self.state
                .s2s
                .authenticated_by_dialback
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.framed
            .queue(&dialback::result_answer(&to, &from, valid));
        self.flush().await
    }

    /// XEP-0220 §2.1.2 as authoritative server: is this key one we generated?
    async fn dialback_verify(&mut self, el: &Element) -> Result<(), End> {
        let (Some(from), Some(to), Some(id)) = (el.attr("from"), el.attr("to"), el.attr("id"))
        else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "db:verify needs from, to and id",
            ));
        };
        // `from` is the receiving server asking, `to` is us, the originating server.
        let valid =
            self.state.serves_domain(to) && self.state.s2s.keys.verify(from, to, id, &el.text());
        self.framed
            .queue(&dialback::verify_answer(to, from, id, valid));
        self.flush().await
    }

    /// RFC 6120 §8.1.1.2 / §13.5: a stanza must come from an authenticated domain and go to
    /// one we host.
    async fn stanza(&mut self, el: Element) -> Result<(), End> {
        let Some(_) = Kind::of(&el, ns::SERVER) else {
            return Err(error(
                StreamErrorCondition::UnsupportedStanzaType,
                "only message, presence and iq in jabber:server are allowed",
            ));
        };
        if self.authenticated.is_empty() {
            return Err(error(
                StreamErrorCondition::NotAuthorized,
                "authenticate first",
            ));
        }
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "s2s stanzas need from and to",
            ));
        };
        let Ok(from) = Jid::new(from) else {
            return Err(error(
                StreamErrorCondition::InvalidFrom,
                "'from' is not a JID",
            ));
        };
        if !self.authenticated.contains(from.domain().as_str()) {
            return Err(error(
                StreamErrorCondition::InvalidFrom,
                "'from' is not a domain authenticated on this stream",
            ));
        }
        let Ok(to) = Jid::new(to) else {
            return Err(error(
                StreamErrorCondition::ImproperAddressing,
                "'to' is not a JID",
            ));
        };
        if !self.state.serves_domain(to.domain().as_str()) {
            return Err(error(
                StreamErrorCondition::HostUnknown,
                "'to' is not a domain hosted here",
            ));
        }
        // Inside weft stanzas travel in jabber:client, the namespace local clients read.
        let mut el = weft_xml::with_namespace(&el, ns::SERVER, ns::CLIENT);
        crate::stanza::set_attr(&mut el, xml_ncname!("from").into(), from.as_str());
        crate::router::deliver_local(&self.state, el).await;
        Ok(())
    }
}
