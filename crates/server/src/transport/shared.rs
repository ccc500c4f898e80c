//! The write side of a plain TCP connection, shared between the session task that owns the
//! connection and the tasks that deliver stanzas to it.
//!
//! A delivering task encodes its stanza and, when nothing is waiting to be written, writes it
//! into the socket itself; only what the socket does not take at once is left here for the
//! owner, whose task is woken to write it when the socket drains. With a queue instead, every
//! stanza woke the recipient's task: with hundreds of busy sessions that second task's state
//! (its future, its queue, its timers) was rarely in cache and cost as much as routing itself.
//!
//! TLS connections keep one rustls state for both directions, so their sessions keep a queue
//! (see `session::registry`).

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A pending buffer that grew past this is freed once written, so that a burst does not stay
/// in an idle session's memory.
const KEEP_CAPACITY: usize = 4096;

/// Why a delivery was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The session is ending or its connection failed.
    Closed,
    /// `limit` stanzas already wait for the socket: the client is not reading.
    Full,
}

pub struct SharedWriter {
    pending: Mutex<Pending>,
    /// Told when bytes are left for the owner to write; set at bind.
    owner: OnceLock<Arc<dyn OwnerWaker>>,
}

/// How the owner of a shared connection learns that deliveries left bytes for it: it then
/// flushes its stream (`AsyncWrite::poll_flush` on its `SharedStream`).
pub trait OwnerWaker: Send + Sync {
    fn leftovers(&self);
}

struct Pending {
    half: OwnedWriteHalf,
    /// Bytes accepted but not yet taken by the socket, oldest first.
    bytes: Vec<u8>,
    /// Stanzas delivered into `bytes` since it was last empty.
    stanzas: usize,
    limit: usize,
    /// No more deliveries: the session ended or a write failed. The owner may still write
    /// (its stream close).
    closed: bool,
    /// Deliveries made before the owner's bind result is out, which must come first
    /// (RFC 6120 §7.6.1); `release` moves them behind it.
    held: Option<Vec<u8>>,
}

