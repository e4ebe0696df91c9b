//! Abuse limits shared by the bridge's cores and shells, as plain values
//! with the time passed in: a token bucket, and the signalling limits a
//! connection gets (the shell applies them; they live here so the
//! protocol's numbers are in one place, next to `docs/signalling.md`'s).

use std::time::{Duration, Instant};

/// Signalling messages a connection may send per second, sustained...
pub const SIGNAL_RATE: f64 = 20.0;
/// ...and in a burst (a join, an offer, constraints and a few source
/// states at once are normal).
pub const SIGNAL_BURST: f64 = 50.0;
/// One `rate_limited` error a second is enough for a flooding client.
pub const RATE_ERROR_EVERY: Duration = Duration::from_secs(1);

/// `rate` per second sustained, `burst` at once; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: None,
        }
    }

    /// Take one token; false when there is none left.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(t) = self.refilled {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            self.tokens = (self.tokens + secs * self.rate).min(self.burst);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let t = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0);
        let burst = (0..100).take_while(|_| b.take(t)).count();
        assert_eq!(burst, 20);
        let later = t + Duration::from_millis(500);
        let more = (0..100).take_while(|_| b.take(later)).count();
        assert_eq!(more, 5);
    }
}
