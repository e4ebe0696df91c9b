//! Synthetic media for test clients, the simulator and the load tool: VP8
//! simulcast with realistic frame sizes and periodic keyframes, and
//! Opus-sized audio with RFC 6464 levels.
//!
//! Every payload carries a Tern trailer block after the codec header so a
//! receiver can tell which layer, frame and packet it got and when it was
//! sent, without decoding anything.

use std::time::{Duration, Instant};

/// Marks the Tern block inside a payload.
pub const MAGIC: [u8; 4] = *b"TERN";
/// Bytes of the Tern block: magic, layer, frame, index, count, sent micros.
pub const BLOCK_LEN: usize = 4 + 1 + 4 + 2 + 2 + 8;
/// Largest RTP payload generated (fits a 1200-byte packet with header and SRTP tag).
pub const MAX_PAYLOAD: usize = 1100;

/// One simulcast layer to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub rid: String,
    pub width: u16,
    pub height: u16,
    pub bitrate_bps: u32,
}

impl LayerSpec {
    /// The 180p/360p/720p ladder browsers send with three encodings.
    pub fn ladder() -> Vec<LayerSpec> {
        vec![
            LayerSpec::new("q", 320, 180, 150_000),
            LayerSpec::new("h", 640, 360, 500_000),
            LayerSpec::new("f", 1280, 720, 1_500_000),
        ]
    }

    pub fn new(rid: &str, width: u16, height: u16, bitrate_bps: u32) -> Self {
        Self {
            rid: rid.into(),
            width,
            height,
            bitrate_bps,
        }
    }
}

/// A packet to send on one layer (or the audio stream).
#[derive(Debug, Clone)]
pub struct GenPacket {
    pub layer: usize,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub keyframe: bool,
    pub payload: Vec<u8>,
    /// Audio: the RFC 6464 level to send it with.
    pub audio_level: Option<u8>,
}

/// What a receiver reads back from a synthetic payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub layer: u8,
    pub frame: u32,
    pub index: u16,
    pub count: u16,
    /// Sender's clock, microseconds since its generator started.
    pub sent_us: u64,
}

/// Find the Tern block in a payload (after a codec header of unknown size).
/// The tag a publisher made with `seed` puts on its audio.
pub fn audio_tag(seed: u64) -> u32 {
    (seed as u32 ^ (seed >> 32) as u32) | 1
}

/// The publisher tag of a synthetic payload: at the end of audio, right
/// after the block in video (when the packet had room for it).
pub fn read_tag(payload: &[u8]) -> Option<u32> {
    let t = if payload.len() == AUDIO_PAYLOAD && payload.first() == Some(&0xf8) {
        payload.get(AUDIO_PAYLOAD - AUDIO_TAG_LEN..)?
    } else {
        let start = payload
            .windows(MAGIC.len())
            .take(32)
            .position(|w| w == MAGIC)?;
        payload.get(start + BLOCK_LEN..start + BLOCK_LEN + 4)?
    };
    let tag = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    (tag != 0).then_some(tag)
}

pub fn read_block(payload: &[u8]) -> Option<Block> {
    let start = payload
        .windows(MAGIC.len())
        .take(32)
        .position(|w| w == MAGIC)?;
    let b = payload.get(start + 4..start + BLOCK_LEN)?;
    Some(Block {
        layer: b[0],
        frame: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
        index: u16::from_be_bytes([b[5], b[6]]),
        count: u16::from_be_bytes([b[7], b[8]]),
        sent_us: u64::from_be_bytes([b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16]]),
    })
}

fn push_block(p: &mut Vec<u8>, block: Block) {
    p.extend_from_slice(&MAGIC);
    p.push(block.layer);
    p.extend_from_slice(&block.frame.to_be_bytes());
    p.extend_from_slice(&block.index.to_be_bytes());
    p.extend_from_slice(&block.count.to_be_bytes());
    p.extend_from_slice(&block.sent_us.to_be_bytes());
}

#[derive(Debug)]
struct LayerState {
    spec: LayerSpec,
    seq: u64,
    pid: u16,
    tl0: u8,
    frame: u32,
    force_key: bool,
    last_key: Option<Instant>,
    /// Encoded and sent (a sender constraint can pause it).
    enabled: bool,
}