thread_local! {
    /// The writers that deliveries made during the current poll of a session task left bytes
    /// in (see `batched`); None outside such a poll.
    static BATCH: RefCell<Option<Vec<Arc<SharedWriter>>>> = const { RefCell::new(None) };
    /// Where deliveries are encoded before the socket takes them: the common case (the socket
    /// takes everything) then touches no per-session buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Deliveries made during the current batched poll (see `batch_is_full`); None outside
    /// such a poll, as `BATCH`. A `Cell` apart from it: every delivery reads this one.
    static BATCHED: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Deliveries after which a batched poll should end (see `batch_is_full`): a user with 500
/// contacts changing presence eight times in a row is one poll, its contacts' sockets each
/// get one write of eight stanzas, and the first change waits for no more than that.
const BATCH_DELIVERIES: usize = 4096;

/// Writers in one poll's batch from which its writes are deferred (see `BatchScope`'s drop):
/// a broadcast, not a conversation's few recipients.
const DEFER_WRITERS: usize = 32;

/// Whether the current poll has made enough deliveries that the session should end it (yield)
/// before it handles another stanza: its deliveries are then written, instead of waiting for
/// every stanza the client sent at once (a recipient's latency), and other tasks get to run.
pub fn batch_is_full() -> bool {
    BATCHED
        .with(Cell::get)
        .is_some_and(|n| n >= BATCH_DELIVERIES)
}

impl SharedWriter {
    /// Splits `stream`: the read half for the owner, the write half shared. At most `limit`
    /// delivered stanzas may wait for the socket.
    pub fn split(stream: TcpStream, limit: usize) -> (SharedStream, Arc<SharedWriter>) {
        let (read, half) = stream.into_split();
        let writer = Arc::new(SharedWriter {
            pending: Mutex::new(Pending {
                half,
                bytes: Vec::new(),
                stanzas: 0,
                limit: limit.max(1),
                closed: false,
                held: Some(Vec::new()),
            }),
            owner: OnceLock::new(),
        });
        let stream = SharedStream {
            read,
            writer: writer.clone(),
        };
        (stream, writer)
    }

    /// Names who writes the leftovers; before this, deliveries are held (see `release`).
    pub fn set_owner(&self, owner: Arc<dyn OwnerWaker>) {
        let _ = self.owner.set(owner);
    }

    fn wake_owner(&self) {
        if let Some(owner) = self.owner.get() {
            owner.leftovers();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers one stanza that `encode` appends to a buffer (with `reserve` spare bytes in
    /// front of it, for a frame header that `encode` may prepend by returning how many of
    /// them it used, counted back from the end of the spare). The stanza is written now if
    /// the socket takes it, otherwise kept in order for the owner.
    pub fn deliver(
        self: &Arc<Self>,
        reserve: usize,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> usize,
    ) -> Result<(), Refused> {
        let mut guard = self.lock();
        let p = &mut *guard;
        if p.closed {
            return Err(Refused::Closed);
        }
        if p.stanzas >= p.limit {
            return Err(Refused::Full);
        }
        p.stanzas += 1;
        let in_batch = BATCHED.with(|n| match n.get() {
            Some(k) => {
                n.set(Some(k + 1));
                true
            }
            None => false,
        });
        // Bytes already waiting are someone's to write (the owner, woken for them, or the
        // batch that left them); ours go behind them.
        let waiting = p.held.is_some() || !p.bytes.is_empty();
        let batching = !waiting && in_batch;
        if waiting || batching {
            let queue = p.held.as_mut().unwrap_or(&mut p.bytes);
            let start = queue.len();
            queue.resize(start + reserve, 0);
            let used = encode(queue, start);
            queue.drain(start..start + reserve - used);
            drop(guard);
            if batching {
                BATCH.with(|b| {
                    if let Some(batch) = b.borrow_mut().as_mut() {
                        batch.push(self.clone());
                    }
                });
            }
            return Ok(());
        }
        let left = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.resize(reserve, 0);
            let used = encode(&mut buf, 0);
            let out = &buf[reserve - used..];
            let written = p.write_now(out);
            if written < out.len() {
                p.bytes.extend_from_slice(&out[written..]);
            }
            if buf.capacity() > 16 * KEEP_CAPACITY {
                *buf = Vec::new();
            }
            !p.bytes.is_empty()
        });
        if !left {
            p.stanzas = 0;
        }
        let closed = p.closed;
        drop(guard);
        if left {
            self.wake_owner();
        }
        if closed {
            return Err(Refused::Closed);
        }
        Ok(())
    }

    /// Lets deliveries through, once the owner has written what must precede them (its bind
    /// result); those held until now follow it.
    pub fn release(&self) {
        let mut p = self.lock();
        if let Some(held) = p.held.take() {
            if !held.is_empty() {
                p.push(&held);
            }
            if p.bytes.is_empty() {
                p.stanzas = 0;
            } else {
                drop(p);
                self.wake_owner();
            }
        }
    }

    /// Writes what deliveries of one batch left here, in one write.
    fn write_batch(&self) {
        let mut guard = self.lock();
        let p = &mut *guard;
        if p.bytes.is_empty() {
            // The owner wrote them with its own.
            return;
        }
        let bytes = std::mem::take(&mut p.bytes);
        let written = p.write_now(&bytes);
        p.bytes = bytes;
        p.bytes.drain(..written);
        if p.bytes.is_empty() {
            p.stanzas = 0;
            if p.bytes.capacity() > KEEP_CAPACITY {
                p.bytes = Vec::new();
            }
            return;
        }
        drop(guard);
        self.wake_owner();
    }

    /// Refuses every later delivery; what was accepted is still written by the owner.
    pub fn close(&self) {
        self.lock().closed = true;
    }
}

/// Runs `session` so that what it delivers during one poll is written when the poll ends: a
/// task that reads many stanzas at once (a client sending faster than one at a time) then
/// writes each recipient's share with one syscall instead of one per stanza, which is what
/// the recipient's own task did when it drained a queue. Outside such a poll a delivery is
/// written at once.
pub fn batched<F: std::future::Future>(session: F) -> Batched<F> {
    Batched { session }
}

pin_project_lite::pin_project! {
    /// See `batched`. A struct rather than an async block, which would keep the session's
    /// future twice (captured, then pinned) in every idle session's memory.
    pub struct Batched<F> {
        #[pin]
        session: F,
    }
}

impl<F: std::future::Future> std::future::Future for Batched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _batch = BatchScope::enter();
        self.project().session.poll(cx)
    }
}

/// One poll's batch; written on drop, that is when the poll returns.
struct BatchScope {
    outermost: bool,
}

