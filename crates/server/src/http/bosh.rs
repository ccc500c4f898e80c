//! XEP-0124 / XEP-0206 BOSH endpoint on the HTTP and HTTPS listeners: `POST` carries
//! `<body/>` requests (a session creation, then the session's requests by `sid`), `OPTIONS`
//! answers CORS preflights (XEP-0124 §4 leaves cross-origin use to the HTTP layer), `GET`
//! says what this is. A new session is a c2s session like any other, over `framing::bosh`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use minidom::Element;
use tokio::sync::oneshot;
use weft_xml::StreamHeader;

use super::ConnInfo;
use crate::framing::bosh::body::{self, Condition};
use crate::framing::bosh::session::{Admit, BoshSession, Params, Taken};
use crate::framing::{BoshFraming, Framed, Incoming};
use crate::negotiation::c2s::Transport;
use crate::ns;
use crate::state::ServerState;
use crate::transport::io::PeerInfo;

/// A request may carry several stanzas (clients batch what they queued): its body may be
/// this many times the stanza size limit, and each stanza in it at most that limit.
const STANZAS_PER_BODY: usize = 4;

/// The largest request body accepted.
fn max_body(state: &ServerState) -> usize {
    state.limits.max_stanza_bytes * STANZAS_PER_BODY
}

/// The Origin allow-list: `bosh.allowed_origins`, else the WebSocket one. Empty allows any
/// origin; otherwise a browser's Origin must be listed (requests without one are not from
/// a browser page and pass).
fn origin_verdict(state: &ServerState, headers: &HeaderMap) -> Result<Option<HeaderValue>, ()> {
    let cfg = &state.config;
    let allowed = cfg
        .bosh
        .allowed_origins
        .as_ref()
        .unwrap_or(&cfg.websocket.allowed_origins);
    let origin = headers.get(header::ORIGIN);
    match origin {
        None => Ok(None),
        Some(_) if allowed.is_empty() => Ok(Some(HeaderValue::from_static("*"))),
        Some(o) => match o.to_str() {
            Ok(s) if allowed.iter().any(|a| a == s) => Ok(Some(o.clone())),
            _ => Err(()),
        },
    }
}

