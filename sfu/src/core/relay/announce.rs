//! Announcing this bridge's side of a room to its peers: the conference,
//! each local participant and its sources (layers, heights, activity,
//! bitrates), and their departures. Only local participants are ever
//! announced — what a peer announced is never passed on — which keeps the
//! mesh loop-free.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_relay::msg::{self, relay_control::Msg};
use tracing::debug;

use super::{PeerId, Relay};
use crate::core::{Core, EndpointId, Layer, Output, PubSource};
use crate::signal::Kind;

/// A layer's bitrate is announced again when it and what peers were last
/// told differ by more than this fraction of the smaller (either way: a
/// first rate inflated by start-up keyframes is corrected too)...
const RATE_CHANGE: f64 = 0.25;
/// ...but a source's layers are not announced again for a bitrate change
/// sooner than this after the last time (the control stream is shared).
const RATE_ANNOUNCE: Duration = Duration::from_secs(1);

impl Core {
    /// Tell `peer` everything about our side of `room`.
    pub(super) fn relay_announce(&mut self, now: Instant, room: &Arc<str>, peer: &PeerId) {
        let announced = self.relay.announced.entry(room.clone()).or_default();
        if announced.contains(peer) {
            return;
        }
        announced.push(peer.clone());
        let number = self.relay.number_for(room);
        debug!(%peer, %room, number, "announcing conference to relay peer");
        self.out.push_back(Output::RelayControl {
            peer: peer.clone(),
            msg: Msg::ConferenceJoined(msg::ConferenceJoined {
                number,
                name: room.to_string(),
            }),
        });
        let locals = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        for id in locals {
            self.relay_send_participant(now, number, id, std::slice::from_ref(peer));
        }
    }

    pub(super) fn relay_send_participant(
        &mut self,
        now: Instant,
        number: u32,
        id: EndpointId,
        peers: &[PeerId],
    ) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        for p in peers {
            self.out.push_back(Output::RelayControl {
                peer: p.clone(),
                msg: Msg::ParticipantJoined(msg::ParticipantJoined {
                    conference: number,
                    participant: ep.participant.clone(),
                    name: ep.name.clone(),
                }),
            });
        }
        self.relay_send_sources(now, number, id, peers);
        self.relay_send_clocks(number, id, peers);
    }

    pub(super) fn relay_send_sources(
        &mut self,
        now: Instant,
        number: u32,
        id: EndpointId,
        peers: &[PeerId],
    ) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let mut sources = Vec::with_capacity(ep.sources.len());
        for s in &mut ep.sources {
            let (w, sig) = source_to_wire(s, now);
            s.relay_active_sent = sig;
            s.relay_sent_at = Some(now);
            for (l, wl) in s.layers.iter_mut().zip(&w.layers) {
                l.relay_bps_sent = wl.bitrate_bps;
            }
            sources.push(w);
        }
        let m = msg::Sources {
            conference: number,
            participant: ep.participant.clone(),
            sources,
        };
        for p in peers {
            self.out.push_back(Output::RelayControl {
                peer: p.clone(),
                msg: Msg::Sources(m.clone()),
            });
        }
    }

    /// A local endpoint joined `room`.
    pub(in crate::core) fn relay_local_joined(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        id: EndpointId,
    ) {
        let Some(peers) = self.relay.room_peers.get(room).cloned() else {
            return;
        };
        let announced = self.relay.announced_peers(room);
        for p in peers {
            if !self.relay.links.contains_key(&p) {
                continue;
            }
            if announced.contains(&p) {
                let number = self.relay.number_for(room);
                self.relay_send_participant(now, number, id, std::slice::from_ref(&p));
            } else {
                self.relay_announce(now, room, &p);
            }
        }
    }

    /// A local endpoint's sources changed (declared, muted).
    pub(in crate::core) fn relay_local_sources(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        id: EndpointId,
    ) {
        let peers = self.relay.announced_peers(room);
        if peers.is_empty() {
            return;
        }
        let number = self.relay.number_for(room);
        self.relay_send_sources(now, number, id, &peers);
    }

    /// A local participant left `room` (its endpoint is already removed).
    pub(in crate::core) fn relay_local_left(&mut self, room: &Arc<str>, participant: &str) {
        let peers = self.relay.announced_peers(room);
        let Some(&number) = self.relay.numbers.get(room) else {
            return;
        };
        for p in &peers {
            self.out.push_back(Output::RelayControl {
                peer: p.clone(),
                msg: Msg::ParticipantLeft(msg::ParticipantLeft {
                    conference: number,
                    participant: participant.to_owned(),
                }),
            });
        }
        if !self.conferences.contains_key(room) {
            for p in &peers {
                self.out.push_back(Output::RelayControl {
                    peer: p.clone(),
                    msg: Msg::ConferenceLeft(msg::ConferenceLeft { number }),
                });
            }
            self.relay.announced.remove(room);
            self.relay.numbers.remove(room);
            self.relay.by_number.remove(&number);
        }
    }

    /// Tell peers about local sources whose layers started or stopped, or
    /// whose bitrates moved (see `RATE_CHANGE`, `RATE_ANNOUNCE`).
    pub(super) fn relay_announce_changes(&mut self, now: Instant) {
        let rooms: Vec<(Arc<str>, Vec<PeerId>)> = self
            .relay
            .announced
            .iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(r, ps)| (r.clone(), ps.clone()))
            .collect();
        for (room, peers) in rooms {
            let Some(&number) = self.relay.numbers.get(&room) else {
                continue;
            };
            let locals = self
                .conferences
                .get(&room)
                .map(|c| c.endpoints.clone())
                .unwrap_or_default();
            for id in locals {
                let changed = self.endpoints.get(&id).is_some_and(|ep| {
                    ep.sources.iter().any(|s| {
                        source_signature(s, now) != s.relay_active_sent || rate_moved(s, now)
                    })
                });
                if changed {
                    self.relay_send_sources(now, number, id, &peers);
                }
            }
        }
    }
}

