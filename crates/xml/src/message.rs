//! RFC 7395 §3.3.3: one WebSocket message parsed as one complete, standalone element, with the RFC 6120 §11 restrictions and the size/depth limits.

use minidom::Element;
use rxml::error::EndOrError;
use rxml::Parse;

use crate::builder::{Built, Mode, TreeBuilder};
use crate::error::{classify, XmlError};
use crate::fast_path;
use crate::stream::raw_parser;
use crate::{Limits, MAX_TOKEN_BYTES};

/// RFC 7395 §3.3.3: parse one WebSocket text message as one complete standalone element.
///
/// An XML declaration before the element and whitespace after it are tolerated. Anything else
/// — a second element, text outside the element, an unclosed element, leading whitespace, an
/// empty or whitespace-only message — is [`XmlError::NotWellFormed`]. A message longer than
/// [`Limits::max_stanza_bytes`] is [`XmlError::StanzaTooLarge`] (checked before parsing);
/// nesting deeper than [`Limits::max_depth`] is [`XmlError::TooDeep`]; restricted constructs
/// are [`XmlError::Restricted`].
pub fn parse_message(text: &str, limits: Limits) -> Result<Element, XmlError> {
    if text.len() <= limits.max_stanza_bytes {
        if let Some(el) = fast_path::parse(text, limits) {
            return Ok(el);
        }
    }
    parse_with_rxml(text.as_bytes(), limits)
}

/// [`parse_message`] for bytes not yet known to be UTF-8 (e.g. a binary WebSocket frame);
/// invalid UTF-8 is [`XmlError::InvalidUtf8`].
pub fn parse_message_bytes(bytes: &[u8], limits: Limits) -> Result<Element, XmlError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_message(text, limits),
        Err(_) => parse_with_rxml(bytes, limits),
    }
}

/// The parser of record: every message the fast path declines, and every error.
pub(crate) fn parse_with_rxml(bytes: &[u8], limits: Limits) -> Result<Element, XmlError> {
    if bytes.len() > limits.max_stanza_bytes {
        return Err(XmlError::StanzaTooLarge {
            limit: limits.max_stanza_bytes,
        });
    }
    // No token can be longer than the message; do not make the lexer reserve more.
    let token_limit = bytes.len().clamp(64, MAX_TOKEN_BYTES);
    let mut parser = raw_parser(token_limit);
    let mut tree = TreeBuilder::new(Mode::Message, limits);
    let mut buf = bytes;
    let mut root = None;
    loop {
        match parser.parse(&mut buf, true) {
            Ok(Some(ev)) => {
                if let Some(Built::Element(el)) = tree.process(ev)? {
                    root = Some(el);
                }
            }
            Ok(None) => break,
            Err(EndOrError::NeedMoreData) => {
                return Err(XmlError::not_well_formed("incomplete message"))
            }
            Err(EndOrError::Error(err)) => {
                let consumed = bytes.len() - buf.len();
                let recent = &bytes[consumed.saturating_sub(8)..consumed];
                return Err(classify(err, recent, token_limit));
            }
        }
    }
    root.ok_or_else(|| XmlError::not_well_formed("message without an element"))
}
