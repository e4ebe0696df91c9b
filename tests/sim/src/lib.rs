//! Deterministic simulation of Tern bridges, their relay mesh and their
//! participants.
//!
//! Everything runs in one thread on virtual time from a seed: real str0m
//! participants ([`Peer`](tern_peer::Peer)) and real bridge nodes ([`Node`]:
//! the bridge's shards, routing, relay connections, mesh policy and focus
//! link, the same state machines the tokio shell drives) exchange real
//! (SRTP-protected) datagrams over simulated links with latency, jitter,
//! random and bursty loss, bandwidth limits with a queue, reordering,
//! duplication and partitions. Signalling rides the same links but reliably,
//! like a TCP connection: delayed through a partition, never lost. Bridges
//! are joined by relay connections the nodes ask for (the smaller id
//! dials, with the node's backoff) over a simulated QUIC connection —
//! control bytes reliable and in order, datagrams through a lossy
//! [`LinkConfig`], a dial into a partition failing after QUIC's idle
//! timeout — that drops after silence and reconnects.
//!
//! A simulated focus can place participants instead ([`SimConfig::focus`]):
//! the real focus core (`tern_focus`) gets each node's registration and
//! reports (`tern.bridge.v1` messages) over a control channel with latency,
//! tells bridges their relay
//! peers, and sees a killed bridge's stream close; participants join through
//! it and, like the browser client, re-join through it with backoff when
//! their bridge goes away or tells them to move.
//!
//! The same seed gives the same run, in any process: every random choice
//! (str0m's ids via `fastrand`, DTLS timer jitter from the fixed-seed crypto
//! provider, link decisions, ICE passwords) comes from the seed, and the
//! event trace is hashed so a test can compare two runs. See
//! `tests/README.md` for how to write a scenario.
//!
//! The crate root owns [`Sim`] itself: building the cluster, the event loop
//! ([`Sim::run_until`]), delivering events and carrying out what bridge
//! nodes ask for. The rest is by concept: `rng` (seeds), `net` (simulated
//! links), `trace` (the hashed trace and canonical order), `event` (the
//! queue), `peers` (participants), `relay` (the QUIC connection between
//! bridges), `focus` (the focus and bridge drain/shutdown/kill),
//! `reception` (what participants received) and [`node_input`] (arbitrary
//! bytes into a node). Apart from the epoch (one `Instant::now()`, all
//! else relative to it), nothing here may read the real clock or the OS's
//! entropy.

mod config;
mod event;
mod flush;
mod focus;
mod net;
pub mod node_input;
mod peers;
mod reception;
mod relay;
mod rng;
pub mod tap;
mod trace;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::config::DtlsCert;
use tern_focus::{Focus, FocusEvent};
use tern_mixer::audio::MixConfig;
use tern_mixer::host::MixHost;
use tern_mixer::opus::Opus;
use tern_mixer::video::openh264::OpenH264;
use tern_proto::bridge::v1 as bpb;
use tern_sfu::node::{Input as NodeInput, Node, NodeConfig};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tern_sfu::{BandwidthConfig, CodecName, Core, CoreConfig, EndpointId, JoinRequest, PeerId};

use event::ToFocus;
use event::{Event, Scheduled};
use net::Link;
use relay::{RELAY_DIAL_TIMEOUT, RelayPair};
use trace::Transmit;

pub use config::SimConfig;
pub use net::{Burst, LinkConfig};
pub use peers::SimPeer;
pub use reception::Reception;
pub use rng::{Rng, seed_or, with_seed};
pub use tern_peer::synth::LayerSpec;
pub use trace::Trace;

/// One bridge of the simulated cluster.
pub struct SimBridge {
    pub id: String,
    pub node: Node,
    pub addr: SocketAddr,
    pub region: String,
    /// False once killed or exited: it reads nothing, sends nothing,
    /// reports nothing.
    pub alive: bool,
    /// The node finished a shutdown (`Output::Exit`).
    pub exited: bool,
    /// Its mixing worker, run inline: it takes the node's `Output::Mix`
    /// and gives back `Input::Mixed` when its ticks are due.
    pub mixer: MixHost<Opus, OpenH264>,
    /// What its recordings wrote: an in-memory recordings directory.
    pub recorded: Recorded,
}

/// A bridge's recordings directory, in memory: files by (recording,
/// file name), the files closed, and each recording's metadata.
#[derive(Debug, Default)]
pub struct Recorded {
    pub files: std::collections::BTreeMap<(String, String), Vec<u8>>,
    pub closed: std::collections::BTreeSet<(String, String)>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Writes to a file never created, or after it was closed (a bug).
    pub misordered: u64,
}

