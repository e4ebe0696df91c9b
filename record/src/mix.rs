//! A mixed conference's recording: one file holding the composite (H.264,
//! track 1) and the mix every participant hears (Opus, track 2), or the
//! mix alone when the bridge composes no video. Both come from the
//! bridge's own mixer, already encoded: nothing is transcoded here. With
//! no network between the mixer and here, each track is placed by its
//! first frame's arrival, then by its RTP timestamps.
//!
//! The file's header names both tracks, and H.264 in Matroska needs its
//! parameter sets there: nothing is written before the composite's first
//! IDR picture that carries them (asked for when the recording starts);
//! the mix's frames wait for it (at most `MAX_WAITING`).

use std::collections::VecDeque;

use crate::h264;
use crate::track::{TrackStats, Unwrap};
use crate::webm::{TrackKind, WebmWriter};

/// Mix frames (20 ms each) kept while the composite's first IDR picture is
/// awaited: 10 s.
const MAX_WAITING: usize = 500;

const VIDEO_TRACK: u8 = 1;

/// What happened to a mixed recording's frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MixStats {
    pub audio_frames: u64,
    pub video_frames: u64,
    /// Composite pictures whose RTP payloads did not parse.
    pub video_malformed: u64,
    /// Pictures not written: before the first IDR with parameter sets, or
    /// after a malformed one until the next IDR.
    pub video_awaiting_keyframe: u64,
    /// Mix frames dropped while waiting for the composite (beyond
    /// `MAX_WAITING`), or placed before the recording began.
    pub audio_dropped: u64,
    pub bytes: u64,
}

/// One track's timeline: its first frame's arrival, then its timestamps.
#[derive(Debug, Default)]
struct Placement {
    ts: Unwrap,
    origin: Option<(i64, i64)>,
    last: Option<u64>,
}

impl Placement {
    /// Where a frame with RTP timestamp `ts` (clock `hz`) that arrived at
    /// `at_ms` goes (ms); `None` before the recording began. Strictly
    /// after the track's last frame (block times must increase).
    fn place(&mut self, at_ms: i64, ts: u32, hz: i64) -> Option<u64> {
        let ext = self.ts.extend(u64::from(ts), 32);
        let (o_ts, o_ms) = *self.origin.get_or_insert((ext, at_ms));
        let ms = u64::try_from(o_ms + (ext - o_ts) * 1000 / hz).ok()?;
        let ms = match self.last {
            Some(l) if ms <= l => l + 1,
            _ => ms,
        };
        self.last = Some(ms);
        Some(ms)
    }
}

/// The one file of a mixed conference's recording.
#[derive(Debug)]
pub struct MixRecorder {
    /// The composite's size, when it is recorded.
    composite: Option<(u16, u16)>,
    channels: u8,
    writer: Option<WebmWriter>,
    out: Vec<u8>,
    audio: Placement,
    video: Placement,
    /// Mix frames (ms, payload) waiting for the file's header.
    waiting: VecDeque<(u64, Vec<u8>)>,
    need_idr: bool,
    stats: MixStats,
}

impl MixRecorder {
    /// A recorder of the mix (`channels`, 48 kHz RTP clock) and, when
    /// `composite` gives its size, the composite.
    pub fn new(composite: Option<(u16, u16)>, channels: u8) -> Self {
        Self {
            composite,
            channels,
            writer: None,
            out: Vec::new(),
            audio: Placement::default(),
            video: Placement::default(),
            waiting: VecDeque::new(),
            need_idr: true,
            stats: MixStats::default(),
        }
    }

    pub fn stats(&self) -> &MixStats {
        &self.stats
    }

    /// Whether it waits for an IDR picture of the composite (to begin the
    /// file, or after a picture that did not parse): the caller asks the
    /// composite for one.
    pub fn needs_keyframe(&self) -> bool {
        self.composite.is_some() && self.need_idr
    }

    /// The bookkeeping the recording's metadata takes.
    pub fn track_stats(&self) -> TrackStats {
        TrackStats {
            frames_written: self.stats.audio_frames + self.stats.video_frames,
            bytes: self.stats.bytes,
            ..TrackStats::default()
        }
    }

    /// One encoded frame of the mix (Opus, 48 kHz timestamp) that arrived
    /// `at_ms` into the recording.
    pub fn audio(&mut self, at_ms: i64, ts: u32, payload: &[u8]) {
        let Some(ms) = self.audio.place(at_ms, ts, 48_000) else {
            self.stats.audio_dropped += 1;
            return;
        };
        let track = self.audio_track();
        if self.writer.is_none() {
            if self.composite.is_some() {
                if self.waiting.len() >= MAX_WAITING {
                    self.waiting.pop_front();
                    self.stats.audio_dropped += 1;
                }
                self.waiting.push_back((ms, payload.to_vec()));
                return;
            }
            let kinds = [TrackKind::Opus {
                channels: self.channels,
            }];
            self.writer = Some(WebmWriter::with_tracks(&kinds, &mut self.out));
        }
        if let Some(w) = self.writer.as_mut()
            && w.frame_on(track, ms, true, payload, &mut self.out)
        {
            self.stats.audio_frames += 1;
        }
    }