/// VP8 simulcast source at 30 fps.
#[derive(Debug)]
pub struct VideoGen {
    /// The publisher's tag ([`audio_tag`]), after each packet's block.
    tag: u32,
    layers: Vec<LayerState>,
    start: Instant,
    next_frame: Instant,
    frame_index: u32,
    keyframe_interval: Duration,
    ts: u32,
}

const FRAME: Duration = Duration::from_micros(33_333);

impl VideoGen {
    pub fn new(layers: Vec<LayerSpec>, now: Instant, seed: u64) -> Self {
        let layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, spec)| LayerState {
                spec,
                // Distinct numbering per layer, as real encoders have.
                seq: 1 + (seed.wrapping_mul(7919).wrapping_add(i as u64 * 10_007)) % 30_000,
                pid: ((seed as u16).wrapping_mul(31).wrapping_add(i as u16 * 1000)) & 0x7fff,
                tl0: (seed as u8).wrapping_add(i as u8 * 50),
                frame: 0,
                force_key: true,
                last_key: None,
                enabled: true,
            })
            .collect();
        Self {
            tag: audio_tag(seed),
            layers,
            start: now,
            next_frame: now,
            frame_index: 0,
            keyframe_interval: Duration::from_secs(10),
            ts: (seed as u32).wrapping_mul(2654435761),
        }
    }

    pub fn layers(&self) -> impl Iterator<Item = &LayerSpec> {
        self.layers.iter().map(|l| &l.spec)
    }

    pub fn set_keyframe_interval(&mut self, d: Duration) {
        self.keyframe_interval = d;
    }

    /// Encode `layer` or not, as a browser does for `encodings[i].active`;
    /// a layer that resumes starts with a keyframe.
    pub fn set_enabled(&mut self, layer: usize, enabled: bool) {
        if let Some(l) = self.layers.get_mut(layer) {
            if enabled && !l.enabled {
                l.force_key = true;
            }
            l.enabled = enabled;
        }
    }

    /// Cap every layer's bitrate, as a browser does for
    /// `encodings[i].maxBitrate`: a layer's encoder never targets more.
    pub fn cap_bitrate(&mut self, max_bps: u32) {
        for l in &mut self.layers {
            l.spec.bitrate_bps = l.spec.bitrate_bps.min(max_bps);
        }
    }

    /// The nominal bitrate of the layers being encoded (a pacer's base rate).
    pub fn enabled_bitrate_bps(&self) -> u32 {
        self.layers
            .iter()
            .filter(|l| l.enabled)
            .map(|l| l.spec.bitrate_bps)
            .sum()
    }

    /// Make the next frame of `layer` a keyframe (a PLI arrived).
    pub fn request_keyframe(&mut self, layer: usize) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.force_key = true;
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_frame
    }

    /// Packets of every frame due by `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<GenPacket>) {
        while self.next_frame <= now {
            let at = self.next_frame;
            let sent_us = at.saturating_duration_since(self.start).as_micros() as u64;
            for (i, l) in self.layers.iter_mut().enumerate() {
                if !l.enabled {
                    continue;
                }
                let key = l.force_key
                    || l.last_key
                        .is_none_or(|t| at.saturating_duration_since(t) >= self.keyframe_interval);
                if key {
                    l.force_key = false;
                    l.last_key = Some(at);
                    l.tl0 = l.tl0.wrapping_add(1);
                }
                let base = (l.spec.bitrate_bps / 8 / 30) as usize;
                // Deterministic ±20 % variation so frames are not all alike.
                let wobble = (self.frame_index.wrapping_mul(2654435761) >> 24) as usize % 40;
                let size = if key {
                    base * 5
                } else {
                    base * (80 + wobble) / 100
                }
                .max(60);
                let count = size.div_ceil(MAX_PAYLOAD - 40).max(1) as u16;
                for index in 0..count {
                    let first = index == 0;
                    let mut p = Vec::with_capacity(MAX_PAYLOAD);
                    // VP8 descriptor: X, S on the first packet, PID 0.
                    p.push(0x80 | if first { 0x10 } else { 0 });
                    // I (picture id), L (TL0PICIDX), T (temporal id).
                    p.push(0xe0);
                    p.push(0x80 | (l.pid >> 8) as u8);
                    p.push(l.pid as u8);
                    p.push(l.tl0);
                    p.push(0x00);
                    if first {
                        // Frame tag: P bit clear for keyframes.
                        p.push(if key { 0x10 } else { 0x11 });
                        p.push(0x02);
                        p.push(0x00);
                        if key {
                            p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                            p.extend_from_slice(&l.spec.width.to_le_bytes());
                            p.extend_from_slice(&l.spec.height.to_le_bytes());
                        }
                    }
                    push_block(
                        &mut p,
                        Block {
                            layer: i as u8,
                            frame: l.frame,
                            index,
                            count,
                            sent_us,
                        },
                    );
                    let share = size / count as usize;
                    // The publisher's tag where the padding has room for it
                    // (sizes stay what the bitrate says).
                    if p.len() + 4 <= share {
                        p.extend_from_slice(&self.tag.to_be_bytes());
                    }
                    if p.len() < share {
                        p.resize(share.min(MAX_PAYLOAD), 0);
                    }
                    out.push(GenPacket {
                        audio_level: None,
                        layer: i,
                        seq: l.seq,
                        ts: self.ts,
                        marker: index + 1 == count,
                        keyframe: key && first,
                        payload: p,
                    });
                    l.seq += 1;
                }
                l.pid = (l.pid + 1) & 0x7fff;
                l.frame += 1;
            }
            self.frame_index += 1;
            self.ts = self.ts.wrapping_add(3000);
            self.next_frame += FRAME;
        }
    }
}

