//! XEP-0092 Software Version for the server's own JID.

use minidom::Element;

use super::{IqOutcome, IqRequest};
use crate::error::{StanzaError, StanzaErrorCondition};

pub const FEATURES: &[&str] = &[crate::ns::VERSION];

pub fn handle(req: &IqRequest<'_>) -> IqOutcome {
    if req.payload.name() != "query" || req.to.node().is_some() {
        return IqOutcome::NotMine;
    }
    if req.is_set {
        return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
    }
    let text = |name: &str, value: &str| {
        Element::builder(name, crate::ns::VERSION)
            .append(value)
            .build()
    };
    IqOutcome::Result(Some(
        Element::builder("query", crate::ns::VERSION)
            .append(text("name", "weft"))
            .append(text("version", env!("CARGO_PKG_VERSION")))
            .build(),
    ))
}
