//! One client connection from first byte to last: stream negotiation (STARTTLS, SASL, restart,
//! bind) and then the established session, which stamps 'from', hands stanzas to the router and
//! writes what others send it. Transport-agnostic: it only sees `Framed`.

mod sasl;
mod stream_management;

use stream_management::Takeover;
pub use stream_management::TakeoverSlot;

use std::sync::Arc;

use base64::Engine;
use jid::{BareJid, FullJid};
use minidom::Element;
use rxml::xml_ncname;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use crate::framing::{Framed, FramingError, HeaderOut, Incoming};
use crate::modules::SessionHook;
use crate::negotiation::c2s::{self as neg, PreAuthOffer, Transport};
use crate::ns;
use crate::router;
use crate::session::rate::StanzaBudget;
use crate::session::registry::{BindOutcome, Inbox, Outbound, SessionHandle};
use crate::session::sm::Unacked;
use crate::session::stop::{Signal, StopReason, StopSignal};
use crate::stanza::{self, Kind};
use crate::state::ServerState;
use crate::transport::io::PeerInfo;
use crate::transport::shared::SharedWriter;

/// Stanzas drained from the queue per write, so one flush carries many (fewer syscalls).
const WRITE_BATCH: usize = 64;

/// How a stream ends.
enum End {
    Error(StreamError),
    /// The peer sent its stream close.
    PeerClosed,
    /// The connection is gone; nothing more can be written.
    Disconnected,
    Shutdown,
    /// A new stream resumes this session (XEP-0198 §5); this one closes.
    TakenOver(Takeover),
}

impl From<FramingError> for End {
    fn from(e: FramingError) -> Self {
        match e.stream_error() {
            Some(err) => End::Error(err),
            None => End::Disconnected,
        }
    }
}

fn stream_error(condition: StreamErrorCondition, text: &str) -> End {
    End::Error(StreamError::new(condition, text))
}

/// A bound session.
struct Bound {
    jid: FullJid,
    id: u64,
    delivery: Delivery,
    stop: Arc<StopSignal>,
    /// XEP-0198, once the client enabled it. Boxed: an idle session without it stays small.
    sm: Option<Box<stream_management::SmSession>>,
}

/// The session task's side of its inbox (`registry::Inbox`).
enum Delivery {
    /// Others write into the connection; this task writes what they could not.
    Direct(Arc<SharedWriter>),
    Queue(mpsc::Receiver<Outbound>),
}

impl Delivery {
    /// Cancel-safe: the next stanza from the queue. A direct delivery never waits here: the
    /// session's stop signal tells it of leftovers.
    async fn next(&mut self) -> Box<Element> {
        match self {
            Delivery::Direct(_) => std::future::pending().await,
            Delivery::Queue(rx) => match rx.recv().await {
                Some(Outbound::Stanza(el)) => el,
                // The registry holds a sender while the session is bound.
                None => std::future::pending().await,
            },
        }
    }

    fn try_next(&mut self) -> Option<Box<Element>> {
        match self {
            Delivery::Direct(_) => None,
            Delivery::Queue(rx) => match rx.try_recv() {
                Ok(Outbound::Stanza(el)) => Some(el),
                Err(_) => None,
            },
        }
    }
}

struct C2s {
    state: Arc<ServerState>,
    framed: Framed,
    peer: PeerInfo,
    transport: Transport,
    stream_id: String,
    domain: String,
    /// The 'from' of the client's header, echoed as 'to' (RFC 6120 §4.7.2).
    client_from: Option<String>,
    header_sent: bool,
    /// What was already read by whoever handed us the connection (WebSocket dispatch).
    pending: Option<Box<Result<Incoming, FramingError>>>,
}

