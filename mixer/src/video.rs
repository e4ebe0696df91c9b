//! The composite video of one mixed conference: every participant's H.264
//! decoded, the latest picture of each drawn into its tile of a grid, the
//! grid encoded once at the configured size and frame rate, and the same
//! packets sent to every receiver on one video slot (issue 18).
//!
//! Sans-IO like the audio mixer: packets and time in, packets out. What
//! the composite needs from the bridge it asks as outputs: a keyframe from
//! a publisher whose stream it cannot decode (joined, lost a packet,
//! corrupt), and it takes a keyframe request from any receiver
//! ([`VideoMixer::request_keyframe`]). The layout (who is in which tile) is
//! an output too, so clients can label the tiles: names are reported, not
//! drawn.
//!
//! - [`h264`]: RTP depacketizing and packetizing (RFC 6184).
//! - [`layout`]: the grid, I420 pictures, scaling into a tile.
//! - [`openh264`]: the real codec (OpenH264, built from its bundled source).

pub mod h264;
pub mod layout;
pub mod openh264;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::MixerError;
use h264::Depacketizer;
use layout::{Picture, Rect, blit, grid, speaker};

impl VideoConfig {
    /// This configuration with what a conference asked for.
    pub fn with_spec(mut self, spec: CompositeSpec) -> Self {
        self.layout = spec.layout;
        if spec.width > 0 && spec.height > 0 {
            self.width = spec.width;
            self.height = spec.height;
        }
        self
    }
}

/// The RTP clock of video.
pub const VIDEO_CLOCK: u32 = 90_000;
/// Keyframes asked of one publisher at most this often while its stream
/// does not decode.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);
/// Access units in a row that do not decode before a publisher is left out
/// of the composite (its tile goes black): ten seconds at 30 fps.
pub const MAX_BAD_UNITS: u32 = 300;
/// The composite's background and empty tiles (black in limited range).
const BLACK: (u8, u8, u8) = (16, 128, 128);

/// How the composite arranges its participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Everyone the same size, in join order.
    #[default]
    Grid,
    /// The dominant speaker large, the others in a strip below.
    Speaker,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Grid => "grid",
            Layout::Speaker => "speaker",
        }
    }

    pub fn from_name(name: &str) -> Option<Layout> {
        match name {
            "grid" => Some(Layout::Grid),
            "speaker" => Some(Layout::Speaker),
            _ => None,
        }
    }
}

/// What a conference asked of its composite (the application's
/// `Allocate` options, through the token): a layout, and a size where it
/// is not the bridge's (0: the bridge's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompositeSpec {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// The largest RTP payload sent.
    pub mtu: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            layout: Layout::Grid,
            width: 640,
            height: 360,
            fps: 15,
            bitrate_bps: 800_000,
            mtu: 1_100,
        }
    }
}

/// Decodes one publisher's stream.
pub trait VideoDecoder {
    /// Decode one Annex B access unit; `None` when it gives no picture yet.
    fn decode(&mut self, annexb: &[u8]) -> Result<Option<Picture>, MixerError>;
}

/// Encodes the composite.
pub trait VideoEncoder {
    /// Encode one picture (an IDR when `keyframe`) as Annex B.
    fn encode(&mut self, picture: &Picture, keyframe: bool) -> Result<Vec<u8>, MixerError>;
}

pub trait VideoCodec {
    type Decoder: VideoDecoder;
    type Encoder: VideoEncoder;
    fn decoder(&self) -> Result<Self::Decoder, MixerError>;
    fn encoder(&self, cfg: &VideoConfig) -> Result<Self::Encoder, MixerError>;
}

