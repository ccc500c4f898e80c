//! Just enough XML reading for the load generator: names, attributes and child texts of one
//! serialised top-level element (RFC 6120 §4 stream children, RFC 7395 §3.3 messages).
//!
//! The generator must not be the bottleneck and must work against any server, so it scans the
//! text instead of building a tree, and accepts prefixed (`<stream:features>`) and unprefixed
//! (`<features xmlns=…>`) names alike. It trusts the server to send well-formed XML.

use std::borrow::Cow;

/// The end of the start tag (index of its `>`), skipping `>` inside quoted attribute values.
fn start_tag_end(el: &str) -> usize {
    let mut quote = 0u8;
    for (i, &b) in el.as_bytes().iter().enumerate() {
        match b {
            b'\'' | b'"' if quote == 0 => quote = b,
            q if q == quote => quote = 0,
            b'>' if quote == 0 => return i,
            _ => {}
        }
    }
    el.len()
}

/// The local name of the tag that starts at `tag` (just after its `<`), prefix removed.
fn local_name(tag: &str) -> &str {
    let end = tag
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    let qname = &tag[..end];
    qname.rsplit(':').next().unwrap_or(qname)
}

/// The local name of the element, e.g. `features` for `<stream:features>`.
pub fn name(el: &str) -> &str {
    let el = el.trim_start();
    el.strip_prefix('<').map(local_name).unwrap_or("")
}

/// An attribute of the element's start tag (the value as written, entities not expanded).
pub fn attr<'a>(el: &'a str, key: &str) -> Option<&'a str> {
    let tag = &el[..start_tag_end(el)];
    let mut rest = tag;
    while let Some(i) = rest.find(key) {
        let before = rest[..i].chars().last();
        let after = &rest[i + key.len()..];
        let after_eq = after.trim_start().strip_prefix('=').map(str::trim_start);
        if before.is_some_and(|c| c.is_ascii_whitespace()) {
            if let Some(v) = after_eq {
                let q = v.chars().next()?;
                if q == '\'' || q == '"' {
                    let v = &v[1..];
                    return v.find(q).map(|end| &v[..end]);
                }
            }
        }
        rest = &rest[i + key.len()..];
    }
    None
}

/// Start tags of descendants (not the element itself) with this local name, each as the text
/// from its `<` to the end of the element string.
pub fn descendants<'a>(el: &'a str, local: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let body_start = (start_tag_end(el) + 1).min(el.len());
    let mut pos = body_start;
    std::iter::from_fn(move || {
        while let Some(i) = el[pos..].find('<') {
            let at = pos + i;
            pos = at + 1;
            let tag = &el[at + 1..];
            if !tag.starts_with(['/', '!', '?']) && local_name(tag) == local {
                return Some(&el[at..]);
            }
        }
        None
    })
}

/// The text right inside the element (up to its first child or end tag); empty when self-closing.
pub fn text(el: &str) -> &str {
    let end = start_tag_end(el);
    if end == 0 || end >= el.len() || el.as_bytes()[end - 1] == b'/' {
        return "";
    }
    let body = &el[end + 1..];
    &body[..body.find('<').unwrap_or(body.len())]
}

/// The text of the first descendant with this local name.
pub fn child_text<'a>(el: &'a str, local: &'a str) -> Option<&'a str> {
    descendants(el, local).next().map(text)
}

/// Does the element have a descendant with this local name?
pub fn has_child(el: &str, local: &str) -> bool {
    descendants(el, local).next().is_some()
}

/// Expands the five predefined entities (XML 1.0 §4.6), enough for JIDs echoed by servers.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: &str = "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
        <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>\
        <mechanism>PLAIN</mechanism></mechanisms><session xmlns='urn:ietf:params:xml:ns:xmpp-session'>\
        <optional/></session></stream:features>";

    #[test]
    fn names_and_children() {
        assert_eq!(name(FEATURES), "features");
        assert_eq!(name("<features xmlns='x'/>"), "features");
        let mechs: Vec<_> = descendants(FEATURES, "mechanism").map(text).collect();
        assert_eq!(mechs, ["SCRAM-SHA-1", "PLAIN"]);
        assert!(has_child(FEATURES, "optional"));
        assert!(!has_child(FEATURES, "bind"));
        assert!(
            !has_child(FEATURES, "features"),
            "the element itself is not its child"
        );
    }

    #[test]
    fn attributes_and_text() {
        let iq =
            r#"<iq type="result" id='b1' xmlns:a='x>y'><bind><jid>a@b/c&apos;</jid></bind></iq>"#;
        assert_eq!(attr(iq, "type"), Some("result"));
        assert_eq!(attr(iq, "id"), Some("b1"));
        assert_eq!(
            attr(iq, "d"),
            None,
            "no match inside another attribute's name or value"
        );
        assert_eq!(
            child_text(iq, "jid").map(unescape).as_deref(),
            Some("a@b/c'")
        );
        assert_eq!(text("<success xmlns='s'>dj1h</success>"), "dj1h");
        assert_eq!(text("<success xmlns='s'/>"), "");
        assert_eq!(child_text("<m><body/></m>", "body"), Some(""));
    }
}
