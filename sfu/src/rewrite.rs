//! Per outgoing stream rewriting of sequence numbers, timestamps and VP8
//! picture ids.
//!
//! A receive slot is one continuous RTP stream for the receiver's decoder even
//! though the source and simulcast layer behind it change. Within one input
//! stream the rewriter applies constant offsets (so reordering and loss are
//! preserved exactly and NACKs map back); when the input switches it rebases so
//! that the output continues right after what was last sent.
//!
//! Within one input, packets may also be left out on purpose (the spatial
//! layers above a receiver's, in a VP9 SVC stream): [`Rewriter::skip`]
//! closes their gap so the receiver sees no loss it would ask to repair.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Skipped input sequence numbers remembered, so a packet that arrives late
/// (reordered, or a repair) still finds its place among them. Beyond this a
/// late packet is older than anything a receiver still waits for.
const SKIPS_KEPT: usize = 512;

/// Where every outgoing stream starts. str0m requires the first extended
/// sequence number below 65536 (no out-of-band ROC signalling).
const FIRST_SEQ: u64 = 1;

/// Numbers of one incoming packet, as the rewriter needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InNumbers {
    /// Extended (roll-over free) sequence number of the input stream.
    pub seq: u64,
    pub ts: u32,
    /// VP8 picture id and whether it is the 15-bit form.
    pub pid: Option<(u16, bool)>,
    pub tl0: Option<u8>,
}

/// Numbers to put on the outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutNumbers {
    pub seq: u64,
    pub ts: u32,
    pub pid: Option<u16>,
    pub tl0: Option<u8>,
}

#[derive(Debug, Clone)]
struct Offsets {
    seq: u64,
    ts: u32,
    pid: u16,
    tl0: u8,
    /// Packets of the current input older than the one we switched on belong
    /// to frames the receiver never saw the start of.
    first_in_seq: u64,
    /// Highest input sequence number mapped or skipped.
    highest_in: u64,
    /// Input sequence numbers skipped, ascending (the newest `SKIPS_KEPT`).
    skips: VecDeque<u64>,
    /// How many were skipped since the switch (`skips` may hold fewer).
    skipped: u64,
}

#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    /// Smallest timestamp step across a switch: one frame (video) or one
    /// packet (audio), so the receiver never sees time stand still.
    min_step: u32,
    offsets: Option<Offsets>,
    last_seq: u64,
    last_ts: u32,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    last_at: Option<Instant>,
    started: bool,
}

impl Rewriter {
    pub fn new(clock_rate: u32, min_step: u32) -> Self {
        Self {
            clock_rate,
            min_step,
            offsets: None,
            last_seq: FIRST_SEQ - 1,
            last_ts: 0,
            last_pid: None,
            last_tl0: None,
            last_at: None,
            started: false,
        }
    }

    pub fn video() -> Self {
        // 3000 ticks at 90 kHz = one frame at 30 fps.
        Self::new(90_000, 3000)
    }

    pub fn audio() -> Self {
        // 960 ticks at 48 kHz = one 20 ms Opus packet.
        Self::new(48_000, 960)
    }

    /// Whether an input stream is currently mapped.
    pub fn is_mapped(&self) -> bool {
        self.offsets.is_some()
    }

    /// Stop mapping the current input (source gone or paused). The next
    /// packet needs a [`Rewriter::rebase`].
    pub fn unmap(&mut self) {
        self.offsets = None;
    }