    /// One picture of the composite (its RTP payloads, 90 kHz timestamp)
    /// that arrived `at_ms` into the recording.
    pub fn video<'a>(&mut self, at_ms: i64, ts: u32, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let Some((width, height)) = self.composite else {
            return;
        };
        let sample = match h264::depacketize(payloads) {
            Ok(s) => s,
            Err(_) => {
                self.stats.video_malformed += 1;
                self.need_idr = true;
                return;
            }
        };
        if self.need_idr && !sample.idr {
            self.stats.video_awaiting_keyframe += 1;
            return;
        }
        if self.writer.is_none() {
            let avcc = match (&sample.sps, &sample.pps) {
                (Some(sps), Some(pps)) => h264::avcc(sps, pps),
                _ => None,
            };
            let Some(avcc) = avcc else {
                self.stats.video_awaiting_keyframe += 1;
                return;
            };
            let kinds = [
                TrackKind::H264 {
                    width,
                    height,
                    avcc,
                },
                TrackKind::Opus {
                    channels: self.channels,
                },
            ];
            let mut w = WebmWriter::with_tracks(&kinds, &mut self.out);
            // The mix that came first goes first.
            let audio = self.audio_track();
            for (ms, p) in self.waiting.drain(..) {
                if w.frame_on(audio, ms, true, &p, &mut self.out) {
                    self.stats.audio_frames += 1;
                }
            }
            self.writer = Some(w);
        }
        self.need_idr = false;
        let Some(ms) = self.video.place(at_ms, ts, 90_000) else {
            return;
        };
        if let Some(w) = self.writer.as_mut()
            && w.frame_on(VIDEO_TRACK, ms, sample.idr, &sample.data, &mut self.out)
        {
            self.stats.video_frames += 1;
        }
    }

    /// Move the bytes produced since the last call to the end of `buf`.
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        self.stats.bytes += self.out.len() as u64;
        buf.append(&mut self.out);
    }

    fn audio_track(&self) -> u8 {
        if self.composite.is_some() { 2 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDR picture with its parameter sets, as a STAP-A and one unit.
    fn idr() -> Vec<Vec<u8>> {
        let sps = [0x67u8, 0x42, 0xc0, 0x1f, 0xaa];
        let pps = [0x68u8, 0xce, 0x3c];
        let mut stap = vec![0x78];
        for n in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        vec![stap, vec![0x65, 9, 9, 9]]
    }

    fn blocks(out: &[u8], track: u8) -> usize {
        // SimpleBlock id, a one-byte size, then the track number.
        out.windows(3)
            .filter(|w| w[0] == 0xA3 && w[1] & 0x80 != 0 && w[2] == 0x80 | track)
            .count()
    }

    #[test]
    fn the_mix_waits_for_the_composites_first_idr_then_both_tracks_are_written() {
        let mut r = MixRecorder::new(Some((640, 360)), 1);
        for i in 0..10u32 {
            r.audio(i64::from(i) * 20, i * 960, &[0xf8, 1, 2]);
        }
        // A picture that is not an IDR cannot begin the file.
        r.video(150, 0, [&[0x41u8, 1, 2][..]]);
        let mut out = Vec::new();
        r.take_output(&mut out);
        assert!(out.is_empty());
        assert!(r.needs_keyframe());
        let pics = idr();
        r.video(200, 9_000, pics.iter().map(Vec::as_slice));
        r.audio(200, 10 * 960, &[0xf8, 1, 2]);
        r.video(233, 12_000, [&[0x41u8, 1, 2][..]]);
        assert!(!r.needs_keyframe());
        r.take_output(&mut out);
        assert!(out.windows(8).any(|w| w == b"matroska"));
        assert!(out.windows(15).any(|w| w == b"V_MPEG4/ISO/AVC"));
        assert_eq!(blocks(&out, 1), 2, "the IDR and the picture after it");
        assert_eq!(blocks(&out, 2), 11, "every mix frame");
        assert_eq!(r.stats().video_awaiting_keyframe, 1);
        assert_eq!(r.track_stats().frames_written, 13);
        // A picture that does not parse waits for the next IDR.
        r.video(266, 15_000, [&[0x7cu8, 0x45, 1][..]]);
        r.video(300, 18_000, [&[0x41u8, 1, 2][..]]);
        assert_eq!(r.stats().video_malformed, 1);
        assert_eq!(r.stats().video_awaiting_keyframe, 2);
        assert!(r.needs_keyframe());
    }

    #[test]
    fn without_a_composite_the_mix_is_written_at_once_as_webm() {
        let mut r = MixRecorder::new(None, 1);
        r.audio(0, 0, &[0xf8, 1]);
        r.audio(20, 960, &[0xf8, 1]);
        let mut out = Vec::new();
        r.take_output(&mut out);
        assert!(out.windows(4).any(|w| w == b"webm"));
        assert_eq!(blocks(&out, 1), 2);
        assert!(!r.needs_keyframe());
    }

    #[test]
    fn the_mix_waiting_for_a_composite_that_never_comes_is_bounded() {
        let mut r = MixRecorder::new(Some((64, 64)), 1);
        for i in 0..(MAX_WAITING as u32 + 50) {
            r.audio(i64::from(i) * 20, i * 960, &[0xf8]);
        }
        assert_eq!(r.waiting.len(), MAX_WAITING);
        assert_eq!(r.stats().audio_dropped, 50);
    }
}
