//! XEP-0124 / XEP-0206 BOSH for the load generator: one XMPP session as a sequence of HTTP/1.1
//! `POST`s of `<body/>` wrappers, the way browser clients (Strophe.js, Converse) run it.
//!
//! - At most two requests in flight (`requests='2'`, `hold='1'`, what servers grant and real
//!   clients use), each on its own keep-alive TCP connection: the second connection is opened
//!   when a request must go out while the first holds one.
//! - The first `open_stream` sends the session creation body; later ones a restart
//!   (`xmpp:restart='true'`, XEP-0206 §5). Every request takes the next `rid`.
//! - `send` queues stanzas; `flush` sends them all in one `<body/>`, after waiting for a free
//!   connection when two requests are in flight already.
//! - While the caller waits in `recv` and no request is in flight, an empty `<body/>` goes out
//!   so the server can push (long polling). It is sent lazily: a session about to send stanzas
//!   anyway sends them instead of an extra empty request.
//! - Responses are handed out in `rid` order, split into their children; the creation and
//!   restart responses start with `Event::Header`; `type='terminate'` ends the session
//!   (`Event::Closed`, or an error naming its condition).
//!
//! The HTTP/1.1 framing is written by hand rather than with hyper's client: the workspace builds
//! hyper with its server features only, and turning on `client` for the generator would change
//! the hyper the server is built with (features are unified per build); and `recv` must be
//! cancel-safe (it sits in `select!` next to a sender, and is polled once with `now_or_never`),
//! which is simplest when every byte in flight lives in this struct and each call just drives
//! the sockets as far as they go. Requests carry Content-Length; responses may use
//! Content-Length or chunked encoding. No pipelining: one request per connection at a time.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::{dial, Event, Text};
use crate::split::{Piece, Splitter};
use crate::xml;

const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const XBOSH: &str = "urn:xmpp:xbosh";
/// Seconds the server may hold a request (servers cap it: weft at 60, Prosody at 120).
const WAIT: u32 = 60;
/// Queued stanzas beyond which `send` starts a request by itself, as TCP writes its buffer.
const MAX_BATCH: usize = 64 * 1024;
/// How long `close` waits for the answer to its terminate.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Dialing = Pin<Box<dyn Future<Output = anyhow::Result<TcpStream>>>>;

enum Link {
    Down,
    Dialing(Dialing),
    Up(TcpStream),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Create,
    Restart,
    Plain,
    Terminate,
}

/// A request on its connection: its bytes (kept to send once more on a fresh connection if the
/// server closed the kept-alive one under it) and how many of them are written.
struct Req {
    rid: u64,
    kind: Kind,
    bytes: Vec<u8>,
    written: usize,
    resent: bool,
}

/// A response waiting for its turn (responses are handed out in rid order).
struct Done {
    rid: u64,
    kind: Kind,
    resp: Response,
}

struct Slot {
    link: Link,
    rbuf: Vec<u8>,
    req: Option<Req>,
    done: Option<Done>,
}

impl Slot {
    fn new(link: Link) -> Slot {
        Slot {
            link,
            rbuf: Vec::new(),
            req: None,
            done: None,
        }
    }

    fn busy(&self) -> bool {
        self.req.is_some() || self.done.is_some()
    }
}

/// One BOSH session of the generator.
pub struct BoshConn {
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    /// The request line and headers up to Content-Length's value.
    head: String,
    domain: String,
    /// The session id, escaped for an attribute value.
    sid: Option<String>,
    /// The rid of the next request.
    next_rid: u64,
    /// The rid whose response is handed out next.
    deliver_rid: u64,
    slots: [Slot; 2],
    /// Stanzas queued by `send`.
    out: String,
    inbox: VecDeque<Event>,
    /// Set by a `type='terminate'` response: its condition, if any.
    ended: Option<Option<String>>,
    /// Set when the session broke (HTTP error, connection lost): every later call fails.
    broken: Option<String>,
}

