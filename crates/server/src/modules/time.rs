//! XEP-0202 Entity Time for the server's JID, and the XEP-0082 date-time format that delay
//! stamps (XEP-0203) share. Written by hand: a UTC civil date from a Unix time is twenty
//! lines (H. Hinnant's days-to-civil), not worth a date crate in the server.

use crate::compliance::Claim;
use std::sync::Arc;

use minidom::Element;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "time",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Time)),
};

const NS_TIME: &str = "urn:xmpp:time";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS_TIME],
    server_features: &[NS_TIME],
    specs: &[Claim::xep(202, "2.0", "modules::time")],
    ..ModuleSpec::named("time")
};

pub struct Time;

#[async_trait::async_trait]
impl Module for Time {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, _state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "time" || req.to.node().is_some() {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let text = |name: &str, value: &str| Element::builder(name, NS_TIME).append(value).build();
        IqOutcome::Result(Some(
            Element::builder("time", NS_TIME)
                .append(text("tzo", "+00:00"))
                .append(text(
                    "utc",
                    &xep0082(now.as_secs() as i64, now.subsec_millis()),
                ))
                .build(),
        ))
    }
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` (XEP-0082 DateTime, UTC) for a Unix time.
pub fn xep0082(unix_secs: i64, millis: u32) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(xep0082(0, 0), "1970-01-01T00:00:00.000Z");
        // XEP-0082's own example instant.
        assert_eq!(xep0082(1_025_008_640, 0), "2002-06-25T12:37:20.000Z");
        assert_eq!(xep0082(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(xep0082(1_796_601_599, 999), "2026-12-06T23:59:59.999Z");
    }
}
