//! RFC 5802 §3 SCRAM client side, for weft's own tests, load generator and (later) outgoing
//! links. Kept apart from the server state machine so each checks the other.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::hash::Hash;
use crate::scram::encode_saslname;
use crate::Failure;

/// A SCRAM client conversation: `client_first`, then `client_final(server_first)`, then
/// `verify_server_final`.
#[derive(Debug)]
pub struct ScramClient {
    hash: Hash,
    username: String,
    password: String,
    nonce: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    client_first_bare: String,
    expected_server_final: Option<String>,
}

impl ScramClient {
    /// A client without channel binding (gs2 flag `n`).
    pub fn new(hash: Hash, username: &str, password: &str) -> Self {
        let nonce_bytes: [u8; 18] = rand::random();
        let nonce = BASE64.encode(nonce_bytes);
        let client_first_bare = format!("n={},r={nonce}", encode_saslname(username));
        ScramClient {
            hash,
            username: username.into(),
            password: password.into(),
            nonce,
            gs2_header: "n,,".into(),
            cb_data: Vec::new(),
            client_first_bare,
            expected_server_final: None,
        }
    }

    /// Uses channel binding (`p=TYPE`) with the given data, for a -PLUS mechanism.
    pub fn with_channel_binding(mut self, cb_type: &str, cb_data: &[u8]) -> Self {
        self.gs2_header = format!("p={cb_type},,");
        self.cb_data = cb_data.to_vec();
        self
    }

    /// Sets the gs2 header verbatim (e.g. `y,,`) — for tests of downgrade detection.
    pub fn with_gs2_header(mut self, header: &str) -> Self {
        self.gs2_header = header.into();
        self
    }

    /// The username as given.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// client-first-message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// client-final-message for the server's server-first-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, Failure> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| Failure::IncorrectEncoding)?;
        let mut r = None;
        let mut s = None;
        let mut i = None;
        for attr in server_first.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => r = Some(v),
                Some(("s=", v)) => s = Some(v),
                Some(("i=", v)) => i = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(r), Some(s), Some(i)) = (r, s, i) else {
            return Err(Failure::MalformedRequest);
        };
        if !r.starts_with(&self.nonce) || i == 0 {
            return Err(Failure::MalformedRequest);
        }
        let salt = BASE64.decode(s).map_err(|_| Failure::IncorrectEncoding)?;
        let mut cbind_input = self.gs2_header.clone().into_bytes();
        cbind_input.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={r}", BASE64.encode(cbind_input));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let h = self.hash;
        let password =
            stringprep::saslprep(&self.password).map_err(|_| Failure::MalformedRequest)?;
        let salted = h.hi(password.as_bytes(), &salt, i);
        let client_key = h.hmac(&salted, b"Client Key");
        let signature = h.hmac(&h.digest(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.expected_server_final = Some(format!(
            "v={}",
            BASE64.encode(h.hmac(&server_key, auth_message.as_bytes()))
        ));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's signature (mutual authentication, RFC 5802 §3).
    pub fn verify_server_final(&self, server_final: &[u8]) -> bool {
        self.expected_server_final
            .as_deref()
            .is_some_and(|e| e.as_bytes() == server_final)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelBindings, ScramCredentials, ScramServer};

    #[test]
    fn client_and_server_agree() {
        for hash in [Hash::Sha1, Hash::Sha256] {
            let creds = ScramCredentials::generate(hash, "pencil", 4096).unwrap();
            let mut server = ScramServer::new(hash, false, ChannelBindings::default(), false);
            let mut client = ScramClient::new(hash, "user", "pencil");
            let first = server.handle_client_first(&client.client_first()).unwrap();
            assert_eq!(first.username, "user");
            let sf = server.server_first(Some(&creds), 4096);
            let cf = client.client_final(&sf).unwrap();
            let fin = server.handle_client_final(&cf).unwrap();
            assert!(client.verify_server_final(&fin));
            assert!(!client.verify_server_final(b"v=AAAA"));
        }
    }

    #[test]
    fn wrong_password_is_refused() {
        let creds = ScramCredentials::generate(Hash::Sha256, "pencil", 4096).unwrap();
        let mut server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
        let mut client = ScramClient::new(Hash::Sha256, "user", "crayon");
        server.handle_client_first(&client.client_first()).unwrap();
        let sf = server.server_first(Some(&creds), 4096);
        let cf = client.client_final(&sf).unwrap();
        assert_eq!(server.handle_client_final(&cf), Err(Failure::NotAuthorized));
    }
}
