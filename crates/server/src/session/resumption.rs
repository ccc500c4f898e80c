//! XEP-0198 §5: the resumable sessions by SM-ID, and for a while after one ended the count of
//! stanzas it had handled (`<failed h=''/>`, so the client knows which of its stanzas to send
//! again). Only the lookup lives here; a session's state stays with its task, which hands it
//! over when asked through the slot registered here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jid::BareJid;
use tokio::time::Instant;

/// Ended sessions remembered at most; the oldest are forgotten first.
const MAX_ENDED: usize = 10_000;

/// What an SM-ID names, for the account that asks.
#[derive(Debug)]
pub enum Lookup<T> {
    /// A session that may be taken over: leave the request here.
    Live(Arc<T>),
    /// A session that ended after handling this many stanzas from the client.
    Ended {
        h: u32,
    },
    Unknown,
}

struct Live<T> {
    account: BareJid,
    slot: Arc<T>,
}

struct Ended {
    account: BareJid,
    h: u32,
    until: Instant,
}

pub struct ResumptionTable<T> {
    inner: Mutex<Inner<T>>,
    /// How long an ended session's count is kept.
    remember: Duration,
}

struct Inner<T> {
    live: HashMap<String, Live<T>>,
    ended: HashMap<String, Ended>,
    /// SM-IDs of `ended` in the order they end (and expire).
    expiry: VecDeque<String>,
}

impl<T> ResumptionTable<T> {
    pub fn new(remember: Duration) -> Self {
        ResumptionTable {
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                ended: HashMap::new(),
                expiry: VecDeque::new(),
            }),
            remember,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the session reachable under `id` (again, after a resumption).
    pub fn register(&self, id: &str, account: &BareJid, slot: Arc<T>) {
        let mut inner = self.lock();
        inner.ended.remove(id);
        inner.live.insert(
            id.to_string(),
            Live {
                account: account.clone(),
                slot,
            },
        );
    }

    /// The session under `id` if it belongs to `account`; a live one is removed (whoever takes
    /// it over registers it again). Another account's SM-ID is unknown to this one.
    pub fn take(&self, id: &str, account: &BareJid) -> Lookup<T> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        if inner.live.get(id).is_some_and(|l| &l.account == account) {
            if let Some(live) = inner.live.remove(id) {
                return Lookup::Live(live.slot);
            }
        }
        match inner.ended.get(id) {
            Some(e) if &e.account == account => Lookup::Ended { h: e.h },
            _ => Lookup::Unknown,
        }
    }

    /// The session registered under `id` with `slot` ended having handled `h` stanzas. A
    /// session registered since under the same id (resumed elsewhere) is left alone.
    pub fn ended(&self, id: &str, slot: &Arc<T>, h: u32) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.expire(now);
        let ours = match inner.live.get(id) {
            Some(l) => Arc::ptr_eq(&l.slot, slot),
            None => true,
        };
        if !ours {
            return;
        }
        let Some(live) = inner.live.remove(id) else {
            return;
        };
        if inner.expiry.len() >= MAX_ENDED {
            if let Some(oldest) = inner.expiry.pop_front() {
                inner.ended.remove(&oldest);
            }
        }
        inner.ended.insert(
            id.to_string(),
            Ended {
                account: live.account,
                h,
                until: now + self.remember,
            },
        );
        inner.expiry.push_back(id.to_string());
    }

    pub fn live_count(&self) -> usize {
        self.lock().live.len()
    }
}

impl<T> Inner<T> {
    fn expire(&mut self, now: Instant) {
        while let Some(id) = self.expiry.front() {
            match self.ended.get(id) {
                Some(e) if e.until > now => break,
                _ => {
                    if let Some(id) = self.expiry.pop_front() {
                        self.ended.remove(&id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_found_only_by_its_own_account_and_remembered_after_it_ends() {
        let table = ResumptionTable::<u8>::new(Duration::from_secs(60));
        let alice = account("alice@localhost");
        let tx = Arc::new(1u8);
        table.register("id1", &alice, tx.clone());
        assert!(matches!(
            table.take("id1", &account("mallory@localhost")),
            Lookup::Unknown
        ));
        assert!(matches!(table.take("nope", &alice), Lookup::Unknown));
        let Lookup::Live(found) = table.take("id1", &alice) else {
            panic!("live session not found");
        };
        assert!(Arc::ptr_eq(&found, &tx));
        // Taken: gone until registered again.
        assert!(matches!(table.take("id1", &alice), Lookup::Unknown));
        table.register("id1", &alice, tx.clone());
        table.ended("id1", &tx, 7);
        assert_eq!(table.live_count(), 0);
        assert!(matches!(table.take("id1", &alice), Lookup::Ended { h: 7 }));
        assert!(matches!(
            table.take("id1", &account("bob@localhost")),
            Lookup::Unknown
        ));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(table.take("id1", &alice), Lookup::Unknown));
    }

    #[tokio::test]
    async fn an_old_owner_does_not_end_the_session_its_successor_registered() {
        let table = ResumptionTable::<u8>::new(Duration::from_secs(60));
        let alice = account("alice@localhost");
        let old = Arc::new(1u8);
        let new = Arc::new(2u8);
        table.register("id", &alice, old.clone());
        table.register("id", &alice, new.clone());
        table.ended("id", &old, 1);
        assert!(matches!(table.take("id", &alice), Lookup::Live(s) if Arc::ptr_eq(&s, &new)));
    }
}
