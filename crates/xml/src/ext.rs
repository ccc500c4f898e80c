//! RFC 6120 §4.7.4 / §8.1.5 and RFC 6120 §4.8.3: helpers on `minidom` elements — `xml:lang` access and moving elements between namespaces (jabber:client ⇄ jabber:server).

use minidom::{Element, ElementBuilder, IntoAttributeValue, Node};
use rxml::{Namespace, NcName};

use crate::XML_NS;

/// Extra accessors for [`Element`].
///
/// minidom keeps `xml:lang` as the attribute `lang` in the XML namespace, so
/// `el.attr("xml:lang")` (which only looks at unqualified attributes) never finds it, and
/// `set_attr`/`ElementBuilder::attr` take an `NcName`, which cannot contain a colon. These
/// accept `"xml:lang"` (or any `xml:` name) as well as plain names.
pub trait ElementExt {
    /// The element's own `xml:lang` attribute (not inherited from ancestors).
    fn xml_lang(&self) -> Option<&str>;
    /// Set (or replace) the element's `xml:lang` attribute.
    fn set_xml_lang(&mut self, lang: &str);
    /// An attribute by name: `"xml:lang"` (any `xml:` name) or an unqualified name.
    /// Names with another prefix find nothing.
    fn attr_q(&self, name: &str) -> Option<&str>;
    /// Set an attribute by name (`"xml:lang"` or an unqualified name); `None` removes it.
    ///
    /// # Panics
    /// If `name` is not an NCName, optionally prefixed with `xml:` (a programming error).
    fn set_attr_q<V: IntoAttributeValue>(&mut self, name: &str, value: V);
}

impl ElementExt for Element {
    fn xml_lang(&self) -> Option<&str> {
        self.attr_ns(XML_NS, "lang")
    }

    fn set_xml_lang(&mut self, lang: &str) {
        self.set_attr_q("xml:lang", lang);
    }

    fn attr_q(&self, name: &str) -> Option<&str> {
        match name.split_once(':') {
            None => self.attrs().get(Namespace::none(), name),
            Some(("xml", local)) => self.attrs().get(Namespace::xml(), local),
            Some(_) => None,
        }
        .map(String::as_str)
    }

    fn set_attr_q<V: IntoAttributeValue>(&mut self, name: &str, value: V) {
        let (ns, local) = qualified(name);
        match value.into_attribute_value() {
            Some(value) => self.set_attr(ns, local, value),
            None => {
                self.attrs_mut().remove(&ns, &local);
            }
        }
    }
}

/// [`ElementExt::set_attr_q`] for minidom's builder: `.attr_q("xml:lang", "en")`.
pub trait ElementBuilderExt {
    /// Set an attribute by name (`"xml:lang"` or an unqualified name); `None` sets nothing.
    ///
    /// # Panics
    /// If `name` is not an NCName, optionally prefixed with `xml:` (a programming error).
    #[must_use]
    fn attr_q<V: IntoAttributeValue>(self, name: &str, value: V) -> Self;
}

impl ElementBuilderExt for ElementBuilder {
    fn attr_q<V: IntoAttributeValue>(self, name: &str, value: V) -> Self {
        let (ns, local) = qualified(name);
        self.attr_ns(ns, local, value)
    }
}

fn qualified(name: &str) -> (Namespace<'static>, NcName) {
    let (ns, local) = match name.split_once(':') {
        None => (Namespace::NONE, name),
        Some(("xml", local)) => (Namespace::XML, local),
        Some(_) => panic!("attribute {name:?}: only the xml: prefix is supported"),
    };
    match NcName::try_from(local) {
        Ok(local) => (ns, local),
        Err(_) => panic!("attribute {name:?}: not a valid XML name"),
    }
}

/// Return a deep copy of `el` in which every element in namespace `from` is moved to
/// namespace `to` (used to turn `jabber:client` stanzas into `jabber:server` ones and back,
/// RFC 6120 §4.8.3). Elements in other namespaces, attributes and text are copied unchanged;
/// subtrees without any element in `from` are cloned as they are.
pub fn with_namespace(el: &Element, from: &str, to: &str) -> Element {
    if from == to || !contains_ns(el, from) {
        return el.clone();
    }
    let mut out = if el.has_ns(from) {
        Element::bare(el.name(), to)
    } else {
        Element::bare(el.name(), el.ns())
    };
    *out.attrs_mut() = el.attrs().clone();
    for node in el.nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(with_namespace(child, from, to));
            }
            Node::Text(text) => out.append_text_node(text.as_str()),
        }
    }
    out
}

fn contains_ns(el: &Element, ns: &str) -> bool {
    el.has_ns(ns) || el.children().any(|c| contains_ns(c, ns))
}