impl BatchScope {
    fn enter() -> BatchScope {
        let outermost = BATCH.with(|b| {
            let mut b = b.borrow_mut();
            if b.is_some() {
                return false;
            }
            *b = Some(Vec::new());
            true
        });
        if outermost {
            BATCHED.with(|n| n.set(Some(0)));
        }
        BatchScope { outermost }
    }
}

impl Drop for BatchScope {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let full = batch_is_full();
        BATCHED.with(|n| n.set(None));
        let batch = BATCH.with(|b| b.borrow_mut().take()).unwrap_or_default();
        // A full batch (see `batch_is_full`) has several stanzas per socket already, and its
        // session is ready again at once: deferring would let it run ahead of its writes.
        if !full && batch.len() >= DEFER_WRITERS {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // A broadcast (a room's message, a presence to a roster): its writes wait until
                // the tasks that are ready now have run. Other broadcasts among them append to
                // the same recipients' pending bytes, so each socket then takes several stanzas
                // in one write: with one write per recipient and message, half of a 500-occupant
                // room's CPU went to the kernel's send path. Bytes waiting are someone's to
                // write (see `deliver`), so order and back-pressure stay as they were; an idle
                // server writes them one task hop later.
                runtime.spawn(async move {
                    tokio::task::yield_now().await;
                    for writer in batch {
                        writer.write_batch();
                    }
                });
                return;
            }
        }
        for writer in batch {
            writer.write_batch();
        }
    }
}

