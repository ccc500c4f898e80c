//! RFC 4616 PLAIN: parsing `[authzid] NUL authcid NUL passwd`. The password check itself is
//! [`crate::ScramCredentials::verify_password`], since passwords are stored only as SCRAM keys.

use std::fmt;

use crate::credentials::saslprep;
use crate::failure::Failure;

/// A parsed PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// The identity to act as, when it differs from the authenticated one; not prepared,
    /// because in XMPP it is a JID the caller validates (RFC 6120 §6.3.8).
    pub authzid: Option<String>,
    /// The authentication identity (the username), SASLprep'ed (RFC 4616 §2).
    pub authcid: String,
    /// The password, SASLprep'ed (RFC 4616 §2).
    pub password: String,
}

impl fmt::Debug for PlainMessage {
    // The password must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a PLAIN initial response (RFC 4616 §2), after base64 decoding.
///
/// * not UTF-8 → [`Failure::IncorrectEncoding`];
/// * not exactly two NULs, an empty authcid or password, or an authcid/password SASLprep
///   rejects → [`Failure::MalformedRequest`] (RFC 4616 §2 grammar `1*SAFE`, and §4: the server
///   "MUST fail" when preparation fails).
///
/// An empty authzid means none was given.
pub fn parse_plain(msg: &[u8]) -> Result<PlainMessage, Failure> {
    let text = std::str::from_utf8(msg).map_err(|_| Failure::IncorrectEncoding)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    let prepare = |s: &str| {
        saslprep(s)
            .filter(|p| !p.is_empty())
            .ok_or(Failure::MalformedRequest)
    };
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: prepare(authcid)?,
        password: prepare(password)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_authzid() {
        let m = parse_plain(b"\0juliet\0r0m30myr0m30").unwrap();
        assert_eq!(m.authzid, None);
        assert_eq!(m.authcid, "juliet");
        assert_eq!(m.password, "r0m30myr0m30");
    }

    #[test]
    fn with_authzid() {
        let m = parse_plain(b"juliet@example.com\0juliet\0r0m30").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("juliet@example.com"));
        assert_eq!(m.authcid, "juliet");
        assert_eq!(m.password, "r0m30");
    }

    #[test]
    fn saslprep_applied() {
        // U+00A0 NO-BREAK SPACE maps to SPACE; U+00AD SOFT HYPHEN to nothing (RFC 4013 §2.1).
        let m = parse_plain("\0ju\u{ad}liet\0a\u{a0}b".as_bytes()).unwrap();
        assert_eq!(m.authcid, "juliet");
        assert_eq!(m.password, "a b");
    }

    #[test]
    fn malformed() {
        for msg in [
            &b""[..],
            b"juliet",
            b"juliet\0secret",
            b"\0juliet\0",
            b"\0\0secret",
            b"\0juliet\0sec\0ret",
            b"a\0b\0c\0d",
            "\0juliet\0\u{ad}".as_bytes(),
            b"\0juliet\0bell\x07",
            b"\0jul\x01iet\0secret",
        ] {
            assert_eq!(parse_plain(msg), Err(Failure::MalformedRequest), "{msg:?}");
        }
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            parse_plain(b"\0juliet\0\xff\xfe"),
            Err(Failure::IncorrectEncoding)
        );
        assert_eq!(
            parse_plain(b"\xc3\0juliet\0secret"),
            Err(Failure::IncorrectEncoding)
        );
    }

    #[test]
    fn debug_hides_password() {
        let m = parse_plain(b"\0juliet\0hunter2").unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
    }
}
