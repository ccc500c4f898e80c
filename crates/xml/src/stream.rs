//! RFC 6120 §4.2–§4.4, §4.6.1 and §11: the incremental TCP stream parser — header, top-level elements, close — with stanza size, header size and depth limits.

use std::collections::VecDeque;

use minidom::Element;
use rxml::error::EndOrError;
use rxml::{Options, Parse, RawEvent, RawParser, WithOptions};

use crate::builder::{Built, Mode, TreeBuilder};
use crate::error::{classify, Recent, XmlError};
use crate::fast_path;
use crate::header::StreamHeader;
use crate::{Limits, MAX_HEADER_BYTES};

/// Input is handed to the lexer in slices of at most this many bytes, and the size limits are
/// checked between slices: an over-long stanza is rejected at most this far past its limit.
const FEED_CHUNK: usize = 8 * 1024;

/// One thing that happened on a stream.
#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    /// The stream header's start tag was received complete.
    Header(StreamHeader),
    /// A complete top-level (depth-1) element: a stanza or a nonza such as
    /// `<stream:features/>` or `<starttls/>`.
    Element(Element),
    /// The stream's end tag (`</stream:stream>`) was received.
    Close,
}

/// RFC 6120 streaming parser for TCP: the stream header, then each complete top-level
/// (depth-1) element, then the closing `</stream:stream>`.
///
/// Sans-IO: feed it bytes as they arrive, then drain [`StreamParser::next_event`].
///
/// * Top-level elements inherit the namespaces declared on the header, so a `<message/>` under
///   `xmlns='jabber:client'` comes out in namespace `jabber:client`, and
///   `<stream:features/>` in `http://etherx.jabber.org/streams`.
/// * Whitespace between top-level elements (keepalives, RFC 6120 §4.6.1) is dropped and counts
///   toward no element; any other text there is [`XmlError::NotWellFormed`]. Whitespace before
///   the header is skipped too.
/// * Each top-level element is limited to [`Limits::max_stanza_bytes`] from its `<` to the end
///   of its end tag, checked while it arrives (at most 8 KiB past the limit is ever looked at);
///   the header to [`MAX_HEADER_BYTES`] (or the stanza limit if smaller); nesting to
///   [`Limits::max_depth`].
/// * After an error the parser stays failed and returns the same error; events completed before
///   the error stay queued.
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    parser: RawParser,
    tree: TreeBuilder,
    events: VecDeque<StreamEvent>,
    failed: Option<XmlError>,
    /// A non-whitespace byte has been handed to the lexer.
    started: bool,
    header_seen: bool,
    closed: bool,
    /// End of the last event, as an offset into the document (sum of event lengths).
    pos: u64,
    /// Bytes the lexer has consumed (including a partial event in progress).
    consumed: u64,
    /// Offset of the `<` of the top-level element in progress.
    stanza_start: Option<u64>,
    recent: Recent,
    /// Off only in tests that compare the fast path with rxml alone.
    fast_path: bool,
}

impl Default for StreamParser {
    fn default() -> Self {
        StreamParser::new(Limits::default())
    }
}

impl StreamParser {
    /// A parser expecting a stream header.
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            limits,
            parser: stream_raw_parser(limits),
            tree: TreeBuilder::new(Mode::Stream, limits),
            events: VecDeque::new(),
            failed: None,
            started: false,
            header_seen: false,
            closed: false,
            pos: 0,
            consumed: 0,
            stanza_start: None,
            recent: Recent::default(),
            fast_path: true,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the stream header has been received (since creation or the last reset).
    pub fn header_received(&self) -> bool {
        self.header_seen
    }

