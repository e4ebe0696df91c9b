//! Admission control: a bridge that cannot keep up with its media stops
//! taking new participants, so the ones it has keep theirs.
//!
//! Past its knee a bridge's throughput falls instead of flattening: new
//! joins add DTLS handshakes and streams to a shard already behind, the
//! queue grows, and everyone's media is late (BENCHMARKS.md, saturation
//! sweep: at 8 rooms 34 joins timed out and most receivers lost media). The
//! signal used here is how far behind the shard is: the age of the client
//! datagrams it is handling, from their kernel receive time. A healthy shard
//! is a few milliseconds behind; one that stays behind by a quarter of a
//! second for a whole second is overloaded. Joins are then refused with a
//! precise error (`overloaded`) for a hold time after the last such
//! second, which keeps a bridge hovering at the edge from admitting and
//! refusing in turn. Behind a focus the client asks the focus again, which
//! places it on a bridge with less stress.
//!
//! Sans-IO: the shell measures the lag (wall clock minus receive time) and
//! passes it in with the core's `now`.

use std::time::{Duration, Instant};

/// Behind by at least this much counts as lagging.
pub const LAG_LIMIT: Duration = Duration::from_millis(250);
/// Lagging for this long (every sample in between lagging) is overload.
pub const SUSTAIN: Duration = Duration::from_secs(1);
/// Joins stay refused this long after overload was last seen.
pub const HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
pub struct Admission {
    /// First sample of the current run of lagging samples.
    behind_since: Option<Instant>,
    /// Refuse joins before this instant.
    refuse_until: Option<Instant>,
    /// The lag of the last sample, for the refusal message.
    last_lag: Duration,
}

impl Admission {
    /// A lag sample: how far behind the shard was when it handled input
    /// received by the kernel at `now - lag`.
    pub fn handle_lag(&mut self, now: Instant, lag: Duration) {
        self.last_lag = lag;
        if lag < LAG_LIMIT {
            self.behind_since = None;
            return;
        }
        let since = *self.behind_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= SUSTAIN {
            self.refuse_until = Some(now + HOLD);
        }
    }

    /// `Err(lag)` while joins are refused: the lag last measured.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.refuse_until {
            Some(t) if now < t => Err(self.last_lag),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn admits_when_the_shard_keeps_up() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        for i in 0..100 {
            a.handle_lag(t0 + ms(i * 50), ms(3));
        }
        assert_eq!(a.check(t0 + ms(5000)), Ok(()));
    }

    #[test]
    fn a_short_stall_does_not_refuse_joins() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        // 900 ms behind (a descheduled process), then caught up.
        for i in 0..10 {
            a.handle_lag(t0 + ms(i * 100), ms(400));
        }
        a.handle_lag(t0 + ms(1000), ms(5));
        a.handle_lag(t0 + ms(1100), ms(400));
        assert_eq!(a.check(t0 + ms(1200)), Ok(()));
    }

    #[test]
    fn refuses_after_a_second_behind_and_admits_again_after_the_hold() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        for i in 0..=10 {
            a.handle_lag(t0 + ms(i * 100), ms(300 + i));
        }
        // Overload seen at t0 + 1 s: refused, with the last lag.
        assert_eq!(a.check(t0 + ms(1000)), Err(ms(310)));
        // Caught up at once, but the hold runs from the last overloaded
        // sample.
        a.handle_lag(t0 + ms(1100), ms(2));
        assert_eq!(a.check(t0 + ms(5999)), Err(ms(2)));
        assert_eq!(a.check(t0 + ms(6000)), Ok(()));
    }

    #[test]
    fn staying_behind_extends_the_refusal() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        for i in 0..=80 {
            a.handle_lag(t0 + ms(i * 100), ms(1000));
        }
        assert!(a.check(t0 + ms(12_999)).is_err());
        assert_eq!(a.check(t0 + ms(13_000)), Ok(()));
    }
}
