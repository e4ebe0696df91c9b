//! How fast a stream flows: bytes over a sliding window, for allocation to
//! weigh what a layer costs a receiver.
//!
//! The window is a ring of fixed buckets, so a packet costs an index and an
//! add, and a rate is read without walking packets. A rate is bytes over the
//! time the stream actually flowed within the window: a layer that just
//! resumed or just stopped is not taken for a cheap one (allocation would
//! switch a receiver up to it and congest its link). The last rate seen
//! while the stream flowed is kept after it stops (a layer paused by its
//! publisher still costs what it cost when it resumes).

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);
/// How much time the window covers.
pub const WINDOW: Duration = Duration::from_millis(100 * BUCKETS as u64);
/// A pause this long ends a stream's flow: it is idle until it resumes,
/// and its rate is then measured from the resumption.
const GAP: Duration = Duration::from_millis(500);
/// The shortest flow a rate is measured over.
const MIN_SPAN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct RateMeter {
    /// Start of bucket `head`.
    head_start: Option<Instant>,
    head: usize,
    bytes: [u64; BUCKETS],
    /// First packet since the stream last resumed (after a [`GAP`]).
    active_since: Option<Instant>,
    last_packet: Option<Instant>,
    /// The last full-window rate measured while packets flowed.
    last_bps: Option<u64>,
    /// What the last [`Self::update`] measured.
    current: Option<u64>,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    pub const fn new() -> Self {
        Self {
            head_start: None,
            head: 0,
            bytes: [0; BUCKETS],
            active_since: None,
            last_packet: None,
            last_bps: None,
            current: None,
        }
    }

    /// Count `len` bytes arriving at `now`.
    pub fn add(&mut self, now: Instant, len: usize) {
        self.advance(now);
        let resumed = self
            .last_packet
            .is_none_or(|t| now.saturating_duration_since(t) > GAP);
        if resumed {
            self.active_since = Some(now);
        }
        self.last_packet = Some(now);
        self.bytes[self.head] += len as u64;
    }

    /// Move the ring forward to `now`, clearing the buckets it passes.
    fn advance(&mut self, now: Instant) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < BUCKET {
            return;
        }
        let steps = (elapsed.as_nanos() / BUCKET.as_nanos()) as u64;
        if steps >= BUCKETS as u64 {
            self.bytes = [0; BUCKETS];
            self.head = 0;
            self.head_start = Some(now);
            return;
        }
        for _ in 0..steps {
            self.head = (self.head + 1) % BUCKETS;
            self.bytes[self.head] = 0;
        }
        self.head_start = Some(start + BUCKET * steps as u32);
    }

    /// Bits per second over the part of the window ending at `now` in which
    /// the stream flowed; `None` while it is idle or has flowed for less
    /// than [`MIN_SPAN`]. Updates the remembered rate when it measures one.
    pub fn update(&mut self, now: Instant) -> Option<u64> {
        self.current = self.measure(now);
        self.current
    }

    fn measure(&mut self, now: Instant) -> Option<u64> {
        self.advance(now);
        let (since, last, head_start) = (self.active_since?, self.last_packet?, self.head_start?);
        if now.saturating_duration_since(last) > GAP {
            return None;
        }
        // The ring holds [oldest bucket's start, now]; the flow began at
        // `since` and (so far) ended with its last packet. A sparse stream
        // (a 5 fps screen share) is so measured a little high: allocation
        // errs towards what fits.
        let window_start = head_start
            .checked_sub(BUCKET * (BUCKETS as u32 - 1))
            .unwrap_or(head_start);
        let start = window_start.max(since);
        let end = now.min(last + Duration::from_millis(1));
        let span = end.saturating_duration_since(start);
        if span < MIN_SPAN {
            return None;
        }
        let bytes: u64 = self.bytes.iter().sum();
        let bps = (bytes as u128 * 8 * 1_000_000 / span.as_micros().max(1)) as u64;
        self.last_bps = Some(bps);
        Some(bps)
    }

    /// What the last [`Self::update`] measured (`None`: nothing flowed).
    pub fn current_bps(&self) -> Option<u64> {
        self.current
    }

    /// The last rate measured while the stream flowed (see [`Self::update`]).
    pub fn last_bps(&self) -> Option<u64> {
        self.last_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_stream_and_remembers_it_after_it_stops() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        // 1,000 bytes every 10 ms = 800 kbps.
        for i in 0..200u32 {
            m.add(t0 + Duration::from_millis(10) * i, 1000);
        }
        let now = t0 + Duration::from_millis(1995);
        let bps = m.update(now).expect("a full window");
        assert!((780_000..=820_000).contains(&bps), "{bps}");
        assert_eq!(m.update(now + Duration::from_secs(5)), None);
        assert_eq!(m.last_bps(), Some(bps));
    }

    #[test]
    fn says_nothing_before_half_a_second_of_flow() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        for i in 0..30u32 {
            m.add(t0 + Duration::from_millis(10) * i, 1000);
        }
        assert_eq!(m.update(t0 + Duration::from_millis(300)), None);
        assert_eq!(m.last_bps(), None);
    }

    /// 1,000 bytes every 10 ms (800 kbps) from `from` for `ms`.
    fn flow(m: &mut RateMeter, from: Instant, ms: u32) {
        for i in 0..ms / 10 {
            m.add(from + Duration::from_millis(10) * i, 1000);
        }
    }

    #[test]
    fn a_stream_that_resumes_is_measured_over_its_flow_not_the_whole_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        flow(&mut m, t0, 2000);
        // Paused for 3 s, then 600 ms of flow: still 800 kbps, not 480.
        let resumed = t0 + Duration::from_secs(5);
        flow(&mut m, resumed, 600);
        let bps = m
            .update(resumed + Duration::from_millis(600))
            .expect("600 ms of flow");
        assert!((760_000..=840_000).contains(&bps), "{bps}");
    }

    #[test]
    fn a_stream_that_stops_is_not_measured_cheaper_as_its_window_drains() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        flow(&mut m, t0, 2000);
        let full = m.update(t0 + Duration::from_millis(2000)).expect("flowing");
        // 300 ms after the last packet: a third of the window is silence.
        let bps = m
            .update(t0 + Duration::from_millis(2300))
            .expect("not yet idle");
        assert!(bps * 10 >= full * 9, "{bps} against {full}");
        // Idle after the gap, and the flowing rate is what it remembers.
        assert_eq!(m.update(t0 + Duration::from_millis(2600)), None);
        let last = m.last_bps().expect("remembered");
        assert!(last * 10 >= full * 9, "{last} against {full}");
    }

    #[test]
    fn follows_a_rate_that_drops() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        for i in 0..100u32 {
            m.add(t0 + Duration::from_millis(10) * i, 1000);
        }
        for i in 0..100u32 {
            m.add(
                t0 + Duration::from_secs(1) + Duration::from_millis(10) * i,
                100,
            );
        }
        let bps = m
            .update(t0 + Duration::from_millis(1999))
            .expect("a full window");
        assert!((70_000..=90_000).contains(&bps), "{bps}");
    }
}
