//! RFC 5802 SCRAM (with RFC 7677 SHA-256 and the RFC 5802 §6 / RFC 9266 / RFC 5929 channel
//! binding of `-PLUS`): the server side as a three-step sans-IO state machine.
//!
//! Failure conditions chosen where the RFCs leave room (all end the exchange for good):
//!
//! | situation | condition |
//! |---|---|
//! | message not UTF-8; `c=` or `p=` not valid base64 | `incorrect-encoding` |
//! | any syntax error, bad `saslname` escape, `m=`, username SASLprep rejects | `malformed-request` |
//! | `p=` on a non-PLUS mechanism; `n`/`y` on a -PLUS mechanism | `malformed-request` |
//! | `p=` naming a type we do not know or this connection lacks | `not-authorized` |
//! | `y` while we advertised a -PLUS mechanism (downgrade, RFC 5802 §6) | `not-authorized` |
//! | client proof of the wrong length | `malformed-request` |
//! | wrong nonce, wrong `c=`, wrong proof, unknown user | `not-authorized` |
//! | a step called out of order, or after the exchange ended | `malformed-request` |
//!
//! An unavailable channel binding is `not-authorized` because RFC 5802 §6 says the server
//! "MUST fail authentication" and RFC 6120 has no channel-binding condition; the same
//! condition as a binding mismatch keeps an attacker from learning more than "no".

mod fake;
mod message;
pub(crate) use message::encode_saslname;
#[cfg(test)]
mod test_client;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::RngCore;
use subtle::{Choice, ConstantTimeEq};

use crate::channel_binding::{ChannelBindingType, ChannelBindings};
use crate::credentials::{saslprep, ScramCredentials, DEFAULT_ITERATIONS};
use crate::failure::Failure;
use crate::hash::Hash;
use crate::mechanism::Mechanism;
use message::{parse_client_final, parse_client_first, CbindFlag};

/// Random bytes in our half of the nonce: 24 (192 bits, 32 base64 characters), above the 18
/// the house minimum asks for; base64 of a multiple of 3 bytes has no `=` padding.
const SERVER_NONCE_BYTES: usize = 24;

/// What step 1 learned about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The username from `n=`, unescaped and SASLprep'ed: the key to look credentials up by.
    pub username: String,
    /// The authorization identity from the GS2 header `a=`, unescaped but not prepared: in
    /// XMPP it is a JID for the caller to validate (RFC 6120 §6.3.8).
    pub authzid: Option<String>,
}

/// The server side of one SCRAM exchange:
/// [`handle_client_first`](Self::handle_client_first) → [`server_first`](Self::server_first)
/// → [`handle_client_final`](Self::handle_client_final).
///
/// Any failure, including a step called out of order, ends the exchange: every later call
/// fails with [`Failure::MalformedRequest`]. A new `<auth/>` needs a new `ScramServer`.
pub struct ScramServer {
    hash: Hash,
    plus: bool,
    bindings: ChannelBindings,
    plus_offered: bool,
    fixed_server_nonce: Option<String>,
    channel_binding: Option<ChannelBindingType>,
    username: Option<String>,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingServerFirst(AfterClientFirst),
    AwaitingClientFinal(AfterServerFirst),
    Succeeded,
    Failed,
}

struct AfterClientFirst {
    gs2_header: String,
    cb_data: Option<Vec<u8>>,
    bare: String,
    client_nonce: String,
    username: String,
}

struct AfterServerFirst {
    /// gs2-header + cb-data: what `c=` must decode to.
    cbind_input: Vec<u8>,
    /// client nonce + server nonce: what `r=` must be.
    nonce: String,
    /// client-first-message-bare "," server-first-message ",": the start of AuthMessage.
    auth_message_prefix: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    /// False when the keys are fakes for an unknown user; folded into the proof check in
    /// constant time so that path costs the same and fails the same.
    known_user: bool,
}

impl ScramServer {
    /// `plus`: the client chose the -PLUS variant. `bindings`: what this connection offers. `plus_offered`: whether we advertised any -PLUS mechanism on this connection (for the gs2 'y' downgrade check, RFC 5802 §6).
    pub fn new(hash: Hash, plus: bool, bindings: ChannelBindings, plus_offered: bool) -> Self {
        ScramServer {
            hash,
            plus,
            bindings,
            plus_offered,
            fixed_server_nonce: None,
            channel_binding: None,
            username: None,
            state: State::AwaitingClientFirst,
        }
    }

