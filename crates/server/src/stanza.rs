//! Small helpers on stanzas (RFC 6120 §8): their kind, addresses and replies.

use jid::Jid;
use minidom::Element;
use rxml::{xml_ncname, Namespace, NcName};

use crate::error::{StanzaError, StanzaErrorCondition};

/// The three stanza kinds (RFC 6120 §8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    /// The kind of a top-level element in `stanza_ns`, or None for anything else.
    pub fn of(el: &Element, stanza_ns: &str) -> Option<Kind> {
        let kind = match el.name() {
            "message" => Kind::Message,
            "presence" => Kind::Presence,
            "iq" => Kind::Iq,
            _ => return None,
        };
        el.has_ns(stanza_ns).then_some(kind)
    }
}

/// The bare JID part of a JID's string: everything before the first '/' (neither a
/// localpart nor a domainpart may contain one, RFC 7622 §3.2 and §3.3); a borrow, where
/// `Jid::to_bare` formats a new string.
pub fn bare_part(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

pub fn set_attr(el: &mut Element, name: NcName, value: &str) {
    el.set_attr(Namespace::NONE, name, value.to_string());
}

pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&Namespace::NONE, name);
}

/// The 'to' address, parsed; an error when present but malformed.
pub fn to_jid(el: &Element) -> Result<Option<Jid>, jid::Error> {
    el.attr("to").map(parse_jid).transpose()
}

/// JIDs parsed lately on this thread, by their text: routing parses the same few addresses
/// again and again, and the checks of a parse (nodeprep, nameprep, resourceprep) cost several
/// times a lookup and a copy. Cleared when full.
const PARSED_JIDS: usize = 1024;

thread_local! {
    static PARSED: std::cell::RefCell<std::collections::HashMap<Box<str>, Jid, foldhash::fast::RandomState>> =
        std::cell::RefCell::new(std::collections::HashMap::default());
}

/// `Jid::new`, from this thread's cache of JIDs parsed lately when it holds `text`.
pub fn parse_jid(text: &str) -> Result<Jid, jid::Error> {
    if let Some(jid) = PARSED.with_borrow(|parsed| parsed.get(text).cloned()) {
        return Ok(jid);
    }
    let jid = Jid::new(text)?;
    PARSED.with_borrow_mut(|parsed| {
        if parsed.len() >= PARSED_JIDS {
            parsed.clear();
        }
        parsed.insert(text.into(), jid.clone());
    });
    Ok(jid)
}

/// An IQ result (RFC 6120 §8.2.3) to `iq`, with an optional payload.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut b = Element::builder("iq", iq.ns()).attr(xml_ncname!("type").into(), "result");
    if let Some(id) = iq.attr("id") {
        b = b.attr(xml_ncname!("id").into(), id);
    }
    if let Some(to) = iq.attr("to") {
        b = b.attr(xml_ncname!("from").into(), to);
    }
    if let Some(from) = iq.attr("from") {
        b = b.attr(xml_ncname!("to").into(), from);
    }
    if let Some(p) = payload {
        b = b.append(p);
    }
    b.build()
}

/// Shorthand for the error reply with a bare condition.
pub fn error_reply(original: &Element, condition: StanzaErrorCondition) -> Option<Element> {
    StanzaError::new(condition).reply_to(original)
}

/// XEP-0085: a message whose only payload is a chat state (perhaps with XEP-0334 hints or a
/// thread): something to show now or never, not to keep, carbon-copy urgently or bounce.
pub fn is_chat_state_only(message: &Element) -> bool {
    const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    const HINTS: &str = "urn:xmpp:hints";
    message.name() == "message"
        && message.children().any(|c| c.has_ns(CHATSTATES))
        && message
            .children()
            .all(|c| c.has_ns(CHATSTATES) || c.has_ns(HINTS) || c.is("thread", crate::ns::CLIENT))
}

/// XEP-0160 §3 and XEP-0313 §5, with XEP-0334 hints and XEP-0085: whether a message is worth
/// keeping (offline storage, the archive). Chat and normal messages with a body, a `store`
/// hint or a payload of their own are; a chat state alone, a `no-store` or
/// `no-permanent-store` hint, headlines, group chat and errors are not. A stanza-id alone is
/// no payload.
pub fn worth_storing(message: &Element) -> bool {
    const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    const HINTS: &str = "urn:xmpp:hints";
    const SID: &str = "urn:xmpp:sid:0";
    if !matches!(message.attr("type"), None | Some("normal") | Some("chat")) {
        return false;
    }
    if message.has_child("no-store", HINTS) || message.has_child("no-permanent-store", HINTS) {
        return false;
    }
    message.has_child("body", crate::ns::CLIENT)
        || message.has_child("store", HINTS)
        || message.children().any(|c| {
            !c.has_ns(crate::ns::CLIENT)
                && !c.has_ns(CHATSTATES)
                && !c.has_ns(HINTS)
                && !c.has_ns(SID)
        })
}

/// XEP-0313 §5 for a room's archive: a groupchat message with a body, a subject, or a payload
/// of its own (not a chat state alone, nothing marked no-store).
pub fn worth_storing_in_room(message: &Element) -> bool {
    const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    const HINTS: &str = "urn:xmpp:hints";
    if message.has_child("no-store", HINTS) || message.has_child("no-permanent-store", HINTS) {
        return false;
    }
    message.has_child("body", crate::ns::CLIENT)
        || message.has_child("subject", crate::ns::CLIENT)
        || message.has_child("store", HINTS)
        || message.children().any(|c| {
            !c.has_ns(crate::ns::CLIENT)
                && !c.has_ns(CHATSTATES)
                && !c.has_ns(HINTS)
                && !c.is("occupant-id", "urn:xmpp:occupant-id:0")
        })
}

