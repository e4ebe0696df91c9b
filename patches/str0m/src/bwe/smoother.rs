use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp_::Bitrate;

/// Time window for averaging estimate changes.
const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);

/// An estimate and when it was recorded, in ns after the smoother's base.
///
/// Tern patch (patches/README.md): 16 bytes, not 24 with an `Instant`. The
/// estimate changes on most timeouts, so a 3 s window holds
/// hundreds (a meeting participant's smoother was ~24 KB). Kept to the ns,
/// entries leave the window exactly when they did.
type TimeBitrate = (u64, Bitrate);

const TOLERANCE: f64 = 0.05;

/// Smooths BWE estimates by averaging over a time window.
pub struct EstimateSmoother {
    /// What the entries' times count from: the first recorded.
    base: Option<Instant>,
    estimates: VecDeque<TimeBitrate>,
    maybe_emit: bool,
    emitted: Option<Bitrate>,
}

impl EstimateSmoother {
    pub fn new() -> Self {
        Self {
            base: None,
            estimates: VecDeque::new(),
            maybe_emit: false,
            emitted: None,
        }
    }

    /// Record a new estimate and update the smoothed average.
    pub fn record(&mut self, now: Instant, estimate: Bitrate) {
        let now_ns = self.ns(now);
        // Did value change from previous?
        let do_update = self.estimates.back().map(|b| b.1) != Some(estimate);

        if do_update {
            self.maybe_emit = true;
            self.estimates.push_back((now_ns, estimate));
        }

        // Remove entries older than the window.
        while let Some((time, _)) = self.estimates.front() {
            if now_ns.saturating_sub(*time) > ESTIMATE_WINDOW.as_nanos() as u64 {
                // Keep last entry
                if self.estimates.len() == 1 {
                    break;
                }

                self.maybe_emit = true;
                self.estimates.pop_front();
            } else {
                break;
            }
        }
    }

    /// Forget the window: `estimate` is the value now, emitted at the next
    /// poll (Tern patch: a collapse of the path is not averaged away).
    pub fn reset(&mut self, now: Instant, estimate: Bitrate) {
        let now_ns = self.ns(now);
        self.estimates.clear();
        self.estimates.push_back((now_ns, estimate));
        self.maybe_emit = true;
    }

    /// `t` in ns after the base (the first time seen; earlier times count
    /// as the base, as `duration_since` saturated them before). 584 years
    /// of ns fit.
    fn ns(&mut self, t: Instant) -> u64 {
        let base = *self.base.get_or_insert(t);
        u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Poll for an estimate to emit. Returns Some only when there's a new value to emit.
    pub fn poll(&mut self) -> Option<Bitrate> {
        if !self.maybe_emit {
            return None;
        }

        if self.estimates.is_empty() {
            return None;
        }

        let total: f64 = self.estimates.iter().map(|b| b.1.as_f64()).sum();
        let avg = total / self.estimates.len() as f64;
        let rate: Bitrate = avg.into();

        // This forces emitting if we have the first ever value, or a last
        // where the rest of the window is gone (estimates stop coming).
        let force = self.estimates.len() == 1 && self.emitted != Some(rate);

        // Emit if we deviate enough from previously emitted.
        let deviate = if let Some(emitted) = self.emitted {
            !in_tolerance(emitted, rate)
        } else {
            true
        };

        self.maybe_emit = false;

        // Are we not to emit?
        if !force && !deviate {
            return None;
        }

        self.emitted = Some(rate);
        Some(rate)
    }
}

fn in_tolerance(b1: Bitrate, b2: Bitrate) -> bool {
    let min = b1 * (1.0 - TOLERANCE);
    let max = b1 * (1.0 + TOLERANCE);
    b2 > min && b2 < max
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<TimeBitrate>(), 16);
    }

    #[test]
    fn estimates_leave_the_window_to_the_nanosecond_and_the_last_stays() {
        let t0 = Instant::now();
        let mut s = EstimateSmoother::new();
        s.record(t0, Bitrate::kbps(1000));
        assert_eq!(s.poll(), Some(Bitrate::kbps(1000)));
        s.record(t0 + Duration::from_millis(10), Bitrate::kbps(2000));
        assert_eq!(s.poll(), Some(Bitrate::kbps(1500)));
        // Exactly 3 s after the first: still inside the window.
        s.record(t0 + ESTIMATE_WINDOW, Bitrate::kbps(2000));
        assert_eq!(s.estimates.len(), 2);
        // One ns later the first leaves.
        s.record(
            t0 + ESTIMATE_WINDOW + Duration::from_nanos(1),
            Bitrate::kbps(2000),
        );
        assert_eq!(s.estimates.len(), 1);
        assert_eq!(s.poll(), Some(Bitrate::kbps(2000)));
        // Long after, the last estimate is kept.
        s.record(t0 + Duration::from_secs(3600), Bitrate::kbps(2000));
        assert_eq!(s.estimates.len(), 1);
        s.reset(t0 + Duration::from_secs(3601), Bitrate::kbps(300));
        assert_eq!(s.poll(), Some(Bitrate::kbps(300)));
    }
}
