//! XEP-0054 vcard-temp: every account's vCard, public to read, written by the account only;
//! and XEP-0153: the server adds the avatar's hash (`vcard-temp:x:update`) to the account's
//! broadcast presence when the client did not, so contacts learn of a new avatar.

use crate::compliance::Claim;
use std::sync::Arc;

use base64::Engine;
use dashmap::DashMap;

use super::account_set::AccountSet;
use jid::BareJid;
use minidom::Element;
use serde::Deserialize;
use sha1::Digest;
use weft_config::ConfigError;

use super::api::account_parts;
use super::pep::Pep;
use super::{
    Flow, IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Priority, Section, StanzaEvent,
    StanzaHook,
};
use crate::error::StanzaErrorCondition;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "vcard",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "vcard-temp";
const NS_UPDATE: &str = "vcard-temp:x:update";
/// The store's key of an account's vCard.
const KEY: &str = "vcard-temp";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    // Before the roster module broadcasts the presence.
    stanza_hooks: &[(StanzaHook::PresenceFromLocal, Priority(-20))],
    server_features: &[NS],
    account_features: &[NS],
    specs: &[
        Claim::xep(54, "1.3.0", "modules::vcard"),
        Claim::xep(153, "1.1", "modules::vcard: photo hashes in presence"),
    ],
    ..ModuleSpec::named("vcard")
};

/// `[modules.vcard]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VcardSettings {
    /// Largest vCard kept (avatars are inline, base64), in bytes of its XML.
    pub max_size: weft_config::ByteSize,
}

