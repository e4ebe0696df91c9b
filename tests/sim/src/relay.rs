//! The simulated QUIC connection between two bridges' relay endpoints: per
//! bridge pair, a network in each direction ([`RelayPair`]) and the current
//! connection's generation. Dials complete a round trip after the first
//! attempt that gets through or time out like QUIC's handshake; control
//! stream bytes are reliable and in order; datagrams take their chances on
//! the lossy link; a close is heard one latency later unless partitioned.
//!
//! When to dial, close or send is the bridge node's decision
//! (`tern_sfu::node`): this module only carries out what a node asks and
//! must not add policy of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_sfu::PeerId;

use crate::Sim;
use crate::event::Event;
use crate::net::{Fate, LinkConfig};

/// The network between two bridges (a < b) and the connection on it, if
/// any: its generation, so bytes of a dropped connection are not delivered
/// on the next one.
pub(crate) struct RelayPair {
    pub(crate) a: usize,
    pub(crate) b: usize,
    /// Simulated network, a→b and b→a.
    pub(crate) net: [usize; 2],
    pub(crate) generation: Option<u64>,
}

/// How long a QUIC dial into a partition or to a dead bridge takes to fail:
/// the relay endpoint's handshake idle timeout.
pub(crate) const RELAY_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Sim {
    fn relay_pair(&self, a: usize, b: usize) -> usize {
        let (a, b) = (a.min(b), a.max(b));
        self.relays
            .iter()
            .position(|r| r.a == a && r.b == b)
            .unwrap_or_else(|| panic!("no relay between b{a} and b{b}"))
    }

    /// Change both directions of the relay connection between two bridges.
    pub fn set_relay_link(&mut self, a: usize, b: usize, cfg: LinkConfig) {
        let p = self.relay_pair(a, b);
        for n in self.relays[p].net {
            self.links[n].cfg = cfg.clone();
        }
    }

    /// Cut the relay connection between two bridges between two times.
    pub fn relay_partition(&mut self, a: usize, b: usize, from: Duration, to: Duration) {
        let p = self.relay_pair(a, b);
        let w = (self.epoch + from, self.epoch + to);
        for n in self.relays[p].net {
            self.links[n].partitions.push(w);
        }
    }

    /// Datagrams (sent, lost) on the relay network from bridge `a` to `b`.
    pub fn relay_counts(&self, a: usize, b: usize) -> (u64, u64) {
        let p = self.relay_pair(a, b);
        let r = &self.relays[p];
        let l = &self.links[if a < b { r.net[0] } else { r.net[1] }];
        (l.sent, l.lost)
    }

    /// Whether both ends of the relay between two bridges are up.
    pub fn relay_up(&self, a: usize, b: usize) -> bool {
        let (ia, ib) = (self.bridges[a].id.clone(), self.bridges[b].id.clone());
        self.bridges[a].node.relay_up(&ib) && self.bridges[b].node.relay_up(&ia)
    }

    /// The relay pair between bridge `b` and the bridge named `peer`, and
    /// which side of it `b` is.
    pub(crate) fn relay_side(&self, b: usize, peer: &str) -> Option<(usize, usize)> {
        let other = self.bridges.iter().position(|x| x.id == peer)?;
        let p = self
            .relays
            .iter()
            .position(|r| (r.a, r.b) == (b.min(other), b.max(other)))?;
        Some((p, usize::from(self.relays[p].b == b)))
    }

    pub(crate) fn side_bridge(&self, p: usize, side: usize) -> usize {
        if side == 0 {
            self.relays[p].a
        } else {
            self.relays[p].b
        }
    }

    /// Bridge `b` dials `peer`. The handshake completes a round trip after
    /// the first attempt that gets through: the first Initial now, then
    /// its retransmissions (QUIC's probe timeout, 1 s with the default
    /// initial RTT, doubling); with none through before the relay endpoint's
    /// idle timeout, the dial fails then.
    pub(crate) fn relay_dial(&mut self, b: usize, peer: &str) {
        let Some((p, side)) = self.relay_side(b, peer) else {
            return;
        };
        let now = self.now;
        let other = self.side_bridge(p, 1 - side);
        let (out, back) = (self.relays[p].net[side], self.relays[p].net[1 - side]);
        let t = self.t_us();
        let rtt = self.links[out].cfg.latency + self.links[back].cfg.latency;
        let through = |at: Instant| {
            self.links[out].partitioned_at(at).is_none()
                && self.links[back].partitioned_at(at).is_none()
        };
        let attempt = [0, 1000, 3000]
            .into_iter()
            .map(|ms| now + Duration::from_millis(ms))
            .find(|&at| through(at) && at + rtt < now + RELAY_DIAL_TIMEOUT);
        match attempt {
            Some(at) if self.bridges[other].alive => {
                self.relay_generation += 1;
                let generation = self.relay_generation;
                self.trace.record(t, "relay_dial", p as u64, generation);
                self.push(
                    at + rtt,
                    Event::RelayConnect {
                        pair: p,
                        generation,
                        dialler: side,
                    },
                );
            }
            _ => {
                self.trace
                    .record(t, "relay_dial_timeout", p as u64, side as u64);
                self.push(
                    now + RELAY_DIAL_TIMEOUT,
                    Event::RelayDialFailed {
                        bridge: b,
                        peer: other,
                    },
                );
            }
        }
    }

    /// Bridge `b` closes its connection with `peer`: the other side hears
    /// the close one latency later, unless a partition swallows it (then
    /// its own link times out).
    pub(crate) fn relay_close(&mut self, b: usize, peer: &str) {
        let Some((p, side)) = self.relay_side(b, peer) else {
            return;
        };
        let Some(generation) = self.relays[p].generation else {
            return;
        };
        let now = self.now;
        let net = self.relays[p].net[side];
        let t = self.t_us();
        self.trace.record(t, "relay_close", p as u64, side as u64);
        if self.links[net].partitioned_at(now).is_none() {
            let at = now + self.links[net].cfg.latency;
            self.push(
                at,
                Event::RelayClosed {
                    pair: p,
                    generation,
                    to: 1 - side,
                },
            );
        }
    }

    pub(crate) fn relay_write(&mut self, p: usize, side: usize, bytes: Vec<u8>) {
        let Some(generation) = self.relays[p].generation else {
            return;
        };
        let net = self.relays[p].net[side];
        let t = self.t_us();
        self.trace
            .record(t, "relay_stream", p as u64, bytes.len() as u64);
        let at = self.reliable_delay(net);
        self.push(
            at,
            Event::RelayStream {
                pair: p,
                generation,
                from: side,
                bytes,
            },
        );
    }

    pub(crate) fn send_relay_datagram(&mut self, p: usize, from: usize, data: Arc<[u8]>) {
        let Some(generation) = self.relays[p].generation else {
            return;
        };
        let net = self.relays[p].net[from];
        let now = self.now;
        let t = self.t_us();
        if self.relay_max_datagram.is_some_and(|max| data.len() > max) {
            // What quinn's `send_datagram` refuses.
            self.trace
                .record(t, "relay_too_large", p as u64, data.len() as u64);
            return;
        }
        match self.links[net].send(now, data.len(), false) {
            Fate::Lost => self
                .trace
                .record(t, "relay_lost", p as u64, data.len() as u64),
            Fate::Deliver(first, dup) => {
                self.trace
                    .record(t, "relay_sent", p as u64, data.len() as u64);
                for d in std::iter::once(first).chain(dup) {
                    self.push(
                        now + d,
                        Event::RelayDatagram {
                            pair: p,
                            generation,
                            from,
                            data: data.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Something for side `to` of pair `p` on connection `generation`:
    /// the bridge there and the peer's id, if the connection is current and
    /// the bridge alive.
    pub(crate) fn relay_target(
        &self,
        p: usize,
        generation: u64,
        to: usize,
    ) -> Option<(usize, PeerId)> {
        if self.relays[p].generation != Some(generation) {
            return None;
        }
        let b = self.side_bridge(p, to);
        let other = self.side_bridge(p, 1 - to);
        self.bridges[b]
            .alive
            .then(|| (b, Arc::from(self.bridges[other].id.as_str())))
    }
}
