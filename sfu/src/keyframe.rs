//! Keyframe request throttling: a keyframe costs a publisher a burst of bits,
//! and every receiver of a source would otherwise ask at once. The source
//! gate aggregates requests per upstream stream as Jitsi Videobridge's
//! `KeyframeRequester` (jitsi-media-transform, `org.jitsi.nlj.rtcp`) does;
//! libwebrtc's sender likewise ignores requests that come within
//! `kMinKeyframeSendIntervalMs` of the last (`video/encoder_rtcp_feedback.cc`).

use std::time::{Duration, Instant};

/// At most one request per source (and layer) this often, whoever asks.
pub const SOURCE_INTERVAL: Duration = Duration::from_millis(200);
/// Per receiver: at most this many requests forwarded per window...
pub const RECEIVER_BURST: usize = 3;
/// ...of this length.
pub const RECEIVER_WINDOW: Duration = Duration::from_secs(10);

/// Aggregates requests for one upstream stream.
#[derive(Debug, Clone, Default)]
pub struct SourceGate {
    last: Option<Instant>,
}

impl SourceGate {
    /// True when a request may go upstream now (and records it).
    pub fn try_pass(&mut self, now: Instant) -> bool {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < SOURCE_INTERVAL => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    pub fn last(&self) -> Option<Instant> {
        self.last
    }
}

/// Limits how many keyframe requests one receiver can cause.
#[derive(Debug, Clone, Default)]
pub struct ReceiverBudget {
    recent: [Option<Instant>; RECEIVER_BURST],
}

impl ReceiverBudget {
    /// True when this receiver may cause another request now (and records it).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let mut free = None;
        for (i, slot) in self.recent.iter().enumerate() {
            match slot {
                Some(t) if now.saturating_duration_since(*t) < SOURCE_INTERVAL => return false,
                Some(t) if now.saturating_duration_since(*t) < RECEIVER_WINDOW => {}
                _ => free = free.or(Some(i)),
            }
        }
        match free {
            Some(i) => {
                self.recent[i] = Some(now);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_gate_passes_one_request_per_interval() {
        let t0 = Instant::now();
        let mut g = SourceGate::default();
        assert!(g.try_pass(t0));
        assert!(!g.try_pass(t0 + Duration::from_millis(50)));
        assert!(!g.try_pass(t0 + Duration::from_millis(199)));
        assert!(g.try_pass(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn receiver_budget_allows_three_per_ten_seconds_spaced() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = ReceiverBudget::default();
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + ms(100)), "closer than 200 ms");
        assert!(b.try_take(t0 + ms(300)));
        assert!(b.try_take(t0 + ms(600)));
        assert!(!b.try_take(t0 + ms(900)), "fourth within 10 s");
        assert!(!b.try_take(t0 + ms(9_999)));
        assert!(b.try_take(t0 + ms(10_000)), "first one expired");
    }
}
