//! XEP-0030 Service Discovery: disco#info and disco#items for the server and for accounts.

use std::sync::Arc;

use minidom::Element;
use rxml::xml_ncname;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "disco",
    default_enabled: true,
    build: |_| Ok(Arc::new(Disco)),
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
    server_features: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
    account_features: &[ns::DISCO_INFO],
    ..ModuleSpec::named("disco")
};

/// Answers from the features every loaded module declares.
pub struct Disco;

#[async_trait::async_trait]
impl Module for Disco {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        if req.payload.attr("node").is_some() {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        }
        let info = req.payload.is("query", ns::DISCO_INFO);
        if !info {
            return IqOutcome::Result(Some(Element::builder("query", ns::DISCO_ITEMS).build()));
        }
        let mut query = Element::builder("query", ns::DISCO_INFO);
        let features = if req.to.node().is_none() {
            query = query.append(identity("server", "im", "weft"));
            state.modules.server_features()
        } else {
            // XEP-0030 §3.1 for an account: the account identity.
            query = query.append(identity("account", "registered", ""));
            state.modules.account_features()
        };
        for feature in features {
            query = query.append(feature_el(feature));
        }
        IqOutcome::Result(Some(query.build()))
    }
}

fn identity(category: &str, kind: &str, name: &str) -> Element {
    let mut b = Element::builder("identity", ns::DISCO_INFO)
        .attr(xml_ncname!("category").into(), category)
        .attr(xml_ncname!("type").into(), kind);
    if !name.is_empty() {
        b = b.attr(xml_ncname!("name").into(), name);
    }
    b.build()
}

fn feature_el(var: &str) -> Element {
    Element::builder("feature", ns::DISCO_INFO)
        .attr(xml_ncname!("var").into(), var)
        .build()
}
