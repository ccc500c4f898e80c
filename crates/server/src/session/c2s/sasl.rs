//! C2S SASL (RFC 6120 §6): mechanism choice against the offer, PLAIN and SCRAM exchanges over
//! `<auth/>`/`<challenge/>`/`<response/>`, credential lookups, `<failure/>` conditions.

use base64::Engine;
use jid::BareJid;
use minidom::Element;
use rxml::xml_ncname;
use weft_sasl::{Failure, Hash, Mechanism, ScramServer};

use super::{stream_error, C2s, End};
use crate::error::StreamErrorCondition;
use crate::negotiation::c2s::PreAuthOffer;
use crate::ns;

impl C2s {
    async fn sasl_failure(&mut self, failure: Failure, text: Option<&str>) -> Result<(), End> {
        let mut f = Element::builder("failure", ns::SASL)
            .append(Element::builder(failure.condition(), ns::SASL).build());
        if let Some(text) = text {
            f = f.append(
                Element::builder("text", ns::SASL)
                    .attr_ns(rxml::Namespace::XML, xml_ncname!("lang").into(), "en")
                    .append(text)
                    .build(),
            );
        }
        self.framed.queue(&f.build());
        self.flush().await
    }

    /// One SASL exchange (RFC 6120 §6.4). Ok(Some) on success, Ok(None) after a `<failure/>`.
    pub(super) async fn sasl(
        &mut self,
        offer: &PreAuthOffer,
        auth: &Element,
    ) -> Result<Option<BareJid>, End> {
        let requested = auth.attr("mechanism").and_then(Mechanism::from_name);
        let mechanism = match requested {
            Some(m) if offer.offers(m) => m,
            Some(_) if offer.starttls => {
                self.sasl_failure(Failure::EncryptionRequired, Some("use TLS first"))
                    .await?;
                return Ok(None);
            }
            _ => {
                self.sasl_failure(Failure::InvalidMechanism, None).await?;
                return Ok(None);
            }
        };
        let initial = match decode_sasl_payload(&auth.text()) {
            Ok(data) => data,
            Err(f) => {
                self.sasl_failure(f, None).await?;
                return Ok(None);
            }
        };
        let result = match mechanism {
            Mechanism::Plain => self.sasl_plain(&initial).await?,
            m => match m.hash() {
                Some(hash) => self.sasl_scram(m, hash, offer, initial).await?,
                None => Err(Failure::InvalidMechanism),
            },
        };
        match result {
            Ok((account, additional)) => {
                let mut success = Element::builder("success", ns::SASL);
                if let Some(data) = additional {
                    success =
                        success.append(base64::engine::general_purpose::STANDARD.encode(data));
                }
                self.framed.queue(&success.build());
                self.flush().await?;
                tracing::info!(peer = %self.peer.addr, jid = %account, ?mechanism, "authenticated");
                Ok(Some(account))
            }
            Err(Failure::Aborted) => {
                self.sasl_failure(Failure::Aborted, None).await?;
                Ok(None)
            }
            Err(f) => {
                tracing::info!(peer = %self.peer.addr, ?mechanism, "authentication failed: {}", f.condition());
                self.sasl_failure(f, None).await?;
                Ok(None)
            }
        }
    }

    /// The account JID for a SASL username on this stream's domain (RFC 6120 §6.3.7 nodeprep).
    fn account_for(&self, username: &str) -> Result<BareJid, Failure> {
        BareJid::new(&format!("{username}@{}", self.domain)).map_err(|_| Failure::NotAuthorized)
    }

    /// The authzid must be absent or the account itself (no proxy authorisation for clients).
    fn check_authzid(&self, authzid: Option<&str>, account: &BareJid) -> Result<(), Failure> {
        match authzid {
            None => Ok(()),
            Some(a) => match BareJid::new(a) {
                Ok(j) if &j == account => Ok(()),
                _ => Err(Failure::InvalidAuthzid),
            },
        }
    }

