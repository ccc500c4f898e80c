//! Errors of this crate that are not SASL `<failure/>` conditions (RFC 6120 §6.5 lives in
//! `failure.rs`): problems building or checking stored SCRAM credentials.

use crate::hash::Hash;

/// Why SCRAM credentials could not be derived or are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The password is rejected by SASLprep (RFC 4013 §2.3–2.5: prohibited, bidirectionally
    /// inconsistent or unassigned characters), so RFC 5802 §2.2 `Normalize()` is undefined.
    #[error("password is not valid under SASLprep (RFC 4013 §2)")]
    InvalidPassword,
    /// The password is empty, before or after SASLprep; RFC 4616 `passwd = 1*SAFE` and RFC 5802
    /// both presuppose a non-empty secret.
    #[error("password is empty (RFC 4616 §2 passwd = 1*SAFE)")]
    EmptyPassword,
    /// The salt is empty; RFC 5802 §5.1 `s=` carries base64 of a non-empty salt.
    #[error("salt is empty (RFC 5802 §5.1 s=)")]
    EmptySalt,
    /// The iteration count is zero; RFC 5802 §5.1 requires a positive `i=`.
    #[error("iteration count must be positive (RFC 5802 §5.1 i=)")]
    ZeroIterations,
    /// A stored key has the wrong length for its hash (RFC 5802 §3: StoredKey and ServerKey
    /// are outputs of H and HMAC), which means the record is corrupt or mislabelled.
    #[error("{hash} credentials carry a {found}-byte key, expected {expected} (RFC 5802 §3)")]
    KeyLength {
        /// The hash the record claims.
        hash: Hash,
        /// The output length of that hash.
        expected: usize,
        /// The length actually stored.
        found: usize,
    },
}
