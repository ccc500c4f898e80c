//! RFC 6120 §4 / §11: tests of the incremental TCP stream parser (events, splits, limits, restricted XML).

use weft_xml::{ElementExt, Limits, StreamEvent, StreamHeader, StreamParser, XmlError};

const STREAMS: &str = "http://etherx.jabber.org/streams";
const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// Feed `data` in pieces of `step` bytes, collecting all events; stops at the first error.
fn run(limits: Limits, data: &[u8], step: usize) -> (Vec<StreamEvent>, Result<(), XmlError>) {
    let mut p = StreamParser::new(limits);
    let mut events = Vec::new();
    for piece in data.chunks(step) {
        let r = p.feed(piece);
        while let Some(ev) = p.next_event() {
            events.push(ev);
        }
        if r.is_err() {
            return (events, r);
        }
    }
    (events, Ok(()))
}

fn events(data: &str) -> Vec<StreamEvent> {
    let (events, r) = run(Limits::default(), data.as_bytes(), data.len().max(1));
    r.expect("stream should parse");
    events
}

/// The error for `data`, which must be the same whether fed whole, 1 byte or 7 bytes at a time.
fn error(data: &[u8]) -> XmlError {
    error_with(Limits::default(), data)
}

fn error_with(limits: Limits, data: &[u8]) -> XmlError {
    let whole = run(limits, data, data.len().max(1))
        .1
        .expect_err("must fail");
    for step in [1, 7] {
        let split = run(limits, data, step).1.expect_err("must fail when split");
        assert_eq!(whole, split, "different error with {step}-byte pieces");
    }
    whole
}

fn header(ev: &StreamEvent) -> &StreamHeader {
    match ev {
        StreamEvent::Header(h) => h,
        other => panic!("expected a header, got {other:?}"),
    }
}

fn element(ev: &StreamEvent) -> &weft_xml::Element {
    match ev {
        StreamEvent::Element(e) => e,
        other => panic!("expected an element, got {other:?}"),
    }
}

#[test]
fn header_without_declaration() {
    let evs = events(HEADER);
    assert_eq!(evs.len(), 1);
    let h = header(&evs[0]);
    assert_eq!(h.name, "stream");
    assert_eq!(h.ns, STREAMS);
    assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
    assert_eq!(h.attr("to"), Some("example.com"));
    assert_eq!(h.attr("version"), Some("1.0"));
    assert_eq!(h.attr("xml:lang"), Some("en"));
    assert_eq!(h.attr("from"), None);
    assert_eq!(h.attrs.len(), 3);
}

#[test]
fn header_with_declaration_and_double_quotes() {
    let evs = events(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream xmlns=\"jabber:server\" \
         xmlns:stream=\"http://etherx.jabber.org/streams\" from=\"a.example\" version=\"1.0\">",
    );
    let h = header(&evs[0]);
    assert_eq!((h.name.as_str(), h.ns.as_str()), ("stream", STREAMS));
    assert_eq!(h.default_ns.as_deref(), Some("jabber:server"));
    assert_eq!(h.attr("from"), Some("a.example"));
}

#[test]
fn header_with_other_prefix_and_without_namespace() {
    let evs = events(
        "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' to='x'>\
         <s:features/>",
    );
    let h = header(&evs[0]);
    assert_eq!((h.name.as_str(), h.ns.as_str()), ("stream", STREAMS));
    assert!(element(&evs[1]).is("features", STREAMS));

    // Not in any namespace: still a header; the server decides <invalid-namespace/>.
    let evs = events("<stream to='x'>");
    let h = header(&evs[0]);
    assert_eq!((h.name.as_str(), h.ns.as_str()), ("stream", ""));
    assert_eq!(h.default_ns, None);
}

#[test]
fn leading_whitespace_before_header_is_skipped() {
    let evs = events("\r\n  \n<stream xmlns='jabber:client'>");
    assert_eq!(header(&evs[0]).default_ns.as_deref(), Some("jabber:client"));
}

const SESSION: &str = concat!(
    "<?xml version='1.0'?>",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ",
    "to='example.com' version='1.0' xml:lang='en'>",
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
    "</stream:features>\n ",
    "<message to='juliet@example.com' type='chat' id='m1' xml:lang='de'>",
    "<body>Wherefore art thou, Romeo? é ü 漢字 😀 &amp; &lt;3 &#x263A; <![CDATA[<raw> & stuff]]></body>",
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    " \t\r\n ",
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    " ",
    "</stream:stream>\n"
);

