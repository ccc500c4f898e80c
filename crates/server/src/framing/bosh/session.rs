//! XEP-0124 §7–§14 for one BOSH session: the rid window (requests taken in order, a
//! retransmitted rid answered with the response kept for it, item-not-found beyond the
//! window), which held request is answered when, the polling and inactivity rules, and the
//! queues between HTTP requests and the session's c2s task. Knows neither HTTP nor XMPP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::body::{self, Condition};
use crate::framing::Incoming;

/// What this session was granted at creation (XEP-0124 §7.2).
#[derive(Clone, Debug)]
pub struct Params {
    pub wait: Duration,
    pub hold: usize,
    /// The rid window: requests the client may have open at once.
    pub requests: u64,
    pub inactivity: Duration,
    pub polling: Duration,
    /// The client asked for acknowledgements (§9): responses carry `ack` when they answer
    /// an older request than the newest one received.
    pub acks: bool,
    /// Events not yet read by the session task, in request bytes, beyond which the client is
    /// overactive (§12).
    pub max_pending_in: usize,
    /// Output waiting for a request, in bytes, beyond which a flush waits (back-pressure).
    pub max_pending_out: usize,
    /// The stream header of the session creation request, which each restart (XEP-0206 §5)
    /// repeats for the session task.
    pub header: weft_xml::StreamHeader,
}

/// A request's content, ready to be handed to the session task in rid order.
pub struct Taken {
    pub events: Vec<Incoming>,
    /// Carries nothing at all: a poll (§12 limits how often).
    pub empty_poll: bool,
    /// `type='terminate'`: answered by the session's end, with what it still sends.
    pub terminate: bool,
    pub bytes: usize,
}

/// How an HTTP request is answered.
pub enum Admit {
    /// At once: a kept response (retransmission) or a terminate.
    Now(Arc<str>),
    /// When the session answers it (payload, `hold` exceeded, the end), or at `wait`.
    Wait(oneshot::Receiver<Arc<str>>),
}

/// The session ended for its task (the client went, the rid window was broken, inactivity).
#[derive(Debug)]
pub struct Gone;

struct Held {
    rid: u64,
    reply: oneshot::Sender<Arc<str>>,
}

enum Creation {
    /// The creation response's attributes, waiting for the stream header (for `authid`).
    Waiting(String),
    Ready(String),
    Sent,
}

/// The previous request, for the polling rule.
struct Prev {
    rid: u64,
    at: Instant,
    empty: bool,
    /// Its response carried no payload.
    answered_empty: Option<bool>,
}

struct Inner {
    /// Every request up to this rid has been taken.
    last_rid: u64,
    /// Requests that came ahead of a gap (§14.2 allows out-of-order arrival).
    early: BTreeMap<u64, (Taken, oneshot::Sender<Arc<str>>)>,
    held: VecDeque<Held>,
    /// The latest responses, for retransmissions (§14.3).
    kept: VecDeque<(u64, Arc<str>)>,
    /// Serialised payloads for the next response.
    out: Vec<u8>,
    creation: Creation,
    events: VecDeque<Incoming>,
    events_bytes: usize,
    /// Since when no request is held (inactivity runs from here).
    idle_since: Option<Instant>,
    prev: Option<Prev>,
    /// Set once ended: the terminate for the next request, then for any later one.
    ended: Option<(Arc<str>, Arc<str>)>,
    /// The client sent `type='terminate'` (§13): its requests wait for the terminate.
    closing: bool,
}

pub struct BoshSession {
    pub sid: String,
    pub params: Params,
    inner: Mutex<Inner>,
    /// Wakes the session task: events, the end, a change of the inactivity deadline.
    wake: Notify,
    /// Wakes flushes and closes that wait for a request to take their bytes.
    request_came: Notify,
    registry: Weak<SessionMap>,
}

type SessionMap = Mutex<HashMap<String, Arc<BoshSession>>>;

/// The BOSH sessions of this node, by sid.
#[derive(Default)]
pub struct Sessions {
    map: Arc<SessionMap>,
}

