//! XEP-0198 Stream Management in the c2s session: `<enable/>`, `<r/>`/`<a/>`, keeping a
//! session whose connection dropped until it is resumed (on any transport) or times out, and
//! what becomes of the stanzas it never delivered. The counters are `session::sm`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jid::{BareJid, FullJid};
use minidom::Element;
use tokio::sync::{mpsc, oneshot};

use crate::session::stop::StopSignal;
use xmpp_parsers::sm::{self, A};

use super::{stream_error, Bound, C2s, Delivery, End};
use crate::error::{StanzaErrorCondition, StreamErrorCondition};
use crate::session::registry::Inbox;
use crate::session::resumption::Lookup;
use crate::session::sm::{Acked, StreamManagement, Unacked};
use crate::session::stop::Signal;
use crate::state::ServerState;

/// How long a resuming stream waits for the old one to hand its session over.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

const NS_CARBONS: &str = "urn:xmpp:carbons:2";

/// A request from a stream that resumes a session: its task answers with the session.
pub(super) struct Takeover(oneshot::Sender<Box<Bound>>);

/// Where a resuming stream leaves its request for a resumable session (registered under the
/// SM-ID), and the session's stop signal it raises to wake the session's task.
pub struct TakeoverSlot {
    signal: Arc<StopSignal>,
    request: Mutex<Option<Takeover>>,
}

impl TakeoverSlot {
    fn request(&self, takeover: Takeover) {
        // A request already waiting is dropped: its stream stops waiting (item-not-found).
        *self.request.lock().unwrap_or_else(|e| e.into_inner()) = Some(takeover);
        self.signal.request_takeover();
    }

