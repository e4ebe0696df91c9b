//! A bridge as one Sans-IO state machine: its worker shards' cores and
//! every rule above them — which shard an input belongs to, the relay
//! connections and the mesh policy, the focus link, and shutdown.
//!
//! One way in ([`Node::handle_input`]), one way out ([`Node::poll_output`]),
//! time passed in, as in str0m. The simulator and the fuzz targets drive a
//! whole `Node`. The tokio shell runs the same parts on several threads
//! (quinn-proto's split between its `Endpoint` and its `Connection`s): each
//! shard task owns one [`Core`] and applies [`ShardInput`]s, the socket
//! reader routes with [`route`], each relay connection task drives a
//! [`RelayConnection`], and one task drives the [`Mesh`], the [`FocusLink`]
//! and the [`Shutdown`]. No rule lives only in the shell.

pub mod backpressure;
pub mod focus_link;
pub mod mesh;
pub mod relay_conn;
pub mod route;
pub mod shard;
pub mod shutdown;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_proto::bridge::v1 as bpb;
use tracing::{debug, info, warn};

use crate::core::{Core, CoreConfig, EndpointId, JoinRequest, Output as CoreOutput, PeerId};
use crate::signal::{ClientMessage, ErrorCode, ServerMessage};
use crate::tern_relay::msg::relay_control::Msg;
use crate::{SfuError, stats::CoreStats};
pub use backpressure::Carriage;
pub use focus_link::{FocusAction, FocusLink, FocusOrder, Totals};
pub use mesh::{Mesh, MeshAction};
pub use relay_conn::{ConnEvent, LinkEvent, RelayConnection};
pub use route::{RelayDrop, shard_of_datagram, shard_of_room};
pub use shard::ShardInput;
pub use shutdown::{Shutdown, ShutdownStep};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The bridge's id: its relay certificate names it, peers dial by it.
    pub id: String,
    /// Every shard's core configuration (`shard` is set per shard).
    pub core: CoreConfig,
    pub shards: usize,
    /// What the bridge registers with, when it has a focus.
    pub focus: Option<bpb::Register>,
    /// How long a shutdown waits for the focus to move conferences away.
    pub drain_timeout: Duration,
}

#[derive(Debug)]
pub enum Input {
    /// Client datagrams read together from the media socket at `local`.
    Datagrams {
        local: SocketAddr,
        batch: Vec<(SocketAddr, Bytes)>,
    },
    /// A participant the shell authenticated wants to join.
    Join(JoinRequest),
    Message {
        endpoint: EndpointId,
        msg: ClientMessage,
    },
    Leave {
        endpoint: EndpointId,
    },
    /// The endpoint's signalling queue is full (it does not read).
    SignalBacklog {
        endpoint: EndpointId,
    },
    /// A relay connection with `peer` is established (either side dialled).
    RelayConnected {
        peer: PeerId,
    },
    /// A dial the node asked for failed.
    RelayDialFailed {
        peer: PeerId,
    },
    /// Bytes read from `peer`'s control stream.
    RelayStream {
        peer: PeerId,
        bytes: Vec<u8>,
    },
    RelayDatagrams {
        peer: PeerId,
        batch: Vec<Bytes>,
    },
    /// The largest datagram the connection with `peer` takes now (`None`:
    /// none); the shell says so when it changes.
    RelayMaxDatagram {
        peer: PeerId,
        max: Option<usize>,
    },
    /// The control stream to `peer` cannot take what the node wrote: its
    /// queue is full.
    RelayWriteBlocked {
        peer: PeerId,
    },
    /// The connection with `peer` is gone.
    RelayClosed {
        peer: PeerId,
    },
    /// Other bridges host `room` too (id, relay address); empty: none any
    /// more. What the focus says with `RelayPeers`, for a bridge told by
    /// other means.
    RelayPeers {
        room: String,
        peers: Vec<(String, String)>,
    },
    /// What the mixing worker produced for mixed conference `room`.
    Mixed {
        room: Arc<str>,
        output: tern_mixer::host::Mixed,
    },
    /// The control stream to the focus opened.
    FocusConnected,
    /// ...closed, failed or could not be opened.
    FocusDisconnected,
    FocusCommand(bpb::FocusCommand),
    /// The shell could not write recording `id` of `room`.
    RecordingFailed {
        room: String,
        id: String,
        error: String,
    },
    /// Go away: drain through the focus if there is one, then close.
    Shutdown,
}