#[test]
fn session_events() {
    let evs = events(SESSION);
    assert_eq!(evs.len(), 6, "{evs:?}");
    header(&evs[0]);

    let features = element(&evs[1]);
    assert!(features.is("features", STREAMS));
    let starttls = features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .unwrap();
    assert!(starttls.has_child("required", "urn:ietf:params:xml:ns:xmpp-tls"));

    let msg = element(&evs[2]);
    assert!(msg.is("message", "jabber:client"));
    assert_eq!(msg.attr("to"), Some("juliet@example.com"));
    assert_eq!(msg.xml_lang(), Some("de"));
    // minidom quirk: the unqualified lookup does not see xml:lang.
    assert_eq!(msg.attr("xml:lang"), None);
    let body = msg.get_child("body", "jabber:client").unwrap();
    assert_eq!(
        body.text(),
        "Wherefore art thou, Romeo? é ü 漢字 😀 & <3 ☺ <raw> & stuff"
    );
    assert!(msg.has_child("active", "http://jabber.org/protocol/chatstates"));

    let iq = element(&evs[3]);
    assert!(iq.is("iq", "jabber:client"));
    assert!(iq.has_child("query", "jabber:iq:roster"));

    assert!(element(&evs[4]).is("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    assert_eq!(evs[5], StreamEvent::Close);
}

#[test]
fn any_split_gives_the_same_events() {
    let whole = events(SESSION);
    for step in [1, 2, 3, 5, 13, 64] {
        let (split, r) = run(Limits::default(), SESSION.as_bytes(), step);
        r.unwrap_or_else(|e| panic!("{step}-byte pieces failed: {e}"));
        assert_eq!(whole, split, "different events with {step}-byte pieces");
    }
}

#[test]
fn whitespace_keepalives_are_ignored_and_not_counted() {
    let stanza = "<presence/>";
    let limits = Limits {
        max_stanza_bytes: stanza.len(),
        max_depth: 4,
    };
    let mut data = String::from(HEADER);
    for _ in 0..3 {
        data.push_str(&" \n".repeat(2000));
        data.push_str(stanza);
    }
    data.push_str(&"\t ".repeat(5000));
    for step in [1, 100, data.len()] {
        let (evs, r) = run(limits, data.as_bytes(), step);
        r.unwrap();
        assert_eq!(evs.len(), 4, "only the header and 3 stanzas");
        for ev in &evs[1..] {
            assert!(element(ev).is("presence", "jabber:client"));
        }
    }
}

#[test]
fn close_event_and_trailing_whitespace() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes()).unwrap();
    assert!(p.header_received());
    assert!(matches!(p.next_event(), Some(StreamEvent::Header(_))));
    p.feed(b"</stream:stream>").unwrap();
    assert_eq!(p.next_event(), Some(StreamEvent::Close));
    assert!(p.is_closed());
    p.feed(b" \n").unwrap();
    assert_eq!(p.next_event(), None);
    // Nothing but whitespace may follow the end of the stream.
    assert!(matches!(
        p.feed(b"<message/>"),
        Err(XmlError::NotWellFormed(_))
    ));
}

#[test]
fn self_closed_header_is_header_then_close() {
    let evs = events("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='1.0'/>");
    assert_eq!(header(&evs[0]).name, "open");
    assert_eq!(evs[1], StreamEvent::Close);
}

