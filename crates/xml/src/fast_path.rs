//! A fast path for the common shape of an RFC 7395 message: ASCII names, plain attribute
//! values and text with only the predefined entities, no declaration, comment, CDATA or
//! character reference. It produces the same `rxml` raw events the full parser would and feeds
//! them to the same [`TreeBuilder`], so namespaces, limits and the resulting tree are shared.
//!
//! Written by hand on purpose: it is not a second XML parser but a validating scan of a
//! subset. Whenever the input leaves that subset, or anything looks wrong, it answers `None`
//! and the message goes to `rxml`, which stays the parser of record (and reports the errors).
//! A general-purpose crate (quick-xml) would still need every check below to never accept
//! what `rxml` refuses. Lexing with `rxml` was about a quarter of the server's CPU per routed
//! message; this scan is several times cheaper.

use minidom::Element;
use rxml::parser::EventMetrics;
use std::cell::RefCell;

use rxml::{xml_ncname, NcName, RawEvent, RawQName};

use crate::builder::{Built, Mode, TreeBuilder};
use crate::{Limits, MAX_TOKEN_BYTES};

const NO_METRICS: EventMetrics = EventMetrics::new(0);

/// `Some(element)` when `text` is a well-formed message inside the subset; `None` means
/// "ask rxml" (outside the subset, or an error rxml should describe).
pub(crate) fn parse(text: &str, limits: Limits) -> Option<Element> {
    with_events(|events| {
        TREE.with(|tree| match tree.try_borrow_mut() {
            Ok(mut tree) => {
                tree.reset(Mode::Message, limits);
                parse_with(text, limits, events, &mut tree)
            }
            // Not reentrant in practice; a fresh builder if it ever is.
            Err(_) => parse_with(
                text,
                limits,
                events,
                &mut TreeBuilder::new(Mode::Message, limits),
            ),
        })
    })
}

/// Events kept allocated between uses; beyond this a large message's list is released, so one
/// big stanza does not keep megabytes per thread.
const KEPT_EVENTS: usize = 256;

thread_local! {
    /// The event list and message tree builder last used on this thread, kept for their
    /// allocations: five vectors less to allocate and free per message (or per TCP read).
    static EVENTS: RefCell<Vec<RawEvent>> = const { RefCell::new(Vec::new()) };
    static TREE: RefCell<TreeBuilder> =
        RefCell::new(TreeBuilder::new(Mode::Message, Limits::default()));
}

/// Runs `f` with this thread's event list, empty.
pub(crate) fn with_events<R>(f: impl FnOnce(&mut Vec<RawEvent>) -> R) -> R {
    EVENTS.with(|events| match events.try_borrow_mut() {
        Ok(mut events) => {
            events.clear();
            let result = f(&mut events);
            events.clear();
            events.shrink_to(KEPT_EVENTS);
            result
        }
        // Not reentrant in practice; a fresh list if it ever is.
        Err(_) => f(&mut Vec::new()),
    })
}

fn parse_with(
    text: &str,
    limits: Limits,
    events: &mut Vec<RawEvent>,
    tree: &mut TreeBuilder,
) -> Option<Element> {
    let len = scan_element(text, MAX_TOKEN_BYTES, limits.max_depth, events)?;
    // After the element: only whitespace (no CR: rxml normalises it).
    if !text.as_bytes()[len..]
        .iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n'))
    {
        return None;
    }
    let mut root = None;
    for ev in events.drain(..) {
        if let Some(Built::Element(el)) = tree.process(ev).ok()? {
            root = Some(el);
        }
    }
    root
}