/// Serves one client connection until it ends; `first` is an event already read from it.
///
/// Not an `async fn`: its arguments would stay in the future beside the `C2s` they move into.
/// The future lives as long as the connection, so its size is memory per idle session.
pub fn serve(
    state: Arc<ServerState>,
    framed: Framed,
    peer: PeerInfo,
    transport: Transport,
    first: Option<Result<Incoming, FramingError>>,
) -> impl std::future::Future<Output = ()> + Send {
    let domain = state.config.default_domain().to_string();
    let c2s = Box::new(C2s {
        state,
        framed,
        peer,
        transport,
        stream_id: String::new(),
        domain,
        client_from: None,
        header_sent: false,
        pending: first.map(Box::new),
    });
    crate::transport::shared::batched(c2s.run())
}

impl C2s {
    /// Boxed `self`: a `mut self` argument would be stored twice in the future (as the
    /// argument and as the mutable binding), and this future is an idle session's memory.
    async fn run(self: Box<Self>) {
        let mut this = self;
        let state = this.state.clone();
        // Negotiation and the final close are boxed: they run once, and inline they would
        // make every idle session's future as large as their biggest state. The outcome is
        // taken apart at once: a `Result` kept whole while the session runs stayed in every
        // idle session's memory (80 bytes, past an allocator size class).
        let Some((mut bound, resume)) = Box::pin(this.negotiate_in_time()).await else {
            return;
        };
        // The connection was lost (and the session may wait to be resumed). A flag, not
        // an `End` kept across the session's awaits: that grew every idle session.
        let mut lost = match resume {
            // XEP-0198 §5: the session goes on where it was; no new-session hooks.
            Some(h) => {
                let lost = Box::pin(this.resumed(&mut bound, h)).await.is_err();
                if !lost && state.modules.wants_session(SessionHook::Resumed) {
                    Box::pin(
                        state
                            .modules
                            .session(&state, SessionHook::Resumed, &bound.jid),
                    )
                    .await;
                }
                lost
            }
            None => {
                if state.modules.wants_session(SessionHook::Bound) {
                    Box::pin(
                        state
                            .modules
                            .session(&state, SessionHook::Bound, &bound.jid),
                    )
                    .await;
                }
                false
            }
        };
        let end = loop {
            let end = if lost {
                End::Disconnected
            } else {
                this.established(&mut bound).await
            };
            let (takeover, connected) = match end {
                End::TakenOver(takeover) => (takeover, true),
                End::Disconnected if bound.is_resumable() => {
                    match Box::pin(this.hibernate(&mut bound)).await {
                        Some(takeover) => (takeover, false),
                        None => break End::Disconnected,
                    }
                }
                end => break end,
            };
            match takeover.hand_over(bound) {
                Ok(()) => {
                    if connected {
                        let err = StreamError::new(
                            StreamErrorCondition::Conflict,
                            "this session was resumed on another stream (XEP-0198 §5)",
                        );
                        Box::pin(this.finish(End::Error(err))).await;
                    }
                    return;
                }
                // The resuming stream stopped waiting: the session stays here.
                Err(back) => bound = back,
            }
            lost = !connected;
        };
        // One boxed future that takes both: `end` kept here across an await would also be
        // part of every idle session's memory.
        Box::pin(this.close(bound, end)).await;
    }

    async fn close(&mut self, mut bound: Bound, end: End) {
        if matches!(end, End::Shutdown) {
            self.write_queued(&mut bound).await;
        }
        self.end_session(bound).await;
        self.finish(end).await;
    }

    /// At shutdown, what was queued for the session before it was told to stop (modules'
    /// last words, `Module::stopping`: rooms' 332) is written before the stream closes, at
    /// most a queue's worth: the stop wins over anything still arriving.
    async fn write_queued(&mut self, bound: &mut Bound) {
        let mut written = false;
        for _ in 0..self.state.config.limits.session_queue {
            let Some(el) = bound.delivery.try_next() else {
                break;
            };
            self.send(bound, el);
            written = true;
        }
        if written {
            let _ = self.framed.flush().await;
        }
    }

