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

/// An element serialised once for many copies that differ only in the value of one attribute
/// (a room's message to each occupant differs in its `to`): a copy is then two byte copies
/// around the escaped value, instead of a cloned element and a serialisation each. The
/// attribute goes first in the start tag (attribute order carries no meaning in XML).
pub struct Slotted {
    bytes: Vec<u8>,
    /// Where the attribute goes: just after the element's name.
    at: usize,
    /// ` name='`
    opening: Vec<u8>,
}

impl Slotted {
    /// Serialises `el`, which must not carry `attr` itself, as [`write_element_in`] with
    /// `default_ns`, or as [`write_element`] when it is None.
    pub fn new(el: &Element, default_ns: Option<&str>, attr: &str) -> Slotted {
        debug_assert!(
            el.attr(attr).is_none(),
            "the slot's attribute is on the element"
        );
        let mut bytes = Vec::with_capacity(256);
        write_el(el, default_ns, &mut bytes);
        let mut opening = Vec::with_capacity(attr.len() + 3);
        opening.push(b' ');
        opening.extend_from_slice(attr.as_bytes());
        opening.extend_from_slice(b"='");
        Slotted {
            at: 1 + el.name().len(),
            bytes,
            opening,
        }
    }

    /// Appends the element with the attribute set to `value` to `out`.
    pub fn write(&self, value: &str, out: &mut Vec<u8>) {
        out.reserve(self.bytes.len() + self.opening.len() + value.len() + 1);
        out.extend_from_slice(&self.bytes[..self.at]);
        out.extend_from_slice(&self.opening);
        escape_into(out, value, true);
        out.push(b'\'');
        out.extend_from_slice(&self.bytes[self.at..]);
    }
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
    fn a_slotted_copy_parses_back_to_the_element_with_the_attribute() {
        let el = crate::parse_message(
            "<message xmlns='jabber:client' from='r@muc/n&amp;' type='groupchat'><body>a &lt; b</body></message>",
            crate::Limits::default(),
        )
        .unwrap();
        for ns in [None, Some("jabber:client")] {
            let slotted = Slotted::new(&el, ns, "to");
            for to in ["a@b/c", "o'brien@b/x&y"] {
                let mut out = b"before".to_vec();
                slotted.write(to, &mut out);
                let expected = crate::parse_message(
                    &format!(
                        "<message xmlns='jabber:client' to='{}' from='r@muc/n&amp;' type='groupchat'><body>a &lt; b</body></message>",
                        escape(to)
                    ),
                    crate::Limits::default(),
                )
                .unwrap();
                let mut direct = Vec::new();
                match ns {
                    Some(ns) => write_element_in(&expected, ns, &mut direct),
                    None => write_element(&expected, &mut direct),
                }
                assert_eq!(&out[..6], b"before");
                let text = std::str::from_utf8(&out[6..]).unwrap();
                // Same attributes, another order: the same length and the same element.
                assert_eq!(text.len(), direct.len());
                let wrapped = if ns.is_some() {
                    text.replacen("<message", "<message xmlns='jabber:client'", 1)
                } else {
                    text.to_string()
                };
                let back = crate::parse_message(&wrapped, crate::Limits::default()).unwrap();
                assert_eq!(back, expected);
            }
        }
    }

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
