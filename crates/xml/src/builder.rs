//! Namespaces in XML 1.0 + RFC 6120 §4.8/§11: turns `rxml` raw events into namespace-resolved `minidom` elements and stream headers, enforcing namespace well-formedness and the depth limit.

use std::cell::RefCell;

use minidom::Element;
use rxml::{AttrMap, Namespace, NcName, RawEvent, RawQName};

use crate::error::XmlError;
use crate::header::StreamHeader;
use crate::Limits;

/// What the document root is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// RFC 6120: the root is the stream header; its children are the top-level elements.
    Stream,
    /// RFC 7395: the root is the one element of the message.
    Message,
}

/// Something complete came out of the events.
#[derive(Debug)]
pub(crate) enum Built {
    /// The stream root's start tag (only in [`Mode::Stream`]).
    Header(StreamHeader),
    /// A complete top-level element (the message's root in [`Mode::Message`]).
    Element(Element),
    /// The stream root's end tag (only in [`Mode::Stream`]).
    Close,
}

/// Common XMPP namespaces, shared statically so that declaring them costs no allocation.
pub(crate) const KNOWN_NAMESPACES: &[&str] = &[
    "jabber:client",
    "jabber:server",
    "http://etherx.jabber.org/streams",
    "urn:ietf:params:xml:ns:xmpp-framing",
    "urn:ietf:params:xml:ns:xmpp-framing-server",
    "urn:ietf:params:xml:ns:xmpp-tls",
    "urn:ietf:params:xml:ns:xmpp-sasl",
    "urn:ietf:params:xml:ns:xmpp-bind",
    "urn:ietf:params:xml:ns:xmpp-session",
    "urn:ietf:params:xml:ns:xmpp-stanzas",
    "urn:ietf:params:xml:ns:xmpp-streams",
    "urn:xmpp:sm:3",
    "urn:xmpp:sid:0",
    "urn:xmpp:receipts",
    "urn:xmpp:hints",
    "urn:xmpp:ping",
    "urn:xmpp:carbons:2",
    "urn:xmpp:forward:0",
    "urn:xmpp:delay",
    "urn:xmpp:mam:2",
    "jabber:iq:roster",
    "jabber:x:data",
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/caps",
    "jabber:server:dialback",
    "vcard-temp",
];

/// Size of the per-parser cache of other namespace names seen recently.
const NS_CACHE: usize = 8;

/// Incremental tree builder with namespace resolution.
#[derive(Debug)]
pub(crate) struct TreeBuilder {
    mode: Mode,
    max_depth: usize,
    /// In-scope prefix bindings, innermost last; `None` is the default namespace.
    bindings: Vec<(Option<NcName>, Namespace<'static>)>,
    /// For each open element (including the stream root), `bindings.len()` before its own
    /// declarations.
    scopes: Vec<usize>,
    /// Name of the element whose start tag is being read.
    head: Option<RawQName>,
    /// Its attributes other than namespace declarations.
    attrs: Vec<(RawQName, String)>,
    /// Elements being built, outermost first (the stream root is never on it).
    stack: Vec<Element>,
    ns_cache: Vec<Namespace<'static>>,
    ns_cache_next: usize,
}

impl TreeBuilder {
    pub(crate) fn new(mode: Mode, limits: Limits) -> Self {
        TreeBuilder {
            mode,
            max_depth: limits.max_depth,
            bindings: Vec::new(),
            scopes: Vec::new(),
            head: None,
            attrs: Vec::new(),
            stack: Vec::new(),
            ns_cache: Vec::new(),
            ns_cache_next: 0,
        }
    }

    /// Start a new document in `mode` (keeps allocations and the namespace cache).
    pub(crate) fn reset(&mut self, mode: Mode, limits: Limits) {
        self.clear();
        self.mode = mode;
        self.max_depth = limits.max_depth;
    }

    /// Forget the document (keeps allocations and the namespace cache).
    pub(crate) fn clear(&mut self) {
        self.bindings.clear();
        self.scopes.clear();
        self.head = None;
        self.attrs.clear();
        self.stack.clear();
    }

    /// Number of open elements, counting the stream root and an element whose start tag is
    /// still being read.
    pub(crate) fn open_elements(&self) -> usize {
        self.scopes.len()
    }

