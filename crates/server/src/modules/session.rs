//! RFC 3921 §3 session establishment, kept as a no-op for old clients (RFC 6121 Appendix E):
//! we advertise it as optional, and answer a request with success whenever it comes.

use std::sync::Arc;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "session",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Session)),
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[ns::SESSION],
    ..ModuleSpec::named("session")
};

pub struct Session;

#[async_trait::async_trait]
impl Module for Session {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, _state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "session" {
            return IqOutcome::NotMine;
        }
        if !req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        IqOutcome::Result(None)
    }
}