/// Scans the one complete element that starts at the beginning of `text`, pushing the raw
/// events rxml would produce for it, and returns its length in bytes. `None` when the element
/// is incomplete, leaves the subset, nests deeper than `max_depth` or is not well-formed (names
/// longer than `token_limit` included); nothing is known about it then and rxml must read it.
pub(crate) fn scan_element(
    text: &str,
    token_limit: usize,
    max_depth: usize,
    events: &mut Vec<RawEvent>,
) -> Option<usize> {
    let mut scan = Scan {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        token_limit,
    };
    // Names of the open elements, for matching end tags.
    let mut open: Vec<&str> = Vec::new();
    if scan.peek() != Some(b'<') {
        return None;
    }
    loop {
        match scan.peek()? {
            b'<' => {
                scan.pos += 1;
                match scan.peek()? {
                    b'/' => {
                        scan.pos += 1;
                        let name = scan.name()?;
                        scan.skip_space();
                        scan.expect(b'>')?;
                        if open.pop()? != name {
                            return None;
                        }
                        events.push(RawEvent::ElementFoot(NO_METRICS));
                    }
                    b'!' | b'?' => return None,
                    _ => {
                        let name = scan.name()?;
                        events.push(RawEvent::ElementHeadOpen(NO_METRICS, qname(name)?));
                        let empty = scan.attributes(events)?;
                        events.push(RawEvent::ElementHeadClose(NO_METRICS));
                        if empty {
                            events.push(RawEvent::ElementFoot(NO_METRICS));
                        } else {
                            open.push(name);
                            // Deeper than the limit is an error rxml reports while reading;
                            // stop here instead of queueing events for all of it.
                            if open.len() > max_depth {
                                return None;
                            }
                        }
                    }
                }
                if open.is_empty() {
                    return Some(scan.pos);
                }
            }
            _ => {
                let text = scan.text()?;
                if !text.is_empty() {
                    events.push(RawEvent::Text(NO_METRICS, text));
                }
            }
        }
    }
}

struct Scan<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    token_limit: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// An ASCII QName: `NCName (':' NCName)?`.
    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let mut colon = false;
        let mut part_start = true;
        while let Some(c) = self.peek() {
            let ok = match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'_' => true,
                b'0'..=b'9' | b'.' | b'-' => !part_start,
                b':' if !colon && !part_start => {
                    colon = true;
                    part_start = true;
                    self.pos += 1;
                    continue;
                }
                _ => false,
            };
            if !ok {
                break;
            }
            part_start = false;
            self.pos += 1;
        }
        let len = self.pos - start;
        (len > 0 && !part_start && len <= self.token_limit).then(|| &self.s[start..self.pos])
    }

    /// Attributes up to the end of the start tag; `true` for `/>`.
    fn attributes(&mut self, events: &mut Vec<RawEvent>) -> Option<bool> {
        loop {
            let spaced = self.skip_space();
            match self.peek()? {
                b'>' => {
                    self.pos += 1;
                    return Some(false);
                }
                b'/' => {
                    self.pos += 1;
                    self.expect(b'>')?;
                    return Some(true);
                }
                _ if !spaced => return None,
                _ => {}
            }
            let name = self.name()?;
            self.skip_space();
            self.expect(b'=')?;
            self.skip_space();
            let quote = self.peek()?;
            if quote != b'\'' && quote != b'"' {
                return None;
            }
            self.pos += 1;
            let start = self.pos;
            let end = start + self.b[start..].iter().position(|&c| c == quote)?;
            let raw = &self.s[start..end];
            if raw.len() > self.token_limit {
                return None;
            }
            self.pos = end + 1;
            // Whitespace is normalised in attribute values; rxml does that.
            let value = unescape(raw, |c| matches!(c, b'<' | b'\t' | b'\n' | b'\r'))?;
            // rxml checks Namespaces in XML's reserved prefixes and names on declarations
            // (xmlns:xml, xmlns:xmlns, the XML namespace, empty prefixed URIs): left to it.
            let prefixed_decl = name.starts_with("xmlns:");
            if name == "xmlns:xml"
                || name == "xmlns:xmlns"
                || ((prefixed_decl || name == "xmlns") && value == crate::XML_NS)
                || (prefixed_decl && value.is_empty())
            {
                return None;
            }
            events.push(RawEvent::Attribute(NO_METRICS, qname(name)?, value));
        }
    }

    /// Character data up to the next `<` (`None` at the end of the input: incomplete).
    fn text(&mut self) -> Option<String> {
        let start = self.pos;
        let end = start + self.b[start..].iter().position(|&c| c == b'<')?;
        let raw = &self.s[start..end];
        self.pos = end;
        if raw.as_bytes().contains(&b']') && raw.contains("]]>") {
            return None;
        }
        unescape(raw, |c| c == b'\r')
    }
}