/// When a simulated participant speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talk {
    /// Intervals since the participant started during which it speaks.
    pub turns: Vec<(Duration, Duration)>,
    /// Its RFC 6464 level between turns: 127 is digital silence (a muted
    /// or silent microphone), around 60-80 a room's background noise.
    pub quiet: u8,
}

impl Talk {
    pub fn speaking_at(&self, since_start: Duration) -> bool {
        self.turns
            .iter()
            .any(|&(from, to)| since_start >= from && since_start < to)
    }
}

/// Length of the speaker tag at the end of every audio payload: which
/// publisher a receiver hears, whichever slot carries it.
pub const AUDIO_TAG_LEN: usize = 4;
const AUDIO_PAYLOAD: usize = 80;

/// Opus-sized audio: one ~80-byte packet every 20 ms with an audio level,
/// ending with the publisher's tag.
#[derive(Debug)]
pub struct AudioGen {
    start: Instant,
    next: Instant,
    seq: u64,
    ts: u32,
    frame: u32,
    /// -dBov of the "voice" (0 loudest, 127 silence) when there is no
    /// [`Talk`] schedule: the same level in every packet.
    pub level: u8,
    pub talk: Option<Talk>,
    /// Real Opus carrying a sine, instead of synthetic payloads.
    pub tone: Option<Tone>,
    /// Packets no Opus decoder takes (see `PeerConfig::corrupt_audio`).
    pub corrupt: bool,
    tag: u32,
}

/// A sine encoded as real Opus, 20 ms a packet, for mixing tests: a
/// receiver that decodes what it heard can tell whose tone is in it.
pub struct Tone {
    hz: f64,
    /// Samples (48 kHz) generated so far.
    n: u64,
    encoder: tern_mixer::opus::OpusOut,
    pcm: Vec<i16>,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Tone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tone")
            .field("hz", &self.hz)
            .finish_non_exhaustive()
    }
}

/// The tone's amplitude: -23 dBFS RMS, a voice's level.
const TONE_AMPLITUDE: f64 = 3_000.0;

impl Tone {
    /// `None` if the encoder cannot be made (it can: 48 kHz mono).
    pub fn new(hz: f32) -> Option<Self> {
        use tern_mixer::codec::AudioCodec;
        let encoder = tern_mixer::opus::Opus::default().encoder(48_000).ok()?;
        Some(Self {
            hz: f64::from(hz),
            n: 0,
            encoder,
            pcm: vec![0; 960],
            payload: Vec::new(),
        })
    }

    /// The next 20 ms, encoded.
    fn next_packet(&mut self) -> Vec<u8> {
        use tern_mixer::codec::AudioEncoder;
        for s in self.pcm.iter_mut() {
            let t = self.n as f64 / 48_000.0;
            *s = (TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * self.hz * t).sin()) as i16;
            self.n += 1;
        }
        if self.encoder.encode(&self.pcm, &mut self.payload).is_err() {
            self.payload.clear();
        }
        self.payload.clone()
    }
}

