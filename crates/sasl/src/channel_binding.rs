//! Channel binding types for SCRAM `-PLUS`: `tls-exporter` (RFC 9266) and
//! `tls-server-end-point` (RFC 5929 §4), and the data a connection can provide for them.

use std::fmt;

/// A channel binding type weft can verify.
///
/// `tls-unique` (RFC 5929 §3) is deliberately absent: it is undefined for TLS 1.3 and unsafe
/// for TLS 1.2 without extended master secret (RFC 9266 §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// `tls-exporter` (RFC 9266): the TLS exporter with label "EXPORTER-Channel-Binding".
    TlsExporter,
    /// `tls-server-end-point` (RFC 5929 §4): a hash of the server's certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// The registered cb-name, as sent in the GS2 header `p=` flag.
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses a cb-name. Exact match: RFC 5056 §7 names are compared octet by octet.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tls-exporter" => Some(ChannelBindingType::TlsExporter),
            "tls-server-end-point" => Some(ChannelBindingType::TlsServerEndPoint),
            _ => None,
        }
    }
}

impl fmt::Display for ChannelBindingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The channel-binding data the transport can give for this connection (None where not
/// available, e.g. no TLS, or TLS terminated by a proxy).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// RFC 9266 exporter output (32 bytes) for this TLS connection.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 §4.1 hash of our certificate as presented on this connection.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The types with data on this connection, preferred first (`tls-exporter`, which binds the
    /// TLS session itself, before `tls-server-end-point`, which only binds the certificate).
    pub fn available(&self) -> Vec<ChannelBindingType> {
        [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ]
        .into_iter()
        .filter(|t| self.get(*t).is_some())
        .collect()
    }

    /// True when no channel binding is possible, so no `-PLUS` mechanism may be offered.
    pub fn is_empty(&self) -> bool {
        self.tls_exporter.is_none() && self.tls_server_end_point.is_none()
    }

    /// The data for one type, if this connection has it.
    pub fn get(&self, ty: ChannelBindingType) -> Option<&[u8]> {
        match ty {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        }
    }
}

impl fmt::Debug for ChannelBindings {
    // Exporter output is derived from the TLS master secret; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBindings")
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            assert_eq!(ChannelBindingType::from_name(t.name()), Some(t));
        }
        assert_eq!(ChannelBindingType::from_name("tls-unique"), None);
    }

    #[test]
    fn availability() {
        let none = ChannelBindings::default();
        assert!(none.is_empty());
        assert!(none.available().is_empty());

        let both = ChannelBindings {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        };
        assert!(!both.is_empty());
        assert_eq!(
            both.available(),
            [
                ChannelBindingType::TlsExporter,
                ChannelBindingType::TlsServerEndPoint
            ]
        );
        assert!(!format!("{both:?}").contains("[1, 1"));

        let endpoint = ChannelBindings {
            tls_server_end_point: Some(vec![2; 32]),
            ..Default::default()
        };
        assert_eq!(
            endpoint.available(),
            [ChannelBindingType::TlsServerEndPoint]
        );
        assert_eq!(endpoint.get(ChannelBindingType::TlsExporter), None);
    }
}
