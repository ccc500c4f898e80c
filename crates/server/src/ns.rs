//! XML namespaces weft speaks, in one place.

pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
/// XEP-0114: the content namespace of external component streams.
pub const COMPONENT: &str = "jabber:component:accept";
/// RFC 7395 §3.3: the WebSocket framing namespace for c2s.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// XEP-0468: the WebSocket framing namespace for s2s.
pub const FRAMING_SERVER: &str = "urn:ietf:params:xml:ns:xmpp-framing-server";
pub const STREAMS_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0198 Stream Management.
pub const SM: &str = "urn:xmpp:sm:3";
/// XEP-0440 SASL channel-binding type capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
pub const PING: &str = "urn:xmpp:ping";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const VERSION: &str = "jabber:iq:version";
