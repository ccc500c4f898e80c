//! XEP-0199 XMPP Ping: the server answers pings to itself and to accounts it hosts.

use super::{IqOutcome, IqRequest};
use crate::error::{StanzaError, StanzaErrorCondition};

pub const FEATURES: &[&str] = &[crate::ns::PING];

pub fn handle(req: &IqRequest<'_>) -> IqOutcome {
    if req.payload.name() != "ping" {
        return IqOutcome::NotMine;
    }
    if req.is_set {
        // XEP-0199 §3 defines only type='get'.
        return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
    }
    IqOutcome::Result(None)
}
