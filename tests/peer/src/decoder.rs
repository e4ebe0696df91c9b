//! What a browser's video receiver does with one receive slot, as far as the
//! bridge can tell: it assembles frames, decodes them in picture-id order,
//! and asks for a keyframe (PLI) when it cannot go on. The test and load
//! clients (`Peer`) run it, so that the bridge meets the keyframe requests
//! real subscribers send, and so that tests can read what a participant
//! could actually show (a complete frame whose predecessor never arrived is
//! not a picture).
//!
//! The timings are libwebrtc's video receive stream (`video_receive_stream2`
//! with NACK on and its default 1 s history):
//! - nothing decodes before a keyframe;
//! - a complete frame whose predecessor is missing waits: retransmission may
//!   still fill the gap;
//! - when no frame could be decoded for [`MAX_WAIT_FOR_FRAME`] while complete
//!   frames wait for a missing predecessor, a keyframe is required;
//! - while one is required, a PLI goes out every [`MAX_WAIT_FOR_KEYFRAME`]
//!   until a keyframe decodes.
//!
//! Sans-IO: packets and time come in, keyframe requests are polled.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// libwebrtc's `kMaxWaitForFrame`: no decodable frame for this long (while
/// later frames wait) and the receiver gives up on the gap.
pub const MAX_WAIT_FOR_FRAME: Duration = Duration::from_secs(3);
/// libwebrtc's `kMaxWaitForKeyFrame`: how often a receiver that needs a
/// keyframe asks again.
pub const MAX_WAIT_FOR_KEYFRAME: Duration = Duration::from_millis(200);
/// Frames kept while assembling or waiting for a predecessor; older ones are
/// dropped (libwebrtc stashes at most 100).
const MAX_FRAMES: usize = 64;

/// One packet of a video slot, as the receiver sees it.
#[derive(Debug, Clone, Copy)]
pub struct VideoPacket {
    /// RTP timestamp: packets of one frame share it.
    pub ts: u32,
    /// VP8 picture id and whether it is 15 bits wide.
    pub pid: (u16, bool),
    /// First packet of a keyframe.
    pub keyframe_start: bool,
    /// This packet's index in its frame and the frame's packet count (the
    /// synthetic payload carries both; a browser infers them from the marker
    /// bit and sequence numbers).
    pub index: u16,
    pub count: u16,
}

#[derive(Debug)]
struct Assembly {
    pid: u16,
    keyframe: bool,
    indices: Vec<u16>,
    count: u16,
}

#[derive(Debug)]
pub struct FrameDecoder {
    /// Frames not complete yet, by RTP timestamp.
    assembling: BTreeMap<u32, Assembly>,
    /// Complete frames waiting for their predecessor, by picture id.
    waiting: Vec<u16>,
    /// Picture id of the last decoded frame and its width mask.
    last: Option<(u16, u16)>,
    last_decoded_at: Option<Instant>,
    keyframe_required: bool,
    /// When to ask for a keyframe (next), while one is required.
    next_request: Option<Instant>,
    /// Frames decoded (shown).
    pub decoded: u64,
    /// Keyframe requests made.
    pub requests: u64,
}

fn mask(wide: bool) -> u16 {
    if wide { 0x7fff } else { 0x7f }
}

/// `a` comes after `b` in picture-id order (within half the id space).
fn newer(a: u16, b: u16, m: u16) -> bool {
    let d = a.wrapping_sub(b) & m;
    d != 0 && d <= m / 2
}

