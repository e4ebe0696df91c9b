//! Deterministic simulation of a Tern bridge and its participants.
//!
//! Everything runs in one thread on virtual time from a seed: real str0m
//! participants ([`Peer`]) and real bridge cores ([`Core`]) exchange real
//! (SRTP-protected) datagrams over simulated links with latency, jitter,
//! random and bursty loss, bandwidth limits with a queue, reordering,
//! duplication and partitions. Signalling rides the same links but reliably,
//! like a TCP connection: delayed through a partition, never lost.
//!
//! The same seed gives the same run: every random choice (str0m's ids via
//! `fastrand`, link decisions, ICE passwords) comes from the seed, and the
//! event trace is hashed so a test can compare two runs. See
//! `tests/README.md` for how to write a scenario.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use tern_sfu::peer::{Peer, PeerConfig, PeerOutput, PeerState};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tern_sfu::{CodecName, Core, CoreConfig, EndpointId, JoinRequest, Output};

pub use tern_sfu::synth::LayerSpec;

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }
}

/// Gilbert–Elliott bursty loss: a good and a bad state with their own loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Per packet probability of entering the bad state.
    pub p_enter: f64,
    /// Per packet probability of leaving it.
    pub p_exit: f64,
    /// Loss while bad.
    pub loss_bad: f64,
}

/// One direction of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub latency: Duration,
    /// Uniform extra delay in [0, jitter). Jitter alone can reorder.
    pub jitter: Duration,
    pub loss: f64,
    pub burst: Option<Burst>,
    /// Bits per second; `None` = unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Bytes queued behind the bandwidth limit before tail drop.
    pub queue_bytes: usize,
    /// Probability a packet is held back by an extra `latency` (reordering).
    pub reorder: f64,
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
            reorder: 0.0,
            duplicate: 0.0,
        }
    }
}

impl LinkConfig {
    pub fn latency(ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(ms),
            ..Self::default()
        }
    }

    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
}

/// A loss rate applied to a link during a window of time.
#[derive(Debug, Clone, Copy)]
struct LossWindow {
    from: Instant,
    to: Instant,
    loss: f64,
}

#[derive(Debug)]
struct Link {
    cfg: LinkConfig,
    rng: Rng,
    /// RTCP draws from its own stream: str0m packs feedback into a varying
    /// number of compound packets between runs (see `canonical_order`), which
    /// must not shift the draws media packets get.
    rtcp_rng: Rng,
    bad: bool,
    /// When the bandwidth limiter is free again.
    busy_until: Instant,
    /// Partitioned from..to: datagrams dropped, signalling held.
    partitions: Vec<(Instant, Instant)>,
    windows: Vec<LossWindow>,
    sent: u64,
    lost: u64,
}

/// Fate of one datagram on a link.
enum Fate {
    Lost,
    Deliver(Vec<Duration>),
}

impl Link {
    fn new(cfg: LinkConfig, seed: u64, now: Instant) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            rtcp_rng: Rng::new(seed ^ 0x5254_4350),
            bad: false,
            busy_until: now,
            partitions: Vec::new(),
            windows: Vec::new(),
            sent: 0,
            lost: 0,
        }
    }

    fn partitioned_at(&self, t: Instant) -> Option<Instant> {
        self.partitions
            .iter()
            .find(|(a, b)| *a <= t && t < *b)
            .map(|(_, b)| *b)
    }

    /// Decide what happens to a datagram of `size` bytes sent at `now`.
    fn send(&mut self, now: Instant, size: usize, rtcp: bool) -> Fate {
        self.sent += 1;
        // Draw every random number for every packet, whatever the outcome, so
        // one setting changing does not shift the others' random streams.
        let rng = if rtcp {
            &mut self.rtcp_rng
        } else {
            &mut self.rng
        };
        let r_loss = rng.f64();
        let r_burst = rng.f64();
        let r_jitter = rng.f64();
        let r_reorder = rng.f64();
        let r_dup = rng.f64();
        if self.partitioned_at(now).is_some() {
            self.lost += 1;
            return Fate::Lost;
        }
        let mut loss = self.cfg.loss;
        for w in &self.windows {
            if w.from <= now && now < w.to {
                loss = loss.max(w.loss);
            }
        }
        if let (Some(b), false) = (self.cfg.burst, rtcp) {
            if self.bad {
                if r_burst < b.p_exit {
                    self.bad = false;
                }
            } else if r_burst < b.p_enter {
                self.bad = true;
            }
            if self.bad {
                loss = loss.max(b.loss_bad);
            }
        }
        if r_loss < loss {
            self.lost += 1;
            return Fate::Lost;
        }
        let mut queue_delay = Duration::ZERO;
        if let Some(bps) = self.cfg.bandwidth_bps {
            let start = self.busy_until.max(now);
            let backlog = start.saturating_duration_since(now);
            let backlog_bytes = backlog.as_secs_f64() * bps as f64 / 8.0;
            if backlog_bytes > self.cfg.queue_bytes as f64 {
                self.lost += 1;
                return Fate::Lost;
            }
            let tx = Duration::from_secs_f64(size as f64 * 8.0 / bps as f64);
            self.busy_until = start + tx;
            queue_delay = self.busy_until - now;
        }
        let jitter = self.cfg.jitter.mul_f64(r_jitter);
        let mut delay = self.cfg.latency + jitter + queue_delay;
        if r_reorder < self.cfg.reorder {
            delay += self.cfg.latency;
        }
        let mut out = vec![delay];
        if r_dup < self.cfg.duplicate {
            out.push(delay + Duration::from_micros(100));
        }
        Fate::Deliver(out)
    }
}

