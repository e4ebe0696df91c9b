//! What participants really got: [`Reception`] of one publisher's camera
//! (complete, expected and shown frames, freezes, delay) and the times
//! frames completed, measured from the packets a participant recorded.
//!
//! Read-only: queries here look at finished runs and must not drive the
//! simulation or touch its random streams.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::Sim;

/// Packet indices received, packets in the frame, completion time, send time.
type FrameRx = (Vec<u16>, u16, Instant, u64);

/// What one participant really got of one source, between two times.
#[derive(Debug, Clone, PartialEq)]
pub struct Reception {
    /// Frames (layer, number) completely received in the window.
    pub frames_complete: usize,
    /// Frames the publisher sent on the layers received, in the window.
    pub frames_expected: usize,
    /// Gaps over 500 ms between consecutive complete frames.
    pub freezes: usize,
    pub longest_gap: Duration,
    /// Layers seen, by index.
    pub layers: Vec<u8>,
    /// Complete frames per layer seen (same order as `layers`).
    pub complete_per_layer: Vec<usize>,
    /// Publisher generation → last packet of the frame received (p50, max).
    pub delay_p50: Duration,
    pub delay_max: Duration,
    /// Frames the receiver could show in the window: complete, and every
    /// frame before them shown (its decoder, `tern_peer::decoder`, waits for
    /// a gap to be repaired or a keyframe).
    pub frames_shown: usize,
    /// Gaps over 500 ms between consecutive shown frames: the freezes a
    /// participant sees.
    pub shown_freezes: usize,
    pub longest_shown_gap: Duration,
}

impl Reception {
    /// The share of complete frames that were on `layer`.
    pub fn share_on(&self, layer: u8) -> f64 {
        let total: usize = self.complete_per_layer.iter().sum();
        let on = self
            .layers
            .iter()
            .zip(&self.complete_per_layer)
            .filter(|(l, _)| **l == layer)
            .map(|(_, n)| *n)
            .sum::<usize>();
        on as f64 / total.max(1) as f64
    }

    pub fn frame_loss(&self) -> f64 {
        if self.frames_expected == 0 {
            return 1.0;
        }
        1.0 - self.frames_complete as f64 / self.frames_expected as f64
    }
}

impl Sim {
    /// Measure what `receiver` got of `publisher`'s camera in [from, to).
    pub fn reception(
        &self,
        receiver: &str,
        publisher: &str,
        from: Duration,
        to: Duration,
    ) -> Reception {
        self.reception_of(receiver, publisher, "camera", from, to)
    }

    /// [`Sim::reception`] of any of `publisher`'s video sources ("screen").
    pub fn reception_of(
        &self,
        receiver: &str,
        publisher: &str,
        source_name: &str,
        from: Duration,
        to: Duration,
    ) -> Reception {
        let source = format!("{publisher}/{source_name}");
        let pub_start = self.peer(publisher).started;
        let st = self.state(receiver);
        let (a, b) = (self.epoch + from, self.epoch + to);
        // (layer, frame) → (distinct packet indices, count, completion time, sent)
        let mut frames: BTreeMap<(u8, u32), FrameRx> = BTreeMap::new();
        for r in &st.received_all(&source) {
            let (Some(layer), Some(frame), Some(sent)) = (r.layer, r.frame, r.sent_us) else {
                continue;
            };
            let sent_at = pub_start + Duration::from_micros(sent);
            if sent_at < a || sent_at >= b {
                continue;
            }
            let e = frames
                .entry((layer, frame))
                .or_insert((Vec::new(), r.count, r.at, sent));
            if !e.0.contains(&r.index) {
                e.0.push(r.index);
                e.2 = e.2.max(r.at);
            }
        }
        let mut complete: Vec<(Instant, Duration)> = Vec::new();
        let mut per_layer: BTreeMap<u8, (u32, u32)> = BTreeMap::new();
        let mut complete_on: BTreeMap<u8, usize> = BTreeMap::new();
        for (&(layer, frame), (idx, count, done, sent)) in &frames {
            let e = per_layer.entry(layer).or_insert((frame, frame));
            e.0 = e.0.min(frame);
            e.1 = e.1.max(frame);
            if idx.len() >= usize::from(*count) {
                *complete_on.entry(layer).or_default() += 1;
                let sent_at = pub_start + Duration::from_micros(*sent);
                complete.push((*done, done.saturating_duration_since(sent_at)));
            }
        }
        // Frames of a layer in the window are numbered consecutively.
        let frames_expected = per_layer
            .values()
            .map(|(lo, hi)| (hi - lo + 1) as usize)
            .sum();
        complete.sort();
        let mut freezes = 0;
        let mut longest = Duration::ZERO;
        let mut prev = a;
        for (t, _) in &complete {
            let gap = t.saturating_duration_since(prev);
            if gap > Duration::from_millis(500) && prev != a {
                freezes += 1;
            }
            longest = longest.max(gap);
            prev = *t;
        }
        let mut delays: Vec<Duration> = complete.iter().map(|(_, d)| *d).collect();
        delays.sort();
        let shown: Vec<Instant> = st
            .decoded_all(&source)
            .into_iter()
            .filter(|t| *t >= a && *t < b)
            .collect();
        // The window's ends count as frames: a picture that never comes
        // back, or is frozen when the window opens, is a freeze too.
        let mut edges = Vec::with_capacity(shown.len() + 2);
        edges.push(a);
        edges.extend_from_slice(&shown);
        edges.push(b);
        let (mut shown_freezes, mut longest_shown_gap) = (0, Duration::ZERO);
        for w in edges.windows(2) {
            let gap = w[1].saturating_duration_since(w[0]);
            if gap > Duration::from_millis(500) {
                shown_freezes += 1;
            }
            longest_shown_gap = longest_shown_gap.max(gap);
        }
        Reception {
            frames_shown: shown.len(),
            shown_freezes,
            longest_shown_gap,
            frames_complete: complete.len(),
            frames_expected,
            freezes,
            longest_gap: longest,
            layers: per_layer.keys().copied().collect(),
            complete_per_layer: per_layer
                .keys()
                .map(|l| complete_on.get(l).copied().unwrap_or(0))
                .collect(),
            delay_p50: delays.get(delays.len() / 2).copied().unwrap_or_default(),
            delay_max: delays.last().copied().unwrap_or_default(),
        }
    }

    /// Times at which `receiver` completed frames of `publisher`'s camera.
    pub fn frame_times(&self, receiver: &str, publisher: &str) -> Vec<Duration> {
        let source = format!("{publisher}/camera");
        let mut done: BTreeMap<(u8, u32), (usize, u16, Instant)> = BTreeMap::new();
        for r in &self.state(receiver).received_all(&source) {
            if let (Some(l), Some(f)) = (r.layer, r.frame) {
                let e = done.entry((l, f)).or_insert((0, r.count, r.at));
                e.0 += 1;
                e.2 = e.2.max(r.at);
            }
        }
        let mut t: Vec<Duration> = done
            .values()
            .filter(|(n, c, _)| *n >= usize::from(*c))
            .map(|(_, _, at)| *at - self.epoch)
            .collect();
        t.sort();
        t
    }
}