    /// Highest sequence number sent so far, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.started.then_some(self.last_seq)
    }

    /// Make `p` (the first packet of a new input stream, e.g. the start of a
    /// keyframe on another layer) follow directly after what was last sent.
    pub fn rebase(&mut self, p: &InNumbers, now: Instant) {
        let next_seq = self.last_seq.wrapping_add(1);
        let next_ts = if self.started {
            let elapsed = self
                .last_at
                .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            let ticks = (elapsed.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000)
                .min(u64::from(u32::MAX / 4)) as u32;
            self.last_ts.wrapping_add(ticks.max(self.min_step))
        } else {
            p.ts
        };
        let (pid_off, tl0_off) = match (p.pid, self.last_pid) {
            (Some((pid, _)), Some(last)) => (last.wrapping_add(1).wrapping_sub(pid), 0),
            _ => (0, 0),
        };
        let tl0_off = match (p.tl0, self.last_tl0) {
            (Some(tl0), Some(last)) => last.wrapping_add(1).wrapping_sub(tl0),
            _ => tl0_off,
        };
        self.offsets = Some(Offsets {
            seq: next_seq.wrapping_sub(p.seq),
            ts: next_ts.wrapping_sub(p.ts),
            pid: pid_off,
            tl0: tl0_off,
            first_in_seq: p.seq,
            highest_in: p.seq,
            skips: VecDeque::new(),
            skipped: 0,
        });
    }

    /// Leave out packet `seq` of the current input: the packets after it
    /// move down to close the gap. A late packet (older than one already
    /// mapped) is past closing: its number stays a gap.
    pub fn skip(&mut self, seq: u64) {
        let Some(o) = self.offsets.as_mut() else {
            return;
        };
        if seq <= o.highest_in || seq < o.first_in_seq {
            return;
        }
        o.highest_in = seq;
        o.skipped += 1;
        if o.skips.len() == SKIPS_KEPT {
            o.skips.pop_front();
        }
        o.skips.push_back(seq);
    }

    /// Numbers for a packet of the current input stream; `None` when no input
    /// is mapped or the packet precedes the switch point.
    pub fn map(&mut self, p: &InNumbers, now: Instant) -> Option<OutNumbers> {
        let o = self.offsets.as_mut()?;
        if p.seq < o.first_in_seq {
            return None;
        }
        // Skips after this packet do not move it.
        let later = o.skips.iter().rev().take_while(|&&s| s > p.seq).count() as u64;
        if later == o.skips.len() as u64 && o.skipped > later {
            // Older than every skip remembered: where it goes is forgotten.
            return None;
        }
        if p.seq > o.highest_in {
            o.highest_in = p.seq;
        }
        let seq = p.seq.wrapping_add(o.seq).wrapping_sub(o.skipped - later);
        let ts = p.ts.wrapping_add(o.ts);
        let pid = p.pid.map(|(pid, long)| {
            let mask = if long { 0x7fff } else { 0x7f };
            pid.wrapping_add(o.pid) & mask
        });
        let tl0 = p.tl0.map(|t| t.wrapping_add(o.tl0));
        if !self.started || seq > self.last_seq {
            self.last_seq = seq;
            self.last_ts = ts;
            self.last_at = Some(now);
            if pid.is_some() {
                self.last_pid = pid;
            }
            if tl0.is_some() {
                self.last_tl0 = tl0;
            }
            self.started = true;
        }
        Some(OutNumbers { seq, ts, pid, tl0 })
    }
}