    fn take(&self) -> Option<Takeover> {
        self.request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Takeover {
    /// Gives the session to the resuming stream; back if that stream gave up waiting.
    pub(super) fn hand_over(self, bound: Bound) -> Result<(), Bound> {
        self.0.send(Box::new(bound)).map_err(|b| *b)
    }
}

/// Stream management of one session, from `<enabled/>` on.
pub(super) struct SmSession {
    pub counters: StreamManagement,
    /// How long the session waits for a resumption once its connection is lost.
    resume_timeout: Duration,
    /// Set when resumable: where resuming streams ask for the session.
    takeover: Option<Arc<TakeoverSlot>>,
}

impl Bound {
    pub(super) fn is_resumable(&self) -> bool {
        self.sm.as_ref().is_some_and(|sm| sm.takeover.is_some())
    }

    /// The request of a stream that resumes this session, after `Signal::Takeover`.
    pub(super) fn takeover_request(&self) -> Option<Takeover> {
        self.sm.as_ref()?.takeover.as_ref()?.take()
    }
}

fn new_sm_id() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn failed(h: Option<u32>, condition: xmpp_parsers::stanza_error::DefinedCondition) -> Element {
    sm::Failed {
        h,
        error: Some(condition),
    }
    .into()
}

impl C2s {
    /// An element in the XEP-0198 namespace on an established stream.
    pub(super) async fn stream_management(
        &mut self,
        bound: &mut Bound,
        el: Element,
    ) -> Result<(), End> {
        use xmpp_parsers::stanza_error::DefinedCondition::UnexpectedRequest;
        match (el.name(), &mut bound.sm) {
            ("enable", None) => return self.enable(bound, el).await,
            ("enable", Some(_)) => {
                return Err(stream_error(
                    StreamErrorCondition::PolicyViolation,
                    "stream management is already enabled on this stream (XEP-0198 §3)",
                ))
            }
            ("r", Some(sm)) => {
                let ack: Element = A::new(sm.counters.inbound()).into();
                self.framed.queue(&ack);
            }
            ("a", Some(sm)) => {
                let a = A::try_from(el).map_err(|_| {
                    stream_error(
                        StreamErrorCondition::BadFormat,
                        "<a/> needs an 'h' between 0 and 4294967295 (XEP-0198 §4)",
                    )
                })?;
                log_ack(&bound.jid, sm.counters.ack(a.h));
                return Ok(());
            }
            ("resume", _) | ("r", None) | ("a", None) => {
                // XEP-0198 §3, §5: resumption replaces binding; acks need an enabled stream.
                self.framed.queue(&failed(None, UnexpectedRequest));
            }
            _ => {
                return Err(stream_error(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "not an element of XEP-0198",
                ))
            }
        }
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    /// XEP-0198 §3. From here every stanza to the client goes through this task, which counts
    /// it: the registry's direct writes into the connection end.
    async fn enable(&mut self, bound: &mut Bound, el: Element) -> Result<(), End> {
        let state = self.state.clone();
        let config = &state.config.c2s.stream_management;
        if !config.enabled {
            use xmpp_parsers::stanza_error::DefinedCondition::FeatureNotImplemented;
            self.framed.queue(&failed(None, FeatureNotImplemented));
            return self.framed.flush().await.map_err(|_| End::Disconnected);
        }
        let enable = sm::Enable::try_from(el).map_err(|_| {
            stream_error(
                StreamErrorCondition::BadFormat,
                "<enable/> has a 'resume' that is not a boolean or a 'max' that is not a number",
            )
        })?;
        if let Delivery::Direct(writer) = &bound.delivery {
            let (tx, rx) = mpsc::channel(state.config.limits.session_queue);
            state
                .sessions
                .set_inbox(&bound.jid, bound.id, Inbox::Queue(tx));
            // A delivery through a handle taken before the switch is refused (as to a
            // session that went away) rather than written past the counters.
            writer.close();
            bound.delivery = Delivery::Queue(rx);
        }
        let resume_timeout = match enable.max {
            Some(max) => config
                .resume_timeout
                .0
                .min(Duration::from_secs(max.max(1).into())),
            None => config.resume_timeout.0,
        };
        let id = enable.resume.then(new_sm_id);
        let takeover = id.as_deref().map(|id| {
            let slot = Arc::new(TakeoverSlot {
                signal: bound.stop.clone(),
                request: Mutex::new(None),
            });
            state
                .resumption
                .register(id, &bound.jid.to_bare(), slot.clone());
            slot
        });
        let enabled = sm::Enabled {
            id: id.clone().map(sm::StreamId),
            location: None,
            max: id
                .is_some()
                .then(|| u32::try_from(resume_timeout.as_secs()).unwrap_or(u32::MAX)),
            resume: id.is_some(),
        };
        self.framed.queue(&enabled.into());
        bound.sm = Some(Box::new(SmSession {
            counters: StreamManagement::new(id, config.max_unacked),
            resume_timeout,
            takeover,
        }));
        tracing::debug!(jid = %bound.jid, resumable = bound.is_resumable(), "stream management enabled");
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    /// XEP-0198 §5, on a new stream after authentication: takes the session over from the
    /// task that holds it. `None` when it cannot be resumed (`<failed/>` was sent; the client
    /// may bind a new session on this stream).
    pub(super) async fn resume(
        &mut self,
        account: &BareJid,
        el: Element,
    ) -> Result<Option<(Bound, u32)>, End> {
        use xmpp_parsers::stanza_error::DefinedCondition::{FeatureNotImplemented, ItemNotFound};
        let state = self.state.clone();
        let reply = if !state.config.c2s.stream_management.enabled {
            failed(None, FeatureNotImplemented)
        } else {
            let request = sm::Resume::try_from(el).map_err(|_| {
                stream_error(
                    StreamErrorCondition::BadFormat,
                    "<resume/> needs 'previd' and a numeric 'h' (XEP-0198 §5)",
                )
            })?;
            match state.resumption.take(&request.previd.0, account) {
                Lookup::Live(slot) => {
                    let (tx, rx) = oneshot::channel();
                    slot.request(Takeover(tx));
                    // Not kept: a session that ends instead of answering drops the request
                    // with its slot, and the wait ends at once.
                    drop(slot);
                    match tokio::time::timeout(HANDOVER_WAIT, rx).await {
                        Ok(Ok(bound)) => return Ok(Some((*bound, request.h))),
                        _ => failed(None, ItemNotFound),
                    }
                }
                Lookup::Ended { h } => failed(Some(h), ItemNotFound),
                Lookup::Unknown => failed(None, ItemNotFound),
            }
        };
        self.framed.queue(&reply);
        self.framed.flush().await.map_err(|_| End::Disconnected)?;
        Ok(None)
    }

    /// The first thing a resumed session does on its new stream: `<resumed/>`, then every
    /// stanza the client did not acknowledge, again, in order.
    pub(super) async fn resumed(&mut self, bound: &mut Bound, h: u32) -> Result<(), End> {
        let state = self.state.clone();
        let account = bound.jid.to_bare();
        let Some(sm) = bound.sm.as_mut() else {
            return Ok(());
        };
        let Some(id) = sm.counters.id.clone() else {
            return Ok(());
        };
        // The same slot: it wakes the same stop signal, which came along with the session.
        if let Some(slot) = &sm.takeover {
            state.resumption.register(&id, &account, slot.clone());
        }
        log_ack(&bound.jid, sm.counters.ack(h));
        let resumed = sm::Resumed {
            h: sm.counters.inbound(),
            previd: sm::StreamId(id),
        };
        self.framed.queue(&resumed.into());
        for stanza in sm.counters.unacked() {
            self.framed.queue(stanza);
        }
        tracing::debug!(jid = %bound.jid, resent = sm.counters.unacked_len(), "session resumed");
        self.before_flush(bound)?;
        self.framed.flush().await.map_err(|_| End::Disconnected)
    }

    /// A resumable session whose connection was lost: what it is sent waits for a resumption
    /// until the timeout. `Some` when a stream resumes it.
    pub(super) async fn hibernate(&mut self, bound: &mut Bound) -> Option<Takeover> {
        let timeout = bound.sm.as_ref()?.resume_timeout;
        tracing::debug!(jid = %bound.jid, "connection lost; the session waits {timeout:?} to be resumed");
        let state = self.state.clone();
        let away = state.modules.wants_away();
        if away {
            // What the lost connection may never have shown the client (XEP-0357 push).
            for stanza in bound.sm.as_ref()?.counters.unacked() {
                let hibernating = crate::modules::Away::Hibernating;
                state
                    .modules
                    .away_delivery(&state, &bound.jid, stanza, hibernating);
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let stop = bound.stop.clone();
        loop {
            tokio::select! {
                biased;
                signal = std::future::poll_fn(|cx| stop.poll_signal(cx)) => match signal {
                    Signal::Stop(_) => return None,
                    Signal::Takeover => {
                        if let Some(takeover) = bound.takeover_request() {
                            return Some(takeover);
                        }
                    }
                    Signal::Leftovers => {}
                },
                stanza = bound.delivery.next() => {
                    if away {
                        let hibernating = crate::modules::Away::Hibernating;
                        state
                            .modules
                            .away_delivery(&state, &bound.jid, &stanza, hibernating);
                    }
                    let sm = bound.sm.as_mut()?;
                    if !sm.counters.sent(stanza) {
                        tracing::debug!(jid = %bound.jid, "too many stanzas for a lost connection; the session ends");
                        return None;
                    }
                }
                _ = &mut deadline => {
                    tracing::debug!(jid = %bound.jid, "not resumed in time; the session ends");
                    return None;
                }
            }
        }
    }
}

/// XEP-0198 §4: an ack that was not what it should be (see `Acked`).
fn log_ack(jid: &FullJid, acked: Acked) {
    match acked {
        Acked::Counted => {}
        Acked::TooHigh { h, send_count } => tracing::warn!(
            %jid,
            "the client acknowledged {h} stanzas but was sent {send_count} (XEP-0198 §4); \
             taken as all of them"
        ),
        Acked::Stale => tracing::debug!(%jid, "an acknowledgement below the last one; ignored"),
    }
}

/// What an ending session took and never delivered (not acknowledged under XEP-0198, or still
/// queued) goes where stanzas for a resource that went away go (XEP-0198 §5): messages to
/// offline storage with the time they were first sent, IQ requests back to their senders as
/// errors. Presence, IQ answers, errors, headlines, groupchat messages, chat states alone and
/// carbon copies are dropped: they have no later use, or reached the account's other
/// resources already.
pub(super) async fn undelivered(state: &Arc<ServerState>, jid: &FullJid, stanzas: Vec<Unacked>) {
    for Unacked { stanza, sent_at } in stanzas {
        let mut stanza = *stanza;
        match stanza.name() {
            "message" => {
                if matches!(
                    stanza.attr("type"),
                    Some("error" | "groupchat" | "headline")
                ) || crate::stanza::is_chat_state_only(&stanza)
                    || stanza.children().any(|c| c.has_ns(NS_CARBONS))
                {
                    continue;
                }
                crate::stanza::stamp_delay(&mut stanza, jid.domain().as_str(), sent_at);
                crate::router::undelivered_message(state, stanza, &jid.to_bare()).await;
            }
            "iq" if matches!(stanza.attr("type"), Some("get" | "set")) => {
                let condition = StanzaErrorCondition::ServiceUnavailable;
                if let Some(error) = crate::stanza::error_reply(&stanza, condition) {
                    crate::router::dispatch(state, error).await;
                }
            }
            _ => {}
        }
    }
}

impl SmSession {
    /// Remembers the ended session's count for `<failed h=''/>`.
    pub(super) fn ended(&self, state: &ServerState) {
        if let (Some(id), Some(slot)) = (&self.counters.id, &self.takeover) {
            state.resumption.ended(id, slot, self.counters.inbound());
        }
    }
}
