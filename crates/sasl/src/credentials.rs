//! RFC 5802 §3 stored SCRAM credentials (salt, iteration count, StoredKey, ServerKey):
//! derivation from a password and constant-time password checks for PLAIN.

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::error::SaslError;
use crate::hash::Hash;

/// Length of salts made by [`ScramCredentials::generate`]: 128 bits, as RFC 8018 §4.1
/// recommends for PBKDF2 salts (at least 64 bits).
pub const SALT_LEN: usize = 16;

/// Iteration count RFC 5802 §5.1 and RFC 7677 §4 give as a minimum for new credentials; also
/// what [`crate::ScramServer::server_first`] falls back to when the caller passes 0.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// What the server stores for one user and one hash: enough to verify SCRAM proofs and PLAIN
/// passwords, never the password itself.
#[derive(Clone)]
pub struct ScramCredentials {
    /// Which SCRAM family these belong to.
    pub hash: Hash,
    /// The salt sent as `s=`.
    pub salt: Vec<u8>,
    /// The iteration count sent as `i=`.
    pub iterations: u32,
    /// `StoredKey = H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// RFC 5802 §3: SaltedPassword = Hi(Normalize(password), salt, i); ClientKey/StoredKey/ServerKey.
    ///
    /// `Normalize` is SASLprep (RFC 4013); a password it rejects, or an empty one, is an error.
    pub fn derive(
        hash: Hash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        if iterations == 0 {
            return Err(SaslError::ZeroIterations);
        }
        if salt.is_empty() {
            return Err(SaslError::EmptySalt);
        }
        let password = saslprep_password(password)?;
        let salted_password = hash.hi(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted_password, b"Client Key");
        Ok(ScramCredentials {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted_password, b"Server Key"),
        })
    }

    /// Random 16+ byte salt.
    ///
    /// Derives fresh credentials with a [`SALT_LEN`]-byte salt from the operating system RNG.
    pub fn generate(hash: Hash, password: &str, iterations: u32) -> Result<Self, SaslError> {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Self::derive(hash, password, &salt, iterations)
    }

    /// Verify a plaintext password (for PLAIN) against these credentials, in constant time (subtle).
    ///
    /// Re-derives the keys with the stored salt and iteration count, then compares both keys
    /// without early exit. A password SASLprep rejects never verifies.
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(candidate) = Self::derive(self.hash, password, &self.salt, self.iterations) else {
            return false;
        };
        let stored = candidate.stored_key.ct_eq(&self.stored_key);
        let server = candidate.server_key.ct_eq(&self.server_key);
        (stored & server).into()
    }

    /// Checks that the record is usable: keys as long as the hash output, a salt, and a
    /// positive iteration count. Meant for the storage layer when loading records.
    pub fn validate(&self) -> Result<(), SaslError> {
        if self.iterations == 0 {
            return Err(SaslError::ZeroIterations);
        }
        if self.salt.is_empty() {
            return Err(SaslError::EmptySalt);
        }
        let expected = self.hash.output_len();
        for key in [&self.stored_key, &self.server_key] {
            if key.len() != expected {
                return Err(SaslError::KeyLength {
                    hash: self.hash,
                    expected,
                    found: key.len(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ScramCredentials {
    // StoredKey and ServerKey are password-equivalent for an attacker who can also observe an
    // exchange (RFC 5802 §9), so they never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("hash", &self.hash)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// SASLprep (RFC 4013) with "stored string" strictness, as RFC 5802 §2.2 `Normalize()` asks.
/// `None` when the string contains prohibited or unassigned characters.
pub(crate) fn saslprep(s: &str) -> Option<String> {
    stringprep::saslprep(s).ok().map(|c| c.into_owned())
}

fn saslprep_password(password: &str) -> Result<String, SaslError> {
    if password.is_empty() {
        return Err(SaslError::EmptyPassword);
    }
    let prepared = saslprep(password).ok_or(SaslError::InvalidPassword)?;
    // Mapping can erase everything (e.g. a lone soft hyphen, RFC 4013 §2.1).
    if prepared.is_empty() {
        return Err(SaslError::EmptyPassword);
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    #[test]
    fn derive_matches_rfc5802_keys() {
        // RFC 5802 §5 example: ServerKey is what produces v=rmF9pqV8S7suAoZWja4dJRkFsKQ= there;
        // here we only check determinism and lengths, the full vector lives in scram tests.
        let salt = STANDARD.decode("QSXCR+Q6sek8bf92").unwrap();
        let a = ScramCredentials::derive(Hash::Sha1, "pencil", &salt, 4096).unwrap();
        let b = ScramCredentials::derive(Hash::Sha1, "pencil", &salt, 4096).unwrap();
        assert_eq!(a.stored_key, b.stored_key);
        assert_eq!(a.stored_key.len(), 20);
        assert_eq!(a.server_key.len(), 20);
        assert_ne!(a.stored_key, a.server_key);
        a.validate().unwrap();
    }

    #[test]
    fn derive_rejects_bad_input() {
        let d = |p: &str, s: &[u8], i| ScramCredentials::derive(Hash::Sha256, p, s, i).err();
        assert_eq!(d("", b"salt", 1), Some(SaslError::EmptyPassword));
        // U+00AD SOFT HYPHEN is mapped to nothing by RFC 4013 §2.1.
        assert_eq!(d("\u{ad}", b"salt", 1), Some(SaslError::EmptyPassword));
        // U+0007 BELL is an ASCII control character, prohibited by RFC 4013 §2.3.
        assert_eq!(d("pass\u{7}", b"salt", 1), Some(SaslError::InvalidPassword));
        assert_eq!(d("pencil", b"", 1), Some(SaslError::EmptySalt));
        assert_eq!(d("pencil", b"salt", 0), Some(SaslError::ZeroIterations));
    }

    #[test]
    fn saslprep_normalises_password() {
        // RFC 4013 §3 example: "I<U+00AD>X" prepares to "IX"; U+2168 ROMAN NUMERAL NINE to "IX".
        let c = ScramCredentials::derive(Hash::Sha1, "IX", b"salt", 16).unwrap();
        assert!(c.verify_password("I\u{ad}X"));
        assert!(c.verify_password("\u{2168}"));
        assert!(!c.verify_password("ix"));
    }

    #[test]
    fn generate_and_verify() {
        let c = ScramCredentials::generate(Hash::Sha256, "correct horse", 64).unwrap();
        assert_eq!(c.salt.len(), SALT_LEN);
        assert_eq!(c.iterations, 64);
        assert!(c.verify_password("correct horse"));
        assert!(!c.verify_password("correct horse "));
        assert!(!c.verify_password(""));
        assert!(!c.verify_password("\u{7}"));
        let d = ScramCredentials::generate(Hash::Sha256, "correct horse", 64).unwrap();
        assert_ne!(c.salt, d.salt, "salts must be random");
    }

    #[test]
    fn verify_rejects_corrupt_record() {
        let mut c = ScramCredentials::derive(Hash::Sha1, "pencil", b"salt", 16).unwrap();
        c.server_key.pop();
        assert!(!c.verify_password("pencil"));
        assert!(matches!(
            c.validate(),
            Err(SaslError::KeyLength { found: 19, .. })
        ));
    }

    #[test]
    fn debug_hides_keys() {
        let c = ScramCredentials::derive(Hash::Sha256, "pencil", b"salty", 16).unwrap();
        let debug = format!("{c:?}");
        for key in [&c.stored_key, &c.server_key] {
            assert!(!debug.contains(&format!("{key:?}")));
            assert!(!debug.contains(&STANDARD.encode(key)));
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!debug.contains(&hex));
            // Not even the first few elements of the byte list.
            let prefix = format!("{:?}", &key[..3]);
            assert!(!debug.contains(prefix.trim_end_matches(']')));
        }
        assert!(debug.contains("SHA256") || debug.contains("Sha256"));
    }
}
