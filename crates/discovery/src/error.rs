//! Error types of weft-discovery: why host-meta (XEP-0156, XEP-0487) could not be had, and why no connection candidate for a remote domain (RFC 6120 §3.2) could be found.

use std::time::Duration;

/// Why a host-meta document (XEP-0156 §3, XEP-0487 §2) could not be fetched or parsed.
///
/// Cloneable so that one failure can sit in the negative cache and be handed to every caller
/// that asks while it is cached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostMetaError {
    /// The domain is not a DNS name we can send as SNI and verify a certificate for.
    #[error("{domain:?} is not a DNS name host-meta can be fetched for: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The configured override base URL for this domain is unusable (not `https://`, no host,
    /// …). A configuration error, reported at use because [`crate::Discovery::new`] is
    /// infallible; [`crate::Discovery::try_new`] reports it at start-up instead.
    #[error("host-meta override for {domain} ({base:?}) is unusable: {reason}")]
    BadOverride {
        /// The domain the override is for.
        domain: String,
        /// The base URL as configured.
        base: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `host-meta.json` is not a JRD document (RFC 6415 Appendix A).
    #[error("not a JRD document (RFC 6415 Appendix A): {0}")]
    InvalidJrd(String),

    /// `host-meta` is not an XRD document (RFC 6415 §3), or uses XML constructs outside the
    /// restricted XML weft parses (DTDs, comments, processing instructions, …).
    #[error("not an XRD document (RFC 6415 §3): {0}")]
    InvalidXrd(String),

    /// The server answered with a status other than 200 or a followed redirect.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },

    /// More redirects than [`crate::HttpLimits::max_redirects`].
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The URL whose answer was one redirect too many.
        url: String,
        /// The configured limit.
        limit: u8,
    },

    /// A redirect to anything but `https://`: host-meta is fetched over HTTPS only
    /// (XEP-0156 §3.2 rule 1, XEP-0487 §2.2 rule 1), so a downgrade is refused, not followed.
    #[error("{url}: redirect to {location:?} refused: host-meta is fetched over HTTPS only (XEP-0156 §3.2)")]
    InsecureRedirect {
        /// The URL that answered with the redirect.
        url: String,
        /// The `Location` it redirected to.
        location: String,
    },

    /// A redirect without a usable `Location` header.
    #[error("{url}: unusable redirect: {reason}")]
    BadRedirect {
        /// The URL that answered with the redirect.
        url: String,
        /// What is wrong with the `Location`.
        reason: String,
    },

    /// The body (announced or received) exceeded [`crate::HttpLimits::max_body_bytes`].
    #[error("{url}: body larger than {limit} bytes")]
    BodyTooLarge {
        /// The URL whose body was too large.
        url: String,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The HTTPS host's addresses could not be resolved.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's answer.
        reason: String,
        /// Whether the name does not exist (NXDOMAIN) or has no addresses.
        not_found: bool,
    },

    /// No TCP connection to any address of the host (refused, unreachable, or slower than
    /// [`crate::HttpLimits::connect_timeout`]).
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// The host name (or override address) connected to.
        host: String,
        /// The last connection error.
        reason: String,
        /// Whether the last attempt timed out.
        timed_out: bool,
    },

    /// The TLS handshake failed, most importantly because the certificate is not valid for
    /// the name (or not issued by a configured root): host-meta must come over verified HTTPS.
    #[error("TLS with {server_name} failed: {reason}")]
    Tls {
        /// The name the certificate was verified against (and sent as SNI).
        server_name: String,
        /// rustls' reason.
        reason: String,
    },

    /// The HTTP exchange failed after TLS (malformed response, connection closed early, …).
    #[error("{url}: HTTP exchange failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// hyper's reason.
        reason: String,
    },

    /// The whole host-meta discovery for the domain took longer than
    /// [`crate::HttpLimits::total_timeout`].
    #[error("host-meta for {domain} timed out after {after:?}")]
    Timeout {
        /// The XMPP domain.
        domain: String,
        /// The configured total timeout.
        after: Duration,
    },

    /// Neither `host-meta.json` nor `host-meta` gave a usable document.
    #[error("host-meta.json: {json}; host-meta: {xml}")]
    BothFailed {
        /// Why the JRD attempt failed.
        json: Box<HostMetaError>,
        /// Why the XRD attempt failed.
        xml: Box<HostMetaError>,
    },
}

