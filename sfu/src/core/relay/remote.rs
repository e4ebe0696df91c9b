//! Remote participants: people connected to other bridges, as local
//! receivers see them — joined and left, their sources (which local slots
//! can show like any local source), and the bounds on what one peer may
//! make this bridge allocate. Their media arrives in `media.rs`.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{Mid, Rid};
use tern_relay::msg;
use tern_relay::repair::GapTracker;
use tracing::info;

use super::{PeerId, Relay};
use crate::core::{Core, EndpointId, Layer, PubSource};
use crate::signal::{Kind, ParticipantInfo, ServerMessage};

/// What one peer may announce: sources per participant and simulcast layers
/// per source, with room above what signalling lets a client declare (8 and
/// 3) for a newer peer. Participants per conference and peer are capped at
/// `max_participants_per_conference`. Beyond that an announcement is refused
/// and counted: a buggy or compromised peer must not make this bridge
/// allocate without bound.
const MAX_REMOTE_SOURCES: usize = 16;
const MAX_REMOTE_LAYERS: usize = 4;
/// Announced layer bitrates are taken up to this: allocation adds and
/// scales them, and a peer's number must not overflow that arithmetic.
const MAX_ANNOUNCED_BPS: u64 = 1_000_000_000;

#[derive(Debug)]
pub(in crate::core) struct RemoteSource {
    /// Layers this bridge last asked the origin for.
    pub(super) demand_sent: u32,
    pub(super) gaps: Vec<GapTracker>,
}

/// A participant connected to another bridge, as this bridge sees it.
#[derive(Debug)]
pub(in crate::core) struct RemoteParticipant {
    pub(super) peer: PeerId,
    /// The origin's number for the conference.
    pub(super) conference: u32,
    pub(in crate::core) room: Arc<str>,
    pub(in crate::core) participant: String,
    pub(super) name: String,
    pub(in crate::core) sources: Vec<PubSource>,
    /// Parallel to `sources`.
    pub(super) state: Vec<RemoteSource>,
    /// Announced again since the link last came back (see `RECONFIRM`).
    pub(super) confirmed: bool,
}

impl RemoteParticipant {
    pub(in crate::core) fn source(&self, mid: Mid) -> Option<&PubSource> {
        self.sources.iter().find(|s| s.mid == mid)
    }

    pub(in crate::core) fn source_mut(&mut self, mid: Mid) -> Option<&mut PubSource> {
        self.sources.iter_mut().find(|s| s.mid == mid)
    }

    pub(super) fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.participant.clone(),
            name: self.name.clone(),
            sources: self
                .sources
                .iter()
                .map(|s| s.info(&self.participant))
                .collect(),
        }
    }
}