/// A participant in the simulation.
pub struct SimPeer {
    pub name: String,
    pub peer: Peer,
    pub addr: SocketAddr,
    pub endpoint: EndpointId,
    pub started: Instant,
    up: usize,
    down: usize,
    joined: bool,
    left: bool,
}

enum Event {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    ToBridge {
        peer: usize,
        msg: ClientMessage,
    },
    ToPeer {
        peer: usize,
        msg: ServerMessage,
    },
}

/// A scheduled event; ties in time keep insertion order.
struct Scheduled {
    at: Instant,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The event trace: hashed as it grows, optionally kept for debugging.
#[derive(Debug, Default)]
pub struct Trace {
    hasher: DefaultHasher,
    pub events: u64,
    pub keep: Option<Vec<String>>,
}

impl Trace {
    fn record(&mut self, t_us: u64, what: &str, a: u64, b: u64) {
        self.hasher.write_u64(t_us);
        self.hasher.write(what.as_bytes());
        self.hasher.write_u64(a);
        self.hasher.write_u64(b);
        self.events += 1;
        if let Some(k) = &mut self.keep {
            k.push(format!("{t_us} {what} {a} {b}"));
        }
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }
}

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub room: String,
    pub bridge_config: fn(CoreConfig) -> CoreConfig,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            room: "sim".into(),
            bridge_config: |c| c,
        }
    }
}

const BRIDGE_ADDR: ([u8; 4], u16) = ([198, 18, 0, 1], 10_000);

/// One bridge and its participants.
pub struct Sim {
    pub seed: u64,
    epoch: Instant,
    now: Instant,
    rng: Rng,
    pub core: Core,
    bridge_addr: SocketAddr,
    pub peers: Vec<SimPeer>,
    by_addr: HashMap<SocketAddr, usize>,
    by_endpoint: HashMap<EndpointId, usize>,
    links: Vec<Link>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    room: String,
    pub trace: Trace,
    /// Work done: (peer timeouts, core timeouts, datagrams to peers, bridge batches).
    pub work: (u64, u64, u64, u64),
}