impl SimBridge {
    /// The core of the shard the simulation's room is on.
    pub fn core(&self, room: &str) -> &Core {
        self.node.core_for_room(room)
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
    /// Bytes the bridges sent to UDP while handling input, and while
    /// handling their timers (a forwarded packet should leave with the
    /// input that carried it; timers send paced media, probes, RTCP).
    pub egress_bytes: [u64; 2],
    in_timer: bool,
    focus: Option<Focus>,
    focus_latency: Duration,
    /// Everything the focus emitted, with when (since the start).
    pub focus_log: Vec<(Duration, FocusEvent)>,
    /// Endpoint ids are per session: a re-joined peer gets a new one.
    next_endpoint: u64,
    relay_max_datagram: Option<usize>,
    mix_rate: Option<u32>,
    mix_video: tern_mixer::video::CompositeSpec,
    /// Opt-in (`Some`): what bridges send to whom, for tests of what a
    /// bridge answers to addresses it does not know, and of the SRTP
    /// packets it seals.
    pub tap: Option<Tap>,
}

/// What crossed between the bridges and the network, per remote address.
#[derive(Debug, Default)]
pub struct Tap {
    /// UDP bytes the bridges sent to each address.
    pub sent_to: HashMap<SocketAddr, u64>,
    /// STUN datagrams peers sent to a bridge, as they were (from, bytes).
    pub stun: Vec<(SocketAddr, Vec<u8>)>,
    /// The SRTP packet indexes (SSRC, extended sequence number) the bridges
    /// sealed for each address: AES-GCM's nonce is made of them, so one
    /// sealed twice under the same key is a nonce reused.
    pub srtp: HashMap<(SocketAddr, u32), tap::SrtpIndexes>,
}

/// A DTLS certificate shared by every simulation in the process: generating
/// one costs milliseconds, and a fixed one keeps runs comparable.
pub(crate) fn shared_cert() -> DtlsCert {
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
        // dimpl jitters DTLS retransmission timers with the OS's entropy:
        // on a long path a lost or slow flight was resent at a different
        // moment in every process. Every str0m in the simulation (bridges
        // and participants) takes the process default, so seed it here.
        str0m_aws_lc_rs::dangerously_seeded_provider().install_process_default();
        let epoch = Instant::now();
        let mut bridges = Vec::new();
        let mut bridge_by_addr = HashMap::new();
        for b in 0..cfg.bridges.max(1) {
            let addr = SocketAddr::from(([198, 18, 0, 1 + b as u8], 10_000));
            let core_cfg = (cfg.bridge_config)(CoreConfig {
                shard: 0,
                local_addr: addr,
                candidate_addr: addr,
                tcp_candidate_addr: None,
                dtls_cert: shared_cert(),
                codecs: vec![CodecName::Opus, CodecName::Vp8],
                max_participants_per_conference: 200,
                default_max_height: 720,
                rtx_cache_packets: 512,
                rtx_cache_age: Duration::from_secs(1),
                talk: Default::default(),
                bandwidth: BandwidthConfig {
                    estimation: cfg.bandwidth_estimation,
                    ..Default::default()
                },
                composite: cfg.composite.is_some(),
            });
            bridge_by_addr.insert(addr, b);
            let id = format!("b{b}");
            let region = cfg
                .regions
                .get(b)
                .cloned()
                .unwrap_or_else(|| "local".into());
            let register = cfg.focus.as_ref().map(|_| bpb::Register {
                bridge_id: id.clone(),
                region: region.clone(),
                version: "sim".into(),
                api_version: tern_sfu::node::focus_link::API_VERSION,
                signal_url: format!("sim://{id}"),
                relay_addr: id.clone(),
                max_packet_rate: 50_000,
                conferences: Vec::new(),
            });
            let node = Node::new(
                NodeConfig {
                    id: id.clone(),
                    core: core_cfg,
                    shards: cfg.shards,
                    focus: register,
                    drain_timeout: Duration::from_secs(30),
                },
                epoch,
            );
            bridges.push(SimBridge {
                id,
                node,
                addr,
                region,
                mixer: MixHost::with_video(
                    Opus::default(),
                    MixConfig::default(),
                    cfg.composite.map(|v| (OpenH264, v)),
                ),
                alive: true,
                exited: false,
                recorded: Recorded::default(),
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
            egress_bytes: [0; 2],
            in_timer: false,
            focus: cfg.focus.clone().map(Focus::new),
            focus_latency: cfg.focus_latency,
            focus_log: Vec::new(),
            next_endpoint: 0,
            relay_max_datagram: cfg.relay_max_datagram,
            mix_rate: cfg.mix_rate,
            mix_video: cfg.mix_video,
            tap: None,
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
                    generation: None,
                });
            }
        }
        if sim.focus.is_none() {
            // No focus: what it would say, every bridge hosts the room.
            for b in 0..n {
                let others: Vec<(String, String)> = (0..n)
                    .filter(|&o| o != b)
                    .map(|o| (format!("b{o}"), format!("b{o}")))
                    .collect();
                if others.is_empty() {
                    continue;
                }
                let rooms = std::iter::once(sim.room.clone()).chain(cfg.other_rooms.clone());
                for room in rooms {
                    sim.bridges[b].node.handle_input(
                        epoch,
                        NodeInput::RelayPeers {
                            room,
                            peers: others.clone(),
                        },
                    );
                }
            }
        }
        // Nodes ask for their focus streams and relay dials from the start.
        for b in 0..n {
            sim.flush_node(b);
        }
        sim
    }

    /// The core of the first (or only) bridge's shard that hosts the room.
    pub fn core(&self) -> &Core {
        self.bridges[0].node.core_for_room(&self.room)
    }

    /// That core, to give it what its shell would (such as how far behind
    /// it is) or a request the harness does not make.
    pub fn core_mut(&mut self) -> &mut Core {
        let room = self.room.clone();
        self.bridges[0].node.core_for_room_mut(&room)
    }

    /// Bridge `b`'s core for the simulation's room.
    pub fn core_of(&self, b: usize) -> &Core {
        self.bridges[b].node.core_for_room(&self.room)
    }

    /// The room every participant joins.
    pub fn room(&self) -> &str {
        &self.room
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

    /// Virtual time since the simulation started.
    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// Keep the STUN datagrams of `batch` (when tapping).
    fn tap_stun(&mut self, batch: &[(SocketAddr, Bytes)]) {
        if let Some(tap) = self.tap.as_mut() {
            for (from, d) in batch {
                if Core::stun_target_ufrag(d).is_some() {
                    tap.stun.push((*from, d.to_vec()));
                }
            }
        }
    }

    /// Hand bridge `b`'s node an input now, as its shell would (a full
    /// queue it noticed, say), and carry out what the node says.
    pub fn give_node(&mut self, b: usize, input: NodeInput) {
        let now = self.now;
        self.bridges[b].node.handle_input(now, input);
        self.flush_node(b);
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Datagram { from, to, data } => {
                if let Some(&b) = self.bridge_by_addr.get(&to) {
                    if !self.bridges[b].alive {
                        return;
                    }
                    self.tap_stun(&[(from, Bytes::from(data.clone()))]);
                    let batch = vec![(from, Bytes::from(data))];
                    self.bridges[b]
                        .node
                        .handle_input(now, NodeInput::Datagrams { local: to, batch });
                    self.flush_node(b);
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
                let input = match msg {
                    ClientMessage::Join { .. } => {
                        if !current || p.joined {
                            return;
                        }
                        p.joined = true;
                        NodeInput::Join(JoinRequest {
                            id: session,
                            room: p.room.clone(),
                            participant: p.name.clone(),
                            name: p.name.clone(),
                            ice_password: format!("{:032x}", self.rng.next_u64()),
                            video_codec: None,
                            may_publish: true,
                            mix_rate: self.mix_rate,
                            composite: self.mix_video,
                        })
                    }
                    ClientMessage::Leave => NodeInput::Leave { endpoint: session },
                    other => NodeInput::Message {
                        endpoint: session,
                        msg: other,
                    },
                };
                self.bridges[b].node.handle_input(now, input);
                self.flush_node(b);
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
            Event::ToFocus { bridge, msg } => {
                // A dead bridge's stream carries nothing more after its close.
                if self.bridges[bridge].alive || matches!(*msg, ToFocus::Closed) {
                    self.focus_in(bridge, *msg)
                }
            }
            Event::FocusStream { bridge, connected } => {
                if self.bridges[bridge].alive {
                    let input = if connected {
                        NodeInput::FocusConnected
                    } else {
                        NodeInput::FocusDisconnected
                    };
                    self.give_node(bridge, input);
                }
            }
            Event::FromFocus { bridge, cmd } => {
                if self.bridges[bridge].alive {
                    self.give_node(bridge, NodeInput::FocusCommand(*cmd));
                }
            }
            Event::RelayConnect {
                pair,
                generation,
                dialler,
            } => {
                let (d, other) = (
                    self.side_bridge(pair, dialler),
                    self.side_bridge(pair, 1 - dialler),
                );
                if !self.bridges[d].alive {
                    return;
                }
                if !self.bridges[other].alive {
                    // Died during the handshake: the dial times out.
                    self.push(
                        now + RELAY_DIAL_TIMEOUT,
                        Event::RelayDialFailed {
                            bridge: d,
                            peer: other,
                        },
                    );
                    return;
                }
                self.relays[pair].generation = Some(generation);
                let t = self.t_us();
                self.trace
                    .record(t, "relay_connected", pair as u64, generation);
                for side in [dialler, 1 - dialler] {
                    if let Some((b, peer)) = self.relay_target(pair, generation, side) {
                        self.give_node(b, NodeInput::RelayConnected { peer: peer.clone() });
                        if let Some(max) = self.relay_max_datagram {
                            let max = Some(max);
                            self.give_node(b, NodeInput::RelayMaxDatagram { peer, max });
                        }
                    }
                }
            }
            Event::RelayDialFailed { bridge, peer } => {
                let t = self.t_us();
                self.trace
                    .record(t, "relay_dial_failed", bridge as u64, peer as u64);
                if self.bridges[bridge].alive {
                    let peer: PeerId = Arc::from(self.bridges[peer].id.as_str());
                    self.give_node(bridge, NodeInput::RelayDialFailed { peer });
                }
            }
            Event::RelayClosed {
                pair,
                generation,
                to,
            } => {
                if let Some((b, peer)) = self.relay_target(pair, generation, to) {
                    self.give_node(b, NodeInput::RelayClosed { peer });
                }
            }
            Event::RelayStream {
                pair,
                generation,
                from,
                bytes,
            } => {
                if let Some((b, peer)) = self.relay_target(pair, generation, 1 - from) {
                    self.give_node(b, NodeInput::RelayStream { peer, bytes });
                }
            }
            Event::RelayDatagram {
                pair,
                generation,
                from,
                data,
            } => {
                if let Some((b, peer)) = self.relay_target(pair, generation, 1 - from) {
                    let batch = vec![Bytes::from_owner(data)];
                    self.give_node(b, NodeInput::RelayDatagrams { peer, batch });
                }
            }
        }
    }

    /// Run until `since_start` of virtual time has passed.
    pub fn run_until(&mut self, since_start: Duration) {
        #[derive(Clone, Copy)]
        enum Due {
            Node(usize),
            Mixer(usize),
            Peer(usize),
            Focus,
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
                let t = br.node.poll_timeout();
                if t < next {
                    next = t;
                    due = Due::Node(b);
                }
                if let Some(t) = br.mixer.poll_timeout()
                    && t < next
                {
                    next = t;
                    due = Due::Mixer(b);
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
                        let mut batch = vec![(from, Bytes::from(data))];
                        while let Some(Reverse(n)) = self.queue.peek() {
                            if n.at != s.at || bridge_of(&n.event) != Some(b) {
                                break;
                            }
                            if let Some(Reverse(Scheduled {
                                event: Event::Datagram { from, data, .. },
                                ..
                            })) = self.queue.pop()
                            {
                                batch.push((from, Bytes::from(data)));
                            }
                        }
                        self.tap_stun(&batch);
                        self.work.3 += 1;
                        let now = self.now;
                        let to = self.bridges[b].addr;
                        self.bridges[b]
                            .node
                            .handle_input(now, NodeInput::Datagrams { local: to, batch });
                        self.flush_node(b);
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
                Due::Node(b) => {
                    self.work.1 += 1;
                    self.bridges[b].node.handle_timeout(now);
                    self.in_timer = true;
                    self.flush_node(b);
                    self.in_timer = false;
                }
                Due::Mixer(b) => {
                    self.bridges[b].mixer.handle_timeout(now);
                    while let Some((room, output)) = self.bridges[b].mixer.poll_output() {
                        self.bridges[b]
                            .node
                            .handle_input(now, NodeInput::Mixed { room, output });
                    }
                    self.flush_node(b);
                }
                Due::Focus => {
                    if let Some(f) = self.focus.as_mut() {
                        f.handle_timeout(now);
                    }
                    self.drain_focus();
                }
                Due::Nothing => {}
            }
        }
        self.now = end;
    }
}
