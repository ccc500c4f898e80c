//! RFC 6415 §3 (XRD, `host-meta`) with XEP-0156 links: a pure parser into [`HostMetaDoc`].
//!
//! The document goes through `weft-xml`'s one-message parser, not the stream parser: it is
//! a complete document, and that parser is the restricted one (no DTD, no entity
//! declarations, no comments or processing instructions — XEP-0487 §6.2 warns, citing
//! CVE-2022-0217, against letting a permissive XML parser near an XMPP server). An XRD that
//! uses those constructs is therefore refused as a whole; JRD is tried first anyway.

use weft_xml::{Element, Limits};

use crate::endpoint::{build_endpoint, EndpointKind, HostMetaDoc, HostMetaFormat, LinkParts};
use crate::error::HostMetaError;

/// The XRD 1.0 namespace (OASIS).
pub const XRD_NS: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";

/// Deepest nesting accepted; an XRD is `XRD` › `Link` › `Title`/`Property`, so 16 is ample.
const MAX_DEPTH: usize = 16;

/// Parse a `host-meta` (XRD) body.
///
/// An XML declaration and surrounding whitespace are accepted, as is a UTF-8 byte order
/// mark. The root must be `XRD` in [`XRD_NS`]; its `Link` children with XMPP relations are
/// taken, with the same validation as JRD links (`wss://` only for WebSocket). XRD has no
/// place for the XEP-0487 fields, so priority and weight take their defaults. Never panics.
pub fn parse_xrd(body: &[u8]) -> Result<HostMetaDoc, HostMetaError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let body = trim_ascii_whitespace(body);
    let root = parse_document(body)?;
    if !root.is("XRD", XRD_NS) {
        return Err(HostMetaError::InvalidXrd(format!(
            "root element is {{{}}}{}, not {{{XRD_NS}}}XRD",
            root.ns(),
            root.name()
        )));
    }
    let mut doc = HostMetaDoc::new(HostMetaFormat::Xrd);
    for link in root.children().filter(|c| c.is("Link", XRD_NS)) {
        let Some(kind) = link.attr("rel").and_then(EndpointKind::from_rel) else {
            continue;
        };
        let parts = LinkParts {
            href: link.attr("href"),
            ..LinkParts::default()
        };
        match build_endpoint(kind, parts) {
            Ok(endpoint) => doc.push(endpoint),
            Err(reason) => doc.reject(kind.rel(), reason),
        }
    }
    Ok(doc)
}

/// Parse the whole document. The one-message parser refuses whitespace between the XML
/// declaration and the root element (a WebSocket message has none), which real XRD files
/// always have; so the declaration is checked here and stripped before parsing.
fn parse_document(body: &[u8]) -> Result<Element, HostMetaError> {
    let body = match strip_xml_declaration(body)? {
        Some(rest) => trim_ascii_whitespace(rest),
        None => body,
    };
    let limits = Limits {
        // The body is already capped by the fetcher; this only keeps the parser's own
        // bound consistent with it.
        max_stanza_bytes: body.len().max(1),
        max_depth: MAX_DEPTH,
    };
    weft_xml::parse_message_bytes(body, limits)
        .map_err(|e| HostMetaError::InvalidXrd(e.to_string()))
}

