//! Real H.264 for composite tests: a picture of one colour per publisher,
//! encoded with OpenH264 at 15 frames a second and packetized (RFC 6184),
//! so a receiver that decodes the composite can tell whose tile is whose.

use std::time::{Duration, Instant};

use tern_mixer::video::h264::{packetize, split_annexb};
use tern_mixer::video::layout::Picture;
use tern_mixer::video::openh264::{OpenH264, OpenH264Encoder};
use tern_mixer::video::{VideoCodec, VideoConfig, VideoEncoder};

use crate::synth::GenPacket;

const FRAME: Duration = Duration::from_micros(66_667);

/// (Y, U, V).
pub type Colour = (u8, u8, u8);
pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;

pub struct PatternGen {
    encoder: OpenH264Encoder,
    picture: Picture,
    /// Switch between the colour and this one every `period` (latency
    /// measurements); the switches are recorded.
    alternate: Option<(Colour, Colour, Duration)>,
    next_switch: Option<Instant>,
    showing_first: bool,
    /// When each switch's first picture was encoded, and to which colour.
    pub switches: Vec<(Instant, Colour)>,
    /// Send garbage instead of pictures.
    pub corrupt: bool,
    next: Instant,
    seq: u64,
    ts: u32,
    force_key: bool,
}

impl std::fmt::Debug for PatternGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternGen").finish_non_exhaustive()
    }
}

impl PatternGen {
    /// `None` if OpenH264 cannot make an encoder.
    pub fn new(now: Instant, colour: (u8, u8, u8), seed: u64) -> Option<Self> {
        let cfg = VideoConfig {
            width: WIDTH,
            height: HEIGHT,
            fps: 15,
            bitrate_bps: 300_000,
            ..VideoConfig::default()
        };
        Some(Self {
            encoder: OpenH264.encoder(&cfg).ok()?,
            picture: Picture::filled(WIDTH, HEIGHT, colour),
            alternate: None,
            next_switch: None,
            showing_first: true,
            switches: Vec::new(),
            corrupt: false,
            next: now,
            seq: 1 + seed % 10_000,
            ts: (seed as u32).wrapping_mul(7919),
            force_key: true,
        })
    }

    /// Alternate with `other` every `period`, starting one period from
    /// `now`.
    pub fn alternate(
        &mut self,
        now: Instant,
        first: (u8, u8, u8),
        other: (u8, u8, u8),
        period: Duration,
    ) {
        self.alternate = Some((first, other, period));
        self.next_switch = Some(now + period);
    }

    pub fn request_keyframe(&mut self) {
        self.force_key = true;
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    pub fn poll(&mut self, now: Instant, out: &mut Vec<GenPacket>) {
        while self.next <= now {
            if let (Some((first, other, period)), Some(at)) = (self.alternate, self.next_switch)
                && self.next >= at
            {
                self.showing_first = !self.showing_first;
                let colour = if self.showing_first { first } else { other };
                self.picture = Picture::filled(WIDTH, HEIGHT, colour);
                self.switches.push((self.next, colour));
                self.next_switch = Some(at + period);
            }
            let key = std::mem::take(&mut self.force_key);
            if self.corrupt {
                // An "IDR slice" of a pattern no decoder takes.
                let mut nal = vec![0x65];
                nal.extend((0..900u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 1));
                out.push(GenPacket {
                    layer: 0,
                    seq: self.seq,
                    ts: self.ts,
                    marker: true,
                    keyframe: true,
                    payload: nal,
                    audio_level: None,
                });
                self.seq += 1;
            } else if let Ok(annexb) = self.encoder.encode(&self.picture, key) {
                let nals = split_annexb(&annexb);
                let payloads = packetize(&nals, 1_100);
                let n = payloads.len();
                for (i, payload) in payloads.into_iter().enumerate() {
                    out.push(GenPacket {
                        layer: 0,
                        seq: self.seq,
                        ts: self.ts,
                        marker: i + 1 == n,
                        keyframe: key,
                        payload,
                        audio_level: None,
                    });
                    self.seq += 1;
                }
            }
            self.ts = self.ts.wrapping_add(6_000);
            self.next += FRAME;
        }
    }
}