/// A DTLS certificate shared by every simulation in the process: generating
/// one costs milliseconds, and a fixed one keeps runs comparable.
fn shared_cert() -> DtlsCert {
    use std::sync::OnceLock;
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    })
    .clone()
    .expect("the crypto provider generates certificates")
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        // str0m draws SSRCs, mids and cnames from fastrand's thread-local
        // generator: seed it so those are the same on every run.
        fastrand::seed(cfg.seed);
        let epoch = Instant::now();
        let bridge_addr = SocketAddr::from(BRIDGE_ADDR);
        let core_cfg = (cfg.bridge_config)(CoreConfig {
            shard: 0,
            local_addr: bridge_addr,
            candidate_addr: bridge_addr,
            dtls_cert: shared_cert(),
            codecs: vec![CodecName::Opus, CodecName::Vp8],
            max_participants_per_conference: 200,
            default_max_height: 720,
            rtx_cache_packets: 1024,
        });
        Self {
            seed: cfg.seed,
            epoch,
            now: epoch,
            rng: Rng::new(cfg.seed),
            core: Core::new(core_cfg, epoch),
            bridge_addr,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            by_endpoint: HashMap::new(),
            links: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            room: cfg.room,
            trace: Trace::default(),
            work: (0, 0, 0, 0),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    pub fn at(&self, since_start: Duration) -> Instant {
        self.epoch + since_start
    }

    /// Add a participant with its own uplink and downlink; it joins now.
    pub fn add_peer(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut PeerConfig),
        up: LinkConfig,
        down: LinkConfig,
    ) -> usize {
        let i = self.peers.len();
        let addr = SocketAddr::from(([198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8], 5000));
        let mut cfg = PeerConfig::new(addr);
        cfg.seed = self.rng.next_u64();
        f(&mut cfg);
        let peer = Peer::new(cfg, self.now);
        let up_i = self.links.len();
        self.links
            .push(Link::new(up, self.rng.next_u64(), self.now));
        self.links
            .push(Link::new(down, self.rng.next_u64(), self.now));
        let endpoint = EndpointId(1 + i as u64);
        self.peers.push(SimPeer {
            name: name.to_string(),
            peer,
            addr,
            endpoint,
            started: self.now,
            up: up_i,
            down: up_i + 1,
            joined: false,
            left: false,
        });
        self.by_addr.insert(addr, i);
        self.by_endpoint.insert(endpoint, i);
        let join = Peer::join("sim");
        self.signal_to_bridge(i, join);
        i
    }

    pub fn peer(&self, name: &str) -> &SimPeer {
        self.peers
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no peer {name}"))
    }

    pub fn peer_index(&self, name: &str) -> usize {
        self.peers
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no peer {name}"))
    }

    pub fn state(&self, name: &str) -> &PeerState {
        self.peer(name).peer.state()
    }

    /// Change a peer's uplink (peer → bridge) from now on.
    pub fn set_uplink(&mut self, peer: usize, cfg: LinkConfig) {
        let l = self.peers[peer].up;
        self.links[l].cfg = cfg;
    }

    pub fn set_downlink(&mut self, peer: usize, cfg: LinkConfig) {
        let l = self.peers[peer].down;
        self.links[l].cfg = cfg;
    }

    /// Lose `loss` of the peer's uplink between two points in time.
    pub fn loss_window(&mut self, peer: usize, from: Duration, to: Duration, loss: f64) {
        let l = self.peers[peer].up;
        let w = LossWindow {
            from: self.epoch + from,
            to: self.epoch + to,
            loss,
        };
        self.links[l].windows.push(w);
    }

    /// Cut a peer off from the bridge (both directions) between two times.
    pub fn partition(&mut self, peer: usize, from: Duration, to: Duration) {
        let (a, b) = (self.epoch + from, self.epoch + to);
        let (up, down) = (self.peers[peer].up, self.peers[peer].down);
        self.links[up].partitions.push((a, b));
        self.links[down].partitions.push((a, b));
    }

    pub fn set_max_height(&mut self, peer: usize, source: Option<&str>, h: u32) {
        let now = self.now;
        self.peers[peer].peer.set_max_height(source, h);
        self.flush_peer(peer, now);
    }

    pub fn leave(&mut self, peer: usize) {
        let now = self.now;
        self.peers[peer].peer.leave();
        self.peers[peer].left = true;
        self.flush_peer(peer, now);
    }

    /// Datagrams sent and lost on a peer's (uplink, downlink).
    pub fn link_counts(&self, peer: usize) -> ((u64, u64), (u64, u64)) {
        let p = &self.peers[peer];
        let (u, d) = (&self.links[p.up], &self.links[p.down]);
        ((u.sent, u.lost), (d.sent, d.lost))
    }

    fn push(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn t_us(&self) -> u64 {
        (self.now - self.epoch).as_micros() as u64
    }

    /// Signalling is reliable (TCP-like): held through partitions, never lost.
    fn reliable_delay(&self, link: usize) -> Instant {
        let l = &self.links[link];
        let at = self.now + l.cfg.latency;
        l.partitioned_at(self.now)
            .map_or(at, |healed| healed + l.cfg.latency)
    }

    fn signal_to_bridge(&mut self, peer: usize, msg: ClientMessage) {
        let at = self.reliable_delay(self.peers[peer].up);
        self.push(at, Event::ToBridge { peer, msg });
    }

    fn send_datagram(&mut self, link: usize, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        // DTLS handshake records differ by a byte or two between runs (ECDSA
        // signatures) and RTCP compounds by how str0m packed them: charge both
        // a fixed size so timing and the trace stay seeded.
        let first = data.first().copied().unwrap_or(0);
        let rtcp =
            (128..192).contains(&first) && data.get(1).is_some_and(|pt| (192..=223).contains(pt));
        let charged = if (20..=63).contains(&first) {
            1200
        } else if rtcp {
            100
        } else {
            data.len()
        };
        let now = self.now;
        let t = self.t_us();
        match self.links[link].send(now, charged, rtcp) {
            Fate::Lost => self.trace.record(t, "lost", link as u64, charged as u64),
            Fate::Deliver(delays) => {
                self.trace.record(t, "sent", link as u64, charged as u64);
                let (first, dup) = (delays[0], delays.get(1).copied());
                if let Some(d) = dup {
                    self.push(
                        now + d,
                        Event::Datagram {
                            from,
                            to,
                            data: data.clone(),
                        },
                    );
                }
                self.push(now + first, Event::Datagram { from, to, data });
            }
        }
    }

    fn flush_peer(&mut self, i: usize, _now: Instant) {
        let mut transmits = Vec::new();
        while let Some(o) = self.peers[i].peer.poll_output() {
            match o {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => transmits.push((destination, contents)),
                PeerOutput::Signal(m) => {
                    let t = self.t_us();
                    self.trace.record(t, signal_name(&m), i as u64, 0);
                    self.signal_to_bridge(i, m);
                }
            }
        }
        canonical_order(&mut transmits);
        let (up, addr) = (self.peers[i].up, self.peers[i].addr);
        for (destination, contents) in transmits {
            self.send_datagram(up, addr, destination, contents);
        }
    }

    fn flush_core(&mut self) {
        let mut transmits = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit {
                    destination,
                    contents,
                } => transmits.push((destination, contents)),
                Output::Signal { endpoint, message } => {
                    if let Some(&i) = self.by_endpoint.get(&endpoint) {
                        let t = self.t_us();
                        self.trace.record(t, server_name(&message), i as u64, 1);
                        let at = self.reliable_delay(self.peers[i].down);
                        self.push(
                            at,
                            Event::ToPeer {
                                peer: i,
                                msg: message,
                            },
                        );
                    }
                }
                Output::Closed { endpoint } => {
                    let t = self.t_us();
                    self.trace.record(t, "closed", endpoint.0, 0);
                }
                Output::Bind { .. } | Output::Unbind { .. } => {}
            }
        }
        canonical_order(&mut transmits);
        for (destination, contents) in transmits {
            if let Some(&i) = self.by_addr.get(&destination) {
                let down = self.peers[i].down;
                let from = self.bridge_addr;
                self.send_datagram(down, from, destination, contents);
            }
        }
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Datagram { from, to, data } => {
                if to == self.bridge_addr {
                    self.core.handle_datagram(now, from, to, &data);
                    self.flush_core();
                } else if let Some(&i) = self.by_addr.get(&to) {
                    if self.peers[i].left {
                        return;
                    }
                    self.work.2 += 1;
                    self.peers[i].peer.handle_datagram(now, from, &data);
                    self.flush_peer(i, now);
                }
            }
            Event::ToBridge { peer, msg } => {
                let p = &mut self.peers[peer];
                match msg {
                    ClientMessage::Join { .. } => {
                        if p.joined {
                            return;
                        }
                        p.joined = true;
                        let req = JoinRequest {
                            id: p.endpoint,
                            room: self.room.clone(),
                            participant: p.name.clone(),
                            name: p.name.clone(),
                            ice_password: format!("{:032x}", self.rng.next_u64()),
                        };
                        if let Err(e) = self.core.handle_join(now, req) {
                            panic!("join of {} refused: {e}", self.peers[peer].name);
                        }
                    }
                    ClientMessage::Leave => {
                        self.core.handle_leave(now, p.endpoint);
                    }
                    other => {
                        let ep = p.endpoint;
                        self.core.handle_message(now, ep, other);
                    }
                }
                self.flush_core();
            }
            Event::ToPeer { peer, msg } => {
                if self.peers[peer].left {
                    return;
                }
                self.peers[peer].peer.handle_signal(now, msg);
                self.flush_peer(peer, now);
            }
        }
    }

    /// Run until `since_start` of virtual time has passed.
    pub fn run_until(&mut self, since_start: Duration) {
        let end = self.epoch + since_start;
        loop {
            let mut next = self.core.poll_timeout();
            let mut due_peer = None;
            for (i, p) in self.peers.iter().enumerate() {
                if p.left {
                    continue;
                }
                let t = p.peer.poll_timeout();
                if t < next {
                    next = t;
                    due_peer = Some(i);
                }
            }
            let queued = self.queue.peek().map(|Reverse(s)| s.at);
            if let Some(q) = queued
                && q <= next
            {
                if q > end {
                    break;
                }
                let Some(Reverse(s)) = self.queue.pop() else {
                    break;
                };
                self.now = self.now.max(s.at);
                match s.event {
                    // Datagrams reaching the bridge at the same instant are
                    // one socket read for it, as in the real shell.
                    Event::Datagram { from, to, data } if to == self.bridge_addr => {
                        let mut batch = vec![(from, data)];
                        while let Some(Reverse(n)) = self.queue.peek() {
                            let same = n.at == s.at
                                && matches!(&n.event, Event::Datagram { to, .. } if *to == self.bridge_addr);
                            if !same {
                                break;
                            }
                            if let Some(Reverse(Scheduled {
                                event: Event::Datagram { from, data, .. },
                                ..
                            })) = self.queue.pop()
                            {
                                batch.push((from, data));
                            }
                        }
                        self.work.3 += 1;
                        let now = self.now;
                        let to = self.bridge_addr;
                        self.core.handle_datagrams(
                            now,
                            to,
                            batch.iter().map(|(f, d)| (*f, &d[..])),
                        );
                        self.flush_core();
                    }
                    event => self.deliver(event),
                }
                continue;
            }
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            match due_peer {
                Some(i) => {
                    self.work.0 += 1;
                    self.peers[i].peer.handle_timeout(now);
                    self.flush_peer(i, now);
                }
                None => {
                    self.work.1 += 1;
                    self.core.handle_timeout(now);
                    self.flush_core();
                }
            }
        }
        self.now = end;
    }
}

