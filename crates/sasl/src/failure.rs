//! RFC 6120 §6.5 SASL failure conditions: what a mechanism reports back for `<failure/>`.

/// A defined condition of the `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>` element.
///
/// Mechanisms in this crate only ever produce [`Failure::IncorrectEncoding`],
/// [`Failure::MalformedRequest`] and [`Failure::NotAuthorized`]; the others exist so the
/// server maps every SASL outcome through one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Failure {
    /// RFC 6120 §6.5.1: the client sent `<abort/>`.
    #[error("authentication aborted by the client")]
    Aborted,
    /// RFC 6120 §6.5.2: the account exists but is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// RFC 6120 §6.5.3: the credentials have expired.
    #[error("credentials expired")]
    CredentialsExpired,
    /// RFC 6120 §6.5.4: the mechanism requires a TLS-protected stream.
    #[error("mechanism requires encryption")]
    EncryptionRequired,
    /// RFC 6120 §6.5.5: the data was not valid base64 (we also use it for bytes that are not
    /// UTF-8 where text is required, the closest "encoding" condition).
    #[error("incorrect encoding")]
    IncorrectEncoding,
    /// RFC 6120 §6.5.6: the authorization identity is not a valid JID or not permitted.
    #[error("invalid authorization identity")]
    InvalidAuthzid,
    /// RFC 6120 §6.5.7: the requested mechanism is not offered.
    #[error("invalid mechanism")]
    InvalidMechanism,
    /// RFC 6120 §6.5.8: the data violates the syntax of the mechanism, or arrived out of order.
    #[error("malformed request")]
    MalformedRequest,
    /// RFC 6120 §6.5.9: the mechanism is weaker than server policy allows.
    #[error("mechanism too weak")]
    MechanismTooWeak,
    /// RFC 6120 §6.5.10: authentication failed (bad credentials, unknown user, channel binding
    /// mismatch); deliberately uninformative.
    #[error("not authorized")]
    NotAuthorized,
    /// RFC 6120 §6.5.11: a temporary server-side error; the client may retry.
    #[error("temporary authentication failure")]
    TemporaryAuthFailure,
}

impl Failure {
    /// Every condition, in RFC 6120 §6.5 order.
    pub const ALL: [Failure; 11] = [
        Failure::Aborted,
        Failure::AccountDisabled,
        Failure::CredentialsExpired,
        Failure::EncryptionRequired,
        Failure::IncorrectEncoding,
        Failure::InvalidAuthzid,
        Failure::InvalidMechanism,
        Failure::MalformedRequest,
        Failure::MechanismTooWeak,
        Failure::NotAuthorized,
        Failure::TemporaryAuthFailure,
    ];

    /// The element name of the condition, e.g. `"not-authorized"`.
    pub fn condition(self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::AccountDisabled => "account-disabled",
            Failure::CredentialsExpired => "credentials-expired",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// Inverse of [`Failure::condition`].
    pub fn from_condition(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.condition() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_round_trip() {
        for f in Failure::ALL {
            assert_eq!(Failure::from_condition(f.condition()), Some(f));
            assert!(!f.to_string().is_empty());
        }
        assert_eq!(Failure::NotAuthorized.condition(), "not-authorized");
        assert_eq!(Failure::from_condition("bad-request"), None);
    }
}
