//! RFC 6120 §4.8/§11 and RFC 7395 §3.3.3: serialising elements as standalone fragments carrying their own namespace declarations, and escaping text and attribute values.

use std::borrow::Cow;

use minidom::{Element, Node};

use crate::builder::KNOWN_NAMESPACES;
use crate::XML_NS;

/// Serialise `el` as a standalone fragment, appending to `out`.
///
/// The root declares its namespace as the default (`xmlns='…'`); a descendant in another
/// namespace declares its own default namespace; no element prefixes are ever used.
/// `xml:*` attributes are written with the `xml` prefix; attributes in any other namespace get
/// a generated prefix (`ns0`, `ns1`, …) declared on their element. Attribute values use single
/// quotes. Empty elements are written as `<x/>`. The output parses back to an equal element
/// with [`crate::parse_message`] (minidom's element `prefixes` are ignored).
pub fn write_element(el: &Element, out: &mut Vec<u8>) {
    write_el(el, None, out);
}

/// Like [`write_element`], but for an element placed where `default_ns` is already the
/// default namespace (e.g. a stanza inside a TCP stream whose header declared
/// `xmlns='jabber:client'`): the element omits `xmlns` if it is in that namespace.
pub fn write_element_in(el: &Element, default_ns: &str, out: &mut Vec<u8>) {
    write_el(el, Some(default_ns), out);
}

fn write_el(el: &Element, parent_ns: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'<');
    out.extend_from_slice(el.name().as_bytes());

    let owned: String;
    let ns: &str = match parent_ns {
        Some(p) if el.has_ns(p) => p,
        _ => {
            let ns = match KNOWN_NAMESPACES.iter().find(|k| el.has_ns(**k)) {
                Some(known) => *known,
                None => {
                    // minidom only hands out the namespace as a fresh String.
                    owned = el.ns();
                    owned.as_str()
                }
            };
            // An unnamespaced root needs no declaration; anywhere else, say so.
            if !(ns.is_empty() && parent_ns.is_none()) {
                out.extend_from_slice(b" xmlns='");
                escape_into(out, ns, true);
                out.push(b'\'');
            }
            ns
        }
    };

    write_attrs(el, out);

    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in nodes {
        match node {
            Node::Element(child) => write_el(child, Some(ns), out),
            Node::Text(text) => escape_into(out, text, false),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

fn write_attrs(el: &Element, out: &mut Vec<u8>) {
    // Namespaces (other than xml) needing a generated prefix on this element; rare.
    let mut declared: Vec<&str> = Vec::new();
    for ((ns, name), value) in el.attrs().iter() {
        out.push(b' ');
        if ns.is_none() {
            // Unqualified: the common case.
        } else if ns.as_str() == XML_NS {
            out.extend_from_slice(b"xml:");
        } else {
            let idx = match declared.iter().position(|d| *d == ns.as_str()) {
                Some(idx) => idx,
                None => {
                    declared.push(ns.as_str());
                    let idx = declared.len() - 1;
                    out.extend_from_slice(b"xmlns:");
                    push_prefix(out, idx);
                    out.extend_from_slice(b"='");
                    escape_into(out, ns.as_str(), true);
                    out.extend_from_slice(b"' ");
                    idx
                }
            };
            push_prefix(out, idx);
            out.push(b':');
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b"='");
        escape_into(out, value, true);
        out.push(b'\'');
    }
}

fn push_prefix(out: &mut Vec<u8>, idx: usize) {
    out.extend_from_slice(b"ns");
    out.extend_from_slice(idx.to_string().as_bytes());
}

/// Escape text for use inside a single- or double-quoted attribute value or a text node:
/// `& < > ' "` become entity references and tab, LF and CR character references (so that
/// attribute-value normalisation and line-end handling give back the same string).
/// Borrows when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_cow::<true>(s)
}

/// Escape text for a text node only: `& < >` and CR (quotes, tab and LF stay literal).
/// Not safe inside attribute values; use [`escape`] there.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape_cow::<false>(s)
}

fn escape_cow<const ATTR: bool>(s: &str) -> Cow<'_, str> {
    match s.bytes().position(|b| replacement::<ATTR>(b).is_some()) {
        None => Cow::Borrowed(s),
        Some(first) => {
            let mut o = String::with_capacity(s.len() + 16);
            o.push_str(&s[..first]);
            escape_runs::<ATTR>(&s[first..], |piece| o.push_str(piece));
            Cow::Owned(o)
        }
    }
}

/// Append `s` escaped to `out` (attribute rules if `attr`, text rules otherwise).
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str, attr: bool) {
    if attr {
        escape_runs::<true>(s, |piece| out.extend_from_slice(piece.as_bytes()));
    } else {
        escape_runs::<false>(s, |piece| out.extend_from_slice(piece.as_bytes()));
    }
}

#[inline(always)]
fn replacement<const ATTR: bool>(b: u8) -> Option<&'static str> {
    match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#13;"),
        b'\'' if ATTR => Some("&apos;"),
        b'"' if ATTR => Some("&quot;"),
        b'\n' if ATTR => Some("&#10;"),
        b'\t' if ATTR => Some("&#9;"),
        _ => None,
    }
}

/// Emit `s` as unescaped runs and replacements. Only ASCII bytes are replaced, so every
/// slice boundary is a char boundary.
#[inline]
fn escape_runs<const ATTR: bool>(s: &str, mut emit: impl FnMut(&str)) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if let Some(rep) = replacement::<ATTR>(b) {
            if start < i {
                emit(&s[start..i]);
            }
            emit(rep);
            start = i + 1;
        }
    }
    if start < s.len() {
        emit(&s[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_borrows_when_clean() {
        assert!(matches!(escape("plain text é"), Cow::Borrowed(_)));
        assert!(matches!(escape_text("it's \"fine\"\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_replaces_specials() {
        assert_eq!(
            escape("a<b>&'\"\t\n\r é"),
            "a&lt;b&gt;&amp;&apos;&quot;&#9;&#10;&#13; é"
        );
        assert_eq!(escape_text("a<b>&'\"\n\r"), "a&lt;b&gt;&amp;'\"\n&#13;");
    }
}
