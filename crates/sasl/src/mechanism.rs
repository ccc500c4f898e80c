//! SASL mechanism names (RFC 4422 §3.1) that weft implements, as registered with IANA:
//! SCRAM (RFC 5802, RFC 7677), PLAIN (RFC 4616), EXTERNAL (RFC 4422 Appendix A).

use std::fmt;

use crate::hash::Hash;

/// A SASL mechanism this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-1` (RFC 5802).
    ScramSha1,
    /// `SCRAM-SHA-1-PLUS`: SCRAM-SHA-1 with channel binding (RFC 5802 §6).
    ScramSha1Plus,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-256-PLUS`: SCRAM-SHA-256 with channel binding (RFC 7677).
    ScramSha256Plus,
    /// `PLAIN` (RFC 4616); only acceptable over TLS.
    Plain,
    /// `EXTERNAL` (RFC 4422 Appendix A), e.g. TLS client certificates.
    External,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order a server would advertise them in.
    pub const ALL: [Mechanism; 6] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
        Mechanism::External,
    ];

    /// The registered name, as sent in `<mechanism/>` and `<auth mechanism='…'/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// Parses a mechanism name. Matching is exact: RFC 4422 §3.1 names are upper case, and a
    /// client sending another spelling is asking for a mechanism we did not offer.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash, or `None` for PLAIN and EXTERNAL.
    pub fn hash(self) -> Option<Hash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(Hash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(Hash::Sha256),
            Mechanism::Plain | Mechanism::External => None,
        }
    }

    /// Whether this is a channel-binding (`-PLUS`) variant.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// Whether this is a SCRAM mechanism (and so driven by [`crate::ScramServer`]).
    pub fn is_scram(self) -> bool {
        self.hash().is_some()
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
        assert_eq!(Mechanism::from_name(""), None);
    }

    #[test]
    fn properties() {
        assert_eq!(Mechanism::ScramSha256Plus.hash(), Some(Hash::Sha256));
        assert_eq!(Mechanism::ScramSha1.hash(), Some(Hash::Sha1));
        assert_eq!(Mechanism::Plain.hash(), None);
        assert!(Mechanism::ScramSha1Plus.is_plus());
        assert!(!Mechanism::ScramSha256.is_plus());
        assert!(!Mechanism::External.is_plus());
        assert!(!Mechanism::External.is_scram());
        // The advertised name embeds the hash name, as RFC 5802 §4 requires.
        for m in Mechanism::ALL.into_iter().filter(|m| m.is_scram()) {
            assert!(m.name().contains(m.hash().unwrap().name()));
            assert_eq!(m.name().ends_with("-PLUS"), m.is_plus());
        }
    }
}