impl Default for VcardSettings {
    fn default() -> Self {
        VcardSettings {
            max_size: weft_config::ByteSize::kib(200),
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: VcardSettings = section.parse()?;
    Ok(Arc::new(Vcard {
        settings,
        photo_hashes: DashMap::new(),
        with_vcard: AccountSet::default(),
    }))
}

pub struct Vcard {
    settings: VcardSettings,
    /// XEP-0153 photo hash per account ("" for a vCard without photo), filled on first use.
    photo_hashes: DashMap<BareJid, String>,
    /// Accounts with a stored vCard (read at start, kept current): only their presence is
    /// looked at.
    with_vcard: AccountSet,
}

#[async_trait::async_trait]
impl Module for Vcard {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn concerns(&self, _hook: StanzaHook, account: &str) -> bool {
        self.with_vcard.contains(account)
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), weft_storage::StorageError> {
        for (domain, user) in state.storage.private_xml.accounts_with_private(KEY).await? {
            self.with_vcard.insert(format!("{user}@{domain}"));
        }
        Ok(())
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "vCard" {
            return IqOutcome::NotMine;
        }
        let Some(user) = req.to.node().is_some().then(|| req.to.to_bare()) else {
            return IqOutcome::NotMine;
        };
        let (domain, node) = account_parts(&user);
        let store = &state.storage.private_xml;
        if req.is_set {
            // XEP-0054 §3.2: a user publishes only their own vCard.
            if !req.from_owner() {
                return IqOutcome::error(StanzaErrorCondition::Forbidden, "not your vCard");
            }
            let xml = String::from(req.payload);
            let max = self.settings.max_size.as_usize();
            if xml.len() > max {
                return IqOutcome::error(
                    StanzaErrorCondition::NotAcceptable,
                    &format!("the vCard is larger than {max} bytes"),
                );
            }
            if let Err(e) = store.set_private(domain, node, KEY, &xml).await {
                return IqOutcome::storage_failed("vCard", e);
            }
            self.with_vcard.insert(user.to_string());
            self.photo_hashes
                .insert(user.clone(), photo_hash(req.payload));
            // XEP-0398: the avatar nodes follow the photo.
            if let Some(pep) = state.modules.find::<Pep>() {
                pep.vcard_stored(state, &user, req.payload).await;
            }
            return IqOutcome::Result(None);
        }
        // XEP-0054 §3.1: anyone may read; without one, an empty vCard.
        match store.get_private(domain, node, KEY).await {
            Ok(Some(xml)) => match xml.parse::<Element>() {
                Ok(card) => IqOutcome::Result(Some(card)),
                Err(_) => IqOutcome::Result(Some(Element::builder("vCard", NS).build())),
            },
            Ok(None) => IqOutcome::Result(Some(Element::builder("vCard", NS).build())),
            Err(e) => IqOutcome::storage_failed("vCard", e),
        }
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        _hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let mut stanza = event.stanza;
        let broadcast = event.to.is_none() && stanza.attr("type").is_none();
        if !broadcast || stanza.has_child("x", NS_UPDATE) {
            return Flow::Continue(stanza);
        }
        let user = event.from.to_bare();
        let hash = match self.photo_hashes.get(&user).map(|h| h.clone()) {
            Some(hash) => hash,
            None => {
                let (domain, node) = account_parts(&user);
                let stored = state
                    .storage
                    .private_xml
                    .get_private(domain, node, KEY)
                    .await;
                let hash = match stored {
                    Ok(Some(xml)) => xml
                        .parse::<Element>()
                        .map(|card| photo_hash(&card))
                        .unwrap_or_default(),
                    Ok(None) => String::new(),
                    Err(e) => {
                        tracing::warn!("vCard lookup failed: {e}");
                        return Flow::Continue(stanza);
                    }
                };
                self.photo_hashes.insert(user, hash.clone());
                hash
            }
        };
        if !hash.is_empty() {
            // XEP-0153 §4.1: the hash of the current avatar.
            stanza.append_child(
                Element::builder("x", NS_UPDATE)
                    .append(Element::builder("photo", NS_UPDATE).append(hash).build())
                    .build(),
            );
        }
        Flow::Continue(stanza)
    }
}

impl Vcard {
    /// Sets (or with `None` removes) the PHOTO of the account's vCard: `(type, base64)`
    /// (XEP-0398, an avatar published over PEP).
    pub async fn set_photo(
        &self,
        state: &Arc<ServerState>,
        user: &BareJid,
        photo: Option<(&str, &str)>,
    ) {
        let (domain, node) = account_parts(user);
        let store = &state.storage.private_xml;
        let card = match store.get_private(domain, node, KEY).await {
            Ok(stored) => stored.and_then(|xml| xml.parse::<Element>().ok()),
            Err(e) => {
                tracing::warn!("vCard lookup failed: {e}");
                return;
            }
        };
        let mut card = card.unwrap_or_else(|| Element::builder("vCard", NS).build());
        if photo.is_none() && !card.has_child("PHOTO", NS) {
            return;
        }
        card.remove_child("PHOTO", NS);
        if let Some((mime, binval)) = photo {
            card.append_child(
                Element::builder("PHOTO", NS)
                    .append(Element::builder("TYPE", NS).append(mime).build())
                    .append(Element::builder("BINVAL", NS).append(binval).build())
                    .build(),
            );
        }
        if let Err(e) = store
            .set_private(domain, node, KEY, &String::from(&card))
            .await
        {
            tracing::warn!("vCard storage failed: {e}");
            return;
        }
        self.with_vcard.insert(user.to_string());
        self.photo_hashes.insert(user.clone(), photo_hash(&card));
    }
}

/// XEP-0153 §4.1: the hex SHA-1 of the avatar's bytes; empty without a photo.
fn photo_hash(card: &Element) -> String {
    let Some(binval) = card
        .get_child("PHOTO", NS)
        .and_then(|p| p.get_child("BINVAL", NS))
    else {
        return String::new();
    };
    let text: String = binval.text().split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => sha1::Sha1::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_hash_of_the_decoded_bytes() {
        // "abc" in base64, wrapped as clients do; SHA-1("abc") from FIPS 180.
        let card: Element = "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>YW\n Jj</BINVAL></PHOTO></vCard>"
            .parse()
            .unwrap();
        assert_eq!(
            photo_hash(&card),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let none: Element = "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>"
            .parse()
            .unwrap();
        assert_eq!(photo_hash(&none), "");
    }
}
