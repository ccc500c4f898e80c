//! XEP-0487 §2.1 / §5.2: the host-meta cache — positive entries live for the document's `ttl` (clamped) or a default, failures for a negative TTL, and an expired document may stand in while a refresh fails. Concurrent lookups of one domain share one fetch.
//!
//! Each domain has a slot holding a `tokio::sync::OnceCell`: the first caller runs the
//! fetch inside `get_or_init`, others await the same cell. No lock is held across an await
//! (the map's mutex is taken only to find or replace a slot), and if the fetching caller is
//! cancelled, the next waiter takes the fetch over (`OnceCell` guarantees that).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::CacheLimits;
use crate::error::HostMetaError;
use crate::HostMeta;

/// A cached outcome.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub result: Result<Arc<HostMeta>, HostMetaError>,
    pub expires: Instant,
    /// Until when this document may stand in for a failed refresh (positive entries only).
    stale_until: Option<Instant>,
}

/// A domain's place in the cache: the cell to fill or read, and the document a failed
/// refresh may fall back to.
#[derive(Clone)]
pub(crate) struct Slot {
    pub cell: Arc<OnceCell<Entry>>,
    stale: Option<(Arc<HostMeta>, Instant)>,
}

pub(crate) struct Cache {
    limits: CacheLimits,
    map: Mutex<HashMap<String, Slot>>,
}

impl Cache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Cache {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The slot for `domain`: the current one if it is being filled or still fresh, else a
    /// new empty one (remembering a document that may still serve as stale).
    pub(crate) fn slot(&self, domain: &str, now: Instant) -> Slot {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match map.get(domain) {
            Some(slot) => match slot.cell.get() {
                None => return slot.clone(),
                Some(entry) if now < entry.expires => return slot.clone(),
                Some(entry) => match (&entry.result, entry.stale_until) {
                    (Ok(hm), Some(until)) if now < until => Some((hm.clone(), until)),
                    _ => None,
                },
            },
            None => None,
        };
        if !map.contains_key(domain) && map.len() >= self.limits.max_entries {
            evict(&mut map, now, self.limits.max_entries);
        }
        let slot = Slot {
            cell: Arc::new(OnceCell::new()),
            stale,
        };
        map.insert(domain.to_owned(), slot.clone());
        slot
    }

    /// Turn a fetch outcome into an entry with its expiry; a failure falls back to the
    /// slot's stale document if there is one (XEP-0487 §5.2: "fall back to expired data").
    pub(crate) fn entry(
        &self,
        slot: &Slot,
        result: Result<HostMeta, HostMetaError>,
        now: Instant,
    ) -> Entry {
        match result {
            Ok(hm) => {
                let ttl = positive_ttl(hm.doc.ttl(), &self.limits);
                let expires = now + ttl;
                Entry {
                    result: Ok(Arc::new(hm)),
                    expires,
                    stale_until: Some(expires + self.limits.max_stale),
                }
            }
            Err(e) => match &slot.stale {
                Some((hm, until)) => {
                    tracing::info!(url = %hm.url, error = %e, "host-meta refresh failed; using the expired document");
                    Entry {
                        result: Ok(hm.clone()),
                        // Retry the refresh after the negative TTL, never past the stale limit.
                        expires: (now + self.limits.negative_ttl).min(*until),
                        stale_until: Some(*until),
                    }
                }
                None => Entry {
                    result: Err(e),
                    expires: now + self.limits.negative_ttl,
                    stale_until: None,
                },
            },
        }
    }

