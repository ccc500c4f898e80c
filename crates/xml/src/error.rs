//! RFC 6120 §4.9.3 / §11: the XML-layer error type and the mapping from `rxml` errors onto it.

use crate::MAX_TOKEN_BYTES;

/// Why a stream or message was rejected by the XML layer. Each variant maps to exactly one
/// stream error condition ([`XmlError::stream_condition`]); every error is fatal to the stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The input is not well-formed or not namespace-well-formed XML (mismatched tags, an
    /// unbound prefix, text outside the root element, bad quoting, …).
    /// Condition `<not-well-formed/>`, RFC 6120 §4.9.3.13 and §11.3.
    #[error("not-well-formed XML (RFC 6120 §4.9.3.13, §11.3): {0}")]
    NotWellFormed(String),

    /// The input uses a construct XMPP forbids: a DTD/DOCTYPE or other markup declaration
    /// (`<!ENTITY`, …), a reference to an entity other than the five predefined ones, a
    /// comment, or a processing instruction (other than the XML declaration at the very start).
    /// Condition `<restricted-xml/>`, RFC 6120 §11.1 and §4.9.3.18.
    #[error("restricted XML (RFC 6120 §11.1, §4.9.3.18): {0}")]
    Restricted(String),

    /// A top-level element (stanza), a stream header or a WebSocket message exceeded `limit`
    /// bytes. Also used, with `limit` = [`MAX_TOKEN_BYTES`], for a single over-long name or
    /// attribute value. Condition `<policy-violation/>`, RFC 6120 §4.9.3.14 and §13.12.
    #[error("XML exceeds the size limit of {limit} bytes (RFC 6120 §4.9.3.14, §13.12)")]
    StanzaTooLarge {
        /// The limit in bytes that was exceeded.
        limit: usize,
    },

    /// Elements were nested deeper than `limit` levels (the top-level element is depth 1).
    /// Condition `<policy-violation/>`, RFC 6120 §4.9.3.14 and §13.12.
    #[error("XML nested deeper than {limit} levels (RFC 6120 §4.9.3.14, §13.12)")]
    TooDeep {
        /// The maximum depth that was exceeded.
        limit: usize,
    },

    /// The input is not UTF-8 (an invalid byte sequence, or an XML declaration naming another
    /// encoding). Condition `<unsupported-encoding/>`, RFC 6120 §11.6 and §4.9.3.22.
    #[error("input is not UTF-8 (RFC 6120 §11.6, §4.9.3.22)")]
    InvalidUtf8,
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition to close the stream with:
    /// `"not-well-formed"`, `"restricted-xml"`, `"policy-violation"` or `"unsupported-encoding"`.
    pub fn stream_condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::Restricted(_) => "restricted-xml",
            XmlError::StanzaTooLarge { .. } | XmlError::TooDeep { .. } => "policy-violation",
            XmlError::InvalidUtf8 => "unsupported-encoding",
        }
    }

    pub(crate) fn not_well_formed(msg: impl Into<String>) -> Self {
        XmlError::NotWellFormed(msg.into())
    }
}

