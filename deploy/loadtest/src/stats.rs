//! What each load participant measured, and the per-room / overall summary.
//!
//! Packets are folded into small per-slot accumulators as they arrive (the
//! peer's raw packet log is drained every fold), so a long run does not keep
//! every packet in memory; only one delay sample (4 bytes) per packet stays.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use tern_peer::Received;

/// A gap longer than this between two complete video frames is a freeze
/// (the threshold WebRTC's `freezeCount` uses is similar).
pub const FREEZE_GAP: Duration = Duration::from_millis(500);

/// Duplicate detection over the last 128 sequence numbers (repairs and
/// retransmissions must not count twice).
#[derive(Debug, Default)]
struct SeqWindow {
    highest: Option<u64>,
    bits: u128,
}

impl SeqWindow {
    /// True when `seq` was not seen before.
    fn insert(&mut self, seq: u64) -> bool {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.bits = 1;
            return true;
        };
        if seq > h {
            let shift = seq - h;
            self.bits = if shift >= 128 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.highest = Some(seq);
            true
        } else {
            let back = h - seq;
            if back >= 128 {
                return true; // too old to tell; rare, count it
            }
            let had = self.bits & (1 << back) != 0;
            self.bits |= 1 << back;
            !had
        }
    }
}

/// One receive slot's reception inside the measurement window.
#[derive(Debug, Default)]
pub struct SlotAcc {
    seqs: SeqWindow,
    min_seq: Option<u64>,
    max_seq: u64,
    unique: u64,
    /// Packets seen of frames not complete yet, by (layer, frame).
    partial: HashMap<(u8, u32), u16>,
    last_complete: Option<Instant>,
    pub frames: u64,
    pub freezes: u64,
    last_shown: Option<Instant>,
    /// Frames the participant's decoder could show (`tern_peer::decoder`),
    /// and gaps over [`FREEZE_GAP`] between them: what a viewer sees.
    pub shown: u64,
    pub shown_freezes: u64,
}

impl SlotAcc {
    fn add(&mut self, r: &Received, video: bool) {
        if !self.seqs.insert(r.seq) {
            return;
        }
        self.unique += 1;
        self.min_seq = Some(self.min_seq.map_or(r.seq, |m| m.min(r.seq)));
        self.max_seq = self.max_seq.max(r.seq);
        if !video {
            return;
        }
        let (Some(layer), Some(frame)) = (r.layer, r.frame) else {
            return;
        };
        let got = self.partial.entry((layer, frame)).or_insert(0);
        *got += 1;
        if *got >= r.count.max(1) {
            self.partial.remove(&(layer, frame));
            if let Some(prev) = self.last_complete
                && r.at.saturating_duration_since(prev) > FREEZE_GAP
            {
                self.freezes += 1;
            }
            self.last_complete = Some(self.last_complete.map_or(r.at, |p| p.max(r.at)));
            self.frames += 1;
        }
        // Frames that never complete (lost for good) must not pile up.
        if self.partial.len() > 256 {
            self.partial.clear();
        }
    }

    fn expected(&self) -> u64 {
        self.min_seq.map_or(0, |m| self.max_seq - m + 1)
    }

    fn add_shown(&mut self, at: Instant) {
        if let Some(prev) = self.last_shown
            && at.saturating_duration_since(prev) > FREEZE_GAP
        {
            self.shown_freezes += 1;
        }
        self.last_shown = Some(self.last_shown.map_or(at, |p| p.max(at)));
        self.shown += 1;
    }
}

/// Everything one participant measured.
#[derive(Debug, Default)]
pub struct PeerAcc {
    pub slots: HashMap<String, SlotAcc>,
    /// Delay samples (µs) of packets in the window, publisher send → receipt.
    pub delays_us: Vec<u32>,
    pub packets: u64,
    pub bytes: u64,
    pub first_media: Option<Instant>,
    /// Video packets in the window by simulcast layer (0 = lowest), as the
    /// publisher marked them: which layer the server really forwarded.
    pub video_layers: BTreeMap<u8, u64>,
}

