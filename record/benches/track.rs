//! What recording costs per packet: `TrackRecorder::push` (frame assembly,
//! WebM blocks) and `take_output`, for 720p-like video streams (30 fps,
//! ~1.1 kB packets, 5 packets a frame, a keyframe of 40 packets every 2 s)
//! in VP8, VP9 SVC (three spatial layers of 1, 1 and 3 packets; at a
//! keyframe 5, 10 and 25, each predicted from the one below) and AV1 (one
//! OBU a frame, fragmented over its packets), and an Opus stream (50
//! packets a second).
//!
//! `cargo bench -p tern-record --bench track` (release; each video stream's
//! fastest of five runs). Results in BENCHMARKS.md.

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

/// A VP9 payload (RFC 9628, non-flexible with layer indices): spatial
/// layer `sid`, B on a layer frame's first packet, E on its last; a
/// keyframe's first carries the scalability structure (3 layers, sizes).
fn vp9_packet(sid: u8, first: bool, last: bool, key: bool, len: usize) -> Vec<u8> {
    let mut d = 0xA0;
    if !key {
        d |= 0x40;
    }
    if first {
        d |= 0x08;
    }
    if last {
        d |= 0x04;
    }
    let ss = key && sid == 0 && first;
    if ss {
        d |= 0x02;
    }
    let mut p = vec![d, 0x05, (sid << 1) | u8::from(key && sid > 0), 0x00];
    if ss {
        p.push(0x50);
        for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
            p.extend_from_slice(&w.to_be_bytes());
            p.extend_from_slice(&h.to_be_bytes());
        }
    }
    p.resize(len, 0x5a);
    p
}

/// An AV1 payload: one OBU element a packet (W = 1), Z and Y where a frame
/// spans packets; a keyframe begins with a sequence header (libaom's, for
/// 320x240).
fn av1_packet(first: bool, last: bool, key: bool, len: usize) -> Vec<u8> {
    let mut h = 0x10;
    if !first {
        h |= 0x80;
    }
    if !last {
        h |= 0x40;
    }
    let mut p = Vec::with_capacity(len);
    if first && key {
        // N, W = 2: the sequence header with its length, then the frame.
        p.push(0x28 | if last { 0 } else { 0x40 });
        let seq = [
            0x08, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40,
        ];
        p.push(seq.len() as u8);
        p.extend_from_slice(&seq);
        p.push(6 << 3);
    } else {
        p.push(h);
        if first {
            p.push(6 << 3);
        }
    }
    p.resize(len, 0x5a);
    p
}

/// One video stream through a recorder: packets, bytes, frames written
/// and the time it took.
fn video(codec: Codec, seconds: u32) -> (u64, u64, u64, std::time::Duration) {
    let mut r = TrackRecorder::new(codec);
    let mut out = Vec::new();
    let (mut seq, mut packets, mut bytes) = (0u16, 0u64, 0u64);
    let t0 = Instant::now();
    for f in 0..30 * seconds {
        let key = f % 60 == 0;
        let ts = f.wrapping_mul(3000);
        let at = i64::from(f) * 33;
        // (spatial layer, packets) of the picture, in order.
        let layers: &[(u8, usize)] = match (codec, key) {
            (Codec::Vp9, true) => &[(0, 5), (1, 10), (2, 25)],
            (Codec::Vp9, false) => &[(0, 1), (1, 1), (2, 3)],
            (_, true) => &[(0, 40)],
            (_, false) => &[(0, 5)],
        };
        let total: usize = layers.iter().map(|l| l.1).sum();
        let mut k = 0;
        for &(sid, n) in layers {
            for i in 0..n {
                k += 1;
                let p = match codec {
                    Codec::Vp9 => vp9_packet(sid, i == 0, i + 1 == n, key, 1100),
                    Codec::Av1 => av1_packet(i == 0, i + 1 == n, key, 1100),
                    _ => vp8_packet(i == 0, key, 1100),
                };
                bytes += p.len() as u64;
                let _ = r.push(at, seq, ts, k == total, &p);
                seq = seq.wrapping_add(1);
                packets += 1;
            }
        }
        if f % 15 == 0 {
            r.take_output(&mut out);
            out.clear();
        }
    }
    let took = t0.elapsed();
    let s = r.stats();
    assert_eq!(s.malformed, 0, "{codec:?}: {s:?}");
    assert!(
        s.frames_written >= u64::from(30 * seconds),
        "{codec:?}: {s:?}"
    );
    (packets, bytes, s.frames_written, took)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const SECONDS: u32 = 600;
    for (name, codec) in [
        ("VP8", Codec::Vp8),
        ("VP9 SVC", Codec::Vp9),
        ("AV1", Codec::Av1),
    ] {
        // The fastest of five runs: a shared 2-core machine's noise only
        // ever adds time.
        let runs: Vec<_> = (0..5).map(|_| video(codec, SECONDS)).collect();
        let Some(&(packets, bytes, written, took)) = runs.iter().min_by_key(|r| r.3) else {
            return;
        };
        println!(
            "{name}: {packets} packets ({:.1} MB, {written} frames) in {:.1} ms: {:.0} ns per packet, {:.2} ms CPU per recorded second",
            bytes as f64 / 1e6,
            took.as_secs_f64() * 1e3,
            took.as_nanos() as f64 / packets as f64,
            took.as_secs_f64() * 1e3 / f64::from(SECONDS)
        );
    }
    let mut out = Vec::new();
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
        "audio: {} packets in {:.1} ms: {:.0} ns per packet, {:.3} ms CPU per recorded second",
        50 * SECONDS,
        audio.as_secs_f64() * 1e3,
        audio.as_nanos() as f64 / f64::from(50 * SECONDS),
        audio.as_secs_f64() * 1e3 / f64::from(SECONDS)
    );
}