/// Map an `rxml` error onto [`XmlError`].
///
/// `recent` holds the last bytes the lexer consumed up to and including the byte it failed
/// on (at most a few bytes are needed). `rxml` reports markup declarations (`<!DOCTYPE`,
/// `<!ENTITY`, …) only as a generic syntax error on the byte after `<!`, and PIs whose target
/// merely starts with `xml` as a syntax error of the XML declaration; both are recognised from
/// those bytes so they come out as [`XmlError::Restricted`].
pub(crate) fn classify(err: rxml::Error, recent: &[u8], token_limit: usize) -> XmlError {
    use rxml::Error as E;
    match err {
        E::InvalidUtf8Byte(_) => XmlError::InvalidUtf8,
        E::UndeclaredEntity => XmlError::Restricted(
            "reference to an undeclared entity (only amp, lt, gt, apos and quot exist)".into(),
        ),
        E::RestrictedXml("comments") => XmlError::Restricted("comment".into()),
        E::RestrictedXml("processing instructions") => {
            XmlError::Restricted("processing instruction".into())
        }
        E::RestrictedXml("only utf-8 encoding is allowed") => XmlError::InvalidUtf8,
        E::RestrictedXml("long name or reference") | E::RestrictedXml("event too long") => {
            XmlError::StanzaTooLarge {
                limit: token_limit.min(MAX_TOKEN_BYTES),
            }
        }
        E::RestrictedXml("only XML version 1.0 is allowed") => {
            XmlError::not_well_formed("only XML version 1.0 is supported")
        }
        E::RestrictedXml(other) => XmlError::Restricted(other.into()),
        other => {
            if is_markup_declaration(recent) {
                XmlError::Restricted("DTD or markup declaration (<!DOCTYPE, <!ENTITY, …)".into())
            } else if is_xml_named_pi(recent) {
                XmlError::Restricted("processing instruction".into())
            } else {
                XmlError::NotWellFormed(other.to_string())
            }
        }
    }
}

/// `<!` followed by anything but `-` (comment) or `[` (CDATA section) as the failing byte.
fn is_markup_declaration(recent: &[u8]) -> bool {
    matches!(recent, [.., b'<', b'!', last] if *last != b'-' && *last != b'[')
}

/// `<?xml` directly followed by a name character, i.e. a PI such as `<?xml-stylesheet`.
fn is_xml_named_pi(recent: &[u8]) -> bool {
    matches!(recent, [.., b'<', b'?', b'x', b'm', b'l', last]
        if last.is_ascii_alphanumeric() || matches!(last, b'-' | b'_' | b'.' | b':'))
}

/// Keeps the last few bytes handed to the lexer, across `feed` calls, for [`classify`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Recent {
    buf: [u8; Recent::LEN],
    len: usize,
}

impl Recent {
    const LEN: usize = 8;

    /// Remember the tail of `consumed` (bytes the lexer has consumed, in order).
    pub(crate) fn push(&mut self, consumed: &[u8]) {
        if consumed.len() >= Self::LEN {
            self.buf
                .copy_from_slice(&consumed[consumed.len() - Self::LEN..]);
            self.len = Self::LEN;
        } else {
            let keep = (Self::LEN - consumed.len()).min(self.len);
            self.buf.copy_within(self.len - keep..self.len, 0);
            self.buf[keep..keep + consumed.len()].copy_from_slice(consumed);
            self.len = keep + consumed.len();
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_tail_across_pushes() {
        let mut r = Recent::default();
        r.push(b"ab");
        r.push(b"<!");
        r.push(b"D");
        assert_eq!(r.as_slice(), b"ab<!D");
        r.push(b"0123456789");
        assert_eq!(r.as_slice(), b"23456789");
        r.push(b"x");
        assert_eq!(r.as_slice(), b"3456789x");
    }

    #[test]
    fn markup_declaration_detection() {
        assert!(is_markup_declaration(b"<!D"));
        assert!(is_markup_declaration(b"xx<!E"));
        assert!(!is_markup_declaration(b"<!-"));
        assert!(!is_markup_declaration(b"<!["));
        assert!(!is_markup_declaration(b"<a"));
        assert!(is_xml_named_pi(b"<?xml-"));
        assert!(!is_xml_named_pi(b"<?xml "));
    }

    #[test]
    fn conditions() {
        assert_eq!(
            XmlError::NotWellFormed(String::new()).stream_condition(),
            "not-well-formed"
        );
        assert_eq!(
            XmlError::Restricted(String::new()).stream_condition(),
            "restricted-xml"
        );
        assert_eq!(
            XmlError::StanzaTooLarge { limit: 1 }.stream_condition(),
            "policy-violation"
        );
        assert_eq!(
            XmlError::TooDeep { limit: 1 }.stream_condition(),
            "policy-violation"
        );
        assert_eq!(
            XmlError::InvalidUtf8.stream_condition(),
            "unsupported-encoding"
        );
    }
}