    /// Whether the stream's end tag has been received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feed bytes as they arrive (any split, including in the middle of a UTF-8 sequence or a
    /// tag). Complete events are queued for [`StreamParser::next_event`]. After an error the
    /// parser stays failed.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), XmlError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if !self.started {
            let ws = data
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            data = &data[ws..];
            if data.is_empty() {
                return Ok(());
            }
            self.started = true;
        }
        for chunk in data.chunks(FEED_CHUNK) {
            if let Err(err) = self.feed_chunk(chunk) {
                self.failed = Some(err.clone());
                return Err(err);
            }
        }
        Ok(())
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Stream restart (after STARTTLS or SASL success, RFC 6120 §4.3.3): discard all state,
    /// including queued events and any error, and expect a new header. Bytes received before
    /// the reset must not be fed again (RFC 6120 §5.4.3.3: data after `<starttls/>` is dropped).
    pub fn reset(&mut self) {
        self.parser = stream_raw_parser(self.limits);
        self.tree.clear();
        self.events.clear();
        self.failed = None;
        self.started = false;
        self.header_seen = false;
        self.closed = false;
        self.pos = 0;
        self.consumed = 0;
        self.stanza_start = None;
        self.recent.clear();
    }

    fn feed_chunk(&mut self, chunk: &[u8]) -> Result<(), XmlError> {
        let mut buf = chunk;
        loop {
            if self.between_elements() {
                buf = self.fast_elements(buf)?;
            }
            let before = buf.len();
            let result = self.parser.parse(&mut buf, false);
            self.consumed += (before - buf.len()) as u64;
            match result {
                Ok(Some(ev)) => self.handle(ev)?,
                // Only at end of input, which a stream never signals.
                Ok(None) => break,
                Err(EndOrError::NeedMoreData) => {
                    if buf.is_empty() || buf.len() == before {
                        break;
                    }
                }
                Err(EndOrError::Error(err)) => {
                    self.recent.push(&chunk[..chunk.len() - buf.len()]);
                    return Err(classify(
                        err,
                        self.recent.as_slice(),
                        self.limits.token_limit(),
                    ));
                }
            }
        }
        self.recent.push(chunk);
        self.check_pending()
    }

    /// The lexer holds nothing and no top-level element is open: complete elements at the
    /// start of the input can be read by the fast path without rxml seeing them.
    fn between_elements(&self) -> bool {
        self.fast_path
            && self.header_seen
            && !self.closed
            && self.pos == self.consumed
            && self.stanza_start.is_none()
            && self.tree.open_elements() == 1
    }

    /// Reads the complete top-level elements (and whitespace between them) at the start of
    /// `buf` that are inside the fast path's subset; returns what is left for rxml.
    fn fast_elements<'b>(&mut self, buf: &'b [u8]) -> Result<&'b [u8], XmlError> {
        let text = match std::str::from_utf8(buf) {
            Ok(t) => t,
            // A chunk may end inside a UTF-8 sequence: the part before it is still good.
            Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
        };
        let done = fast_path::with_events(|events| {
            let mut done = 0;
            loop {
                let ws = text.as_bytes()[done..]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .count();
                let start = done + ws;
                let Some(len) = fast_path::scan_element(
                    &text[start..],
                    self.limits.token_limit(),
                    self.limits.max_depth,
                    events,
                ) else {
                    return Ok(done);
                };
                if len > self.limits.max_stanza_bytes {
                    return Err(XmlError::StanzaTooLarge {
                        limit: self.limits.max_stanza_bytes,
                    });
                }
                self.consumed += (ws + len) as u64;
                self.pos += ws as u64;
                for ev in events.drain(..) {
                    self.handle(ev)?;
                }
                // The events carry no byte counts; the element's length is added here.
                self.pos += len as u64;
                done = start + len;
            }
        })?;
        Ok(&buf[done..])
    }

    fn handle(&mut self, ev: RawEvent) -> Result<(), XmlError> {
        if matches!(ev, RawEvent::ElementHeadOpen(..)) && self.tree.open_elements() == 1 {
            self.stanza_start = Some(self.pos);
        }
        self.pos += ev.metrics().len() as u64;
        match self.tree.process(ev)? {
            None => {}
            Some(Built::Header(header)) => {
                self.header_seen = true;
                self.events.push_back(StreamEvent::Header(header));
            }
            Some(Built::Element(el)) => {
                let start = self.stanza_start.take().unwrap_or(self.pos);
                if self.pos - start > self.limits.max_stanza_bytes as u64 {
                    return Err(XmlError::StanzaTooLarge {
                        limit: self.limits.max_stanza_bytes,
                    });
                }
                self.events.push_back(StreamEvent::Element(el));
            }
            Some(Built::Close) => {
                self.closed = true;
                self.events.push_back(StreamEvent::Close);
            }
        }
        Ok(())
    }

    /// Bound what the lexer and tree builder hold for an incomplete header or element.
    fn check_pending(&self) -> Result<(), XmlError> {
        if !self.header_seen {
            let limit = self.header_limit();
            if self.consumed > limit as u64 {
                return Err(XmlError::StanzaTooLarge { limit });
            }
        } else if let Some(start) = self.stanza_start {
            if self.consumed - start > self.limits.max_stanza_bytes as u64 {
                return Err(XmlError::StanzaTooLarge {
                    limit: self.limits.max_stanza_bytes,
                });
            }
        }
        // Between elements the lexer holds at most one token (whitespace or a name), which it
        // bounds itself by the token limit.
        Ok(())
    }

    fn header_limit(&self) -> usize {
        MAX_HEADER_BYTES.min(self.limits.max_stanza_bytes.max(1024))
    }
}