impl Pending {
    /// Writes as much of `buf` as the socket takes without waiting; a failed connection is
    /// closed to deliveries.
    fn write_now(&mut self, buf: &[u8]) -> usize {
        let mut written = 0;
        while written < buf.len() {
            match self.half.try_write(&buf[written..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        written
    }

    /// Writes the pending bytes; Pending (woken by the socket) until all are out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.bytes.is_empty() {
            let Pending { half, bytes, .. } = self;
            match Pin::new(half).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => {
                    self.closed = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.bytes.drain(..n);
                }
                Poll::Ready(Err(e)) => {
                    self.closed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.stanzas = 0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// The owner's own bytes: written at once if nothing waits, else kept behind the rest.
    fn push(&mut self, buf: &[u8]) {
        let written = if self.bytes.is_empty() {
            self.write_now(buf)
        } else {
            0
        };
        self.bytes.extend_from_slice(&buf[written..]);
    }
}

/// The owner's side of a shared connection: reads from the socket, writes through the shared
/// writer so that its own stanzas and the delivered ones keep one order.
pub struct SharedStream {
    read: OwnedReadHalf,
    writer: Arc<SharedWriter>,
}

impl SharedStream {
    pub fn writer(&self) -> &Arc<SharedWriter> {
        &self.writer
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedStream {
    /// Always takes everything: a partial write would let a delivery in between the parts.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.lock().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.lock().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut p = self.writer.lock();
        p.closed = true;
        std::task::ready!(p.poll_drain(cx))?;
        Pin::new(&mut p.half).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(limit: usize) -> (SharedStream, Arc<SharedWriter>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (stream, writer) = SharedWriter::split(server, limit);
        writer.release();
        (stream, writer, client)
    }

    fn text(s: &'static str) -> impl FnOnce(&mut Vec<u8>, usize) -> usize {
        move |buf, _| {
            buf.extend_from_slice(s.as_bytes());
            0
        }
    }

    #[tokio::test]
    async fn deliveries_and_the_owners_writes_keep_their_order() {
        let (mut own, writer, mut client) = pair(8).await;
        own.write_all(b"<a/>").await.unwrap();
        writer.deliver(0, text("<b/>")).unwrap();
        own.write_all(b"<c/>").await.unwrap();
        own.flush().await.unwrap();
        let mut got = [0u8; 12];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<a/><b/><c/>");
    }

    #[tokio::test]
    async fn deliveries_wait_for_the_release_behind_the_owners_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut own, writer) = SharedWriter::split(server, 8);
        writer.deliver(0, text("<early/>")).unwrap();
        own.write_all(b"<bound/>").await.unwrap();
        own.flush().await.unwrap();
        writer.release();
        writer.deliver(0, text("<late/>")).unwrap();
        let mut got = [0u8; 23];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<bound/><early/><late/>");
    }

    #[tokio::test]
    async fn deliveries_in_one_poll_are_written_together_when_it_ends() {
        let (_own, writer, mut client) = pair(8).await;
        let w = writer.clone();
        let probe = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = probe.clone();
        batched(async move {
            for name in ["<a/>", "<b/>", "<c/>"] {
                w.deliver(0, text(name)).unwrap();
            }
            // Still in the poll: nothing was written yet.
            let mut buf = [0u8; 16];
            let n = client.try_read(&mut buf).unwrap_or(0);
            seen.lock().unwrap().push(n);
            tokio::task::yield_now().await;
            let mut got = [0u8; 12];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"<a/><b/><c/>");
        })
        .await;
        assert_eq!(*probe.lock().unwrap(), vec![0]);
        drop(writer);
    }

    /// `DEFER_WRITERS` - `less` connections whose clients are std sockets: a non-blocking
    /// read of one then says whether bytes were written, without this task yielding.
    async fn broadcast_pairs(less: usize) -> (Vec<Arc<SharedWriter>>, Vec<std::net::TcpStream>) {
        let (mut writers, mut clients) = (Vec::new(), Vec::new());
        for _ in 0..DEFER_WRITERS - less {
            let (own, writer, client) = pair(8).await;
            std::mem::forget(own); // the owner's half stays open
            writers.push(writer);
            clients.push(client.into_std().unwrap());
        }
        (writers, clients)
    }

    fn broadcast(
        writers: &[Arc<SharedWriter>],
        name: &'static str,
    ) -> impl std::future::Future<Output = ()> {
        let writers = writers.to_vec();
        batched(async move {
            for w in &writers {
                w.deliver(0, text(name)).unwrap();
            }
        })
    }

    fn read_now(client: &mut std::net::TcpStream) -> usize {
        use std::io::Read;
        let mut buf = [0u8; 16];
        match client.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_broadcasts_writes_wait_for_the_ready_tasks_and_take_later_ones_along() {
        let (writers, mut clients) = broadcast_pairs(0).await;
        broadcast(&writers, "<a/>").await;
        // The poll has ended, but its writes wait until this task yields.
        for client in &mut clients {
            assert_eq!(
                read_now(client),
                0,
                "written before the tasks ready now ran"
            );
        }
        // A second broadcast meanwhile goes behind the first, in the same write.
        broadcast(&writers, "<b/>").await;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for client in &mut clients {
            use std::io::Read;
            let mut got = [0u8; 8];
            client.set_nonblocking(false).unwrap();
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"<a/><b/>");
        }
    }

    #[tokio::test]
    async fn a_broadcast_to_fewer_sockets_is_written_when_its_poll_ends() {
        let (writers, mut clients) = broadcast_pairs(1).await;
        broadcast(&writers, "<a/>").await;
        for client in &mut clients {
            assert_eq!(read_now(client), 4);
        }
    }

    #[test]
    fn batching_adds_nothing_to_a_sessions_memory() {
        let session = async { [0u8; 512] };
        assert_eq!(
            std::mem::size_of_val(&batched(session)),
            std::mem::size_of_val(&async { [0u8; 512] })
        );
    }

    #[tokio::test]
    async fn a_frame_header_goes_in_the_reserved_space() {
        let (_own, writer, mut client) = pair(8).await;
        writer
            .deliver(4, |buf, start| {
                buf.extend_from_slice(b"<x/>");
                buf[start + 2..start + 4].copy_from_slice(b"H:");
                2
            })
            .unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"H:<x/>");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_fills_the_limit_and_loses_nothing() {
        let (own, writer, mut client) = pair(4).await;
        let chunk = vec![b'x'; 1 << 20];
        let mut accepted = 0usize;
        let mut refused = None;
        for _ in 0..64 {
            let chunk = &chunk;
            match writer.deliver(0, |buf, _| {
                buf.extend_from_slice(chunk);
                0
            }) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(refused, Some(Refused::Full));
        // The owner writes what was left once the client reads.
        let owner = tokio::spawn(async move {
            let mut own = own;
            own.flush().await
        });
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while total < accepted * chunk.len() {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0);
            total += n;
        }
        assert_eq!(total, accepted * chunk.len());
        owner.abort();
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_deliveries_but_the_owner_still_writes() {
        let (mut own, writer, mut client) = pair(8).await;
        writer.close();
        assert_eq!(writer.deliver(0, text("<late/>")), Err(Refused::Closed));
        own.write_all(b"</stream:stream>").await.unwrap();
        own.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"</stream:stream>");
    }
}