/// str0m emits the packets of one poll in an order that depends on its
/// internal hash maps (randomly keyed per process). Everything in one flush
/// leaves at the same instant, so put it in an order that depends only on
/// what is sent: destination, then the clear-text RTP/RTCP header (SSRC,
/// sequence number) — SRTP encrypts payloads, not headers. Other datagrams
/// (STUN, DTLS) keep their relative order.
fn canonical_order(t: &mut [(SocketAddr, Vec<u8>)]) {
    fn key(d: &[u8]) -> (u8, u32, u32) {
        match d {
            [b0, b1, rest @ ..] if (128..192).contains(b0) && rest.len() >= 10 => {
                if (192..=223).contains(b1) {
                    // RTCP: sender SSRC at bytes 4..8.
                    let ssrc = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
                    (2, ssrc, u32::from(*b1))
                } else {
                    let seq = u16::from_be_bytes([rest[0], rest[1]]);
                    let ssrc = u32::from_be_bytes([rest[6], rest[7], rest[8], rest[9]]);
                    (1, ssrc, u32::from(seq))
                }
            }
            _ => (0, 0, 0),
        }
    }
    t.sort_by_key(|(dest, d)| (*dest, key(d)));
}

fn signal_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Join { .. } => "c:join",
        ClientMessage::Offer { .. } => "c:offer",
        ClientMessage::SourceState { .. } => "c:source_state",
        ClientMessage::Constraints { .. } => "c:constraints",
        ClientMessage::Leave => "c:leave",
    }
}