    /// `&mut self` (not `&self`): the WebSocket inside is not `Sync`, so a shared borrow held
    /// across an await would make the session future non-`Send`.
    async fn credentials(
        &mut self,
        account: &BareJid,
        hash: Hash,
    ) -> Result<Option<weft_sasl::ScramCredentials>, End> {
        let Some(node) = account.node() else {
            return Ok(None);
        };
        match self
            .state
            .storage
            .accounts
            .scram_credentials(account.domain().as_str(), node.as_str(), hash)
            .await
        {
            Ok(c) => Ok(c),
            Err(e) => {
                tracing::error!("credential lookup failed: {e}");
                Err(stream_error(
                    StreamErrorCondition::InternalServerError,
                    "storage is unavailable",
                ))
            }
        }
    }

    async fn sasl_plain(
        &mut self,
        initial: &[u8],
    ) -> Result<Result<(BareJid, Option<Vec<u8>>), Failure>, End> {
        let msg = match weft_sasl::parse_plain(initial) {
            Ok(m) => m,
            Err(f) => return Ok(Err(f)),
        };
        let account = match self.account_for(&msg.authcid) {
            Ok(a) => a,
            Err(f) => return Ok(Err(f)),
        };
        if let Err(f) = self.check_authzid(msg.authzid.as_deref(), &account) {
            return Ok(Err(f));
        }
        let creds = match self.credentials(&account, Hash::Sha256).await? {
            Some(c) => Some(c),
            None => self.credentials(&account, Hash::Sha1).await?,
        };
        match creds {
            Some(c) if c.verify_password(&msg.password) => Ok(Ok((account, None))),
            _ => Ok(Err(Failure::NotAuthorized)),
        }
    }

    async fn sasl_scram(
        &mut self,
        mechanism: Mechanism,
        hash: Hash,
        offer: &PreAuthOffer,
        mut client_first: Vec<u8>,
    ) -> Result<Result<(BareJid, Option<Vec<u8>>), Failure>, End> {
        let mut server = ScramServer::new(
            hash,
            mechanism.is_plus(),
            self.peer.bindings.clone(),
            offer.plus_offered(),
        );
        if client_first.is_empty() {
            // No initial response: ask for it with an empty challenge (RFC 6120 §6.4.2).
            client_first = match self.challenge(b"").await? {
                Ok(data) => data,
                Err(f) => return Ok(Err(f)),
            };
        }
        let first = match server.handle_client_first(&client_first) {
            Ok(f) => f,
            Err(f) => return Ok(Err(f)),
        };
        let account = match self.account_for(&first.username) {
            Ok(a) => a,
            Err(f) => return Ok(Err(f)),
        };
        if let Err(f) = self.check_authzid(first.authzid.as_deref(), &account) {
            return Ok(Err(f));
        }
        let creds = self.credentials(&account, hash).await?;
        let server_first =
            server.server_first(creds.as_ref(), self.state.config.c2s.scram_iterations);
        let client_final = match self.challenge(&server_first).await? {
            Ok(data) => data,
            Err(f) => return Ok(Err(f)),
        };
        match server.handle_client_final(&client_final) {
            Ok(server_final) => Ok(Ok((account, Some(server_final)))),
            Err(f) => Ok(Err(f)),
        }
    }

    /// Sends a challenge and returns the decoded response (or a failure for `<abort/>` or junk).
    async fn challenge(&mut self, data: &[u8]) -> Result<Result<Vec<u8>, Failure>, End> {
        let mut c = Element::builder("challenge", ns::SASL);
        if !data.is_empty() {
            c = c.append(base64::engine::general_purpose::STANDARD.encode(data));
        }
        self.framed.queue(&c.build());
        self.flush().await?;
        let el = self.next_element().await?;
        if el.is("abort", ns::SASL) {
            return Ok(Err(Failure::Aborted));
        }
        if !el.is("response", ns::SASL) {
            return Ok(Err(Failure::MalformedRequest));
        }
        Ok(decode_sasl_payload(&el.text()))
    }
}

/// RFC 6120 §6.4.2: "=" is an empty response; otherwise base64.
fn decode_sasl_payload(text: &str) -> Result<Vec<u8>, Failure> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|_| Failure::IncorrectEncoding)
}
