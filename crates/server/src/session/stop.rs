//! Telling an established session to end: another session took over its resource, or the
//! server is shutting down or draining.
//!
//! A session polls this on every turn of its loop, that is for every stanza in or out. Three
//! `CancellationToken`s cost a mutex lock and a `Notified` poll each per turn (4–5% of the
//! server's CPU with 500 busy pairs); this is one atomic load and a waker that is only
//! replaced when the task's waker changes.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
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

#[derive(Debug, Default)]
pub struct StopSignal {
    reason: AtomicU8,
    waker: AtomicWaker,
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
    async fn a_reason_raised_before_waiting_is_seen() {
        let signal = StopSignal::default();
        assert_eq!(signal.raised(), None);
        signal.raise(StopReason::Shutdown);
        assert_eq!(signal.wait().await, StopReason::Shutdown);
    }
}
