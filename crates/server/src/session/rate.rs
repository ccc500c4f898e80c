//! A token bucket for inbound stanzas: past the budget, the session stops reading from its
//! client until tokens refill, so a flooding client slows itself down and nothing is dropped.

use std::time::Duration;

use tokio::time::Instant;

pub struct StanzaBudget {
    /// Tokens per second; 0 means unlimited.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl StanzaBudget {
    pub fn new(rate: u32, burst: u32) -> Self {
        StanzaBudget {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Spends one token. Returns when reading may resume if the budget is exhausted.
    pub fn spend(&mut self) -> Option<Instant> {
        if self.rate == 0.0 {
            return None;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            return None;
        }
        // Wait until the balance is back to one whole token.
        let wait = (1.0 - self.tokens) / self.rate;
        Some(now + Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let mut b = StanzaBudget::new(10, 3);
        assert!(b.spend().is_none());
        assert!(b.spend().is_none());
        assert!(b.spend().is_none());
        let until = b.spend().expect("burst exhausted");
        // One token takes 1/10 s at 10/s; the debt of one more doubles it.
        let wait = until - Instant::now();
        assert!(
            wait >= Duration::from_millis(190) && wait <= Duration::from_millis(210),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.spend().is_none());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = StanzaBudget::new(0, 0);
        for _ in 0..10_000 {
            assert!(b.spend().is_none());
        }
    }
}
