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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

struct Side {
    rtc: Rtc,
    addr: SocketAddr,
    out: Vec<Vec<u8>>,
    next_timeout: Instant,
    estimates: Vec<(Instant, Bitrate)>,
}

impl Side {
    fn new(rtc: Rtc, addr: SocketAddr, now: Instant) -> Self {
        Side {
            rtc,
            addr,
            out: Vec::new(),
            next_timeout: now,
            estimates: Vec::new(),
        }
    }

    /// Poll until str0m only has a timeout left.
    fn drive(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.out.push(t.contents.into()),
                Ok(Output::Event(Event::EgressBitrateEstimate(BweKind::Twcc {
                    estimate, ..
                }))) => self.estimates.push((now, estimate)),
                Ok(Output::Event(_)) => {}
                Err(e) => panic!("rtc failed: {e}"),
            }
        }
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let r = Receive::new(Protocol::Udp, from, self.addr, data).expect("datagram");
        self.rtc
            .handle_input(Input::Receive(now, r))
            .expect("receive");
        self.drive(now);
    }

    /// Give str0m the time until it wants none within 200 µs of `now`, as
    /// `Core::drive` does (its pacer asks again a microsecond after each
    /// packet it releases, and a burst leaves in one pass); bounded too.
    fn timeout(&mut self, now: Instant) {
        self.drive(now);
        for _ in 0..256 {
            if self.next_timeout > now + Duration::from_micros(200) {
                return;
            }
            let t = self.next_timeout.max(now);
            self.rtc.handle_input(Input::Timeout(t)).expect("timeout");
            self.drive(now);
        }
    }
}

/// Everything `a` sent arrives at `b` at once: a path with no queue and no
/// serialisation delay worth a feedback tick.
fn flush(now: Instant, a: &mut Side, b: &mut Side) {
    for d in std::mem::take(&mut a.out) {
        b.receive(now, a.addr, &d);
    }
}

fn build(now: Instant, bridge: bool) -> Rtc {
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(bridge)
        .clear_codecs()
        .enable_vp8(true);
    if bridge {
        b = b.enable_bwe(Some(Bitrate::kbps(1000)));
    }
    b.build(now)
}

/// A bridge-like `Rtc` (ICE-lite, estimating) sending one video m-line to
/// a participant-like one, connected in memory.
fn connect(t0: Instant) -> (Side, Side, Mid, Instant) {
    let b_addr: SocketAddr = "10.0.0.1:10000".parse().expect("addr");
    let p_addr: SocketAddr = "10.0.0.2:20000".parse().expect("addr");
    let mut bridge = Side::new(build(t0, true), b_addr, t0);
    let mut part = Side::new(build(t0, false), p_addr, t0);
    bridge
        .rtc
        .add_local_candidate(Candidate::host(b_addr, Protocol::Udp).expect("candidate"));
    part.rtc
        .add_local_candidate(Candidate::host(p_addr, Protocol::Udp).expect("candidate"));
    let mut api = part.rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let answer = bridge.rtc.sdp_api().accept_offer(offer).expect("answer");
    part.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");
    let mut now = t0;
    while !(bridge.rtc.is_connected() && part.rtc.is_connected()) {
        assert!(now < t0 + Duration::from_secs(5), "never connected");
        part.timeout(now);
        bridge.timeout(now);
        flush(now, &mut part, &mut bridge);
        flush(now, &mut bridge, &mut part);
        now += Duration::from_millis(5);
    }
    (bridge, part, mid, now)
}

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