    /// Feed one raw event.
    pub(crate) fn process(&mut self, ev: RawEvent) -> Result<Option<Built>, XmlError> {
        match ev {
            RawEvent::XmlDeclaration(..) => Ok(None),
            RawEvent::ElementHeadOpen(_, qname) => {
                let depth = match self.mode {
                    Mode::Stream => self.scopes.len(),
                    Mode::Message => self.scopes.len() + 1,
                };
                if depth > self.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: self.max_depth,
                    });
                }
                self.scopes.push(self.bindings.len());
                self.head = Some(qname);
                Ok(None)
            }
            RawEvent::Attribute(_, (prefix, local), value) => {
                match prefix {
                    None if local == "xmlns" => self.declare(None, value)?,
                    Some(p) if p == "xmlns" => self.declare(Some(local), value)?,
                    prefix => self.attrs.push(((prefix, local), value)),
                }
                Ok(None)
            }
            RawEvent::ElementHeadClose(_) => self.finish_head(),
            RawEvent::Text(_, text) => {
                match self.stack.last_mut() {
                    Some(parent) => parent.append_text(text),
                    // Between top-level elements of a stream (RFC 6120 §4.6.1 whitespace
                    // keepalives); outside the root, rxml already rejects text.
                    None if is_xml_whitespace(&text) => {}
                    None => {
                        return Err(XmlError::not_well_formed(
                            "character data between top-level elements of the stream",
                        ))
                    }
                }
                Ok(None)
            }
            RawEvent::ElementFoot(_) => {
                let scope = self.scopes.pop().unwrap_or(0);
                self.bindings.truncate(scope);
                Ok(match self.stack.pop() {
                    None => Some(Built::Close),
                    Some(el) => match self.stack.last_mut() {
                        Some(parent) => {
                            parent.append_child(el);
                            None
                        }
                        None => Some(Built::Element(el)),
                    },
                })
            }
        }
    }

    fn declare(&mut self, prefix: Option<NcName>, uri: String) -> Result<(), XmlError> {
        let scope = self.scopes.last().copied().unwrap_or(0);
        if self.bindings[scope..].iter().any(|(p, _)| *p == prefix) {
            return Err(XmlError::not_well_formed(
                "namespace declared twice on one element",
            ));
        }
        let ns = self.intern(uri);
        self.bindings.push((prefix, ns));
        Ok(())
    }

    fn intern(&mut self, uri: String) -> Namespace<'static> {
        if let Some(ns) = Namespace::try_share_static(&uri) {
            return ns;
        }
        if let Some(known) = KNOWN_NAMESPACES.iter().find(|k| **k == uri) {
            return Namespace::from_str(known);
        }
        if let Some(ns) = self.ns_cache.iter().find(|ns| ns.as_str() == uri) {
            return ns.clone();
        }
        let ns = Namespace::from(uri);
        if self.ns_cache.len() < NS_CACHE {
            self.ns_cache.push(ns.clone());
        } else {
            self.ns_cache[self.ns_cache_next] = ns.clone();
            self.ns_cache_next = (self.ns_cache_next + 1) % NS_CACHE;
        }
        ns
    }

    fn finish_head(&mut self) -> Result<Option<Built>, XmlError> {
        let Some((prefix, local)) = self.head.take() else {
            return Err(XmlError::not_well_formed(
                "end of a start tag without a start",
            ));
        };
        let ns = lookup(&self.bindings, prefix.as_ref())?.clone();
        if self.mode == Mode::Stream && self.scopes.len() == 1 {
            return self.finish_header(local, ns).map(Some);
        }
        let mut attrs = AttrMap::new();
        for ((prefix, name), value) in self.attrs.drain(..) {
            let attr_ns = match prefix {
                None => Namespace::NONE,
                Some(p) => lookup(&self.bindings, Some(&p))?.clone(),
            };
            if attrs.insert(attr_ns, name, value).is_some() {
                return Err(XmlError::not_well_formed("duplicate attribute"));
            }
        }
        let mut el = new_element(local.as_str(), ns.as_str());
        *el.attrs_mut() = attrs;
        self.stack.push(el);
        Ok(None)
    }

    fn finish_header(&mut self, local: NcName, ns: Namespace<'static>) -> Result<Built, XmlError> {
        let default_ns = self.bindings[self.scopes[0]..]
            .iter()
            .rev()
            .find(|(p, _)| p.is_none())
            .and_then(|(_, ns)| ns.as_namespace_name().map(str::to_owned));
        let mut attrs: Vec<(String, String)> = Vec::with_capacity(self.attrs.len());
        for ((prefix, name), value) in self.attrs.drain(..) {
            let key = match prefix {
                None => String::from(name.as_str()),
                Some(p) if p == "xml" => format!("xml:{}", name.as_str()),
                Some(p) => {
                    // Must still be bound (namespace well-formedness), but is not reported.
                    lookup(&self.bindings, Some(&p))?;
                    continue;
                }
            };
            if attrs.iter().any(|(k, _)| *k == key) {
                return Err(XmlError::not_well_formed("duplicate attribute"));
            }
            attrs.push((key, value));
        }
        Ok(Built::Header(StreamHeader {
            name: local.as_str().to_owned(),
            ns: ns.as_str().to_owned(),
            default_ns,
            attrs,
        }))
    }
}

/// Resolve a prefix (or the default namespace for `None`) against the in-scope bindings.
fn lookup<'a>(
    bindings: &'a [(Option<NcName>, Namespace<'static>)],
    prefix: Option<&NcName>,
) -> Result<&'a Namespace<'static>, XmlError> {
    match prefix {
        None => Ok(bindings
            .iter()
            .rev()
            .find(|(p, _)| p.is_none())
            .map_or(Namespace::none(), |(_, ns)| ns)),
        Some(p) => match bindings.iter().rev().find(|(q, _)| q.as_ref() == Some(p)) {
            Some((_, ns)) => Ok(ns),
            None if *p == "xml" => Ok(Namespace::xml()),
            None => Err(XmlError::NotWellFormed(format!(
                "undeclared namespace prefix '{}'",
                p.as_str()
            ))),
        },
    }
}

/// Size of the per-thread cache of empty elements by (name, namespace).
const PROTOTYPES: usize = 32;

thread_local! {
    /// Empty elements recently built on this thread. minidom only builds an element's
    /// namespace from a fresh `String` (a copy plus an `Arc`); cloning a cached empty element
    /// shares the `Arc` and copies only the name.
    static PROTOTYPES_CACHE: RefCell<(Vec<Element>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// An empty element named `name` in namespace `ns`.
fn new_element(name: &str, ns: &str) -> Element {
    PROTOTYPES_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (protos, next) = &mut *cache;
        if let Some(p) = protos.iter().find(|p| p.name() == name && p.has_ns(ns)) {
            return p.clone();
        }
        let el = Element::bare(name, ns);
        if protos.len() < PROTOTYPES {
            protos.push(el.clone());
        } else {
            protos[*next] = el.clone();
            *next = (*next + 1) % PROTOTYPES;
        }
        el
    })
}

/// XML 1.0 `S`: space, tab, CR, LF.
pub(crate) fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}
