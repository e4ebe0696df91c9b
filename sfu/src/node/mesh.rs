//! The relay mesh policy: which peer bridges this bridge keeps a connection
//! to, which of them it dials, and when it dials again.
//!
//! - The focus names, per conference, the other bridges hosting it (id and
//!   relay address). A peer is wanted while some conference names it.
//! - Of two bridges, the one with the smaller id dials; the other only
//!   accepts. So a pair never ends up with two connections.
//! - A dial that fails, or a connection that drops, is retried after a
//!   backoff that starts at 100 ms and doubles up to 2 s; a connection that
//!   came up resets it.
//! - A peer no conference names any more is let go (its connection closed,
//!   whichever side dialled).
//!
//! Sans-IO: the shell performs [`MeshAction`]s and reports what became of
//! them; time comes in as an argument.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// First retry delay after a failed dial or a dropped connection.
pub const REDIAL_MIN: Duration = Duration::from_millis(100);
/// The longest retry delay.
pub const REDIAL_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshAction {
    /// Open a connection to `peer` at `addr` and report
    /// [`Mesh::connected`] or [`Mesh::dial_failed`].
    Dial { peer: String, addr: String },
    /// Close any connection to `peer` (dialled or accepted).
    Close { peer: String, reason: &'static str },
}

#[derive(Debug)]
struct Dialler {
    addr: String,
    /// A dial is under way or the connection is up: nothing to schedule.
    busy: bool,
    next_attempt: Option<Instant>,
    backoff: Duration,
}

#[derive(Debug)]
pub struct Mesh {
    local_id: String,
    /// Conference → the other bridges hosting it (id, relay address).
    rooms: BTreeMap<String, Vec<(String, String)>>,
    /// Every peer some conference names, with its address.
    wanted: BTreeMap<String, String>,
    /// The wanted peers this bridge dials.
    dialling: BTreeMap<String, Dialler>,
    out: VecDeque<MeshAction>,
}

impl Mesh {
    pub fn new(local_id: impl Into<String>) -> Self {
        Self {
            local_id: local_id.into(),
            rooms: BTreeMap::new(),
            wanted: BTreeMap::new(),
            dialling: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Peers some conference names.
    pub fn wanted(&self) -> impl Iterator<Item = &str> {
        self.wanted.keys().map(String::as_str)
    }

    /// Whether this bridge is the one that dials `peer`.
    pub fn dials(&self, peer: &str) -> bool {
        self.local_id.as_str() < peer
    }

    /// The focus's complete list of the other bridges hosting `room`
    /// (empty: none any more).
    pub fn set_room_peers(&mut self, now: Instant, room: &str, peers: &[(String, String)]) {
        let peers: Vec<(String, String)> = peers
            .iter()
            .filter(|(id, _)| *id != self.local_id)
            .cloned()
            .collect();
        if peers.is_empty() {
            self.rooms.remove(room);
        } else {
            self.rooms.insert(room.to_string(), peers);
        }
        let now_wanted: BTreeMap<String, String> = self.rooms.values().flatten().cloned().collect();
        for (peer, addr) in &self.wanted {
            if now_wanted.get(peer) == Some(addr) {
                continue;
            }
            // Gone, or moved to another address: stop dialling the old one.
            self.dialling.remove(peer);
            if !now_wanted.contains_key(peer) {
                self.out.push_back(MeshAction::Close {
                    peer: peer.clone(),
                    reason: "no shared conference",
                });
            }
        }
        for (peer, addr) in &now_wanted {
            if !self.dials(peer) || self.dialling.contains_key(peer) {
                continue;
            }
            self.dialling.insert(
                peer.clone(),
                Dialler {
                    addr: addr.clone(),
                    busy: false,
                    next_attempt: Some(now),
                    backoff: REDIAL_MIN,
                },
            );
        }
        self.wanted = now_wanted;
        self.handle_timeout(now);
    }

    /// A dialled connection came up. `false`: the peer is no longer wanted
    /// (it was let go while the dial was under way): close it.
    pub fn connected(&mut self, peer: &str) -> bool {
        match self.dialling.get_mut(peer) {
            Some(d) => {
                d.busy = true;
                d.next_attempt = None;
                d.backoff = REDIAL_MIN;
                true
            }
            None => false,
        }
    }

    /// A dial did not produce a connection.
    pub fn dial_failed(&mut self, now: Instant, peer: &str) {
        self.retry(now, peer);
    }

    /// A connection to `peer` ended (either side dialled it).
    pub fn connection_lost(&mut self, now: Instant, peer: &str) {
        self.retry(now, peer);
    }

    fn retry(&mut self, now: Instant, peer: &str) {
        if let Some(d) = self.dialling.get_mut(peer) {
            d.busy = false;
            d.next_attempt = Some(now + d.backoff);
            d.backoff = (d.backoff * 2).min(REDIAL_MAX);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (peer, d) in &mut self.dialling {
            if d.busy || d.next_attempt.is_none_or(|t| t > now) {
                continue;
            }
            d.busy = true;
            d.next_attempt = None;
            self.out.push_back(MeshAction::Dial {
                peer: peer.clone(),
                addr: d.addr.clone(),
            });
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialling.values().filter_map(|d| d.next_attempt).min()
    }

    pub fn poll_action(&mut self) -> Option<MeshAction> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn actions(m: &mut Mesh) -> Vec<MeshAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    #[test]
    fn only_the_smaller_id_dials() {
        let t = Instant::now();
        let mut m = Mesh::new("b1");
        m.set_room_peers(t, "r", &peers(&[("b0", "a0"), ("b2", "a2")]));
        assert_eq!(
            actions(&mut m),
            vec![MeshAction::Dial {
                peer: "b2".into(),
                addr: "a2".into()
            }]
        );
    }

    #[test]
    fn redials_with_doubling_backoff_capped_at_two_seconds_and_resets_after_success() {
        let t0 = Instant::now();
        let mut m = Mesh::new("a");
        m.set_room_peers(t0, "r", &peers(&[("b", "addr")]));
        assert_eq!(actions(&mut m).len(), 1);
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            m.dial_failed(t, "b");
            let next = m.poll_timeout().expect("a retry is scheduled");
            delays.push((next - t).as_millis());
            m.handle_timeout(next - Duration::from_millis(1));
            assert!(actions(&mut m).is_empty(), "no dial before the backoff");
            m.handle_timeout(next);
            assert_eq!(actions(&mut m).len(), 1);
            t = next;
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert!(m.connected("b"));
        assert_eq!(m.poll_timeout(), None, "nothing to do while connected");
        m.connection_lost(t, "b");
        assert_eq!(m.poll_timeout(), Some(t + REDIAL_MIN));
    }

    #[test]
    fn a_peer_no_conference_names_is_closed_and_not_redialled() {
        let t = Instant::now();
        let mut m = Mesh::new("a");
        m.set_room_peers(t, "r1", &peers(&[("b", "x")]));
        m.set_room_peers(t, "r2", &peers(&[("b", "x")]));
        actions(&mut m);
        assert!(m.connected("b"));
        m.set_room_peers(t, "r1", &[]);
        assert!(actions(&mut m).is_empty(), "r2 still shares b");
        m.set_room_peers(t, "r2", &[]);
        assert_eq!(
            actions(&mut m),
            vec![MeshAction::Close {
                peer: "b".into(),
                reason: "no shared conference"
            }]
        );
        m.connection_lost(t, "b");
        assert_eq!(m.poll_timeout(), None);
        assert!(
            !m.connected("b"),
            "a dial that completes after the peer was let go is closed"
        );
    }

    #[test]
    fn a_peer_that_moved_is_dialled_at_its_new_address() {
        let t = Instant::now();
        let mut m = Mesh::new("a");
        m.set_room_peers(t, "r", &peers(&[("b", "old")]));
        actions(&mut m);
        m.set_room_peers(t, "r", &peers(&[("b", "new")]));
        assert_eq!(
            actions(&mut m),
            vec![MeshAction::Dial {
                peer: "b".into(),
                addr: "new".into()
            }]
        );
    }
}
