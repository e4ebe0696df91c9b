//! Which shard an input belongs to. A conference is pinned to one shard,
//! so every rule here ends in a shard index; the tokio shell and the
//! simulator both ask these functions instead of deciding themselves.
//!
//! - A room maps to a shard by a fixed hash of its name.
//! - A client datagram goes to the shard its source address was bound to
//!   (the core binds an address once ICE authenticated it), else, for STUN,
//!   to the shard named by the first two hex digits of the ICE ufrag it
//!   targets; anything else is from an unknown source.
//! - A relay message names a conference number: numbers this bridge chose
//!   carry the shard in their top byte; numbers a peer chose are learnt from
//!   its `ConferenceJoined` (by room name) on the same connection.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::core::{Core, shard_of_conference_number};
use crate::tern_relay::msg::relay_control::Msg;
use crate::tern_relay::wire::HEADER_LEN;

/// The shard a room is pinned to. `DefaultHasher::new()` has fixed keys, so
/// every bridge process (and the simulator) agrees.
pub fn shard_of_room(room: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    room.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// The shard a client datagram belongs to: `bound` is what the address
/// table says about its source (written from the cores' `Bind`/`Unbind`).
pub fn shard_of_datagram(bound: Option<u8>, data: &[u8], shards: usize) -> Option<usize> {
    match bound {
        Some(s) => Some(usize::from(s)),
        None => Core::stun_target_ufrag(data)
            .and_then(Core::shard_of_ufrag)
            .map(usize::from),
    }
    .filter(|&s| s < shards)
}

/// Why a relay input could not be routed (each is counted by the shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDrop {
    /// Names a conference this connection never announced.
    UnknownConference,
    /// Too short to carry a relay header.
    Malformed,
}

impl RelayDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDrop::UnknownConference => "unknown_conference",
            RelayDrop::Malformed => "malformed",
        }
    }
}

/// Routing state of one relay connection: the peer's conference numbers
/// and the shard each is on here. New per connection: a reconnected peer
/// announces its conferences again.
#[derive(Debug)]
pub struct RelayRoutes {
    shards: usize,
    theirs: HashMap<u32, usize>,
}

impl RelayRoutes {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: shards.max(1),
            theirs: HashMap::new(),
        }
    }

    /// The shard a control message goes to; learns the peer's numbers.
    /// `None` for messages the link itself consumes (hello, ping, pong).
    pub fn control(&mut self, m: &Msg) -> Option<Result<usize, RelayDrop>> {
        let ours = |n: u32| {
            let s = usize::from(shard_of_conference_number(n));
            (s < self.shards)
                .then_some(s)
                .ok_or(RelayDrop::UnknownConference)
        };
        let theirs = |n: &u32| {
            self.theirs
                .get(n)
                .copied()
                .ok_or(RelayDrop::UnknownConference)
        };
        Some(match m {
            Msg::ConferenceJoined(c) => {
                let s = shard_of_room(&c.name, self.shards);
                self.theirs.insert(c.number, s);
                Ok(s)
            }
            Msg::ConferenceLeft(c) => self
                .theirs
                .remove(&c.number)
                .ok_or(RelayDrop::UnknownConference),
            Msg::ParticipantJoined(p) => theirs(&p.conference),
            Msg::ParticipantLeft(p) => theirs(&p.conference),
            Msg::Sources(s) => theirs(&s.conference),
            Msg::Data(d) => theirs(&d.conference),
            Msg::SenderClock(c) => theirs(&c.conference),
            // These name our own numbers, which carry the shard.
            Msg::Demand(d) => ours(d.conference),
            Msg::KeyframeRequest(k) => ours(k.conference),
            Msg::Nack(k) => ours(k.conference),
            Msg::OversizeMedia(d) => self.datagram(d),
            Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_) => return None,
        })
    }

    /// The shard a media datagram goes to (its header names the peer's
    /// conference number).
    pub fn datagram(&self, d: &[u8]) -> Result<usize, RelayDrop> {
        if d.len() < HEADER_LEN {
            return Err(RelayDrop::Malformed);
        }
        let conference = u32::from_be_bytes([d[1], d[2], d[3], d[4]]);
        self.theirs
            .get(&conference)
            .copied()
            .ok_or(RelayDrop::UnknownConference)
    }
}
