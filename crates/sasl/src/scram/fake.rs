//! RFC 5802 §9 ("SCRAM ... discloses the salt and iteration count for any username"): stand-in
//! values for unknown users, so server-first-message does not reveal whether an account exists.

use std::sync::OnceLock;

use rand::rngs::OsRng;
use rand::RngCore;

use crate::credentials::SALT_LEN;
use crate::hash::Hash;

/// A per-process secret. The fake salt is a keyed hash of the username under it, so asking
/// twice for the same unknown user yields the same salt, as a real account would, while the
/// salt reveals nothing and cannot be precomputed by a client.
fn secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        s
    })
}

/// A stable, unpredictable salt for `username`, as long as the ones we generate.
pub(super) fn salt(hash: Hash, username: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(hash.name().len() + 1 + username.len());
    input.extend_from_slice(hash.name().as_bytes());
    input.push(0);
    input.extend_from_slice(username.as_bytes());
    let mut salt = Hash::Sha256.hmac(secret(), &input);
    salt.truncate(SALT_LEN);
    salt
}

/// Random StoredKey and ServerKey, so the final step does the same work as for a real user.
pub(super) fn keys(hash: Hash) -> (Vec<u8>, Vec<u8>) {
    let mut stored = vec![0u8; hash.output_len()];
    let mut server = vec![0u8; hash.output_len()];
    OsRng.fill_bytes(&mut stored);
    OsRng.fill_bytes(&mut server);
    (stored, server)
}