impl Sessions {
    pub fn get(&self, sid: &str) -> Option<Arc<BoshSession>> {
        lock(&self.map).get(sid).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new session whose creation request (`rid`) waits for the stream header; None when
    /// `max` sessions exist.
    pub fn create(
        &self,
        rid: u64,
        params: Params,
        creation_attrs: impl FnOnce(&str) -> String,
        max: usize,
    ) -> Option<(Arc<BoshSession>, oneshot::Receiver<Arc<str>>)> {
        use base64::Engine;
        let sid =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        let (tx, rx) = oneshot::channel();
        let session = Arc::new(BoshSession {
            sid: sid.clone(),
            params,
            inner: Mutex::new(Inner {
                last_rid: rid,
                early: BTreeMap::new(),
                held: VecDeque::from([Held { rid, reply: tx }]),
                kept: VecDeque::new(),
                out: Vec::new(),
                creation: Creation::Waiting(creation_attrs(&sid)),
                events: VecDeque::new(),
                events_bytes: 0,
                idle_since: None,
                prev: None,
                ended: None,
                closing: false,
            }),
            wake: Notify::new(),
            request_came: Notify::new(),
            registry: Arc::downgrade(&self.map),
        });
        let mut map = lock(&self.map);
        if map.len() >= max {
            return None;
        }
        map.insert(sid, session.clone());
        Some((session, rx))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BoshSession {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Events for the session task that come with the creation request (the stream header).
    pub fn push_events(&self, events: Vec<Incoming>) {
        self.inner().events.extend(events);
        self.wake.notify_one();
    }

    /// An HTTP request of this session (§14): taken in rid order, answered from the kept
    /// responses when retransmitted, or the end of the session when outside the window.
    pub fn request(&self, rid: u64, taken: Taken) -> Admit {
        let mut inner = self.inner();
        if let Some((next, rest)) = &mut inner.ended {
            let body = std::mem::replace(next, rest.clone());
            drop(inner);
            // A closing session task may wait for this request (`end`).
            self.request_came.notify_waiters();
            return Admit::Now(body);
        }
        if rid <= inner.last_rid {
            if let Some((_, body)) = inner.kept.iter().find(|(r, _)| *r == rid) {
                return Admit::Now(body.clone());
            }
            // Still held: the client lost the connection it was held on and sent it again.
            if let Some(held) = inner.held.iter_mut().find(|h| h.rid == rid) {
                let (tx, rx) = oneshot::channel();
                held.reply = tx;
                return Admit::Wait(rx);
            }
            tracing::debug!(sid = %self.sid, rid, "rid already answered and no longer kept");
            return Admit::Now(self.end_locked(&mut inner, Condition::ItemNotFound));
        }
        if rid > inner.last_rid + self.params.requests {
            tracing::debug!(sid = %self.sid, rid, last = inner.last_rid, "rid beyond the window");
            return Admit::Now(self.end_locked(&mut inner, Condition::ItemNotFound));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(early) = inner.early.get_mut(&rid) {
            early.1 = tx;
            return Admit::Wait(rx);
        }
        if inner.events_bytes + taken.bytes > self.params.max_pending_in {
            tracing::debug!(sid = %self.sid, "client sends faster than its session reads");
            return Admit::Now(self.end_locked(&mut inner, Condition::PolicyViolation));
        }
        inner.early.insert(rid, (taken, tx));
        loop {
            let next = inner.last_rid + 1;
            let Some((taken, reply)) = inner.early.remove(&next) else {
                break;
            };
            inner.last_rid = next;
            if !self.take(&mut inner, next, taken, reply) {
                let body = self.end_locked(&mut inner, Condition::PolicyViolation);
                drop(inner);
                self.request_came.notify_waiters();
                return Admit::Now(body);
            }
        }
        drop(inner);
        self.request_came.notify_waiters();
        Admit::Wait(rx)
    }

    /// One request in order: its events go to the session task and it is held (§11). False
    /// when it breaks the polling rule (§12): an empty request less than `polling` after an
    /// empty one that was answered empty.
    fn take(
        &self,
        inner: &mut Inner,
        rid: u64,
        taken: Taken,
        reply: oneshot::Sender<Arc<str>>,
    ) -> bool {
        let now = Instant::now();
        let too_soon = taken.empty_poll
            && inner.prev.as_ref().is_some_and(|p| {
                p.empty
                    && p.answered_empty == Some(true)
                    && now.duration_since(p.at) < self.params.polling
            });
        inner.prev = Some(Prev {
            rid,
            at: now,
            empty: taken.empty_poll,
            answered_empty: None,
        });
        inner.held.push_back(Held { rid, reply });
        inner.idle_since = None;
        inner.closing |= taken.terminate;
        if too_soon {
            tracing::debug!(sid = %self.sid, rid, "empty requests closer than 'polling'");
            return false;
        }
        if !taken.events.is_empty() {
            inner.events_bytes += taken.bytes;
            inner.events.extend(taken.events);
            self.wake.notify_one();
        }
        self.answer_due(inner);
        true
    }

    /// Answers the oldest held requests while more than `hold` are held, or while there is
    /// output for one (§11).
    fn answer_due(&self, inner: &mut Inner) {
        while !inner.closing
            && !inner.held.is_empty()
            && (inner.held.len() > self.params.hold || !inner.out.is_empty())
        {
            if !self.answer(inner, 0) {
                break;
            }
        }
    }

    /// Answers the held request at `index` with all output; false while the creation
    /// request still waits for the stream header.
    fn answer(&self, inner: &mut Inner, index: usize) -> bool {
        let mut attrs = String::new();
        match std::mem::replace(&mut inner.creation, Creation::Sent) {
            Creation::Ready(a) => attrs = a,
            waiting @ Creation::Waiting(_) => {
                inner.creation = waiting;
                return false;
            }
            Creation::Sent => {}
        }
        let Some(held) = inner.held.remove(index) else {
            return false;
        };
        if self.params.acks && inner.last_rid != held.rid && !attrs.contains(" ack=") {
            body::push_attr(&mut attrs, "ack", &inner.last_rid.to_string());
        }
        let payload = std::mem::take(&mut inner.out);
        if let Some(prev) = inner.prev.as_mut().filter(|p| p.rid == held.rid) {
            prev.answered_empty = Some(payload.is_empty());
        }
        let response: Arc<str> = body::response(&attrs, &payload).into();
        self.deliver(inner, held, response);
        true
    }

    fn deliver(&self, inner: &mut Inner, held: Held, response: Arc<str>) {
        inner.kept.push_back((held.rid, response.clone()));
        while inner.kept.len() as u64 > self.params.requests {
            inner.kept.pop_front();
        }
        // A client that went away gets it on retransmission.
        let _ = held.reply.send(response);
        if inner.held.is_empty() && inner.early.is_empty() {
            inner.idle_since = Some(Instant::now());
            // The inactivity deadline starts now.
            self.wake.notify_one();
        }
    }

    /// `wait` ran out for a held request: it is answered with what there is (usually
    /// nothing), through the reply its HTTP request waits on. Not held (answered meanwhile,
    /// or still ahead of a gap): nothing happens.
    pub fn expire(&self, rid: u64) {
        let mut inner = self.inner();
        if inner.closing {
            return;
        }
        if let Some(index) = inner.held.iter().position(|h| h.rid == rid) {
            self.answer(&mut inner, index);
        }
    }

    /// Ends the session from the HTTP side (§17.2); the session task sees it as a lost
    /// connection. Returns the terminate for the request at hand.
    pub fn fail(&self, condition: Condition) -> Arc<str> {
        let mut inner = self.inner();
        self.end_locked(&mut inner, condition)
    }

    fn end_locked(&self, inner: &mut Inner, condition: Condition) -> Arc<str> {
        if let Some((next, _)) = &inner.ended {
            return next.clone();
        }
        let body: Arc<str> = body::terminate(Some(condition), None, b"").into();
        // §17.2: the other requests it held were ended by this one (`other-request`), unless
        // the session itself went away.
        let others: Arc<str> = match condition {
            Condition::RemoteConnectionFailed => body.clone(),
            _ => body::terminate(Some(Condition::OtherRequest), None, b"").into(),
        };
        for held in inner.held.drain(..) {
            let _ = held.reply.send(others.clone());
        }
        for (_, (_, reply)) in std::mem::take(&mut inner.early) {
            let _ = reply.send(others.clone());
        }
        inner.events.clear();
        inner.out.clear();
        inner.ended = Some((body.clone(), body.clone()));
        self.wake.notify_one();
        self.request_came.notify_waiters();
        self.unregister();
        body
    }

    pub fn unregister(&self) {
        if let Some(map) = self.registry.upgrade() {
            let mut map = lock(&map);
            if map.get(&self.sid).is_some_and(|s| std::ptr::eq(&**s, self)) {
                map.remove(&self.sid);
            }
        }
    }

    pub fn is_ended(&self) -> bool {
        self.inner().ended.is_some()
    }

    // --- the session task's side ---------------------------------------------------------

    /// The next event for the session task; `Gone` once the session ended or was inactive
    /// for `inactivity` (§7.1). Cancel-safe.
    pub async fn next_event(&self) -> Result<Incoming, Gone> {
        loop {
            let notified = self.wake.notified();
            let deadline = {
                let mut inner = self.inner();
                if let Some(ev) = inner.events.pop_front() {
                    if inner.events.is_empty() {
                        inner.events_bytes = 0;
                    }
                    return Ok(ev);
                }
                if inner.ended.is_some() {
                    return Err(Gone);
                }
                match inner.idle_since {
                    Some(since) if inner.held.is_empty() && inner.early.is_empty() => {
                        let deadline = since + self.params.inactivity;
                        if deadline <= Instant::now() {
                            tracing::debug!(sid = %self.sid, "BOSH session inactive");
                            self.end_locked(&mut inner, Condition::ItemNotFound);
                            return Err(Gone);
                        }
                        Some(deadline)
                    }
                    _ => None,
                }
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(d) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The stream header went out: the creation response can be sent, with `authid`.
    pub fn header(&self, authid: &str) {
        let mut inner = self.inner();
        if let Creation::Waiting(attrs) = &mut inner.creation {
            let mut attrs = std::mem::take(attrs);
            body::push_attr(&mut attrs, "authid", authid);
            inner.creation = Creation::Ready(attrs);
        }
    }

    /// Output for the client: answers the oldest held request. When more than
    /// `max_pending_out` waits with no request to take it, waits for one up to `inactivity`,
    /// as a socket write would block.
    pub async fn flush(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let deadline = Instant::now() + self.params.inactivity;
        {
            let mut inner = self.inner();
            if inner.ended.is_some() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            inner.out.extend_from_slice(&bytes);
            self.answer_due(&mut inner);
        }
        loop {
            let came = self.request_came.notified();
            {
                let inner = self.inner();
                if inner.ended.is_some() {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                if inner.out.len() <= self.params.max_pending_out {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, came).await.is_err() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }

    /// The session task ends the session: `terminate` (made from what is still queued)
    /// answers the oldest held request, or the next request within `linger`; held ones
    /// after it get a bare terminate.
    pub async fn end(
        &self,
        terminate: impl FnOnce(&[u8]) -> String,
        bare: String,
        linger: Duration,
    ) {
        let waiting = {
            let mut inner = self.inner();
            if inner.ended.is_some() {
                return;
            }
            let out = std::mem::take(&mut inner.out);
            let first: Arc<str> = terminate(&out).into();
            let bare: Arc<str> = bare.into();
            let mut held = std::mem::take(&mut inner.held);
            let waiting = held.is_empty();
            if let Some(h) = held.pop_front() {
                self.deliver(&mut inner, h, first.clone());
            }
            for h in held {
                let _ = h.reply.send(bare.clone());
            }
            for (_, (_, reply)) in std::mem::take(&mut inner.early) {
                let _ = reply.send(bare.clone());
            }
            inner.events.clear();
            inner.ended = Some((if waiting { first } else { bare.clone() }, bare));
            waiting
        };
        if waiting {
            // Nothing held: the client's next request (it is due within `wait`) gets it.
            let _ = tokio::time::timeout(linger, async {
                loop {
                    let came = self.request_came.notified();
                    if let Some((next, rest)) = &self.inner().ended {
                        if Arc::ptr_eq(next, rest) {
                            return;
                        }
                    }
                    came.await;
                }
            })
            .await;
        }
        self.unregister();
    }
}