impl HostMetaError {
    /// Whether the failure concerns reaching the host at all (DNS, TCP, TLS), as opposed to
    /// one document on it. The XRD fallback is skipped after such a failure: it lives on the
    /// same host and would fail the same way, only later.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            HostMetaError::InvalidDomain { .. }
                | HostMetaError::BadOverride { .. }
                | HostMetaError::Resolve { .. }
                | HostMetaError::Connect { .. }
                | HostMetaError::Tls { .. }
                | HostMetaError::Timeout { .. }
        )
    }

    /// Whether the failure was a timeout (for `remote-server-timeout` versus
    /// `remote-server-not-found`, RFC 6120 §8.3.3.15/16).
    pub fn is_timeout(&self) -> bool {
        match self {
            HostMetaError::Timeout { .. } => true,
            HostMetaError::Connect { timed_out, .. } => *timed_out,
            HostMetaError::BothFailed { json, xml } => json.is_timeout() || xml.is_timeout(),
            _ => false,
        }
    }
}

/// Why [`crate::Discovery::s2s_candidates`] found nowhere to connect.
///
/// The s2s layer answers queued stanzas with `remote-server-timeout` when
/// [`DiscoveryError::is_timeout`] holds and `remote-server-not-found` otherwise
/// (RFC 6120 §8.3.3.15, §8.3.3.16).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The domain is not a DNS name (an IP literal, empty, too long, bad characters): there is
    /// no SRV record or host-meta for it (RFC 6120 §3.2.1 works on DNS names).
    #[error("{domain:?} is not a DNS domain name: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The domain does not exist in DNS and offers no host-meta.
    #[error("{domain} does not exist (NXDOMAIN) and offers no host-meta")]
    NotFound {
        /// The remote domain.
        domain: String,
    },

    /// The domain says it offers no server-to-server service: SRV target `.` (RFC 2782,
    /// RFC 6120 §3.2.1, XEP-0368 §5: no A/AAAA fallback then), and no host-meta endpoint.
    #[error(
        "{domain} offers no XMPP server-to-server service (SRV target \".\", RFC 6120 §3.2.1)"
    )]
    NotOffered {
        /// The remote domain.
        domain: String,
    },

    /// Every way tried timed out or failed, at least one by timing out.
    #[error("discovery for {domain} timed out: {}", reasons.join("; "))]
    Timeout {
        /// The remote domain.
        domain: String,
        /// What was tried and how each failed.
        reasons: Vec<String>,
    },

    /// Nothing usable was found for another reason (no transport in the preference list
    /// applies, addresses unresolvable, the DNS resolver unavailable, …).
    #[error("no way to connect to {domain}: {}", reasons.join("; "))]
    NoCandidates {
        /// The remote domain.
        domain: String,
        /// What was tried and how each failed.
        reasons: Vec<String>,
    },

    /// The configuration is unusable; only from [`crate::Discovery::try_new`].
    #[error("invalid discovery configuration: {0}")]
    Config(String),
}

impl DiscoveryError {
    /// Whether the s2s layer should report `remote-server-timeout` (RFC 6120 §8.3.3.16)
    /// rather than `remote-server-not-found` (§8.3.3.15).
    pub fn is_timeout(&self) -> bool {
        matches!(self, DiscoveryError::Timeout { .. })
    }
}

/// Why a DNS lookup gave no answer. Internal to the crate's resolver layer; reported to
/// callers as text inside [`DiscoveryError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    /// NXDOMAIN: the name does not exist.
    #[error("{0}: no such name (NXDOMAIN)")]
    NxDomain(String),
    /// The name exists but has no records of the asked type (NODATA).
    #[error("{0}: no records")]
    NoRecords(String),
    /// The resolver timed out.
    #[error("{0}: DNS timeout")]
    Timeout(String),
    /// Any other failure (SERVFAIL, a malformed name, no resolver configured, …).
    #[error("{name}: {reason}")]
    Failed { name: String, reason: String },
}

impl LookupError {
    /// NXDOMAIN or NODATA: the DNS answered, there is nothing.
    pub(crate) fn is_empty_answer(&self) -> bool {
        matches!(self, LookupError::NxDomain(_) | LookupError::NoRecords(_))
    }
}
