//! str0m's start-up bandwidth probes next to unpaced forwarded video, on a
//! path far faster than the media (a LAN, loopback), with no Tern code in
//! the loop: the vendored str0m's pacer patch (patches/README.md).
//!
//! A bridge forwards video unpaced (its publisher paced it already), so a
//! keyframe written into a receiver's stream leaves in one burst. When that
//! burst was the first thing sent after the start-up probes were queued, it
//! counted as the whole probe cluster: six packets sent microseconds apart,
//! received within one 250 µs feedback tick, rejected by the estimator
//! ("recv interval invalid"), and the receiver's estimate stayed at its
//! starting value until a later probe, seconds on (3.5 s to 720p in a
//! real-socket run). Now unpaced packets count only as bytes towards a
//! probe, and paced padding still has to make up its packets.

mod str0m_pair;

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::format::Codec;
use str0m::rtp::{RtpWrite, SeqNo};
use str0m_pair::{connect, flush};

#[test]
fn an_unpaced_keyframe_burst_does_not_void_the_start_up_probes() {
    let t0 = Instant::now();
    let (mut bridge, mut part, mid, start) = connect(t0);
    let pt = bridge
        .rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .expect("vp8");
    let mut seq = 1u64;
    let mut now = start;
    // 2 s of 30 fps video at ~600 kbit/s: a 12-packet keyframe first (a
    // 360p one, as in the real-socket run where both start-up clusters
    // took six of its packets each), then
    // 2-packet frames, each written at once into an unpaced stream; the
    // first write goes with asking for 1.65 Mbit/s (720p and audio), which
    // queues str0m's start-up probes, as the bridge's allocation does.
    for frame in 0u32..60 {
        let packets = if frame == 0 { 12 } else { 2 };
        let mut api = bridge.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
        if frame == 0 {
            tx.set_unpaced(true);
        }
        for i in 0..packets {
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq), frame * 3000, now, vec![0x90u8; 1041])
                    .marker(i == packets - 1)
                    .nackable(true),
            );
            seq += 1;
        }
        if frame == 0 {
            bridge
                .rtc
                .bwe()
                .set_bitrate(Bitrate::kbps(0), Bitrate::kbps(1650));
        }
        // Time in 1 ms steps: the pacer's padding bursts are 2 ms apart.
        let frame_end = now + Duration::from_micros(33_333);
        while now < frame_end {
            bridge.timeout(now);
            flush(now, &mut bridge, &mut part);
            part.timeout(now);
            flush(now, &mut part, &mut bridge);
            now += Duration::from_millis(1);
        }
    }
    let within = start + Duration::from_millis(1500);
    let best = bridge
        .estimates
        .iter()
        .filter(|(at, _)| *at <= within)
        .map(|(_, e)| e.as_u64())
        .max();
    assert!(
        best.is_some_and(|e| e >= 2_000_000),
        "the start-up probes measured the path within 1.5 s: best estimate {best:?} bit/s, all {:?}",
        bridge
            .estimates
            .iter()
            .map(|(at, e)| (at.duration_since(start), e.as_u64()))
            .collect::<Vec<_>>()
    );
}
