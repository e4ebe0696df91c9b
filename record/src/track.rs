//! One recorded source: its RTP packets in (as the bridge receives them:
//! reordered, repeated by retransmission, some lost for good), its WebM
//! file's bytes out.
//!
//! Frames are written in timestamp order once complete. A frame that is
//! still incomplete when a later one has waited [`REORDER_MS`] is given up;
//! so is a video frame whose predecessor never came, and then every video
//! frame until the next keyframe: the file holds a gap there (the player
//! shows the last picture), never a frame decoded against a missing
//! reference. Audio frames stand alone, so audio only ever has gaps.
//!
//! Each frame's time on the recording's timeline comes from its RTP
//! timestamp through one mapping per track: the first written frame's
//! arrival, or
//! what the caller sets with [`TrackRecorder::set_origin`] before anything
//! is written (from the publisher's sender reports, so that tracks from
//! one publisher line up as they were captured). A caller that waits for
//! those [`TrackRecorder::hold`]s the track: complete frames stay unwritten
//! until it is placed.

use std::collections::BTreeMap;

use crate::RecordError;
use crate::webm::{TrackKind, WebmWriter};
use crate::{av1, h264, vp8, vp9};

/// A frame larger than this is refused (a 1080p keyframe is ~200 KB).
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// How long an incomplete frame, or a gap before a complete one, is waited
/// for (in media time, measured by later frames' timestamps): about what a
/// NACK round trip to a publisher takes on a long path.
pub const REORDER_MS: u64 = 500;
/// Frames waiting at most, and their bytes; beyond either the oldest is
/// given up (a stream of huge, never-completed frames must not hold the
/// bridge's memory).
/// A track held for its publisher's first sender report (the bridge waits
/// up to 8 s) keeps all of it: 8 s of 10 ms audio frames is 800.
const MAX_PENDING: usize = 1024;
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// An Opus frame of silence (TOC 0xf8: CELT, fullband, 20 ms, one frame;
/// the frame libwebrtc sends for silence).
pub const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
/// An audio track whose last frame is older than this when it ends gets a
/// closing frame of silence ([`TrackRecorder::end_at`]).
const END_GAP_MS: u64 = 100;
/// How long [`OPUS_SILENCE`] lasts.
const SILENCE_MS: i64 = 20;
/// A video file's first picture at most this long after its participant
/// arrived needs no black picture before it.
const LEAD_IN_MIN_MS: u64 = 100;

/// What a track holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    Opus {
        channels: u8,
    },
    /// Written to Matroska (WebM has no H.264).
    H264,
    /// SVC too: the top spatial layer (and those it is predicted from).
    Vp9,
    Av1,
}

impl Codec {
    pub fn video(self) -> bool {
        !matches!(self, Codec::Opus { .. })
    }

    fn clock(self) -> u64 {
        match self {
            Codec::Vp8 | Codec::H264 | Codec::Vp9 | Codec::Av1 => 90_000,
            Codec::Opus { .. } => 48_000,
        }
    }
}

/// What happened to a track's packets and frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackStats {
    pub packets: u64,
    pub frames_written: u64,
    /// Frames given up incomplete.
    pub frames_incomplete: u64,
    /// Complete video frames not written because a frame before them was
    /// missing and no keyframe had come since.
    pub frames_awaiting_keyframe: u64,
    /// Packets refused, by reason.
    pub empty: u64,
    pub malformed: u64,
    pub late: u64,
    pub too_large: u64,
    /// Frames moved a millisecond later so block times keep increasing.
    pub retimed: u64,
    /// Audio frames captured before the recording began, left out.
    pub before_start: u64,
    pub bytes: u64,
    /// Placed on the timeline by [`TrackRecorder::set_origin`] (the
    /// publisher's sender reports), not by its first frame's arrival.
    pub origin_set: bool,
    /// The file begins with black (VP8, VP9) or silence (Opus) where its
    /// participant arrived ([`TrackRecorder::begin_at`]).
    pub lead_in: bool,
}