    /// Forget everything (e.g. after a configuration reload).
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

/// A document's lifetime: its XEP-0487 `ttl` or the default, within [min_ttl, max_ttl].
pub(crate) fn positive_ttl(doc_ttl: Option<Duration>, limits: &CacheLimits) -> Duration {
    let ttl = doc_ttl.unwrap_or(limits.default_ttl);
    // `clamp` panics when min > max; a misconfiguration must not panic, so max wins.
    ttl.max(limits.min_ttl).min(limits.max_ttl)
}

/// Make room: drop expired entries; if still full, the filled entry that expires soonest.
/// Entries being filled are kept (someone is waiting on them).
fn evict(map: &mut HashMap<String, Slot>, now: Instant, max: usize) {
    map.retain(|_, slot| slot.cell.get().is_none_or(|e| now < e.expires));
    while map.len() >= max {
        let victim = map
            .iter()
            .filter_map(|(k, slot)| slot.cell.get().map(|e| (e.expires, k.clone())))
            .min();
        match victim {
            Some((_, key)) => {
                map.remove(&key);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{HostMeta2, HostMetaDoc, HostMetaFormat};

    fn limits() -> CacheLimits {
        CacheLimits {
            default_ttl: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86400),
            negative_ttl: Duration::from_secs(300),
            max_stale: Duration::from_secs(1000),
            max_entries: 3,
        }
    }

    fn hm(ttl: Option<u64>) -> HostMeta {
        let mut doc = HostMetaDoc::new(HostMetaFormat::Jrd);
        doc.host_meta2 = ttl.map(|t| HostMeta2 {
            ttl: Some(Duration::from_secs(t)),
            public_key_pins_sha256: vec![],
        });
        HostMeta {
            doc,
            url: "https://b.test/.well-known/host-meta.json".into(),
            verified_via_https: true,
        }
    }

    fn fail() -> HostMetaError {
        HostMetaError::Status {
            url: "u".into(),
            status: 404,
        }
    }

    #[test]
    fn ttl_clamping() {
        let l = limits();
        assert_eq!(positive_ttl(None, &l), Duration::from_secs(3600));
        assert_eq!(
            positive_ttl(Some(Duration::ZERO), &l),
            Duration::from_secs(60)
        );
        assert_eq!(
            positive_ttl(Some(Duration::from_secs(3000)), &l),
            Duration::from_secs(3000)
        );
        assert_eq!(
            positive_ttl(Some(Duration::MAX), &l),
            Duration::from_secs(86400)
        );
        let inverted = CacheLimits {
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(5),
            ..l
        };
        assert_eq!(positive_ttl(None, &inverted), Duration::from_secs(5));
    }

    #[test]
    fn fresh_expired_negative_and_stale() {
        let cache = Cache::new(limits());
        let t0 = Instant::now();
        let slot = cache.slot("b.test", t0);
        let entry = cache.entry(&slot, Ok(hm(Some(3000))), t0);
        assert_eq!(entry.expires, t0 + Duration::from_secs(3000));
        slot.cell.set(entry).unwrap();
        // Fresh: the same slot.
        let again = cache.slot("b.test", t0 + Duration::from_secs(2999));
        assert!(Arc::ptr_eq(&again.cell, &slot.cell));
        // Expired: a new slot that remembers the old document.
        let t1 = t0 + Duration::from_secs(3001);
        let refresh = cache.slot("b.test", t1);
        assert!(!Arc::ptr_eq(&refresh.cell, &slot.cell));
        let entry = cache.entry(&refresh, Err(fail()), t1);
        assert!(entry.result.is_ok(), "stale document stands in");
        assert_eq!(entry.expires, t1 + Duration::from_secs(300));
        refresh.cell.set(entry).unwrap();
        // After the stale limit, failures are failures.
        let t2 = t0 + Duration::from_secs(3000 + 1000 + 1);
        let late = cache.slot("b.test", t2);
        let entry = cache.entry(&late, Err(fail()), t2);
        assert_eq!(entry.result.unwrap_err(), fail());
        assert_eq!(entry.expires, t2 + Duration::from_secs(300));
    }

    #[test]
    fn stale_fallback_never_outlives_the_stale_limit() {
        let cache = Cache::new(limits());
        let t0 = Instant::now();
        let s = cache.slot("b.test", t0);
        s.cell.set(cache.entry(&s, Ok(hm(Some(60))), t0)).unwrap();
        let mut now = t0 + Duration::from_secs(61);
        let mut stale_served = 0;
        loop {
            let s = cache.slot("b.test", now);
            let e = cache.entry(&s, Err(fail()), now);
            let ok = e.result.is_ok();
            let expires = e.expires;
            s.cell.set(e).unwrap();
            if !ok {
                break;
            }
            stale_served += 1;
            assert!(expires <= t0 + Duration::from_secs(60 + 1000));
            now = expires;
        }
        assert!(stale_served >= 3, "{stale_served}");
    }

    #[test]
    fn bounded_size() {
        let cache = Cache::new(limits());
        let t0 = Instant::now();
        for (i, d) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let s = cache.slot(d, t0);
            let ttl = Some(100 + i as u64 * 100);
            s.cell.set(cache.entry(&s, Ok(hm(ttl)), t0)).unwrap();
        }
        assert_eq!(cache.len(), 3);
        // The survivors are the latest-expiring ones.
        let c = cache.slot("e", t0);
        assert!(c.cell.get().is_some());
        let a = cache.slot("a", t0);
        assert!(a.cell.get().is_none());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