impl Core {
    /// A peer announces one of its conferences, which is `c.name` here.
    pub(super) fn remote_conference_joined(
        &mut self,
        now: Instant,
        peer: PeerId,
        c: msg::ConferenceJoined,
    ) {
        let room: Arc<str> = match self.conferences.get_key_value(c.name.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(c.name.as_str()),
        };
        if let Some((_, seen)) = self.relay.reconfirm.get_mut(&peer) {
            seen.push(c.number);
        }
        // One number per room and peer: a room announced again
        // under a new number (it ended and restarted there while a
        // "left" was lost) replaces the old one and its participants.
        let stale: Vec<u32> = self
            .relay
            .remote_confs
            .iter()
            .filter(|((p, n), r)| *p == peer && *n != c.number && **r == room)
            .map(|((_, n), _)| *n)
            .collect();
        for n in stale {
            self.relay.remote_confs.remove(&(peer.clone(), n));
            let ids: Vec<EndpointId> = self
                .relay
                .remotes
                .iter()
                .filter(|(_, r)| r.peer == peer && r.conference == n)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.remove_remote(now, id);
            }
        }
        self.relay.remote_confs.insert((peer, c.number), room);
    }

    /// A peer's conference ended there: its participants leave.
    pub(super) fn remote_conference_left(
        &mut self,
        now: Instant,
        peer: PeerId,
        c: msg::ConferenceLeft,
    ) {
        if let Some(room) = self.relay.remote_confs.remove(&(peer.clone(), c.number)) {
            self.remove_remotes_where(now, &room, |r| r.peer == peer && r.conference == c.number);
        } else {
            self.stats.relay.control_unknown += 1;
        }
    }

    pub(super) fn remote_joined(&mut self, peer: PeerId, p: msg::ParticipantJoined) {
        let Some(room) = self
            .relay
            .remote_confs
            .get(&(peer.clone(), p.conference))
            .cloned()
        else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        if let Some(id) = self.relay.find_remote(&peer, p.conference, &p.participant) {
            if let Some(rp) = self.relay.remotes.get_mut(&id) {
                rp.confirmed = true;
            }
            return;
        }
        // Stale news of someone connected here now (see remove_remote).
        if self.is_local_participant(&room, &p.participant) {
            return;
        }
        let from_peer = self.relay.remote_rooms.get(&room).map_or(0, |ids| {
            ids.iter()
                .filter(|i| self.relay.remotes.get(i).is_some_and(|r| r.peer == peer))
                .count()
        });
        if from_peer >= self.cfg.max_participants_per_conference {
            self.stats.relay.control_refused += 1;
            return;
        }
        let id = EndpointId(self.relay.next_remote);
        self.relay.next_remote += 1;
        let rp = RemoteParticipant {
            peer: peer.clone(),
            conference: p.conference,
            room: room.clone(),
            participant: p.participant,
            name: p.name,
            sources: Vec::new(),
            state: Vec::new(),
            confirmed: true,
        };
        info!(%peer, %room, participant = %rp.participant, "remote participant joined");
        let info = rp.info();
        self.relay.remotes.insert(id, rp);
        self.relay
            .remote_rooms
            .entry(room.clone())
            .or_default()
            .push(id);
        for o in self.local_endpoints(&room) {
            self.signal(
                o,
                ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            );
        }
    }

    pub(super) fn local_endpoints(&self, room: &str) -> Vec<EndpointId> {
        self.conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default()
    }

    pub(super) fn remove_remote(&mut self, now: Instant, id: EndpointId) {
        let Some(rp) = self.relay.remotes.remove(&id) else {
            return;
        };
        info!(peer = %rp.peer, room = %rp.room, participant = %rp.participant, "remote participant left");
        self.speech_forget(&rp.room, id);
        for s in &rp.sources {
            self.unsubscribe_all(s);
            self.relay
                .remote_sources
                .remove(&(rp.peer.clone(), rp.conference, s.relay_number));
        }
        if let Some(list) = self.relay.remote_rooms.get_mut(&rp.room) {
            list.retain(|&i| i != id);
            if list.is_empty() {
                self.relay.remote_rooms.remove(&rp.room);
            }
        }
        let locals = self.local_endpoints(&rp.room);
        // The participant may be here now (moved onto this bridge before its
        // old bridge's "left" crossed the relay): then it has not left.
        if !self.is_local_participant(&rp.room, &rp.participant) {
            for &o in &locals {
                self.signal(
                    o,
                    ServerMessage::ParticipantLeft {
                        id: rp.participant.clone(),
                    },
                );
            }
        }
        self.assign_slots_in(now, &rp.room, &locals);
    }

    pub(super) fn is_local_participant(&self, room: &str, participant: &str) -> bool {
        self.conferences.get(room).is_some_and(|c| {
            c.endpoints.iter().any(|e| {
                self.endpoints
                    .get(e)
                    .is_some_and(|ep| ep.participant == participant)
            })
        })
    }

    /// A participant joined here while another bridge still announces it
    /// (it moved faster than its old bridge's news): the local connection is
    /// the live one, the remote copy goes without a `participant_left`.
    pub(in crate::core) fn relay_drop_remote_copies(
        &mut self,
        now: Instant,
        room: &str,
        participant: &str,
    ) {
        self.remove_remotes_where(now, room, |r| r.participant == participant);
    }

    /// Remove the remote participants of `room` that `which` picks.
    pub(super) fn remove_remotes_where(
        &mut self,
        now: Instant,
        room: &str,
        which: impl Fn(&RemoteParticipant) -> bool,
    ) {
        let ids: Vec<EndpointId> = self
            .relay
            .remote_rooms
            .get(room)
            .into_iter()
            .flatten()
            .copied()
            .filter(|i| self.relay.remotes.get(i).is_some_and(&which))
            .collect();
        for id in ids {
            self.remove_remote(now, id);
        }
    }

    pub(super) fn remote_sources(&mut self, now: Instant, peer: PeerId, m: msg::Sources) {
        let Some(id) = self.relay.find_remote(&peer, m.conference, &m.participant) else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        let Some(rp) = self.relay.remotes.get_mut(&id) else {
            return;
        };
        rp.confirmed = true;
        // What clients were told: an announcement that only refreshes layer
        // facts (activity, bitrates) is not news to them.
        let told = rp.info().sources;
        let mut wanted: Vec<(PubSource, RemoteSource)> = Vec::new();
        for w in m.sources {
            let Ok(number) = u16::try_from(w.number) else {
                self.stats.relay.control_unknown += 1;
                continue;
            };
            if wanted.len() >= MAX_REMOTE_SOURCES || w.layers.len() > MAX_REMOTE_LAYERS {
                self.stats.relay.control_refused += 1;
                continue;
            }
            let kind = if w.kind == msg::Kind::Audio as i32 {
                Kind::Audio
            } else {
                Kind::Video
            };
            // Sources that stay keep their state (subscribers, gates,
            // sequence tracking); layer facts are refreshed.
            let old = rp.sources.iter().position(|s| {
                s.relay_number == number
                    && s.kind == kind
                    && s.layers.len() == w.layers.len()
                    && s.svc == w.svc
            });
            let (mut src, st) = match old {
                Some(i) => {
                    let s = rp.sources.swap_remove(i);
                    let st = rp.state.swap_remove(i);
                    (s, st)
                }
                None => {
                    let layers = w
                        .layers
                        .iter()
                        .map(|l| {
                            Layer::new(
                                (!l.rid.is_empty()).then(|| Rid::from(l.rid.as_str())),
                                l.height,
                            )
                        })
                        .collect::<Vec<_>>();
                    let n = layers.len();
                    (
                        PubSource {
                            id: w.id.clone(),
                            name: w.name.clone(),
                            kind,
                            mid: Mid::from(format!("r{number}").as_str()),
                            muted: w.muted,
                            layers,
                            subscribers: Vec::new(),
                            relay_number: number,
                            relay_demand: Vec::new(),
                            relay_active_sent: 0,
                            svc: w.svc,
                            relay_sent_at: None,
                            constraint: Default::default(),
                            silence: Default::default(),
                            record: Default::default(),
                            repair: Default::default(),
                        },
                        RemoteSource {
                            demand_sent: 0,
                            gaps: (0..n).map(|_| GapTracker::default()).collect(),
                        },
                    )
                }
            };
            src.muted = w.muted;
            src.name = w.name;
            src.id = w.id;
            for (l, wl) in src.layers.iter_mut().zip(&w.layers) {
                l.declared_height = wl.height;
                l.remote_active = Some(wl.active);
                // 0: unknown (not measured yet, or an older peer).
                l.announced_bps =
                    (wl.bitrate_bps > 0).then_some(wl.bitrate_bps.min(MAX_ANNOUNCED_BPS));
            }
            wanted.push((src, st));
        }
        let removed: Vec<PubSource> = std::mem::take(&mut rp.sources);
        rp.state.clear();
        let conference = rp.conference;
        for (s, st) in wanted {
            rp.sources.push(s);
            rp.state.push(st);
        }
        let room = rp.room.clone();
        let participant = rp.participant.clone();
        let infos: Vec<_> = rp.sources.iter().map(|s| s.info(&participant)).collect();
        let numbers: Vec<u16> = rp.sources.iter().map(|s| s.relay_number).collect();
        for s in &removed {
            self.unsubscribe_all(s);
            self.relay
                .remote_sources
                .remove(&(peer.clone(), conference, s.relay_number));
        }
        for (i, n) in numbers.into_iter().enumerate() {
            self.relay
                .remote_sources
                .insert((peer.clone(), conference, n), (id, i));
        }
        let locals = self.local_endpoints(&room);
        if infos != told {
            for &o in &locals {
                self.signal(
                    o,
                    ServerMessage::Sources {
                        participant: participant.clone(),
                        sources: infos.clone(),
                    },
                );
            }
        }
        self.assign_slots_in(now, &room, &locals);
        for o in locals {
            self.reallocate(now, o);
        }
        self.relay.demand_dirty = true;
    }
}