fn server_name(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Joined { .. } => "s:joined",
        ServerMessage::Answer { .. } => "s:answer",
        ServerMessage::ParticipantJoined { .. } => "s:participant_joined",
        ServerMessage::ParticipantLeft { .. } => "s:participant_left",
        ServerMessage::Sources { .. } => "s:sources",
        ServerMessage::Slots { .. } => "s:slots",
        ServerMessage::Error { .. } => "s:error",
        ServerMessage::Move { .. } => "s:move",
    }
}

/// Packet indices received, packets in the frame, completion time, send time.
type FrameRx = (Vec<u16>, u16, Instant, u64);

/// What one participant really got of one source, between two times.
#[derive(Debug, Clone, PartialEq)]
pub struct Reception {
    /// Frames (layer, number) completely received in the window.
    pub frames_complete: usize,
    /// Frames the publisher sent on the layers received, in the window.
    pub frames_expected: usize,
    /// Gaps over 500 ms between consecutive complete frames.
    pub freezes: usize,
    pub longest_gap: Duration,
    /// Layers seen, by index.
    pub layers: Vec<u8>,
    /// Publisher generation → last packet of the frame received (p50, max).
    pub delay_p50: Duration,
    pub delay_max: Duration,
}

impl Reception {
    pub fn frame_loss(&self) -> f64 {
        if self.frames_expected == 0 {
            return 1.0;
        }
        1.0 - self.frames_complete as f64 / self.frames_expected as f64
    }
}

