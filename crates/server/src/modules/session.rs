//! RFC 3921 §3 session establishment, kept as a no-op for old clients (RFC 6121 Appendix E):
//! we advertise it as optional, and answer a request with success whenever it comes.

use super::{IqOutcome, IqRequest};
use crate::error::{StanzaError, StanzaErrorCondition};

pub fn handle(req: &IqRequest<'_>) -> IqOutcome {
    if req.payload.name() != "session" {
        return IqOutcome::NotMine;
    }
    if !req.is_set {
        return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
    }
    IqOutcome::Result(None)
}
