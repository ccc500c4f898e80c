//! RFC 6120 §4, §11 and RFC 7395 §3.3: restricted, incremental XML for XMPP streams — stream events, serialisation and size/depth limits. No I/O, no XMPP semantics.
//!
//! Two ways in:
//!
//! * [`StreamParser`] for the TCP binding: one long-lived document per direction, fed bytes as
//!   they arrive, yielding a [`StreamEvent::Header`], then one [`StreamEvent::Element`] per
//!   top-level element, then [`StreamEvent::Close`].
//! * [`parse_message`] for the WebSocket binding: one complete element per message.
//!
//! And one way out: [`write_element`], which serialises an element as a standalone fragment
//! carrying its own namespace declarations.
//!
//! Everything the XMPP restrictions of RFC 6120 §11.1 forbid (DTDs, entity declarations and
//! references beyond the five predefined ones, comments, processing instructions) is reported
//! as [`XmlError::Restricted`], distinct from plain [`XmlError::NotWellFormed`] input.
//!
//! Parsing is built on `rxml`'s raw (non-namespace-resolving) parser with our own namespace
//! resolution, so that stream headers can report the default namespace they declare and
//! elements can be built straight into [`minidom::Element`]s without intermediate copies.
//!
//! # minidom quirks worth knowing
//!
//! * Attributes are keyed by (namespace, local name). `el.attr("to")` sees only unqualified
//!   attributes, so `el.attr("xml:lang")` is always `None`: use [`ElementExt::xml_lang`] or
//!   [`ElementExt::attr_q`]. Other namespaced attributes are `el.attr_ns(ns, local)`.
//! * `ElementBuilder::attr` takes an `NcName`, not a `&str`; [`ElementBuilderExt::attr_q`]
//!   takes `"to"` or `"xml:lang"` directly.
//! * Parsed elements carry no namespace declarations (`el.prefixes` is empty) and their
//!   namespace is only available as a fresh `String` (`el.ns()`); compare with
//!   `el.is(name, ns)` / `el.has_ns(ns)` instead.
//! * Serialise with [`write_element`] / [`write_element_in`], not minidom's own writer, which
//!   relies on `prefixes`.
//! * Text between child elements (e.g. indentation) is kept as text nodes; `el.text()` joins
//!   the direct text children only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod error;
mod ext;
mod fast_path;
mod header;
mod message;
mod stream;
mod writer;

pub use error::XmlError;
pub use ext::{with_namespace, ElementBuilderExt, ElementExt};
pub use header::StreamHeader;
pub use message::{parse_message, parse_message_bytes};
pub use minidom::Element;
pub use stream::{StreamEvent, StreamParser};
pub use writer::{escape, escape_text, write_element, write_element_in, Slotted};

/// The XML namespace (`xml:` prefix, bound by definition), in which `xml:lang` lives.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Longest single name, attribute value or character/entity reference accepted, in bytes.
///
/// The underlying lexer reserves a buffer of this size per parser, so it is kept well below
/// [`Limits::max_stanza_bytes`] to keep idle connections cheap. Text is not affected (it is
/// split into chunks of this size). Exceeding it is reported as
/// [`XmlError::StanzaTooLarge`] with this value as the limit.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Upper bound for a stream header (`<stream:stream …>` including an XML declaration before it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Resource limits enforced while parsing (RFC 6120 §13.12: an entity may limit stanza size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (stanza, nonza) in bytes, counted from its `<` to the end of
    /// its closing tag; for WebSocket, the largest message.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting; the top-level element itself is depth 1.
    pub max_depth: usize,
}

impl Default for Limits {
    /// 256 KiB per stanza, nesting depth 32.
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
        }
    }
}

impl Limits {
    /// The per-token limit used for the lexer: never more than the stanza limit.
    pub(crate) fn token_limit(&self) -> usize {
        self.max_stanza_bytes.clamp(64, MAX_TOKEN_BYTES)
    }
}

/// The nearest char boundary of `s` at or before `at`, for mutating test inputs.
#[cfg(test)]
pub(crate) fn char_floor(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The nearest char boundary of `s` at or after `at` (at most `s.len()`).
#[cfg(test)]
pub(crate) fn char_ceil(s: &str, at: usize) -> usize {
    (at.min(s.len())..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len())
}

/// A deterministic xorshift generator for the differential tests: `next(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut(usize) -> usize {
    let mut x = seed;
    move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    }
}
