//! One participant's audio packets back in playout order.
//!
//! Packets are keyed by their RTP timestamp (extended past the 32-bit
//! wrap), so reordering and duplicates sort themselves out. Playout starts
//! `delay` after the first packet; each `pop` then gives the packet with
//! the expected timestamp, or a concealed frame when it is missing (the
//! mixer pops as often as it needs samples for a 20 ms tick). A participant that stops sending (muted, DTX, gone) is
//! concealed for a few frames and then idle, so it adds nothing to the mix
//! and costs no decoding, until its next packet restarts playout.
//!
//! A packet is taken to last one 20 ms frame (browsers' default ptime)
//! until the decoder says otherwise ([`JitterBuffer::last_lasted`]), so
//! streams of 10 to 120 ms packets play in order too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::FRAME_TICKS;

/// How a jitter buffer plays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// From a (re)started stream's first packet to its playout: how much
    /// network jitter is absorbed, and the latency the mix adds for it.
    pub delay: Duration,
    /// Packets held at most (the oldest goes first): bounds memory and the
    /// delay a sender far ahead of its timestamps could build.
    pub max_packets: usize,
    /// Missing frames concealed before the stream counts as stopped.
    pub conceal_frames: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(60),
            max_packets: 50,
            conceal_frames: 5,
        }
    }
}

/// What to play for one tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Decode this packet.
    Packet(Vec<u8>),
    /// The expected packet is missing: conceal it.
    Lost,
    /// Nothing to play (not started, or stopped): adds nothing.
    Idle,
}

