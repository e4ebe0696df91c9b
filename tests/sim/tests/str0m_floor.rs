//! What str0m alone costs per datagram delivered to a participant, with the
//! connection shapes the simulator uses: the floor under the simulator's
//! speed (issue 3), measured without any Tern code in the loop.
//!
//! Two bare str0m `Rtc`s in RTP mode, connected in memory over ICE, DTLS and
//! SRTP: a "bridge" side (ICE-lite, answerer) writes one packet per receive
//! slot per round through the direct API, is timed out and polled once per
//! round, as `Core::settle` does per input batch; a "participant" side
//! (offerer) takes every datagram with `handle_input` and polls until its
//! timeout, as `Peer::handle_datagram` does. Each shape runs twice: the
//! bridge side writing with `write_rtp` and polling the datagrams out, and
//! sending with `send_rtp_now` into reused buffers as `Core::forward` does
//! (timed out once per round either way). The test asserts that every
//! packet arrives; it prints the cost per delivered datagram on each side.
//! `TERN_FLOOR_ROUNDS` makes it a benchmark (BENCHMARKS.md, "Simulation").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A connection shape: receive slots and whether the participant also
/// publishes (one audio and one three-layer simulcast video m-line, whose
/// streams every timeout pass walks too).
#[derive(Clone, Copy, Debug)]
struct Shape {
    video_slots: usize,
    audio_slots: usize,
    publishes: bool,
}

struct Side {
    rtc: Rtc,
    addr: SocketAddr,
    out: Vec<Vec<u8>>,
    next_timeout: Instant,
    rtp_in: u64,
}

impl Side {
    fn new(rtc: Rtc, addr: SocketAddr, now: Instant) -> Self {
        Side {
            rtc,
            addr,
            out: Vec::new(),
            next_timeout: now,
            rtp_in: 0,
        }
    }

    /// Poll until str0m only has a timeout left (its rule after any input).
    fn drive(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.out.push(t.contents.into()),
                Ok(Output::Event(Event::RtpPacket(_))) => self.rtp_in += 1,
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
        self.drive();
    }

    fn timeout(&mut self, now: Instant) {
        self.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        self.drive();
    }
}

fn build(now: Instant, lite: bool) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(lite)
        .set_stats_interval(if lite {
            None
        } else {
            Some(Duration::from_millis(500))
        })
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now)
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Pt {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
        .expect("negotiated codec")
}

/// Move every pending datagram from `a` to `b`.
fn flush(now: Instant, a: &mut Side, b: &mut Side) -> usize {
    let out = std::mem::take(&mut a.out);
    let n = out.len();
    for d in &out {
        b.receive(now, a.addr, d);
    }
    n
}

/// Connect a bridge-like and a participant-like `Rtc` of `shape`; returns
/// them with the bridge's send mids (video slots first) once media flows.
fn connect(shape: Shape, t0: Instant) -> (Side, Side, Vec<(Mid, MediaKind)>, Instant) {
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
    if shape.publishes {
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let mut sim = Simulcast::new();
        for rid in ["q", "h", "f"] {
            sim.add_send_layer(SimulcastLayer::new(rid));
        }
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
    }
    let mut slots = Vec::new();
    for _ in 0..shape.video_slots {
        slots.push((
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None),
            MediaKind::Video,
        ));
    }
    for _ in 0..shape.audio_slots {
        slots.push((
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None),
            MediaKind::Audio,
        ));
    }
    let (offer, pending) = api.apply().expect("offer");
    let answer = bridge.rtc.sdp_api().accept_offer(offer).expect("answer");
    part.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");

    let mut now = t0;
    while !(bridge.rtc.is_connected() && part.rtc.is_connected()) {
        assert!(
            now < t0 + Duration::from_secs(5),
            "{shape:?} never connected"
        );
        part.timeout(now);
        bridge.timeout(now);
        flush(now, &mut part, &mut bridge);
        flush(now, &mut bridge, &mut part);
        now += Duration::from_millis(5);
    }
    (bridge, part, slots, now)
}

struct Cost {
    delivered: u64,
    bridge: Duration,
    participant: Duration,
}