impl BoshConn {
    /// A session to `path` at `addr` for `domain`, over `first` (already connected from `src`).
    pub fn new(
        first: TcpStream,
        addr: SocketAddr,
        src: Option<Ipv4Addr>,
        path: &str,
        domain: &str,
    ) -> BoshConn {
        // XEP-0124 §7.1: a random first rid, far enough below 2^53 to count up from.
        let rid = u64::from(rand::random::<u32>()) + 1;
        BoshConn {
            addr,
            src,
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {domain}:{}\r\n\
                 Content-Type: text/xml; charset=utf-8\r\nContent-Length: ",
                addr.port()
            ),
            domain: domain.into(),
            sid: None,
            next_rid: rid,
            deliver_rid: rid,
            slots: [Slot::new(Link::Up(first)), Slot::new(Link::Down)],
            out: String::new(),
            inbox: VecDeque::new(),
            ended: None,
            broken: None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        match &self.broken {
            Some(why) => Err(anyhow!("{why}")),
            None => Ok(()),
        }
    }

    /// The creation body on the first call, a restart body (XEP-0206 §5) on later ones.
    pub async fn open_stream(&mut self) -> anyhow::Result<()> {
        self.check()?;
        if !self.out.is_empty() {
            self.flush().await?;
        }
        let created = self.sid.is_some() || self.slots.iter().any(|s| s.busy());
        let kind = if created { Kind::Restart } else { Kind::Create };
        self.request(kind, String::new()).await?;
        self.written().await
    }

    pub async fn send(&mut self, s: String) -> anyhow::Result<()> {
        self.out.push_str(&s);
        if self.out.len() >= MAX_BATCH {
            let payload = std::mem::take(&mut self.out);
            self.request(Kind::Plain, payload).await?;
        }
        Ok(())
    }

