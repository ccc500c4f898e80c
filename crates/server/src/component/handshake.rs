//! XEP-0114 §3 handshake: the component proves the shared secret with the lowercase hex SHA-1
//! of the stream id and the secret. Pure functions, no I/O.

use sha1::{Digest, Sha1};

/// What a component must send in `<handshake/>` on the stream `stream_id`.
pub fn digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let bytes = h.finalize();
    let mut out = String::with_capacity(40);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// Whether `offered` (the text of the component's `<handshake/>`) proves `secret` on
/// `stream_id`. Compared in constant time, so the time taken tells nothing about how much of
/// it was right. Upper-case hex and surrounding whitespace are accepted, as Prosody and
/// ejabberd accept them.
pub fn verify(stream_id: &str, secret: &str, offered: &str) -> bool {
    let expected = digest(stream_id, secret);
    let offered = offered.trim().as_bytes();
    if offered.len() != expected.len() {
        return false;
    }
    expected
        .bytes()
        .zip(offered)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_lowercase_hex_sha1_of_id_then_secret() {
        // Computed independently: python3 -c "import hashlib; print(hashlib.sha1(b'3BF96D32secret').hexdigest())"
        assert_eq!(
            digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
        // SHA-1 of the empty string: the order and the encoding alone.
        assert_eq!(digest("", ""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn verify_accepts_the_digest_only() {
        let good = digest("id1", "s3cret");
        assert!(verify("id1", "s3cret", &good));
        assert!(verify("id1", "s3cret", &good.to_uppercase()));
        assert!(verify("id1", "s3cret", &format!("\n  {good} \n")));
        assert!(!verify("id1", "wrong", &good));
        assert!(!verify("id2", "s3cret", &good));
        assert!(!verify("id1", "s3cret", &good[..39]));
        assert!(!verify("id1", "s3cret", ""));
        assert!(!verify("id1", "s3cret", "s3cret"));
    }
}
