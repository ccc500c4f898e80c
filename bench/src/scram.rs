//! RFC 5802 §3 SCRAM client (SHA-1, and SHA-256 per RFC 7677) with the salted password cached.
//!
//! `weft_sasl::ScramClient` runs PBKDF2 on every login, which would make the generator's core,
//! not the server's, the limit on logins per second. `SaltedPassword` depends only on
//! (password, salt, iterations), so it is derived once per salt and every later login costs two
//! HMACs and a hash. Same maths as `weft_sasl`, checked against its server in the tests.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    Sha1,
    Sha256,
}

fn hmac(h: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match h {
        Hash::Sha1 => with::<Hmac<Sha1>>(key, data),
        Hash::Sha256 => with::<Hmac<Sha256>>(key, data),
    }
}

/// The keys derived from one salted password.
struct Keys {
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

type KeyCache = HashMap<(Hash, Vec<u8>, u32), Rc<Keys>>;

/// Salted-password cache for the one password all benchmark accounts share.
pub struct ScramCache {
    password: String,
    keys: RefCell<KeyCache>,
    /// PBKDF2 runs so far, reported so a run that missed the cache is visible.
    pub derivations: Cell<u64>,
}

impl ScramCache {
    pub fn new(password: &str) -> anyhow::Result<Self> {
        let password = stringprep::saslprep(password).context("password fails SASLprep")?;
        Ok(ScramCache {
            password: password.into_owned(),
            keys: RefCell::default(),
            derivations: Cell::new(0),
        })
    }

    fn keys(&self, h: Hash, salt: &[u8], iterations: u32) -> Rc<Keys> {
        let key = (h, salt.to_vec(), iterations);
        if let Some(k) = self.keys.borrow().get(&key) {
            return k.clone();
        }
        let p = self.password.as_bytes();
        let salted = match h {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(p, salt, iterations).to_vec(),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(p, salt, iterations).to_vec(),
        };
        self.derivations.set(self.derivations.get() + 1);
        let client_key = hmac(h, &salted, b"Client Key");
        let stored_key = match h {
            Hash::Sha1 => Sha1::digest(&client_key).to_vec(),
            Hash::Sha256 => Sha256::digest(&client_key).to_vec(),
        };
        let keys = Rc::new(Keys {
            client_key,
            stored_key,
            server_key: hmac(h, &salted, b"Server Key"),
        });
        self.keys.borrow_mut().insert(key, keys.clone());
        keys
    }
}

/// One SCRAM conversation without channel binding (gs2 header `n,,`).
pub struct ScramLogin {
    hash: Hash,
    nonce: String,
    client_first_bare: String,
    expected_server_final: Option<String>,
}

impl ScramLogin {
    pub fn new(hash: Hash, username: &str) -> Self {
        let nonce = B64.encode(rand::random::<[u8; 18]>());
        // RFC 5802 §5.1 saslname: ',' and '=' are escaped.
        let user = username.replace('=', "=3D").replace(',', "=2C");
        ScramLogin {
            hash,
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            expected_server_final: None,
        }
    }

    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    pub fn client_final(
        &mut self,
        server_first: &str,
        cache: &ScramCache,
    ) -> anyhow::Result<String> {
        let (mut r, mut s, mut i) = (None, None, None);
        for a in server_first.split(',') {
            match a.split_at_checked(2) {
                Some(("r=", v)) => r = Some(v),
                Some(("s=", v)) => s = Some(v),
                Some(("i=", v)) => i = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(r), Some(s), Some(i)) = (r, s, i) else {
            bail!("malformed server-first-message {server_first:?}");
        };
        if !r.starts_with(&self.nonce) || i == 0 {
            bail!("server-first-message has a foreign nonce or zero iterations");
        }
        let salt = B64.decode(s).context("salt is not base64")?;
        let keys = cache.keys(self.hash, &salt, i);
        // c= is base64("n,,"), the gs2 header without channel-binding data.
        let without_proof = format!("c=biws,r={r}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(self.hash, &keys.stored_key, auth.as_bytes());
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac(self.hash, &keys.server_key, auth.as_bytes());
        self.expected_server_final = Some(format!("v={}", B64.encode(server_signature)));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// RFC 5802 §3 mutual authentication: the server proves it knows ServerKey.
    pub fn verify_server_final(&self, server_final: &str) -> bool {
        self.expected_server_final.as_deref() == Some(server_final)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sasl::{ChannelBindings, ScramCredentials, ScramServer};

    #[test]
    fn agrees_with_weft_server_and_caches() {
        let cache = ScramCache::new("pencil").unwrap();
        for (h, wh) in [
            (Hash::Sha1, weft_sasl::Hash::Sha1),
            (Hash::Sha256, weft_sasl::Hash::Sha256),
        ] {
            let creds = ScramCredentials::derive(wh, "pencil", b"fixed salt", 4096).unwrap();
            for _ in 0..2 {
                let mut server = ScramServer::new(wh, false, ChannelBindings::default(), false);
                let mut client = ScramLogin::new(h, "user");
                server
                    .handle_client_first(client.client_first().as_bytes())
                    .unwrap();
                let sf = server.server_first(Some(&creds), 4096);
                let cf = client
                    .client_final(std::str::from_utf8(&sf).unwrap(), &cache)
                    .unwrap();
                let fin = server.handle_client_final(cf.as_bytes()).unwrap();
                assert!(client.verify_server_final(std::str::from_utf8(&fin).unwrap()));
            }
        }
        assert_eq!(
            cache.derivations.get(),
            2,
            "one PBKDF2 per (hash, salt, iterations)"
        );
    }
}
