//! One relay connection to a peer bridge as the node sees it, without the
//! connection: the [`Link`] (hello, version check, keepalive, RTT), the
//! routing of what arrives to the shards that own its conferences, and
//! when the shards learn that the link is up, down or its RTT changed.
//!
//! The shell (a quinn connection task, or the simulator's simulated
//! connection) writes [`RelayConnection::poll_transmit`] to the control
//! stream, feeds back what it reads, and hands the shards every
//! [`ConnEvent`]. It owns no socket, clock or task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::backpressure::{Carriage, relay_carriage, relay_control_backlog};
use super::route::{RelayDrop, RelayRoutes};
use super::shard::ShardInput;
use crate::core::PeerId;
use crate::tern_relay::RelayError;
use crate::tern_relay::link::{Link, LinkConfig};
use crate::tern_relay::msg::relay_control::Msg;

/// What the connection has for the shards (or the shell's counters).
#[derive(Debug)]
pub enum ConnEvent {
    /// For one shard.
    Shard(usize, ShardInput),
    /// For every shard: the link's state changed (each shard has its own
    /// conferences with this peer).
    Link(LinkEvent),
    /// Inputs that could not be routed.
    Dropped { reason: RelayDrop, count: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up,
    Down,
    Rtt(Duration),
}

impl LinkEvent {
    /// The input that tells a shard.
    pub fn input(self, peer: &PeerId) -> ShardInput {
        let peer = peer.clone();
        match self {
            LinkEvent::Up => ShardInput::RelayLinkUp { peer },
            LinkEvent::Down => ShardInput::RelayLinkDown { peer },
            LinkEvent::Rtt(rtt) => ShardInput::RelayRtt { peer, rtt },
        }
    }
}

#[derive(Debug)]
pub struct RelayConnection {
    peer: PeerId,
    shards: usize,
    link: Link,
    routes: RelayRoutes,
    /// The shards were told the link is up.
    up: bool,
    rtt_told: Option<Duration>,
    events: VecDeque<ConnEvent>,
    /// Reused between datagram batches: one vector per shard.
    per_shard: Vec<Vec<Bytes>>,
    /// The largest datagram the connection takes now, as the shell last
    /// said (`None`: none at all). Until it says, any size is taken to fit.
    max_datagram: Option<usize>,
    /// Failed here rather than by the link's protocol.
    failed: Option<RelayError>,
}

impl RelayConnection {
    /// A connection just established with `peer` (its certificate's id).
    pub fn new(local_id: &str, peer: PeerId, shards: usize, now: Instant) -> Self {
        let shards = shards.max(1);
        Self {
            link: Link::new(LinkConfig::new(local_id), peer.to_string(), now),
            peer,
            shards,
            routes: RelayRoutes::new(shards),
            up: false,
            rtt_told: None,
            events: VecDeque::new(),
            per_shard: vec![Vec::new(); shards],
            max_datagram: Some(usize::MAX),
            failed: None,
        }
    }

    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// Whether the shards have been told the link is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The link failed (version mismatch, timeout, bad bytes): the shell
    /// closes the connection with this reason.
    pub fn error(&self) -> Option<&RelayError> {
        self.link.error().or(self.failed.as_ref())
    }

    /// What the path takes now (quinn's `max_datagram_size`).
    pub fn set_max_datagram(&mut self, max: Option<usize>) {
        self.max_datagram = max;
    }

    /// How a core's datagram of `len` bytes crosses to the peer.
    pub fn carriage(&self, len: usize) -> Carriage {
        relay_carriage(len, self.max_datagram)
    }

    /// The control stream cannot take more: the link fails
    /// ([`super::backpressure`]); the shell closes it with [`Self::error`].
    pub fn control_backed_up(&mut self) {
        if self.failed.is_none() {
            self.failed = Some(relay_control_backlog());
        }
    }

    /// Bytes read from the control stream.
    pub fn handle_stream(&mut self, now: Instant, bytes: &[u8]) {
        self.link.handle_stream(now, bytes);
        // The shards hear that the link is up before anything the peer said
        // after its hello: the core takes control only from ready links.
        self.check();
        while let Some(m) = self.link.poll_message() {
            if let Some(m) = m.msg {
                self.route_control(m);
            }
        }
        self.check();
    }

    /// Media datagrams that arrived together: one input per shard.
    pub fn handle_datagrams(&mut self, now: Instant, batch: impl IntoIterator<Item = Bytes>) {
        self.link.handle_datagram_seen(now);
        let (mut malformed, mut unknown) = (0, 0);
        for d in batch {
            match self.routes.datagram(&d) {
                Ok(s) => self.per_shard[s].push(d),
                Err(RelayDrop::Malformed) => malformed += 1,
                Err(RelayDrop::UnknownConference) => unknown += 1,
            }
        }
        for (reason, count) in [
            (RelayDrop::Malformed, malformed),
            (RelayDrop::UnknownConference, unknown),
        ] {
            if count > 0 {
                self.events.push_back(ConnEvent::Dropped { reason, count });
            }
        }
        for s in 0..self.shards {
            if self.per_shard[s].is_empty() {
                continue;
            }
            let data = std::mem::take(&mut self.per_shard[s]);
            self.events.push_back(ConnEvent::Shard(
                s,
                ShardInput::RelayDatagrams {
                    peer: self.peer.clone(),
                    data,
                },
            ));
        }
    }

    /// A control message from a shard's core for this peer.
    pub fn send(&mut self, msg: Msg) {
        self.link.send(msg);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.check();
    }

    pub fn poll_timeout(&self) -> Instant {
        self.link.poll_timeout()
    }

    /// Bytes to write on the control stream.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// The connection is gone (closed, failed, replaced): what the shards
    /// must hear.
    pub fn closed(&mut self) {
        if std::mem::take(&mut self.up) {
            self.events.push_back(ConnEvent::Link(LinkEvent::Down));
        }
    }

    fn route_control(&mut self, m: Msg) {
        match self.routes.control(&m) {
            None => {}
            Some(Ok(s)) => self.events.push_back(ConnEvent::Shard(
                s,
                ShardInput::RelayControl {
                    peer: self.peer.clone(),
                    msg: m,
                },
            )),
            Some(Err(reason)) => self
                .events
                .push_back(ConnEvent::Dropped { reason, count: 1 }),
        }
    }

    /// Tell the shards once the link is ready, and each new RTT after.
    fn check(&mut self) {
        if self.error().is_some() {
            return;
        }
        if !self.up && self.link.is_ready() {
            self.up = true;
            self.events.push_back(ConnEvent::Link(LinkEvent::Up));
        }
        if self.up && self.link.rtt() != self.rtt_told {
            self.rtt_told = self.link.rtt();
            if let Some(rtt) = self.rtt_told {
                self.events.push_back(ConnEvent::Link(LinkEvent::Rtt(rtt)));
            }
        }
    }
}
