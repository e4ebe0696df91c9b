//! Publishers' video packets as the composite gets them: arbitrary RTP
//! payloads (H.264, RFC 6184), sequence numbers and markers into a
//! composite that depacketizes and decodes with OpenH264 (C++: a crash
//! here takes a bridge down, SECURITY.md). Nothing may panic or crash.
//!
//! Input: records of [seq step, flags, length (2 bytes), payload]; flags
//! bit 0 is the marker, bit 1 starts a new picture (timestamp + 3000),
//! bits 2-3 pick one of three publishers, bit 4 runs the composite's next
//! frame. The composite is encoded raw: only decoding meets the network.
//! Seeds of real H.264: `cargo run -p tern-mixer --features openh264
//! --example h264_seeds fuzz/corpus/mixer_video`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_mixer::MixerError;
use tern_mixer::video::layout::Picture;
use tern_mixer::video::openh264::{OpenH264, OpenH264Decoder};
use tern_mixer::video::{VideoCodec, VideoConfig, VideoEncoder, VideoMixer};

/// OpenH264 in, nothing out.
#[derive(Clone, Copy)]
struct DecodeOnly;
struct NoEncode;

impl VideoEncoder for NoEncode {
    fn encode(&mut self, _: &Picture, _: bool) -> Result<Vec<u8>, MixerError> {
        Ok(vec![0, 0, 0, 1, 0x65, 0x88])
    }
}

impl VideoCodec for DecodeOnly {
    type Decoder = OpenH264Decoder;
    type Encoder = NoEncode;
    fn decoder(&self) -> Result<OpenH264Decoder, MixerError> {
        OpenH264.decoder()
    }
    fn encoder(&self, _: &VideoConfig) -> Result<NoEncode, MixerError> {
        Ok(NoEncode)
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let cfg = VideoConfig {
        width: 64,
        height: 48,
        ..VideoConfig::default()
    };
    let Ok(mut m) = VideoMixer::new(DecodeOnly, cfg) else {
        return;
    };
    for id in 0..3 {
        if m.add(t0, id, true).is_err() {
            return;
        }
    }
    let mut seq = [0u16; 3];
    let mut ts = [0u32; 3];
    let mut now = t0;
    let mut rest = data;
    while rest.len() >= 4 {
        let (step, flags) = (rest[0], rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])) % 1500;
        let payload = rest.get(4..4 + len).unwrap_or(&rest[4..]);
        rest = &rest[(4 + payload.len()).min(rest.len())..];
        let who = usize::from((flags >> 2) & 3) % 3;
        seq[who] = seq[who].wrapping_add(u16::from(step));
        if flags & 2 != 0 {
            ts[who] = ts[who].wrapping_add(3000);
        }
        now += Duration::from_millis(5);
        let _ = m.handle_packet(now, who as u64, seq[who], ts[who], flags & 1 != 0, payload);
        if flags & 16 != 0 {
            now += Duration::from_millis(70);
            m.handle_timeout(now);
        }
        while m.poll_output().is_some() {}
    }
});
