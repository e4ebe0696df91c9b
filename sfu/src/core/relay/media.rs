//! Relay media: local packets out to the peers that demand their layer,
//! peers' datagrams in (fanned out like local media), and hop-by-hop
//! repair — the per-layer send cache that answers peers' NACKs, and the gap
//! trackers whose holes this bridge NACKs. Never relays what came from a
//! peer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::rtp::ExtensionValues;
use tern_relay::msg::{self, relay_control::Msg};
use tern_relay::repair::SendCache;
use tern_relay::wire::{self, MediaHeader};
use tracing::trace;

use super::{PeerId, Relay};
use crate::core::{Core, EndpointId, MAX_PAYLOAD, Output, Packet, SourceRef};
use crate::signal::Kind;
use crate::stats::RelayStats;

/// Datagrams kept per source layer to answer peers' NACKs (~1 s of 720p).
const VIDEO_CACHE: usize = 512;
const AUDIO_CACHE: usize = 64;

fn codec_to_wire(c: Codec) -> Option<wire::Codec> {
    match c {
        Codec::Opus => Some(wire::Codec::Opus),
        Codec::Vp8 => Some(wire::Codec::Vp8),
        Codec::H264 => Some(wire::Codec::H264),
        Codec::Vp9 => Some(wire::Codec::Vp9),
        Codec::Av1 => Some(wire::Codec::Av1),
        _ => None,
    }
}

fn codec_from_wire(c: wire::Codec) -> Codec {
    match c {
        wire::Codec::Opus => Codec::Opus,
        wire::Codec::Vp8 => Codec::Vp8,
        wire::Codec::H264 => Codec::H264,
        wire::Codec::Vp9 => Codec::Vp9,
        wire::Codec::Av1 => Codec::Av1,
    }
}

impl Core {
    /// Send a local packet to the peers that want its layer.
    pub(in crate::core) fn relay_forward(&mut self, p: &Packet) {
        let Some(ep) = self.endpoints.get_mut(&p.source.endpoint) else {
            return;
        };
        let Some(src) = ep.sources.iter_mut().find(|s| s.mid == p.source.mid) else {
            return;
        };
        // An SVC source's one stream crosses whole when any of its spatial
        // layers is wanted: each bridge leaves out, for its own receivers,
        // what is above their layers.
        let bit = if src.svc {
            u32::MAX
        } else {
            1u32 << (p.layer % 32)
        };
        // Speech goes to every bridge of the conference, wanted there or
        // not: each decides its own dominant speaker and audio slots from
        // the whole conference's levels. Silence was suppressed before
        // this, so that is the few who talk.
        let audio = src.kind == Kind::Audio;
        if !audio && !src.relay_demand.iter().any(|(_, m)| m & bit != 0) {
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
        // The relay carries the plain codec: RED's primary block (the
        // receiving bridge's receivers may not take RED).
        let payload = if p.red {
            match crate::red::red_primary(&p.payload) {
                Some(primary) => primary,
                None => return,
            }
        } else {
            &p.payload[..]
        };
        header.write(payload, &mut self.relay.buf);
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
        if audio {
            let peers = self.relay.room_peers.get(&ep.room).into_iter().flatten();
            for peer in peers.filter(|p| self.relay.links.contains_key(*p)) {
                self.stats.relay.datagrams_out += 1;
                self.stats.relay.bytes_out += datagram.len() as u64;
                self.out.push_back(Output::RelayDatagram {
                    peer: peer.clone(),
                    datagram: datagram.clone(),
                });
            }
            return;
        }
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

    pub(super) fn peer_nack(&mut self, peer: PeerId, n: msg::Nack) {
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

    pub(super) fn relay_datagram_in(&mut self, now: Instant, peer: &PeerId, data: &[u8]) {
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
        if payload.len() > MAX_PAYLOAD {
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
            red: false,
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

impl Relay {
    pub(super) fn poll_nacks(
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
}
