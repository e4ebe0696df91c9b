//! tern-record's track recorder fed arbitrary RTP: VP8 payload descriptors
//! and frames, H.264 (RFC 6184 units, aggregates, fragments, parameter
//! sets), VP9 (descriptors, SVC layer frames, superframes), AV1
//! (aggregation headers, OBU elements and fragments, sequence headers), or
//! Opus packets, with any sequence numbers, timestamps and
//! markers, in any order. It must never panic, never hold more than its
//! bounds, and never write a frame backwards in time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_record::{Codec, TrackRecorder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let codec = match mode % 5 {
        0 => Codec::Vp8,
        1 => Codec::Opus {
            channels: 1 + (mode >> 7 & 1),
        },
        2 => Codec::H264,
        3 => Codec::Vp9,
        _ => Codec::Av1,
    };
    let mut r = TrackRecorder::new(codec);
    if mode & 4 != 0 {
        let _ = r.set_origin(u32::from(mode) << 20, i64::from(mode >> 3) * 100);
    }
    let mut out = Vec::new();
    let mut at = 0i64;
    // Each packet: marker+len (1), seq (2), timestamp (4), payload.
    while rest.len() >= 7 {
        let len = usize::from(rest[0] & 0x7F);
        let marker = rest[0] & 0x80 != 0;
        let seq = u16::from_be_bytes([rest[1], rest[2]]);
        let ts = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]);
        let end = (7 + len).min(rest.len());
        let _ = r.push(at, seq, ts, marker, &rest[7..end]);
        at += 7;
        rest = &rest[end..];
        r.take_output(&mut out);
    }
    r.finish();
    r.take_output(&mut out);
    let s = r.stats();
    assert!(s.frames_written <= s.packets);
    assert_eq!(s.bytes as usize, out.len());
});
