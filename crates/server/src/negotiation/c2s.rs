//! C2S negotiation: header checks, STARTTLS and SASL offers (with XEP-0440 channel-binding
//! types), and the post-authentication features (bind, session).

use minidom::Element;
use rxml::xml_ncname;
use weft_sasl::{ChannelBindingType, Mechanism};
use weft_xml::StreamHeader;

use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;

/// How the client reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RFC 6120 TCP; `tls` once STARTTLS or Direct TLS is in place.
    Tcp { tls: bool },
    /// RFC 7395; `tls` when weft itself terminates wss://.
    WebSocket { tls: bool },
    /// XEP-0206 over https:// (`tls`) or http://; no channel binding (a session spans
    /// several connections).
    Bosh { tls: bool },
}

impl Transport {
    pub fn is_tls(self) -> bool {
        match self {
            Transport::Tcp { tls } | Transport::WebSocket { tls } | Transport::Bosh { tls } => tls,
        }
    }
}

/// The settings that shape what is offered before authentication.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub require_encryption: bool,
    pub allow_plain_on_loopback: bool,
}

/// What we offer on a stream before authentication.
#[derive(Clone, Debug, Default)]
pub struct PreAuthOffer {
    pub starttls: bool,
    pub mechanisms: Vec<Mechanism>,
    pub channel_bindings: Vec<ChannelBindingType>,
}

impl PreAuthOffer {
    pub fn plus_offered(&self) -> bool {
        self.mechanisms.iter().any(|m| m.is_plus())
    }

    pub fn offers(&self, m: Mechanism) -> bool {
        self.mechanisms.contains(&m)
    }
}

/// Decides the pre-authentication features.
pub fn pre_auth_offer(
    transport: Transport,
    policy: Policy,
    peer_is_loopback: bool,
    channel_bindings: &[ChannelBindingType],
) -> PreAuthOffer {
    let tls = transport.is_tls();
    // RFC 7395 §3.9: never STARTTLS on WebSocket.
    let starttls = matches!(transport, Transport::Tcp { tls: false });
    let mut offer = PreAuthOffer {
        starttls,
        ..Default::default()
    };
    // RFC 6120 §5.3.1: with TLS mandatory, SASL waits until after STARTTLS.
    if starttls && policy.require_encryption {
        return offer;
    }
    if tls && !channel_bindings.is_empty() {
        offer.mechanisms.push(Mechanism::ScramSha256Plus);
        offer.mechanisms.push(Mechanism::ScramSha1Plus);
        offer.channel_bindings = channel_bindings.to_vec();
    }
    offer.mechanisms.push(Mechanism::ScramSha256);
    offer.mechanisms.push(Mechanism::ScramSha1);
    if tls || (peer_is_loopback && policy.allow_plain_on_loopback) {
        offer.mechanisms.push(Mechanism::Plain);
    }
    offer
}

/// `<features/>` for the pre-authentication offer.
pub fn pre_auth_features(offer: &PreAuthOffer, require_encryption: bool) -> Element {
    let mut features = Element::builder("features", ns::STREAM);
    if offer.starttls {
        let mut starttls = Element::builder("starttls", ns::TLS);
        if require_encryption {
            starttls = starttls.append(Element::builder("required", ns::TLS).build());
        }
        features = features.append(starttls.build());
    }
    if !offer.mechanisms.is_empty() {
        let mut mechs = Element::builder("mechanisms", ns::SASL);
        for m in &offer.mechanisms {
            mechs = mechs.append(
                Element::builder("mechanism", ns::SASL)
                    .append(m.name())
                    .build(),
            );
        }
        features = features.append(mechs.build());
    }
    if !offer.channel_bindings.is_empty() {
        let mut cb = Element::builder("sasl-channel-binding", ns::SASL_CB);
        for t in &offer.channel_bindings {
            cb = cb.append(
                Element::builder("channel-binding", ns::SASL_CB)
                    .attr(xml_ncname!("type").into(), t.name())
                    .build(),
            );
        }
        features = features.append(cb.build());
    }
    features.build()
}

