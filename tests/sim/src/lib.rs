//! Deterministic simulation of Tern bridges, their relay mesh and their
//! participants.
//!
//! Everything runs in one thread on virtual time from a seed: real str0m
//! participants ([`Peer`]) and real bridge cores ([`Core`]) exchange real
//! (SRTP-protected) datagrams over simulated links with latency, jitter,
//! random and bursty loss, bandwidth limits with a queue, reordering,
//! duplication and partitions. Signalling rides the same links but reliably,
//! like a TCP connection: delayed through a partition, never lost. Bridges
//! are joined by relay links: the real relay link state machine
//! (`tern_relay::link`: hello, keepalive, control framing) over a simulated
//! QUIC connection — control bytes reliable and in order, datagrams through
//! a lossy [`LinkConfig`] — that drops after silence and reconnects.
//!
//! A simulated focus can place participants instead ([`SimConfig::focus`]):
//! the real focus core (`tern_focus`) gets each bridge's registration and
//! reports over a control channel with latency, tells bridges their relay
//! peers, and sees a killed bridge's stream close; participants join through
//! it and, like the browser client, re-join through it with backoff when
//! their bridge goes away or tells them to move.
//!
//! The same seed gives the same run: every random choice (str0m's ids via
//! `fastrand`, link decisions, ICE passwords) comes from the seed, and the
//! event trace is hashed so a test can compare two runs. See
//! `tests/README.md` for how to write a scenario.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use tern_focus::{Focus, FocusConfig, FocusEvent, Registration, Report};
use tern_peer::{Peer, PeerConfig, PeerOutput, PeerState};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tern_sfu::tern_relay::link::{Link as RelayLink, LinkConfig as RelayLinkConfig};
use tern_sfu::{CodecName, Core, CoreConfig, EndpointId, JoinRequest, Output};

pub use tern_peer::synth::LayerSpec;

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
    /// After a delay, and maybe a duplicate after another.
    Deliver(Duration, Option<Duration>),
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
        let dup = (r_dup < self.cfg.duplicate).then(|| delay + Duration::from_micros(100));
        Fate::Deliver(delay, dup)
    }
}

/// A participant in the simulation.
pub struct SimPeer {
    pub name: String,
    pub peer: Peer,
    pub addr: SocketAddr,
    pub endpoint: EndpointId,
    pub started: Instant,
    /// The bridge it is connected to (or last tried).
    pub bridge: usize,
    /// Region it asks the focus for.
    pub region: Option<String>,
    up: usize,
    down: usize,
    joined: bool,
    left: bool,
    /// Consecutive failed sessions: the re-join backoff index.
    failures: usize,
    /// A re-join is scheduled.
    rejoining: bool,
}

/// One bridge of the simulated cluster.
pub struct SimBridge {
    pub id: String,
    pub core: Core,
    pub addr: SocketAddr,
    pub region: String,
    /// False once killed: it reads nothing, sends nothing, reports nothing.
    pub alive: bool,
    /// Drain as set by the focus (reported back, as the real bridge does).
    draining: bool,
    next_report: Instant,
    /// Packet counters at the previous report, for rates.
    reported: (u64, u64, Instant),
}

/// The relay connection between two bridges (a < b), re-created after a drop.
struct RelayPair {
    a: usize,
    b: usize,
    /// Simulated network, a→b and b→a.
    net: [usize; 2],
    /// The live connection: generation and each side's link state machine.
    conn: Option<(u64, RelayLink, RelayLink)>,
    /// Which side has told its core the link is up.
    up: [bool; 2],
    next_attempt: Option<Instant>,
}

/// How long a dropped relay connection waits before redialling.
const RELAY_REDIAL: Duration = Duration::from_millis(500);

/// The browser client's re-join backoff (`src/web/tern.js`): the delay
/// before each retry after a lost session or a failed attempt.
const REJOIN_BACKOFF_MS: [u64; 5] = [250, 500, 1000, 2000, 3000];

/// How often a bridge reports to the focus (as `src/bridge/focus_link.rs`).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// What a bridge's control stream carries to the focus.
#[derive(Debug)]
enum ToFocus {
    Register(Registration),
    Report(Report),
    /// The stream closed (the bridge process died).
    Closed,
}

/// Big messages are boxed: every queued datagram moves an `Event` through
/// the heap, so its size is paid per packet.
enum Event {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Signalling of one session (`session` = the session's endpoint id).
    /// To the bridge: travels on that session's connection to its bridge,
    /// like bytes already in a TCP stream. To the peer: dropped if the
    /// session ended meanwhile (the client closed that socket).
    ToBridge {
        peer: usize,
        bridge: usize,
        session: EndpointId,
        msg: ClientMessage,
    },
    ToPeer {
        peer: usize,
        session: EndpointId,
        msg: Box<ServerMessage>,
    },
    /// The peer's signalling socket closed: its bridge died or refused the
    /// connection.
    SocketClosed {
        peer: usize,
        session: EndpointId,
    },
    /// The peer's re-join timer fired.
    Rejoin {
        peer: usize,
    },
    ToFocus {
        bridge: usize,
        msg: Box<ToFocus>,
    },
    /// A command from the focus to a bridge.
    FromFocus {
        bridge: usize,
        cmd: Box<FocusEvent>,
    },
    /// Control stream bytes of relay connection `generation`, from side `from` (0 = a).
    RelayStream {
        pair: usize,
        generation: u64,
        from: usize,
        bytes: Vec<u8>,
    },
    RelayDatagram {
        pair: usize,
        generation: u64,
        from: usize,
        data: Arc<[u8]>,
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
    /// Bridges in the cluster, joined in a full relay mesh that shares `room`.
    pub bridges: usize,
    /// Each direction of every relay connection.
    pub relay_link: LinkConfig,
    /// Place participants with a focus (else everyone joins the bridge the
    /// scenario names, and every bridge is told the others share the room).
    pub focus: Option<FocusConfig>,
    /// Region of bridge `b` (`"local"` beyond the list).
    pub regions: Vec<String>,
    /// One-way delay of the bridge ↔ focus control streams.
    pub focus_latency: Duration,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            room: "sim".into(),
            bridge_config: |c| c,
            bridges: 1,
            relay_link: LinkConfig::latency(5),
            focus: None,
            regions: Vec::new(),
            focus_latency: Duration::from_millis(2),
        }
    }