impl PeerAcc {
    /// Fold received packets of slot `mid`, which carries `source` (an id
    /// like `alice/camera`) whose publisher's generator started at `start`.
    pub fn fold(
        &mut self,
        mid: &str,
        source: Option<&str>,
        start: Option<Instant>,
        packets: &[Received],
        window: (Instant, Instant),
    ) {
        if let Some(first) = packets.first() {
            self.first_media = Some(self.first_media.map_or(first.at, |f| f.min(first.at)));
        }
        let video = source.is_some_and(|s| s.ends_with("/camera") || s.ends_with("/screen"));
        let slot = self.slots.entry(mid.to_string()).or_default();
        for r in packets {
            if r.at < window.0 || r.at > window.1 {
                continue;
            }
            self.packets += 1;
            slot.add(r, video);
            if let (true, Some(layer)) = (video, r.layer) {
                *self.video_layers.entry(layer).or_default() += 1;
            }
            if let (Some(start), Some(us)) = (start, r.sent_us) {
                let sent = start + Duration::from_micros(us);
                let d = r.at.saturating_duration_since(sent).as_micros();
                self.delays_us.push(d.min(u128::from(u32::MAX)) as u32);
            }
        }
    }

    /// Fold the times at which slot `mid` could show a frame.
    pub fn fold_shown(&mut self, mid: &str, times: &[Instant], window: (Instant, Instant)) {
        let slot = self.slots.entry(mid.to_string()).or_default();
        for &t in times {
            if t >= window.0 && t <= window.1 {
                slot.add_shown(t);
            }
        }
    }

    pub fn shown(&self) -> u64 {
        self.slots.values().map(|s| s.shown).sum()
    }

    pub fn shown_freezes(&self) -> u64 {
        self.slots.values().map(|s| s.shown_freezes).sum()
    }

    pub fn lost(&self) -> u64 {
        self.slots
            .values()
            .map(|s| s.expected().saturating_sub(s.unique))
            .sum()
    }

    pub fn expected(&self) -> u64 {
        self.slots.values().map(SlotAcc::expected).sum()
    }

    pub fn freezes(&self) -> u64 {
        self.slots.values().map(|s| s.freezes).sum()
    }

    pub fn frames(&self) -> u64 {
        self.slots.values().map(|s| s.frames).sum()
    }
}

/// The final report of one participant.
#[derive(Debug)]
pub struct PeerReport {
    pub name: String,
    pub room: String,
    pub publisher: bool,
    /// Expected to receive media (has receive slots and someone publishes).
    pub receives: bool,
    pub error: Option<String>,
    /// From starting to connect until ICE+DTLS were up.
    pub connect_time: Option<Duration>,
    /// From starting to connect until the first media packet arrived.
    pub first_media_time: Option<Duration>,
    pub acc: PeerAcc,
    pub packets_sent: u64,
    /// Keyframe requests (PLIs) its decoders sent, as a browser's would when
    /// a picture cannot go on (`tern_peer::decoder`).
    pub plis_sent: u64,
    /// The region asked for at the focus (`--publisher-region`,
    /// `--subscriber-region`), and the bridge and region it placed the
    /// participant on (joins through a focus only).
    pub asked_region: Option<String>,
    pub bridge: Option<String>,
    pub bridge_region: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Percentiles {
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// Summary of a group of participants (a room or everyone).
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub participants: usize,
    pub publishers: usize,
    pub failed: usize,
    /// Participants that should receive media, and how many did.
    pub expected_receivers: usize,
    pub receivers_with_media: usize,
    pub join_ms: Option<Percentiles>,
    pub first_media_ms: Option<Percentiles>,
    pub received_packets: u64,
    pub received_packets_per_sec: f64,
    pub received_kbps_per_receiver: f64,
    pub loss_percent: f64,
    pub frames: u64,
    pub freezes: u64,
    /// Frames the receivers' decoders could show, and the gaps over 500 ms
    /// between them (`freezes` counts gaps between complete frames).
    pub frames_shown: u64,
    pub shown_freezes: u64,
    /// Keyframe requests (PLIs) the receivers sent.
    pub plis_sent: u64,
    pub delay_ms: Option<Percentiles>,
    /// Video packets received by simulcast layer (0 = lowest).
    pub video_layer_packets: BTreeMap<u8, u64>,
    pub errors: Vec<String>,
}

pub fn summarise(reports: &[&PeerReport], window: Duration) -> GroupSummary {
    let secs = window.as_secs_f64().max(1e-9);
    let receivers: Vec<_> = reports.iter().filter(|r| r.receives).collect();
    let packets: u64 = reports.iter().map(|r| r.acc.packets).sum();
    let bytes: u64 = receivers.iter().map(|r| r.acc.bytes).sum();
    let lost: u64 = reports.iter().map(|r| r.acc.lost()).sum();
    let expected: u64 = reports.iter().map(|r| r.acc.expected()).sum();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let delays: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.acc.delays_us.iter().map(|&d| f64::from(d) / 1e3))
        .collect();
    GroupSummary {
        participants: reports.len(),
        publishers: reports.iter().filter(|r| r.publisher).count(),
        failed: reports.iter().filter(|r| r.error.is_some()).count(),
        expected_receivers: receivers.len(),
        receivers_with_media: receivers.iter().filter(|r| r.acc.packets > 0).count(),
        join_ms: percentiles(
            reports
                .iter()
                .filter_map(|r| r.connect_time.map(ms))
                .collect(),
        ),
        first_media_ms: percentiles(
            reports
                .iter()
                .filter_map(|r| r.first_media_time.map(ms))
                .collect(),
        ),
        received_packets: packets,
        received_packets_per_sec: packets as f64 / secs,
        received_kbps_per_receiver: if receivers.is_empty() {
            0.0
        } else {
            bytes as f64 * 8.0 / 1e3 / secs / receivers.len() as f64
        },
        loss_percent: if expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / expected as f64
        },
        frames: reports.iter().map(|r| r.acc.frames()).sum(),
        freezes: reports.iter().map(|r| r.acc.freezes()).sum(),
        frames_shown: reports.iter().map(|r| r.acc.shown()).sum(),
        shown_freezes: reports.iter().map(|r| r.acc.shown_freezes()).sum(),
        plis_sent: reports.iter().map(|r| r.plis_sent).sum(),
        delay_ms: percentiles(delays),
        video_layer_packets: reports.iter().fold(BTreeMap::new(), |mut m, r| {
            for (&l, &n) in &r.acc.video_layers {
                *m.entry(l).or_default() += n;
            }
            m
        }),
        errors: reports
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.name)))
            .collect(),
    }
}

