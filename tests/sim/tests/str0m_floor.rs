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
//!
//! A second test is a bridge's fan-out in miniature: one source's packets
//! sent with `send_rtp_now` to 1, 70 and 560 receivers in turn, each
//! connection built as `tern_sfu` builds it and polled on its own timers.
//! What a copy costs grows with the receivers, as their state falls out of
//! the CPU's caches (BENCHMARKS.md, "Egress: a copy's cost as receivers
//! grow"); `TERN_FANOUT_CONNS` and `TERN_FANOUT_BURST` vary it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
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

/// A count given in the environment variable `name` (rounds, receivers,
/// packets in a row): `None` when it is not set; a value that is not a
/// number of at least 1 stops the benchmark with a message saying so.
fn env_count(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("{name} is a count, at least 1 (got {v:?})"),
    }
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
    connect_with(shape, t0, build(t0, true), 0)
}

/// `connect` with the bridge side's `Rtc` given; `n` numbers the pair's
/// addresses.
fn connect_with(
    shape: Shape,
    t0: Instant,
    bridge_rtc: Rtc,
    n: u16,
) -> (Side, Side, Vec<(Mid, MediaKind)>, Instant) {
    let b_addr = SocketAddr::from(([10, 0, 0, 1], 10000 + n));
    let p_addr = SocketAddr::from(([10, 0, 1, 2], 20000 + n));
    let mut bridge = Side::new(bridge_rtc, b_addr, t0);
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
    /// Of `bridge`, the writes alone (`write_rtp` or `send_rtp_now`), without
    /// the round's timeout pass: what a copy costs to write, seal and account.
    writes: Duration,
    participant: Duration,
}

/// `rounds` rounds 10 ms apart: one packet per slot each round, written,
/// sent and received; the participant's own timers and feedback run too.
///
/// `send_now`: the bridge side sends with `DirectApi::send_rtp_now` into
/// buffers it reuses (as `Core::forward` does, video NACKs surfaced to the
/// caller), instead of `write_rtp` and the poll; it is still timed out once
/// per round.
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
        writes: Duration::ZERO,
        participant: Duration::ZERO,
    };
    let rtp_before = part.rtp_in;
    let ssrcs: Vec<_> = {
        let mut api = bridge.rtc.direct_api();
        slots
            .iter()
            .map(|&(mid, kind)| {
                let tx = api.stream_tx_by_mid(mid, None).expect("send stream");
                // As `Core` forwards: video NACKs are answered from the
                // bridge's own copy, so str0m caches nothing it sends now.
                if send_now {
                    tx.set_nacks_to_caller(kind == MediaKind::Video);
                }
                tx.ssrc()
            })
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
        cost.writes += t.elapsed();
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
    let rounds = env_count("TERN_FLOOR_ROUNDS").unwrap_or(200);
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
                "{:>2} video + {} audio slots{}, {}: {} datagrams, bridge {:.2} µs (writes {:.2} µs) + participant {:.2} µs = {:.2} µs per delivered datagram",
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
                per(c.writes),
                per(c.participant),
                per(c.bridge + c.participant),
            );
        }
    }
}

/// The bridge side as `tern_sfu`'s `Core` builds it: estimator on at
/// 1 Mbit/s, statistics every 5 s, a TWCC send history of 512.
fn build_bridge(now: Instant) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_stats_interval(Some(Duration::from_secs(5)))
        .set_twcc_send_history(512)
        .enable_bwe(Some(Bitrate::mbps(1)))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now)
}

/// What a bridge's fan-out costs per copy as its receivers grow.
struct FanOut {
    copies: u64,
    writes: Duration,
    passes: u64,
    pass_time: Duration,
    seconds: f64,
}

