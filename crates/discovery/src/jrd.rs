//! RFC 6415 Appendix A (JRD, `host-meta.json`) with XEP-0156 links and the XEP-0487 (Host Meta 2) fields: a pure parser into [`HostMetaDoc`].
//!
//! The document is read as a generic JSON value rather than through serde structs so that one
//! malformed link (a string where a number belongs, a bad IP) costs only that link, with a
//! reason, instead of the whole document.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::endpoint::{
    build_endpoint, parse_ip, parse_sni, EndpointKind, HostMeta2, HostMetaDoc, HostMetaFormat,
    LinkParts, MAX_IPS_PER_LINK,
};
use crate::error::HostMetaError;

/// Parse a `host-meta.json` body.
///
/// The document fails as a whole only when it is not a JSON object or its `links` is not an
/// array; anything wrong inside one XMPP link leaves that link out with a reason in
/// [`HostMetaDoc::rejected`]. Links with relations weft does not use (BOSH, lrdd, …) are
/// ignored silently. Never panics on any input.
pub fn parse_jrd(body: &[u8]) -> Result<HostMetaDoc, HostMetaError> {
    // Hand-edited files sometimes carry a UTF-8 byte order mark, which JSON does not allow.
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    // serde_json bounds nesting depth itself (128), so hostile nesting is an error, not a
    // stack overflow.
    let value: Value =
        serde_json::from_slice(body).map_err(|e| HostMetaError::InvalidJrd(e.to_string()))?;
    let Value::Object(root) = value else {
        return Err(HostMetaError::InvalidJrd("not a JSON object".into()));
    };
    let mut doc = HostMetaDoc::new(HostMetaFormat::Jrd);

    if let Some(xmpp) = root.get("xmpp") {
        doc.host_meta2 = Some(parse_xmpp_object(xmpp, &mut doc));
    }
    let links = match root.get("links") {
        None => return Ok(doc),
        Some(Value::Array(links)) => links,
        Some(_) => {
            return Err(HostMetaError::InvalidJrd(
                "\"links\" is not an array".into(),
            ))
        }
    };
    let doc_ttl = doc.ttl();
    for link in links {
        let Value::Object(link) = link else {
            // Not an XMPP link we can recognise; RFC 6415 says links are objects.
            continue;
        };
        let Some(kind) = link
            .get("rel")
            .and_then(Value::as_str)
            .and_then(EndpointKind::from_rel)
        else {
            continue;
        };
        match link_parts(link).and_then(|parts| build_endpoint(kind, parts)) {
            Ok(mut endpoint) => {
                endpoint.ttl = endpoint.ttl.or(doc_ttl);
                doc.push(endpoint);
            }
            Err(reason) => doc.reject(kind.rel(), reason),
        }
    }
    Ok(doc)
}

/// XEP-0487 §2.1: the top-level `xmpp` object. Malformed fields are noted and dropped; the
/// object's presence alone already means "Host Meta 2 in use".
fn parse_xmpp_object(value: &Value, doc: &mut HostMetaDoc) -> HostMeta2 {
    let mut hm2 = HostMeta2::default();
    let Value::Object(obj) = value else {
        doc.reject("xmpp", "not a JSON object");
        return hm2;
    };
    match obj.get("ttl") {
        None => doc.reject("xmpp.ttl", "missing (mandatory in XEP-0487)"),
        Some(v) => match v.as_u64() {
            Some(secs) => hm2.ttl = Some(Duration::from_secs(secs)),
            None => doc.reject("xmpp.ttl", "not a non-negative integer"),
        },
    }
    match obj.get("public-key-pins-sha-256") {
        None => {}
        Some(Value::Array(pins)) => {
            for pin in pins {
                match decode_pin(pin) {
                    Ok(p) => hm2.public_key_pins_sha256.push(p),
                    Err(reason) => doc.reject("xmpp.public-key-pins-sha-256", reason),
                }
            }
        }
        Some(_) => doc.reject("xmpp.public-key-pins-sha-256", "not an array"),
    }
    hm2
}