/// `a` is at or after `b` in RTP timestamp space (wrapping).
pub fn ts_not_before(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(seq: u64, ts: u32, pid: u16) -> InNumbers {
        InNumbers {
            seq,
            ts,
            pid: Some((pid, true)),
            tl0: Some(pid as u8),
        }
    }

    #[test]
    fn continues_after_switch_with_next_sequence_and_later_timestamp() {
        let t0 = Instant::now();
        let mut r = Rewriter::video();
        r.rebase(&pkt(5000, 100_000, 77), t0);
        let a = r.map(&pkt(5000, 100_000, 77), t0).expect("mapped");
        assert_eq!(a.seq, FIRST_SEQ);
        let b = r.map(&pkt(5001, 103_000, 78), t0).expect("mapped");
        assert_eq!(b.seq, FIRST_SEQ + 1);
        assert_eq!(b.ts.wrapping_sub(a.ts), 3000);
        // Switch to a layer with unrelated numbering 100 ms later.
        let t1 = t0 + Duration::from_millis(100);
        r.rebase(&pkt(9, 7, 30_000), t1);
        let c = r.map(&pkt(9, 7, 30_000), t1).expect("mapped");
        assert_eq!(c.seq, FIRST_SEQ + 2);
        assert_eq!(c.ts.wrapping_sub(b.ts), 9000, "100 ms at 90 kHz");
        assert_eq!(c.pid, Some(79));
        assert_eq!(c.tl0, Some(79));
        // A straggler from before the switch point is not forwarded.
        assert_eq!(r.map(&pkt(8, 4, 29_999), t1), None);
    }

    #[test]
    fn preserves_gaps_within_a_stream_so_nacks_map_back() {
        let t0 = Instant::now();
        let mut r = Rewriter::audio();
        r.rebase(&pkt(100, 0, 0), t0);
        let a = r.map(&pkt(100, 0, 0), t0).expect("mapped");
        let b = r.map(&pkt(103, 2880, 0), t0).expect("mapped");
        assert_eq!(b.seq - a.seq, 3);
        // The retransmission of 101 arrives late and keeps its place.
        let c = r.map(&pkt(101, 960, 0), t0).expect("mapped");
        assert_eq!(c.seq, a.seq + 1);
        assert_eq!(r.last_seq(), Some(b.seq));
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_a_late_packet_keeps_its_place() {
        let t0 = Instant::now();
        let mut r = Rewriter::video();
        r.rebase(&pkt(10, 0, 1), t0);
        let a = r.map(&pkt(10, 0, 1), t0).expect("mapped").seq;
        r.skip(11);
        r.skip(12);
        // 14 arrives before 13 (reordered); 15 is skipped, 16 follows.
        let c = r.map(&pkt(14, 0, 1), t0).expect("mapped").seq;
        assert_eq!(c, a + 2, "13 keeps the place between");
        let b = r.map(&pkt(13, 0, 1), t0).expect("mapped").seq;
        assert_eq!(b, a + 1);
        r.skip(15);
        let d = r.map(&pkt(16, 0, 1), t0).expect("mapped").seq;
        assert_eq!(d, a + 3);
        // 17 is lost on the way, 18 skipped, 19 forwarded: 17's number is
        // left free for it, and its repair takes it later.
        r.skip(18);
        let f = r.map(&pkt(19, 0, 1), t0).expect("mapped").seq;
        assert_eq!(f, a + 5);
        let late = r.map(&pkt(17, 0, 1), t0).expect("mapped").seq;
        assert_eq!(late, a + 4);
        // A skip of a packet older than what was mapped changes nothing.
        r.skip(12);
        assert_eq!(r.map(&pkt(20, 0, 1), t0).expect("mapped").seq, a + 6);
    }

    proptest! {
        /// Whatever packets a layer filter leaves out, the ones forwarded in
        /// order get consecutive numbers (the receiver sees no loss), and a
        /// rebase still continues after the last.
        #[test]
        fn forwarded_packets_stay_consecutive_whatever_is_skipped(
            keep in prop::collection::vec(any::<bool>(), 1..600),
            start in any::<u32>(),
        ) {
            let t0 = Instant::now();
            let mut r = Rewriter::video();
            let start = u64::from(start);
            r.rebase(&pkt(start, 0, 0), t0);
            let mut last: Option<u64> = None;
            for (i, &k) in keep.iter().enumerate() {
                let seq = start + i as u64;
                if k || i == 0 {
                    let out = r.map(&pkt(seq, 0, 0), t0).expect("in order maps").seq;
                    if let Some(prev) = last {
                        prop_assert_eq!(out, prev + 1);
                    }
                    last = Some(out);
                } else {
                    r.skip(seq);
                }
            }
            let next = start + keep.len() as u64 + 1000;
            r.rebase(&pkt(next, 0, 0), t0);
            let out = r.map(&pkt(next, 0, 0), t0).expect("mapped").seq;
            prop_assert_eq!(Some(out), last.map(|l| l + 1));
        }
    }

    #[derive(Debug, Clone)]
    struct Step {
        switch: bool,
        gap_ms: u64,
    }

    proptest! {
        /// Sequence numbers strictly increase and timestamps never go back
        /// across any pattern of layer/source switches, whatever numbering the
        /// input streams use.
        #[test]
        fn output_is_monotonic_across_switches(
            starts in prop::collection::vec((any::<u32>(), any::<u32>(), 0u16..0x7fff), 1..6),
            steps in prop::collection::vec((any::<bool>(), 0u64..200), 1..400),
        ) {
            let steps: Vec<Step> = steps.into_iter().map(|(s, g)| Step { switch: s, gap_ms: g }).collect();
            let t0 = Instant::now();
            let mut now = t0;
            let mut r = Rewriter::video();
            // Each input stream advances on its own clock, as simulcast layers do.
            let mut inputs: Vec<(u64, u32, u16)> = starts
                .iter()
                .map(|&(s, t, p)| (u64::from(s), t, p))
                .collect();
            let mut current = 0usize;
            let mut last: Option<OutNumbers> = None;
            for (i, step) in steps.iter().enumerate() {
                now += Duration::from_millis(step.gap_ms);
                for inp in inputs.iter_mut() {
                    inp.0 += 1;
                    inp.1 = inp.1.wrapping_add((step.gap_ms * 90) as u32);
                    inp.2 = (inp.2 + 1) & 0x7fff;
                }
                if i == 0 || step.switch {
                    current = (current + 1) % inputs.len();
                    let (s, t, p) = inputs[current];
                    r.rebase(&pkt(s, t, p), now);
                }
                let (s, t, p) = inputs[current];
                let out = r.map(&pkt(s, t, p), now).expect("in-order packet maps");
                if let Some(prev) = last {
                    prop_assert_eq!(out.seq, prev.seq + 1);
                    prop_assert!(ts_not_before(out.ts, prev.ts));
                    prop_assert_eq!(out.pid, prev.pid.map(|p| (p + 1) & 0x7fff));
                }
                last = Some(out);
            }
            prop_assert!(last.expect("at least one step").seq < 65_536 + 400);
        }
    }
}
