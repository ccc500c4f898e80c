//! RFC 4422 Appendix A EXTERNAL: the message is only an optional authorization identity; the
//! authentication itself happened below SASL (a TLS client certificate), outside this crate.

use crate::failure::Failure;

/// Parses an EXTERNAL message, after base64 decoding.
///
/// Empty, or the single `=` that RFC 6120 §6.4.2 uses for an empty initial response, means
/// "derive the authorization identity from the credentials" → `Ok(None)`. Otherwise the
/// message is the authzid: not UTF-8 → [`Failure::IncorrectEncoding`]; containing NUL (never
/// part of a JID or of RFC 4422 `authzid-string`) → [`Failure::MalformedRequest`].
pub fn parse_external(msg: &[u8]) -> Result<Option<String>, Failure> {
    if msg.is_empty() || msg == b"=" {
        return Ok(None);
    }
    let authzid = std::str::from_utf8(msg).map_err(|_| Failure::IncorrectEncoding)?;
    if authzid.contains('\0') {
        return Err(Failure::MalformedRequest);
    }
    Ok(Some(authzid.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_derived() {
        assert_eq!(parse_external(b""), Ok(None));
        assert_eq!(parse_external(b"="), Ok(None));
    }

    #[test]
    fn authzid() {
        assert_eq!(
            parse_external(b"example.org"),
            Ok(Some("example.org".to_owned()))
        );
        assert_eq!(
            parse_external("jüliet@example.com".as_bytes()),
            Ok(Some("jüliet@example.com".to_owned()))
        );
    }

    #[test]
    fn invalid() {
        assert_eq!(parse_external(b"\xff"), Err(Failure::IncorrectEncoding));
        assert_eq!(parse_external(b"a\0b"), Err(Failure::MalformedRequest));
    }
}