#[derive(Debug)]
pub enum Output {
    /// Send a datagram from the media socket (or, `tcp`, on the ICE-TCP
    /// connection from `destination`).
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
        tcp: bool,
    },
    /// Send a signalling message to an endpoint (boxed, as the core's).
    Signal {
        endpoint: EndpointId,
        message: Box<ServerMessage>,
    },
    /// The endpoint is gone; close its signalling after what is queued.
    Closed {
        endpoint: EndpointId,
    },
    /// Write to `peer`'s control stream (reliable, in order).
    RelayWrite {
        peer: PeerId,
        bytes: Vec<u8>,
    },
    /// Send a media datagram to `peer`.
    RelayDatagram {
        peer: PeerId,
        datagram: Arc<[u8]>,
    },
    /// Open a relay connection; answer with `RelayConnected` or
    /// `RelayDialFailed`.
    RelayDial {
        peer: PeerId,
        addr: String,
    },
    /// Close the relay connection with `peer` (answer with `RelayClosed`
    /// is not needed: the node has forgotten it).
    RelayClose {
        peer: PeerId,
        reason: String,
    },
    /// Open the control stream to the focus.
    FocusConnect,
    /// Close it (the focus refused this bridge); the node reconnects later.
    FocusClose,
    ToFocus(bpb::BridgeMessage),
    /// For the mixing worker of the command's conference (a
    /// `tern_mixer::host::MixHost`); what it produces comes back as
    /// [`Input::Mixed`].
    Mix(tern_mixer::host::MixCommand),
    /// For the recordings directory; a write that fails comes back as
    /// [`Input::RecordingFailed`].
    Record(crate::core::RecordOutput),
    /// The shutdown is complete.
    Exit,
}

/// Node-level counters (the shards count their own in [`CoreStats`]).
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Client datagrams from no known endpoint (routed nowhere).
    pub unknown_source: u64,
    /// Relay inputs that named no conference here, or were too short.
    pub relay_unknown_conference: u64,
    pub relay_malformed: u64,
    /// Relay output for a peer with no connection.
    pub relay_no_connection: u64,
    /// Signalling for an endpoint no shard has (already gone).
    pub unknown_endpoint: u64,
    /// Clients dropped because they did not read their signalling.
    pub signal_backlog: u64,
    /// Relay datagrams too large for their path, sent on the control stream.
    pub relay_oversize: u64,
}