impl Relay {
    /// Remote participants known in `room` (ids).
    pub(super) fn participants_in(&self, room: &str) -> Vec<String> {
        self.remote_rooms
            .get(room)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.remotes.get(i).map(|r| r.participant.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(in crate::core) fn participant_infos(&self, room: &str) -> Vec<ParticipantInfo> {
        self.remote_rooms
            .get(room)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.remotes.get(i).map(RemoteParticipant::info))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(in crate::core) fn publishers<'a>(
        &'a self,
        room: &str,
    ) -> impl Iterator<Item = (EndpointId, &'a [PubSource])> + 'a {
        self.remote_rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|i| self.remotes.get(i).map(|r| (*i, r.sources.as_slice())))
    }

    /// Layer `layer` of the origin's source `number` in its conference
    /// `conference` on `peer`'s side.
    pub(in crate::core) fn remote_layer_mut(
        &mut self,
        peer: &PeerId,
        conference: u32,
        number: u16,
        layer: u32,
    ) -> Option<&mut Layer> {
        let &(id, i) = self
            .remote_sources
            .get(&(peer.clone(), conference, number))?;
        let src = self.remotes.get_mut(&id)?.sources.get_mut(i)?;
        src.layers.get_mut(usize::try_from(layer).ok()?)
    }

    pub(super) fn find_remote(
        &self,
        peer: &PeerId,
        conference: u32,
        participant: &str,
    ) -> Option<EndpointId> {
        let room = self.remote_confs.get(&(peer.clone(), conference))?;
        self.remote_rooms.get(room)?.iter().copied().find(|i| {
            self.remotes.get(i).is_some_and(|r| {
                &r.peer == peer && r.conference == conference && r.participant == participant
            })
        })
    }
}