    /// The session is over. What it took and never delivered goes elsewhere first (XEP-0198
    /// §5), in order, while later stanzas still queue behind it; then nothing more reaches it,
    /// and the modules see it end while the registry still lists it (its last presence, for
    /// the unavailable broadcast); then it is forgotten.
    async fn end_session(&mut self, mut bound: Bound) {
        let state = self.state.clone();
        let mut undelivered: Vec<Unacked> = match bound.sm.as_mut() {
            Some(sm) => sm.counters.take_unacked().into(),
            None => Vec::new(),
        };
        let mut closed = false;
        loop {
            // What is still queued was never written.
            while let Some(stanza) = bound.delivery.try_next() {
                undelivered.push(Unacked {
                    stanza,
                    sent_at: std::time::SystemTime::now(),
                });
            }
            if undelivered.is_empty() {
                if closed {
                    break;
                }
                self.stop_deliveries(&mut bound);
                closed = true;
                continue;
            }
            let batch = std::mem::take(&mut undelivered);
            stream_management::undelivered(&state, &bound.jid, batch).await;
        }
        // A session replaced by a new bind of its resource (RFC 6120 §7.7.2.2) ends quietly:
        // the resource lives on in the new session, which the modules and the user's other
        // resources would otherwise hear of as gone (an unavailable from its full JID).
        let replaced = !state.sessions.holds(&bound.jid, bound.id);
        if !replaced && state.modules.wants_session(SessionHook::Closed) {
            state
                .modules
                .session(&state, SessionHook::Closed, &bound.jid)
                .await;
        }
        if !replaced {
            self.unbind(&bound);
        }
        if let Some(sm) = &bound.sm {
            sm.ended(&state);
        }
    }

    /// `negotiate` within the unauthenticated timeout, unless the server stops first; a
    /// stream that ends before that is closed here.
    async fn negotiate_in_time(&mut self) -> Option<(Bound, Option<u32>)> {
        let state = self.state.clone();
        let deadline = Instant::now() + state.config.c2s.unauthenticated_timeout.0;
        // A stream that starts while draining is redirected once its header is in (negotiate).
        let drain_started_before = state.is_draining();
        let drained = async {
            if drain_started_before {
                std::future::pending::<()>().await;
            }
            state.draining.cancelled().await;
        };
        let negotiated = tokio::select! {
            r = self.negotiate() => r,
            _ = drained => Err(End::Shutdown),
            _ = tokio::time::sleep_until(deadline) => Err(stream_error(
                StreamErrorCondition::ConnectionTimeout,
                "authentication took too long",
            )),
            _ = state.shutdown.cancelled() => Err(End::Shutdown),
        };
        match negotiated {
            Ok(session) => Some(session),
            Err(end) => {
                // Boxed: the close is far larger than a negotiation's state.
                Box::pin(self.finish(end)).await;
                None
            }
        }
    }

    fn queue_header(&mut self) {
        let header = HeaderOut {
            id: &self.stream_id,
            from: &self.domain,
            to: self.client_from.as_deref(),
            content_ns: ns::CLIENT,
        };
        self.framed.queue_header(&header);
        self.header_sent = true;
    }

    /// Sends `err` and closes, opening the stream first when our header is not out yet
    /// (RFC 6120 §4.9.1.1, RFC 7395 §3.5).
    async fn fail(&mut self, err: &StreamError) {
        if !self.header_sent {
            self.queue_header();
        }
        self.framed.fail(err, None).await;
    }

    async fn finish(&mut self, end: End) {
        let header_missing = !self.header_sent;
        if header_missing && self.stream_id.is_empty() {
            self.stream_id = new_stream_id();
        }
        match end {
            // A session taken over was handed on in `run`.
            End::Disconnected | End::TakenOver(_) => {}
            End::PeerClosed => self.framed.close(true, None).await,
            End::Error(err) => {
                tracing::debug!(peer = %self.peer.addr, "stream error: {}: {}", err.condition.name(), err.text);
                self.fail(&err).await;
            }
            End::Shutdown => {
                let redirect = self
                    .framed
                    .redirect_for(&self.state, self.transport.is_tls());
                if redirect.is_some() && !header_missing {
                    self.framed.close(false, redirect.as_deref()).await;
                } else {
                    let err = StreamError::new(
                        StreamErrorCondition::SystemShutdown,
                        "the server is shutting down",
                    );
                    self.fail(&err).await;
                }
            }
        }
    }

