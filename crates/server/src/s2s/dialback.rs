//! XEP-0220 Server Dialback: key generation and checking (§2.4), and the `db:result` /
//! `db:verify` elements. xmpp-parsers has no dialback types, so they are built here.

use hmac::{Hmac, Mac};
use minidom::Element;
use rxml::xml_ncname;
use sha2::{Digest, Sha256};

pub const NS: &str = "jabber:server:dialback";
/// XEP-0220 §2.1 stream feature.
pub const FEATURE_NS: &str = "urn:xmpp:features:dialback";

/// The dialback secret, held only as SHA-256(secret) as XEP-0185 uses it: the HMAC key is the
/// hex form of that digest, as the XEP's worked example (and every implementation) has it.
#[derive(Clone)]
pub struct DialbackKeys {
    hashed_secret: String,
}

impl std::fmt::Debug for DialbackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialbackKeys(<redacted>)")
    }
}

impl DialbackKeys {
    pub fn new(secret: &str) -> Self {
        DialbackKeys {
            hashed_secret: hex(&Sha256::digest(secret.as_bytes())),
        }
    }

    /// key = HEX(HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream_id)).
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.hashed_secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(stream_id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Constant-time check of a key we are asked to verify as the authoritative server.
    pub fn verify(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        let expected = self.key(receiving, originating, stream_id);
        expected.len() == key.len()
            && expected
                .bytes()
                .zip(key.trim().bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `<db:result from to>key</db:result>`, the originating server's request (§2.1.1).
pub fn result_request(from: &str, to: &str, key: &str) -> Element {
    Element::builder("result", NS)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .append(key)
        .build()
}

/// `<db:result type='valid|invalid'/>`, the receiving server's answer (§2.1.3).
pub fn result_answer(from: &str, to: &str, valid: bool) -> Element {
    Element::builder("result", NS)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(
            xml_ncname!("type").into(),
            if valid { "valid" } else { "invalid" },
        )
        .build()
}

/// `<db:result type='error'>` (XEP-0220 §2.4): the key could not be checked, for a reason that
/// says nothing about its validity (the authoritative server unreachable, or it answered
/// nonsense); non-fatal for the stream, and the initiating server bounces its queue.
pub fn result_error(from: &str, to: &str, condition: &str) -> Element {
    Element::builder("result", NS)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(xml_ncname!("type").into(), "error")
        .append(
            Element::builder("error", crate::ns::SERVER)
                .attr(xml_ncname!("type").into(), "cancel")
                .append(Element::builder(condition, "urn:ietf:params:xml:ns:xmpp-stanzas").build())
                .build(),
        )
        .build()
}

/// `<db:verify from to id>key</db:verify>`, the receiving server asking the authoritative one.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::builder("verify", NS)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(xml_ncname!("id").into(), id)
        .append(key)
        .build()
}

/// `<db:verify type='valid|invalid'/>`, the authoritative server's answer (§2.1.2).
pub fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> Element {
    Element::builder("verify", NS)
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(xml_ncname!("id").into(), id)
        .attr(
            xml_ncname!("type").into(),
            if valid { "valid" } else { "invalid" },
        )
        .build()
}

/// Writes a dialback element with the `db` prefix, which XEP-0220 §2 requires ("MUST be
/// prefixed"); `declare` adds the prefix declaration for standalone WebSocket messages.
pub fn write_prefixed(el: &Element, out: &mut Vec<u8>, declare: bool) {
    out.extend_from_slice(b"<db:");
    out.extend_from_slice(el.name().as_bytes());
    if declare {
        out.extend_from_slice(b" xmlns:db='jabber:server:dialback'");
    }
    for ((ns, name), value) in el.attrs().iter() {
        if !ns.is_empty() {
            continue;
        }
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        out.extend_from_slice(weft_xml::escape(value).as_bytes());
        out.push(b'\'');
    }
    let text = el.text();
    if text.is_empty() {
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
        out.extend_from_slice(weft_xml::escape_text(&text).as_bytes());
        out.extend_from_slice(b"</db:");
        out.extend_from_slice(el.name().as_bytes());
        out.push(b'>');
    }
}

/// The feature advertised to peers (§2.1, with error support §2.3.1).
pub fn feature() -> Element {
    Element::builder("dialback", FEATURE_NS)
        .append(Element::builder("errors", FEATURE_NS).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0220_example_key() {
        // XEP-0220 §2.1.1 example.
        let keys = DialbackKeys::new("s3cr3tf0rd14lb4ck");
        assert_eq!(
            keys.key("montague.example", "capulet.example", "D60000229F"),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
    }

    #[test]
    fn an_unchecked_key_is_a_dialback_error_as_in_xep_0220() {
        let e = result_error(
            "capulet.example",
            "montague.example",
            "remote-server-not-found",
        );
        let want: Element = "<db:result xmlns:db='jabber:server:dialback' xmlns='jabber:server' \
            from='capulet.example' to='montague.example' type='error'><error type='cancel'>\
            <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
            .parse()
            .unwrap();
        assert_eq!(e, want);
    }

    #[test]
    fn verify_checks_every_input() {
        let keys = DialbackKeys::new("secret");
        let k = keys.key("b.test", "a.test", "id1");
        assert!(keys.verify("b.test", "a.test", "id1", &k));
        assert!(!keys.verify("b.test", "a.test", "id2", &k));
        assert!(!keys.verify("a.test", "b.test", "id1", &k));
        assert!(!DialbackKeys::new("other").verify("b.test", "a.test", "id1", &k));
        assert!(!keys.verify("b.test", "a.test", "id1", ""));
    }
}