/// `<features/>` after SASL: resource binding, the legacy session feature marked optional
/// (RFC 6121 Appendix E) for old clients, and the modules' own empty feature elements
/// (name, namespace), such as roster versioning.
pub fn post_auth_features(
    module_features: &[(&str, &str)],
    caps: &Element,
    stream_management: bool,
) -> Element {
    let mut features = Element::builder("features", ns::STREAM)
        .append(Element::builder("bind", ns::BIND).build())
        .append(
            Element::builder("session", ns::SESSION)
                .append(Element::builder("optional", ns::SESSION).build())
                .build(),
        );
    if stream_management {
        // XEP-0198 §3: offered after authentication; enabled after bind, or resumed instead.
        features = features.append(Element::builder("sm", ns::SM).build());
    }
    for (name, namespace) in module_features {
        features = features.append(Element::builder(*name, *namespace).build());
    }
    features.append(caps.clone()).build()
}

/// Checks a client's stream header and returns the domain it addresses. The header must be
/// `<stream:stream xmlns='jabber:client'>` on TCP (RFC 6120 §4.8) or `<open/>` in the framing
/// namespace on WebSocket (RFC 7395 §3.3.2).
pub fn check_header(
    header: &StreamHeader,
    websocket: bool,
    is_hosted: impl Fn(&str) -> bool,
) -> Result<String, StreamError> {
    let namespace_ok = if websocket {
        header.name == "open" && header.ns == ns::FRAMING
    } else {
        header.name == "stream"
            && header.ns == ns::STREAM
            && header.default_ns.as_deref() == Some(ns::CLIENT)
    };
    if !namespace_ok {
        let expected = if websocket {
            "<open/> in urn:ietf:params:xml:ns:xmpp-framing (RFC 7395 §3.3.2)"
        } else {
            "<stream:stream> in http://etherx.jabber.org/streams with xmlns='jabber:client' (RFC 6120 §4.8)"
        };
        return Err(StreamError::new(
            StreamErrorCondition::InvalidNamespace,
            format!("expected {expected}"),
        ));
    }
    match header.attr("version") {
        Some(v) if v.split('.').next() == Some("1") => {}
        _ => {
            return Err(StreamError::new(
                StreamErrorCondition::UnsupportedVersion,
                "version='1.0' is required (RFC 6120 §4.7.5)",
            ))
        }
    }
    let to = header.attr("to").unwrap_or("").to_ascii_lowercase();
    if to.is_empty() || !is_hosted(&to) {
        return Err(StreamError::new(
            StreamErrorCondition::HostUnknown,
            "this server does not serve the domain in 'to' (RFC 6120 §4.9.3.6)",
        ));
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        require_encryption: true,
        allow_plain_on_loopback: false,
    };

    #[test]
    fn tcp_before_tls_offers_only_starttls_when_required() {
        let o = pre_auth_offer(Transport::Tcp { tls: false }, STRICT, false, &[]);
        assert!(o.starttls);
        assert!(o.mechanisms.is_empty());
    }

    #[test]
    fn websocket_never_offers_starttls() {
        let o = pre_auth_offer(Transport::WebSocket { tls: false }, STRICT, true, &[]);
        assert!(!o.starttls);
        assert_eq!(
            o.mechanisms,
            vec![Mechanism::ScramSha256, Mechanism::ScramSha1]
        );
    }

    #[test]
    fn plus_and_plain_only_with_tls() {
        let cb = [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ];
        let o = pre_auth_offer(Transport::Tcp { tls: true }, STRICT, false, &cb);
        assert_eq!(
            o.mechanisms,
            vec![
                Mechanism::ScramSha256Plus,
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain
            ]
        );
        let f = pre_auth_features(&o, true);
        assert!(f.has_child("sasl-channel-binding", ns::SASL_CB));
        assert!(!f.has_child("starttls", ns::TLS));
    }

    #[test]
    fn plain_on_loopback_needs_the_setting() {
        let dev = Policy {
            require_encryption: false,
            allow_plain_on_loopback: true,
        };
        let o = pre_auth_offer(Transport::WebSocket { tls: false }, dev, true, &[]);
        assert!(o.offers(Mechanism::Plain));
        let o = pre_auth_offer(Transport::WebSocket { tls: false }, dev, false, &[]);
        assert!(!o.offers(Mechanism::Plain));
    }
}