pub struct Node {
    cfg: NodeConfig,
    cores: Vec<Core>,
    /// Authenticated client addresses → shard (the cores' `Bind`s).
    addresses: HashMap<SocketAddr, u8>,
    /// Joined endpoints → shard.
    sessions: BTreeMap<EndpointId, usize>,
    relays: BTreeMap<PeerId, RelayConnection>,
    mesh: Mesh,
    focus: Option<FocusLink>,
    shutdown: Option<Shutdown>,
    next_shutdown_step: Option<Instant>,
    exited: bool,
    /// When the node was made: the one time it knows without being told.
    created: Instant,
    stats: NodeStats,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.cfg.id)
            .field("shards", &self.cores.len())
            .field("relays", &self.relays.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Node {
    pub fn new(cfg: NodeConfig, now: Instant) -> Self {
        let shards = cfg.shards.clamp(1, 256);
        let cores = (0..shards)
            .map(|i| {
                let mut c = cfg.core.clone();
                c.shard = i as u8;
                Core::new(c, now)
            })
            .collect();
        let focus = cfg.focus.clone().map(|r| FocusLink::new(r, now));
        let mut node = Self {
            mesh: Mesh::new(cfg.id.clone()),
            cfg: NodeConfig { shards, ..cfg },
            cores,
            addresses: HashMap::new(),
            sessions: BTreeMap::new(),
            relays: BTreeMap::new(),
            focus,
            shutdown: None,
            next_shutdown_step: None,
            exited: false,
            created: now,
            stats: NodeStats::default(),
            out: VecDeque::new(),
        };
        node.handle_timeout(now);
        node
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    pub fn cores_mut(&mut self) -> &mut [Core] {
        &mut self.cores
    }

    /// The core of the shard `room` is pinned to.
    pub fn core_for_room(&self, room: &str) -> &Core {
        &self.cores[shard_of_room(room, self.cores.len())]
    }

    pub fn core_for_room_mut(&mut self, room: &str) -> &mut Core {
        let s = shard_of_room(room, self.cores.len());
        &mut self.cores[s]
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    pub fn endpoint_count(&self) -> usize {
        self.cores.iter().map(Core::endpoint_count).sum()
    }

    /// Whether the relay link to `peer` is up here.
    pub fn relay_up(&self, peer: &str) -> bool {
        self.relays.get(peer).is_some_and(RelayConnection::is_up)
    }

    /// The focus asked this bridge to drain.
    pub fn draining(&self) -> bool {
        self.focus.as_ref().is_some_and(FocusLink::draining)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// What every shard hosts and has carried.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for c in &self.cores {
            let st: &CoreStats = c.stats();
            t.packets_in += st.packets_in;
            t.packets_out += st.packets_out;
            t.endpoints += c.endpoint_count() as u32;
            t.conferences.extend(c.conferences());
            t.recordings.extend(c.recordings());
        }
        t
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.exited {
            return;
        }
        match input {
            Input::Datagrams { local, batch } => self.datagrams(now, local, batch),
            Input::Join(req) => self.join(now, req),
            Input::Message { endpoint, msg } => {
                self.route_to_session(now, endpoint, |id| ShardInput::Message { id, msg })
            }
            Input::Leave { endpoint } => {
                self.route_to_session(now, endpoint, |id| ShardInput::Leave { id })
            }
            Input::SignalBacklog { endpoint } => {
                if self.sessions.contains_key(&endpoint) {
                    self.stats.signal_backlog += 1;
                }
                self.route_to_session(now, endpoint, |id| ShardInput::SignalBacklog { id })
            }
            Input::RecordingFailed { room, id, error } => {
                let s = shard_of_room(&room, self.cores.len());
                ShardInput::RecordingFailed { room, id, error }.apply(&mut self.cores[s], now);
                self.drain_core(now, s);
            }
            Input::Mixed { room, output } => {
                let s = shard_of_room(&room, self.cores.len());
                ShardInput::Mixed { room, output }.apply(&mut self.cores[s], now);
                self.drain_core(now, s);
            }
            Input::RelayConnected { peer } => self.relay_connected(now, peer),
            Input::RelayDialFailed { peer } => self.mesh.dial_failed(now, &peer),
            Input::RelayStream { peer, bytes } => {
                if let Some(c) = self.relays.get_mut(&peer) {
                    c.handle_stream(now, &bytes);
                    self.relay_flush(now, &peer);
                }
            }
            Input::RelayDatagrams { peer, batch } => {
                if let Some(c) = self.relays.get_mut(&peer) {
                    c.handle_datagrams(now, batch);
                    self.relay_flush(now, &peer);
                }
            }
            Input::RelayMaxDatagram { peer, max } => {
                if let Some(c) = self.relays.get_mut(&peer) {
                    c.set_max_datagram(max);
                }
            }
            Input::RelayWriteBlocked { peer } => {
                if let Some(c) = self.relays.get_mut(&peer) {
                    c.control_backed_up();
                    self.relay_flush(now, &peer);
                }
            }
            Input::RelayClosed { peer } => self.relay_gone(now, &peer, None),
            Input::RelayPeers { room, peers } => {
                self.carry_out(now, FocusOrder::RelayPeers { room, peers })
            }
            Input::FocusConnected => {
                let totals = self.totals();
                if let Some(f) = &mut self.focus {
                    f.connected(now, &totals);
                }
            }
            Input::FocusDisconnected => {
                if let Some(f) = &mut self.focus {
                    f.disconnected(now);
                }
            }
            Input::FocusCommand(cmd) => self.focus_command(now, cmd),
            Input::Shutdown => {
                if self.shutdown.is_none() {
                    info!("shutting down");
                    let drain = self.focus.as_ref().map(|_| self.cfg.drain_timeout);
                    self.shutdown = Some(Shutdown::start(now, drain));
                    if let Some(f) = &mut self.focus {
                        f.set_shutting_down();
                    }
                    self.next_shutdown_step = Some(now);
                }
            }
        }
        self.handle_timeout(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for s in 0..self.cores.len() {
            if self.cores[s].poll_timeout() <= now {
                self.cores[s].handle_timeout(now);
            }
            self.drain_core(now, s);
        }
        let peers: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(_, c)| c.poll_timeout() <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in peers {
            if let Some(c) = self.relays.get_mut(&p) {
                c.handle_timeout(now);
            }
            self.relay_flush(now, &p);
        }
        self.mesh.handle_timeout(now);
        while let Some(a) = self.mesh.poll_action() {
            match a {
                MeshAction::Dial { peer, addr } => self.out.push_back(Output::RelayDial {
                    peer: Arc::from(peer.as_str()),
                    addr,
                }),
                MeshAction::Close { peer, reason } => {
                    let peer: PeerId = Arc::from(peer.as_str());
                    if self.relays.contains_key(&peer) {
                        self.relay_gone(now, &peer, Some(reason.to_string()));
                    }
                }
            }
        }
        if self.focus.as_ref().is_some_and(|f| f.report_due(now)) {
            let totals = self.totals();
            if let Some(f) = &mut self.focus {
                f.report(now, &totals);
            }
        }
        if let Some(f) = &mut self.focus {
            f.handle_timeout(now);
            while let Some(a) = f.poll_action() {
                self.out.push_back(match a {
                    FocusAction::Connect => Output::FocusConnect,
                    FocusAction::Send(m) => Output::ToFocus(m),
                });
            }
        }
        self.shutdown_step(now);
    }

    pub fn poll_timeout(&self) -> Instant {
        // `new` builds at least one core, whose housekeeping always has a
        // deadline; the fallback only keeps the type total.
        let mut t = self
            .cores
            .iter()
            .map(Core::poll_timeout)
            .min()
            .unwrap_or(self.created + Duration::from_secs(3600));
        for c in self.relays.values() {
            t = t.min(c.poll_timeout());
        }
        for x in [
            self.mesh.poll_timeout(),
            self.focus.as_ref().and_then(FocusLink::poll_timeout),
            self.next_shutdown_step,
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(x);
        }
        t
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn datagrams(&mut self, now: Instant, local: SocketAddr, batch: Vec<(SocketAddr, Bytes)>) {
        let n = self.cores.len();
        let mut per_shard: Vec<Vec<(SocketAddr, Bytes)>> = vec![Vec::new(); n];
        for (src, d) in batch {
            match shard_of_datagram(self.addresses.get(&src).copied(), &d, n) {
                Some(s) => per_shard[s].push((src, d)),
                None => self.stats.unknown_source += 1,
            }
        }
        for (s, batch) in per_shard.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            ShardInput::Datagrams { local, batch }.apply(&mut self.cores[s], now);
            self.drain_core(now, s);
        }
    }

    fn join(&mut self, now: Instant, req: JoinRequest) {
        let id = req.id;
        if self.shutdown.is_some() {
            self.refuse(id, ErrorCode::ShuttingDown, "the bridge is shutting down");
            return;
        }
        let s = shard_of_room(&req.room, self.cores.len());
        self.sessions.insert(id, s);
        match self.cores[s].handle_join(now, req) {
            Ok(()) => {}
            Err(SfuError::Refused(r)) => {
                self.sessions.remove(&id);
                self.drain_core(now, s);
                self.refuse(id, r.code, &r.message);
                return;
            }
            Err(e) => {
                self.sessions.remove(&id);
                self.drain_core(now, s);
                self.refuse(id, ErrorCode::BadMessage, &e.to_string());
                return;
            }
        }
        self.drain_core(now, s);
    }

    fn refuse(&mut self, endpoint: EndpointId, code: ErrorCode, message: &str) {
        self.out.push_back(Output::Signal {
            endpoint,
            message: Box::new(ServerMessage::Error {
                code,
                message: message.to_string(),
            }),
        });
        self.out.push_back(Output::Closed { endpoint });
    }

    fn route_to_session(
        &mut self,
        now: Instant,
        endpoint: EndpointId,
        make: impl FnOnce(EndpointId) -> ShardInput,
    ) {
        match self.sessions.get(&endpoint) {
            Some(&s) => {
                make(endpoint).apply(&mut self.cores[s], now);
                self.drain_core(now, s);
            }
            None => self.stats.unknown_endpoint += 1,
        }
    }

    /// Carry out what shard `s`'s core has to say.
    fn drain_core(&mut self, now: Instant, s: usize) {
        while let Some(o) = self.cores[s].poll_output() {
            match o {
                CoreOutput::Transmit {
                    destination,
                    contents,
                    tcp,
                } => self.out.push_back(Output::Transmit {
                    destination,
                    contents,
                    tcp,
                }),
                CoreOutput::Signal { endpoint, message } => {
                    self.out.push_back(Output::Signal { endpoint, message })
                }
                CoreOutput::Bind { addr } => {
                    self.addresses.insert(addr, s as u8);
                }
                CoreOutput::Unbind { addr } => {
                    if self.addresses.get(&addr) == Some(&(s as u8)) {
                        self.addresses.remove(&addr);
                    }
                }
                CoreOutput::Closed { endpoint } => {
                    self.sessions.remove(&endpoint);
                    self.out.push_back(Output::Closed { endpoint });
                }
                CoreOutput::Mix(cmd) => self.out.push_back(Output::Mix(cmd)),
                CoreOutput::Record(r) => self.out.push_back(Output::Record(r)),
                CoreOutput::RelayControl { peer, msg } => self.relay_send(now, &peer, msg),
                CoreOutput::RelayDatagram { peer, datagram } => {
                    match self.relays.get(&peer).filter(|c| c.is_up()) {
                        None => self.stats.relay_no_connection += 1,
                        Some(c) => match c.carriage(datagram.len()) {
                            Carriage::Datagram => {
                                self.out.push_back(Output::RelayDatagram { peer, datagram })
                            }
                            Carriage::ControlStream => {
                                self.stats.relay_oversize += 1;
                                let msg = Msg::OversizeMedia(datagram.to_vec());
                                self.relay_send(now, &peer, msg);
                            }
                        },
                    }
                }
            }
        }
    }

    fn relay_send(&mut self, now: Instant, peer: &PeerId, msg: Msg) {
        match self.relays.get_mut(peer) {
            Some(c) => {
                c.send(msg);
                self.relay_flush(now, peer);
            }
            None => self.stats.relay_no_connection += 1,
        }
    }

    fn relay_connected(&mut self, now: Instant, peer: PeerId) {
        if !self.mesh.connected(&peer) && self.mesh.dials(&peer) {
            // Let go while the dial was under way.
            self.out.push_back(Output::RelayClose {
                peer,
                reason: "no shared conference".into(),
            });
            return;
        }
        if self.relays.contains_key(&peer) {
            // A newer connection replaces the old one; the shards hear the
            // link went down and comes back with the new hello.
            self.relay_gone(now, &peer, None);
            self.mesh.connected(&peer);
        }
        info!(%peer, "relay connection up");
        let c = RelayConnection::new(&self.cfg.id, peer.clone(), self.cores.len(), now);
        self.relays.insert(peer.clone(), c);
        self.relay_flush(now, &peer);
    }

    /// Forget the connection with `peer`; with a reason, ask the shell to
    /// close it.
    fn relay_gone(&mut self, now: Instant, peer: &PeerId, close: Option<String>) {
        let Some(mut c) = self.relays.remove(peer) else {
            return;
        };
        c.closed();
        let events: Vec<ConnEvent> = std::iter::from_fn(|| c.poll_event()).collect();
        self.relay_apply(now, peer, events);
        if let Some(reason) = close {
            warn!(%peer, %reason, "closing the relay connection");
            self.out.push_back(Output::RelayClose {
                peer: peer.clone(),
                reason,
            });
        } else {
            debug!(%peer, "relay connection gone");
        }
        self.mesh.connection_lost(now, peer);
    }

    /// Move what a relay connection produced: bytes to write, inputs for the
    /// shards; a failed link is closed.
    fn relay_flush(&mut self, now: Instant, peer: &PeerId) {
        let Some(c) = self.relays.get_mut(peer) else {
            return;
        };
        while let Some(bytes) = c.poll_transmit() {
            self.out.push_back(Output::RelayWrite {
                peer: peer.clone(),
                bytes,
            });
        }
        let failed = c.error().map(|e| e.to_string());
        let events: Vec<ConnEvent> = std::iter::from_fn(|| c.poll_event()).collect();
        self.relay_apply(now, peer, events);
        if let Some(reason) = failed {
            self.relay_gone(now, peer, Some(reason));
        }
    }

    fn relay_apply(&mut self, now: Instant, peer: &PeerId, events: Vec<ConnEvent>) {
        for e in events {
            match e {
                ConnEvent::Shard(s, input) => {
                    input.apply(&mut self.cores[s], now);
                    self.drain_core(now, s);
                }
                ConnEvent::Link(l) => {
                    for s in 0..self.cores.len() {
                        l.input(peer).apply(&mut self.cores[s], now);
                        self.drain_core(now, s);
                    }
                }
                ConnEvent::Dropped { reason, count } => match reason {
                    RelayDrop::UnknownConference => self.stats.relay_unknown_conference += count,
                    RelayDrop::Malformed => self.stats.relay_malformed += count,
                },
            }
        }
    }

    fn focus_command(&mut self, now: Instant, cmd: bpb::FocusCommand) {
        let Some(f) = &mut self.focus else {
            return;
        };
        match f.handle_command(cmd) {
            Ok(Some(o)) => self.carry_out(now, o),
            Ok(None) => {}
            Err(why) => {
                warn!(%why, "focus session ended");
                f.disconnected(now);
                self.out.push_back(Output::FocusClose);
            }
        }
    }

    fn carry_out(&mut self, now: Instant, order: FocusOrder) {
        if let FocusOrder::RelayPeers { room, peers } = &order {
            self.mesh.set_room_peers(now, room, peers);
        }
        let s = shard_of_room(order.room(), self.cores.len());
        order.into_shard_input().apply(&mut self.cores[s], now);
        self.drain_core(now, s);
    }

    fn shutdown_step(&mut self, now: Instant) {
        let Some(sd) = &mut self.shutdown else {
            return;
        };
        if self.next_shutdown_step.is_some_and(|t| t > now) {
            return;
        }
        let endpoints = self.cores.iter().map(Core::endpoint_count).sum();
        match sd.poll(now, endpoints) {
            ShutdownStep::Wait(at) => self.next_shutdown_step = Some(at),
            ShutdownStep::CloseEndpoints => {
                self.next_shutdown_step = Some(now);
                let sessions: Vec<(EndpointId, usize)> =
                    self.sessions.iter().map(|(e, s)| (*e, *s)).collect();
                for (id, s) in sessions {
                    self.out.push_back(Output::Signal {
                        endpoint: id,
                        message: Box::new(ServerMessage::Error {
                            code: ErrorCode::ShuttingDown,
                            message: "the bridge is shutting down".into(),
                        }),
                    });
                    self.cores[s].handle_leave(now, id);
                    self.drain_core(now, s);
                }
                self.shutdown_step(now);
            }
            ShutdownStep::Exit => {
                info!("bridge stopped");
                self.next_shutdown_step = None;
                self.exited = true;
                self.out.push_back(Output::Exit);
            }
        }
    }
}
