//! A minimal RFC 5802 §3 SCRAM client for tests, written independently of the server code so
//! the two check each other (and both are checked against the RFC 5802 / RFC 7677 vectors).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::message::encode_saslname;
use crate::hash::Hash;

/// A test-only SCRAM client (RFC 5802 §3 client side).
pub(super) struct Client {
    pub(super) hash: Hash,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) nonce: String,
    pub(super) gs2_header: String,
    pub(super) cb_data: Vec<u8>,
}

pub(super) struct ClientFinalOut {
    pub(super) message: String,
    pub(super) expected_server_final: String,
}

impl Client {
    pub(super) fn new(hash: Hash, username: &str, password: &str) -> Self {
        Client {
            hash,
            username: username.into(),
            password: password.into(),
            nonce: "clientnonce+/0123456789".into(),
            gs2_header: "n,,".into(),
            cb_data: Vec::new(),
        }
    }

    pub(super) fn binding(mut self, gs2_header: &str, cb_data: &[u8]) -> Self {
        self.gs2_header = gs2_header.into();
        self.cb_data = cb_data.to_vec();
        self
    }

    pub(super) fn bare(&self) -> String {
        format!("n={},r={}", encode_saslname(&self.username), self.nonce)
    }

    pub(super) fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare()).into_bytes()
    }

    /// Builds client-final-message for `server_first`, using `nonce` as `r=` (normally the
    /// one the server sent).
    pub(super) fn final_with_nonce(
        &self,
        server_first: &[u8],
        nonce: Option<&str>,
    ) -> ClientFinalOut {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut attrs = server_first.split(',');
        let r = attrs.next().unwrap().strip_prefix("r=").unwrap();
        let s = attrs.next().unwrap().strip_prefix("s=").unwrap();
        let i: u32 = attrs
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(r.starts_with(&self.nonce), "server must echo our nonce");

        let mut cbind_input = self.gs2_header.clone().into_bytes();
        cbind_input.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={}", BASE64.encode(cbind_input), nonce.unwrap_or(r));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare());

        let h = self.hash;
        let password = stringprep::saslprep(&self.password).unwrap();
        let salted = h.hi(password.as_bytes(), &BASE64.decode(s).unwrap(), i);
        let client_key = h.hmac(&salted, b"Client Key");
        let signature = h.hmac(&h.digest(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        ClientFinalOut {
            message: format!("{without_proof},p={}", BASE64.encode(proof)),
            expected_server_final: format!(
                "v={}",
                BASE64.encode(h.hmac(&server_key, auth_message.as_bytes()))
            ),
        }
    }

    pub(super) fn final_for(&self, server_first: &[u8]) -> ClientFinalOut {
        self.final_with_nonce(server_first, None)
    }
}