#[test]
fn reset_restarts_the_stream() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes()).unwrap();
    p.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message><bo")
        .unwrap();
    assert!(matches!(p.next_event(), Some(StreamEvent::Header(_))));
    // The starttls element is queued but not taken; reset drops it and the partial message.
    p.reset();
    assert_eq!(p.next_event(), None);
    assert!(!p.header_received());
    p.feed(b"<?xml version='1.0'?>").unwrap();
    p.feed(HEADER.as_bytes()).unwrap();
    p.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        .unwrap();
    assert!(matches!(p.next_event(), Some(StreamEvent::Header(_))));
    let auth = match p.next_event() {
        Some(StreamEvent::Element(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
    assert_eq!(auth.text(), "AGEAYg==");

    // Reset also clears a failure.
    p.feed(b"<a></b>").unwrap_err();
    p.reset();
    p.feed(HEADER.as_bytes()).unwrap();
    assert!(matches!(p.next_event(), Some(StreamEvent::Header(_))));
}

fn in_stream(body: &str) -> Vec<u8> {
    format!("{HEADER}{body}").into_bytes()
}

fn assert_restricted(data: &[u8]) {
    match error(data) {
        XmlError::Restricted(_) => {}
        other => panic!(
            "{:?}: expected Restricted, got {other:?}",
            String::from_utf8_lossy(data)
        ),
    }
}

#[test]
fn restricted_doctype_and_entity_declarations() {
    assert_restricted(format!("<!DOCTYPE stream>{HEADER}").as_bytes());
    assert_restricted(b"<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream>");
    assert_restricted(&in_stream("<!DOCTYPE x>"));
    assert_restricted(&in_stream("<!ENTITY lol 'lol'>"));
    assert_restricted(&in_stream("<message><!ELEMENT x ANY></message>"));
}

#[test]
fn restricted_comments() {
    assert_restricted(format!("<!-- hi -->{HEADER}").as_bytes());
    assert_restricted(&in_stream("<!-- keepalive -->"));
    assert_restricted(&in_stream("<message><body>a<!-- b --></body></message>"));
}

#[test]
fn restricted_processing_instructions() {
    assert_restricted(&in_stream("<?foo bar?>"));
    assert_restricted(&in_stream("<message><?php echo 1; ?></message>"));
    // A second XML declaration is not "at the very start".
    assert_restricted(&in_stream("<?xml version='1.0'?>"));
    assert_restricted(&in_stream("<?xml-stylesheet href='a'?>"));
    assert_restricted(b"<?foo?><stream>");
}

#[test]
fn restricted_undeclared_entities() {
    assert_restricted(&in_stream("<message><body>&nbsp;</body></message>"));
    assert_restricted(&in_stream("<message to='&xxe;'/>"));
    assert_restricted(&in_stream("&lol;"));
}

#[test]
fn markup_lookalikes_in_cdata_and_attributes_are_fine() {
    let evs = events(&format!(
        "{HEADER}<message id='&lt;!DOCTYPE &lt;?pi' a=\"&lt;!--\"><body><![CDATA[<!DOCTYPE x> <!-- c --> <?pi?>]]></body></message>"
    ));
    let msg = element(&evs[1]);
    assert_eq!(msg.attr("id"), Some("<!DOCTYPE <?pi"));
    assert_eq!(msg.attr("a"), Some("<!--"));
    assert_eq!(
        msg.get_child("body", "jabber:client").unwrap().text(),
        "<!DOCTYPE x> <!-- c --> <?pi?>"
    );
}

fn assert_not_well_formed(data: &[u8]) {
    match error(data) {
        XmlError::NotWellFormed(_) => {}
        other => panic!(
            "{:?}: expected NotWellFormed, got {other:?}",
            String::from_utf8_lossy(data)
        ),
    }
}

#[test]
fn not_well_formed_inputs() {
    // Mismatched tags.
    assert_not_well_formed(&in_stream("<message><body></message>"));
    assert_not_well_formed(&in_stream("</stream>"));
    // Unbound prefixes, on an element, an attribute and the header.
    assert_not_well_formed(&in_stream("<foo:bar/>"));
    assert_not_well_formed(&in_stream("<message foo:bar='x'/>"));
    assert_not_well_formed(b"<stream:stream xmlns='jabber:client' to='x'>");
    // Junk text between stanzas.
    assert_not_well_formed(&in_stream("hello"));
    assert_not_well_formed(&in_stream("<presence/>x<presence/>"));
    // Bad attribute quoting and syntax.
    assert_not_well_formed(&in_stream("<message to=juliet/>"));
    assert_not_well_formed(&in_stream("<message to='juliet\"/><presence/>"));
    assert_not_well_formed(&in_stream("<message to=\"juliet'/><presence/>"));
    assert_not_well_formed(&in_stream("<message to='a'b='c'/>"));
    assert_not_well_formed(&in_stream("<message to='a<b'/>"));
    // Duplicate attributes, also after prefix resolution.
    assert_not_well_formed(&in_stream("<message id='1' id='2'/>"));
    assert_not_well_formed(&in_stream("<m xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/>"));
    // Other syntax errors.
    assert_not_well_formed(&in_stream("<message>]]></message>"));
    assert_not_well_formed(&in_stream("<1message/>"));
    assert_not_well_formed(&in_stream("<message><body>&#0;</body></message>"));
    assert_not_well_formed(b"hello");
}

#[test]
fn errors_are_sticky() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes()).unwrap();
    let e = p.feed(b"<a></b>").unwrap_err();
    assert_eq!(p.feed(b"<presence/>").unwrap_err(), e);
    assert_eq!(p.feed(b"").unwrap_err(), e);
}