/// What the composite produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoOutput {
    /// One composite picture as RTP payloads, for every receiver (mark the
    /// last). `timestamp` is on the 90 kHz clock.
    Frame {
        timestamp: u32,
        payloads: Vec<Arc<[u8]>>,
        keyframe: bool,
    },
    /// Ask `participant` for a keyframe: its stream cannot be decoded
    /// until one comes.
    KeyframeRequest { participant: u64 },
    /// Who is in which tile, after anyone joined or left or (speaker
    /// layout) the speaker changed. Participants without a tile are not
    /// listed.
    Layout {
        width: u32,
        height: u32,
        tiles: Vec<(u64, Rect)>,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VideoStats {
    pub frames_composed: u64,
    pub units_decoded: u64,
    pub decode_errors: u64,
    pub encode_errors: u64,
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    pub malformed_packets: u64,
    pub units_dropped: u64,
}

struct Member<D> {
    id: u64,
    input: Option<Input<D>>,
}

struct Input<D> {
    depacketizer: Depacketizer,
    decoder: D,
    last: Option<Picture>,
    asked_keyframe: Option<Instant>,
    bad_run: u32,
    dropped: bool,
}

pub struct VideoMixer<C: VideoCodec> {
    codec: C,
    cfg: VideoConfig,
    members: Vec<Member<C::Decoder>>,
    encoder: Option<C::Encoder>,
    canvas: Picture,
    next_tick: Option<Instant>,
    timestamp: u32,
    force_keyframe: bool,
    /// The dominant speaker (speaker layout).
    speaker: Option<u64>,
    out: VecDeque<VideoOutput>,
    stats: VideoStats,
}

impl<C: VideoCodec> VideoMixer<C> {
    pub fn new(codec: C, cfg: VideoConfig) -> Result<Self, MixerError> {
        if cfg.width < 16
            || cfg.height < 16
            || !cfg.width.is_multiple_of(2)
            || !cfg.height.is_multiple_of(2)
        {
            return Err(MixerError::Codec(format!(
                "composite size {}x{}: even, at least 16x16",
                cfg.width, cfg.height
            )));
        }
        if !(1..=60).contains(&cfg.fps) {
            return Err(MixerError::Codec(format!(
                "composite frame rate {}: 1-60",
                cfg.fps
            )));
        }
        Ok(Self {
            canvas: Picture::filled(cfg.width, cfg.height, BLACK),
            codec,
            cfg,
            members: Vec::new(),
            encoder: None,
            next_tick: None,
            timestamp: 0,
            force_keyframe: true,
            speaker: None,
            out: VecDeque::new(),
            stats: VideoStats::default(),
        })
    }

    /// The dominant speaker changed: in the speaker layout the tiles move.
    pub fn set_speaker(&mut self, id: Option<u64>) {
        if self.speaker == id {
            return;
        }
        self.speaker = id;
        if self.cfg.layout == Layout::Speaker && !self.members.is_empty() {
            self.tell_layout();
        }
    }

    /// Each member's tile, in member order (`None`: not shown).
    fn rects(&self) -> Vec<Option<Rect>> {
        let n = self.members.len();
        match self.cfg.layout {
            Layout::Grid => grid(n, self.cfg.width, self.cfg.height)
                .into_iter()
                .map(Some)
                .collect(),
            Layout::Speaker => {
                let main = self
                    .speaker
                    .and_then(|s| self.members.iter().position(|m| m.id == s))
                    .unwrap_or(0);
                speaker(n, main, self.cfg.width, self.cfg.height)
            }
        }
    }

    pub fn stats(&self) -> VideoStats {
        self.stats
    }

    pub fn participants(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().map(|m| m.id)
    }

    /// `id` is in the composite from the next frame; it gets a tile, filled
    /// once it `sends_video` and its stream decodes.
    pub fn add(&mut self, now: Instant, id: u64, sends_video: bool) -> Result<(), MixerError> {
        if self.members.iter().any(|m| m.id == id) {
            return Err(MixerError::DuplicateParticipant(id));
        }
        let input = if sends_video {
            Some(Input {
                depacketizer: Depacketizer::default(),
                decoder: self.codec.decoder()?,
                last: None,
                asked_keyframe: None,
                bad_run: 0,
                dropped: false,
            })
        } else {
            None
        };
        self.members.push(Member { id, input });
        if self.encoder.is_none() {
            self.encoder = Some(self.codec.encoder(&self.cfg)?);
        }
        self.next_tick.get_or_insert(now);
        // A newcomer's decoder starts at a keyframe of the composite.
        self.force_keyframe = true;
        self.tell_layout();
        Ok(())
    }

    pub fn remove(&mut self, id: u64) -> Result<(), MixerError> {
        let before = self.members.len();
        self.members.retain(|m| m.id != id);
        if self.members.len() == before {
            return Err(MixerError::UnknownParticipant(id));
        }
        if self.members.is_empty() {
            self.next_tick = None;
        } else {
            self.tell_layout();
        }
        Ok(())
    }

    /// A receiver lost the composite (its PLI): the next frame is an IDR.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// One video RTP packet from `id`.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        id: u64,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), MixerError> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(MixerError::UnknownParticipant(id))?;
        let Some(input) = m.input.as_mut().filter(|i| !i.dropped) else {
            return Ok(());
        };
        let before = (
            input.depacketizer.malformed,
            input.depacketizer.dropped_units,
        );
        let unit = input.depacketizer.push(seq, timestamp, marker, payload);
        self.stats.malformed_packets += input.depacketizer.malformed - before.0;
        self.stats.units_dropped += input.depacketizer.dropped_units - before.1;
        if let Some(unit) = unit {
            match input.decoder.decode(&unit.annexb) {
                Ok(Some(p)) => {
                    self.stats.units_decoded += 1;
                    input.bad_run = 0;
                    input.last = Some(p);
                }
                Ok(None) => {}
                Err(_) => {
                    self.stats.decode_errors += 1;
                    input.bad_run += 1;
                    if input.bad_run >= MAX_BAD_UNITS {
                        input.dropped = true;
                        input.last = None;
                    }
                }
            }
        }
        let stuck =
            input.depacketizer.needs_keyframe() || (input.last.is_none() && input.bad_run > 0);
        if stuck
            && input
                .asked_keyframe
                .is_none_or(|t| now >= t + KEYFRAME_RETRY)
        {
            input.asked_keyframe = Some(now);
            self.stats.keyframe_requests += 1;
            self.out
                .push_back(VideoOutput::KeyframeRequest { participant: id });
        }
        Ok(())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Compose and encode the frame due by `now` (frames missed while
    /// stalled are skipped, not bunched).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(t) = self.next_tick.filter(|t| *t <= now) else {
            return;
        };
        let period = Duration::from_secs(1) / self.cfg.fps;
        let mut next = t + period;
        let ticks_per_frame = VIDEO_CLOCK / self.cfg.fps;
        while next <= now {
            next += period;
            self.timestamp = self.timestamp.wrapping_add(ticks_per_frame);
        }
        self.next_tick = Some(next);
        self.compose();
        self.timestamp = self.timestamp.wrapping_add(ticks_per_frame);
    }

    pub fn poll_output(&mut self) -> Option<VideoOutput> {
        self.out.pop_front()
    }

    fn tell_layout(&mut self) {
        let tiles = self
            .members
            .iter()
            .zip(self.rects())
            .filter_map(|(m, r)| Some((m.id, r?)))
            .collect();
        self.out.push_back(VideoOutput::Layout {
            width: self.cfg.width,
            height: self.cfg.height,
            tiles,
        });
    }

    fn compose(&mut self) {
        if self.encoder.is_none() {
            return;
        }
        let blank = Picture::filled(self.cfg.width, self.cfg.height, BLACK);
        self.canvas.y.copy_from_slice(&blank.y);
        self.canvas.u.copy_from_slice(&blank.u);
        self.canvas.v.copy_from_slice(&blank.v);
        let rects = self.rects();
        for (m, r) in self.members.iter().zip(rects) {
            if let (Some(r), Some(p)) = (r, m.input.as_ref().and_then(|i| i.last.as_ref())) {
                blit(&mut self.canvas, r, p);
            }
        }
        let Some(encoder) = self.encoder.as_mut() else {
            return;
        };
        let keyframe = std::mem::take(&mut self.force_keyframe);
        match encoder.encode(&self.canvas, keyframe) {
            Ok(annexb) => {
                let nals = h264::split_annexb(&annexb);
                if nals.is_empty() {
                    // The encoder skipped the frame (rate control).
                    self.force_keyframe |= keyframe;
                    return;
                }
                let idr = h264::is_keyframe(&annexb);
                if idr {
                    self.stats.keyframes_sent += 1;
                }
                self.stats.frames_composed += 1;
                let payloads = h264::packetize(&nals, self.cfg.mtu)
                    .into_iter()
                    .map(Arc::from)
                    .collect();
                self.out.push_back(VideoOutput::Frame {
                    timestamp: self.timestamp,
                    payloads,
                    keyframe: idr,
                });
            }
            Err(_) => {
                self.stats.encode_errors += 1;
                self.force_keyframe |= keyframe;
            }
        }
    }
}

#[cfg(test)]
mod tests;