    /// Sends what `send` queued in one body, and waits until every request is written.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.check()?;
        if !self.out.is_empty() {
            let payload = std::mem::take(&mut self.out);
            self.request(Kind::Plain, payload).await?;
        }
        self.written().await
    }

    /// The next event; cancel-safe (all state is in `self`).
    pub async fn recv(&mut self) -> anyhow::Result<Event> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// `type='terminate'` (XEP-0124 §13) with whatever is queued, waiting a little for its
    /// answer so that it is not cut off by the sockets closing.
    pub async fn close(&mut self) {
        if self.sid.is_none() || self.ended.is_some() || self.broken.is_some() {
            return;
        }
        let payload = std::mem::take(&mut self.out);
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            self.request(Kind::Terminate, payload).await?;
            poll_fn(|cx| {
                if let Err(e) = self.pump(cx) {
                    return Poll::Ready(Err(e));
                }
                self.inbox.clear();
                if self.ended.is_some() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            })
            .await
        })
        .await;
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<anyhow::Result<Event>> {
        loop {
            if let Some(ev) = self.inbox.pop_front() {
                return Poll::Ready(Ok(ev));
            }
            if let Some(end) = &self.ended {
                return Poll::Ready(match end {
                    None => Ok(Event::Closed),
                    Some(c) => Err(anyhow!("BOSH session terminated: condition='{c}'")),
                });
            }
            if let Err(e) = self.pump(cx) {
                return Poll::Ready(Err(e));
            }
            if !self.inbox.is_empty() || self.ended.is_some() {
                continue;
            }
            // Nothing to hand out and nothing in flight: an empty body for the server to hold.
            if self.sid.is_some() && !self.slots.iter().any(Slot::busy) {
                if let Err(e) = self.submit(Kind::Plain, "") {
                    return Poll::Ready(Err(e));
                }
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Puts a request on a free connection, first waiting for one (and, unless this is the
    /// creation, for the sid): responses that come meanwhile go to the inbox.
    async fn request(&mut self, kind: Kind, payload: String) -> anyhow::Result<()> {
        poll_fn(|cx| {
            for pumped in [false, true] {
                if pumped {
                    // Drive the sockets once; what still waits has its waker registered.
                    if let Err(e) = self.pump(cx) {
                        return Poll::Ready(Err(e));
                    }
                } else if let Err(e) = self.check() {
                    return Poll::Ready(Err(e));
                }
                if self.ended.is_some() {
                    return Poll::Ready(Err(anyhow!("the BOSH session has ended")));
                }
                let ready = kind == Kind::Create || self.sid.is_some();
                if ready && self.slots.iter().any(|s| !s.busy()) {
                    return Poll::Ready(self.submit(kind, &payload));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Drives the sockets until every request is written.
    async fn written(&mut self) -> anyhow::Result<()> {
        poll_fn(|cx| {
            if let Err(e) = self.pump(cx) {
                return Poll::Ready(Err(e));
            }
            let unwritten = self
                .slots
                .iter()
                .any(|s| s.req.as_ref().is_some_and(|r| r.written < r.bytes.len()));
            if unwritten {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
        .await
    }

    /// The body of a request of `kind` with the next rid, on a free connection (preferably one
    /// that is up). Written by the next `pump`.
    fn submit(&mut self, kind: Kind, payload: &str) -> anyhow::Result<()> {
        let free = |s: &Slot, up: bool| !s.busy() && (!up || matches!(s.link, Link::Up(_)));
        let i = (0..2)
            .find(|&i| free(&self.slots[i], true))
            .or_else(|| (0..2).find(|&i| free(&self.slots[i], false)))
            .context("no free BOSH connection")?;
        let rid = self.next_rid;
        self.next_rid += 1;
        let sid = self.sid.as_deref().unwrap_or("");
        let domain = &self.domain;
        let mut body = format!("<body xmlns='{HTTPBIND}' rid='{rid}'");
        match kind {
            Kind::Create => body.push_str(&format!(
                " xmlns:xmpp='{XBOSH}' to='{domain}' wait='{WAIT}' hold='1' ver='1.11' \
                 xml:lang='en' xmpp:version='1.0'"
            )),
            Kind::Restart => body.push_str(&format!(
                " sid='{sid}' xmlns:xmpp='{XBOSH}' to='{domain}' xml:lang='en' \
                 xmpp:restart='true'"
            )),
            Kind::Plain => body.push_str(&format!(" sid='{sid}'")),
            Kind::Terminate => body.push_str(&format!(" sid='{sid}' type='terminate'")),
        }
        if payload.is_empty() {
            body.push_str("/>");
        } else {
            body.push('>');
            body.push_str(payload);
            body.push_str("</body>");
        }
        let mut bytes = Vec::with_capacity(self.head.len() + 8 + body.len());
        bytes.extend_from_slice(self.head.as_bytes());
        bytes.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
        bytes.extend_from_slice(body.as_bytes());
        self.slots[i].req = Some(Req {
            rid,
            kind,
            bytes,
            written: 0,
            resent: false,
        });
        Ok(())
    }

    /// Drives both connections as far as they go without waiting (dial, write, read), then
    /// hands out the responses that are next in rid order. An error breaks the session.
    ///
    /// Requests go out in rid order: one is not written while a lower rid still waits for its
    /// connection or for room in the socket, so the server does not see them swapped (weft and
    /// Prosody would wait for the gap, XEP-0124 §14.2, but a client should not rely on it).
    fn pump(&mut self, cx: &mut Context<'_>) -> anyhow::Result<()> {
        self.check()?;
        let rid = |s: &Slot| s.req.as_ref().map_or(u64::MAX, |r| r.rid);
        let order = if rid(&self.slots[1]) < rid(&self.slots[0]) {
            [1, 0]
        } else {
            [0, 1]
        };
        let result = (|| {
            let mut may_write = true;
            for i in order {
                self.pump_slot(i, may_write, cx)?;
                may_write &= self.slots[i]
                    .req
                    .as_ref()
                    .is_none_or(|r| r.written == r.bytes.len());
            }
            self.deliver()
        })();
        if let Err(e) = &result {
            self.broken = Some(format!("{e:#}"));
        }
        result
    }

    fn pump_slot(&mut self, i: usize, may_write: bool, cx: &mut Context<'_>) -> anyhow::Result<()> {
        let (addr, src) = (self.addr, self.src);
        let slot = &mut self.slots[i];
        loop {
            match &mut slot.link {
                Link::Down => {
                    if slot.req.is_none() {
                        return Ok(());
                    }
                    slot.link = Link::Dialing(Box::pin(dial(addr, src)));
                }
                Link::Dialing(f) => match f.as_mut().poll(cx) {
                    Poll::Ready(Ok(s)) => slot.link = Link::Up(s),
                    Poll::Ready(Err(e)) => return Err(e.context("BOSH connection")),
                    Poll::Pending => return Ok(()),
                },
                Link::Up(stream) => {
                    let lost = drive(
                        stream,
                        slot.req.as_mut().filter(|_| may_write),
                        &mut slot.rbuf,
                        cx,
                    )
                    .err();
                    // A complete response frees the connection for the next request.
                    if let Some(req) = &slot.req {
                        if let Some((used, resp)) = parse_response(&slot.rbuf)? {
                            slot.rbuf.drain(..used);
                            let close = resp.close;
                            slot.done = Some(Done {
                                rid: req.rid,
                                kind: req.kind,
                                resp,
                            });
                            slot.req = None;
                            if close {
                                slot.link = Link::Down;
                                slot.rbuf.clear();
                            }
                            // Read on: EOF of a kept-alive connection is noticed early.
                            continue;
                        }
                    }
                    let Some(e) = lost else {
                        return Ok(());
                    };
                    // The connection closed or broke. Idle, it is simply gone; with a request
                    // of which no answer came yet, that request goes once more on a new
                    // connection (the server may have closed the kept-alive one as it was
                    // sent; a retransmitted rid is answered as the original, XEP-0124 §14.3).
                    slot.link = Link::Down;
                    let partial = !slot.rbuf.is_empty();
                    slot.rbuf.clear();
                    match &mut slot.req {
                        None => return Ok(()),
                        Some(req) if !req.resent && !partial => {
                            req.resent = true;
                            req.written = 0;
                        }
                        Some(req) => {
                            return Err(anyhow!(
                                "BOSH connection lost with request rid {} unanswered: {e}",
                                req.rid
                            ))
                        }
                    }
                }
            }
        }
    }

    /// Hands out the responses that are next in rid order.
    fn deliver(&mut self) -> anyhow::Result<()> {
        loop {
            let rid = self.deliver_rid;
            let Some(slot) = self
                .slots
                .iter_mut()
                .find(|s| s.done.as_ref().is_some_and(|d| d.rid == rid))
            else {
                return Ok(());
            };
            let done = slot.done.take().expect("found above");
            self.deliver_rid += 1;
            self.accept(done)?;
        }
    }

    fn accept(&mut self, done: Done) -> anyhow::Result<()> {
        if self.ended.is_some() {
            return Ok(()); // the other request's answer after a terminate
        }
        let Done { rid, kind, resp } = done;
        if resp.status != 200 {
            bail!(
                "HTTP {} answering BOSH rid {rid}: {}",
                resp.status,
                snippet(&resp.body)
            );
        }
        let reply = parse_body(&resp.body)?;
        if kind == Kind::Create && !reply.terminate {
            let sid = reply.sid.with_context(|| {
                format!(
                    "session creation answered without sid: {}",
                    snippet(&resp.body)
                )
            })?;
            // Kept as written into later requests' attributes.
            self.sid = Some(escape_attr(&sid));
        }
        if matches!(kind, Kind::Create | Kind::Restart) && !reply.terminate {
            self.inbox.push_back(Event::Header);
        }
        self.inbox.extend(
            reply
                .children
                .into_iter()
                .map(|c| Event::Element(Text::Owned(c))),
        );
        if reply.terminate || kind == Kind::Terminate {
            self.ended = Some(reply.condition);
        }
        Ok(())
    }
}

/// Writes what is left of `req` (if it may be written now) and reads whatever has come, until
/// the socket would block.
/// An error means the connection is gone (end of file included).
fn drive(
    stream: &mut TcpStream,
    req: Option<&mut Req>,
    rbuf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if let Some(req) = req {
        while req.written < req.bytes.len() {
            match Pin::new(&mut *stream).poll_write(cx, &req.bytes[req.written..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => req.written += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
    }
    // Through a buffer on the stack, so that each idle session's buffers stay as small as
    // the responses it got (thousands of sessions live in this process).
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            Poll::Ready(Ok(())) => rbuf.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
}

/// An attribute value for a `'`-quoted attribute.
fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

fn snippet(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An HTTP response, read whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The server closes the connection after it (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    pub close: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete response at the start of `buf`, with the bytes it takes; None while incomplete.
pub fn parse_response(buf: &[u8]) -> anyhow::Result<Option<(usize, Response)>> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("HTTP response header over 64 KiB");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("HTTP header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .with_context(|| format!("not an HTTP/1.x status line: {status_line:?}"))?;
    let mut close = version == "HTTP/1.0";
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        }
    }
    let start = head_end + 4;
    let (body, end) = if chunked {
        match dechunk(&buf[start..])? {
            Some((body, used)) => (body, start + used),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if buf.len() < start + n {
            return Ok(None);
        }
        (buf[start..start + n].to_vec(), start + n)
    } else if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), start)
    } else {
        bail!("HTTP response with neither Content-Length nor chunked encoding: {status_line}");
    };
    let body = String::from_utf8(body).context("response body is not UTF-8")?;
    Ok(Some((
        end,
        Response {
            status,
            body,
            close,
        },
    )))
}

/// A chunked body (RFC 9112 §7.1): the data and the bytes it took; None while incomplete.
fn dechunk(buf: &[u8]) -> anyhow::Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).context("bad chunk size")?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).context("bad chunk size")?;
        at += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// What a response `<body/>` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub sid: Option<String>,
    pub terminate: bool,
    pub condition: Option<String>,
    /// Its children, each serialised as received.
    pub children: Vec<String>,
}

pub fn parse_body(text: &str) -> anyhow::Result<Reply> {
    let mut text = text.trim_start();
    if text.starts_with("<?") {
        text = text[text.find("?>").map_or(0, |i| i + 2)..].trim_start();
    }
    if xml::name(text) != "body" {
        bail!("not a BOSH <body/>: {}", snippet(text));
    }
    let attr = |k: &str| xml::attr(text, k).map(|v| xml::unescape(v).into_owned());
    let mut children = Vec::new();
    let mut split = Splitter::default();
    while let Some(piece) = split.next(text.as_bytes()) {
        match piece {
            Piece::Header(_) => {}
            Piece::Element(r) => children.push(text[r].to_string()),
            Piece::End => break,
        }
    }
    Ok(Reply {
        sid: attr("sid"),
        terminate: attr("type").as_deref() == Some("terminate"),
        condition: attr("condition"),
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks() {
        let body = "<body xmlns='http://jabber.org/protocol/httpbind'/>";
        let whole = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        for cut in 0..whole.len() {
            assert_eq!(parse_response(&whole.as_bytes()[..cut]).unwrap(), None);
        }
        let (used, r) = parse_response(whole.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (used, r.status, r.body.as_str(), r.close),
            (whole.len(), 200, body, false)
        );

        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                       5\r\n<body\r\na;x=y\r\n xmlns='x'\r\n2\r\n/>\r\n0\r\n\r\nHTTP/1.1";
        let (used, r) = parse_response(chunked.as_bytes()).unwrap().unwrap();
        assert_eq!(r.body, "<body xmlns='x'/>");
        assert!(r.close);
        assert_eq!(&chunked[used..], "HTTP/1.1");
        for cut in 0..used {
            assert_eq!(parse_response(&chunked.as_bytes()[..cut]).unwrap(), None);
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn bodies() {
        let create = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' \
            sid='a&amp;b' wait='60' requests='2'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>PLAIN</mechanism></mechanisms></stream:features></body>";
        let r = parse_body(create).unwrap();
        assert_eq!(r.sid.as_deref(), Some("a&b"));
        assert!(!r.terminate);
        assert_eq!(r.children.len(), 1);
        assert_eq!(xml::name(&r.children[0]), "features");

        let empty =
            parse_body("<?xml version='1.0'?><body xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap();
        assert_eq!(empty, Reply::default());

        let end = parse_body(
            "<body type='terminate' condition='item-not-found' xmlns='http://jabber.org/protocol/httpbind'>\
             <message xmlns='jabber:client'><body>x</body></message><presence xmlns='jabber:client'/></body>",
        )
        .unwrap();
        assert!(end.terminate);
        assert_eq!(end.condition.as_deref(), Some("item-not-found"));
        assert_eq!(end.children.len(), 2);
        assert!(parse_body("<html/>").is_err());
    }
}