fn respond(
    status: StatusCode,
    allow_origin: Option<HeaderValue>,
    text: impl Into<Body>,
) -> Response {
    let mut resp = Response::new(text.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(origin) = allow_origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

fn terminate(condition: Condition) -> String {
    body::terminate(Some(condition), None, b"")
}

fn forbidden() -> Response {
    let mut resp = Response::new(Body::from("this Origin may not use XMPP over BOSH here\n"));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp
}

/// `OPTIONS`: the CORS preflight a browser sends before its `POST` of `text/xml`.
pub async fn preflight(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let Ok(origin) = origin_verdict(&state, &headers) else {
        return forbidden();
    };
    let mut resp = respond(StatusCode::OK, origin, Body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

/// `GET`: a human who opened the URL learns what it is.
pub async fn info() -> Response {
    let mut resp = Response::new(Body::from(
        "This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206): POST <body/> requests here.\n",
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `POST`: one BOSH request.
pub async fn post(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let Ok(origin) = origin_verdict(&state, req.headers()) else {
        return forbidden();
    };
    let conn = req.extensions().get::<ConnInfo>().map(|c| c.peer.clone());
    let limit = max_body(&state);
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), limit).await else {
        return respond(
            StatusCode::PAYLOAD_TOO_LARGE,
            origin,
            terminate(Condition::PolicyViolation),
        );
    };
    let limits = weft_xml::Limits {
        max_stanza_bytes: limit,
        max_depth: state.limits.max_depth + 1,
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| weft_xml::parse_message(text, limits).ok());
    let Some(el) = parsed else {
        return respond(
            StatusCode::BAD_REQUEST,
            origin,
            terminate(Condition::BadRequest),
        );
    };
    let request = match body::parse_request(&el) {
        Ok(r) => r,
        Err(why) => {
            tracing::debug!("BOSH bad request: {why}");
            // XEP-0124 §17.2: bad-request ends the session it names.
            if let Some(session) = el.attr("sid").and_then(|sid| state.bosh.get(sid)) {
                session.fail(Condition::BadRequest);
            }
            return respond(StatusCode::OK, origin, terminate(Condition::BadRequest));
        }
    };
    // The stanza size limit applies to each stanza as on the other transports, and ends the
    // session the same way (RFC 6120 §4.9.3.14 policy-violation).
    let oversized = request.children.iter().any(|c| {
        let mut buf = Vec::new();
        weft_xml::write_element(c, &mut buf);
        buf.len() > state.limits.max_stanza_bytes
    });
    if oversized {
        if let Some(session) = request.sid.as_deref().and_then(|sid| state.bosh.get(sid)) {
            session.fail(Condition::PolicyViolation);
        }
        return respond(
            StatusCode::OK,
            origin,
            terminate(Condition::PolicyViolation),
        );
    }
    let answer = match request.sid.as_deref() {
        None => create(&state, conn, &el, request.rid).await,
        Some(sid) => match state.bosh.get(sid) {
            None => terminate(Condition::ItemNotFound).into(),
            Some(session) => continue_session(session, request, bytes.len()).await,
        },
    };
    respond(StatusCode::OK, origin, answer.to_string())
}

/// XEP-0124 §7, XEP-0206 §3–§4: a new session, answered with its parameters and the
/// stream features once the c2s session sent them.
async fn create(
    state: &Arc<ServerState>,
    conn: Option<PeerInfo>,
    el: &Element,
    rid: u64,
) -> Arc<str> {
    let cfg = &state.config.bosh;
    let to = el.attr("to").unwrap_or("").to_ascii_lowercase();
    if to.is_empty() {
        return terminate(Condition::ImproperAddressing).into();
    }
    if !state.is_local_domain(&to) {
        return terminate(Condition::HostUnknown).into();
    }
    let Some(peer) = conn else {
        return terminate(Condition::UndefinedCondition).into();
    };
    // A session counts as one connection of its client's address for the session's life, as a
    // socket does: HTTP requests come and go, the session stays.
    let Some(slot) = state.limiter.try_acquire(peer.addr.ip()) else {
        tracing::info!(peer = %peer.addr, "BOSH session refused: limits.max_connections_per_ip reached");
        return terminate(Condition::PolicyViolation).into();
    };
    let secs = |name: &str, max: Duration| {
        el.attr(name)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .map_or(max, |d| d.min(max))
    };
    let wait = secs("wait", cfg.max_wait.0).max(Duration::from_secs(1));
    let hold = el
        .attr("hold")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(1, |h| h.min(cfg.max_hold as usize));
    let acks = el.attr("ack") == Some("1");
    let version = body::attr_ns(el, body::NS_XBOSH, "version").unwrap_or("1.0");
    let mut header_attrs = vec![
        ("to".to_string(), to.clone()),
        ("version".to_string(), version.to_string()),
    ];
    if let Some(lang) = el.attrs().iter().find_map(|((ans, name), v)| {
        (ans.as_str() == rxml::parser::XMLNS_XML && name.as_str() == "lang").then_some(v)
    }) {
        header_attrs.push(("xml:lang".to_string(), lang.to_string()));
    }
    let header = StreamHeader {
        name: "stream".into(),
        ns: ns::STREAM.into(),
        default_ns: Some(ns::CLIENT.into()),
        attrs: header_attrs,
    };
    let max_body = max_body(state);
    let params = Params {
        wait,
        hold,
        requests: u64::from(cfg.max_requests),
        inactivity: cfg.inactivity.0,
        polling: cfg.polling.0,
        acks,
        max_pending_in: max_body * (cfg.max_requests as usize + 1),
        max_pending_out: max_body * 2,
        header: header.clone(),
    };
    let ver = body::negotiated_version(el.attr("ver"));
    let creation_attrs = |sid: &str| {
        let mut a = String::new();
        let p = &params;
        body::push_attr(&mut a, "sid", sid);
        body::push_attr(&mut a, "wait", &p.wait.as_secs().to_string());
        body::push_attr(&mut a, "hold", &p.hold.to_string());
        body::push_attr(&mut a, "requests", &p.requests.to_string());
        body::push_attr(&mut a, "inactivity", &p.inactivity.as_secs().to_string());
        body::push_attr(&mut a, "polling", &p.polling.as_secs().to_string());
        body::push_attr(&mut a, "ver", &ver);
        body::push_attr(&mut a, "from", &to);
        body::push_attr(&mut a, "secure", "true");
        if acks {
            body::push_attr(&mut a, "ack", &rid.to_string());
        }
        body::push_attr(&mut a, "xmpp:version", "1.0");
        body::push_attr(&mut a, "xmpp:restartlogic", "true");
        a
    };
    let Some((session, rx)) =
        state
            .bosh
            .create(rid, params.clone(), creation_attrs, cfg.max_sessions)
    else {
        tracing::warn!("BOSH session refused: bosh.max_sessions reached");
        return terminate(Condition::PolicyViolation).into();
    };
    // A trusted TLS-terminating proxy makes the session secure (as for WebSocket); no
    // channel binding, since the session spans connections.
    let secure = peer.secure || state.config.s2s.trusted_proxies.contains(&peer.addr.ip());
    let peer = PeerInfo {
        secure,
        ..PeerInfo::plain(peer.addr)
    };
    let framed = Framed::Bosh(BoshFraming::new(session.clone()));
    let transport = Transport::Bosh { tls: secure };
    let task = crate::session::c2s::serve(
        state.clone(),
        framed,
        peer,
        transport,
        Some(Ok(Incoming::Header(header))),
    );
    state.tracker.spawn(async move {
        let _slot = slot;
        task.await
    });
    // Not bounded by `wait`: it is answered as soon as the session sent its features.
    await_reply(&session, rid, rx, None).await
}

/// A request of an existing session (XEP-0124 §8–§14, XEP-0206 §5).
async fn continue_session(
    session: Arc<BoshSession>,
    request: body::Request,
    bytes: usize,
) -> Arc<str> {
    let empty_poll = request.children.is_empty() && !request.restart && !request.terminate;
    let mut events: Vec<Incoming> = Vec::with_capacity(request.children.len() + 1);
    if request.restart {
        events.push(Incoming::Header(session.params.header.clone()));
    }
    events.extend(request.children.into_iter().map(Incoming::Element));
    if request.terminate {
        events.push(Incoming::Close);
    }
    let taken = Taken {
        events,
        empty_poll,
        terminate: request.terminate,
        bytes,
    };
    match session.request(request.rid, taken) {
        Admit::Now(answer) => answer,
        Admit::Wait(rx) => {
            let wait = session.params.wait;
            await_reply(&session, request.rid, rx, Some(wait)).await
        }
    }
}

/// Waits for the session to answer request `rid`; at `wait`, it is answered with what there
/// is. A request whose reply was handed to its retransmission gets an empty body.
async fn await_reply(
    session: &BoshSession,
    rid: u64,
    mut rx: oneshot::Receiver<Arc<str>>,
    wait: Option<Duration>,
) -> Arc<str> {
    loop {
        let got = match wait {
            None => (&mut rx).await,
            Some(wait) => match tokio::time::timeout(wait, &mut rx).await {
                Ok(got) => got,
                Err(_) => {
                    session.expire(rid);
                    continue;
                }
            },
        };
        return got.unwrap_or_else(|_| body::response("", b"").into());
    }
}
