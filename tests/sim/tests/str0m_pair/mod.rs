//! Two bare str0m `Rtc`s connected in memory, a bridge-like one (ICE-lite,
//! estimating) sending video to a participant-like one: for tests of the
//! vendored str0m's patches with no Tern code in the loop.

// Each test binary that includes this uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

pub struct Side {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub out: Vec<Vec<u8>>,
    pub next_timeout: Instant,
    pub estimates: Vec<(Instant, Bitrate)>,
    /// Events other than estimates, when `keep_events` is set.
    pub events: Vec<(Instant, Event)>,
    pub keep_events: bool,
}

impl Side {
    pub fn new(rtc: Rtc, addr: SocketAddr, now: Instant) -> Self {
        Side {
            rtc,
            addr,
            out: Vec::new(),
            next_timeout: now,
            estimates: Vec::new(),
            events: Vec::new(),
            keep_events: false,
        }
    }

    /// Poll until str0m only has a timeout left.
    pub fn drive(&mut self, now: Instant) {
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
                Ok(Output::Event(e)) => {
                    if self.keep_events {
                        self.events.push((now, e));
                    }
                }
                Err(e) => panic!("rtc failed: {e}"),
            }
        }
    }

    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let r = Receive::new(Protocol::Udp, from, self.addr, data).expect("datagram");
        self.rtc
            .handle_input(Input::Receive(now, r))
            .expect("receive");
        self.drive(now);
    }

    /// Give str0m the time until it wants none within 200 µs of `now`, as
    /// `Core::drive` does (its pacer asks again a microsecond after each
    /// packet it releases, and a burst leaves in one pass); bounded too.
    pub fn timeout(&mut self, now: Instant) {
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
pub fn flush(now: Instant, a: &mut Side, b: &mut Side) {
    for d in std::mem::take(&mut a.out) {
        b.receive(now, a.addr, &d);
    }
}

pub fn build(now: Instant, bridge: bool) -> Rtc {
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(bridge)
        .clear_codecs()
        .enable_vp8(true)
        .enable_opus(true, false);
    if bridge {
        b = b.enable_bwe(Some(Bitrate::kbps(1000)));
    }
    b.build(now)
}

/// A bridge-like `Rtc` (ICE-lite, estimating) sending one video m-line to
/// a participant-like one, connected in memory.
pub fn connect(t0: Instant) -> (Side, Side, Mid, Instant) {
    let (bridge, part, mids, now) = connect_media(t0, &[MediaKind::Video]);
    (bridge, part, mids[0], now)
}

/// As [`connect`], with one receive-only m-line of each kind in `kinds`.
pub fn connect_media(t0: Instant, kinds: &[MediaKind]) -> (Side, Side, Vec<Mid>, Instant) {
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
    let mids: Vec<Mid> = kinds
        .iter()
        .map(|k| api.add_media(*k, Direction::RecvOnly, None, None, None))
        .collect();
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
    (bridge, part, mids, now)
}