pub fn by_room(reports: &[PeerReport]) -> BTreeMap<String, Vec<&PeerReport>> {
    let mut m: BTreeMap<String, Vec<&PeerReport>> = BTreeMap::new();
    for r in reports {
        m.entry(r.room.clone()).or_default().push(r);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx(seq: u64, frame: u32, index: u16, count: u16, at: Instant) -> Received {
        Received {
            seq,
            ts: 0,
            pid: None,
            keyframe: false,
            height: None,
            layer: Some(0),
            frame: Some(frame),
            index,
            count,
            at,
            sent_us: Some(0),
            audio_level: None,
            tag: None,
        }
    }

    #[test]
    fn counts_loss_duplicates_frames_and_freezes() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let packets = vec![
            rx(10, 1, 0, 2, ms(0)),
            rx(11, 1, 1, 2, ms(1)),
            rx(11, 1, 1, 2, ms(2)), // duplicate (RTX)
            // seq 12 lost: frame 2 never completes
            rx(13, 2, 1, 2, ms(30)),
            rx(14, 3, 0, 1, ms(900)), // 899 ms after frame 1: a freeze
        ];
        let mut acc = PeerAcc::default();
        acc.fold(
            "3",
            Some("alice/camera"),
            Some(t0),
            &packets,
            (t0, ms(10_000)),
        );
        assert_eq!(acc.expected(), 5);
        assert_eq!(acc.lost(), 1);
        assert_eq!(acc.frames(), 2);
        assert_eq!(acc.freezes(), 1);
        assert_eq!(acc.delays_us.len(), 5);
        assert_eq!(acc.video_layers.get(&0), Some(&5));
    }

    #[test]
    fn packets_outside_the_window_are_ignored() {
        let t0 = Instant::now();
        let mut acc = PeerAcc::default();
        let p = [rx(1, 1, 0, 1, t0)];
        acc.fold(
            "0",
            Some("a/mic"),
            None,
            &p,
            (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2)),
        );
        assert_eq!(acc.packets, 0);
        assert!(acc.first_media.is_some());
    }

    #[test]
    fn shown_frames_and_their_freezes_are_counted_inside_the_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut acc = PeerAcc::default();
        // Shown every 33 ms, then nothing for 700 ms (a freeze), and again;
        // the last one is after the window.
        let times = [ms(0), ms(33), ms(66), ms(766), ms(800), ms(5000)];
        acc.fold_shown("1", &times[..3], (t0, ms(1000)));
        acc.fold_shown("1", &times[3..], (t0, ms(1000)));
        assert_eq!((acc.shown(), acc.shown_freezes()), (5, 1));
    }
}