    async fn recv(&mut self) -> Result<Incoming, End> {
        if let Some(ev) = self.pending.take() {
            return (*ev).map_err(End::from);
        }
        self.framed.recv().await.map_err(End::from)
    }

    /// The next element of the current stream; a close ends it, a header here is an error.
    async fn next_element(&mut self) -> Result<Element, End> {
        match self.recv().await? {
            Incoming::Element(el) => Ok(el),
            Incoming::Close => Err(End::PeerClosed),
            Incoming::Header(_) => Err(stream_error(
                StreamErrorCondition::BadFormat,
                "a stream header was not expected here",
            )),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    /// Opens streams until a resource is bound (RFC 6120 §4.3, §5, §6, §7) or a session is
    /// resumed (XEP-0198 §5; then with the client's 'h').
    async fn negotiate(&mut self) -> Result<(Bound, Option<u32>), End> {
        let mut authenticated: Option<BareJid> = None;
        let mut failures = 0u32;
        loop {
            self.header_sent = false;
            self.stream_id = new_stream_id();
            let header = match self.recv().await? {
                Incoming::Header(h) => h,
                Incoming::Close => return Err(End::PeerClosed),
                Incoming::Element(_) => {
                    return Err(stream_error(
                        StreamErrorCondition::BadFormat,
                        "the stream must begin with a stream header",
                    ))
                }
            };
            let state = self.state.clone();
            self.domain = neg::check_header(&header, self.framed.is_websocket(), |d| {
                state.is_local_domain(d)
            })
            .map_err(End::Error)?;
            self.client_from = header.attr("from").map(str::to_string);
            self.queue_header();
            if self.state.is_draining() {
                return Err(End::Shutdown);
            }
            if let Some(account) = &authenticated {
                let account = account.clone();
                self.framed.queue_stream_element(&neg::post_auth_features(
                    self.state.modules.stream_features(),
                    self.state.modules.caps(),
                    self.state.config.c2s.stream_management.enabled,
                ));
                self.flush().await?;
                return self.bind(&account).await;
            }
            let policy = neg::Policy {
                require_encryption: self.state.config.c2s.require_encryption,
                allow_plain_on_loopback: self.state.config.c2s.allow_plain_on_loopback,
            };
            let offer = neg::pre_auth_offer(
                self.transport,
                policy,
                self.peer.addr.ip().is_loopback(),
                &self.peer.bindings.available(),
            );
            self.framed
                .queue_stream_element(&neg::pre_auth_features(&offer, policy.require_encryption));
            self.flush().await?;
            loop {
                let el = self.next_element().await?;
                if el.is("starttls", ns::TLS) {
                    self.starttls(&offer).await?;
                    break;
                }
                if el.is("auth", ns::SASL) {
                    match self.sasl(&offer, &el).await? {
                        Some(account) => {
                            authenticated = Some(account);
                            self.framed.restart();
                            break;
                        }
                        None => {
                            failures += 1;
                            if failures >= self.state.config.c2s.max_auth_attempts {
                                return Err(stream_error(
                                    StreamErrorCondition::PolicyViolation,
                                    "too many failed authentication attempts",
                                ));
                            }
                        }
                    }
                    continue;
                }
                return Err(stream_error(
                    StreamErrorCondition::NotAuthorized,
                    "authenticate before sending anything else (RFC 6120 §6)",
                ));
            }
        }
    }

    /// RFC 6120 §5.4.2.
    async fn starttls(&mut self, offer: &PreAuthOffer) -> Result<(), End> {
        let Framed::Tcp(tcp) = &mut self.framed else {
            // Never offered on WebSocket or BOSH (TLS is the HTTP connection's): §5.4.2.2's
            // failure, and the stream ends.
            self.framed
                .queue(&Element::builder("failure", ns::TLS).build());
            return Err(End::PeerClosed);
        };
        if !offer.starttls || tcp.is_tls() {
            tcp.queue(&Element::builder("failure", ns::TLS).build());
            return Err(End::PeerClosed);
        }
        tcp.queue(&Element::builder("proceed", ns::TLS).build());
        let acceptor = tokio_rustls::TlsAcceptor::from(self.state.tls.starttls.clone());
        self.peer = tcp
            .starttls(&acceptor, &self.state.tls.server_end_point)
            .await
            .map_err(|e| {
                tracing::debug!(peer = %self.peer.addr, "STARTTLS handshake failed: {e}");
                End::Disconnected
            })?;
        self.transport = Transport::Tcp { tls: true };
        Ok(())
    }
    /// RFC 6120 §7: waits for the bind request (answering legacy session requests meanwhile).
    async fn bind(&mut self, account: &BareJid) -> Result<(Bound, Option<u32>), End> {
        // One stop signal for every attempt: it is what a shared writer wakes for leftovers,
        // and a refused attempt leaves it unraised.
        let stop = Arc::new(StopSignal::default());
        let limit = self.state.config.limits.session_queue;
        let shared = self.framed.share_writer(limit);
        if let Some((writer, _)) = &shared {
            writer.set_owner(stop.clone());
        }
        loop {
            let el = self.next_element().await?;
            let is_set_iq = el.is("iq", ns::CLIENT) && el.attr("type") == Some("set");
            if is_set_iq && el.has_child("session", ns::SESSION) {
                self.framed.queue(&stanza::iq_result(&el, None));
                self.flush().await?;
                continue;
            }
            if el.is("resume", ns::SM) {
                match self.resume(account, el).await? {
                    Some((bound, h)) => return Ok((bound, Some(h))),
                    None => continue,
                }
            }
            if el.has_ns(ns::SM) {
                // XEP-0198 §3: enabling (and acking) needs a bound resource.
                self.framed.queue(
                    &Element::builder("failed", ns::SM)
                        .append(Element::builder("unexpected-request", ns::STANZAS).build())
                        .build(),
                );
                self.flush().await?;
                continue;
            }
            let Some(request) = el.get_child("bind", ns::BIND).filter(|_| is_set_iq) else {
                return Err(stream_error(
                    StreamErrorCondition::NotAuthorized,
                    "bind a resource before sending stanzas (RFC 6120 §7)",
                ));
            };
            let wanted = request
                .get_child("resource", ns::BIND)
                .map(|r| r.text())
                .filter(|r| !r.trim().is_empty());
            let resource = wanted.clone().unwrap_or_else(generated_resource);
            let Ok(jid) = account.with_resource_str(&resource) else {
                let err = StanzaError::new(StanzaErrorCondition::BadRequest)
                    .with_text("the resource is not a valid resourcepart (RFC 7622 §3.4)");
                self.framed
                    .queue(&err.reply_to(&el).unwrap_or_else(|| el.clone()));
                self.flush().await?;
                continue;
            };
            let (inbox, delivery) = match &shared {
                Some((writer, wire)) => (
                    Inbox::Direct(writer.clone(), *wire),
                    Delivery::Direct(writer.clone()),
                ),
                None => {
                    let (tx, rx) = mpsc::channel(limit);
                    (Inbox::Queue(tx), Delivery::Queue(rx))
                }
            };
            let id = self.state.sessions.new_session_id();
            let handle = SessionHandle {
                id,
                inbox,
                stop: stop.clone(),
            };
            match self
                .state
                .sessions
                .bind(&jid, handle, self.state.config.c2s.resource_conflict)
            {
                BindOutcome::Conflict => {
                    let err = StanzaError::new(StanzaErrorCondition::Conflict)
                        .with_text("that resource is in use");
                    if let Some(reply) = err.reply_to(&el) {
                        self.framed.queue(&reply);
                    }
                    self.flush().await?;
                    continue;
                }
                BindOutcome::Replaced(old) => old.stop.raise(StopReason::Replaced),
                BindOutcome::Bound => {}
            }
            let payload = Element::builder("bind", ns::BIND)
                .append(
                    Element::builder("jid", ns::BIND)
                        .append(jid.as_str())
                        .build(),
                )
                .build();
            let mut result = stanza::iq_result(&el, Some(payload));
            stanza::remove_attr(&mut result, "from");
            self.framed.queue(&result);
            self.flush().await?;
            if let Delivery::Direct(writer) = &delivery {
                // Stanzas delivered since the registry knew us follow the bind result.
                writer.release();
            }
            tracing::debug!(%jid, "bound");
            return Ok((
                Bound {
                    jid,
                    id,
                    delivery,
                    stop: stop.clone(),
                    sm: None,
                },
                None,
            ));
        }
    }

    /// The established session: stanzas both ways until the stream ends.
    async fn established(&mut self, bound: &mut Bound) -> End {
        let state = self.state.clone();
        let limits = &state.config.limits;
        let mut budget = StanzaBudget::new(limits.c2s_stanza_rate, limits.c2s_stanza_burst);
        // While set, the client is over its stanza budget: we write but do not read. One
        // timer made once and reset when needed: a new one per turn of the loop cost a clock
        // read and a reference on the runtime per stanza.
        let mut paused = false;
        let resume = tokio::time::sleep_until(Instant::now());
        tokio::pin!(resume);
        let stop = bound.stop.clone();
        loop {
            tokio::select! {
                biased;
                signal = std::future::poll_fn(|cx| stop.poll_signal(cx)) => match signal {
                    Signal::Stop(StopReason::Shutdown) => return End::Shutdown,
                    Signal::Stop(StopReason::Replaced) => return stream_error(
                        StreamErrorCondition::Conflict,
                        "replaced by a new session for the same resource",
                    ),
                    // What deliveries left for the socket (transport::shared).
                    Signal::Leftovers => {
                        if self.framed.flush().await.is_err() {
                            return End::Disconnected;
                        }
                    }
                    Signal::Takeover => {
                        if let Some(takeover) = bound.takeover_request() {
                            return End::TakenOver(takeover);
                        }
                    }
                },
                first = bound.delivery.next() => {
                    self.send(bound, first);
                    for _ in 1..WRITE_BATCH {
                        match bound.delivery.try_next() {
                            Some(el) => self.send(bound, el),
                            None => break,
                        }
                    }
                    if let Err(end) = self.before_flush(bound) {
                        return end;
                    }
                    if self.framed.flush().await.is_err() {
                        return End::Disconnected;
                    }
                }
                _ = &mut resume, if paused => paused = false,
                incoming = self.framed.recv(), if !paused => {
                    let el = match incoming {
                        Ok(Incoming::Element(el)) => el,
                        Ok(Incoming::Close) => return End::PeerClosed,
                        Ok(Incoming::Header(_)) => {
                            return stream_error(
                                StreamErrorCondition::BadFormat,
                                "a stream restart is only allowed during negotiation",
                            );
                        }
                        Err(e) => return End::from(e),
                    };
                    if let Err(end) = self.client_stanza(el, bound).await {
                        return end;
                    }
                    if crate::transport::shared::batch_is_full() {
                        tokio::task::yield_now().await;
                    }
                    if let Some(until) = budget.spend() {
                        resume.as_mut().reset(until);
                        paused = true;
                    }
                }
            }
        }
    }

    /// A stanza (or a nonza) to the client: with XEP-0198 on, counted and kept until acked.
    fn send(&mut self, bound: &mut Bound, stanza: Box<Element>) {
        self.framed.queue(&stanza);
        if let Some(sm) = &mut bound.sm {
            sm.counters.sent(stanza);
        }
    }

    /// Before what was sent is written: an ack request when stanzas wait for one (XEP-0198
    /// §4), or the end when too many do. Not an async wrapper around the flush: its future
    /// would be part of every idle session's.
    fn before_flush(&mut self, bound: &mut Bound) -> Result<(), End> {
        if let Some(sm) = &mut bound.sm {
            let counters = &mut sm.counters;
            if counters.over_limit() {
                return Err(stream_error(
                    StreamErrorCondition::PolicyViolation,
                    "too many stanzas wait for your acknowledgement (XEP-0198)",
                ));
            }
            if !counters.ack_requested && counters.unacked_len() > 0 {
                counters.ack_requested = true;
                self.framed.queue(&Element::builder("r", ns::SM).build());
            }
        }
        Ok(())
    }

    /// RFC 6120 §8.1.2.1: the server stamps 'from'; a client may only use its own JID there.
    async fn client_stanza(&mut self, mut el: Element, bound: &mut Bound) -> Result<(), End> {
        if el.has_ns(ns::SM) {
            // XEP-0198's elements. Decided here rather than in the session loop, where the
            // element held across two awaits cost every idle session its size.
            return Box::pin(self.stream_management(bound, el)).await;
        }
        let jid = &bound.jid;
        let Some(kind) = Kind::of(&el, ns::CLIENT) else {
            // Not a stanza: a module's element (XEP-0352 client state), or an error.
            let state = self.state.clone();
            let Some(replies) = Box::pin(state.modules.nonza(&state, jid, &el)).await else {
                return Err(stream_error(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "only message, presence and iq in jabber:client are allowed (RFC 6120 §4.9.3.24)",
                ));
            };
            for r in &replies {
                self.framed.queue(r);
            }
            if !replies.is_empty() {
                self.flush().await?;
            }
            return Ok(());
        };
        if let Some(from) = el.attr("from") {
            let own = from == jid.as_str() || BareJid::new(from).is_ok_and(|b| b == jid.to_bare());
            if !own {
                return Err(stream_error(
                    StreamErrorCondition::InvalidFrom,
                    "'from' does not match the authenticated JID (RFC 6120 §8.1.2.1)",
                ));
            }
        }
        stanza::set_attr(&mut el, xml_ncname!("from").into(), jid.as_str());
        // Boxed: routing's future is larger than the idle loop that waits on it.
        let replies = Box::pin(router::route_from_client(&self.state, el, kind, jid)).await;
        if let Some(sm) = &mut bound.sm {
            // XEP-0198 §4: routed, stored or answered: handled.
            sm.counters.handled();
        }
        if !replies.is_empty() {
            for r in replies {
                self.send(bound, Box::new(r));
            }
            self.before_flush(bound)?;
            self.flush().await?;
        }
        Ok(())
    }

    /// Nothing may follow our stream close: from here a delivery to this session is refused
    /// as to a resource that went away (and goes where such stanzas go), none is lost in a
    /// queue nobody reads.
    fn stop_deliveries(&self, bound: &mut Bound) {
        match &mut bound.delivery {
            Delivery::Direct(writer) => writer.close(),
            Delivery::Queue(rx) => rx.close(),
        }
    }

    fn unbind(&self, bound: &Bound) {
        self.state.sessions.unbind(&bound.jid, bound.id);
        // RFC 6121 §4.5.2: the user's other resources learn this one went away.
        let gone = Element::builder("presence", ns::CLIENT)
            .attr(xml_ncname!("type").into(), "unavailable")
            .attr(xml_ncname!("from").into(), bound.jid.as_str())
            .build();
        self.state
            .sessions
            .deliver_to_all(&bound.jid.to_bare(), gone);
    }
}

fn new_stream_id() -> String {
    let bytes: [u8; 12] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 6120 §7.6.2.1: a server-generated resource, unpredictable.
fn generated_resource() -> String {
    let bytes: [u8; 9] = rand::random();
    format!(
        "weft-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}