impl Sim {
    /// Measure what `receiver` got of `publisher`'s camera in [from, to).
    pub fn reception(
        &self,
        receiver: &str,
        publisher: &str,
        from: Duration,
        to: Duration,
    ) -> Reception {
        let source = format!("{publisher}/camera");
        let pub_start = self.peer(publisher).started;
        let st = self.state(receiver);
        let (a, b) = (self.epoch + from, self.epoch + to);
        // (layer, frame) → (distinct packet indices, count, completion time, sent)
        let mut frames: BTreeMap<(u8, u32), FrameRx> = BTreeMap::new();
        for r in st.received_for(&source) {
            let (Some(layer), Some(frame), Some(sent)) = (r.layer, r.frame, r.sent_us) else {
                continue;
            };
            let sent_at = pub_start + Duration::from_micros(sent);
            if sent_at < a || sent_at >= b {
                continue;
            }
            let e = frames
                .entry((layer, frame))
                .or_insert((Vec::new(), r.count, r.at, sent));
            if !e.0.contains(&r.index) {
                e.0.push(r.index);
                e.2 = e.2.max(r.at);
            }
        }
        let mut complete: Vec<(Instant, Duration)> = Vec::new();
        let mut per_layer: BTreeMap<u8, (u32, u32)> = BTreeMap::new();
        for (&(layer, frame), (idx, count, done, sent)) in &frames {
            let e = per_layer.entry(layer).or_insert((frame, frame));
            e.0 = e.0.min(frame);
            e.1 = e.1.max(frame);
            if idx.len() >= usize::from(*count) {
                let sent_at = pub_start + Duration::from_micros(*sent);
                complete.push((*done, done.saturating_duration_since(sent_at)));
            }
        }
        // Frames of a layer in the window are numbered consecutively.
        let frames_expected = per_layer
            .values()
            .map(|(lo, hi)| (hi - lo + 1) as usize)
            .sum();
        complete.sort();
        let mut freezes = 0;
        let mut longest = Duration::ZERO;
        let mut prev = a;
        for (t, _) in &complete {
            let gap = t.saturating_duration_since(prev);
            if gap > Duration::from_millis(500) && prev != a {
                freezes += 1;
            }
            longest = longest.max(gap);
            prev = *t;
        }
        let mut delays: Vec<Duration> = complete.iter().map(|(_, d)| *d).collect();
        delays.sort();
        Reception {
            frames_complete: complete.len(),
            frames_expected,
            freezes,
            longest_gap: longest,
            layers: per_layer.keys().copied().collect(),
            delay_p50: delays.get(delays.len() / 2).copied().unwrap_or_default(),
            delay_max: delays.last().copied().unwrap_or_default(),
        }
    }

    /// Times at which `receiver` completed frames of `publisher`'s camera.
    pub fn frame_times(&self, receiver: &str, publisher: &str) -> Vec<Duration> {
        let source = format!("{publisher}/camera");
        let mut done: BTreeMap<(u8, u32), (usize, u16, Instant)> = BTreeMap::new();
        for r in self.state(receiver).received_for(&source) {
            if let (Some(l), Some(f)) = (r.layer, r.frame) {
                let e = done.entry((l, f)).or_insert((0, r.count, r.at));
                e.0 += 1;
                e.2 = e.2.max(r.at);
            }
        }
        let mut t: Vec<Duration> = done
            .values()
            .filter(|(n, c, _)| *n >= usize::from(*c))
            .map(|(_, _, at)| *at - self.epoch)
            .collect();
        t.sort();
        t
    }
}

/// Run `f` for a seed; on panic, say which seed failed so it can be replayed.
pub fn with_seed<T>(seed: u64, f: impl FnOnce(u64) -> T) -> T {
    struct Announce(u64);
    impl Drop for Announce {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "simulation failed with seed {} (replay: TERN_SIM_SEED={})",
                    self.0, self.0
                );
            }
        }
    }
    let _a = Announce(seed);
    f(seed)
}

/// The seed for a scenario: `TERN_SIM_SEED` if set, else the given default.
pub fn seed_or(default: u64) -> u64 {
    std::env::var("TERN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