    /// Starts an exchange for `mechanism`; `None` if it is not a SCRAM mechanism.
    pub fn for_mechanism(
        mechanism: Mechanism,
        bindings: ChannelBindings,
        plus_offered: bool,
    ) -> Option<Self> {
        Some(Self::new(
            mechanism.hash()?,
            mechanism.is_plus(),
            bindings,
            plus_offered,
        ))
    }

    /// Replaces our random nonce half with a fixed one, so published test vectors can be
    /// reproduced. Never use this outside tests: a predictable nonce enables replay.
    #[doc(hidden)]
    pub fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.fixed_server_nonce = Some(nonce.to_owned());
        self
    }

    /// Step 1: parse client-first-message (gs2 header + bare). Returns the SASLprep'ed username
    /// and optional authzid.
    ///
    /// See the module documentation for the failure conditions.
    pub fn handle_client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, Failure> {
        let result = self.client_first_inner(msg);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn client_first_inner(&mut self, msg: &[u8]) -> Result<ClientFirst, Failure> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            return Err(Failure::MalformedRequest);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| Failure::IncorrectEncoding)?;
        let parsed = parse_client_first(msg)?;

        let cb_data = match (self.plus, parsed.cbind_flag) {
            (false, CbindFlag::NotSupported) => None,
            // RFC 5802 §6: "y" says the client thinks we cannot bind; if we offered -PLUS
            // someone stripped it from our feature list.
            (false, CbindFlag::ClientOnly) if self.plus_offered => {
                return Err(Failure::NotAuthorized)
            }
            (false, CbindFlag::ClientOnly) => None,
            // RFC 5802 §6: a client that binds must choose the -PLUS name, and vice versa.
            (false, CbindFlag::Required(_)) => return Err(Failure::MalformedRequest),
            (true, CbindFlag::NotSupported | CbindFlag::ClientOnly) => {
                return Err(Failure::MalformedRequest)
            }
            (true, CbindFlag::Required(name)) => {
                let ty = ChannelBindingType::from_name(name).ok_or(Failure::NotAuthorized)?;
                let data = self.bindings.get(ty).ok_or(Failure::NotAuthorized)?;
                self.channel_binding = Some(ty);
                Some(data.to_vec())
            }
        };

        // RFC 5802 §5.1: the server SASLpreps the username and aborts if that fails or empties it.
        let username = saslprep(&parsed.username)
            .filter(|u| !u.is_empty())
            .ok_or(Failure::MalformedRequest)?;

        self.username = Some(username.clone());
        self.state = State::AwaitingServerFirst(AfterClientFirst {
            gs2_header: parsed.gs2_header.to_owned(),
            cb_data,
            bare: parsed.bare.to_owned(),
            client_nonce: parsed.client_nonce.to_owned(),
            username: username.clone(),
        });
        Ok(ClientFirst {
            username,
            authzid: parsed.authzid,
        })
    }

    /// Step 2: with the user's stored credentials for this hash (None when the user does not exist), produce server-first-message. When None, behave indistinguishably (fake deterministic-looking salt and the default iterations passed in) so the later proof simply fails with NotAuthorized — no user enumeration.
    ///
    /// Credentials for another hash, or with malformed keys, are treated like `None`. A
    /// `fallback_iterations` of 0 means [`DEFAULT_ITERATIONS`]. Called out of order, this ends
    /// the exchange and returns an empty message; [`try_server_first`](Self::try_server_first)
    /// reports that case as an error instead.
    pub fn server_first(
        &mut self,
        credentials: Option<&ScramCredentials>,
        fallback_iterations: u32,
    ) -> Vec<u8> {
        self.try_server_first(credentials, fallback_iterations)
            .unwrap_or_default()
    }

    /// [`server_first`](Self::server_first), but a call out of order is
    /// `Err(Failure::MalformedRequest)`.
    pub fn try_server_first(
        &mut self,
        credentials: Option<&ScramCredentials>,
        fallback_iterations: u32,
    ) -> Result<Vec<u8>, Failure> {
        let State::AwaitingServerFirst(first) = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(Failure::MalformedRequest);
        };

        let server_nonce = self.fixed_server_nonce.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; SERVER_NONCE_BYTES];
            // The thread's CSPRNG (ChaCha, seeded and periodically reseeded from the OS): a
            // nonce must be unpredictable, and a getrandom syscall per login bought nothing
            // more (it was one of the login's 20-odd syscalls).
            rand::thread_rng().fill_bytes(&mut bytes);
            BASE64.encode(bytes)
        });
        let nonce = format!("{}{}", first.client_nonce, server_nonce);

        let usable = credentials.filter(|c| c.hash == self.hash && c.validate().is_ok());
        let (salt, iterations, stored_key, server_key, known_user) = match usable {
            // The stored count is used as is: the server never lowers it.
            Some(c) => (
                c.salt.clone(),
                c.iterations,
                c.stored_key.clone(),
                c.server_key.clone(),
                true,
            ),
            None => {
                let iterations = match fallback_iterations {
                    0 => DEFAULT_ITERATIONS,
                    n => n,
                };
                let (stored_key, server_key) = fake::keys(self.hash);
                let salt = fake::salt(self.hash, &first.username);
                (salt, iterations, stored_key, server_key, false)
            }
        };

        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
        let mut cbind_input = first.gs2_header.into_bytes();
        cbind_input.extend_from_slice(first.cb_data.as_deref().unwrap_or_default());
        self.state = State::AwaitingClientFinal(AfterServerFirst {
            cbind_input,
            nonce,
            auth_message_prefix: format!("{},{server_first},", first.bare),
            stored_key,
            server_key,
            known_user,
        });
        Ok(server_first.into_bytes())
    }

    /// Step 3: verify client-final-message: channel binding data c= must equal base64(gs2-header + cb-data) exactly, nonce must match, proof must verify (constant time). On success return server-final-message "v=...".
    pub fn handle_client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let result = self.client_final_inner(msg);
        self.state = match result {
            Ok(_) => State::Succeeded,
            Err(_) => State::Failed,
        };
        result
    }

    fn client_final_inner(&self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let State::AwaitingClientFinal(ref sent) = self.state else {
            return Err(Failure::MalformedRequest);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| Failure::IncorrectEncoding)?;
        let parsed = parse_client_final(msg)?;
        let cbind_input = BASE64
            .decode(parsed.channel_binding)
            .map_err(|_| Failure::IncorrectEncoding)?;
        let proof = BASE64
            .decode(parsed.proof)
            .map_err(|_| Failure::IncorrectEncoding)?;
        if proof.len() != self.hash.output_len() {
            return Err(Failure::MalformedRequest);
        }

        // RFC 5802 §5.1 c=: the exact GS2 header (with authzid) plus, under p=, the binding data.
        let binding_ok = cbind_input.ct_eq(&sent.cbind_input);
        // RFC 5802 §5.1 r=: must be the combined nonce we sent in server-first-message.
        let nonce_ok = parsed.nonce.as_bytes().ct_eq(sent.nonce.as_bytes());

        // RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); check
        // H(ClientKey) == StoredKey.
        let auth_message = format!("{}{}", sent.auth_message_prefix, parsed.without_proof);
        let client_signature = self.hash.hmac(&sent.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = self.hash.digest(&client_key).ct_eq(&sent.stored_key);

        let ok = binding_ok & nonce_ok & proof_ok & Choice::from(u8::from(sent.known_user));
        if !bool::from(ok) {
            return Err(Failure::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&sent.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }

    /// The hash of this exchange.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Whether the client chose the -PLUS variant.
    pub fn is_plus(&self) -> bool {
        self.plus
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> Mechanism {
        match (self.hash, self.plus) {
            (Hash::Sha1, false) => Mechanism::ScramSha1,
            (Hash::Sha1, true) => Mechanism::ScramSha1Plus,
            (Hash::Sha256, false) => Mechanism::ScramSha256,
            (Hash::Sha256, true) => Mechanism::ScramSha256Plus,
        }
    }

    /// The channel binding type in use, once step 1 accepted a `p=` header.
    pub fn channel_binding(&self) -> Option<ChannelBindingType> {
        self.channel_binding
    }

    /// The prepared username, once step 1 succeeded.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// True once the client's proof verified and server-final-message was produced.
    pub fn is_success(&self) -> bool {
        matches!(self.state, State::Succeeded)
    }
}

impl fmt::Debug for ScramServer {
    // The state holds StoredKey and ServerKey; show only where the exchange stands.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingClientFirst => "awaiting-client-first",
            State::AwaitingServerFirst(_) => "awaiting-server-first",
            State::AwaitingClientFinal(_) => "awaiting-client-final",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism())
            .field("channel_binding", &self.channel_binding)
            .field("username", &self.username)
            .field("state", &state)
            .finish()
    }
}
