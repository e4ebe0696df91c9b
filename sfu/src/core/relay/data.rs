//! The room data channel across the relay: a local participant's message
//! goes to every peer sharing the conference (`Data`), and a peer's message
//! to every local participant (`core/data.rs` has the rest).

use std::sync::Arc;

use tern_relay::msg::{self, relay_control::Msg};

use super::PeerId;
use crate::core::data::{MAX_DATA_MESSAGE, envelope};
use crate::core::{Core, Output};
use crate::stats::DataDrop;

impl Core {
    /// Tell relay peers sharing `room` about a message from `from`.
    pub(in crate::core) fn relay_data(&mut self, room: &Arc<str>, from: &str, text: &str) {
        let peers = self.relay.announced_peers(room);
        let Some(&number) = self.relay.numbers.get(room) else {
            return;
        };
        for p in peers {
            self.out.push_back(Output::RelayControl {
                peer: p,
                msg: Msg::Data(msg::Data {
                    conference: number,
                    participant: from.to_owned(),
                    text: text.to_owned(),
                }),
            });
        }
    }

    /// A message relayed by `peer` from one of its participants.
    pub(in crate::core) fn remote_data(&mut self, peer: PeerId, d: msg::Data) {
        let room = self
            .relay
            .remote_confs
            .get(&(peer.clone(), d.conference))
            .cloned();
        let known = self.relay.find_remote(&peer, d.conference, &d.participant);
        let (Some(room), Some(_)) = (room, known) else {
            self.stats.data_drop(DataDrop::Relay);
            return;
        };
        // The origin bounded it; a peer that did not is not trusted further.
        if d.text.len() > MAX_DATA_MESSAGE {
            self.stats.data_drop(DataDrop::Relay);
            return;
        }
        self.stats.data_in += 1;
        let wrapped = envelope(&d.participant, &d.text);
        self.deliver_data(&room, None, &wrapped);
    }
}
