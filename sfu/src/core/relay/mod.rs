//! The conference side of the relay: which peers share a room, announcing
//! local participants to them, remote participants as local receivers see
//! them, demand-driven sending and hop-by-hop repair.
//!
//! Loop freedom is structural: a bridge announces only its local
//! participants and sends over the relay only packets that came from its
//! own endpoints; what arrives from a peer is never relayed again. With the
//! full mesh the focus builds (every bridge of a conference is told about
//! every other), one hop reaches everyone.
//!
//! Numbers: a conference number is chosen by the bridge that owns the
//! participants, with the shard in its top byte so the shell can route
//! messages naming it without a table; source numbers are per shard.
//!
//! [`Relay`] holds the relay's state and the logic that needs nothing else;
//! what also reads or writes the core's endpoints and conferences is a
//! `Core` method, grouped by concept: `peers.rs` (links, which peers share
//! which room), `announce.rs` (our participants and sources, told to
//! peers), `remote.rs` (theirs, as local receivers see them), `demand.rs`
//! (which layers are wanted across the relay, relayed keyframe requests)
//! and `media.rs` (datagrams in and out, repair). This file keeps the state,
//! the numbers, housekeeping and the control-message dispatch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_relay::msg::relay_control::Msg;

use super::{Core, EndpointId, Map, SourceRef};
use crate::stats::RelayStats;

mod announce;
mod data;
mod demand;
mod media;
mod peers;
mod remote;

use remote::RemoteParticipant;

/// A relay peer: the id of another bridge.
pub type PeerId = Arc<str>;

/// Remote endpoint ids live in the top half of the id space; the shell
/// allocates local ones from the bottom.
const REMOTE_ID_BASE: u64 = 1 << 63;

/// This shard's side of the relay: its peers and links, the numbers it
/// gave its rooms and sources, what it announced to whom, and the
/// participants other bridges announced to it.
#[derive(Debug)]
pub(super) struct Relay {
    shard: u8,
    next_conference: u32,
    next_source_number: u16,
    /// Participants on other bridges, by a core-chosen id.
    pub(super) remotes: Map<EndpointId, RemoteParticipant>,
    /// Rooms → the other bridges the focus says host them.
    room_peers: Map<Arc<str>, Vec<PeerId>>,
    /// Peers with a ready link, and its RTT.
    links: Map<PeerId, Duration>,
    /// This bridge's numbers for its rooms.
    numbers: Map<Arc<str>, u32>,
    by_number: Map<u32, Arc<str>>,
    /// Peers each room has been announced to.
    announced: Map<Arc<str>, Vec<PeerId>>,
    /// (peer, the peer's conference number) → room.
    remote_confs: Map<(PeerId, u32), Arc<str>>,
    /// Remote participants by room, in arrival order.
    remote_rooms: Map<Arc<str>, Vec<EndpointId>>,
    /// (peer, conference, source number) → (remote participant, source index).
    remote_sources: Map<(PeerId, u32, u16), (EndpointId, usize)>,
    next_remote: u64,
    /// Peers whose link dropped, since when: their participants are kept
    /// until `REMOTE_GRACE` runs out.
    down_since: Map<PeerId, Instant>,
    /// Peers whose link came back: until when they may re-announce, and
    /// the conference numbers they did.
    reconfirm: Map<PeerId, (Instant, Vec<u32>)>,
    pub(super) demand_dirty: bool,
    buf: Vec<u8>,
    nacks: Vec<u16>,
}

impl Relay {
    pub(super) fn new(shard: u8) -> Self {
        Self {
            shard,
            next_conference: 0,
            next_source_number: 0,
            remotes: Map::default(),
            room_peers: Map::default(),
            links: Map::default(),
            numbers: Map::default(),
            by_number: Map::default(),
            announced: Map::default(),
            remote_confs: Map::default(),
            remote_rooms: Map::default(),
            remote_sources: Map::default(),
            next_remote: REMOTE_ID_BASE,
            down_since: Map::default(),
            reconfirm: Map::default(),
            demand_dirty: false,
            buf: Vec::with_capacity(1500),
            nacks: Vec::new(),
        }
    }

    /// The relay number of a newly declared local source.
    pub(super) fn next_source_number(&mut self) -> u16 {
        self.next_source_number = self.next_source_number.wrapping_add(1);
        self.next_source_number
    }

    /// This bridge's number for `room`, if it was ever announced.
    pub(in crate::core) fn number_of(&self, room: &str) -> Option<u32> {
        self.numbers.get(room).copied()
    }

    fn number_for(&mut self, room: &Arc<str>) -> u32 {
        if let Some(&n) = self.numbers.get(room) {
            return n;
        }
        self.next_conference = (self.next_conference + 1) & 0x00ff_ffff;
        let n = u32::from(self.shard) << 24 | self.next_conference;
        self.numbers.insert(room.clone(), n);
        self.by_number.insert(n, room.clone());
        n
    }
}

