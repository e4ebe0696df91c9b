//! Writes seed inputs of real H.264 for the `mixer_video` fuzz target into
//! the directory named on the command line: a keyframe and a few pictures
//! of a moving pattern, packetized, in the target's record format.

use tern_mixer::video::h264::{packetize, split_annexb};
use tern_mixer::video::layout::Picture;
use tern_mixer::video::openh264::OpenH264;
use tern_mixer::video::{VideoCodec, VideoConfig, VideoEncoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: h264_seeds DIR")?;
    std::fs::create_dir_all(&dir)?;
    let cfg = VideoConfig {
        width: 64,
        height: 48,
        ..VideoConfig::default()
    };
    let mut enc = OpenH264.encoder(&cfg)?;
    for seed in 0..4u8 {
        let mut out = Vec::new();
        for frame in 0..6u8 {
            let mut p = Picture::filled(64, 48, (40 + seed * 40, 100, 150));
            for (i, y) in p.y.iter_mut().enumerate() {
                *y = y.wrapping_add((i as u8).wrapping_mul(frame));
            }
            let annexb = enc.encode(&p, frame == 0)?;
            let payloads = packetize(&split_annexb(&annexb), 200 + usize::from(seed) * 300);
            let n = payloads.len();
            for (i, payload) in payloads.iter().enumerate() {
                let mut flags = (seed % 3) << 2;
                if i + 1 == n {
                    flags |= 1 | 16;
                }
                if i == 0 {
                    flags |= 2;
                }
                out.push(1);
                out.push(flags);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                out.extend_from_slice(payload);
            }
        }
        std::fs::write(format!("{dir}/seed-{seed}"), out)?;
    }
    Ok(())
}
