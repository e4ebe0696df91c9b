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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::rtp::ExtensionValues;
use tern_relay::msg::{self, relay_control::Msg};
use tern_relay::repair::SendCache;
use tern_relay::wire::{self, MediaHeader};
use tracing::trace;

use super::{Core, EndpointId, Map, Output, Packet, SourceRef};
use crate::signal::Kind;
use crate::stats::RelayStats;

mod announce;
mod demand;
mod peers;
mod remote;

use remote::RemoteParticipant;

/// A relay peer: the id of another bridge.
pub type PeerId = Arc<str>;

/// Datagrams kept per source layer to answer peers' NACKs (~1 s of 720p).
const VIDEO_CACHE: usize = 512;
const AUDIO_CACHE: usize = 64;
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

    fn poll_nacks(
        &mut self,
        now: Instant,
        id: EndpointId,
        stats: &mut RelayStats,
        out: &mut VecDeque<Output>,
    ) {
        let Some(rp) = self.remotes.get_mut(&id) else {
            return;
        };
        // No link, nobody to ask: holes from before the outage are dropped
        // when it comes back (the trackers restart).
        let Some(&rtt) = self.links.get(&rp.peer) else {
            return;
        };
        for (i, st) in rp.state.iter_mut().enumerate() {
            for (layer, g) in st.gaps.iter_mut().enumerate() {
                let lost = g.lost;
                self.nacks.clear();
                g.poll_nacks(now, rtt, &mut self.nacks);
                stats.lost += g.lost - lost;
                if self.nacks.is_empty() {
                    continue;
                }
                let Some(src) = rp.sources.get(i) else {
                    continue;
                };
                stats.nacks_sent += self.nacks.len() as u64;
                out.push_back(Output::RelayControl {
                    peer: rp.peer.clone(),
                    msg: Msg::Nack(msg::Nack {
                        conference: rp.conference,
                        source: u32::from(src.relay_number),
                        layer: layer as u32,
                        seqs: self.nacks.iter().map(|&s| u32::from(s)).collect(),
                    }),
                });
            }
        }
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

/// The shard a conference number chosen by this bridge belongs to.
pub fn shard_of_conference_number(number: u32) -> u8 {
    (number >> 24) as u8
}

fn codec_to_wire(c: Codec) -> Option<wire::Codec> {
    match c {
        Codec::Opus => Some(wire::Codec::Opus),
        Codec::Vp8 => Some(wire::Codec::Vp8),
        Codec::H264 => Some(wire::Codec::H264),
        _ => None,
    }
}

fn codec_from_wire(c: wire::Codec) -> Codec {
    match c {
        wire::Codec::Opus => Codec::Opus,
        wire::Codec::Vp8 => Codec::Vp8,
        wire::Codec::H264 => Codec::H264,
    }
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

    /// Send a local packet to the peers that want its layer.
    pub(super) fn relay_forward(&mut self, p: &Packet) {
        let Some(ep) = self.endpoints.get_mut(&p.source.endpoint) else {
            return;
        };
        let Some(src) = ep.sources.iter_mut().find(|s| s.mid == p.source.mid) else {
            return;
        };
        let bit = 1u32 << (p.layer % 32);
        if !src.relay_demand.iter().any(|(_, m)| m & bit != 0) {
            return;
        }
        let Some(&conference) = self.relay.numbers.get(&ep.room) else {
            return;
        };
        let Some(codec) = codec_to_wire(p.codec) else {
            return;
        };
        let header = MediaHeader {
            conference,
            source: src.relay_number,
            layer: p.layer as u8,
            marker: p.marker,
            retransmission: false,
            seq: p.seq as u16,
            timestamp: p.ts,
            audio_level: p.ext.audio_level.map(|l| l.unsigned_abs().min(127)),
            voice_activity: p.ext.voice_activity.unwrap_or(false),
            codec,
        };
        header.write(&p.payload, &mut self.relay.buf);
        let Some(layer) = src.layers.get_mut(p.layer) else {
            return;
        };
        let cap = if src.kind == Kind::Video {
            VIDEO_CACHE
        } else {
            AUDIO_CACHE
        };
        layer
            .relay_cache
            .get_or_insert_with(|| SendCache::new(cap))
            .insert(header.seq, &self.relay.buf);
        let datagram: Arc<[u8]> = Arc::from(self.relay.buf.as_slice());
        for (peer, mask) in &src.relay_demand {
            if mask & bit != 0 {
                self.stats.relay.datagrams_out += 1;
                self.stats.relay.bytes_out += datagram.len() as u64;
                self.out.push_back(Output::RelayDatagram {
                    peer: peer.clone(),
                    datagram: datagram.clone(),
                });
            }
        }
    }

    /// Periodic relay work: tell peers about layers that started or stopped,
    /// retry NACKs for holes that are still open.
    pub(super) fn relay_housekeeping(&mut self, now: Instant) {
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

    fn peer_nack(&mut self, peer: PeerId, n: msg::Nack) {
        let Some(r) = self.local_source_by_number(n.conference, n.source) else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        let Some(layer) = self
            .source_of(r)
            .and_then(|s| s.layers.get(n.layer as usize))
        else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        let mut found = Vec::new();
        let mut misses = 0;
        for seq in n.seqs {
            match layer.relay_cache.as_ref().and_then(|c| c.get(seq as u16)) {
                Some(d) => {
                    let mut d = d.to_vec();
                    wire::set_retransmission(&mut d);
                    found.push(d);
                }
                None => misses += 1,
            }
        }
        self.stats.relay.nack_misses += misses;
        for d in found {
            self.stats.relay.retransmissions += 1;
            self.stats.relay.datagrams_out += 1;
            self.stats.relay.bytes_out += d.len() as u64;
            self.out.push_back(Output::RelayDatagram {
                peer: peer.clone(),
                datagram: Arc::from(d),
            });
        }
    }

    /// A media datagram from a relay peer. The peer comes as the shared id
    /// (not `&str`): the lookup key then costs a reference count, not an
    /// allocation per packet.
    pub fn handle_relay_datagram(&mut self, now: Instant, peer: &PeerId, data: &[u8]) {
        self.relay_datagram_in(now, peer, data);
        self.settle(now);
    }

    /// Several media datagrams from `peer` that arrived together: each is
    /// forwarded, and receivers are polled once for all of them (as
    /// [`Core::handle_datagrams`] does for the media socket).
    pub fn handle_relay_datagrams<'a>(
        &mut self,
        now: Instant,
        peer: &PeerId,
        datagrams: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for d in datagrams {
            self.relay_datagram_in(now, peer, d);
        }
        self.settle(now);
    }

    fn relay_datagram_in(&mut self, now: Instant, peer: &PeerId, data: &[u8]) {
        self.stats.relay.datagrams_in += 1;
        self.stats.relay.bytes_in += data.len() as u64;
        let (h, payload) = match MediaHeader::parse(data) {
            Ok(v) => v,
            Err(e) => {
                trace!(%peer, error = %e, "relay datagram dropped");
                self.stats.relay.dropped_malformed += 1;
                return;
            }
        };
        // Within the datagram size a QUIC path allows this cannot happen, but
        // `OversizeMedia` carries any size: a payload no receiver can be sent
        // is the peer's bug, dropped here like any other malformed datagram.
        if payload.len() > super::MAX_PAYLOAD {
            trace!(%peer, len = payload.len(), "relay datagram payload too large");
            self.stats.relay.dropped_malformed += 1;
            return;
        }
        let Some(&(id, i)) = self
            .relay
            .remote_sources
            .get(&(peer.clone(), h.conference, h.source))
        else {
            self.stats.relay.dropped_unknown += 1;
            return;
        };
        let Some(rp) = self.relay.remotes.get_mut(&id) else {
            self.stats.relay.dropped_unknown += 1;
            return;
        };
        let (Some(src), Some(st)) = (rp.sources.get(i), rp.state.get_mut(i)) else {
            self.stats.relay.dropped_unknown += 1;
            return;
        };
        let layer = usize::from(h.layer);
        let Some(g) = st.gaps.get_mut(layer) else {
            self.stats.relay.dropped_unknown += 1;
            return;
        };
        let repaired = g.repaired;
        let Some(seq) = g.on_packet(now, h.seq) else {
            self.stats.relay.dropped_duplicate += 1;
            return;
        };
        self.stats.relay.repaired += g.repaired - repaired;
        let holes = g.has_holes();
        let mid = src.mid;
        let mut ext = ExtensionValues::default();
        if h.codec == wire::Codec::Opus {
            ext.audio_level = h.audio_level.map(|l| -(l as i8));
            ext.voice_activity = Some(h.voice_activity);
        }
        let packet = Packet {
            source: SourceRef { endpoint: id, mid },
            layer,
            codec: codec_from_wire(h.codec),
            seq,
            ts: h.timestamp,
            marker: h.marker,
            ext,
            payload: Arc::from(payload),
            wallclock: now,
        };
        self.fan_out(now, packet);
        if holes {
            self.relay
                .poll_nacks(now, id, &mut self.stats.relay, &mut self.out);
        }
    }
}
