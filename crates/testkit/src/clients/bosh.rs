//! A scripted XEP-0124 / XEP-0206 BOSH client: raw HTTP/1.1 requests over loopback TCP, one
//! connection per request, so tests see (and can break) every request and response.

use std::collections::VecDeque;
use std::net::SocketAddr;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{lenient_limits, show, Client, Login};
use crate::REPLY_TIMEOUT;

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const XBOSH: &str = "urn:xmpp:xbosh";

/// An HTTP response as received.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as XML.
    pub fn xml(&self) -> Element {
        weft_xml::parse_message(&self.body, lenient_limits())
            .unwrap_or_else(|e| panic!("invalid XML ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        req.push_str("Content-Type: text/xml; charset=utf-8\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A BOSH session driven by a test. `Client` runs it the way BOSH clients do: every send is
/// a request; `recv` keeps one empty request open while nothing else is.
pub struct BoshClient {
    pub addr: SocketAddr,
    pub path: String,
    pub sid: Option<String>,
    /// The rid of the last request sent.
    pub rid: u64,
    /// `wait` and `hold` asked for at creation.
    pub wait: u32,
    pub hold: u32,
    inbox: VecDeque<Element>,
    in_flight: usize,
    tx: mpsc::UnboundedSender<(u64, std::io::Result<HttpResponse>)>,
    rx: mpsc::UnboundedReceiver<(u64, std::io::Result<HttpResponse>)>,
}

impl BoshClient {
    pub fn new(addr: SocketAddr, path: &str) -> BoshClient {
        let (tx, rx) = mpsc::unbounded_channel();
        BoshClient {
            addr,
            path: path.to_string(),
            sid: None,
            rid: 1_000 + u64::from(rand_u16()),
            wait: 30,
            hold: 1,
            inbox: VecDeque::new(),
            in_flight: 0,
            tx,
            rx,
        }
    }

    /// A `<body/>` of this session with the next rid, `attrs` and `payload`.
    pub fn body(&mut self, attrs: &str, payload: &str) -> (u64, String) {
        self.rid += 1;
        let sid = self
            .sid
            .as_deref()
            .map(|s| format!(" sid='{s}'"))
            .unwrap_or_default();
        let body = format!(
            "<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' rid='{}'{sid}{attrs}>{payload}</body>",
            self.rid
        );
        (self.rid, body)
    }

    /// Sends a raw body and waits for its response.
    pub async fn post(&self, body: &str) -> HttpResponse {
        tokio::time::timeout(
            REPLY_TIMEOUT * 20,
            http(self.addr, "POST", &self.path, &[], body),
        )
        .await
        .expect("BOSH response in time")
        .expect("BOSH request")
    }

    /// The session creation request (XEP-0206 §3) with `extra` attributes; returns the
    /// response body (attributes and, normally, the stream features).
    pub async fn create(&mut self, to: &str, extra: &str) -> Element {
        let attrs = format!(
            " to='{to}' wait='{}' hold='{}' ver='1.11' xml:lang='en' xmpp:version='1.0'{extra}",
            self.wait, self.hold
        );
        let (_, body) = self.body(&attrs, "");
        let resp = self.post(&body).await;
        assert_eq!(resp.status, 200, "creation: {resp:?}");
        let el = resp.xml();
        self.sid = el.attr("sid").map(str::to_string);
        el
    }

    /// Sends a request in the background (as a client with `requests` > 1 does).
    pub fn spawn(&mut self, attrs: &str, payload: &str) -> u64 {
        let (rid, body) = self.body(attrs, payload);
        self.spawn_raw(rid, body);
        rid
    }

    /// Sends `body` (with its own rid) in the background.
    pub fn spawn_raw(&mut self, rid: u64, body: String) {
        let (addr, path, tx) = (self.addr, self.path.clone(), self.tx.clone());
        self.in_flight += 1;
        tokio::spawn(async move {
            let r = http(addr, "POST", &path, &[], &body).await;
            let _ = tx.send((rid, r));
        });
    }

    /// The next response of a background request: (rid, body element).
    pub async fn next_response(&mut self) -> (u64, Element) {
        let (rid, r) = tokio::time::timeout(REPLY_TIMEOUT * 20, self.rx.recv())
            .await
            .expect("a BOSH response in time")
            .expect("channel open");
        self.in_flight -= 1;
        let resp = r.expect("BOSH request");
        (rid, resp.xml())
    }

    pub async fn login(&mut self, user: &str, how: Login) -> String {
        super::login(self, user, crate::PASSWORD, how, None).await
    }

    /// Waits for a `type='terminate'` body and returns it.
    pub async fn expect_terminate(&mut self) -> Element {
        loop {
            let el = self.recv().await;
            if el.is("body", HTTPBIND) && el.attr("type") == Some("terminate") {
                return el;
            }
        }
    }
}

fn rand_u16() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        % 50_000) as u16
}

impl Client for BoshClient {
    async fn send(&mut self, xml: &str) {
        self.spawn("", xml);
    }

    /// The next element; a terminate body is returned itself (with what it carried first).
    async fn recv(&mut self) -> Element {
        loop {
            if let Some(el) = self.inbox.pop_front() {
                return el;
            }
            if self.in_flight == 0 {
                self.spawn("", "");
            }
            let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
            let (_, body) = tokio::time::timeout_at(deadline, self.next_response())
                .await
                .expect("no BOSH payload in time");
            for child in body.children() {
                self.inbox.push_back(child.clone());
            }
            if body.attr("type") == Some("terminate") {
                self.inbox.push_back(body);
            }
        }
    }

    async fn open_stream(&mut self, to: &str) -> Element {
        if self.sid.is_none() {
            let body = self.create(to, "").await;
            for child in body.children() {
                self.inbox.push_back(child.clone());
            }
        } else {
            self.spawn(&format!(" to='{to}' xml:lang='en' xmpp:restart='true'"), "");
        }
        let features = self.recv().await;
        assert!(
            features.is("features", super::STREAM),
            "expected <stream:features/>, got {}",
            show(&features)
        );
        features
    }
}
