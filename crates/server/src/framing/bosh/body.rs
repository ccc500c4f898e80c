//! XEP-0124 §4 / XEP-0206: the `<body/>` wrapper of BOSH on the wire — reading a request's
//! attributes and children, writing responses and `type='terminate'` bodies with their
//! conditions (§17). No I/O.

use minidom::Element;

use crate::ns;

/// XEP-0124's wrapper namespace.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206's attribute namespace (`xmpp:version`, `xmpp:restart`, …).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";
/// The protocol version we speak (XEP-0124 1.11).
pub const VERSION: (u32, u32) = (1, 11);

/// XEP-0124 §17.2 terminal binding conditions weft sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    ItemNotFound,
    OtherRequest,
    PolicyViolation,
    RemoteConnectionFailed,
    /// XEP-0206 §6: a stream error follows inside the body.
    RemoteStreamError,
    SeeOtherUri,
    SystemShutdown,
    UndefinedCondition,
}

impl Condition {
    pub fn name(self) -> &'static str {
        use Condition::*;
        match self {
            BadRequest => "bad-request",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            ItemNotFound => "item-not-found",
            OtherRequest => "other-request",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            RemoteStreamError => "remote-stream-error",
            SeeOtherUri => "see-other-uri",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
        }
    }
}

/// The value of an attribute in namespace `ns` (minidom keys attributes by namespace).
pub fn attr_ns<'a>(el: &'a Element, namespace: &str, name: &str) -> Option<&'a str> {
    el.attrs()
        .iter()
        .find(|((ans, aname), _)| ans.as_str() == namespace && aname.as_str() == name)
        .map(|(_, v)| v.as_str())
}

/// What a request body says, apart from its payload.
#[derive(Debug)]
pub struct Request {
    pub rid: u64,
    pub sid: Option<String>,
    /// `type='terminate'` (XEP-0124 §13).
    pub terminate: bool,
    /// `xmpp:restart='true'` (XEP-0206 §5).
    pub restart: bool,
    /// The stanzas and nonzas inside, in `jabber:client` (XEP-0206 §2: a child left in the
    /// wrapper's namespace by a client that did not qualify it is moved there, as servers do).
    pub children: Vec<Element>,
}

/// Reads a parsed `<body/>`; an error names the XEP-0124 rule broken.
pub fn parse_request(body: &Element) -> Result<Request, &'static str> {
    if !body.is("body", NS_HTTPBIND) {
        return Err(
            "XEP-0124 §4: the root must be <body xmlns='http://jabber.org/protocol/httpbind'/>",
        );
    }
    let rid = body
        .attr("rid")
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r < (1u64 << 53))
        .ok_or("XEP-0124 §7.1: every request needs an integer 'rid' below 2^53")?;
    let children = body
        .children()
        .map(|c| weft_xml::with_namespace(c, NS_HTTPBIND, ns::CLIENT))
        .collect();
    Ok(Request {
        rid,
        sid: body.attr("sid").map(str::to_string),
        terminate: body.attr("type") == Some("terminate"),
        restart: attr_ns(body, NS_XBOSH, "restart") == Some("true"),
        children,
    })
}

/// `ver` for our answer: the client's if lower than ours (§7.1), else ours.
pub fn negotiated_version(client: Option<&str>) -> String {
    let parsed = client.and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    let (major, minor) = match parsed {
        Some(v) if v < VERSION => v,
        _ => VERSION,
    };
    format!("{major}.{minor}")
}

/// Opens a response `<body` with our namespaces; attributes and `>` follow.
fn open(out: &mut String) {
    out.push_str("<body xmlns='");
    out.push_str(NS_HTTPBIND);
    out.push_str("' xmlns:xmpp='");
    out.push_str(NS_XBOSH);
    out.push_str("' xmlns:stream='");
    out.push_str(ns::STREAM);
    out.push('\'');
}

pub fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("='");
    out.push_str(&weft_xml::escape(value));
    out.push('\'');
}

/// A response body: `attrs` (already written as ` name='value'`…) and the serialised payloads.
pub fn response(attrs: &str, payload: &[u8]) -> String {
    let mut out = String::with_capacity(160 + attrs.len() + payload.len());
    open(&mut out);
    out.push_str(attrs);
    if payload.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        // The serialiser writes UTF-8 only.
        out.push_str(&String::from_utf8_lossy(payload));
        out.push_str("</body>");
    }
    out
}

/// A `type='terminate'` body (XEP-0124 §13, §17.2): with `condition`, a `<uri/>` for
/// see-other-uri (§17.3), and any payload (the last stanzas, or XEP-0206's stream error).
pub fn terminate(condition: Option<Condition>, uri: Option<&str>, payload: &[u8]) -> String {
    let mut attrs = String::from(" type='terminate'");
    if let Some(c) = condition {
        push_attr(&mut attrs, "condition", c.name());
    }
    match uri {
        Some(uri) => {
            let mut inner = payload.to_vec();
            inner.extend_from_slice(b"<uri>");
            inner.extend_from_slice(weft_xml::escape_text(uri).as_bytes());
            inner.extend_from_slice(b"</uri>");
            response(&attrs, &inner)
        }
        None => response(&attrs, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Element {
        weft_xml::parse_message(text, Default::default()).unwrap()
    }

    #[test]
    fn request_attributes_and_children_in_jabber_client() {
        let body = parse(
            "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' \
             rid='42' sid='s1' xmpp:restart='true'><message to='a@b'><body>hi</body></message>\
             <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>",
        );
        let r = parse_request(&body).unwrap();
        assert_eq!(
            (r.rid, r.sid.as_deref(), r.restart, r.terminate),
            (42, Some("s1"), true, false)
        );
        assert!(r.children[0].is("message", ns::CLIENT));
        assert!(r.children[0].get_child("body", ns::CLIENT).is_some());
        assert!(r.children[1].is("auth", ns::SASL));
    }

    #[test]
    fn bad_requests() {
        let no_rid = parse("<body xmlns='http://jabber.org/protocol/httpbind'/>");
        assert!(parse_request(&no_rid).is_err());
        let wrong_ns = parse("<body xmlns='jabber:client' rid='1'/>");
        assert!(parse_request(&wrong_ns).is_err());
        let huge =
            parse("<body xmlns='http://jabber.org/protocol/httpbind' rid='9007199254740993'/>");
        assert!(parse_request(&huge).is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(negotiated_version(Some("1.6")), "1.6");
        assert_eq!(negotiated_version(Some("1.11")), "1.11");
        assert_eq!(negotiated_version(Some("2.0")), "1.11");
        assert_eq!(negotiated_version(None), "1.11");
    }

    #[test]
    fn terminate_bodies_parse() {
        let t = terminate(
            Some(Condition::SeeOtherUri),
            Some("https://b/http-bind?a=1&b=2"),
            b"",
        );
        let el = parse(&t);
        assert_eq!(el.attr("condition"), Some("see-other-uri"));
        assert_eq!(
            el.get_child("uri", NS_HTTPBIND).unwrap().text(),
            "https://b/http-bind?a=1&b=2"
        );
        let plain = parse(&response("", b""));
        assert!(plain.is("body", NS_HTTPBIND));
    }
}