impl Relay {
    pub(in crate::core) fn announced_peers(&self, room: &str) -> Vec<PeerId> {
        self.announced.get(room).cloned().unwrap_or_default()
    }
}

fn kind_to_wire(k: Kind) -> i32 {
    match k {
        Kind::Audio => msg::Kind::Audio as i32,
        Kind::Video => msg::Kind::Video as i32,
    }
}

/// A signature of what changes about a source while it runs (which layers
/// are active, their measured heights): cheap to recompute every
/// housekeeping tick, unlike the message itself.
fn source_signature(s: &PubSource, now: Instant) -> u32 {
    let svc = if s.svc { 0x8000 } else { 0 };
    s.layers.iter().enumerate().fold(svc, |sig, (i, l)| {
        let active = if l.available(now) { 1 << (i % 15) } else { 0 };
        (sig | active).wrapping_add(l.height().wrapping_mul(0x0001_0000))
    })
}

/// What a layer of a local source costs, as peers are told: its rate now,
/// else the last one measured while it flowed; 0 if it never has. Video
/// only: audio always crosses, so peers measure it themselves.
fn layer_bps(kind: Kind, l: &Layer) -> u64 {
    match kind {
        Kind::Video => l.rate.current_bps().or(l.rate.last_bps()).unwrap_or(0),
        Kind::Audio => 0,
    }
}

/// Whether a layer's bitrate moved enough since it was last announced to
/// announce it again, and the last announcement is old enough.
fn rate_moved(s: &PubSource, now: Instant) -> bool {
    if s.relay_sent_at
        .is_some_and(|t| now.saturating_duration_since(t) < RATE_ANNOUNCE)
    {
        return false;
    }
    s.layers.iter().any(|l| {
        let (new, old) = (layer_bps(s.kind, l), l.relay_bps_sent);
        match (old, new) {
            (_, 0) => false,
            (0, _) => true,
            _ => new.abs_diff(old) as f64 > new.min(old) as f64 * RATE_CHANGE,
        }
    })
}

