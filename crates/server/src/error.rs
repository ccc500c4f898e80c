//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3): the one place where internal
//! failures become wire errors.

use minidom::Element;
use rxml::{xml_ncname, Namespace};

use crate::ns;

/// RFC 6120 §4.9.3 stream error conditions weft sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamErrorCondition {
    BadFormat,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    pub fn name(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// Maps an XML-layer failure to its stream error.
    pub fn from_xml(err: &weft_xml::XmlError) -> Self {
        use weft_xml::XmlError::*;
        match err {
            NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            Restricted(_) => StreamErrorCondition::RestrictedXml,
            StanzaTooLarge { .. } | TooDeep { .. } => StreamErrorCondition::PolicyViolation,
            InvalidUtf8 => StreamErrorCondition::UnsupportedEncoding,
        }
    }
}

/// A stream error ready to send: a condition, a human text, and for `see-other-host` the target.
#[derive(Clone, Debug)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: String,
    /// Only for `SeeOtherHost`.
    pub other_host: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: text.into(),
            other_host: None,
        }
    }

    /// The `<error/>` element in the streams namespace, unprefixed (RFC 7395 §3.3.1 allows it
    /// on WebSocket; on TCP the framing writes it as `<stream:error>`).
    pub fn to_element(&self) -> Element {
        let mut cond = Element::builder(self.condition.name(), ns::STREAMS_ERRORS);
        if let Some(host) = &self.other_host {
            cond = cond.append(host.as_str());
        }
        let mut el = Element::builder("error", ns::STREAM).append(cond.build());
        if !self.text.is_empty() {
            el = el.append(
                Element::builder("text", ns::STREAMS_ERRORS)
                    .attr_ns(Namespace::XML, xml_ncname!("lang").into(), "en")
                    .append(self.text.as_str())
                    .build(),
            );
        }
        el.build()
    }
}

impl From<&weft_xml::XmlError> for StreamError {
    fn from(err: &weft_xml::XmlError) -> Self {
        StreamError::new(StreamErrorCondition::from_xml(err), err.to_string())
    }
}

/// RFC 6120 §8.3.2 error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    fn name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3 stanza error conditions weft sends, each with its usual type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaErrorCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    UndefinedCondition,
    UnexpectedRequest,
}

impl StanzaErrorCondition {
    pub fn name(self) -> &'static str {
        use StanzaErrorCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 shows for each condition.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => ErrorType::Modify,
            Forbidden | NotAuthorized | RegistrationRequired => ErrorType::Auth,
            InternalServerError | RecipientUnavailable | RemoteServerTimeout
            | ResourceConstraint | UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// A stanza error to return to the sender of `original`.
#[derive(Clone, Debug)]
pub struct StanzaError {
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    /// The domain generating the error (RFC 6120 §8.3.2 'by').
    pub by: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.3), e.g. XEP-0191's `<blocked/>`.
    pub app: Option<(&'static str, &'static str)>,
    /// An application-specific condition with content, e.g. XEP-0363's `<file-too-large/>`
    /// with its `<max-file-size/>` (boxed: every `Result` carrying a stanza error stays small).
    pub app_element: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            condition,
            text: None,
            by: None,
            app: None,
            app_element: None,
        }
    }

    /// Adds the empty application-specific condition element `name` in `namespace`.
    pub fn with_app_condition(mut self, name: &'static str, namespace: &'static str) -> Self {
        self.app = Some((name, namespace));
        self
    }

    /// Adds an application-specific condition element with content.
    pub fn with_app_element(mut self, element: Element) -> Self {
        self.app_element = Some(Box::new(element));
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    /// The `<error/>` child.
    pub fn to_element(&self, stanza_ns: &str) -> Element {
        let mut b = Element::builder("error", stanza_ns)
            .attr(
                xml_ncname!("type").into(),
                self.condition.default_type().name(),
            )
            .append(Element::builder(self.condition.name(), ns::STANZAS).build());
        if let Some(by) = &self.by {
            b = b.attr(xml_ncname!("by").into(), by.as_str());
        }
        if let Some(text) = &self.text {
            b = b.append(
                Element::builder("text", ns::STANZAS)
                    .attr_ns(Namespace::XML, xml_ncname!("lang").into(), "en")
                    .append(text.as_str())
                    .build(),
            );
        }
        if let Some((name, namespace)) = self.app {
            b = b.append(Element::builder(name, namespace).build());
        }
        if let Some(element) = &self.app_element {
            b = b.append(Element::clone(element));
        }
        b.build()
    }

    /// The error reply to `original` (RFC 6120 §8.3.1): same name, id and namespace, addresses
    /// swapped, type='error', the original payload kept for messages and presence. Returns None
    /// for stanzas that must never be answered with an error (errors themselves, iq results).
    pub fn reply_to(&self, original: &Element) -> Option<Element> {
        let kind = original.attr("type");
        if kind == Some("error") || (original.name() == "iq" && kind == Some("result")) {
            return None;
        }
        let mut b = Element::builder(original.name(), original.ns())
            .attr(xml_ncname!("type").into(), "error");
        if let Some(id) = original.attr("id") {
            b = b.attr(xml_ncname!("id").into(), id);
        }
        if let Some(to) = original.attr("to") {
            b = b.attr(xml_ncname!("from").into(), to);
        }
        if let Some(from) = original.attr("from") {
            b = b.attr(xml_ncname!("to").into(), from);
        }
        // iq errors may omit the payload; messages and presence keep theirs so the sender can
        // tell what failed.
        if original.name() != "iq" {
            for child in original.children() {
                b = b.append(child.clone());
            }
        }
        Some(b.append(self.to_element(&original.ns())).build())
    }
}