/// What a buffer threw away, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Arrived after its frame was played (or concealed).
    pub late: u64,
    /// Same timestamp as a packet already held.
    pub duplicate: u64,
    /// Pushed out by `max_packets`.
    pub overflow: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Playout jumped ahead over a gap too long to conceal.
    pub resyncs: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    packets: BTreeMap<u64, Vec<u8>>,
    /// Highest extended timestamp seen, for unwrapping the next one.
    highest: Option<u64>,
    /// The timestamp the next tick plays; `None` while idle.
    next: Option<u64>,
    /// When an idle buffer starts playing.
    start_at: Option<Instant>,
    missing_run: u32,
    /// Timestamp of the last packet played.
    last_played: Option<u64>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        Self {
            cfg,
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            start_at: None,
            missing_run: 0,
            last_played: None,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Whether a frame is being played (not idle).
    pub fn is_playing(&self) -> bool {
        self.next.is_some()
    }

    /// 32-bit RTP timestamps onto a line that does not wrap; the first one
    /// lands at 2^32 so a later, reordered one can sit below it.
    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.highest {
            None => (1u64 << 32) + u64::from(ts),
            Some(h) => {
                let delta = i64::from(ts.wrapping_sub(h as u32) as i32);
                (h as i64 + delta).max(0) as u64
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, now: Instant, timestamp: u32, payload: &[u8]) {
        let ext = self.extend(timestamp);
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicate += 1;
            return;
        }
        while self.packets.len() >= self.cfg.max_packets.max(1) {
            self.packets.pop_first();
            self.stats.overflow += 1;
        }
        self.packets.insert(ext, payload.to_vec());
        if self.next.is_none() && self.start_at.is_none() {
            self.start_at = Some(now + self.cfg.delay);
        }
    }

    /// The packet `pop` just gave lasted `ticks` (RTP clock), not one
    /// 20 ms frame: the next one is expected where it ended.
    pub fn last_lasted(&mut self, ticks: u32) {
        if let Some(start) = self.last_played {
            self.next = Some(start + u64::from(ticks.max(1)));
        }
    }

    /// The frame for the tick at `now`.
    pub fn pop(&mut self, now: Instant) -> Frame {
        let next = match self.next {
            Some(n) => n,
            None => {
                if self.start_at.is_none_or(|t| now < t) {
                    return Frame::Idle;
                }
                self.start_at = None;
                match self.packets.first_key_value() {
                    Some((&first, _)) => first,
                    None => return Frame::Idle,
                }
            }
        };
        // Packets before `next` can no longer play: a concealed frame (20
        // ms) stepped over a 10 ms packet, or a long packet covered them.
        while let Some((&k, _)) = self.packets.first_key_value()
            && k < next
        {
            self.packets.pop_first();
            self.stats.late += 1;
        }
        if let Some(p) = self.packets.remove(&next) {
            self.missing_run = 0;
            self.last_played = Some(next);
            self.next = Some(next + u64::from(FRAME_TICKS));
            return Frame::Packet(p);
        }
        let gap_frames = self
            .packets
            .first_key_value()
            .map(|(&first, _)| (first.saturating_sub(next)) / u64::from(FRAME_TICKS));
        match gap_frames {
            // Later packets are here but the gap is longer than
            // concealment should cover (a pause, a timestamp jump): play
            // on from them.
            Some(g) if g > u64::from(self.cfg.conceal_frames) => {
                self.stats.resyncs += 1;
                self.missing_run = 0;
                match self.packets.pop_first() {
                    Some((first, p)) => {
                        self.last_played = Some(first);
                        self.next = Some(first + u64::from(FRAME_TICKS));
                        Frame::Packet(p)
                    }
                    None => Frame::Idle,
                }
            }
            _ => {
                self.missing_run += 1;
                if self.missing_run > self.cfg.conceal_frames {
                    // Stopped: idle until a packet restarts playout. What
                    // is still held was before `next` and cannot play.
                    self.missing_run = 0;
                    self.next = None;
                    self.packets.clear();
                    return Frame::Idle;
                }
                self.stats.concealed += 1;
                self.next = Some(next + u64::from(FRAME_TICKS));
                Frame::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(JitterConfig::default())
    }

    #[test]
    fn plays_reordered_packets_in_timestamp_order_after_the_delay() {
        let t0 = Instant::now();
        let mut j = buffer();
        let ts = 1_000u32;
        j.push(t0, ts + FRAME_TICKS, b"b");
        j.push(t0, ts, b"a");
        j.push(t0 + ms(5), ts + 2 * FRAME_TICKS, b"c");
        assert_eq!(j.pop(t0 + ms(40)), Frame::Idle, "within the delay");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        assert_eq!(j.pop(t0 + ms(80)), Frame::Packet(b"b".to_vec()));
        assert_eq!(j.pop(t0 + ms(100)), Frame::Packet(b"c".to_vec()));
    }

    #[test]
    fn a_missing_packet_is_concealed_and_a_late_one_dropped() {
        let t0 = Instant::now();
        let mut j = buffer();
        j.push(t0, 0, b"a");
        j.push(t0, 2 * FRAME_TICKS, b"c");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        assert_eq!(j.pop(t0 + ms(80)), Frame::Lost);
        j.push(t0 + ms(85), FRAME_TICKS, b"b");
        assert_eq!(j.pop(t0 + ms(100)), Frame::Packet(b"c".to_vec()));
        assert_eq!(j.stats().late, 1);
        assert_eq!(j.stats().concealed, 1);
    }

    #[test]
    fn a_stream_that_stops_goes_idle_and_restarts_on_its_next_packet() {
        let t0 = Instant::now();
        let mut j = buffer();
        j.push(t0, 0, b"a");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        for i in 0..5 {
            assert_eq!(j.pop(t0 + ms(80 + 20 * i)), Frame::Lost);
        }
        assert_eq!(j.pop(t0 + ms(180)), Frame::Idle);
        assert!(!j.is_playing());
        // Unmuted 2 s later: its timestamps moved on with the clock.
        let t1 = t0 + ms(2_000);
        j.push(t1, 100 * FRAME_TICKS, b"z");
        assert_eq!(j.pop(t1 + ms(20)), Frame::Idle, "within the delay again");
        assert_eq!(j.pop(t1 + ms(60)), Frame::Packet(b"z".to_vec()));
    }

    #[test]
    fn a_timestamp_jump_resyncs_instead_of_concealing_for_seconds() {
        let t0 = Instant::now();
        let mut j = buffer();
        j.push(t0, 0, b"a");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        j.push(t0 + ms(70), 500 * FRAME_TICKS, b"far");
        assert_eq!(j.pop(t0 + ms(80)), Frame::Packet(b"far".to_vec()));
        assert_eq!(j.stats().resyncs, 1);
    }

    #[test]
    fn timestamps_wrapping_past_32_bits_stay_in_order() {
        let t0 = Instant::now();
        let mut j = buffer();
        let ts = u32::MAX - FRAME_TICKS + 1;
        j.push(t0, ts.wrapping_add(FRAME_TICKS), b"after");
        j.push(t0, ts, b"before");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"before".to_vec()));
        assert_eq!(j.pop(t0 + ms(80)), Frame::Packet(b"after".to_vec()));
    }

    #[test]
    fn holds_at_most_max_packets() {
        let t0 = Instant::now();
        let mut j = buffer();
        for i in 0..200u32 {
            j.push(t0, i * FRAME_TICKS, b"x");
        }
        assert_eq!(j.stats().overflow, 150);
        assert_eq!(j.packets.len(), 50);
    }

    #[test]
    fn a_packet_stepped_over_by_concealment_is_dropped_not_kept() {
        let t0 = Instant::now();
        let mut j = buffer();
        let half = FRAME_TICKS / 2;
        // 10 ms packets; the one at `half` is lost.
        j.push(t0, 0, b"a");
        j.push(t0, 2 * half, b"c");
        j.push(t0, 3 * half, b"d");
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        j.last_lasted(half);
        // Concealment fills 20 ms: from `half` to `3 * half`, over "c".
        assert_eq!(j.pop(t0 + ms(60)), Frame::Lost);
        assert_eq!(j.pop(t0 + ms(80)), Frame::Packet(b"d".to_vec()));
        assert!(j.packets.is_empty(), "nothing held that cannot play");
        assert_eq!(j.stats().late, 1);
    }

    #[test]
    fn duplicates_are_counted_and_played_once() {
        let t0 = Instant::now();
        let mut j = buffer();
        j.push(t0, 0, b"a");
        j.push(t0, 0, b"a");
        assert_eq!(j.stats().duplicate, 1);
        assert_eq!(j.pop(t0 + ms(60)), Frame::Packet(b"a".to_vec()));
        assert_eq!(j.pop(t0 + ms(80)), Frame::Lost);
    }
}