/// If the body starts with an XML declaration, check that it names version 1.0 and UTF-8
/// (or no encoding) and return what follows it.
fn strip_xml_declaration(body: &[u8]) -> Result<Option<&[u8]>, HostMetaError> {
    let Some(rest) = body.strip_prefix(b"<?xml") else {
        return Ok(None);
    };
    // `<?xml-stylesheet …?>` and other PIs are not the declaration; the parser refuses them.
    if !rest.first().is_some_and(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let end = rest
        .windows(2)
        .position(|w| w == b"?>")
        .ok_or_else(|| HostMetaError::InvalidXrd("unterminated XML declaration".into()))?;
    let decl = std::str::from_utf8(&rest[..end])
        .map_err(|_| HostMetaError::InvalidXrd("XML declaration is not UTF-8".into()))?;
    for (name, value) in pseudo_attributes(decl)? {
        let ok = match name {
            "version" => value == "1.0",
            "encoding" => value.eq_ignore_ascii_case("utf-8"),
            "standalone" => value == "yes" || value == "no",
            _ => false,
        };
        if !ok {
            return Err(HostMetaError::InvalidXrd(format!(
                "XML declaration {name}={value:?} not supported (XML 1.0 in UTF-8 only)"
            )));
        }
    }
    Ok(Some(&rest[end + 2..]))
}

/// Split `version='1.0' encoding="utf-8"` into pairs.
fn pseudo_attributes(decl: &str) -> Result<Vec<(&str, &str)>, HostMetaError> {
    let bad = || HostMetaError::InvalidXrd("malformed XML declaration".into());
    let mut out = Vec::new();
    let mut s = decl.trim_start();
    while !s.is_empty() {
        let eq = s.find('=').ok_or_else(bad)?;
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(bad)?;
        let value_and_rest = &after[1..];
        let close = value_and_rest.find(quote).ok_or_else(bad)?;
        out.push((name, &value_and_rest[..close]));
        s = value_and_rest[close + 1..].trim_start();
    }
    Ok(out)
}

fn trim_ascii_whitespace(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !first.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !last.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The XEP-0156 §3.3 XRD example with its `...` elisions removed.
    const XEP_0156_EXAMPLE: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>
  <Link rel="urn:xmpp:alt-connections:xbosh"
        href="https://web.example.com:5280/bosh" />
  <Link rel="urn:xmpp:alt-connections:websocket"
        href="wss://web.example.com:443/ws" />
</XRD>
"#;

    #[test]
    fn xep_0156_example() {
        let doc = parse_xrd(XEP_0156_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(doc.format, HostMetaFormat::Xrd);
        assert_eq!(doc.endpoints.len(), 1);
        assert_eq!(doc.endpoints[0].kind, EndpointKind::C2sWebSocket);
        assert_eq!(doc.endpoints[0].host.as_deref(), Some("web.example.com"));
        assert!(doc.rejected.is_empty());
        assert_eq!(doc.host_meta2, None);
    }

    #[test]
    fn s2s_links_prefixes_bom_and_whitespace() {
        let body = "\u{feff}\n  <?xml version=\"1.0\"?>\n\n<x:XRD xmlns:x='http://docs.oasis-open.org/ns/xri/xrd-1.0'\n xmlns:hm='http://host-meta.net/xrd/1.0'>\n <hm:Host>b.example</hm:Host>\n <x:Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://b.example:5281/s2s'><x:Title>s2s</x:Title></x:Link>\n <x:Link rel='urn:xmpp:alt-connections:s2s-websocket' href='ws://b.example/s2s'/>\n <x:Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://b.example:5281/s2s'/>\n <x:Link rel='lrdd' template='https://b.example/{uri}'/>\n</x:XRD>\n\n";
        let doc = parse_xrd(body.as_bytes()).unwrap();
        assert_eq!(doc.endpoints.len(), 1);
        let ws = &doc.endpoints[0];
        assert_eq!(ws.kind, EndpointKind::S2sWebSocket);
        assert_eq!((ws.host.as_deref(), ws.port), (Some("b.example"), 5281));
        assert_eq!(doc.rejected.len(), 2, "{:?}", doc.rejected);
        assert!(doc.rejected[0].reason.contains("wss"));
        assert!(doc.rejected[1].reason.contains("duplicate"));
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'><Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://a/&lol2;'/></XRD>"#;
        let err = parse_xrd(billion_laughs.as_bytes()).unwrap_err();
        assert!(
            matches!(err, HostMetaError::InvalidXrd(ref m) if m.contains("restricted")),
            "{err}"
        );
        let xxe = r#"<!DOCTYPE XRD SYSTEM "file:///etc/passwd"><XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/>"#;
        assert!(parse_xrd(xxe.as_bytes()).is_err());
        let entity = r#"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'><Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://a/&ext;'/></XRD>"#;
        assert!(parse_xrd(entity.as_bytes()).is_err());
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for junk in [
            "",
            "   ",
            "<?xml",
            "<?xml version='1.0'",
            "<?xml version='1.1'?><XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/>",
            "<?xml version='1.0' encoding='latin1'?><XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/>",
            "<?xml version=1.0?><XRD/>",
            "<?xml-stylesheet href='a'?><XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/>",
            "<XRD/>",
            "<XRD xmlns='urn:other'/>",
            "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>",
            "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/><XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/>",
            "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'><!-- c --></XRD>",
            "{\"links\":[]}",
            "\u{0}\u{1}",
        ] {
            assert!(
                matches!(parse_xrd(junk.as_bytes()), Err(HostMetaError::InvalidXrd(_))),
                "{junk:?}"
            );
        }
        assert!(parse_xrd(b"\xff\xfe<\x00").is_err());
        let deep = format!(
            "<XRD xmlns='{XRD_NS}'>{}{}</XRD>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(parse_xrd(deep.as_bytes()).is_err());
    }

    #[test]
    fn huge_documents_are_bounded() {
        let link = "<Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://hN.example/'/>";
        let many: String = (0..20_000)
            .map(|i| link.replace("hN", &format!("h{i}")))
            .collect();
        let doc = parse_xrd(format!("<XRD xmlns='{XRD_NS}'>{many}</XRD>").as_bytes()).unwrap();
        assert_eq!(doc.endpoints.len(), crate::endpoint::MAX_LINKS);
        // One attribute beyond the XML layer's token limit: refused as a whole, no panic.
        let huge = format!(
            "<XRD xmlns='{XRD_NS}'><Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://h/{}'/></XRD>",
            "a".repeat(1 << 20)
        );
        assert!(matches!(
            parse_xrd(huge.as_bytes()),
            Err(HostMetaError::InvalidXrd(_))
        ));
    }

    #[test]
    fn empty_xrd_is_a_document_without_endpoints() {
        let doc = parse_xrd(format!("<XRD xmlns='{XRD_NS}'/>").as_bytes()).unwrap();
        assert!(doc.endpoints.is_empty());
    }
}