impl AudioGen {
    pub fn new(now: Instant, seed: u64) -> Self {
        Self {
            start: now,
            next: now,
            seq: 1 + seed % 20_000,
            ts: (seed as u32).wrapping_mul(40503),
            frame: 0,
            level: 30,
            talk: None,
            tone: None,
            corrupt: false,
            tag: audio_tag(seed),
        }
    }

    /// The level of the packet `frame` sent `since_start`: speech has
    /// syllables (a quieter packet every seventh, a little jitter).
    fn level_at(&self, since_start: Duration, frame: u32) -> u8 {
        match &self.talk {
            None => self.level,
            Some(t) if t.speaking_at(since_start) => {
                let jitter = (frame.wrapping_mul(2_654_435_761) >> 28) as u8; // 0..=15
                if frame % 7 == 6 {
                    50 + jitter
                } else {
                    20 + jitter
                }
            }
            Some(t) => t.quiet,
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    pub fn poll(&mut self, now: Instant, out: &mut Vec<GenPacket>) {
        while self.next <= now {
            let sent_us = self.next.saturating_duration_since(self.start).as_micros() as u64;
            let p = match self.tone.as_mut() {
                _ if self.corrupt => {
                    // TOC code 3 (0xfb), then a frame count of zero.
                    let mut p = vec![0xfb, 0x00];
                    p.resize(AUDIO_PAYLOAD, 0x55);
                    p
                }
                Some(tone) => tone.next_packet(),
                None => {
                    // A TOC byte like Opus' (config 31, stereo 0, one frame).
                    let mut p = vec![0xf8];
                    push_block(
                        &mut p,
                        Block {
                            layer: 0,
                            frame: self.frame,
                            index: 0,
                            count: 1,
                            sent_us,
                        },
                    );
                    p.resize(AUDIO_PAYLOAD - AUDIO_TAG_LEN, 0);
                    p.extend_from_slice(&self.tag.to_be_bytes());
                    p
                }
            };
            let since = self.next.saturating_duration_since(self.start);
            out.push(GenPacket {
                audio_level: Some(self.level_at(since, self.frame)),
                layer: 0,
                seq: self.seq,
                ts: self.ts,
                marker: self.frame == 0,
                keyframe: true,
                payload: p,
            });
            self.seq += 1;
            self.frame += 1;
            self.ts = self.ts.wrapping_add(960);
            self.next += Duration::from_millis(20);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_video_parses_as_vp8_with_layer_dimensions() {
        let t0 = Instant::now();
        let mut g = VideoGen::new(LayerSpec::ladder(), t0, 1);
        let mut out = Vec::new();
        g.poll(t0 + Duration::from_millis(100), &mut out);
        let keys: Vec<_> = out.iter().filter(|p| p.keyframe).collect();
        assert_eq!(keys.len(), 3, "first frame of each layer is a keyframe");
        for k in keys {
            let info = tern_sfu::vp8::parse(&k.payload).expect("valid VP8");
            assert!(info.keyframe_start);
            let spec = &LayerSpec::ladder()[k.layer];
            assert_eq!(info.dims, Some((spec.width, spec.height)));
            let b = read_block(&k.payload).expect("block");
            assert_eq!(b.layer as usize, k.layer);
        }
        // Frames after the first are interframes, and each frame ends with a marker.
        let later: Vec<_> = out
            .iter()
            .filter(|p| read_block(&p.payload).is_some_and(|b| b.frame == 1))
            .collect();
        assert!(later.iter().all(|p| !p.keyframe));
        assert!(later.iter().any(|p| p.marker));
        assert!(out.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
    }

    #[test]
    fn keyframe_request_makes_next_frame_a_keyframe_on_that_layer_only() {
        let t0 = Instant::now();
        let mut g = VideoGen::new(LayerSpec::ladder(), t0, 2);
        let mut out = Vec::new();
        g.poll(t0, &mut out);
        out.clear();
        g.request_keyframe(1);
        g.poll(t0 + FRAME, &mut out);
        let keys: Vec<usize> = out.iter().filter(|p| p.keyframe).map(|p| p.layer).collect();
        assert_eq!(keys, vec![1]);
    }
}
