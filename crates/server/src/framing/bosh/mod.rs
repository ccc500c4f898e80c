//! XEP-0124 / XEP-0206 BOSH framing: a c2s stream whose "connection" is a sequence of HTTP
//! requests. The HTTP endpoint (`http::bosh`) turns each request's `<body/>` into stream
//! events for the session (`session.rs`); this side gives the c2s task the same operations
//! as TCP and WebSocket framing, and writes what it sends into the next response. Stream
//! errors and closes become `type='terminate'` bodies (XEP-0206 §6: stream errors inside).

pub mod body;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;

use super::{FramingError, HeaderOut, Incoming};
use crate::ns;
use body::Condition;
pub use session::{BoshSession, Sessions};

/// How long a closing session waits for a request to carry its terminate when none is held.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub struct BoshFraming {
    /// The peer's label when its XML is traced.
    pub(crate) trace: Option<Arc<str>>,
    session: Arc<BoshSession>,
    out: Vec<u8>,
    /// A stream error to deliver inside the terminate (XEP-0206: `remote-stream-error`).
    stream_error: Option<Element>,
}

impl BoshFraming {
    pub fn new(session: Arc<BoshSession>) -> Self {
        BoshFraming {
            trace: None,
            session,
            out: Vec::new(),
            stream_error: None,
        }
    }

    /// Cancel-safe. A session that ended on the HTTP side (inactivity, a broken rid window,
    /// a policy violation) reads as a lost connection, so stream management can keep it.
    pub async fn recv(&mut self) -> Result<Incoming, FramingError> {
        self.session
            .next_event()
            .await
            .map_err(|_| FramingError::Disconnected)
    }

    /// The first header completes the session creation response (`authid`); the headers of
    /// restarts (XEP-0206 §5) have no wire form of their own.
    pub fn queue_header(&mut self, h: &HeaderOut<'_>) {
        self.session.header(h.id);
    }

    pub fn queue_stream_element(&mut self, el: &Element) {
        if el.is("error", ns::STREAM) {
            self.stream_error = Some(el.clone());
            return;
        }
        // The body declares the streams prefix too; declaring it here keeps each element
        // standalone, as on WebSocket.
        super::tcp::write_prefixed_stream_element(el, &mut self.out, true);
    }

    /// Stanzas inside `<body/>` carry their own `jabber:client` (XEP-0206 §2).
    pub fn queue(&mut self, el: &Element) {
        weft_xml::write_element(el, &mut self.out);
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        let bytes = std::mem::take(&mut self.out);
        self.session.flush(bytes).await
    }

    /// Terminates the session (XEP-0124 §13, §17): with the stream error queued before, as
    /// its own condition when BOSH has one (`host-unknown`, `system-shutdown`, …) and else
    /// as `remote-stream-error` with the `<stream:error/>` inside (XEP-0206 §6); with
    /// `see-other-uri` and its `<uri/>` when redirected.
    pub async fn close(&mut self, _peer_closed: bool, see_other_uri: Option<&str>) {
        let mut payload = std::mem::take(&mut self.out);
        let condition = match (&self.stream_error, see_other_uri) {
            (_, Some(_)) => Some(Condition::SeeOtherUri),
            (Some(err), None) => {
                let name = err
                    .children()
                    .find(|c| c.has_ns(ns::STREAMS_ERRORS) && c.name() != "text")
                    .map(|c| c.name().to_string())
                    .unwrap_or_default();
                Some(match name.as_str() {
                    "host-unknown" => Condition::HostUnknown,
                    "improper-addressing" => Condition::ImproperAddressing,
                    "system-shutdown" => Condition::SystemShutdown,
                    _ => {
                        super::tcp::write_prefixed_stream_element(err, &mut payload, true);
                        Condition::RemoteStreamError
                    }
                })
            }
            (None, None) => None,
        };
        let uri = see_other_uri.map(str::to_string);
        let bare = body::terminate(condition, uri.as_deref(), b"");
        self.session
            .end(
                |queued| {
                    let mut all = queued.to_vec();
                    all.extend_from_slice(&payload);
                    body::terminate(condition, uri.as_deref(), &all)
                },
                bare,
                CLOSE_WAIT,
            )
            .await;
    }
}

impl Drop for BoshFraming {
    /// A session task that ends without a close (its session resumed elsewhere after the
    /// HTTP side ended) leaves nothing behind.
    fn drop(&mut self) {
        if !self.session.is_ended() {
            self.session.fail(Condition::RemoteConnectionFailed);
        }
        self.session.unregister();
    }
}