/// `rounds` rounds 10 ms apart: one packet per slot each round, written,
/// sent and received; the participant's own timers and feedback run too.
///
/// `send_now`: the bridge side sends with `DirectApi::send_rtp_now` into
/// buffers it reuses (as `Core::forward` does), instead of `write_rtp` and
/// the poll; it is still timed out once per round.
fn run(shape: Shape, rounds: u64, send_now: bool) -> Cost {
    let t0 = Instant::now();
    let (mut bridge, mut part, slots, mut now) = connect(shape, t0);
    let vp8 = pt_of(&bridge.rtc, Codec::Vp8);
    let opus = pt_of(&bridge.rtc, Codec::Opus);
    let video = vec![0x90u8; 1100];
    let audio = vec![0x55u8; 100];
    let mut cost = Cost {
        delivered: 0,
        bridge: Duration::ZERO,
        participant: Duration::ZERO,
    };
    let rtp_before = part.rtp_in;
    let ssrcs: Vec<_> = {
        let mut api = bridge.rtc.direct_api();
        slots
            .iter()
            .map(|&(mid, _)| api.stream_tx_by_mid(mid, None).expect("send stream").ssrc())
            .collect()
    };
    let video: std::sync::Arc<[u8]> = video.into();
    let audio: std::sync::Arc<[u8]> = audio.into();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for round in 0..rounds {
        now += Duration::from_millis(10);
        let seq = SeqNo::from(round + 1);
        let t = Instant::now();
        let mut api = bridge.rtc.direct_api();
        let mut sent = Vec::new();
        for (&(mid, kind), ssrc) in slots.iter().zip(&ssrcs) {
            let (pt, payload, rate) = match kind {
                MediaKind::Video => (vp8, &video, 900),
                MediaKind::Audio => (opus, &audio, 480),
            };
            let ts = (round as u32).wrapping_mul(rate);
            let w = RtpWrite::new(pt, seq, ts, now, payload.clone())
                .marker(true)
                .nackable(kind == MediaKind::Video);
            if send_now {
                let mut buf = pool.pop().unwrap_or_else(|| Vec::with_capacity(1500));
                api.send_rtp_now(now, *ssrc, w, &mut buf).expect("sent");
                sent.push(buf);
            } else {
                let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
                tx.write_rtp(w);
            }
        }
        bridge.timeout(now);
        sent.append(&mut bridge.out);
        cost.bridge += t.elapsed();
        let t = Instant::now();
        for d in &sent {
            part.receive(now, bridge.addr, d);
        }
        if part.next_timeout <= now {
            part.timeout(now);
        }
        cost.participant += t.elapsed();
        cost.delivered += sent.len() as u64;
        // Feedback (receiver reports, NACKs) goes back untimed: the
        // simulator pays for it too, but it is not per delivered datagram.
        flush(now, &mut part, &mut bridge);
        bridge.out.clear();
        for mut b in sent {
            b.clear();
            pool.push(b);
        }
    }
    let rtp = part.rtp_in - rtp_before;
    let expected = rounds * slots.len() as u64;
    assert_eq!(
        rtp, expected,
        "{shape:?}: every packet written arrives once ({} datagrams)",
        cost.delivered
    );
    cost
}

#[test]
fn str0m_delivers_every_packet_and_its_cost_per_datagram_is_printed() {
    let rounds: u64 = std::env::var("TERN_FLOOR_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let shapes = [
        // One stream each way: what machine.md's per-packet figures measure.
        Shape {
            video_slots: 1,
            audio_slots: 0,
            publishes: false,
        },
        // The fifty-participant scenario's connection.
        Shape {
            video_slots: 9,
            audio_slots: 5,
            publishes: true,
        },
        // A 5x5 gallery.
        Shape {
            video_slots: 25,
            audio_slots: 5,
            publishes: true,
        },
    ];
    for shape in shapes {
        for send_now in [false, true] {
            let c = run(shape, rounds, send_now);
            let per = |d: Duration| d.as_secs_f64() * 1e6 / c.delivered as f64;
            eprintln!(
                "{:>2} video + {} audio slots{}, {}: {} datagrams, bridge {:.2} µs + participant {:.2} µs = {:.2} µs per delivered datagram",
                shape.video_slots,
                shape.audio_slots,
                if shape.publishes { ", publishing" } else { "" },
                if send_now {
                    "send_rtp_now"
                } else {
                    "write_rtp + poll"
                },
                c.delivered,
                per(c.bridge),
                per(c.participant),
                per(c.bridge + c.participant),
            );
        }
    }
}
