//! RFC 2782 target ordering (priority, then weighted random) and the RFC 6120 §3.2 / XEP-0368 rules that turn the `_xmpps-server._tcp` and `_xmpp-server._tcp` answers into a TCP connection plan. Pure functions.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::error::LookupError;

/// RFC 6120 §3.2.1 / §14.7: the port of the `xmpp-server` service, used when a domain has
/// no SRV records at all.
pub const XMPP_SERVER_PORT: u16 = 5269;

/// At most this many SRV records per service are used; the rest are ignored, so that a
/// hostile zone cannot make us resolve and try thousands of targets.
pub const MAX_SRV_RECORDS: usize = 16;

/// One SRV record (RFC 2782), as returned by DNS or given as a static answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The port the service listens on.
    pub port: u16,
    /// The target host, lower-cased, without a trailing dot; `"."` (or an empty string)
    /// means "decidedly not available" (RFC 2782).
    pub target: String,
}

impl SrvRecord {
    /// Build a record; the target is normalised (lower case, no trailing dot, `"."` kept).
    pub fn new(priority: u16, weight: u16, port: u16, target: &str) -> Self {
        SrvRecord {
            priority,
            weight,
            port,
            target: normalise_target(target),
        }
    }

    /// RFC 2782: a target of `.` means the service is decidedly not offered.
    pub fn is_not_offered(&self) -> bool {
        self.target == "."
    }
}

fn normalise_target(target: &str) -> String {
    if target == "." || target.is_empty() {
        return ".".into();
    }
    target.trim_end_matches('.').to_ascii_lowercase()
}

/// Order items by RFC 2782: ascending priority; inside one priority, the weighted random
/// selection of RFC 2782 ("Usage rules"), with weight-0 entries placed first so that they
/// have a small but non-zero chance among weighted ones.
///
/// Used for SRV records and for XEP-0487 links alike (XEP-0487 §2.1 refers to RFC 2782 for
/// its `priority` and `weight`). The random source is a parameter so tests are
/// deterministic.
pub fn rfc2782_order<T, R: Rng + ?Sized>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (u16, u16),
    rng: &mut R,
) -> Vec<T> {
    // Shuffle first: entries of equal priority and zero weight then come out in random
    // order, spreading load where the zone expresses no preference.
    items.shuffle(rng);
    items.sort_by_key(|item| key(item).0);
    let mut out = Vec::with_capacity(items.len());
    let mut rest = items.into_iter().peekable();
    while let Some(first) = rest.next() {
        let priority = key(&first).0;
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|i| key(i).0 == priority) {
            group.push(next);
        }
        // Stable: zero-weight entries first, otherwise in shuffled order.
        group.sort_by_key(|i| key(i).1 != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|i| u32::from(key(i).1)).sum();
            let pick = rng.gen_range(0..=total);
            let mut running = 0u32;
            let index = group
                .iter()
                .position(|i| {
                    running += u32::from(key(i).1);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(index));
        }
    }
    out
}

/// What one SRV lookup said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SrvAnswer {
    /// Usable records (targets other than `.`), at most [`MAX_SRV_RECORDS`].
    Records(Vec<SrvRecord>),
    /// Only a `.` target: the service is decidedly not offered (RFC 2782).
    NotOffered,
}

impl SrvAnswer {
    /// Classify raw records.
    pub(crate) fn from_records(records: Vec<SrvRecord>) -> Option<Self> {
        if records.is_empty() {
            return None;
        }
        let usable: Vec<SrvRecord> = records
            .iter()
            .filter(|r| !r.is_not_offered())
            .take(MAX_SRV_RECORDS)
            .cloned()
            .collect();
        if usable.is_empty() {
            Some(SrvAnswer::NotOffered)
        } else {
            Some(SrvAnswer::Records(usable))
        }
    }
}