/// XEP-0203: marks `stanza` as delayed since `at` by `from`, unless it already carries a delay
/// (then its first time stands: a message kept twice, held for a lost session and then
/// offline, is stamped once).
pub fn stamp_delay(stanza: &mut Element, from: &str, at: std::time::SystemTime) {
    const NS_DELAY: &str = "urn:xmpp:delay";
    if stanza.has_child("delay", NS_DELAY) {
        return;
    }
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let stamp = crate::modules::time::xep0082(since.as_secs() as i64, since.subsec_millis());
    stanza.append_child(
        Element::builder("delay", NS_DELAY)
            .attr(xml_ncname!("from").into(), from)
            .attr(xml_ncname!("stamp").into(), stamp)
            .build(),
    );
}

/// A stanza's text as [`weft_xml::write_element`] writes it, when a module serialised it (the
/// archive), for the delivery to copy instead of serialising the stanza again. Two parts: the
/// shared `base` (the archive keeps the same allocation) and a child written just before
/// base's end tag (a recipient's `<stanza-id/>`), so that adding that child copies nothing.
#[derive(Clone, Debug)]
pub struct StanzaText {
    base: std::sync::Arc<str>,
    /// Where base's end tag starts, and the child's text written there.
    last_child: Option<(usize, Box<str>)>,
}

impl StanzaText {
    pub fn new(base: std::sync::Arc<str>) -> StanzaText {
        StanzaText {
            base,
            last_child: None,
        }
    }

    /// The text without the child added by [`Self::with_last_child`].
    pub fn base(&self) -> &std::sync::Arc<str> {
        &self.base
    }

    /// Whether a child was added to the base.
    pub fn has_last_child(&self) -> bool {
        self.last_child.is_some()
    }

    /// The text of `el` with a child appended whose text (as `write_element` writes it in
    /// a `jabber:client` parent, declaring its own namespace) is `child`, from this text of
    /// `el` without it: `write_element` writes a last child just before the end tag. None
    /// for an element outside `jabber:client` or an empty one (written `<x/>`), or when a
    /// child was added already.
    pub fn with_last_child(&self, el: &Element, child: Box<str>) -> Option<StanzaText> {
        if self.last_child.is_some() || !el.has_ns(crate::ns::CLIENT) || el.nodes().next().is_none()
        {
            return None;
        }
        let head = self
            .base
            .strip_suffix('>')?
            .strip_suffix(el.name())?
            .strip_suffix("</")?;
        Some(StanzaText {
            base: self.base.clone(),
            last_child: Some((head.len(), child)),
        })
    }

    /// The text in the order it is written: before the child, the child, and the rest.
    pub fn parts(&self) -> [&str; 3] {
        match &self.last_child {
            None => [&self.base, "", ""],
            Some((at, child)) => [&self.base[..*at], child, &self.base[*at..]],
        }
    }

    /// The whole text in one string (tests and checks).
    pub fn joined(&self) -> String {
        self.parts().concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_jid_is_the_parsed_one_and_errors_stay_errors() {
        for text in [
            "Juliet@Example.COM/balcony",
            "example.com",
            "a@b",
            "Ⅻ@example.com/r",
        ] {
            let want = Jid::new(text).unwrap();
            assert_eq!(parse_jid(text).unwrap(), want);
            assert_eq!(parse_jid(text).unwrap(), want, "from the cache");
        }
        for bad in ["a@@b", "@example.com", ""] {
            assert!(parse_jid(bad).is_err());
            assert!(parse_jid(bad).is_err());
        }
        // Past the cache's size it starts over and still answers alike.
        for i in 0..PARSED_JIDS + 10 {
            let text = format!("u{i}@example.com/r");
            assert_eq!(parse_jid(&text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn a_last_child_is_written_before_the_end_tag_as_the_writer_writes_it() {
        let mut el: Element =
            "<message xmlns='jabber:client' to='a@b'><body>x &amp; y</body></message>"
                .parse()
                .unwrap();
        let mut base = Vec::new();
        weft_xml::write_element(&el, &mut base);
        let text = StanzaText::new(String::from_utf8(base).unwrap().into());
        let child: Element = "<stanza-id xmlns='urn:xmpp:sid:0' id='1' by='a@b'/>"
            .parse()
            .unwrap();
        let mut child_text = Vec::new();
        weft_xml::write_element_in(&child, crate::ns::CLIENT, &mut child_text);
        let child_text: Box<str> = String::from_utf8(child_text).unwrap().into();
        let stamped = text.with_last_child(&el, child_text.clone()).unwrap();
        el.append_child(child.clone());
        let mut want = Vec::new();
        weft_xml::write_element(&el, &mut want);
        assert_eq!(stamped.joined().as_bytes(), want.as_slice());
        assert_eq!(stamped.base(), text.base(), "the base is shared, unchanged");
        // One child at most; an element that was empty has no end tag to write before.
        assert!(stamped.with_last_child(&el, child_text.clone()).is_none());
        let other: Element = "<message xmlns='jabber:server'><body>x</body></message>"
            .parse()
            .unwrap();
        let other_text =
            StanzaText::new("<message xmlns='jabber:server'><body>x</body></message>".into());
        assert!(other_text
            .with_last_child(&other, child_text.clone())
            .is_none());
        let empty: Element = "<message xmlns='jabber:client'/>".parse().unwrap();
        let empty_text = StanzaText::new("<message xmlns='jabber:client'/>".into());
        assert!(empty_text.with_last_child(&empty, child_text).is_none());
    }
}