fn decode_pin(pin: &Value) -> Result<[u8; 32], String> {
    let s = pin.as_str().ok_or("pin is not a string")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("pin {s:?} is not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("pin {s:?} is not 32 bytes"))
}

/// Pull the XEP-0487 fields out of one link object, checking their types and ranges.
fn link_parts(link: &Map<String, Value>) -> Result<LinkParts<'_>, String> {
    let mut parts = LinkParts {
        href: match link.get("href") {
            None => None,
            Some(v) => Some(v.as_str().ok_or("href is not a string")?),
        },
        port: opt_u16(link, "port")?,
        priority: opt_u16(link, "priority")?,
        weight: opt_u16(link, "weight")?,
        ..LinkParts::default()
    };
    if let Some(v) = link.get("sni") {
        parts.sni = Some(parse_sni(v.as_str().ok_or("sni is not a string")?)?);
    }
    if let Some(v) = link.get("ttl") {
        let secs = v.as_u64().ok_or("ttl is not a non-negative integer")?;
        parts.ttl = Some(Duration::from_secs(secs));
    }
    if let Some(v) = link.get("ips") {
        let ips = v.as_array().ok_or("ips is not an array")?;
        if ips.len() > MAX_IPS_PER_LINK {
            return Err(format!("more than {MAX_IPS_PER_LINK} ips"));
        }
        for ip in ips {
            let ip = parse_ip(ip.as_str().ok_or("an ips entry is not a string")?)?;
            if !parts.ips.contains(&ip) {
                parts.ips.push(ip);
            }
        }
    }
    if parts.port == Some(0) {
        return Err("port 0".into());
    }
    Ok(parts)
}

