//! XEP-0199 XMPP Ping: the server answers pings to itself and to accounts it hosts.

use crate::compliance::Claim;
use std::sync::Arc;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "ping",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Ping)),
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[ns::PING],
    server_features: &[ns::PING],
    specs: &[Claim::xep(199, "2.0.1", "modules::ping")],
    ..ModuleSpec::named("ping")
};

pub struct Ping;

#[async_trait::async_trait]
impl Module for Ping {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, _state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "ping" {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            // XEP-0199 §3 defines only type='get'.
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        IqOutcome::Result(None)
    }
}
