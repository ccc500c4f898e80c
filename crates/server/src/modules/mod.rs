//! Server features, one file each. A module answers IQs addressed to the server or, on behalf of
//! an account, to a user's bare JID, and lists its disco features. Adding a module means one file
//! here and one arm in `handle_iq`.

pub mod disco;
pub mod ping;
pub mod session;
pub mod version;

use jid::Jid;
use minidom::Element;

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;

/// An IQ get or set, validated to carry exactly one payload (RFC 6120 §8.2.3).
pub struct IqRequest<'a> {
    pub iq: &'a Element,
    pub payload: &'a Element,
    pub from: &'a Jid,
    /// The server's domain, or the bare JID of an account the server answers for.
    pub to: &'a Jid,
    pub is_set: bool,
}

/// What a module made of a request.
pub enum IqOutcome {
    /// type='result', with an optional payload.
    Result(Option<Element>),
    Error(StanzaError),
    /// Not this module's namespace.
    NotMine,
}

/// Every disco#info feature weft implements, for the server's own JID.
pub fn server_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    f.extend_from_slice(disco::FEATURES);
    f.extend_from_slice(ping::FEATURES);
    f.extend_from_slice(version::FEATURES);
    f.sort_unstable();
    f
}

/// Dispatches an IQ get/set addressed to the server or to an account's bare JID.
pub fn handle_iq(state: &ServerState, req: &IqRequest<'_>) -> IqOutcome {
    let payload_ns = req.payload.ns();
    let outcome = match payload_ns.as_str() {
        crate::ns::PING => ping::handle(req),
        crate::ns::DISCO_INFO | crate::ns::DISCO_ITEMS => disco::handle(state, req),
        crate::ns::VERSION => version::handle(req),
        crate::ns::SESSION => session::handle(req),
        _ => IqOutcome::NotMine,
    };
    match outcome {
        // RFC 6120 §8.4: an IQ in a namespace nobody serves gets service-unavailable.
        IqOutcome::NotMine => {
            IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
        }
        other => other,
    }
}
