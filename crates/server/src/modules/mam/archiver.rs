//! Archive writes off the routing path: routing gives each archived message its id at once
//! (the stanza-id the recipient sees) and queues the write; one writer task takes what is
//! queued and appends it in one transaction per batch. The queue is bounded: when the store
//! falls behind, routing waits for room (back-pressure) rather than holding an unbounded
//! backlog in memory or dropping messages.
//!
//! The writer lets a batch gather for up to [`LINGER`] after its first entry (less when
//! [`BATCH`] entries or half the queue are waiting, or a query or shutdown waits for the
//! writes, which it then does at once). Every commit writes each page it touched to the WAL,
//! and a batch touches the ends of the indexes of every account in it: at 10 pairs, batches
//! of a few hundred messages wrote about 60 times the bytes they stored, most of weft's CPU
//! with the archive on. What a crash of the process may lose: the entries queued and not
//! yet committed, as before (at most `write_queue` plus one batch), which now includes the
//! messages of the last [`LINGER`] when the server is not busy. (With `synchronous =
//! NORMAL`, a power loss may lose the last commits too, as it could before.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use weft_storage::{ArchiveEntry, ArchiveStore};

/// Entries written per transaction at most. Each commit writes the index pages it touched to
/// the WAL again, so fewer, larger batches write fewer pages per message when the store is
/// busy. The writer holds up to this many besides those queued.
const BATCH: usize = 32_768;
/// How long a batch gathers at most before it is written (see the module's comment).
const LINGER: Duration = Duration::from_millis(50);

pub(super) enum Job {
    Write(ArchiveEntry),
    /// Answered once everything queued before it is written.
    Barrier(oneshot::Sender<()>),
}

/// A write the archive's queue had no room for.
pub struct QueueFull(Job);

/// Gives archive ids and queues archive writes.
pub struct Archiver {
    jobs: mpsc::Sender<Job>,
    last_id: AtomicI64,
    /// Wakes the writer while it gathers a batch: a barrier waits (it writes at once), or
    /// the queue is half full (it takes the queue in).
    hurry: Arc<Notify>,
    /// Free queue slots at or below which a write hurries the writer.
    hurry_below: usize,
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
        let queue = queue.max(1);
        let (jobs, rx) = mpsc::channel(queue);
        let hurry = Arc::new(Notify::new());
        tokio::spawn(write_loop(store, rx, hurry.clone()));
        Archiver {
            jobs,
            last_id: AtomicI64::new(last_id),
            hurry,
            // Half the queue taken: the writer takes it in.
            hurry_below: queue - queue / 2,
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
        if let Err(full) = self.try_write(entry) {
            Box::pin(self.write_when_room(full)).await;
        }
    }

    /// Queues a write if the queue has room, else gives it back for [`Self::write_when_room`].
    /// Apart from `write` so that a caller's future holds no waiting send (the router's
    /// hooks are boxed futures, copied whole on every message).
    pub fn try_write(&self, entry: ArchiveEntry) -> Result<(), QueueFull> {
        match self.jobs.try_send(Job::Write(entry)) {
            Ok(()) => {
                if self.jobs.capacity() <= self.hurry_below {
                    self.hurry.notify_one();
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(job)) => Err(QueueFull(job)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the archive writer has stopped; a message was not archived");
                Ok(())
            }
        }
    }

    /// Queues what [`Self::try_write`] gave back, waiting for room (back-pressure).
    pub async fn write_when_room(&self, full: QueueFull) {
        self.hurry.notify_one();
        let _ = self.jobs.send(full.0).await;
    }

    /// Waits until everything queued so far is written (a query then sees it).
    pub async fn flushed(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Barrier(tx)).await.is_ok() {
            self.hurry.notify_one();
            let _ = rx.await;
        }
    }
}

