//! XEP-0092 Software Version for the server's own JID.

use crate::compliance::Claim;
use std::sync::Arc;

use minidom::Element;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "version",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Version)),
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[ns::VERSION],
    server_features: &[ns::VERSION],
    specs: &[Claim::xep(92, "1.1", "modules::version")],
    ..ModuleSpec::named("version")
};

pub struct Version;

#[async_trait::async_trait]
impl Module for Version {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, _state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" || req.to.node().is_some() {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        let text =
            |name: &str, value: &str| Element::builder(name, ns::VERSION).append(value).build();
        IqOutcome::Result(Some(
            Element::builder("query", ns::VERSION)
                .append(text("name", "weft"))
                .append(text("version", env!("CARGO_PKG_VERSION")))
                .build(),
        ))
    }
}
