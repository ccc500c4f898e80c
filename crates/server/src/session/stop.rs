//! Telling an established session to end: another session took over its resource, or the
//! server is shutting down or draining.
//!
//! A session polls this on every turn of its loop, that is for every stanza in or out. Three
//! `CancellationToken`s cost a mutex lock and a `Notified` poll each per turn (4–5% of the
//! server's CPU with 500 busy pairs); this is one atomic load and a waker that is only
//! replaced when the task's waker changes.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Why the session must end; the first reason raised wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The server is shutting down or draining.
    Shutdown = 1,
    /// A new session bound the same resource (RFC 6120 §7.7.2.2).
    Replaced = 2,
}

impl StopReason {
    fn from_u8(v: u8) -> Option<StopReason> {
        match v {
            1 => Some(StopReason::Shutdown),
            2 => Some(StopReason::Replaced),
            _ => None,
        }
    }
}

/// What other tasks tell a bound session. One waker for both, polled once per turn of the
/// session's loop: a second one for the leftovers cost a cold cache line and an atomic
/// registration per turn with hundreds of busy sessions.
#[derive(Debug, Default)]
pub struct StopSignal {
    reason: AtomicU8,
    /// Deliveries left bytes that the socket did not take (`transport::shared`).
    leftovers: AtomicBool,
    /// A stream asks to resume this session (XEP-0198 §5): its request waits in the
    /// session's takeover slot. A flag here rather than a channel the session would also
    /// poll: that cost every idle session the memory of one more pending future.
    takeover: AtomicBool,
    waker: AtomicWaker,
}

/// Why a session's loop was woken by another task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Stop(StopReason),
    /// Write what deliveries left.
    Leftovers,
    /// A stream asks to take the session over.
    Takeover,
}

impl StopSignal {
    /// Asks the session to end; a reason already raised is kept.
    pub fn raise(&self, reason: StopReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    pub fn raised(&self) -> Option<StopReason> {
        StopReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Ready once a reason is raised. Cancel-safe.
    pub fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<StopReason> {
        if let Some(r) = self.raised() {
            return Poll::Ready(r);
        }
        self.waker.register(cx.waker());
        // Raised between the load and the registration: `raise` may have woken the old waker.
        match self.raised() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    pub async fn wait(&self) -> StopReason {
        poll_fn(|cx| self.poll_raised(cx)).await
    }

    /// Ready with a stop (first) or with leftovers to write, each reported once. Cancel-safe.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        if let Some(signal) = self.pending_signal() {
            return Poll::Ready(signal);
        }
        self.waker.register(cx.waker());
        match self.pending_signal() {
            Some(signal) => Poll::Ready(signal),
            None => Poll::Pending,
        }
    }

    /// Tells the session a takeover request waits for it.
    pub fn request_takeover(&self) {
        self.takeover.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn pending_signal(&self) -> Option<Signal> {
        if let Some(r) = self.raised() {
            return Some(Signal::Stop(r));
        }
        // A load first: the swap's write would take the line from a delivering core.
        if self.leftovers.load(Ordering::Acquire) && self.leftovers.swap(false, Ordering::AcqRel) {
            return Some(Signal::Leftovers);
        }
        (self.takeover.load(Ordering::Acquire) && self.takeover.swap(false, Ordering::AcqRel))
            .then_some(Signal::Takeover)
    }
}

impl crate::transport::shared::OwnerWaker for StopSignal {
    fn leftovers(&self) {
        self.leftovers.store(true, Ordering::Release);
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_session_wakes_with_the_first_reason() {
        let signal = Arc::new(StopSignal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        signal.raise(StopReason::Replaced);
        signal.raise(StopReason::Shutdown);
        assert_eq!(waiter.await.unwrap(), StopReason::Replaced);
        assert_eq!(signal.raised(), Some(StopReason::Replaced));
    }

    #[tokio::test]
    async fn leftovers_wake_the_session_once_and_a_stop_comes_first() {
        use crate::transport::shared::OwnerWaker;
        let signal = Arc::new(StopSignal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { poll_fn(|cx| signal.poll_signal(cx)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        signal.leftovers();
        assert_eq!(waiter.await.unwrap(), Signal::Leftovers);
        let again = tokio::time::timeout(
            Duration::from_millis(20),
            poll_fn(|cx| signal.poll_signal(cx)),
        );
        assert!(again.await.is_err(), "reported once");
        signal.leftovers();
        signal.raise(StopReason::Shutdown);
        assert_eq!(
            poll_fn(|cx| signal.poll_signal(cx)).await,
            Signal::Stop(StopReason::Shutdown)
        );
    }

    #[tokio::test]
    async fn a_reason_raised_before_waiting_is_seen() {
        let signal = StopSignal::default();
        assert_eq!(signal.raised(), None);
        signal.raise(StopReason::Shutdown);
        assert_eq!(signal.wait().await, StopReason::Shutdown);
    }
}