impl Default for FrameDecoder {
    /// A new slot: nothing decodes before its first keyframe.
    fn default() -> Self {
        FrameDecoder {
            assembling: BTreeMap::new(),
            waiting: Vec::new(),
            last: None,
            last_decoded_at: None,
            keyframe_required: true,
            next_request: None,
            decoded: 0,
            requests: 0,
        }
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A video packet arrived. Returns how many frames it made decodable.
    pub fn handle_packet(&mut self, now: Instant, p: VideoPacket) -> u64 {
        if self.keyframe_required && self.next_request.is_none() {
            // A new stream: its first keyframe is normally on the way; ask
            // only if it has not come after a while, as libwebrtc does.
            self.next_request = Some(now + MAX_WAIT_FOR_KEYFRAME);
        }
        let (pid, wide) = p.pid;
        let m = mask(wide);
        let pid = pid & m;
        let a = self.assembling.entry(p.ts).or_insert_with(|| Assembly {
            pid,
            keyframe: false,
            indices: Vec::new(),
            count: p.count.max(1),
        });
        a.keyframe |= p.keyframe_start;
        if !a.indices.contains(&p.index) {
            a.indices.push(p.index);
        }
        if a.indices.len() < usize::from(a.count) {
            if self.assembling.len() > MAX_FRAMES {
                self.assembling.pop_first();
            }
            return 0;
        }
        let Some(a) = self.assembling.remove(&p.ts) else {
            return 0;
        };
        let before = self.decoded;
        self.complete(now, a.pid, a.keyframe, m);
        self.decoded - before
    }

    fn complete(&mut self, now: Instant, pid: u16, keyframe: bool, m: u16) {
        let after_last = self.last.is_none_or(|(last, _)| newer(pid, last, m));
        if keyframe && after_last {
            // A keyframe needs nothing before it; what waited for frames
            // before it can never decode now.
            self.waiting.retain(|&w| newer(w, pid, m));
            self.keyframe_required = false;
            self.next_request = None;
            self.decode(now, pid, m);
            return;
        }
        match self.last {
            Some((last, _)) if !self.keyframe_required && pid == (last.wrapping_add(1) & m) => {
                self.decode(now, pid, m)
            }
            // Kept while the frame before is missing (or, while a keyframe
            // is required, in case the keyframe itself is only late: frames
            // that complete before a repaired keyframe follow it).
            last if last.is_none_or(|(last, _)| newer(pid, last, m))
                && !self.waiting.contains(&pid) =>
            {
                self.waiting.push(pid);
                if self.waiting.len() > MAX_FRAMES {
                    self.waiting.remove(0);
                }
            }
            // Older than what was shown, or a duplicate: nothing to do.
            _ => {}
        }
    }

    /// Show `pid`, then every waiting frame that now follows in order.
    fn decode(&mut self, now: Instant, pid: u16, m: u16) {
        let mut next = pid;
        loop {
            self.last = Some((next, m));
            self.last_decoded_at = Some(now);
            self.decoded += 1;
            let want = next.wrapping_add(1) & m;
            match self.waiting.iter().position(|&w| w == want) {
                Some(i) => {
                    self.waiting.swap_remove(i);
                    next = want;
                }
                None => break,
            }
        }
        let last = next;
        self.waiting.retain(|&w| newer(w, last, m));
        // Frames still assembling from before what was shown can no longer
        // be shown.
        self.assembling.retain(|_, a| newer(a.pid, last, m));
    }

    /// Time passed: give up on a gap that has kept frames from decoding for
    /// too long while media still arrives.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.keyframe_required {
            return;
        }
        // Only frames that are complete yet cannot be shown count as stuck:
        // a slot that was idle (paused, its source gone quiet) and resumes
        // with a keyframe still arriving must not ask for another.
        if let Some(decoded) = self.last_decoded_at
            && !self.waiting.is_empty()
            && now >= decoded + MAX_WAIT_FOR_FRAME
        {
            self.keyframe_required = true;
            self.next_request = Some(now);
            self.waiting.clear();
        }
    }

    /// `true` when a keyframe request (PLI) should be sent now.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> bool {
        self.handle_timeout(now);
        match self.next_request {
            Some(t) if self.keyframe_required && now >= t => {
                self.next_request = Some(now + MAX_WAIT_FOR_KEYFRAME);
                self.requests += 1;
                true
            }
            _ => false,
        }
    }

    /// When this decoder next needs [`FrameDecoder::poll_keyframe_request`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.keyframe_required {
            return self.next_request;
        }
        match self.last_decoded_at {
            Some(d) if !self.waiting.is_empty() => Some(d + MAX_WAIT_FOR_FRAME),
            _ => None,
        }
    }

    /// Picture id of the last frame shown.
    pub fn last_shown(&self) -> Option<u16> {
        self.last.map(|(pid, _)| pid)
    }

    pub fn keyframe_required(&self) -> bool {
        self.keyframe_required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Frame `n` (picture id `n`) of two packets; frame 0 is a keyframe.
    fn frame(d: &mut FrameDecoder, at: Instant, n: u16, keyframe: bool) -> u64 {
        let p = |index| VideoPacket {
            ts: u32::from(n) * 3000,
            pid: (n, true),
            keyframe_start: keyframe && index == 0,
            index,
            count: 2,
        };
        d.handle_packet(at, p(0)) + d.handle_packet(at, p(1))
    }

    /// Runs the decoder's clock from `from` to `to` in 10 ms steps; returns
    /// the instants at which it asked for a keyframe.
    fn requests(d: &mut FrameDecoder, from: Instant, to: Instant) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            if d.poll_keyframe_request(t) {
                out.push(t - from);
            }
            t += ms(10);
        }
        out
    }

    #[test]
    fn decodes_in_order_from_a_keyframe_and_asks_for_nothing() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        for n in 0..30 {
            assert_eq!(frame(&mut d, t0 + ms(33 * u64::from(n)), n, n == 0), 1);
        }
        assert_eq!(d.decoded, 30);
        assert!(requests(&mut d, t0 + ms(990), t0 + ms(5000)).is_empty());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_stream_that_starts_without_a_keyframe_asks_after_200ms_and_every_200ms() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        assert_eq!(frame(&mut d, t0, 5, false), 0);
        assert_eq!(d.poll_timeout(), Some(t0 + MAX_WAIT_FOR_KEYFRAME));
        let asked = requests(&mut d, t0, t0 + ms(650));
        assert_eq!(asked, vec![ms(200), ms(400), ms(600)]);
        // Delta frames still show nothing; a keyframe does, and the asking
        // stops.
        assert_eq!(frame(&mut d, t0 + ms(660), 6, false), 0);
        assert_eq!(frame(&mut d, t0 + ms(700), 7, true), 1);
        assert_eq!(frame(&mut d, t0 + ms(733), 8, false), 1);
        assert!(requests(&mut d, t0 + ms(700), t0 + ms(2000)).is_empty());
    }

    #[test]
    fn a_gap_that_retransmission_fills_releases_the_frames_that_waited() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        frame(&mut d, t0, 0, true);
        frame(&mut d, t0 + ms(33), 1, false);
        // Frame 2 lost; 3 and 4 complete but cannot be shown yet.
        assert_eq!(frame(&mut d, t0 + ms(99), 3, false), 0);
        assert_eq!(frame(&mut d, t0 + ms(132), 4, false), 0);
        assert_eq!(d.decoded, 2);
        // The retransmission arrives: 2, 3 and 4 are shown at once.
        assert_eq!(frame(&mut d, t0 + ms(300), 2, false), 3);
        assert_eq!(frame(&mut d, t0 + ms(330), 5, false), 1);
        assert!(requests(&mut d, t0 + ms(330), t0 + ms(6000)).is_empty());
    }

    #[test]
    fn a_gap_still_open_after_three_seconds_requires_a_keyframe_at_once() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        frame(&mut d, t0, 0, true);
        // Frame 1 never comes; later frames keep arriving.
        let mut n = 2;
        while u64::from(n) * 33 < 2990 {
            assert_eq!(frame(&mut d, t0 + ms(33 * u64::from(n)), n, false), 0);
            n += 1;
        }
        assert_eq!(d.poll_timeout(), Some(t0 + MAX_WAIT_FOR_FRAME));
        assert!(!d.poll_keyframe_request(t0 + ms(2999)));
        assert!(d.poll_keyframe_request(t0 + ms(3000)));
        assert!(d.keyframe_required());
        // A late frame 1 no longer helps; the keyframe does.
        assert_eq!(frame(&mut d, t0 + ms(3010), 1, false), 0);
        assert_eq!(frame(&mut d, t0 + ms(3100), 200, true), 1);
        assert_eq!(frame(&mut d, t0 + ms(3133), 201, false), 1);
        assert_eq!(d.requests, 1);
    }

    #[test]
    fn frames_complete_before_a_repaired_keyframe_are_shown_after_it() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        // The keyframe's second packet is lost; frames 1 and 2 complete.
        let kf = |index| VideoPacket {
            ts: 0,
            pid: (0, true),
            keyframe_start: index == 0,
            index,
            count: 2,
        };
        assert_eq!(d.handle_packet(t0, kf(0)), 0);
        assert_eq!(frame(&mut d, t0 + ms(33), 1, false), 0);
        assert_eq!(frame(&mut d, t0 + ms(66), 2, false), 0);
        // The retransmission completes the keyframe: all three show.
        assert_eq!(d.handle_packet(t0 + ms(80), kf(1)), 3);
        assert_eq!(frame(&mut d, t0 + ms(99), 3, false), 1);
        assert!(requests(&mut d, t0 + ms(99), t0 + ms(4000)).is_empty());
    }

    #[test]
    fn a_slot_that_resumes_after_a_long_pause_with_a_keyframe_asks_nothing() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        frame(&mut d, t0, 0, true);
        frame(&mut d, t0 + ms(33), 1, false);
        // Ten seconds of nothing, then a keyframe whose packets are spread
        // over 20 ms, with the clock running in between.
        let at = t0 + ms(10_000);
        let kf = |index| VideoPacket {
            ts: 90_000,
            pid: (2, true),
            keyframe_start: index == 0,
            index,
            count: 2,
        };
        assert_eq!(d.handle_packet(at, kf(0)), 0);
        assert!(requests(&mut d, at, at + ms(15)).is_empty());
        assert_eq!(d.handle_packet(at + ms(20), kf(1)), 1);
        assert_eq!(d.requests, 0);
    }

    #[test]
    fn duplicates_and_old_frames_are_shown_once() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        frame(&mut d, t0, 0, true);
        assert_eq!(frame(&mut d, t0 + ms(33), 1, false), 1);
        assert_eq!(frame(&mut d, t0 + ms(40), 1, false), 0);
        assert_eq!(frame(&mut d, t0 + ms(50), 0, true), 0);
        assert_eq!(d.decoded, 2);
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever is lost, duplicated or reordered: frames show in
        /// picture-id order, never more than were completed, and with
        /// nothing lost every frame shows and nobody asks for a keyframe.
        #[test]
        fn frames_show_in_order_and_only_when_complete(
            start in 0u16..0x7fff,
            sizes in prop::collection::vec(1u16..5, 1..120),
            fate in prop::collection::vec(0u8..20, 600),
            swaps in prop::collection::vec(0usize..600, 0..60),
        ) {
            let t0 = Instant::now();
            // (frame, packet) in send order; frame 0 is the keyframe.
            let mut plan: Vec<(usize, u16)> = sizes
                .iter()
                .enumerate()
                .flat_map(|(f, &n)| (0..n).map(move |i| (f, i)))
                .collect();
            let n_packets = plan.len();
            // Reorder: swap neighbours (a packet overtaken by the next).
            for &s in &swaps {
                let i = s % n_packets;
                if i + 1 < n_packets {
                    plan.swap(i, i + 1);
                }
            }
            let mut d = FrameDecoder::new();
            let mut got: Vec<Vec<u16>> = vec![Vec::new(); sizes.len()];
            let mut lost_any = false;
            let mut shown = 0u64;
            for (k, &(f, i)) in plan.iter().enumerate() {
                // 0: lost, 1: duplicated, else delivered once.
                let copies = match fate[k % fate.len()] {
                    0 => 0,
                    1 => 2,
                    _ => 1,
                };
                lost_any |= copies == 0;
                for _ in 0..copies {
                    let before = d.last_shown();
                    let p = VideoPacket {
                        ts: (f as u32) * 3000,
                        pid: (start.wrapping_add(f as u16) & 0x7fff, true),
                        keyframe_start: f == 0 && i == 0,
                        index: i,
                        count: sizes[f],
                    };
                    let n = d.handle_packet(t0 + ms(k as u64), p);
                    if !got[f].contains(&i) {
                        got[f].push(i);
                    }
                    shown += n;
                    if n > 0 {
                        let (now, was) = (d.last_shown(), before);
                        prop_assert!(now.is_some());
                        if let (Some(a), Some(b)) = (now, was) {
                            prop_assert!(newer(a, b, 0x7fff), "{b} then {a}");
                        }
                    }
                }
            }
            let complete = got
                .iter()
                .zip(&sizes)
                .filter(|(g, n)| g.len() == usize::from(**n))
                .count() as u64;
            prop_assert!(shown <= complete, "{shown} shown of {complete} complete");
            prop_assert_eq!(shown, d.decoded);
            if !lost_any {
                prop_assert_eq!(shown, sizes.len() as u64);
                prop_assert!(!d.poll_keyframe_request(t0 + ms(n_packets as u64)));
            }
        }
    }

    #[test]
    fn picture_ids_wrap() {
        let t0 = Instant::now();
        let mut d = FrameDecoder::new();
        frame(&mut d, t0, 0x7ffe, true);
        assert_eq!(frame(&mut d, t0 + ms(33), 0x7fff, false), 1);
        assert_eq!(frame(&mut d, t0 + ms(66), 0, false), 1);
        assert_eq!(frame(&mut d, t0 + ms(99), 1, false), 1);
    }
}