#[derive(Debug, Default)]
struct Pending {
    /// Payload (VP8 descriptor removed) by extended sequence number.
    packets: BTreeMap<i64, Vec<u8>>,
    first: Option<i64>,
    last: Option<i64>,
    bytes: usize,
    /// When its first packet arrived (ms into the recording).
    arrived: i64,
}

impl Pending {
    fn complete(&self) -> Option<(i64, i64)> {
        let (f, l) = (self.first?, self.last?);
        // A marker before the start (garbage, or a stream's numbers gone
        // wild) is no frame; `range` would panic on it.
        if l < f {
            return None;
        }
        let n = self.packets.range(f..=l).count() as i64;
        (n == l - f + 1).then_some((f, l))
    }
}

/// Extends a wrapping counter of `bits` bits to an i64 by nearest distance
/// to the last value seen.
#[derive(Debug, Default)]
pub(crate) struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    pub(crate) fn extend(&mut self, v: u64, bits: u32) -> i64 {
        let modulus = 1i64 << bits;
        let v = v as i64;
        let ext = match self.last {
            None => v,
            Some(last) => {
                let base = last - last.rem_euclid(modulus);
                [base - modulus + v, base + v, base + modulus + v]
                    .into_iter()
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(v)
            }
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

/// One track of a recording.
#[derive(Debug)]
pub struct TrackRecorder {
    codec: Codec,
    writer: Option<WebmWriter>,
    out: Vec<u8>,
    seq: Unwrap,
    ts: Unwrap,
    /// (extended RTP timestamp, ms on the recording's timeline).
    origin: Option<(i64, i64)>,
    pending: BTreeMap<i64, Pending>,
    pending_bytes: usize,
    /// The newest timestamp seen.
    newest: Option<i64>,
    /// The last frame written or given up: anything at or before it is late.
    done_ts: Option<i64>,
    /// The sequence number the next frame should start at.
    next_seq: Option<i64>,
    need_keyframe: bool,
    /// Where the last frame written was placed (ms).
    last_ms: Option<u64>,
    /// The earliest the next frame may be placed: after the last frame
    /// (block times must increase), and after the whole of a frame of
    /// silence (an overlap decodes as time going backwards).
    floor_ms: u64,
    /// Complete frames wait, unwritten, for [`Self::set_origin`] or
    /// [`Self::release`] (see [`Self::hold`]).
    holding: bool,
    /// Where black or silence begins the file ([`Self::begin_at`]).
    lead_in: Option<u64>,
    /// VP9: the spatial layer recorded, the top of the last keyframe.
    vp9_sid: Option<u8>,
    stats: TrackStats,
}

impl TrackRecorder {
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            writer: None,
            out: Vec::new(),
            seq: Unwrap::default(),
            ts: Unwrap::default(),
            origin: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            newest: None,
            done_ts: None,
            next_seq: None,
            need_keyframe: codec.video(),
            last_ms: None,
            floor_ms: 0,
            holding: false,
            lead_in: None,
            vp9_sid: None,
            stats: TrackStats::default(),
        }
    }

    pub fn stats(&self) -> &TrackStats {
        &self.stats
    }

    /// Bytes held in frames not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Place RTP timestamp `rtp_ts` at `at_ms` on the recording's timeline,
    /// and write what a [`Self::hold`] kept. Only before the first frame is
    /// written: moving a track's timeline under frames already in the file
    /// would send it backwards.
    pub fn set_origin(&mut self, rtp_ts: u32, at_ms: i64) -> bool {
        if self.done_ts.is_some() {
            return false;
        }
        let ext = self.ts.extend(u64::from(rtp_ts), 32);
        self.origin = Some((ext, at_ms));
        self.stats.origin_set = true;
        self.release();
        true
    }

    /// Keep complete frames unwritten until [`Self::set_origin`] places the
    /// track or [`Self::release`] gives up on that (the caller waits for a
    /// sender report; the pending limits still apply). Only before the
    /// first frame is written.
    pub fn hold(&mut self) {
        if self.done_ts.is_none() {
            self.holding = true;
        }
    }

    /// Whether frames are held for an origin.
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// A video file stands still: a frame was lost for good after the file
    /// began, and nothing is written until the next keyframe (which the
    /// caller should ask for: browsers send one only when asked).
    pub fn awaiting_keyframe(&self) -> bool {
        self.codec.video() && self.need_keyframe && self.writer.is_some() && !self.holding
    }

    /// Write what was held; without an origin the first frame is placed
    /// where it arrived.
    pub fn release(&mut self) {
        if std::mem::take(&mut self.holding) {
            self.drain(false);
        }
    }

    /// Take one RTP packet that arrived `at_ms` into the recording.
    pub fn push(
        &mut self,
        at_ms: i64,
        seq: u16,
        rtp_ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), RecordError> {
        self.stats.packets += 1;
        let r = self.take(at_ms, seq, rtp_ts, marker, payload);
        match &r {
            Err(RecordError::Empty) => self.stats.empty += 1,
            Err(RecordError::Vp8Descriptor | RecordError::Vp9Descriptor) => {
                self.stats.malformed += 1
            }
            Err(RecordError::Late) => self.stats.late += 1,
            Err(RecordError::FrameTooLarge) => self.stats.too_large += 1,
            _ => {}
        }
        self.drain(false);
        r
    }

    /// The recording ends: write every complete frame still waiting
    /// (held ones too).
    pub fn finish(&mut self) {
        self.holding = false;
        self.drain(true);
    }

    /// The track's participant was present from `at_ms`, before its
    /// first packet (media connects after a participant joins; a muted
    /// one sends nothing), so the file begins there. Opus: one frame of
    /// silence there when the first frame written comes after it ends.
    /// VP8, VP9: a black picture ([`vp8::BLACK_KEYFRAME`],
    /// [`vp9::BLACK_KEYFRAME`]) there when the first frame written comes
    /// over `LEAD_IN_MIN_MS` later (a camera's first picture comes with its
    /// connection and a keyframe, up to a second after its participant
    /// joined). Only before anything is written; it never moves frames: a
    /// first frame inside the silence is not moved past it (it would then
    /// overlap the frame after it, which FFmpeg reads as time going
    /// backwards; seen in the Chromium AV1 test).
    pub fn begin_at(&mut self, at_ms: i64) {
        let Ok(at) = u64::try_from(at_ms) else {
            return;
        };
        if self.writer.is_some() {
            return;
        }
        match self.codec {
            Codec::Opus { .. } | Codec::Vp8 | Codec::Vp9 => self.lead_in = Some(at),
            // No black picture to hand: the file starts at its first.
            Codec::H264 | Codec::Av1 => {}
        }
    }

    /// Opus: the track ends at `at_ms` (its participant left, the
    /// recording stopped). A muted participant's audio stops arriving, so
    /// its last frame may be long before: one frame of silence is written
    /// at the end, and the file lasts as long as the track did (the mute
    /// stays a gap). Call after [`Self::finish`]. Video is left as it is:
    /// its file ends at its last picture.
    pub fn end_at(&mut self, at_ms: i64) {
        let Codec::Opus { .. } = self.codec else {
            return;
        };
        let (Some(last), Ok(at)) = (self.last_ms, u64::try_from(at_ms)) else {
            return;
        };
        if at < last + END_GAP_MS {
            return;
        }
        let out = &mut self.out;
        if let Some(w) = self.writer.as_mut()
            && w.frame(at, true, &OPUS_SILENCE, out)
        {
            self.last_ms = Some(at);
            self.floor_ms = at + SILENCE_MS as u64;
            self.stats.frames_written += 1;
        }
    }

    /// Move the bytes produced since the last call to the end of `buf`
    /// (what the shell appends to the file).
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        self.stats.bytes += self.out.len() as u64;
        buf.append(&mut self.out);
    }

    fn take(
        &mut self,
        at_ms: i64,
        seq: u16,
        rtp_ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), RecordError> {
        if payload.is_empty() {
            return Err(RecordError::Empty);
        }
        let (data, start) = match self.codec {
            Codec::Vp8 => {
                let d = vp8::descriptor(payload)?;
                (&payload[d.len..], d.start)
            }
            Codec::Opus { .. } => (payload, true),
            Codec::H264 => (payload, h264::can_start(payload)),
            // Kept whole: a picture is cut into layer frames when written.
            Codec::Vp9 => {
                let info = vp9::parse(payload).ok_or(RecordError::Vp9Descriptor)?;
                (payload, info.layer_start)
            }
            // Kept whole; one that does not continue an OBU may begin a
            // temporal unit.
            Codec::Av1 => (payload, payload[0] & 0x80 == 0),
        };
        let ext_seq = self.seq.extend(u64::from(seq), 16);
        let ext_ts = self.ts.extend(u64::from(rtp_ts), 32);
        if self.done_ts.is_some_and(|d| ext_ts <= d) {
            return Err(RecordError::Late);
        }
        let p = self.pending.entry(ext_ts).or_insert_with(|| Pending {
            arrived: at_ms,
            ..Pending::default()
        });
        if p.packets.contains_key(&ext_seq) {
            // A retransmission of what is here already.
            return Ok(());
        }
        p.bytes += data.len();
        if p.bytes > MAX_FRAME_BYTES {
            let held = p.bytes - data.len();
            self.pending.remove(&ext_ts);
            self.pending_bytes -= held;
            self.give_up(ext_ts);
            return Err(RecordError::FrameTooLarge);
        }
        p.packets.insert(ext_seq, data.to_vec());
        self.pending_bytes += data.len();
        let audio = matches!(self.codec, Codec::Opus { .. });
        if start {
            // VP8 marks one packet a frame's start; of H.264's, the first.
            p.first = Some(p.first.map_or(ext_seq, |f| f.min(ext_seq)));
        }
        if marker || audio {
            p.last = Some(ext_seq);
        }
        self.newest = Some(self.newest.map_or(ext_ts, |n| n.max(ext_ts)));
        Ok(())
    }

    /// A frame was given up: nothing at or before it will be written.
    fn give_up(&mut self, ts: i64) {
        self.stats.frames_incomplete += 1;
        self.done_ts = Some(self.done_ts.map_or(ts, |d| d.max(ts)));
        self.next_seq = None;
        if self.codec.video() {
            self.need_keyframe = true;
        }
    }

    fn drain(&mut self, all: bool) {
        let window = (REORDER_MS * self.codec.clock() / 1000) as i64;
        while self.pending.len() > MAX_PENDING || self.pending_bytes > MAX_PENDING_BYTES {
            let Some((ts, p)) = self.pending.pop_first() else {
                break;
            };
            self.pending_bytes -= p.bytes;
            self.give_up(ts);
        }
        while let Some((&ts, p)) = self.pending.first_key_value() {
            if self.holding && !all {
                return;
            }
            let waited = all || self.newest.is_some_and(|n| n - ts >= window);
            match p.complete() {
                Some((first, last)) => {
                    // With nothing written before it (the first frame, or
                    // the first after one was given up), what came before
                    // is unknown: wait in case an earlier frame is late.
                    let contiguous = self.next_seq == Some(first);
                    if !(contiguous || waited) {
                        return;
                    }
                    if let Some((_, p)) = self.pending.pop_first() {
                        self.pending_bytes -= p.bytes;
                        self.write(ts, p, (first, last), contiguous);
                    }
                }
                None if waited => {
                    if let Some((_, p)) = self.pending.pop_first() {
                        self.pending_bytes -= p.bytes;
                    }
                    self.give_up(ts);
                }
                None => return,
            }
        }
    }

    fn write(&mut self, ts: i64, p: Pending, (first, last): (i64, i64), contiguous: bool) {
        self.done_ts = Some(ts);
        self.next_seq = Some(last + 1);
        // Only the frame's own packets: a stray packet with its timestamp
        // but a number outside first..=last is not part of it.
        let mut frame = Vec::with_capacity(p.bytes);
        // VP9 SVC: the lower layers' frames the recorded one is predicted
        // from, each its own block just before it (`vp9::Picture`).
        let mut lower: Vec<Vec<u8>> = Vec::new();
        if matches!(self.codec, Codec::Vp8 | Codec::Opus { .. }) {
            for d in p.packets.range(first..=last).map(|(_, d)| d) {
                frame.extend_from_slice(d);
            }
        }
        let (kind, keyframe) = match self.codec {
            Codec::H264 => {
                if !contiguous {
                    self.need_keyframe = true;
                }
                let Ok(sample) =
                    h264::depacketize(p.packets.range(first..=last).map(|(_, d)| &d[..]))
                else {
                    // A picture whose payloads do not parse: nothing is
                    // written until the next IDR picture.
                    self.stats.malformed += 1;
                    self.need_keyframe = true;
                    return;
                };
                if self.need_keyframe && !sample.idr {
                    self.stats.frames_awaiting_keyframe += 1;
                    return;
                }
                // The file's header needs the parameter sets: the first
                // IDR picture must carry them (browsers send them with
                // every IDR).
                let kind = if self.writer.is_some() {
                    TrackKind::H264 {
                        width: 0,
                        height: 0,
                        avcc: Vec::new(),
                    }
                } else {
                    let header = match (&sample.sps, &sample.pps) {
                        (Some(sps), Some(pps)) => h264::avcc(sps, pps).zip(h264::sps_size(sps)),
                        _ => None,
                    };
                    let Some((avcc, (width, height))) = header else {
                        self.stats.frames_awaiting_keyframe += 1;
                        self.need_keyframe = true;
                        return;
                    };
                    TrackKind::H264 {
                        width,
                        height,
                        avcc,
                    }
                };
                self.need_keyframe = false;
                frame = sample.data;
                (kind, sample.idr)
            }
            Codec::Vp8 => {
                if !contiguous {
                    self.need_keyframe = true;
                }
                let size = vp8::keyframe_size(&frame);
                if self.need_keyframe && size.is_none() {
                    self.stats.frames_awaiting_keyframe += 1;
                    return;
                }
                // `need_keyframe` clears once the keyframe is written: one
                // that is not (placed before the recording began) must not
                // let the frames after it start the file.
                let (width, height) = size.unwrap_or((0, 0));
                (TrackKind::Vp8 { width, height }, size.is_some())
            }
            Codec::Vp9 => {
                if !contiguous {
                    self.need_keyframe = true;
                }
                let sid = if self.need_keyframe {
                    None
                } else {
                    self.vp9_sid
                };
                let picture =
                    match vp9::assemble(p.packets.range(first..=last).map(|(_, d)| &d[..]), sid) {
                        Ok(vp9::Assembled::Picture(picture)) => picture,
                        // The layer recorded is not in it (paused, or left
                        // out): another layer's pictures cannot follow it, so
                        // nothing is written until a keyframe.
                        Ok(vp9::Assembled::LayerMissing) => {
                            self.stats.frames_awaiting_keyframe += 1;
                            self.need_keyframe = true;
                            return;
                        }
                        Err(_) => {
                            self.stats.malformed += 1;
                            self.need_keyframe = true;
                            return;
                        }
                    };
                if self.need_keyframe && !picture.keyframe {
                    self.stats.frames_awaiting_keyframe += 1;
                    return;
                }
                if picture.keyframe {
                    self.vp9_sid = Some(picture.sid);
                }
                let (width, height) = picture.size.unwrap_or((0, 0));
                let mut frames = picture.frames;
                frame = frames.pop().unwrap_or_default();
                lower = frames;
                (TrackKind::Vp9 { width, height }, picture.keyframe)
            }
            Codec::Av1 => {
                if !contiguous {
                    self.need_keyframe = true;
                }
                let Ok(unit) = av1::assemble(p.packets.range(first..=last).map(|(_, d)| &d[..]))
                else {
                    self.stats.malformed += 1;
                    self.need_keyframe = true;
                    return;
                };
                if self.need_keyframe && !unit.keyframe {
                    self.stats.frames_awaiting_keyframe += 1;
                    return;
                }
                // The file's header needs the sequence header: a
                // keyframe carries one.
                let kind = if self.writer.is_some() {
                    TrackKind::Av1 {
                        width: 0,
                        height: 0,
                        av1c: Vec::new(),
                    }
                } else {
                    let Some(info) = unit.sequence_header.as_deref().and_then(av1::sequence_info)
                    else {
                        self.stats.frames_awaiting_keyframe += 1;
                        self.need_keyframe = true;
                        return;
                    };
                    TrackKind::Av1 {
                        width: info.width,
                        height: info.height,
                        av1c: info.av1c,
                    }
                };
                frame = unit.data;
                (kind, unit.keyframe)
            }
            Codec::Opus { channels } => (TrackKind::Opus { channels }, true),
        };
        // Without a mapping from sender reports, the first frame written is
        // placed where its first packet arrived.
        let (o_ts, o_ms) = *self.origin.get_or_insert((ts, p.arrived));
        let ms = o_ms + (ts - o_ts) * 1000 / self.codec.clock() as i64;
        // Before the recording began (a sender report places frames
        // captured just before the start there). Video: at its start, kept
        // in order by the floor below; dropping them would drop the file's
        // first keyframe, or a frame the next ones are predicted from.
        // Audio frames stand alone and last 20 ms: one moved to the start
        // would overlap the next, which FFmpeg reads as time going back
        // (found by the Chromium AV1 test in CI), so it is left out.
        let mut ms = match u64::try_from(ms) {
            Ok(ms) => ms,
            Err(_) if !self.codec.video() => {
                self.stats.before_start += 1;
                return;
            }
            Err(_) => {
                self.stats.retimed += 1;
                0
            }
        };
        // Frames under a millisecond apart would share a block time, which
        // players read as time standing still (FFmpeg: "non monotonically
        // increasing dts"; seen once in the Chromium test, on a camera's
        // first frames): the later one moves to the next millisecond. A
        // frame placed inside the leading silence moves past it.
        if self.last_ms.is_some() && ms < self.floor_ms {
            ms = self.floor_ms;
            self.stats.retimed += 1;
        }
        let n = lower.len() as u64;
        let floor = if self.last_ms.is_some() {
            self.floor_ms
        } else {
            0
        };
        let start = ms.saturating_sub(n).max(floor);
        ms = start + n;
        let out = &mut self.out;
        let (lead, lead_ms): (&[u8], u64) = match self.codec {
            Codec::Vp9 => (&vp9::BLACK_KEYFRAME, LEAD_IN_MIN_MS),
            Codec::Opus { .. } => (&OPUS_SILENCE, SILENCE_MS as u64),
            _ => (&vp8::BLACK_KEYFRAME, LEAD_IN_MIN_MS),
        };
        if self.writer.is_none()
            && let Some(at) = self.lead_in.take().filter(|at| start >= at + lead_ms)
        {
            let w = self.writer.insert(WebmWriter::new(kind.clone(), out));
            if w.frame(at, true, lead, out) {
                self.stats.frames_written += 1;
                self.stats.lead_in = true;
            }
        }
        let w = self
            .writer
            .get_or_insert_with(|| WebmWriter::new(kind, out));
        for (i, f) in lower.iter().enumerate() {
            if w.frame(start + i as u64, keyframe && i == 0, f, out) {
                self.stats.frames_written += 1;
            }
        }
        if w.frame(ms, keyframe && lower.is_empty(), &frame, out) {
            self.last_ms = Some(ms);
            self.floor_ms = ms + 1;
            self.stats.frames_written += 1;
            if keyframe {
                self.need_keyframe = false;
            }
        } else {
            self.stats.late += 1;
        }
    }
}

#[cfg(test)]
mod tests;
