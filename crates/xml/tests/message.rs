//! RFC 7395 §3.3.3: tests of one-element-per-message parsing (framing rules, limits, restricted XML).

use weft_xml::{parse_message, parse_message_bytes, ElementExt, Limits, XmlError};

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

fn parse(text: &str) -> Result<weft_xml::Element, XmlError> {
    parse_message(text, Limits::default())
}

#[test]
fn open_header() {
    let el =
        parse("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
            .unwrap();
    assert!(el.is("open", FRAMING));
    assert_eq!(el.attr("to"), Some("localhost"));
    assert_eq!(el.attr("version"), Some("1.0"));
    assert_eq!(el.nodes().count(), 0);

    let close = parse("<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" />").unwrap();
    assert!(close.is("close", FRAMING));
}

#[test]
fn message_stanza() {
    let el = parse(
        "<message xmlns=\"jabber:client\" xml:lang=\"en\" to='juliet@example.com'>\n  \
         <body>Every WebSocket message is parsable by itself.</body>\n</message>",
    )
    .unwrap();
    assert!(el.is("message", "jabber:client"));
    assert_eq!(el.xml_lang(), Some("en"));
    assert_eq!(el.attr("to"), Some("juliet@example.com"));
    let body = el.get_child("body", "jabber:client").unwrap();
    assert_eq!(
        body.text(),
        "Every WebSocket message is parsable by itself."
    );
}

#[test]
fn stream_features_and_error_forms() {
    let el = parse(
        "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>",
    )
    .unwrap();
    assert!(el.is("features", "http://etherx.jabber.org/streams"));
    assert!(el.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));

    let el = parse(
        "<error xmlns=\"http://etherx.jabber.org/streams\">\
         <host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>",
    )
    .unwrap();
    assert!(el.has_child("host-unknown", "urn:ietf:params:xml:ns:xmpp-streams"));

    // RFC 7395 §3.3.1: the stream prefix must be declared in the message itself.
    assert!(matches!(
        parse("<stream:features/>"),
        Err(XmlError::NotWellFormed(_))
    ));
}

#[test]
fn declaration_and_trailing_whitespace_are_tolerated() {
    let el = parse("<?xml version='1.0'?>\n<presence xmlns='jabber:client'/>\r\n \t").unwrap();
    assert!(el.is("presence", "jabber:client"));
}

fn assert_not_well_formed(text: &str) {
    match parse(text) {
        Err(XmlError::NotWellFormed(_)) => {}
        other => panic!("{text:?}: expected NotWellFormed, got {other:?}"),
    }
}

#[test]
fn framing_violations_are_not_well_formed() {
    assert_not_well_formed("");
    assert_not_well_formed(" ");
    assert_not_well_formed("\r\n\t ");
    assert_not_well_formed("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>");
    assert_not_well_formed("<presence xmlns='jabber:client'/>trailing");
    assert_not_well_formed("text");
    assert_not_well_formed("<message xmlns='jabber:client'><body>unclosed</body>");
    assert_not_well_formed("<message xmlns='jabber:client'>");
    // RFC 7395 §3.3.3: the first character must be '<'.
    assert_not_well_formed(" <presence xmlns='jabber:client'/>");
    assert_not_well_formed("<presence xmlns='jabber:client'></message>");
    assert_not_well_formed("<presence xmlns='jabber:client' to=x/>");
    assert_not_well_formed("<x:presence xmlns='jabber:client'/>");
}

fn assert_restricted(text: &str) {
    match parse(text) {
        Err(XmlError::Restricted(_)) => {}
        other => panic!("{text:?}: expected Restricted, got {other:?}"),
    }
}

#[test]
fn restricted_constructs() {
    assert_restricted("<message xmlns='jabber:client'><?foo bar?></message>");
    assert_restricted("<?foo bar?><message xmlns='jabber:client'/>");
    assert_restricted("<message xmlns='jabber:client'/><?foo?>");
    assert_restricted("<message xmlns='jabber:client'><!-- hi --></message>");
    assert_restricted("<!DOCTYPE message><message xmlns='jabber:client'/>");
    assert_restricted(
        "<?xml version='1.0'?><!DOCTYPE m [<!ENTITY x 'y'>]><message xmlns='jabber:client'/>",
    );
    assert_restricted("<message xmlns='jabber:client'><body>&x;</body></message>");
    assert_restricted("<message xmlns='jabber:client' id='&x;'/>");
}

#[test]
fn size_limit() {
    let text = "<message xmlns='jabber:client'><body>hi</body></message>";
    let exact = Limits {
        max_stanza_bytes: text.len(),
        max_depth: 4,
    };
    assert!(parse_message(text, exact).is_ok());
    let smaller = Limits {
        max_stanza_bytes: text.len() - 1,
        ..exact
    };
    assert_eq!(
        parse_message(text, smaller),
        Err(XmlError::StanzaTooLarge {
            limit: text.len() - 1
        })
    );
    // Checked before parsing: even garbage is reported as too large.
    let big = "x".repeat(300 * 1024);
    assert_eq!(
        parse(&big),
        Err(XmlError::StanzaTooLarge { limit: 256 * 1024 })
    );
}

#[test]
fn depth_limit() {
    let limits = Limits {
        max_stanza_bytes: 1024,
        max_depth: 2,
    };
    assert!(parse_message("<a xmlns='x'><b/></a>", limits).is_ok());
    assert_eq!(
        parse_message("<a xmlns='x'><b><c/></b></a>", limits),
        Err(XmlError::TooDeep { limit: 2 })
    );
}

#[test]
fn invalid_utf8() {
    assert_eq!(
        parse_message_bytes(
            b"<message xmlns='jabber:client'><body>\xc3\x28</body></message>",
            Limits::default()
        ),
        Err(XmlError::InvalidUtf8)
    );
    assert_eq!(
        parse_message_bytes(
            b"<message xmlns='jabber:client' id='\xff'/>",
            Limits::default()
        ),
        Err(XmlError::InvalidUtf8)
    );
    let ok = parse_message_bytes(
        "<message xmlns='jabber:client'><body>ünïcödé</body></message>".as_bytes(),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        ok.get_child("body", "jabber:client").unwrap().text(),
        "ünïcödé"
    );
}

#[test]
fn error_messages_cite_the_rfc() {
    let e = parse("<a></b>").unwrap_err();
    assert_eq!(e.stream_condition(), "not-well-formed");
    assert!(e.to_string().contains("RFC 6120 §4.9.3.13"), "{e}");
    let e = parse("<a xmlns='x'><!-- --></a>").unwrap_err();
    assert_eq!(e.stream_condition(), "restricted-xml");
    assert!(e.to_string().contains("§11.1"), "{e}");
}