#[test]
fn stanza_too_large_without_unbounded_buffering() {
    let limits = Limits {
        max_stanza_bytes: 1024,
        max_depth: 8,
    };
    // Body text, huge attribute count and a huge name: each must fail soon after 1 KiB.
    let floods: [(&str, &[u8]); 3] = [
        ("<message><body>", b"aaaaaaaaaaaaaaaa"),
        ("<message", b" a='1' b='2' c=''"),
        ("<message><", b"xxxxxxxxxxxxxxxx"),
    ];
    for (start, unit) in floods {
        let mut p = StreamParser::new(limits);
        p.feed(HEADER.as_bytes()).unwrap();
        p.feed(start.as_bytes()).unwrap();
        let piece = unit.repeat(256); // 4 KiB
        let mut fed = start.len();
        let err = loop {
            match p.feed(&piece) {
                Ok(()) => fed += piece.len(),
                Err(e) => break e,
            }
            assert!(fed < 10 * 1024 * 1024, "{start}: never failed");
        };
        assert!(
            matches!(err, XmlError::StanzaTooLarge { .. }),
            "{start}: {err:?}"
        );
        // Failed within a couple of feed chunks after the limit, not after 10 MiB.
        assert!(
            fed <= 1024 + 16 * 1024,
            "{start}: failed only after {fed} bytes"
        );
    }

    // The same with one 10 MiB feed.
    let mut p = StreamParser::new(limits);
    p.feed(HEADER.as_bytes()).unwrap();
    let mut big = b"<message><body>".to_vec();
    big.resize(10 * 1024 * 1024, b'a');
    assert_eq!(p.feed(&big), Err(XmlError::StanzaTooLarge { limit: 1024 }));
}

#[test]
fn stanza_size_limit_is_exact() {
    let stanza = "<message to='a@b'><body>hello</body></message>";
    let exact = Limits {
        max_stanza_bytes: stanza.len(),
        max_depth: 8,
    };
    let one_less = Limits {
        max_stanza_bytes: stanza.len() - 1,
        ..exact
    };
    let data = in_stream(&format!(" {stanza} {stanza}"));
    for step in [1, 3, data.len()] {
        let (evs, r) = run(exact, &data, step);
        r.unwrap();
        assert_eq!(evs.len(), 3);
    }
    assert_eq!(
        error_with(one_less, &data),
        XmlError::StanzaTooLarge {
            limit: stanza.len() - 1
        }
    );
}

#[test]
fn header_size_is_bounded() {
    let mut data = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'".to_vec();
    for i in 0..2000 {
        data.extend_from_slice(format!(" a{i}='value'").as_bytes());
    }
    assert!(matches!(
        run(Limits::default(), &data, 4096).1,
        Err(XmlError::StanzaTooLarge { .. })
    ));
}

#[test]
fn over_long_attribute_value_is_too_large() {
    let data = in_stream(&format!("<message id='{}'/>", "x".repeat(20 * 1024)));
    assert_eq!(
        error(&data),
        XmlError::StanzaTooLarge {
            limit: weft_xml::MAX_TOKEN_BYTES
        }
    );
    // Long text is fine: it is split, not limited per token.
    let text = "y".repeat(100 * 1024);
    let evs = events(&format!("{HEADER}<message><body>{text}</body></message>"));
    let body = element(&evs[1])
        .get_child("body", "jabber:client")
        .unwrap()
        .text();
    assert_eq!(body, text);
}

#[test]
fn too_deep() {
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 3,
    };
    let ok = in_stream("<a><b><c/></b></a>");
    let (evs, r) = run(limits, &ok, 1);
    r.unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(
        error_with(limits, &in_stream("<a><b><c><d/></c></b></a>")),
        XmlError::TooDeep { limit: 3 }
    );
}

#[test]
fn invalid_utf8() {
    assert_eq!(
        error(&in_stream_bytes(b"<message><body>\xff</body></message>")),
        XmlError::InvalidUtf8
    );
    // A truncated sequence completed by a non-continuation byte in a later feed.
    assert_eq!(
        error(&in_stream_bytes(b"<message><body>a\xc3(</body></message>")),
        XmlError::InvalidUtf8
    );
    assert_eq!(
        error(&in_stream_bytes(b"<message to='\xed\xa0\x80'/>")),
        XmlError::InvalidUtf8
    );
    assert_eq!(
        error(b"<?xml version='1.0' encoding='ISO-8859-1'?><stream>"),
        XmlError::InvalidUtf8
    );
}

fn in_stream_bytes(body: &[u8]) -> Vec<u8> {
    let mut v = HEADER.as_bytes().to_vec();
    v.extend_from_slice(body);
    v
}