/// An optional integer field in 0..=65535 (RFC 2782 range for priority, weight and port).
fn opt_u16(link: &Map<String, Value>, key: &str) -> Result<Option<u16>, String> {
    match link.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{key} is not an integer in 0..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Endpoint, MAX_LINKS};
    use std::net::IpAddr;

    /// The example of XEP-0487 §2.3, verbatim.
    const XEP_0487_EXAMPLE: &str = r#"{
  "xmpp": {
    "ttl": 3000,
    "public-key-pins-sha-256": [
      "4/mggdlVx8A3pvHAWW5sD+qJyMtUHgiRuPjVC48N0XQ="
    ]
  },
  "links": [
    {
      "rel": "urn:xmpp:alt-connections:websocket",
      "href": "wss://other.example.org/xmpp-websocket",
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 15,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:tls",
      "port": 443,
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 10,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:quic",
      "port": 443,
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 5,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:s2s-websocket",
      "href": "wss://other.example.org/s2s-xmpp-websocket",
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 15,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:s2s-tls",
      "port": 443,
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 10,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:s2s-quic",
      "port": 443,
      "ips": [
        "1.2.3.4",
        "fd00:feed:dad:beef::1"
      ],
      "priority": 5,
      "weight": 50,
      "sni": "example.org",
      "ech": "eG1wcC1jbGllbnQ="
    },
    {
      "rel": "urn:xmpp:alt-connections:xbosh",
      "href": "https://web.example.com:5280/bosh"
    }
  ]
}"#;

    fn ips() -> Vec<IpAddr> {
        vec![
            "1.2.3.4".parse().unwrap(),
            "fd00:feed:dad:beef::1".parse().unwrap(),
        ]
    }

    #[test]
    fn xep_0487_example() {
        let doc = parse_jrd(XEP_0487_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(doc.format, HostMetaFormat::Jrd);
        let hm2 = doc.host_meta2.as_ref().expect("xmpp object");
        assert_eq!(hm2.ttl, Some(Duration::from_secs(3000)));
        assert_eq!(hm2.public_key_pins_sha256.len(), 1);
        assert_eq!(hm2.public_key_pins_sha256[0][0], 0xe3);
        assert!(doc.rejected.is_empty(), "{:?}", doc.rejected);
        // BOSH is not an endpoint kind weft uses.
        assert_eq!(doc.endpoints.len(), 6);
        let s2s_ws: Vec<&Endpoint> = doc.endpoints_of(EndpointKind::S2sWebSocket).collect();
        assert_eq!(
            s2s_ws,
            [&Endpoint {
                kind: EndpointKind::S2sWebSocket,
                url: Some("wss://other.example.org/s2s-xmpp-websocket".into()),
                host: Some("other.example.org".into()),
                port: 443,
                ips: ips(),
                priority: 15,
                weight: 50,
                sni: Some("example.org".into()),
                ttl: Some(Duration::from_secs(3000)),
            }]
        );
        let s2s_tls: Vec<&Endpoint> = doc.endpoints_of(EndpointKind::S2sDirectTls).collect();
        assert_eq!(
            s2s_tls,
            [&Endpoint {
                kind: EndpointKind::S2sDirectTls,
                url: None,
                host: None,
                port: 443,
                ips: ips(),
                priority: 10,
                weight: 50,
                sni: Some("example.org".into()),
                ttl: Some(Duration::from_secs(3000)),
            }]
        );
        assert_eq!(doc.endpoints_of(EndpointKind::S2sQuic).count(), 1);
        assert_eq!(doc.endpoints_of(EndpointKind::C2sWebSocket).count(), 1);
        assert_eq!(doc.endpoints_of(EndpointKind::C2sDirectTls).count(), 1);
        assert_eq!(doc.endpoints_of(EndpointKind::C2sQuic).count(), 1);
    }

    /// The XEP-0156 §3.3 JRD example, with its elisions removed.
    #[test]
    fn xep_0156_example() {
        let body = r#"{
  "links": [
    { "rel": "urn:xmpp:alt-connections:xbosh", "href": "https://web.example.com:5280/bosh" },
    { "rel": "urn:xmpp:alt-connections:websocket", "href": "wss://web.example.com:443/ws" }
  ]
}"#;
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert_eq!(doc.host_meta2, None);
        assert_eq!(doc.endpoints.len(), 1);
        let ws = &doc.endpoints[0];
        assert_eq!(ws.kind, EndpointKind::C2sWebSocket);
        assert_eq!(
            (ws.host.as_deref(), ws.port),
            (Some("web.example.com"), 443)
        );
        assert_eq!((ws.priority, ws.weight, ws.ttl), (0, 0, None));
        assert!(ws.ips.is_empty());
    }

    #[test]
    fn non_wss_s2s_href_is_rejected_with_reason() {
        let body = r#"{"links":[
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"ws://a.example/ws"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"https://a.example/ws"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://a.example/ws"}
        ]}"#;
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert_eq!(doc.endpoints.len(), 1);
        assert_eq!(doc.endpoints[0].url.as_deref(), Some("wss://a.example/ws"));
        assert_eq!(doc.rejected.len(), 2);
        assert!(doc.rejected[0].reason.contains("wss"), "{:?}", doc.rejected);
        assert_eq!(doc.rejected[0].what, crate::REL_S2S_WEBSOCKET);
    }

    #[test]
    fn duplicate_rels_keep_distinct_targets_and_drop_exact_copies() {
        let body = r#"{"links":[
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://a.example/ws"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://b.example/ws"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://a.example/ws"}
        ]}"#;
        let doc = parse_jrd(body.as_bytes()).unwrap();
        let hosts: Vec<_> = doc
            .endpoints
            .iter()
            .filter_map(|e| e.host.as_deref())
            .collect();
        assert_eq!(hosts, ["a.example", "b.example"]);
        assert_eq!(doc.rejected.len(), 1);
        assert!(doc.rejected[0].reason.contains("duplicate"));
    }

    #[test]
    fn malformed_fields_reject_only_their_link() {
        let body = r#"{"links":[
            {"rel":"urn:xmpp:alt-connections:s2s-tls","ips":["1.2.3.4"]},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":"5270"},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":70000},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":0},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"priority":-1},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"weight":1.5},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ips":["1.2.3.4","nope"]},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ips":"1.2.3.4"},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"sni":"1.2.3.4"},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"sni":7},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ttl":"soon"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":42},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ips":["1.2.3.4","1.2.3.4"],"ttl":60}
        ]}"#;
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert_eq!(doc.rejected.len(), 13, "{:#?}", doc.rejected);
        assert_eq!(doc.endpoints.len(), 1);
        let ok = &doc.endpoints[0];
        assert_eq!(ok.ips, vec!["1.2.3.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(ok.ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn broken_xmpp_object_is_noted_not_fatal() {
        let doc = parse_jrd(
            br#"{"xmpp":{"ttl":-5,"public-key-pins-sha-256":["!!", "AAAA"]},"links":[]}"#,
        )
        .unwrap();
        let hm2 = doc.host_meta2.unwrap();
        assert_eq!(hm2.ttl, None);
        assert!(hm2.public_key_pins_sha256.is_empty());
        assert_eq!(doc.rejected.len(), 3);
        let doc = parse_jrd(br#"{"xmpp":{}}"#).unwrap();
        assert_eq!(doc.host_meta2, Some(HostMeta2::default()));
        assert_eq!(doc.rejected[0].what, "xmpp.ttl");
        let doc = parse_jrd(br#"{"xmpp":[]}"#).unwrap();
        assert!(doc.host_meta2.is_some());
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for junk in [
            &b""[..],
            b"null",
            b"[]",
            b"\"links\"",
            b"{\"links\":{}}",
            b"{\"links\":[",
            b"\xff\xfe{}",
            b"<XRD/>",
        ] {
            assert!(
                matches!(parse_jrd(junk), Err(HostMetaError::InvalidJrd(_))),
                "{junk:?}"
            );
        }
        // Deep nesting is refused by the JSON parser's recursion limit.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_jrd(deep.as_bytes()).is_err());
        let bom = [&b"\xef\xbb\xbf"[..], br#"{"links":[]}"#].concat();
        assert!(parse_jrd(&bom).is_ok());
        // Links that are not objects or lack a known rel are skipped silently.
        let doc = parse_jrd(br#"{"links":[1,"x",null,{"rel":5},{"href":"wss://a/"}]}"#).unwrap();
        assert!(doc.endpoints.is_empty() && doc.rejected.is_empty());
    }

    #[test]
    fn huge_documents_are_bounded() {
        // 20 000 links and a 1 MiB href: parsed without trouble, at most MAX_LINKS kept.
        let link = r#"{"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://h.example/"}"#;
        let long = format!(
            r#"{{"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://h.example/{}"}}"#,
            "a".repeat(1 << 20)
        );
        let many: Vec<String> = (0..20_000)
            .map(|i| link.replace("h.example", &format!("h{i}.example")))
            .collect();
        let body = format!(r#"{{"links":[{long},{}]}}"#, many.join(","));
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert_eq!(doc.endpoints.len(), MAX_LINKS);
        assert!(doc.rejected[0].reason.contains("longer than"));
        // The many-IPs case.
        let ips: Vec<String> = (0..1000)
            .map(|i| format!("\"10.0.{}.{}\"", i / 250, i % 250))
            .collect();
        let body = format!(
            r#"{{"links":[{{"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ips":[{}]}}]}}"#,
            ips.join(",")
        );
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert!(doc.endpoints.is_empty());
        assert!(doc.rejected[0].reason.contains("ips"));
    }

    /// The shape weft's own HTTP listener serves (`subject`, a loopback ws:// c2s link).
    #[test]
    fn weft_own_document() {
        let body = r#"{"subject":"a.test","links":[
            {"rel":"urn:xmpp:alt-connections:websocket","href":"ws://a.test:5280/xmpp-websocket"},
            {"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://a.test:5443/xmpp-websocket",
             "ips":["127.0.0.1"],"priority":10,"weight":50,"sni":"a.test"},
            {"rel":"urn:xmpp:alt-connections:s2s-tls","port":5270,"ips":["127.0.0.1"],
             "priority":10,"weight":50,"sni":"a.test"}]}"#;
        let doc = parse_jrd(body.as_bytes()).unwrap();
        let kinds: Vec<_> = doc.endpoints.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EndpointKind::S2sWebSocket, EndpointKind::S2sDirectTls]
        );
        assert_eq!(doc.endpoints[0].port, 5443);
        // ws:// is refused for c2s too (XEP-0156 §3.2 rule 1); harmless for s2s.
        assert_eq!(doc.rejected.len(), 1);
        assert_eq!(doc.host_meta2, None);
    }

    #[test]
    fn link_count_is_capped() {
        let links: Vec<String> = (0..MAX_LINKS + 5)
            .map(|i| {
                format!(r#"{{"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://h{i}.example/"}}"#)
            })
            .collect();
        let body = format!(r#"{{"links":[{}]}}"#, links.join(","));
        let doc = parse_jrd(body.as_bytes()).unwrap();
        assert_eq!(doc.endpoints.len(), MAX_LINKS);
        assert_eq!(doc.rejected.len(), 5);
    }
}
