//! XEP-0398: XEP-0084 avatars (PEP) and XEP-0153 vCard avatars kept as one.
//! - A client publishes `urn:xmpp:avatar:metadata`: the image it names (stored before on
//!   `urn:xmpp:avatar:data`) becomes the vCard's PHOTO; empty metadata removes it.
//! - A client stores a vCard: a new PHOTO is published as avatar data and metadata (id = the
//!   SHA-1 of the image, as XEP-0084 and XEP-0153 both hash it); a vCard without one empties
//!   the metadata of an account that had an avatar.
//!
//! The vcard module adds the hash to the account's presence (XEP-0398 §4, XEP-0153).

use std::sync::Arc;

use base64::Engine;
use jid::{BareJid, Jid};
use minidom::Element;
use sha1::Digest;
use xmpp_parsers::avatar::{Data, Metadata};

use super::node_config::{Access, NodeConfig};
use super::requests::Publication;
use super::Pep;
use crate::modules::api::account_parts;
use crate::modules::vcard::Vcard;
use crate::state::ServerState;

pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
const NS_VCARD: &str = "vcard-temp";

/// Avatars are as public as the vCard they mirror.
fn avatar_config() -> NodeConfig {
    NodeConfig {
        access_model: Access::Open,
        ..NodeConfig::default()
    }
}

impl Pep {
    /// The client published avatar metadata: the vCard follows.
    pub(super) async fn avatar_published(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        metadata: &Element,
    ) {
        let Some(vcard) = state.modules.find::<Vcard>() else {
            return;
        };
        let Ok(metadata) = Metadata::try_from(metadata.clone()) else {
            return;
        };
        // The image stored on the data node: the info without a URL.
        let Some(info) = metadata.infos.iter().find(|i| i.url.is_none()) else {
            if metadata.infos.is_empty() {
                vcard.set_photo(state, owner, None).await;
            }
            return;
        };
        let id = info.id.to_hex();
        let (domain, user) = account_parts(owner);
        let items = match state
            .storage
            .pep
            .pep_items(domain, user, AVATAR_DATA, None)
            .await
        {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("PEP storage failed reading {owner}'s avatar: {e}");
                return;
            }
        };
        let Some(data) = items
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.payload.parse::<Element>().ok())
            .and_then(|p| Data::try_from(p).ok())
        else {
            tracing::debug!("{owner} published avatar metadata {id} without its data");
            return;
        };
        let binval = base64::engine::general_purpose::STANDARD.encode(&data.data);
        vcard
            .set_photo(state, owner, Some((&info.type_, &binval)))
            .await;
    }

    /// The client stored `card` as its vCard: the avatar nodes follow its PHOTO.
    pub async fn vcard_stored(&self, state: &Arc<ServerState>, owner: &BareJid, card: &Element) {
        let photo = card.get_child("PHOTO", NS_VCARD);
        let image = photo
            .and_then(|p| p.get_child("BINVAL", NS_VCARD))
            .map(|b| b.text().split_whitespace().collect::<String>())
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|bytes| !bytes.is_empty());
        let current = self.current_avatar(state, owner).await;
        let publisher = Jid::from(owner.clone());
        let Some(image) = image else {
            if current.is_some() {
                let empty = Element::builder("metadata", AVATAR_METADATA).build();
                self.publish_avatar(state, owner, &publisher, AVATAR_METADATA, "current", empty)
                    .await;
            }
            return;
        };
        let id = hex(&sha1::Sha1::digest(&image));
        if current.as_deref() == Some(id.as_str()) {
            return;
        }
        let mime = photo
            .and_then(|p| p.get_child("TYPE", NS_VCARD))
            .map(|t| t.text().trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "image/png".into());
        let data = Element::builder("data", AVATAR_DATA)
            .append(base64::engine::general_purpose::STANDARD.encode(&image))
            .build();
        if !self
            .publish_avatar(state, owner, &publisher, AVATAR_DATA, &id, data)
            .await
        {
            return;
        }
        let info = Element::builder("info", AVATAR_METADATA)
            .attr(rxml::xml_ncname!("id").into(), id.as_str())
            .attr(rxml::xml_ncname!("bytes").into(), image.len().to_string())
            .attr(rxml::xml_ncname!("type").into(), mime)
            .build();
        let metadata = Element::builder("metadata", AVATAR_METADATA)
            .append(info)
            .build();
        self.publish_avatar(state, owner, &publisher, AVATAR_METADATA, &id, metadata)
            .await;
    }

    /// The id of the image the account's metadata names, if any.
    async fn current_avatar(&self, state: &Arc<ServerState>, owner: &BareJid) -> Option<String> {
        let (domain, user) = account_parts(owner);
        let items = state
            .storage
            .pep
            .pep_items(domain, user, AVATAR_METADATA, Some(1))
            .await
            .ok()?;
        let metadata = Metadata::try_from(items.last()?.payload.parse::<Element>().ok()?).ok()?;
        metadata.infos.first().map(|i| i.id.to_hex())
    }

    async fn publish_avatar(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        publisher: &Jid,
        node: &str,
        id: &str,
        payload: Element,
    ) -> bool {
        let publication = Publication {
            node,
            id: Some(id.to_string()),
            payload: Some(payload),
            options: None,
            on_behalf: Some(avatar_config()),
        };
        match self.publish(state, owner, publisher, publication).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    "converting {owner}'s vCard photo to {node} failed: {:?}",
                    e.condition
                );
                false
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
