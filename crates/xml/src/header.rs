//! RFC 6120 §4.7 / RFC 7395 §3.4: the stream header as seen by the XML layer (names, namespaces, attributes; no validation of their meaning).

/// A stream header: `<stream:stream>` (RFC 6120) or `<open/>` (RFC 7395).
///
/// The XML layer reports whatever header arrived, as long as it is well-formed; deciding
/// `<invalid-namespace/>`, `<unsupported-version/>` and so on is the caller's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name: `"stream"` or `"open"` (or whatever the peer sent).
    pub name: String,
    /// The header element's namespace (`""` if it is in no namespace).
    pub ns: String,
    /// The default namespace the header itself declares (`xmlns='jabber:client'`), if any.
    pub default_ns: Option<String>,
    /// Unqualified attributes (`to`, `from`, `id`, `version`, …) in document order, plus
    /// `"xml:lang"` for the `xml:lang` attribute. Other namespaced attributes are dropped.
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    /// The value of an attribute by name (`"to"`, `"version"`, `"xml:lang"`, …).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
