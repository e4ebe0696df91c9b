//! Telling participants that their meeting is recorded: the focus's
//! notices (a recording started or ended, on whichever bridge) kept per
//! room, signalled to the participants here then and after each `joined`
//! (`session.rs`).

use std::sync::Arc;

use crate::core::{Core, EndpointId};

impl Core {
    /// The focus says `room` is recorded as `id` (on whichever bridge), or
    /// that recording ended: the participants here are told, and those who
    /// join while it runs (after `joined`). Kept for rooms not here yet; a
    /// notice of an end names the recording, so a late one for an old
    /// recording cannot clear a new one.
    pub fn handle_recording_notice(&mut self, room: &str, id: &str, active: bool) {
        let changed = if active {
            let id: Arc<str> = Arc::from(id);
            self.recorded_rooms.insert(Arc::from(room), id.clone()) != Some(id)
        } else if self.recorded_rooms.get(room).is_some_and(|r| &**r == id) {
            self.recorded_rooms.remove(room);
            true
        } else {
            false
        };
        if !changed {
            return;
        }
        let here: Vec<EndpointId> = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        for e in here {
            self.signal(
                e,
                crate::signal::ServerMessage::Recording {
                    active,
                    recording_id: id.to_owned(),
                },
            );
        }
    }
}