/// What a local source looks like to peers, and its signature.
fn source_to_wire(s: &PubSource, now: Instant) -> (msg::Source, u32) {
    let layers = s
        .layers
        .iter()
        .map(|l| msg::Layer {
            rid: l.rid.map(|r| r.to_string()).unwrap_or_default(),
            height: l.height(),
            // Paused by a sender constraint counts: the peer's receivers
            // may ask for it, and it resumes.
            active: l.available(now),
            bitrate_bps: layer_bps(s.kind, l),
        })
        .collect();
    let source = msg::Source {
        number: u32::from(s.relay_number),
        id: s.id.clone(),
        name: s.name.clone(),
        kind: kind_to_wire(s.kind),
        muted: s.muted,
        layers,
        svc: s.svc,
    };
    (source, source_signature(s, now))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use str0m::media::Mid;

    use super::*;

    fn camera(kind: Kind) -> PubSource {
        PubSource {
            id: "p/camera".into(),
            name: "camera".into(),
            kind,
            mid: Mid::from("0"),
            muted: false,
            layers: vec![Layer::new(None, 180)],
            subscribers: Vec::new(),
            relay_number: 1,
            relay_demand: Vec::new(),
            relay_active_sent: 0,
            svc: false,
            relay_sent_at: None,
            constraint: Default::default(),
            silence: Default::default(),
            record: Default::default(),
            repair: Default::default(),
        }
    }

    /// `bytes` every 10 ms for 2 s from `t0`, measured at the end.
    fn flow(s: &mut PubSource, t0: Instant, bytes: usize) -> Instant {
        let l = &mut s.layers[0];
        for i in 0..200u32 {
            l.rate.add(t0 + Duration::from_millis(10) * i, bytes);
        }
        let end = t0 + Duration::from_secs(2);
        l.rate.update(end);
        end
    }

    #[test]
    fn a_bitrate_is_announced_once_known_and_again_when_it_moves_a_quarter() {
        let t0 = Instant::now();
        let mut s = camera(Kind::Video);
        assert!(!rate_moved(&s, t0), "nothing measured: nothing to tell");
        let now = flow(&mut s, t0, 1000);
        let bps = layer_bps(s.kind, &s.layers[0]);
        assert!((780_000..=820_000).contains(&bps), "{bps}");
        assert!(rate_moved(&s, now), "from unknown to known");
        let (w, _) = source_to_wire(&s, now);
        assert_eq!(w.layers[0].bitrate_bps, bps);

        // As `relay_send_sources` records it.
        s.relay_sent_at = Some(now);
        s.layers[0].relay_bps_sent = bps;
        let later = now + RATE_ANNOUNCE;
        assert!(!rate_moved(&s, later), "unchanged");
        s.layers[0].relay_bps_sent = bps * 10 / 12;
        assert!(!rate_moved(&s, later), "within a quarter");
        s.layers[0].relay_bps_sent = bps / 2;
        assert!(rate_moved(&s, later), "doubled");
        // 30 % over what it is now: down by less than a quarter of what was
        // told, but what was told is more than a quarter too high.
        s.layers[0].relay_bps_sent = bps * 13 / 10;
        assert!(rate_moved(&s, later), "fell");
        assert!(
            !rate_moved(&s, now + RATE_ANNOUNCE / 2),
            "but not sooner than RATE_ANNOUNCE after the last time"
        );

        // A layer that stops is told at its last flowing rate, not 0.
        let stopped = later + Duration::from_secs(5);
        s.layers[0].rate.update(stopped);
        assert_eq!(layer_bps(s.kind, &s.layers[0]), bps);
    }

    #[test]
    fn audio_bitrates_are_not_announced() {
        let t0 = Instant::now();
        let mut s = camera(Kind::Audio);
        let now = flow(&mut s, t0, 100);
        assert!(!rate_moved(&s, now));
        assert_eq!(source_to_wire(&s, now).0.layers[0].bitrate_bps, 0);
    }
}