async fn write_loop(store: Arc<dyn ArchiveStore>, mut rx: mpsc::Receiver<Job>, hurry: Arc<Notify>) {
    use futures_util::FutureExt;
    let mut jobs = Vec::with_capacity(BATCH);
    let mut entries = Vec::new();
    let mut barriers = Vec::new();
    let mut open = true;
    while open && rx.recv_many(&mut jobs, BATCH).await > 0 {
        let deadline = Instant::now() + LINGER;
        sort(&mut jobs, &mut entries, &mut barriers);
        // Gathering, woken by the deadline or a hurry rather than by every entry queued; a
        // full queue is taken in here, and routing goes on meanwhile.
        while open && barriers.is_empty() && entries.len() < BATCH {
            let late = tokio::select! {
                _ = hurry.notified() => false,
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if rx
                .recv_many(&mut jobs, BATCH - entries.len())
                .now_or_never()
                == Some(0)
            {
                open = false; // every sender went: this batch is the last
            }
            sort(&mut jobs, &mut entries, &mut barriers);
            if late {
                break;
            }
        }
        if !entries.is_empty() {
            let written = write_batch(&*store, Arc::new(std::mem::take(&mut entries))).await;
            // The same memory for the next batch (freshly allocated, it faults in again).
            if let Ok(mut done) = Arc::try_unwrap(written) {
                done.clear();
                entries = done;
            }
        }
        for b in barriers.drain(..) {
            let _ = b.send(());
        }
    }
}

fn sort(
    jobs: &mut Vec<Job>,
    entries: &mut Vec<ArchiveEntry>,
    barriers: &mut Vec<oneshot::Sender<()>>,
) {
    for job in jobs.drain(..) {
        match job {
            Job::Write(e) => entries.push(e),
            Job::Barrier(b) => barriers.push(b),
        }
    }
}

/// Appends one batch, trying again once after a failure (a busy database); a batch that
/// fails twice is logged with its size and dropped, so that routing does not stop. Gives the
/// batch back.
async fn write_batch(
    store: &dyn ArchiveStore,
    entries: Arc<Vec<ArchiveEntry>>,
) -> Arc<Vec<ArchiveEntry>> {
    let Err(first) = store.append_archive(entries.clone()).await else {
        return entries;
    };
    tracing::warn!(
        "archive write of {} messages failed, retrying: {first}",
        entries.len()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Err(e) = store.append_archive(entries.clone()).await {
        tracing::error!(
            "archive write of {} messages failed, not archived: {e}",
            entries.len()
        );
    }
    entries
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

    fn room_entry(id: i64, i: usize) -> ArchiveEntry {
        let message = weft_storage::ArchivedMessage {
            id,
            with: "room@rooms.example".into(),
            with_resource: Some(format!("nick{}", i % 3)),
            outgoing: false,
            stanza: format!("<message xmlns='jabber:client'><body>{i}</body></message>").into(),
        };
        ArchiveEntry::of_message("rooms.example", "room", true, &message)
    }

    /// Everything in the test room's archive, once the archiver has written what it holds.
    async fn stored(
        archiver: &Archiver,
        store: &std::sync::Arc<dyn weft_storage::ArchiveStore>,
    ) -> Vec<weft_storage::ArchivedMessage> {
        archiver.flushed().await;
        let q = weft_storage::ArchiveQuery {
            max: 1000,
            ..Default::default()
        };
        let page = store.query_archive("rooms.example", "room", &q).await;
        page.unwrap().messages
    }

    #[tokio::test]
    async fn gathered_writes_are_all_stored_before_a_barrier_is_answered() {
        let store = weft_storage::Storage::in_memory().await.unwrap().archive;
        // A queue of 4: writes wait for room, hurry the writer, and it takes them in.
        let archiver = Archiver::start(store.clone(), 4, 0);
        let mut want = Vec::new();
        for i in 0..300 {
            let e = room_entry(archiver.next_id(), i);
            want.push(e.message());
            archiver.write(e).await;
            if i == 150 {
                assert_eq!(stored(&archiver, &store).await, want);
            }
        }
        assert_eq!(stored(&archiver, &store).await, want);
    }

    #[tokio::test]
    async fn a_lone_write_is_stored_within_the_linger() {
        let store = weft_storage::Storage::in_memory().await.unwrap().archive;
        let archiver = Archiver::start(store.clone(), 100, 0);
        archiver.write(room_entry(archiver.next_id(), 1)).await;
        // No barrier: the writer writes it once the gathering time is over.
        let q = weft_storage::ArchiveQuery {
            max: 10,
            ..Default::default()
        };
        let deadline = Instant::now() + LINGER + Duration::from_secs(10);
        loop {
            let page = store.query_archive("rooms.example", "room", &q).await;
            if page.unwrap().messages.len() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
