//! The PUT URL's token: what a slot allows, signed with the server's key, so that the HTTP
//! side verifies an upload without any stored state (and any node of a cluster sharing the
//! key can take it).
//!
//! The URL's path carries the slot's id (128 random bits, which also make the GET URL
//! unguessable) and the file name; the `token` query parameter carries the claims the path
//! does not — expiry, size, content type and the uploader, whose quota the file counts
//! against — and an HMAC-SHA-256 over the id, the file name and those claims. Anyone who
//! changes any of them gets a token that does not verify. A token used once cannot be used
//! again because the store refuses a second file under the same id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Versions the MAC input, so that a later format can never verify as this one.
const CONTEXT: &[u8] = b"weft XEP-0363 upload slot v1";

/// What a slot allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Until when the PUT is accepted, in seconds since the Unix epoch.
    pub expires: i64,
    /// Exact length of the file.
    pub size: u64,
    /// The media type asked for in the slot request, or empty.
    pub content_type: String,
    /// The uploader's bare JID.
    pub owner: String,
}

fn mac(key: &[u8], id: &str, filename: &str, claims: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [
        CONTEXT,
        id.as_bytes(),
        filename.as_bytes(),
        claims.as_bytes(),
    ] {
        // Length-prefixed: no two different inputs make the same byte string.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The token for a slot `id` for `filename`.
pub fn sign(key: &[u8], id: &str, filename: &str, claims: &Claims) -> String {
    let encoded = format!(
        "{}.{}.{}.{}",
        claims.expires,
        claims.size,
        B64.encode(&claims.content_type),
        B64.encode(&claims.owner)
    );
    let tag = mac(key, id, filename, &encoded).finalize().into_bytes();
    format!("{encoded}.{}", B64.encode(tag))
}

/// The claims of `token` when it was made by [`sign`] with `key` for this id and file name
/// (in constant time); expiry is the caller's to check.
pub fn verify(key: &[u8], id: &str, filename: &str, token: &str) -> Option<Claims> {
    let (encoded, tag) = token.rsplit_once('.')?;
    let tag = B64.decode(tag).ok()?;
    mac(key, id, filename, encoded).verify_slice(&tag).ok()?;
    let mut parts = encoded.split('.');
    let expires = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    let content_type = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    let owner = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Claims {
        expires,
        size,
        content_type,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_what_was_signed() {
        let claims = Claims {
            expires: 1_700_000_000,
            size: 23456,
            content_type: "image/jpeg".into(),
            owner: "romeo@montague.tld".into(),
        };
        let key = b"0123456789abcdef0123456789abcdef";
        let token = sign(key, "abc123", "très cool.jpg", &claims);
        assert_eq!(
            verify(key, "abc123", "très cool.jpg", &token),
            Some(claims.clone())
        );
        assert_eq!(
            verify(b"another key", "abc123", "très cool.jpg", &token),
            None
        );
        assert_eq!(verify(key, "abc124", "très cool.jpg", &token), None);
        assert_eq!(verify(key, "abc123", "tres cool.jpg", &token), None);
        // A larger size, a longer life or another owner with the old tag.
        let tag = token.rsplit_once('.').unwrap().1;
        for forged in [
            format!(
                "1700000000.99999.{}.{}.{tag}",
                B64.encode("image/jpeg"),
                B64.encode("romeo@montague.tld")
            ),
            format!(
                "1800000000.23456.{}.{}.{tag}",
                B64.encode("image/jpeg"),
                B64.encode("romeo@montague.tld")
            ),
            format!(
                "1700000000.23456.{}.{}.{tag}",
                B64.encode("image/jpeg"),
                B64.encode("juliet@capulet.lit")
            ),
        ] {
            assert_eq!(verify(key, "abc123", "très cool.jpg", &forged), None);
        }
        assert_eq!(verify(key, "abc123", "très cool.jpg", "garbage"), None);
        assert_eq!(verify(key, "abc123", "très cool.jpg", ""), None);
    }
}