/// `conns` receivers of one video slot each, every one sent each packet of
/// one source (a 720p stream's ~270 packets a second, 1,100 bytes) with
/// `send_rtp_now` in turn, as `Core::fan_out` does, and timed out only when
/// its own timer is due, as `Core::handle_timeout` does. The participants
/// take every datagram and send their feedback (untimed). With hundreds of
/// connections each copy and each pass finds its connection's state out of
/// the CPU's caches, as a loaded bridge does; with one, it is always hot.
fn fan_out(conns: usize, rounds: u64, burst: u64, shape: Shape) -> FanOut {
    let t0 = Instant::now();
    let mut pairs = Vec::with_capacity(conns);
    let mut now = t0;
    for n in 0..conns {
        let (bridge, part, slots, at) = connect_with(shape, t0, build_bridge(t0), n as u16);
        now = now.max(at);
        pairs.push((bridge, part, slots[0].0));
    }
    let vp8 = pt_of(&pairs[0].0.rtc, Codec::Vp8);
    let ssrcs: Vec<_> = pairs
        .iter_mut()
        .map(|(bridge, _, mid)| {
            let mut api = bridge.rtc.direct_api();
            let tx = api.stream_tx_by_mid(*mid, None).expect("send stream");
            tx.set_nacks_to_caller(true);
            tx.ssrc()
        })
        .collect();
    let payload: std::sync::Arc<[u8]> = vec![0x90u8; 1100].into();
    let mut bufs: Vec<Vec<Vec<u8>>> = (0..conns)
        .map(|_| (0..burst).map(|_| Vec::with_capacity(1500)).collect())
        .collect();
    let mut cost = FanOut {
        copies: 0,
        writes: Duration::ZERO,
        passes: 0,
        pass_time: Duration::ZERO,
        seconds: 0.0,
    };
    let start = now;
    let rtp_before: u64 = pairs.iter().map(|p| p.1.rtp_in).sum();
    for round in 0..rounds {
        // ~270 packets a second; a frame (marker) every ninth. `burst`
        // packets at once, each receiver sent all of them before the next
        // receiver is.
        now += Duration::from_micros(3_700 * burst);
        let t = Instant::now();
        for ((bridge, _, _), (ssrc, bufs)) in pairs.iter_mut().zip(ssrcs.iter().zip(&mut bufs)) {
            for (i, buf) in bufs.iter_mut().enumerate() {
                let n = round * burst + i as u64;
                let ts = ((n / 9) as u32).wrapping_mul(3_000);
                let w = RtpWrite::new(vp8, SeqNo::from(n + 1), ts, now, payload.clone())
                    .marker(n % 9 == 8)
                    .nackable(true);
                bridge
                    .rtc
                    .direct_api()
                    .send_rtp_now(now, *ssrc, w, buf)
                    .expect("sent");
            }
        }
        cost.writes += t.elapsed();
        cost.copies += conns as u64 * burst;
        for ((bridge, part, _), bufs) in pairs.iter_mut().zip(&mut bufs) {
            for buf in bufs.iter_mut() {
                part.receive(now, bridge.addr, buf);
                buf.clear();
            }
            if part.next_timeout <= now {
                part.timeout(now);
            }
            let feedback = std::mem::take(&mut part.out);
            let t = Instant::now();
            cost.passes += bridge_pass(bridge, now, part.addr, &feedback);
            cost.pass_time += t.elapsed();
            // Padding and probes the bridge sent go to the participant
            // (untimed).
            for d in std::mem::take(&mut bridge.out) {
                part.receive(now, bridge.addr, &d);
            }
        }
    }
    cost.seconds = (now - start).as_secs_f64();
    let rtp: u64 = pairs.iter().map(|p| p.1.rtp_in).sum::<u64>() - rtp_before;
    assert!(
        rtp >= cost.copies,
        "{conns} connections: every copy arrives ({rtp} of {} RTP packets)",
        cost.copies
    );
    cost
}

/// The bridge's side of a receiver between copies: its feedback, then its
/// timer if due (returns 1 for a timer pass). Not inlined, so that a
/// profile tells it from the participant's side.
#[inline(never)]
fn bridge_pass(bridge: &mut Side, now: Instant, from: SocketAddr, feedback: &[Vec<u8>]) -> u64 {
    for d in feedback {
        bridge.receive(now, from, d);
    }
    if bridge.next_timeout <= now {
        bridge.timeout(now);
        return 1;
    }
    0
}

#[test]
fn a_fan_outs_cost_per_copy_and_per_pass_is_printed_as_its_receivers_grow() {
    let rounds = env_count("TERN_FLOOR_ROUNDS").unwrap_or(200);
    // `TERN_FANOUT_CONNS=560` runs one size (for a profile).
    let sizes: Vec<usize> = match env_count("TERN_FANOUT_CONNS") {
        Some(n) => vec![n as usize],
        None => vec![1, 70, 560],
    };
    // `TERN_FANOUT_BURST=8`: each receiver is sent 8 packets in a row.
    let burst = env_count("TERN_FANOUT_BURST").unwrap_or(1);
    // Receive slots each receiver declares; the first video slot is sent
    // to. `TERN_FANOUT_SLOTS=4` declares 4 video and 4 audio slots, as the
    // load tool's receivers do; by default one video slot.
    let slots = env_count("TERN_FANOUT_SLOTS").map_or(1, |n| n as usize);
    let shape = Shape {
        video_slots: slots,
        audio_slots: if slots > 1 { slots } else { 0 },
        publishes: false,
    };
    for conns in sizes {
        let c = fan_out(
            conns,
            (rounds.max(20) * 70 / conns as u64 / burst).max(2),
            burst,
            shape,
        );
        let ns = |d: Duration, n: u64| d.as_secs_f64() * 1e9 / n.max(1) as f64;
        eprintln!(
            "{conns:>3} receivers of {slots} video slots, bursts of {burst}, {:.1} s: send_rtp_now {:.0} ns per copy; feedback and timers \
             {:.0} ns per copy ({:.1} passes per receiver-second on timers); bridge {:.0} ns per copy",
            c.seconds,
            ns(c.writes, c.copies),
            ns(c.pass_time, c.copies),
            c.passes as f64 / (conns as f64 * c.seconds),
            ns(c.writes + c.pass_time, c.copies),
        );
    }
}