    /// A cluster of `bridges` in `regions` placed by a focus with `focus`.
    pub fn with_focus(mut self, bridges: usize, regions: &[&str], focus: FocusConfig) -> Self {
        self.bridges = bridges;
        self.regions = regions.iter().map(|r| r.to_string()).collect();
        self.focus = Some(focus);
        self
    }
}

/// Bridges, their participants and the relay mesh between them.
pub struct Sim {
    pub seed: u64,
    epoch: Instant,
    now: Instant,
    rng: Rng,
    pub bridges: Vec<SimBridge>,
    bridge_by_addr: HashMap<SocketAddr, usize>,
    relays: Vec<RelayPair>,
    relay_generation: u64,
    pub peers: Vec<SimPeer>,
    by_addr: HashMap<SocketAddr, usize>,
    by_endpoint: HashMap<EndpointId, usize>,
    links: Vec<Link>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Peer deadlines, so that finding the next one does not ask all
    /// peers on every event. An entry is stale unless it matches
    /// `peer_timer[i]` (what the peer said when last touched).
    peer_timers: BinaryHeap<Reverse<(Instant, usize)>>,
    peer_timer: Vec<Option<Instant>>,
    /// Kept between flushes for its allocation.
    transmits: Vec<Transmit>,
    room: String,
    pub trace: Trace,
    /// Work done: (peer timeouts, core timeouts, datagrams to peers, bridge batches).
    pub work: (u64, u64, u64, u64),
    focus: Option<Focus>,
    focus_latency: Duration,
    /// Everything the focus emitted, with when (since the start).
    pub focus_log: Vec<(Duration, FocusEvent)>,
    /// Endpoint ids are per session: a re-joined peer gets a new one.
    next_endpoint: u64,
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
        let mut bridges = Vec::new();
        let mut bridge_by_addr = HashMap::new();
        for b in 0..cfg.bridges.max(1) {
            let addr = SocketAddr::from(([198, 18, 0, 1 + b as u8], 10_000));
            let core_cfg = (cfg.bridge_config)(CoreConfig {
                shard: 0,
                local_addr: addr,
                candidate_addr: addr,
                dtls_cert: shared_cert(),
                codecs: vec![CodecName::Opus, CodecName::Vp8],
                max_participants_per_conference: 200,
                default_max_height: 720,
                rtx_cache_packets: 512,
                rtx_cache_age: Duration::from_secs(1),
            });
            bridge_by_addr.insert(addr, b);
            bridges.push(SimBridge {
                id: format!("b{b}"),
                core: Core::new(core_cfg, epoch),
                addr,
                region: cfg
                    .regions
                    .get(b)
                    .cloned()
                    .unwrap_or_else(|| "local".into()),
                alive: true,
                draining: false,
                next_report: epoch + REPORT_INTERVAL,
                reported: (0, 0, epoch),
            });
        }
        let mut sim = Self {
            seed: cfg.seed,
            epoch,
            now: epoch,
            rng: Rng::new(cfg.seed),
            bridges,
            bridge_by_addr,
            relays: Vec::new(),
            relay_generation: 0,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            by_endpoint: HashMap::new(),
            links: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            peer_timers: BinaryHeap::new(),
            peer_timer: Vec::new(),
            transmits: Vec::new(),
            room: cfg.room,
            trace: Trace::default(),
            work: (0, 0, 0, 0),
            focus: cfg.focus.clone().map(Focus::new),
            focus_latency: cfg.focus_latency,
            focus_log: Vec::new(),
            next_endpoint: 0,
        };
        let n = sim.bridges.len();
        for a in 0..n {
            for b in a + 1..n {
                let net_ab = sim.links.len();
                let seed_ab = sim.rng.next_u64();
                let seed_ba = sim.rng.next_u64();
                sim.links
                    .push(Link::new(cfg.relay_link.clone(), seed_ab, epoch));
                sim.links
                    .push(Link::new(cfg.relay_link.clone(), seed_ba, epoch));
                sim.relays.push(RelayPair {
                    a,
                    b,
                    net: [net_ab, net_ab + 1],
                    conn: None,
                    up: [false, false],
                    next_attempt: Some(epoch),
                });
            }
        }
        if sim.focus.is_some() {
            // Bridges register as they start; the focus tells them their
            // relay peers as participants arrive.
            for b in 0..n {
                let reg = Registration {
                    id: sim.bridges[b].id.clone(),
                    region: sim.bridges[b].region.clone(),
                    version: "sim".into(),
                    api_version: 1,
                    signal_url: format!("sim://{}", sim.bridges[b].id),
                    relay_addr: sim.bridges[b].id.clone(),
                    max_packet_rate: 50_000,
                    conferences: BTreeMap::new(),
                };
                sim.push(
                    epoch + sim.focus_latency,
                    Event::ToFocus {
                        bridge: b,
                        msg: Box::new(ToFocus::Register(reg)),
                    },
                );
            }
            return sim;
        }
        // No focus: what it would say, every bridge hosts the room.
        for b in 0..n {
            let others: Vec<String> = (0..n)
                .filter(|&o| o != b)
                .map(|o| format!("b{o}"))
                .collect();
            if !others.is_empty() {
                let room = sim.room.clone();
                sim.bridges[b]
                    .core
                    .handle_relay_peers(epoch, &room, &others);
            }
        }
        sim
    }

    /// The first (or only) bridge's core.
    pub fn core(&self) -> &Core {
        &self.bridges[0].core
    }

    /// The first bridge's core, to give it what its shell would (such as
    /// how far behind it is) or a request the harness does not make.
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.bridges[0].core
    }

    /// The room every participant joins.
    pub fn room(&self) -> &str {
        &self.room
    }

    fn relay_pair(&self, a: usize, b: usize) -> usize {
        let (a, b) = (a.min(b), a.max(b));
        self.relays
            .iter()
            .position(|r| r.a == a && r.b == b)
            .unwrap_or_else(|| panic!("no relay between b{a} and b{b}"))
    }

    /// Change both directions of the relay connection between two bridges.
    pub fn set_relay_link(&mut self, a: usize, b: usize, cfg: LinkConfig) {
        let p = self.relay_pair(a, b);
        for n in self.relays[p].net {
            self.links[n].cfg = cfg.clone();
        }
    }

    /// Cut the relay connection between two bridges between two times.
    pub fn relay_partition(&mut self, a: usize, b: usize, from: Duration, to: Duration) {
        let p = self.relay_pair(a, b);
        let w = (self.epoch + from, self.epoch + to);
        for n in self.relays[p].net {
            self.links[n].partitions.push(w);
        }
    }

    /// Datagrams (sent, lost) on the relay network from bridge `a` to `b`.
    pub fn relay_counts(&self, a: usize, b: usize) -> (u64, u64) {
        let p = self.relay_pair(a, b);
        let r = &self.relays[p];
        let l = &self.links[if a < b { r.net[0] } else { r.net[1] }];
        (l.sent, l.lost)
    }

    /// Whether both ends of the relay between two bridges are up.
    pub fn relay_up(&self, a: usize, b: usize) -> bool {
        let p = self.relay_pair(a, b);
        self.relays[p].up == [true, true]
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

    /// Add a participant with its own uplink and downlink; it joins the
    /// first bridge now.
    pub fn add_peer(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut PeerConfig),
        up: LinkConfig,
        down: LinkConfig,
    ) -> usize {
        self.add_peer_on(0, name, f, up, down)
    }

    /// Add a participant connected to bridge `bridge`; it joins now.
    pub fn add_peer_on(
        &mut self,
        bridge: usize,
        name: &str,
        f: impl FnOnce(&mut PeerConfig),
        up: LinkConfig,
        down: LinkConfig,
    ) -> usize {
        self.add_peer_inner(Some(bridge), name, f, up, down)
    }

    fn add_peer_inner(
        &mut self,
        bridge: Option<usize>,
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
        self.peers.push(SimPeer {
            name: name.to_string(),
            peer,
            addr,
            endpoint: EndpointId(0),
            started: self.now,
            bridge: bridge.unwrap_or(0),
            region: None,
            up: up_i,
            down: up_i + 1,
            joined: false,
            left: false,
            failures: 0,
            rejoining: false,
        });
        self.by_addr.insert(addr, i);
        self.peer_timer.push(None);
        self.rearm_peer(i);
        if let Some(b) = bridge {
            self.connect(i, b);
        }
        i
    }

    /// Add a participant that joins through the focus, asking for `region`.
    pub fn add_peer_in(
        &mut self,
        region: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut PeerConfig),
        up: LinkConfig,
        down: LinkConfig,
    ) -> usize {
        let placement = self.allocate(name, region);
        let i = self.add_peer_inner(placement, name, f, up, down);
        self.peers[i].region = region.map(str::to_string);
        if placement.is_none() {
            // No bridge available (none registered yet): retry like the client.
            self.schedule_rejoin(i);
        }
        i
    }

    /// Ask the focus where `name` goes.
    fn allocate(&mut self, name: &str, region: Option<&str>) -> Option<usize> {
        let now = self.now;
        let room = self.room.clone();
        let focus = self
            .focus
            .as_mut()
            .expect("joining through a focus needs SimConfig::focus");
        let placed = focus.allocate(now, &room, name, region);
        self.drain_focus();
        let t = self.t_us();
        match placed {
            Ok(p) => {
                let b = self.bridges.iter().position(|b| b.id == p.bridge_id)?;
                self.trace
                    .record(t, "f:allocate", b as u64, u64::from(p.rule));
                Some(b)
            }
            Err(e) => {
                self.trace.record(t, "f:allocate_failed", 0, 0);
                if let Some(k) = &mut self.trace.keep {
                    k.push(format!("{t} allocation of {name} failed: {e}"));
                }
                None
            }
        }
    }

    /// Start a session of peer `i` on `bridge`: a new endpoint, then join.
    fn connect(&mut self, i: usize, bridge: usize) {
        self.next_endpoint += 1;
        let endpoint = EndpointId(self.next_endpoint);
        let p = &mut self.peers[i];
        self.by_endpoint.remove(&p.endpoint);
        p.endpoint = endpoint;
        p.bridge = bridge;
        p.joined = false;
        self.by_endpoint.insert(endpoint, i);
        let t = self.t_us();
        self.trace.record(t, "connect", i as u64, bridge as u64);
        let join = Peer::join("sim");
        self.signal_to_bridge(i, join);
    }

    /// Re-join after the backoff, as the browser client does.
    fn schedule_rejoin(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if p.left || p.rejoining {
            return;
        }
        p.rejoining = true;
        let delay = REJOIN_BACKOFF_MS[p.failures.min(REJOIN_BACKOFF_MS.len() - 1)];
        p.failures += 1;
        let at = self.now + Duration::from_millis(delay);
        self.push(at, Event::Rejoin { peer: i });
    }

    fn rejoin(&mut self, i: usize) {
        self.peers[i].rejoining = false;
        if self.peers[i].left {
            return;
        }
        let bridge = if self.focus.is_some() {
            let (name, region) = (self.peers[i].name.clone(), self.peers[i].region.clone());
            match self.allocate(&name, region.as_deref()) {
                Some(b) => b,
                None => return self.schedule_rejoin(i),
            }
        } else {
            self.peers[i].bridge
        };
        let now = self.now;
        self.peers[i].peer.reconnect(now);
        self.rearm_peer(i);
        self.connect(i, bridge);
    }

    /// Kill bridge `b` like `kill -9`: it stops at once; its participants'
    /// signalling sockets and its control stream to the focus close.
    pub fn kill_bridge(&mut self, b: usize) {
        if !self.bridges[b].alive {
            return;
        }
        self.bridges[b].alive = false;
        let t = self.t_us();
        self.trace.record(t, "bridge_killed", b as u64, 0);
        if self.focus.is_some() {
            let at = self.now + self.focus_latency;
            self.push(
                at,
                Event::ToFocus {
                    bridge: b,
                    msg: Box::new(ToFocus::Closed),
                },
            );
        }
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.bridge == b && !p.left && !p.rejoining {
                let at = self.reliable_delay(p.down);
                let session = p.endpoint;
                self.push(at, Event::SocketClosed { peer: i, session });
            }
        }
    }

    /// Ask the focus to drain bridge `b` (as `tern` operators do over gRPC).
    pub fn drain_bridge(&mut self, b: usize) {
        let now = self.now;
        let id = self.bridges[b].id.clone();
        if let Some(f) = self.focus.as_mut() {
            f.set_drain(now, &id, true)
                .unwrap_or_else(|e| panic!("drain of {id} refused: {e}"));
        }
        self.drain_focus();
    }

    /// Act on what the focus emitted: commands travel to their bridge.
    fn drain_focus(&mut self) {
        let Some(focus) = self.focus.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        while let Some(e) = focus.poll_event() {
            events.push(e);
        }
        let since = self.now - self.epoch;
        for e in events {
            let t = self.t_us();
            let target = match &e {
                FocusEvent::CommandMove { bridge, .. }
                | FocusEvent::CommandDrain { bridge, .. }
                | FocusEvent::CommandEndConference { bridge, .. }
                | FocusEvent::CommandRelayPeers { bridge, .. } => {
                    self.bridges.iter().position(|b| &b.id == bridge)
                }
                _ => None,
            };
            self.trace.record(
                t,
                focus_event_name(&e),
                target.map_or(u64::MAX, |b| b as u64),
                0,
            );
            self.focus_log.push((since, e.clone()));
            if let Some(b) = target
                && self.bridges[b].alive
            {
                let at = self.now + self.focus_latency;
                self.push(
                    at,
                    Event::FromFocus {
                        bridge: b,
                        cmd: Box::new(e),
                    },
                );
            }
        }
    }

    /// A bridge's periodic report to the focus.
    fn report(&mut self, b: usize) {
        let now = self.now;
        let br = &mut self.bridges[b];
        br.next_report += REPORT_INTERVAL;
        let st = br.core.stats();
        let (pin, pout, then) = br.reported;
        let secs = now.saturating_duration_since(then).as_secs_f64().max(0.001);
        let rate = |n: u64, before: u64| (n.saturating_sub(before) as f64 / secs) as u64;
        let report = Report {
            rtp_packets_in_per_s: rate(st.packets_in, pin),
            rtp_packets_out_per_s: rate(st.packets_out, pout),
            endpoints: br.core.endpoint_count() as u32,
            healthy: true,
            draining: br.draining,
            shutting_down: false,
            conferences: br
                .core
                .conferences()
                .into_iter()
                .map(|(room, ps)| (room, ps.into_iter().collect()))
                .collect(),
        };
        br.reported = (st.packets_in, st.packets_out, now);
        self.push(
            now + self.focus_latency,
            Event::ToFocus {
                bridge: b,
                msg: Box::new(ToFocus::Report(report)),
            },
        );
    }

    fn focus_in(&mut self, b: usize, msg: ToFocus) {
        let now = self.now;
        let id = self.bridges[b].id.clone();
        let Some(focus) = self.focus.as_mut() else {
            return;
        };
        match msg {
            ToFocus::Register(reg) => focus
                .handle_register(now, reg)
                .unwrap_or_else(|e| panic!("focus refused {id}: {e}")),
            ToFocus::Report(r) => {
                // A report racing the bridge's failure is refused, as over gRPC.
                let _ = focus.handle_report(now, &id, r);
            }
            ToFocus::Closed => focus.handle_disconnect(now, &id, "stream closed"),
        }
        self.drain_focus();
    }

    fn focus_command(&mut self, b: usize, cmd: FocusEvent) {
        if !self.bridges[b].alive {
            return;
        }
        let now = self.now;
        let core = &mut self.bridges[b].core;
        match cmd {
            FocusEvent::CommandRelayPeers {
                conference, peers, ..
            } => {
                let ids: Vec<String> = peers.into_iter().map(|(id, _)| id).collect();
                core.handle_relay_peers(now, &conference, &ids);
            }
            FocusEvent::CommandMove {
                conference,
                participants,
                reason,
                ..
            } => {
                core.move_participants(now, &conference, &participants, &reason);
            }
            FocusEvent::CommandEndConference { conference, .. } => {
                core.end_conference(now, &conference);
            }
            FocusEvent::CommandDrain { draining, .. } => self.bridges[b].draining = draining,
            _ => {}
        }
        self.flush_core(b);
    }

    /// Move peer `i` to `bridge` by hand, as a client does on `move`: it
    /// leaves its bridge and joins the other at once, keeping its media.
    pub fn move_peer(&mut self, i: usize, bridge: usize) {
        self.signal_to_bridge(i, ClientMessage::Leave);
        let now = self.now;
        self.peers[i].peer.reconnect(now);
        self.rearm_peer(i);
        self.connect(i, bridge);
    }

    /// Which bridge a peer is on now.
    pub fn bridge_of(&self, name: &str) -> usize {
        self.peer(name).bridge
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
        let session = self.peers[peer].endpoint;
        let bridge = self.peers[peer].bridge;
        self.push(
            at,
            Event::ToBridge {
                peer,
                bridge,
                session,
                msg,
            },
        );
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
            Fate::Deliver(first, dup) => {
                self.trace.record(t, "sent", link as u64, charged as u64);
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

    /// Note peer `i`'s deadline after it was touched.
    fn rearm_peer(&mut self, i: usize) {
        let p = &self.peers[i];
        let t = (!p.left).then(|| p.peer.poll_timeout());
        if t != self.peer_timer[i] {
            self.peer_timer[i] = t;
            if let Some(t) = t {
                self.peer_timers.push(Reverse((t, i)));
            }
        }
    }

    /// The earliest peer deadline (the lowest index among equal ones).
    fn next_peer_timeout(&mut self) -> Option<(Instant, usize)> {
        while let Some(&Reverse((t, i))) = self.peer_timers.peek() {
            if self.peer_timer[i] == Some(t) {
                return Some((t, i));
            }
            self.peer_timers.pop();
        }
        None
    }

    fn flush_peer(&mut self, i: usize, _now: Instant) {
        self.rearm_peer(i);
        let mut transmits = std::mem::take(&mut self.transmits);
        while let Some(o) = self.peers[i].peer.poll_output() {
            match o {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => transmits.push((destination, order_key(&contents), contents)),
                PeerOutput::Signal(m) => {
                    let t = self.t_us();
                    self.trace.record(t, signal_name(&m), i as u64, 0);
                    self.signal_to_bridge(i, m);
                }
            }
        }
        canonical_order(&mut transmits);
        let (up, addr) = (self.peers[i].up, self.peers[i].addr);
        for (destination, _, contents) in transmits.drain(..) {
            self.send_datagram(up, addr, destination, contents);
        }
        self.transmits = transmits;
    }

    fn flush_core(&mut self, b: usize) {
        let mut transmits = std::mem::take(&mut self.transmits);
        while let Some(o) = self.bridges[b].core.poll_output() {
            match o {
                Output::Transmit {
                    destination,
                    contents,
                } => transmits.push((destination, order_key(&contents), contents)),
                Output::Signal { endpoint, message } => {
                    if let Some(&i) = self.by_endpoint.get(&endpoint)
                        && self.peers[i].bridge == b
                    {
                        let t = self.t_us();
                        self.trace.record(t, server_name(&message), i as u64, 1);
                        let at = self.reliable_delay(self.peers[i].down);
                        self.push(
                            at,
                            Event::ToPeer {
                                peer: i,
                                session: endpoint,
                                msg: Box::new(message),
                            },
                        );
                    }
                }
                Output::Closed { endpoint } => {
                    let t = self.t_us();
                    self.trace.record(t, "closed", endpoint.0, 0);
                }
                Output::Bind { .. } | Output::Unbind { .. } => {}
                Output::RelayControl { peer, msg } => {
                    if let Some((p, side)) = self.relay_side(b, &peer)
                        && let Some((_, la, lb)) = &mut self.relays[p].conn
                    {
                        let link = if side == 0 { la } else { lb };
                        link.send(msg);
                        self.flush_relay_stream(p);
                    }
                }
                Output::RelayDatagram { peer, datagram } => {
                    if let Some((p, side)) = self.relay_side(b, &peer) {
                        self.send_relay_datagram(p, side, datagram);
                    }
                }
            }
        }
        canonical_order(&mut transmits);
        for (destination, _, contents) in transmits.drain(..) {
            if let Some(&i) = self.by_addr.get(&destination) {
                let down = self.peers[i].down;
                let from = self.bridges[b].addr;
                self.send_datagram(down, from, destination, contents);
            }
        }
        self.transmits = transmits;
    }

    /// The relay pair between bridge `b` and the bridge named `peer`, and
    /// which side of it `b` is.
    fn relay_side(&self, b: usize, peer: &str) -> Option<(usize, usize)> {
        let other = self.bridges.iter().position(|x| x.id == peer)?;
        let p = self
            .relays
            .iter()
            .position(|r| (r.a, r.b) == (b.min(other), b.max(other)))?;
        Some((p, usize::from(self.relays[p].b == b)))
    }

    /// Put what each side's link wants to write on the (reliable) wire.
    fn flush_relay_stream(&mut self, p: usize) {
        let Some((generation, la, lb)) = &mut self.relays[p].conn else {
            return;
        };
        let generation = *generation;
        let out = [la.poll_transmit(), lb.poll_transmit()];
        let (a, b) = (self.relays[p].a, self.relays[p].b);
        for (side, bytes) in out.into_iter().enumerate() {
            let Some(bytes) = bytes else { continue };
            // A dead bridge writes nothing.
            if !self.bridges[if side == 0 { a } else { b }].alive {
                continue;
            }
            let net = self.relays[p].net[side];
            let t = self.t_us();
            self.trace
                .record(t, "relay_stream", p as u64, bytes.len() as u64);
            let at = self.reliable_delay(net);
            self.push(
                at,
                Event::RelayStream {
                    pair: p,
                    generation,
                    from: side,
                    bytes,
                },
            );
        }
    }

    fn send_relay_datagram(&mut self, p: usize, from: usize, data: Arc<[u8]>) {
        let Some((generation, _, _)) = &self.relays[p].conn else {
            return;
        };
        let generation = *generation;
        let net = self.relays[p].net[from];
        let now = self.now;
        let t = self.t_us();
        match self.links[net].send(now, data.len(), false) {
            Fate::Lost => self
                .trace
                .record(t, "relay_lost", p as u64, data.len() as u64),
            Fate::Deliver(first, dup) => {
                self.trace
                    .record(t, "relay_sent", p as u64, data.len() as u64);
                for d in std::iter::once(first).chain(dup) {
                    self.push(
                        now + d,
                        Event::RelayDatagram {
                            pair: p,
                            generation,
                            from,
                            data: data.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Dial (or redial) a relay connection: fresh link state on both sides,
    /// as a new QUIC connection would have. A partitioned network makes
    /// the attempt fail; it is retried later.
    fn relay_dial(&mut self, p: usize) {
        let now = self.now;
        let r = &mut self.relays[p];
        r.next_attempt = None;
        let partitioned = self.links[r.net[0]].partitioned_at(now).is_some();
        let dead = !self.bridges[r.a].alive || !self.bridges[r.b].alive;
        if partitioned || dead {
            r.next_attempt = Some(now + RELAY_REDIAL);
            return;
        }
        self.relay_generation += 1;
        let (ida, idb) = (self.bridges[r.a].id.clone(), self.bridges[r.b].id.clone());
        let la = RelayLink::new(RelayLinkConfig::new(ida.clone()), idb.clone(), now);
        let lb = RelayLink::new(RelayLinkConfig::new(idb), ida, now);
        r.conn = Some((self.relay_generation, la, lb));
        r.up = [false, false];
        let t = self.t_us();
        self.trace
            .record(t, "relay_dial", p as u64, self.relay_generation);
        self.flush_relay_stream(p);
    }

    /// Tell cores about links that became ready or failed.
    fn relay_check(&mut self, p: usize) {
        let now = self.now;
        let r = &self.relays[p];
        let Some((_, la, lb)) = &r.conn else {
            return;
        };
        let failed = la.error().is_some() || lb.error().is_some();
        let ready = [la.is_ready(), lb.is_ready()];
        let bridges = [r.a, r.b];
        if failed {
            let t = self.t_us();
            self.trace.record(t, "relay_down", p as u64, 0);
            for side in 0..2 {
                if self.relays[p].up[side] && self.bridges[bridges[side]].alive {
                    let other = self.bridges[bridges[1 - side]].id.clone();
                    self.bridges[bridges[side]]
                        .core
                        .handle_relay_link_down(now, &other);
                    self.flush_core(bridges[side]);
                }
            }
            let r = &mut self.relays[p];
            r.conn = None;
            r.up = [false, false];
            r.next_attempt = Some(now + RELAY_REDIAL);
            return;
        }
        for side in 0..2 {
            if ready[side] && !self.relays[p].up[side] && self.bridges[bridges[side]].alive {
                self.relays[p].up[side] = true;
                let t = self.t_us();
                self.trace.record(t, "relay_up", p as u64, side as u64);
                let other = self.bridges[bridges[1 - side]].id.clone();
                self.bridges[bridges[side]]
                    .core
                    .handle_relay_link_up(now, &other);
                self.flush_core(bridges[side]);
            }
        }
    }

    /// Relay control bytes arrived at side `1 - from`.
    fn relay_stream_in(&mut self, p: usize, generation: u64, from: usize, bytes: &[u8]) {
        let now = self.now;
        let to = 1 - from;
        let bridge = if to == 0 {
            self.relays[p].a
        } else {
            self.relays[p].b
        };
        let peer_id = self.bridges[if to == 0 {
            self.relays[p].b
        } else {
            self.relays[p].a
        }]
        .id
        .clone();
        if !self.bridges[bridge].alive {
            return;
        }
        let mut msgs = Vec::new();
        let rtt = match &mut self.relays[p].conn {
            Some((g, la, lb)) if *g == generation => {
                let link = if to == 0 { la } else { lb };
                link.handle_stream(now, bytes);
                while let Some(m) = link.poll_message() {
                    if let Some(m) = m.msg {
                        msgs.push(m);
                    }
                }
                link.rtt()
            }
            _ => return,
        };
        self.relay_check(p);
        if self.relays[p].up[to] {
            let core = &mut self.bridges[bridge].core;
            if let Some(rtt) = rtt {
                core.handle_relay_rtt(&peer_id, rtt);
            }
            for m in msgs {
                core.handle_relay_control(now, &peer_id, m);
            }
            self.flush_core(bridge);
        }
        self.flush_relay_stream(p);
    }

    fn relay_datagram_in(&mut self, p: usize, generation: u64, from: usize, data: &[u8]) {
        let now = self.now;
        let to = 1 - from;
        let r = &mut self.relays[p];
        let (bridge, other) = if to == 0 { (r.a, r.b) } else { (r.b, r.a) };
        if !self.bridges[bridge].alive {
            return;
        }
        match &mut r.conn {
            Some((g, la, lb)) if *g == generation && r.up[to] => {
                let link = if to == 0 { la } else { lb };
                link.handle_datagram_seen(now);
            }
            _ => return,
        }
        let peer_id: tern_sfu::PeerId = Arc::from(self.bridges[other].id.as_str());
        self.bridges[bridge]
            .core
            .handle_relay_datagram(now, &peer_id, data);
        self.flush_core(bridge);
    }

    /// The earliest relay deadline: a link timer or a redial.
    fn relay_timeout(&self) -> Option<(Instant, usize)> {
        self.relays
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let alive = self.relay_sides_alive(i);
                let t = match &r.conn {
                    Some((_, la, lb)) => match alive {
                        [true, true] => la.poll_timeout().min(lb.poll_timeout()),
                        [true, false] => la.poll_timeout(),
                        [false, true] => lb.poll_timeout(),
                        [false, false] => return None,
                    },
                    None => r.next_attempt?,
                };
                Some((t, i))
            })
            .min()
    }

    fn relay_handle_timeout(&mut self, p: usize) {
        let now = self.now;
        let alive = self.relay_sides_alive(p);
        match &mut self.relays[p].conn {
            Some((_, la, lb)) => {
                // A dead bridge's side of the connection does nothing more.
                if alive[0] {
                    la.handle_timeout(now);
                }
                if alive[1] {
                    lb.handle_timeout(now);
                }
                self.relay_check(p);
                self.flush_relay_stream(p);
            }
            None => self.relay_dial(p),
        }
    }

    fn relay_sides_alive(&self, p: usize) -> [bool; 2] {
        let r = &self.relays[p];
        [self.bridges[r.a].alive, self.bridges[r.b].alive]
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Datagram { from, to, data } => {
                if let Some(&b) = self.bridge_by_addr.get(&to) {
                    if !self.bridges[b].alive {
                        return;
                    }
                    self.bridges[b].core.handle_datagram(now, from, to, &data);
                    self.flush_core(b);
                } else if let Some(&i) = self.by_addr.get(&to) {
                    if self.peers[i].left {
                        return;
                    }
                    self.work.2 += 1;
                    self.peers[i].peer.handle_datagram(now, from, &data);
                    self.flush_peer(i, now);
                }
            }
            Event::ToBridge {
                peer,
                bridge: b,
                session,
                msg,
            } => {
                let current = self.peers[peer].endpoint == session;
                if !self.bridges[b].alive {
                    // Connection refused: the client sees its socket close.
                    if current {
                        let at = self.reliable_delay(self.peers[peer].down);
                        self.push(at, Event::SocketClosed { peer, session });
                    }
                    return;
                }
                let p = &mut self.peers[peer];
                let core = &mut self.bridges[b].core;
                match msg {
                    ClientMessage::Join { .. } => {
                        if !current || p.joined {
                            return;
                        }
                        p.joined = true;
                        let req = JoinRequest {
                            id: session,
                            room: self.room.clone(),
                            participant: p.name.clone(),
                            name: p.name.clone(),
                            ice_password: format!("{:032x}", self.rng.next_u64()),
                        };
                        if let Err(e) = core.handle_join(now, req) {
                            panic!("join of {} refused: {e}", self.peers[peer].name);
                        }
                    }
                    ClientMessage::Leave => core.handle_leave(now, session),
                    other => core.handle_message(now, session, other),
                }
                self.flush_core(b);
            }
            Event::ToPeer { peer, session, msg } => {
                if self.peers[peer].left || self.peers[peer].endpoint != session {
                    return;
                }
                let moved = matches!(*msg, ServerMessage::Move { .. });
                if matches!(*msg, ServerMessage::Joined { .. }) {
                    self.peers[peer].failures = 0;
                }
                self.peers[peer].peer.handle_signal(now, *msg);
                self.flush_peer(peer, now);
                if moved {
                    // The client re-joins through the focus at once.
                    self.peers[peer].failures = 0;
                    let p = &mut self.peers[peer];
                    p.rejoining = true;
                    self.push(now, Event::Rejoin { peer });
                }
            }
            Event::SocketClosed { peer, session } => {
                if self.peers[peer].endpoint == session {
                    let t = self.t_us();
                    self.trace.record(t, "socket_closed", peer as u64, 0);
                    self.schedule_rejoin(peer);
                }
            }
            Event::Rejoin { peer } => self.rejoin(peer),
            Event::ToFocus { bridge, msg } => self.focus_in(bridge, *msg),
            Event::FromFocus { bridge, cmd } => self.focus_command(bridge, *cmd),
            Event::RelayStream {
                pair,
                generation,
                from,
                bytes,
            } => self.relay_stream_in(pair, generation, from, &bytes),
            Event::RelayDatagram {
                pair,
                generation,
                from,
                data,
            } => self.relay_datagram_in(pair, generation, from, &data),
        }
    }

    /// Run until `since_start` of virtual time has passed.
    pub fn run_until(&mut self, since_start: Duration) {
        #[derive(Clone, Copy)]
        enum Due {
            Core(usize),
            Peer(usize),
            Relay(usize),
            Focus,
            Report(usize),
            Nothing,
        }
        let end = self.epoch + since_start;
        let never = end + Duration::from_secs(3600);
        // Peers may have been driven directly since the last run.
        self.peer_timers.clear();
        self.peer_timer.iter_mut().for_each(|t| *t = None);
        for i in 0..self.peers.len() {
            self.rearm_peer(i);
        }
        loop {
            let mut next = never;
            let mut due = Due::Nothing;
            for (b, br) in self.bridges.iter().enumerate() {
                if !br.alive {
                    continue;
                }
                let t = br.core.poll_timeout();
                if t < next {
                    next = t;
                    due = Due::Core(b);
                }
                if self.focus.is_some() && br.next_report < next {
                    next = br.next_report;
                    due = Due::Report(b);
                }
            }
            if let Some(f) = &self.focus {
                let t = f.poll_timeout(self.now);
                if t < next {
                    next = t;
                    due = Due::Focus;
                }
            }
            if let Some((t, i)) = self.next_peer_timeout()
                && t < next
            {
                next = t;
                due = Due::Peer(i);
            }
            if let Some((t, p)) = self.relay_timeout()
                && t < next
            {
                next = t;
                due = Due::Relay(p);
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
                let bridge_of = |e: &Event| match e {
                    Event::Datagram { to, .. } => self.bridge_by_addr.get(to).copied(),
                    _ => None,
                };
                match bridge_of(&s.event) {
                    // Datagrams reaching a bridge at the same instant are
                    // one socket read for it, as in the real shell.
                    Some(b) if self.bridges[b].alive => {
                        let Event::Datagram { from, data, .. } = s.event else {
                            continue;
                        };
                        let mut batch = vec![(from, data)];
                        while let Some(Reverse(n)) = self.queue.peek() {
                            if n.at != s.at || bridge_of(&n.event) != Some(b) {
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
                        let to = self.bridges[b].addr;
                        self.bridges[b].core.handle_datagrams(
                            now,
                            to,
                            batch.iter().map(|(f, d)| (*f, &d[..])),
                        );
                        self.flush_core(b);
                    }
                    _ => self.deliver(s.event),
                }
                continue;
            }
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            match due {
                Due::Peer(i) => {
                    self.work.0 += 1;
                    self.peers[i].peer.handle_timeout(now);
                    self.flush_peer(i, now);
                }
                Due::Core(b) => {
                    self.work.1 += 1;
                    self.bridges[b].core.handle_timeout(now);
                    self.flush_core(b);
                }
                Due::Relay(p) => self.relay_handle_timeout(p),
                Due::Focus => {
                    if let Some(f) = self.focus.as_mut() {
                        f.handle_timeout(now);
                    }
                    self.drain_focus();
                }
                Due::Report(b) => self.report(b),
                Due::Nothing => {}
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
fn canonical_order(t: &mut [Transmit]) {
    t.sort_by_key(|(dest, key, _)| (*dest, *key));
}

/// A datagram to send, with its [`order_key`].
type Transmit = (SocketAddr, (u8, u32, u32), Vec<u8>);

/// Where a datagram goes in [`canonical_order`] among those to the same
/// destination.
fn order_key(d: &[u8]) -> (u8, u32, u32) {
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

fn focus_event_name(e: &FocusEvent) -> &'static str {
    match e {
        FocusEvent::BridgeUp { .. } => "f:bridge_up",
        FocusEvent::BridgeDown { .. } => "f:bridge_down",
        FocusEvent::BridgeDrain { .. } => "f:bridge_drain",
        FocusEvent::Allocated { .. } => "f:allocated",
        FocusEvent::Moved { .. } => "f:moved",
        FocusEvent::CommandMove { .. } => "f:cmd_move",
        FocusEvent::CommandDrain { .. } => "f:cmd_drain",
        FocusEvent::CommandEndConference { .. } => "f:cmd_end",
        FocusEvent::CommandRelayPeers { .. } => "f:cmd_relay_peers",
    }
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
        ServerMessage::SenderConstraints { .. } => "s:sender_constraints",
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
    /// Frames the receiver could show in the window: complete, and every
    /// frame before them shown (its decoder, `tern_peer::decoder`, waits for
    /// a gap to be repaired or a keyframe).
    pub frames_shown: usize,
    /// Gaps over 500 ms between consecutive shown frames: the freezes a
    /// participant sees.
    pub shown_freezes: usize,
    pub longest_shown_gap: Duration,
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
        for r in &st.received_all(&source) {
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
        let shown: Vec<Instant> = st
            .decoded_all(&source)
            .into_iter()
            .filter(|t| *t >= a && *t < b)
            .collect();
        // The window's ends count as frames: a picture that never comes
        // back, or is frozen when the window opens, is a freeze too.
        let mut edges = Vec::with_capacity(shown.len() + 2);
        edges.push(a);
        edges.extend_from_slice(&shown);
        edges.push(b);
        let (mut shown_freezes, mut longest_shown_gap) = (0, Duration::ZERO);
        for w in edges.windows(2) {
            let gap = w[1].saturating_duration_since(w[0]);
            if gap > Duration::from_millis(500) {
                shown_freezes += 1;
            }
            longest_shown_gap = longest_shown_gap.max(gap);
        }
        Reception {
            frames_shown: shown.len(),
            shown_freezes,
            longest_shown_gap,
            frames_complete: complete.len(),
            frames_expected,
            freezes,
            longest_gap: longest,
            layers: per_layer.keys().copied().collect(),
            delay_p50: delays.get(delays.len() / 2).copied().unwrap_or_default(),
            delay_max: delays.last().copied().unwrap_or_default(),
        }
    }

    /// Virtual time since the simulation started.
    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// Times at which `receiver` completed frames of `publisher`'s camera.
    pub fn frame_times(&self, receiver: &str, publisher: &str) -> Vec<Duration> {
        let source = format!("{publisher}/camera");
        let mut done: BTreeMap<(u8, u32), (usize, u16, Instant)> = BTreeMap::new();
        for r in &self.state(receiver).received_all(&source) {
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
