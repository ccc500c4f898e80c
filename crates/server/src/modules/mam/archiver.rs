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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use weft_storage::{ArchiveEntry, ArchiveStore};

/// Entries written per transaction at most. Each commit writes the index pages it touched to
/// the WAL again, so fewer, larger batches write fewer pages per message when the store is
/// busy. The writer holds up to this many besides those queued.
const BATCH: usize = 32_768;
/// How long a batch gathers at most before it is written (see the module's comment).
const LINGER: Duration = Duration::from_millis(50);

/// What routing left for the writer. A vector behind a lock rather than a channel: a push is
/// one short critical section, and the writer takes everything queued in one swap (a
/// channel's send and receive cost a few percent of the CPU of a routed message, twice a
/// message with the archive on).
#[derive(Default)]
struct Queue {
    entries: Vec<ArchiveEntry>,
    /// Answered once everything queued before each is written.
    barriers: Vec<oneshot::Sender<()>>,
    /// The writer waits for work (and is woken by the next entry or barrier).
    writer_idle: bool,
    /// The writer is gone (shut down): writes are dropped with a warning.
    writer_gone: bool,
    /// The archiver is gone: the writer writes what is left and stops.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: work for an idle writer, or a hurry while it gathers (the queue
    /// half full, a barrier, the archiver gone).
    wake_writer: Notify,
    /// Wakes writes waiting for room: the writer took the queue in.
    room: Notify,
    /// Entries queued at most.
    capacity: usize,
    /// Entries queued at which the writer is hurried to take them in.
    hurry_at: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A write the archive's queue had no room for.
pub struct QueueFull(ArchiveEntry);

/// Gives archive ids and queues archive writes.
pub struct Archiver {
    shared: Arc<Shared>,
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
        let capacity = queue.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake_writer: Notify::new(),
            room: Notify::new(),
            capacity,
            // Half the queue taken: the writer takes it in.
            hurry_at: capacity.div_ceil(2),
        });
        tokio::spawn(write_loop(store, shared.clone()));
        Archiver {
            shared,
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
        if let Err(full) = self.try_write(entry) {
            Box::pin(self.write_when_room(full)).await;
        }
    }

    /// Queues a write if the queue has room, else gives it back for [`Self::write_when_room`].
    /// Apart from `write` so that a caller's future holds no waiting write (the router's
    /// hooks are boxed futures, copied whole on every message).
    pub fn try_write(&self, entry: ArchiveEntry) -> Result<(), QueueFull> {
        let mut q = self.shared.lock();
        if q.writer_gone {
            drop(q);
            tracing::warn!("the archive writer has stopped; a message was not archived");
            return Ok(());
        }
        if q.entries.len() >= self.shared.capacity {
            return Err(QueueFull(entry));
        }
        q.entries.push(entry);
        let wake = q.writer_idle || q.entries.len() == self.shared.hurry_at;
        q.writer_idle = false;
        drop(q);
        if wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(())
    }

    /// Queues what [`Self::try_write`] gave back, waiting for room (back-pressure).
    pub async fn write_when_room(&self, full: QueueFull) {
        let mut entry = full.0;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before the check: a take between the two still wakes this write.
            room.as_mut().enable();
            match self.try_write(entry) {
                Ok(()) => return,
                Err(QueueFull(back)) => entry = back,
            }
            self.shared.wake_writer.notify_one();
            room.await;
        }
    }

    /// Waits until everything queued so far is written (a query then sees it).
    pub async fn flushed(&self) {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.lock();
            if q.writer_gone {
                return;
            }
            q.barriers.push(tx);
            q.writer_idle = false;
        }
        self.shared.wake_writer.notify_one();
        let _ = rx.await;
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_writer.notify_one();
    }
}

/// Everything queued, appended to `batch` (barriers to `barriers`); whether the archiver is
/// gone. Wakes the writes waiting for room.
fn take(
    shared: &Shared,
    batch: &mut Vec<ArchiveEntry>,
    barriers: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    let mut q = shared.lock();
    if batch.is_empty() {
        // The queue's memory becomes the batch's, and the batch's (empty, from the last
        // write) the queue's: no copy, and no fresh allocation to fault in.
        std::mem::swap(batch, &mut q.entries);
    } else {
        batch.append(&mut q.entries);
    }
    barriers.append(&mut q.barriers);
    let closed = q.closed;
    drop(q);
    shared.room.notify_waiters();
    closed
}

/// Marks the writer gone however its task ends (returned, panicked, or dropped with the
/// runtime): later writes are dropped with a warning rather than waiting for room forever,
/// and waiting barriers are answered.
struct WriterGone(Arc<Shared>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.writer_gone = true;
        for b in q.barriers.drain(..) {
            let _ = b.send(());
        }
        drop(q);
        self.0.room.notify_waiters();
    }
}

async fn write_loop(store: Arc<dyn ArchiveStore>, shared: Arc<Shared>) {
    let _gone = WriterGone(shared.clone());
    let mut batch = Vec::new();
    let mut barriers = Vec::new();
    loop {
        // Idle until an entry or a barrier comes (or the archiver goes).
        let closed = loop {
            let work = shared.wake_writer.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            {
                let mut q = shared.lock();
                if !q.entries.is_empty() || !q.barriers.is_empty() || q.closed {
                    q.writer_idle = false;
                    break q.closed;
                }
                q.writer_idle = true;
            }
            work.await;
        };
        let deadline = Instant::now() + LINGER;
        let mut closed = closed | take(&shared, &mut batch, &mut barriers);
        // Gathering, woken by the deadline or a hurry rather than by every entry queued; a
        // half-full queue is taken in here, and routing goes on meanwhile.
        while !closed && barriers.is_empty() && batch.len() < BATCH {
            let late = tokio::select! {
                _ = shared.wake_writer.notified() => false,
                _ = tokio::time::sleep_until(deadline) => true,
            };
            closed |= take(&shared, &mut batch, &mut barriers);
            if late {
                break;
            }
        }
        if !batch.is_empty() {
            let written = write_batch(&*store, Arc::new(std::mem::take(&mut batch))).await;
            // The same memory for the queue later (freshly allocated, it faults in again).
            if let Ok(mut done) = Arc::try_unwrap(written) {
                done.clear();
                batch = done;
            }
        }
        for b in barriers.drain(..) {
            let _ = b.send(());
        }
        if closed && shared.lock().entries.is_empty() {
            break;
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
