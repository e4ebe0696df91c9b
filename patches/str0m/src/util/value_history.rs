use std::collections::VecDeque;
use std::iter::Sum;
use std::ops::{AddAssign, SubAssign};
use std::time::{Duration, Instant};

/// Holds a history values of type T for up to a certain Duration, as well as the
/// cumulated (total) value.
#[derive(Debug)]
pub(crate) struct ValueHistory<T> {
    value: T,
    history: VecDeque<(Instant, T)>,
    max_time: Duration,
}

const DEFAULT_VALUE_HISTORY_DURATION: Duration = Duration::from_secs(1);

/// Values pushed within this time of the newest entry are added to it
/// rather than kept apart (Tern patch, patches/README.md): a send stream
/// keeps a history of every packet's bytes for its resend ratio, and at a
/// few hundred packets a second it held hundreds of 24-byte entries for a
/// sum that needs no finer steps. Now at most ~20 a second: the window
/// slides in steps of 50 ms (20 ms steps, ~50 entries a second, kept a
/// 64-entry allocation per stream, 1.5 KB; 50 ms keeps 32).
const COALESCE: Duration = Duration::from_millis(50);

impl<T: Default> Default for ValueHistory<T> {
    fn default() -> Self {
        Self {
            value: Default::default(),
            history: Default::default(),
            max_time: DEFAULT_VALUE_HISTORY_DURATION,
        }
    }
}

impl<T> ValueHistory<T>
where
    T: Copy + AddAssign + SubAssign + Sum,
{
    /// Adds a timed value
    /// Note: time should always monotonically increase in subsequent calls to add()
    pub fn push(&mut self, t: Instant, v: T) {
        self.value += v;
        if let Some((newest, sum)) = self.history.back_mut()
            && t.saturating_duration_since(*newest) < COALESCE
        {
            *sum += v;
            return;
        }
        self.history.push_back((t, v));
    }

    /// Returns the sum of all values in the history up to max_time. Might
    /// return stale value unless [`ValueHistory::purge_old`] is called before.
    pub fn sum(&self) -> T {
        self.value
    }

    /// How many values the history holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.history.len()
    }

    /// Recalculates sum purging values older than `now - max_time`.
    pub fn purge_old(&mut self, now: Instant) {
        while {
            let Some(front_t) = self.history.front().map(|v| v.0) else {
                return;
            };
            now.duration_since(front_t) > self.max_time
        } {
            if let Some((_, v)) = self.history.pop_front() {
                self.value -= v;
            }
        }
    }
}

#[allow(clippy::unchecked_time_subtraction)]
#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use super::ValueHistory;

    #[test]
    fn with_value_test() {
        let now = Instant::now();

        let mut h = ValueHistory {
            value: 11,
            max_time: Duration::from_secs(1),
            ..Default::default()
        };

        assert_eq!(h.sum(), 11);
        h.purge_old(now);
        assert_eq!(h.sum(), 11);
        h.push(now - Duration::from_millis(1500), 22);
        h.push(now - Duration::from_millis(500), 22);
        assert_eq!(h.sum(), 11 + 22 + 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 11 + 22);
        h.push(now, 0);
        assert_eq!(h.sum(), 11 + 22);
    }

    #[test]
    fn test() {
        let now = Instant::now();
        let mut h = ValueHistory::default();

        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(1500), 22);
        assert_eq!(h.sum(), 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(700), 22);
        h.push(now - Duration::from_millis(500), 33);
        assert_eq!(h.sum(), 22 + 33);
        h.purge_old(now);
        assert_eq!(h.sum(), 22 + 33);

        h.purge_old(now + Duration::from_millis(400));
        assert_eq!(h.sum(), 33);
        h.purge_old(now + Duration::from_millis(600));
        assert_eq!(h.sum(), 0);
    }

    #[test]
    fn values_close_together_share_an_entry() {
        let now = Instant::now();
        let mut h = ValueHistory::default();
        // 100 values a millisecond apart: two entries of 50 ms.
        for i in 0..100 {
            h.push(now + Duration::from_millis(i), 1u64);
        }
        assert_eq!(h.sum(), 100);
        assert_eq!(h.len(), 2);
        // An entry ages out whole, at its first value's time.
        h.purge_old(now + Duration::from_millis(1049));
        assert_eq!(h.sum(), 50);
        h.purge_old(now + Duration::from_millis(1100));
        assert_eq!(h.sum(), 0);
    }
}
