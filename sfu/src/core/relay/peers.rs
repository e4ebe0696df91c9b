//! Relay peers: which other bridges the focus says share each room, the
//! state of the link to each (up, its RTT, down since when), and what a
//! link going down or a peer leaving a room does to the participants it
//! brought (frozen for `REMOTE_GRACE`, then gone). Sends no media.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_relay::msg::{self, relay_control::Msg};
use tracing::info;

use super::{PeerId, Relay};
use crate::core::{Core, EndpointId, Output};

/// Used for NACK retries until the shell reports the link's RTT.
const DEFAULT_RTT: Duration = Duration::from_millis(50);
/// How long a peer's participants stay (frozen) after its link dropped, in
/// case it comes back. A bridge that really failed is withdrawn sooner by
/// the focus (`handle_relay_peers`); this bounds a relay-only partition.
const REMOTE_GRACE: Duration = Duration::from_secs(30);
/// After a link comes back, how long the peer has to announce again what it
/// still has; remote participants it does not mention by then are gone.
const RECONFIRM: Duration = Duration::from_secs(3);

impl Core {
    /// The focus says these other bridges host `room` too (complete list).
    pub fn handle_relay_peers(&mut self, now: Instant, room: &str, peers: &[String]) {
        let room: Arc<str> = Arc::from(room);
        let new: Vec<PeerId> = peers.iter().map(|p| Arc::from(p.as_str())).collect();
        let old = self.relay.room_peers.remove(&room).unwrap_or_default();
        for p in old.iter().filter(|p| !new.contains(p)) {
            self.relay_forget_peer_in_room(now, &room, p);
        }
        if !new.is_empty() {
            self.relay.room_peers.insert(room.clone(), new.clone());
        }
        if self.conferences.contains_key(&room) {
            for p in new.iter().filter(|p| !old.contains(p)) {
                if self.relay.links.contains_key(p) {
                    self.relay_announce(now, &room, p);
                }
            }
        }
        self.settle(now);
    }

    /// The link to `peer` completed its hello: announce shared rooms.
    pub fn handle_relay_link_up(&mut self, now: Instant, peer: &str) {
        let peer: PeerId = Arc::from(peer);
        info!(%peer, "relay link up");
        self.relay.link_up(now, &peer);
        let rooms: Vec<Arc<str>> = self
            .relay
            .room_peers
            .iter()
            .filter(|(r, ps)| ps.contains(&peer) && self.conferences.contains_key(*r))
            .map(|(r, _)| r.clone())
            .collect();
        for room in rooms {
            self.relay_announce(now, &room, &peer);
        }
        self.settle(now);
    }

    /// The link's measured round trip time (paces NACK retries).
    pub fn handle_relay_rtt(&mut self, peer: &str, rtt: Duration) {
        self.relay.set_rtt(peer, rtt);
    }

    /// The link to `peer` is gone. Its participants stay, frozen, for
    /// `REMOTE_GRACE`: a relay hiccup must not make people vanish and come
    /// back. What we told the peer is void: it is announced again, and the
    /// peer says again what it wants, when the link returns.
    pub fn handle_relay_link_down(&mut self, now: Instant, peer: &str) {
        let peer: PeerId = Arc::from(peer);
        self.relay.link_down(now, &peer);
        for ep in self.endpoints.values_mut() {
            for s in &mut ep.sources {
                s.relay_demand.retain(|(p, _)| *p != peer);
            }
        }
        self.settle(now);
    }

    /// Forget everything about `peer` in every room: its participants leave.
    pub(super) fn relay_forget_peer(&mut self, now: Instant, peer: &PeerId) {
        let rooms: Vec<Arc<str>> = self
            .relay
            .announced
            .keys()
            .chain(self.relay.remote_rooms.keys())
            .cloned()
            .collect();
        for room in rooms {
            self.relay_forget_peer_in_room(now, &room, peer);
        }
        self.relay.remote_confs.retain(|(p, _), _| p != peer);
        self.relay.down_since.remove(peer);
        self.relay.reconfirm.remove(peer);
    }

    /// Stop exchanging `room` with `peer`: its participants leave, it no
    /// longer gets our media for the room.
    pub(super) fn relay_forget_peer_in_room(
        &mut self,
        now: Instant,
        room: &Arc<str>,
        peer: &PeerId,
    ) {
        if let Some(list) = self.relay.announced.get_mut(room)
            && let Some(i) = list.iter().position(|p| p == peer)
        {
            list.swap_remove(i);
            if let Some(&number) = self.relay.numbers.get(room)
                && self.relay.links.contains_key(peer)
            {
                self.out.push_back(Output::RelayControl {
                    peer: peer.clone(),
                    msg: Msg::ConferenceLeft(msg::ConferenceLeft { number }),
                });
            }
        }
        let locals = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        for id in locals {
            if let Some(ep) = self.endpoints.get_mut(&id) {
                for s in &mut ep.sources {
                    s.relay_demand.retain(|(p, _)| p != peer);
                }
            }
        }
        self.remove_remotes_where(now, room, |r| &r.peer == peer);
        self.relay
            .remote_confs
            .retain(|(p, _), r| !(p == peer && r == room));
    }

    /// Let go of peers that stayed away too long, and of what a returning
    /// peer did not announce again.
    pub(super) fn relay_expire(&mut self, now: Instant) {
        let gone: Vec<PeerId> = self
            .relay
            .down_since
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= REMOTE_GRACE)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in gone {
            info!(%peer, "relay link stayed down; its participants leave");
            self.relay_forget_peer(now, &peer);
        }
        let settled: Vec<PeerId> = self
            .relay
            .reconfirm
            .iter()
            .filter(|(_, (until, _))| now >= *until)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in settled {
            let Some((_, seen)) = self.relay.reconfirm.remove(&peer) else {
                continue;
            };
            let stale: Vec<EndpointId> = self
                .relay
                .remotes
                .iter()
                .filter(|(_, r)| r.peer == peer && !r.confirmed)
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                self.remove_remote(now, id);
            }
            self.relay
                .remote_confs
                .retain(|(p, n), _| *p != peer || seen.contains(n));
        }
    }
}

impl Relay {
    pub(super) fn set_rtt(&mut self, peer: &str, rtt: Duration) {
        if let Some(r) = self.links.get_mut(peer) {
            *r = rtt;
        }
    }

    /// The link to `peer` is ready. Participants kept through an outage
    /// must be announced again; our demand for their media starts afresh on
    /// the new link.
    pub(super) fn link_up(&mut self, now: Instant, peer: &PeerId) {
        self.links.insert(peer.clone(), DEFAULT_RTT);
        if self.down_since.remove(peer).is_some() {
            for rp in self.remotes.values_mut().filter(|r| r.peer == *peer) {
                rp.confirmed = false;
                for st in &mut rp.state {
                    st.demand_sent = 0;
                    for g in &mut st.gaps {
                        g.reset();
                    }
                }
            }
            self.reconfirm
                .insert(peer.clone(), (now + RECONFIRM, Vec::new()));
            self.demand_dirty = true;
        }
    }

    /// The link to `peer` is gone: what it was told is void, its
    /// participants wait for it (`REMOTE_GRACE`).
    pub(super) fn link_down(&mut self, now: Instant, peer: &PeerId) {
        if self.links.remove(peer).is_some() {
            info!(%peer, "relay link down");
        }
        for list in self.announced.values_mut() {
            list.retain(|p| p != peer);
        }
        self.reconfirm.remove(peer);
        self.down_since.entry(peer.clone()).or_insert(now);
    }
}
