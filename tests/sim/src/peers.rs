//! Participants: [`SimPeer`] (a real str0m participant, its uplink and
//! downlink, its session on a bridge), adding them, connecting a session,
//! re-joining with the browser client's backoff, moving, and the per-peer
//! link settings (uplink, downlink, loss windows, partitions).
//!
//! A participant's own behaviour is `tern_peer`'s; this module only wires
//! it to the simulated network and signalling and keeps its timer.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_peer::{Peer, PeerConfig, PeerOutput, PeerState};
use tern_sfu::EndpointId;
use tern_sfu::signal::ClientMessage;

use crate::Sim;
use crate::event::Event;
use crate::net::{Link, LinkConfig, LossWindow};
use crate::trace::{canonical_order, signal_name};

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
    /// The room it joins.
    pub room: String,
    pub(crate) up: usize,
    pub(crate) down: usize,
    pub(crate) joined: bool,
    pub(crate) left: bool,
    /// Consecutive failed sessions: the re-join backoff index.
    pub(crate) failures: usize,
    /// A re-join is scheduled.
    pub(crate) rejoining: bool,
}

/// The browser client's re-join backoff (`src/web/tern.js`): the delay
/// before each retry after a lost session or a failed attempt.
const REJOIN_BACKOFF_MS: [u64; 5] = [250, 500, 1000, 2000, 3000];

impl Sim {
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
            room: self.room.clone(),
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

    /// Add a participant connected to bridge `bridge` that joins `room`
    /// rather than the simulation's room.
    pub fn add_peer_to_room(
        &mut self,
        bridge: usize,
        room: &str,
        name: &str,
        f: impl FnOnce(&mut PeerConfig),
        up: LinkConfig,
        down: LinkConfig,
    ) -> usize {
        let i = self.add_peer_inner(None, name, f, up, down);
        self.peers[i].room = room.to_string();
        self.connect(i, bridge);
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
    pub(crate) fn schedule_rejoin(&mut self, i: usize) {
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

    pub(crate) fn rejoin(&mut self, i: usize) {
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

    /// The peer's last-N and on-stage sources ([`tern_peer::Peer::set_view`]).
    pub fn set_view(&mut self, peer: usize, last_n: i32, on_stage: &[&str], stage_height: u32) {
        let now = self.now;
        self.peers[peer]
            .peer
            .set_view(last_n, on_stage, stage_height);
        self.flush_peer(peer, now);
    }

    pub fn leave(&mut self, peer: usize) {
        let now = self.now;
        self.peers[peer].peer.leave();
        self.peers[peer].left = true;
        self.flush_peer(peer, now);
    }

    /// Datagrams sent and lost on a peer's (uplink, downlink).
    /// Bytes offered to a peer's downlink so far (lost ones included).
    pub fn downlink_bytes(&self, peer: usize) -> u64 {
        self.links[self.peers[peer].down].bytes
    }

    pub fn link_counts(&self, peer: usize) -> ((u64, u64), (u64, u64)) {
        let p = &self.peers[peer];
        let (u, d) = (&self.links[p.up], &self.links[p.down]);
        ((u.sent, u.lost), (d.sent, d.lost))
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

    /// Note peer `i`'s deadline after it was touched.
    pub(crate) fn rearm_peer(&mut self, i: usize) {
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
    pub(crate) fn next_peer_timeout(&mut self) -> Option<(Instant, usize)> {
        while let Some(&Reverse((t, i))) = self.peer_timers.peek() {
            if self.peer_timer[i] == Some(t) {
                return Some((t, i));
            }
            self.peer_timers.pop();
        }
        None
    }

    pub(crate) fn flush_peer(&mut self, i: usize, _now: Instant) {
        self.rearm_peer(i);
        let mut transmits = std::mem::take(&mut self.transmits);
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
        for (destination, contents) in transmits.drain(..) {
            self.send_datagram(up, addr, destination, contents);
        }
        self.transmits = transmits;
    }
}
