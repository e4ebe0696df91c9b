//! What the composite video costs: one conference of N publishers, each
//! sending 320x240 H.264 (OpenH264, a moving pattern) at 15 frames a
//! second, composed into a 640x360 grid encoded at 15 fps; the composite's
//! CPU per frame (depacketize and decode every publisher's picture, scale
//! into tiles, encode once) and so per participant, and how many
//! participants one core holds at 100 %.
//!
//! `cargo bench -p tern-mixer --features openh264 --bench composite`
//! (release). Results in BENCHMARKS.md. The publishers' encoding is done
//! before the clock starts.

use std::time::{Duration, Instant};

use tern_mixer::video::h264::{packetize, split_annexb};
use tern_mixer::video::layout::Picture;
use tern_mixer::video::openh264::OpenH264;
use tern_mixer::video::{VideoCodec, VideoConfig, VideoEncoder, VideoMixer};

const FRAMES: u32 = 150;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("publishers  ms/frame  ms/participant/frame  participants/core (15 fps)");
    for n in [3u64, 9, 16] {
        run(n);
    }
}

fn run(publishers: u64) {
    let pub_cfg = VideoConfig {
        width: 320,
        height: 240,
        fps: 15,
        bitrate_bps: 300_000,
        ..VideoConfig::default()
    };
    // Every publisher's packets, encoded ahead: a pattern that moves, so
    // each picture differs as a camera's do.
    let mut streams: Vec<Vec<Vec<Vec<u8>>>> = Vec::new();
    for p in 0..publishers {
        let mut enc = OpenH264.encoder(&pub_cfg).expect("encoder");
        let mut frames = Vec::new();
        for f in 0..FRAMES {
            let mut pic = Picture::filled(320, 240, (60 + (p * 20 % 150) as u8, 100, 150));
            for (i, y) in pic.y.iter_mut().enumerate() {
                *y = y.wrapping_add(((i as u32 + f * 3) % 64) as u8);
            }
            let annexb = enc.encode(&pic, f == 0).expect("encode");
            frames.push(packetize(&split_annexb(&annexb), 1_100));
        }
        streams.push(frames);
    }
    let t0 = Instant::now();
    let mut m = VideoMixer::new(OpenH264, VideoConfig::default()).expect("mixer");
    for p in 0..publishers {
        m.add(t0, p, true).expect("add");
    }
    let mut seq = vec![0u16; publishers as usize];
    let mut busy = Duration::ZERO;
    for f in 0..FRAMES {
        let now = t0 + Duration::from_secs(1) / 15 * f;
        let start = Instant::now();
        for (p, frames) in streams.iter().enumerate() {
            let packets = &frames[f as usize];
            let n = packets.len();
            for (i, payload) in packets.iter().enumerate() {
                m.handle_packet(now, p as u64, seq[p], f * 6000, i + 1 == n, payload)
                    .expect("member");
                seq[p] = seq[p].wrapping_add(1);
            }
        }
        m.handle_timeout(now);
        while m.poll_output().is_some() {}
        busy += start.elapsed();
    }
    let per_frame = busy.as_secs_f64() * 1000.0 / f64::from(FRAMES);
    let per_participant = per_frame / publishers as f64;
    println!(
        "{publishers:>10}  {per_frame:>8.2}  {per_participant:>20.3}  {:>8.0}",
        1000.0 / (per_participant * 15.0)
    );
    let s = m.stats();
    assert!(
        s.frames_composed >= u64::from(FRAMES) - 1 && s.decode_errors == 0,
        "{s:?}"
    );
}