/// Which TCP binding an SRV record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpService {
    /// `_xmpps-server._tcp`: TLS from the first byte (XEP-0368).
    DirectTls,
    /// `_xmpp-server._tcp`: plain TCP, then STARTTLS (RFC 6120 §5).
    StartTls,
}

/// The outcome of the two SRV lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TcpPlan {
    /// Connect to these targets in this order.
    Targets(Vec<(TcpService, SrvRecord)>),
    /// No SRV records at all: the domain itself on port 5269, STARTTLS (RFC 6120 §3.2.2).
    Fallback,
    /// The domain said "no service" (`.` targets), and nothing else was offered.
    NotOffered,
}

/// Combine the `_xmpps-server` and `_xmpp-server` answers (XEP-0368 §3 and §5, RFC 6120 §3.2).
///
/// * Records of both services are ordered as one set by RFC 2782 (XEP-0368 §3 rule 1: "all
///   priorities and weights are mixed").
/// * A `.` answer removes its service. If `_xmpp-server` is `.` and `_xmpps-server` offers
///   nothing, the domain offers no s2s (RFC 6120 §3.2.1). If `_xmpps-server` is `.` and
///   `_xmpp-server` has no records, there is no A/AAAA fallback either (XEP-0368 §5: the
///   domain has shown it uses SRV).
/// * No records at all (NXDOMAIN, NODATA, or a failed lookup) falls back to the domain on
///   port 5269 (RFC 6120 §3.2.2).
pub(crate) fn plan_tcp<R: Rng + ?Sized>(
    xmpps: &Result<SrvAnswer, LookupError>,
    xmpp: &Result<SrvAnswer, LookupError>,
    rng: &mut R,
) -> TcpPlan {
    let mut targets = Vec::new();
    for (answer, service) in [(xmpps, TcpService::DirectTls), (xmpp, TcpService::StartTls)] {
        if let Ok(SrvAnswer::Records(records)) = answer {
            targets.extend(records.iter().cloned().map(|r| (service, r)));
        }
    }
    if !targets.is_empty() {
        return TcpPlan::Targets(rfc2782_order(targets, |(_, r)| (r.priority, r.weight), rng));
    }
    if matches!(xmpps, Ok(SrvAnswer::NotOffered)) || matches!(xmpp, Ok(SrvAnswer::NotOffered)) {
        TcpPlan::NotOffered
    } else {
        TcpPlan::Fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord::new(priority, weight, 5269, target)
    }

    fn targets(v: &[SrvRecord]) -> Vec<&str> {
        v.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn priority_first() {
        let mut rng = StdRng::seed_from_u64(1);
        let records = vec![
            rec(20, 0, "c"),
            rec(10, 100, "b"),
            rec(5, 0, "a"),
            rec(30, 1, "d"),
        ];
        for _ in 0..20 {
            let out = rfc2782_order(records.clone(), |r| (r.priority, r.weight), &mut rng);
            assert_eq!(targets(&out), ["a", "b", "c", "d"]);
        }
    }

    #[test]
    fn weights_are_proportional() {
        let mut rng = StdRng::seed_from_u64(7);
        let records = vec![rec(10, 10, "light"), rec(10, 90, "heavy")];
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let out = rfc2782_order(records.clone(), |r| (r.priority, r.weight), &mut rng);
            assert_eq!(out.len(), 2);
            if out[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        // Expect ~90 %; allow generous slack so the test is about the algorithm, not luck.
        assert!((1650..=1950).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn zero_weight_has_small_chance_and_all_zero_is_shuffled() {
        let mut rng = StdRng::seed_from_u64(3);
        let records = vec![rec(1, 0, "zero"), rec(1, 1000, "big")];
        let zero_first = (0..2000)
            .filter(|_| {
                rfc2782_order(records.clone(), |r| (r.priority, r.weight), &mut rng)[0].target
                    == "zero"
            })
            .count();
        assert!(zero_first < 40, "{zero_first}");
        let all_zero = vec![rec(1, 0, "a"), rec(1, 0, "b"), rec(1, 0, "c")];
        let a_first = (0..3000)
            .filter(|_| {
                rfc2782_order(all_zero.clone(), |r| (r.priority, r.weight), &mut rng)[0].target
                    == "a"
            })
            .count();
        assert!((800..=1200).contains(&a_first), "{a_first}");
    }

    #[test]
    fn nothing_is_lost_or_duplicated() {
        let mut rng = StdRng::seed_from_u64(11);
        let records: Vec<SrvRecord> = (0..40u16)
            .map(|i| rec(i % 3, i * 7 % 5, &format!("t{i}")))
            .collect();
        let mut out = rfc2782_order(records.clone(), |r| (r.priority, r.weight), &mut rng);
        out.sort_by(|a, b| a.target.cmp(&b.target));
        let mut expected = records;
        expected.sort_by(|a, b| a.target.cmp(&b.target));
        assert_eq!(out, expected);
        assert!(rfc2782_order(
            Vec::<SrvRecord>::new(),
            |r| (r.priority, r.weight),
            &mut rng
        )
        .is_empty());
        let max = vec![rec(0, u16::MAX, "a"), rec(0, u16::MAX, "b")];
        assert_eq!(
            rfc2782_order(max, |r| (r.priority, r.weight), &mut rng).len(),
            2
        );
    }

    #[test]
    fn dot_target_classification() {
        assert_eq!(SrvAnswer::from_records(vec![]), None);
        assert_eq!(
            SrvAnswer::from_records(vec![rec(0, 0, ".")]),
            Some(SrvAnswer::NotOffered)
        );
        assert_eq!(
            SrvRecord::new(0, 0, 1, "Example.ORG.").target,
            "example.org"
        );
        let many: Vec<SrvRecord> = (0..100).map(|i| rec(0, 0, &format!("h{i}"))).collect();
        match SrvAnswer::from_records(many) {
            Some(SrvAnswer::Records(r)) => assert_eq!(r.len(), MAX_SRV_RECORDS),
            other => panic!("{other:?}"),
        }
    }

    fn nx() -> Result<SrvAnswer, LookupError> {
        Err(LookupError::NxDomain("x".into()))
    }

    #[test]
    fn xep_0368_plans() {
        let mut rng = StdRng::seed_from_u64(5);
        let direct = Ok(SrvAnswer::Records(vec![rec(10, 0, "tls.example")]));
        let start = Ok(SrvAnswer::Records(vec![rec(5, 0, "plain.example")]));
        // Mixed as one set: the STARTTLS record has the better priority here.
        assert_eq!(
            plan_tcp(&direct, &start, &mut rng),
            TcpPlan::Targets(vec![
                (TcpService::StartTls, rec(5, 0, "plain.example")),
                (TcpService::DirectTls, rec(10, 0, "tls.example")),
            ])
        );
        assert_eq!(plan_tcp(&nx(), &nx(), &mut rng), TcpPlan::Fallback);
        let timeout = Err(LookupError::Timeout("x".into()));
        assert_eq!(plan_tcp(&timeout, &nx(), &mut rng), TcpPlan::Fallback);
        // `.` for Direct TLS: look at _xmpp-server, but never fall back to A/AAAA.
        let dot = Ok(SrvAnswer::NotOffered);
        assert_eq!(plan_tcp(&dot, &nx(), &mut rng), TcpPlan::NotOffered);
        assert!(matches!(plan_tcp(&dot, &start, &mut rng), TcpPlan::Targets(t) if t.len() == 1));
        // `.` for STARTTLS: Direct TLS records still count.
        assert_eq!(plan_tcp(&nx(), &dot, &mut rng), TcpPlan::NotOffered);
        assert!(
            matches!(plan_tcp(&direct, &dot, &mut rng), TcpPlan::Targets(t) if t[0].0 == TcpService::DirectTls)
        );
        assert_eq!(plan_tcp(&dot, &dot, &mut rng), TcpPlan::NotOffered);
    }
}
