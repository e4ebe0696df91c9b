//! What recording costs per packet: `TrackRecorder::push` (frame assembly,
//! WebM blocks) and `take_output`, for a 720p-like VP8 stream (30 fps,
//! ~1.1 kB packets, 5 packets a frame, a keyframe of 40 packets every 2 s)
//! and an Opus stream (50 packets a second).
//!
//! `cargo bench -p tern-record --bench track` (release). Results in
//! BENCHMARKS.md.

use std::time::Instant;

use tern_record::{Codec, TrackRecorder};

/// A VP8 payload: a one-byte descriptor (S bit on a frame's first packet),
/// then a keyframe header with its size on a keyframe's first packet.
fn vp8_packet(first: bool, key: bool, len: usize) -> Vec<u8> {
    let mut p = vec![if first { 0x10 } else { 0x00 }];
    if first && key {
        // Frame tag (keyframe, shown), start code, 1280x720.
        p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
    } else if first {
        p.extend_from_slice(&[0x51, 0x42, 0x00]);
    }
    p.resize(len, 0x5a);
    p
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const SECONDS: u32 = 600;
    // Video.
    let mut r = TrackRecorder::new(Codec::Vp8);
    let mut out = Vec::new();
    let (mut seq, mut packets, mut bytes) = (0u16, 0u64, 0u64);
    let frames: Vec<(bool, usize)> = (0..30 * SECONDS)
        .map(|f| (f % 60 == 0, if f % 60 == 0 { 40 } else { 5 }))
        .collect();
    let t0 = Instant::now();
    for (f, &(key, n)) in frames.iter().enumerate() {
        let ts = (f as u32).wrapping_mul(3000);
        let at = (f as i64) * 33;
        for i in 0..n {
            let p = vp8_packet(i == 0, key, 1100);
            bytes += p.len() as u64;
            let _ = r.push(at, seq, ts, i + 1 == n, &p);
            seq = seq.wrapping_add(1);
            packets += 1;
        }
        if f % 15 == 0 {
            r.take_output(&mut out);
            out.clear();
        }
    }
    let video = t0.elapsed();
    let written = r.stats().frames_written;
    // Audio.
    let mut a = TrackRecorder::new(Codec::Opus { channels: 2 });
    let payload = vec![0xFCu8; 80];
    let t1 = Instant::now();
    for i in 0..50 * SECONDS {
        let _ = a.push(
            i64::from(i) * 20,
            i as u16,
            i.wrapping_mul(960),
            false,
            &payload,
        );
        if i % 25 == 0 {
            a.take_output(&mut out);
            out.clear();
        }
    }
    let audio = t1.elapsed();
    println!(
        "video: {packets} packets ({:.1} MB, {written} frames) in {:.1} ms: {:.0} ns per packet, {:.2} ms CPU per recorded second",
        bytes as f64 / 1e6,
        video.as_secs_f64() * 1e3,
        video.as_nanos() as f64 / packets as f64,
        video.as_secs_f64() * 1e3 / f64::from(SECONDS)
    );
    println!(
        "audio: {} packets in {:.1} ms: {:.0} ns per packet, {:.3} ms CPU per recorded second",
        50 * SECONDS,
        audio.as_secs_f64() * 1e3,
        audio.as_nanos() as f64 / f64::from(50 * SECONDS),
        audio.as_secs_f64() * 1e3 / f64::from(SECONDS)
    );
}
