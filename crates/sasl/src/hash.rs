//! RFC 5802 §2.2 primitives — H(), HMAC() and Hi() — for the hashes SCRAM uses in XMPP
//! (SHA-1 per RFC 5802, SHA-256 per RFC 7677), on RustCrypto.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash function of a SCRAM mechanism family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SHA-1, for SCRAM-SHA-1(-PLUS) (RFC 5802).
    Sha1,
    /// SHA-256, for SCRAM-SHA-256(-PLUS) (RFC 7677).
    Sha256,
}

impl Hash {
    /// The IANA hash name as it appears in the mechanism name: `"SHA-1"` or `"SHA-256"`.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "SHA-1",
            Hash::Sha256 => "SHA-256",
        }
    }

    /// Inverse of [`Hash::name`]; useful when reading stored credentials.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SHA-1" => Some(Hash::Sha1),
            "SHA-256" => Some(Hash::Sha256),
            _ => None,
        }
    }

    /// Output length of H in bytes (and so of StoredKey, ServerKey and ClientProof).
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    /// RFC 5802 §2.2 `H(str)`.
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// RFC 5802 §2.2 `HMAC(key, str)`.
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => hmac_with::<Hmac<Sha1>>(key, data),
            Hash::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        }
    }

    /// RFC 5802 §2.2 `Hi(str, salt, i)`, which is PBKDF2 (RFC 8018) with HMAC-H and dkLen = |H|.
    pub(crate) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hmac_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC is defined for keys of any length (RFC 2104 §2), so this cannot fail.
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in [Hash::Sha1, Hash::Sha256] {
            assert_eq!(Hash::from_name(h.name()), Some(h));
            assert_eq!(h.digest(b"").len(), h.output_len());
            assert_eq!(h.hmac(b"k", b"").len(), h.output_len());
        }
        assert_eq!(Hash::from_name("SHA-512"), None);
    }

    #[test]
    fn hi_is_pbkdf2() {
        // RFC 6070 PBKDF2-HMAC-SHA1 test vector: "password", "salt", c=1.
        assert_eq!(
            Hash::Sha1.hi(b"password", b"salt", 1),
            [
                0x0c, 0x60, 0xc8, 0x0f, 0x96, 0x1f, 0x0e, 0x71, 0xf3, 0xa9, 0xb5, 0x24, 0xaf, 0x60,
                0x12, 0x06, 0x2f, 0xe0, 0x37, 0xa6
            ]
        );
    }
}
