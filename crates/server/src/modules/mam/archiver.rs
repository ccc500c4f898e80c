//! Archive writes off the routing path: routing gives each archived message its id at once
//! (the stanza-id the recipient sees) and queues the write; one writer task takes what is
//! queued and appends it in one transaction per batch. The queue is bounded: when the store
//! falls behind, routing waits for room (back-pressure) rather than holding an unbounded
//! backlog in memory or dropping messages.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use weft_storage::{ArchiveEntry, ArchiveStore};

/// Entries written per transaction at most. Each commit writes the index pages it touched to
/// the WAL again, so fewer, larger batches write fewer pages per message when the store is
/// busy; while it keeps up, a batch is whatever was queued.
const BATCH: usize = 8192;

enum Job {
    Write(ArchiveEntry),
    /// Answered once everything queued before it is written.
    Barrier(oneshot::Sender<()>),
}

/// Gives archive ids and queues archive writes.
pub struct Archiver {
    jobs: mpsc::Sender<Job>,
    last_id: AtomicI64,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Archiver {
    /// Starts the writer task on `store`; ids start above `last_id` (the highest stored).
    pub fn start(store: Arc<dyn ArchiveStore>, queue: usize, last_id: i64) -> Archiver {
        let (jobs, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(write_loop(store, rx));
        Archiver {
            jobs,
            last_id: AtomicI64::new(last_id),
        }
    }

    /// A new id: the current time in microseconds, or one more than the last id given when
    /// that is later (several messages in one microsecond, or a clock set back).
    pub fn next_id(&self) -> i64 {
        let now = now_micros();
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let id = now.max(last + 1);
            match self
                .last_id
                .compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// Queues a write; waits while the queue is full.
    pub async fn write(&self, entry: ArchiveEntry) {
        match self.jobs.try_send(Job::Write(entry)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let _ = self.jobs.send(job).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the archive writer has stopped; a message was not archived");
            }
        }
    }

    /// Waits until everything queued so far is written (a query then sees it).
    pub async fn flushed(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(store: Arc<dyn ArchiveStore>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH);
    let mut entries = Vec::new();
    let mut barriers = Vec::new();
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        for job in jobs.drain(..) {
            match job {
                Job::Write(e) => entries.push(e),
                Job::Barrier(b) => barriers.push(b),
            }
        }
        if !entries.is_empty() {
            write_batch(&*store, Arc::new(std::mem::take(&mut entries))).await;
        }
        for b in barriers.drain(..) {
            let _ = b.send(());
        }
    }
}

/// Appends one batch, trying again once after a failure (a busy database); a batch that
/// fails twice is logged with its size and dropped, so that routing does not stop.
async fn write_batch(store: &dyn ArchiveStore, entries: Arc<Vec<ArchiveEntry>>) {
    let Err(first) = store.append_archive(entries.clone()).await else {
        return;
    };
    tracing::warn!(
        "archive write of {} messages failed, retrying: {first}",
        entries.len()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = entries.len();
    if let Err(e) = store.append_archive(entries).await {
        tracing::error!("archive write of {n} messages failed, not archived: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_rise_strictly_and_stay_above_the_last_stored() {
        let store = weft_storage::Storage::in_memory().await.unwrap().archive;
        let far = now_micros() + 10_000_000;
        let archiver = Archiver::start(store, 4, far);
        let a = archiver.next_id();
        let b = archiver.next_id();
        assert_eq!((a, b), (far + 1, far + 2));
        let fresh = Archiver::start(
            weft_storage::Storage::in_memory().await.unwrap().archive,
            4,
            0,
        );
        let ids: Vec<i64> = (0..1000).map(|_| fresh.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0] >= now_micros() - 1_000_000);
    }
}
