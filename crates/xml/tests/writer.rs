//! RFC 6120 §4.8 / RFC 7395 §3.3.3: serialisation round trips and namespace moves.

use minidom::rxml::{Namespace, NcName};
use weft_xml::{
    parse_message, with_namespace, write_element, write_element_in, Element, ElementBuilderExt,
    ElementExt, Limits, StreamEvent, StreamParser,
};

fn write(el: &Element) -> String {
    let mut out = Vec::new();
    write_element(el, &mut out);
    String::from_utf8(out).expect("UTF-8 output")
}

fn round_trip(el: &Element) -> String {
    let text = write(el);
    let back = parse_message(&text, Limits::default())
        .unwrap_or_else(|e| panic!("{text:?} does not parse back: {e}"));
    assert_eq!(&back, el, "round trip changed {text:?}");
    text
}

fn name(s: &str) -> NcName {
    NcName::try_from(s).unwrap()
}

#[test]
fn message_with_body() {
    let el = Element::builder("message", "jabber:client")
        .attr(name("to"), "juliet@example.com")
        .attr(name("type"), "chat")
        .append(
            Element::builder("body", "jabber:client")
                .append("Wherefore art thou?")
                .build(),
        )
        .build();
    assert_eq!(
        round_trip(&el),
        "<message xmlns='jabber:client' to='juliet@example.com' type='chat'>\
         <body>Wherefore art thou?</body></message>"
    );
}

#[test]
fn iq_with_child_in_another_namespace() {
    let el = Element::builder("iq", "jabber:client")
        .attr(name("type"), "get")
        .attr(name("id"), "r1")
        .append(
            Element::builder("query", "jabber:iq:roster")
                .append(Element::builder("item", "jabber:iq:roster").build())
                .build(),
        )
        .build();
    assert_eq!(
        round_trip(&el),
        "<iq xmlns='jabber:client' id='r1' type='get'><query xmlns='jabber:iq:roster'>\
         <item/></query></iq>"
    );
}

#[test]
fn special_characters_in_attributes_and_text() {
    let el = Element::builder("message", "jabber:client")
        .attr(name("id"), "it's \"quoted\" & <tagged> \t\n\r end")
        .append("text with <, >, &, ', \", \r\n and ]]> too")
        .build();
    let text = round_trip(&el);
    assert!(!text.contains("]]>"), "{text}");
}

#[test]
fn xml_lang_and_namespaced_attributes() {
    let mut el = Element::builder("message", "jabber:client")
        .attr_ns(Namespace::from("urn:example:a"), name("x"), "1")
        .attr_ns(Namespace::from("urn:example:a"), name("y"), "2")
        .attr_ns(Namespace::from("urn:example:b"), name("x"), "3")
        .build();
    el.set_xml_lang("en");
    assert_eq!(el.xml_lang(), Some("en"));
    let text = round_trip(&el);
    assert!(text.contains(" xml:lang='en'"), "{text}");
    assert!(!text.contains("xmlns:xml"), "{text}");
}

#[test]
fn unnamespaced_child_undeclares_the_default() {
    let el = Element::builder("a", "urn:example")
        .append(Element::builder("b", "").build())
        .build();
    assert_eq!(round_trip(&el), "<a xmlns='urn:example'><b xmlns=''/></a>");
    let bare = Element::builder("a", "").build();
    assert_eq!(write(&bare), "<a/>");
}

#[test]
fn write_in_a_stream_context_omits_the_default() {
    let el = Element::builder("presence", "jabber:client")
        .append(
            Element::builder("show", "jabber:client")
                .append("away")
                .build(),
        )
        .build();
    let mut out = Vec::new();
    write_element_in(&el, "jabber:client", &mut out);
    assert_eq!(out, b"<presence><show>away</show></presence>");
    out.clear();
    write_element_in(&el, "jabber:server", &mut out);
    assert_eq!(
        out,
        b"<presence xmlns='jabber:client'><show>away</show></presence>"
    );
}

#[test]
fn stanzas_from_a_stream_round_trip() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
          <message type='chat' xml:lang='fr' xmlns:x='urn:x' x:attr='v'>\
          <body>Bonjour &amp; &lt;salut&gt;</body><x:thing/></message>\
          <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
          <mechanism>PLAIN</mechanism></mechanisms></stream:features>",
    )
    .unwrap();
    assert!(matches!(p.next_event(), Some(StreamEvent::Header(_))));
    for expected in ["message", "features"] {
        let Some(StreamEvent::Element(el)) = p.next_event() else {
            panic!("expected {expected}");
        };
        assert_eq!(el.name(), expected);
        round_trip(&el);
    }
}

#[test]
fn with_namespace_moves_only_the_given_namespace() {
    let original = parse_message(
        "<message xmlns='jabber:client' to='a@b' xml:lang='en'>\
         <body>hi</body>\
         <forwarded xmlns='urn:xmpp:forward:0'>\
           <message xmlns='jabber:client' from='c@d'><body>inner</body></message>\
         </forwarded>\
         <active xmlns='http://jabber.org/protocol/chatstates'/>\
         </message>",
        Limits::default(),
    )
    .unwrap();
    let moved = with_namespace(&original, "jabber:client", "jabber:server");
    assert!(moved.is("message", "jabber:server"));
    assert_eq!(moved.attr("to"), Some("a@b"));
    assert_eq!(moved.xml_lang(), Some("en"));
    assert_eq!(
        moved.get_child("body", "jabber:server").unwrap().text(),
        "hi"
    );
    let fwd = moved.get_child("forwarded", "urn:xmpp:forward:0").unwrap();
    let inner = fwd.get_child("message", "jabber:server").unwrap();
    assert_eq!(inner.attr("from"), Some("c@d"));
    assert_eq!(
        inner.get_child("body", "jabber:server").unwrap().text(),
        "inner"
    );
    assert!(moved.has_child("active", "http://jabber.org/protocol/chatstates"));
    // The original is untouched, and moving back restores it.
    assert!(original.is("message", "jabber:client"));
    assert_eq!(
        with_namespace(&moved, "jabber:server", "jabber:client"),
        original
    );
    // Nothing to move: an equal copy.
    assert_eq!(with_namespace(&original, "urn:none", "urn:other"), original);
    assert_eq!(
        write(&moved),
        "<message xmlns='jabber:server' to='a@b' xml:lang='en'><body>hi</body>\
         <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server' from='c@d'>\
         <body>inner</body></message></forwarded>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    );
}

#[test]
fn qualified_attribute_helpers() {
    let mut el = Element::builder("text", "urn:ietf:params:xml:ns:xmpp-streams")
        .attr_q("xml:lang", "en")
        .attr_q("id", "x1")
        .attr_q("to", None::<String>)
        .build();
    assert_eq!(el.xml_lang(), Some("en"));
    assert_eq!(el.attr_q("xml:lang"), Some("en"));
    assert_eq!(el.attr_q("id"), Some("x1"));
    assert_eq!(el.attr_q("to"), None);
    assert_eq!(el.attr_q("foo:lang"), None);
    assert_eq!(
        write(&el),
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' id='x1' xml:lang='en'/>"
    );
    el.set_attr_q("xml:lang", "de");
    assert_eq!(el.xml_lang(), Some("de"));
    el.set_attr_q("xml:lang", None::<&str>);
    el.set_attr_q("id", None::<&str>);
    assert_eq!(el.attrs().len(), 0);
}

#[test]
#[should_panic(expected = "only the xml: prefix")]
fn qualified_attribute_helpers_reject_other_prefixes() {
    let _ = Element::builder("a", "b").attr_q("foo:bar", "x");
}
