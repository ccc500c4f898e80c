//! XEP-0049 Private XML Storage: each account keeps XML fragments of its own, one per
//! (element name, namespace), readable and writable by the account alone.

use crate::compliance::Claim;
use std::sync::Arc;

use minidom::Element;
use serde::Deserialize;
use weft_config::ConfigError;

use super::pep::bookmarks::LEGACY as LEGACY_BOOKMARKS;
use super::pep::Pep;
use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Section};
use crate::error::StanzaErrorCondition;
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "private",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "jabber:iq:private";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS],
    account_features: &[NS],
    specs: &[Claim::xep(49, "1.2", "modules::private")],
    ..ModuleSpec::named("private")
};

/// `[modules.private]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateSettings {
    /// Largest fragment kept, in bytes of its XML; larger gets `<not-acceptable/>`.
    pub max_size: weft_config::ByteSize,
}

impl Default for PrivateSettings {
    fn default() -> Self {
        PrivateSettings {
            max_size: weft_config::ByteSize::kib(64),
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: PrivateSettings = section.parse()?;
    Ok(Arc::new(Private { settings }))
}

pub struct Private {
    settings: PrivateSettings,
}

/// The store's key of a fragment.
fn key(fragment: &Element) -> String {
    format!("{NS} {} {}", fragment.ns(), fragment.name())
}

#[async_trait::async_trait]
impl Module for Private {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" {
            return IqOutcome::NotMine;
        }
        // XEP-0049 §3: only the account itself.
        if !req.from_owner() {
            return IqOutcome::error(StanzaErrorCondition::Forbidden, "not your private storage");
        }
        let mut children = req.payload.children();
        let (Some(fragment), None) = (children.next(), children.next()) else {
            return IqOutcome::error(
                StanzaErrorCondition::NotAcceptable,
                "exactly one child element names the fragment (XEP-0049 §3)",
            );
        };
        // XEP-0049 §3: these namespaces are not storage.
        let reserved = [ns::CLIENT, ns::SERVER, NS];
        if reserved.contains(&fragment.ns().as_str()) {
            return IqOutcome::error(
                StanzaErrorCondition::NotAcceptable,
                "the fragment's namespace is reserved (XEP-0049 §3)",
            );
        }
        let user = req.to.to_bare();
        let (domain, node) = (
            user.domain().as_str(),
            user.node().map_or("", |n| n.as_str()),
        );
        let store = &state.storage.private_xml;
        let key = key(fragment);
        let pep = state.modules.find::<Pep>();
        let bookmarks = fragment.is("storage", LEGACY_BOOKMARKS);
        if req.is_set {
            let xml = String::from(fragment);
            if xml.len() > self.settings.max_size.as_usize() {
                return IqOutcome::error(
                    StanzaErrorCondition::NotAcceptable,
                    &format!("larger than {} bytes", self.settings.max_size.as_usize()),
                );
            }
            if let Err(e) = store.set_private(domain, node, &key, &xml).await {
                return IqOutcome::storage_failed("private storage", e);
            }
            // XEP-0402 §5.3: legacy bookmarks become native ones.
            if let (true, Some(pep)) = (bookmarks, pep) {
                pep.legacy_bookmarks_stored(state, &user, fragment).await;
            }
            return IqOutcome::Result(None);
        }
        let stored = match store.get_private(domain, node, &key).await {
            Ok(stored) => stored.and_then(|xml| xml.parse::<Element>().ok()),
            Err(e) => return IqOutcome::storage_failed("private storage", e),
        };
        // XEP-0402 §5.3: legacy bookmarks read from the native ones.
        let converted = match (bookmarks, pep) {
            (true, Some(pep)) => pep.legacy_bookmarks(state, &user, stored.as_ref()).await,
            _ => None,
        };
        // Nothing stored: the empty fragment as asked (XEP-0049 §2.2).
        let content = converted
            .or(stored)
            .unwrap_or_else(|| Element::builder(fragment.name(), fragment.ns()).build());
        IqOutcome::Result(Some(Element::builder("query", NS).append(content).build()))
    }
}