/// A video or audio source as the relay sees it on this bridge, for tests
/// and status ([`Core::relay_sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySource {
    /// "participant/name", as clients see it.
    pub id: String,
    /// Published on another bridge (else here).
    pub remote: bool,
    /// Remote: the layers this bridge asks the origin for. Local: the
    /// union of what peers demand (bit i = layer i).
    pub demand: u32,
    /// Per layer. Remote: the bitrate the origin announced. Local: the
    /// bitrate last announced to peers. `None`: none yet.
    pub bitrates: Vec<Option<u64>>,
}

/// The shard a conference number chosen by this bridge belongs to.
pub fn shard_of_conference_number(number: u32) -> u8 {
    (number >> 24) as u8
}

impl Core {
    /// Relay traffic counters.
    pub fn relay_stats(&self) -> &RelayStats {
        &self.stats.relay
    }

    /// Remote participants known in `room` (ids), for tests and status.
    pub fn remote_participants(&self, room: &str) -> Vec<String> {
        self.relay.participants_in(room)
    }

    /// Every source of `room`, local and remote, as the relay sees it,
    /// by id.
    pub fn relay_sources(&self, room: &str) -> Vec<RelaySource> {
        let known = |b: u64| (b > 0).then_some(b);
        let local = self
            .local_endpoints(room)
            .into_iter()
            .filter_map(|e| self.endpoints.get(&e))
            .flat_map(|ep| ep.sources.iter())
            .map(|s| RelaySource {
                id: s.id.clone(),
                remote: false,
                demand: s.relay_demand.iter().fold(0, |m, (_, d)| m | d),
                bitrates: s.layers.iter().map(|l| known(l.relay_bps_sent)).collect(),
            });
        let remote = self
            .relay
            .remote_rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|i| self.relay.remotes.get(i))
            .flat_map(|rp| rp.sources.iter().zip(&rp.state))
            .map(|(s, st)| RelaySource {
                id: s.id.clone(),
                remote: true,
                demand: st.demand_sent,
                bitrates: s.layers.iter().map(|l| l.announced_bps).collect(),
            });
        let mut all: Vec<RelaySource> = local.chain(remote).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Periodic relay work: tell peers about layers that started or stopped,
    /// retry NACKs for holes that are still open.
    pub(in crate::core) fn relay_housekeeping(&mut self, now: Instant) {
        self.relay_announce_changes(now);
        let ids: Vec<EndpointId> = self.relay.remotes.keys().copied().collect();
        for id in ids {
            self.relay
                .poll_nacks(now, id, &mut self.stats.relay, &mut self.out);
        }
        self.relay_expire(now);
    }

    /// A control message from a peer whose link is ready.
    pub fn handle_relay_control(&mut self, now: Instant, peer: &str, m: Msg) {
        self.stats.relay.control_in += 1;
        let peer: PeerId = Arc::from(peer);
        match m {
            Msg::ConferenceJoined(c) => self.remote_conference_joined(now, peer, c),
            Msg::ConferenceLeft(c) => self.remote_conference_left(now, peer, c),
            Msg::ParticipantJoined(p) => self.remote_joined(peer, p),
            Msg::ParticipantLeft(p) => {
                match self.relay.find_remote(&peer, p.conference, &p.participant) {
                    Some(id) => self.remove_remote(now, id),
                    None => self.stats.relay.control_unknown += 1,
                }
            }
            Msg::Sources(s) => self.remote_sources(now, peer, s),
            Msg::Demand(d) => self.peer_demand(now, peer, d),
            Msg::KeyframeRequest(k) => match self.local_source_by_number(k.conference, k.source) {
                Some(r) => self.request_keyframe(now, r, k.layer as usize),
                None => self.stats.relay.control_unknown += 1,
            },
            Msg::Nack(n) => self.peer_nack(peer, n),
            Msg::OversizeMedia(d) => self.handle_relay_datagram(now, &peer, &d),
            Msg::Data(d) => self.remote_data(peer, d),
            Msg::SenderClock(c) => self.remote_sender_clock(&peer, c),
            // The link handles these; a shell passing them on is harmless.
            Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_) => {}
        }
        self.settle(now);
    }

    /// The local source `number` of our conference `conference`.
    fn local_source_by_number(&self, conference: u32, number: u32) -> Option<SourceRef> {
        let room = self.relay.by_number.get(&conference)?;
        let conf = self.conferences.get(room)?;
        conf.endpoints.iter().find_map(|&e| {
            let ep = self.endpoints.get(&e)?;
            ep.sources
                .iter()
                .find(|s| u32::from(s.relay_number) == number)
                .map(|s| SourceRef {
                    endpoint: e,
                    mid: s.mid,
                })
        })
    }
}