/// The raw parser for a stream. Text is emitted at the end of each input slice instead of being
/// held back until the next `<`, so that junk between stanzas is rejected as soon as it
/// arrives and the lexer holds no text across `feed` calls.
fn stream_raw_parser(limits: Limits) -> RawParser {
    let mut parser = raw_parser(limits.token_limit());
    parser.set_text_buffering(false);
    parser
}

/// A raw parser rejecting comments, with the given per-token limit.
pub(crate) fn raw_parser(token_limit: usize) -> RawParser {
    RawParser::with_options(Options {
        max_token_length: token_limit,
        ..Options::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    const STANZAS: &[&str] = &[
        "<message type='chat' to='a@localhost/r' id='m1'><body>1763872312345678901 hi</body></message>",
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<presence><status>a &amp; b &lt;c&gt;</status></presence>",
        "<stream:features/>",
        "<message xmlns:x='urn:x' x:a='1'><x:e>ü ✓</x:e></message>",
        " \n",
    ];
    const PIECES: &[&str] = &[
        "<",
        ">",
        "/",
        "&",
        ";",
        "'",
        "=",
        ":",
        "!",
        " ",
        "\r",
        "\u{1}",
        "]]>",
        "&#60;",
        "<!--x-->",
        "<![CDATA[x]]>",
        "a",
        "ü",
        "</stream:stream>",
        "<a>",
        "<b/>",
        "x='1'",
    ];

    /// Everything a parser said for `input` fed in `cuts`-sized pieces.
    fn run(input: &[u8], cuts: &[usize], fast: bool) -> (Vec<StreamEvent>, bool) {
        let mut p = StreamParser::new(Limits {
            max_stanza_bytes: 300,
            ..Limits::default()
        });
        p.fast_path = fast;
        let mut events = Vec::new();
        let mut rest = input;
        let mut failed = false;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            failed |= p.feed(piece).is_err();
            while let Some(ev) = p.next_event() {
                events.push(ev);
            }
            if failed {
                break;
            }
        }
        (events, failed)
    }

    #[test]
    fn fast_path_and_rxml_agree_on_mutated_streams() {
        let mut next = crate::test_rng(0x9E37_79B9_7F4A_7C15);
        let mut elements = 0;
        for _ in 0..5_000 {
            let mut body = String::new();
            for _ in 0..1 + next(6) {
                body.push_str(STANZAS[next(STANZAS.len())]);
            }
            for _ in 0..next(3) {
                let at = crate::char_floor(&body, next(body.len() + 1));
                body.insert_str(at, PIECES[next(PIECES.len())]);
            }
            let input = format!("{HEADER}{body}");
            let cuts: Vec<usize> = (0..4).map(|_| 1 + next(200)).collect();
            let fast = run(input.as_bytes(), &cuts, true);
            let slow = run(input.as_bytes(), &cuts, false);
            assert_eq!(fast, slow, "{input:?} cut {cuts:?}");
            elements += fast.0.len();
        }
        assert!(elements > 10_000, "only {elements} events");
    }
}