/// Splits an ASCII QName into rxml's raw form (validated by rxml's own types).
fn qname(name: &str) -> Option<RawQName> {
    Some(match name.split_once(':') {
        Some((prefix, local)) => (Some(ncname(prefix)?), ncname(local)?),
        None => (None, ncname(name)?),
    })
}

/// The names nearly every stanza uses, checked once at compile time (`xml_ncname!`) instead
/// of by rxml's validator on every occurrence.
fn ncname(name: &str) -> Option<NcName> {
    let known = match name {
        "message" => xml_ncname!("message"),
        "presence" => xml_ncname!("presence"),
        "iq" => xml_ncname!("iq"),
        "body" => xml_ncname!("body"),
        "to" => xml_ncname!("to"),
        "from" => xml_ncname!("from"),
        "type" => xml_ncname!("type"),
        "id" => xml_ncname!("id"),
        "xmlns" => xml_ncname!("xmlns"),
        "xml" => xml_ncname!("xml"),
        "lang" => xml_ncname!("lang"),
        _ => return NcName::try_from(name).ok(),
    };
    Some(known.to_owned())
}

/// Replaces the five predefined entities; `None` for any other reference, for a byte that
/// `refused` names, for control characters XML 1.0 forbids and for U+FFFE/U+FFFF.
fn unescape(raw: &str, refused: impl Fn(u8) -> bool) -> Option<String> {
    let bytes = raw.as_bytes();
    // One branch-free pass over the usual case (printable ASCII and UTF-8 other than EF
    // sequences, no '&'); only values that have any of those get the exact checks below.
    let plain = !bytes
        .iter()
        .any(|&c| c < 0x20 || c == b'<' || c == b'&' || c == 0xEF);
    if plain {
        return Some(raw.to_owned());
    }
    for (i, &c) in bytes.iter().enumerate() {
        if refused(c) || (c < 0x20 && c != b'\t' && c != b'\n') {
            return None;
        }
        // U+FFFE and U+FFFF are EF BF BE / EF BF BF in UTF-8.
        if c == 0xEF
            && bytes.get(i + 1) == Some(&0xBF)
            && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
        {
            return None;
        }
    }
    if !bytes.contains(&b'&') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';')?;
        out.push(match &after[..semi] {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        });
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse_with_rxml;

    const SEEDS: &[&str] = &[
        "<message xmlns='jabber:client' type='chat' to='bench12@localhost/bench' id='m1'><body>1763872312345678901 hello</body></message>",
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
        "<presence xmlns=\"jabber:client\" xml:lang=\"en\"><show>away</show><status>a &amp; b &lt;c&gt; &quot;d&apos;</status></presence>",
        "<message xmlns='jabber:client' xmlns:x='urn:x' x:a='1' a='2'><x:e/><e2 xmlns='urn:y'>t<i/>u</e2></message> \n",
        "<a xmlns='urn:a'><b><c><d/></c></b>text ü ✓ 🎉</a>",
    ];

    /// Bytes that make or break XML, for mutations.
    const PIECES: &[&str] = &[
        " xmlns:xml='urn:o'",
        " xmlns:p=''",
        " xmlns='http://www.w3.org/XML/1998/namespace'",
        " xmlns:xmlns='urn:x'",
        "<",
        ">",
        "/",
        "&",
        ";",
        "'",
        "\"",
        "=",
        ":",
        "!",
        "?",
        " ",
        "\t",
        "\r",
        "\n",
        "\u{1}",
        "]]>",
        "&lt;",
        "&#60;",
        "&foo;",
        "<!--x-->",
        "<![CDATA[x]]>",
        "<?pi?>",
        "xmlns",
        "xml:",
        "a",
        "1",
        "-",
        ".",
        "ü",
        "\u{FFFE}",
        "</a>",
        "<a>",
        "<b/>",
        "x='1'",
        " y=\"2\"",
    ];

    /// Whenever the fast path answers, rxml must give the same element.
    fn check(text: &str) -> bool {
        let limits = Limits::default();
        match parse(text, limits) {
            None => false,
            Some(fast) => {
                let full = parse_with_rxml(text.as_bytes(), limits);
                assert_eq!(
                    full.as_ref().ok(),
                    Some(&fast),
                    "fast path accepted {text:?}: rxml says {full:?}"
                );
                true
            }
        }
    }

    #[test]
    fn a_large_message_does_not_keep_its_event_list() {
        let text = format!("<a xmlns='urn:a'>{}</a>", "<b/>".repeat(5_000));
        assert!(parse(&text, Limits::default()).is_some());
        let kept = EVENTS.with(|events| events.borrow().capacity());
        assert!(kept <= KEPT_EVENTS, "{kept} events kept");
    }

    #[test]
    fn common_messages_take_the_fast_path_and_match_rxml() {
        for seed in SEEDS {
            assert!(check(seed), "fast path declined {seed:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_depth_limit_stops_the_scan_early() {
        let depth = 10_000;
        let text = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let mut events = Vec::new();
        assert_eq!(scan_element(&text, MAX_TOKEN_BYTES, 8, &mut events), None);
        // Stopped at the ninth open element, not after queueing all 10,000.
        assert!(events.len() <= 2 * 9, "{} events queued", events.len());
        let limits = Limits {
            max_depth: 8,
            ..Limits::default()
        };
        assert_eq!(parse(&text, limits), None);
        assert!(scan_element(&text[..3 * 8], MAX_TOKEN_BYTES, 8, &mut Vec::new()).is_none());
    }

    #[test]
    fn edge_cases_never_disagree_with_rxml() {
        // Names and declarations where XML and Namespaces in XML have special rules: whatever
        // the fast path accepts, rxml must accept as the same element.
        for text in [
            "<xmlfoo/>",
            "<a xmlns:xml='http://www.w3.org/XML/1998/namespace'/>",
            "<a xmlns:xml='urn:other'/>",
            "<a xmlns:xmlns='urn:x'/>",
            "<xmlns:a xmlns:xmlns='urn:x'/>",
            "<a xmlns=''/>",
            "<a xmlns:p=''/>",
            "<a xml:lang='en' xml:space='preserve'/>",
            "<a b='&amp;&lt;&gt;&quot;&apos;'/>",
            "<a>&gt;&amp;</a>",
            "<a/ >",
            "<a  />",
            "<a b = 'c' />",
            "<a></a >",
            "<a\t/>",
            "<A-b.c_d/>",
            "<_a/>",
            "<a:b:c xmlns:a='urn:a'/>",
            "<a b:='1'/>",
            "<p:a xmlns:p='urn:p' p:b='1' b='2'/>",
            "<p:a xmlns:p='urn:p' xmlns:q='urn:p' p:b='1' q:b='2'/>",
            "<a b='1' b='1'/>",
            "<a xmlns='urn:a' xmlns='urn:a'/>",
            "<a>x]]y</a>",
            "<a>]]&gt;</a>",
            "<a b=\"it's\" c='say \"hi\"'/>",
            "<a>\u{7f}\u{85}\u{fffd}</a>",
        ] {
            check(text);
        }
    }

    #[test]
    fn mutated_messages_never_disagree_with_rxml() {
        // Deterministic pseudo-random mutations (xorshift), bounded in count.
        let mut next = crate::test_rng(0x2545_F491_4F6C_DD1D);
        let mut accepted = 0;
        for _ in 0..40_000 {
            let mut s = SEEDS[next(SEEDS.len())].to_string();
            for _ in 0..1 + next(3) {
                let at = crate::char_floor(&s, next(s.len() + 1));
                match next(3) {
                    0 => s.insert_str(at, PIECES[next(PIECES.len())]),
                    1 => {
                        let end = crate::char_ceil(&s, at + 1 + next(4));
                        s.replace_range(at..end, "");
                    }
                    _ => {
                        let end = crate::char_ceil(&s, at + 1);
                        s.replace_range(at..end, PIECES[next(PIECES.len())]);
                    }
                }
            }
            if check(&s) {
                accepted += 1;
            }
        }
        // Many mutants stay well-formed; the comparison must have been exercised.
        assert!(
            accepted > 1_000,
            "only {accepted} mutants took the fast path"
        );
    }
}
