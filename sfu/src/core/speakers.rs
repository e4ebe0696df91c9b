//! Speech in the conferences: every audio level heard (local packets here,
//! remote ones from the relay) goes to the conference's [`Speech`]; its
//! decisions, made in housekeeping, tell the participants who is dominant
//! and who is speaking, and move each receiver's audio slots to the
//! participants who spoke most recently.
//!
//! Audio slots follow speech: a receiver's `A` slots go to the `A`
//! participants who spoke most recently, with the hysteresis `slots.rs`
//! applies to every kind; when someone stops speaking the slots are looked
//! at again (a slot that could not be taken from them while they spoke can
//! be now).

use std::sync::Arc;
use std::time::Instant;

use super::slots::SlotPlan;
use super::{Core, EndpointId, SourceRef};
use crate::signal::{Kind, ServerMessage, SpeakingLevel};
use crate::speech::SpeechEvent;

impl Core {
    fn participant_id(&self, who: EndpointId) -> Option<String> {
        match self.endpoints.get(&who) {
            Some(ep) => Some(ep.participant.clone()),
            None => self.relay.remotes.get(&who).map(|r| r.participant.clone()),
        }
    }

    /// One RFC 6464 level (`0` loudest, `127` silence) of `who`'s audio.
    /// Per audio packet: the room is borrowed, not cloned.
    pub(super) fn hear_level(&mut self, now: Instant, who: EndpointId, dbov: u8) {
        let room = match self.endpoints.get(&who) {
            Some(ep) => &ep.room,
            None => match self.relay.remotes.get(&who) {
                Some(r) => &r.room,
                None => return,
            },
        };
        if let Some(c) = self.conferences.get_mut(&**room) {
            c.speech.handle_level(now, who, dbov);
        }
    }

    /// `who` left the conference in `room`.
    pub(super) fn speech_forget(&mut self, room: &str, who: EndpointId) {
        if let Some(c) = self.conferences.get_mut(room) {
            c.speech.remove(who);
        }
    }

    /// Run the conferences' speech decisions that are due and act on them.
    pub(super) fn speech_housekeeping(&mut self, now: Instant) {
        let mut changed: Vec<(Arc<str>, bool)> = Vec::new();
        for (room, c) in self.conferences.iter_mut() {
            if c.speech.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            c.speech.handle_timeout(now);
            // Someone told as speaking no longer is: a slot that could not
            // be taken from them while they spoke can be now, though the
            // speech order did not change.
            let mut order = c
                .levels_told
                .iter()
                .any(|&(k, _)| !c.speech.is_speaking(now, k));
            while let Some(e) = c.speech.poll_event() {
                match e {
                    SpeechEvent::Dominant(_) => {
                        self.stats.dominant_speaker_changes += 1;
                        order = true;
                    }
                    SpeechEvent::Order => order = true,
                }
            }
            changed.push((room.clone(), order));
        }
        for (room, order) in changed {
            if order {
                let local = self
                    .conferences
                    .get(&room)
                    .map(|c| c.endpoints.clone())
                    .unwrap_or_default();
                self.assign_slots_in(now, &room, &local);
            }
            self.tell_speech(now, &room);
        }
    }

    /// Tell the room's participants the dominant speaker and who speaks,
    /// when either changed since last told.
    fn tell_speech(&mut self, now: Instant, room: &str) {
        let Some(c) = self.conferences.get(room) else {
            return;
        };
        let dominant = c.speech.dominant();
        let recent: Vec<EndpointId> = c.speech.recent().collect();
        let levels: Vec<(EndpointId, u8)> = c
            .speech
            .order()
            .iter()
            .copied()
            .filter(|&k| c.speech.is_speaking(now, k))
            .map(|k| (k, c.speech.energy(k)))
            .collect();
        let told = (dominant, recent);
        let tell_dominant = c.told != told;
        let tell_levels = c.levels_told != levels;
        if !tell_dominant && !tell_levels {
            return;
        }
        let to = c.endpoints.clone();
        let mut messages = Vec::new();
        if tell_dominant {
            messages.push(self.dominant_message(&told));
        }
        if tell_levels {
            messages.push(self.speaking_message(&levels));
        }
        let dominant_changed = self
            .conferences
            .get(room)
            .is_some_and(|c| c.told.0 != told.0 && c.mixed.is_some());
        if let Some(c) = self.conferences.get_mut(room) {
            c.told = told.clone();
            c.levels_told = levels;
        }
        if dominant_changed && self.cfg.composite {
            let room: Arc<str> = Arc::from(room);
            self.mix_speaker(&room, told.0);
        }
        for id in to {
            for m in &messages {
                self.signal(id, m.clone());
            }
        }
    }

    /// Tell `id`, who just joined the conference in `room`, who dominates
    /// and who speaks, as the others were last told: those messages go out
    /// on a change only, and a newcomer would otherwise learn nothing until
    /// the next one.
    pub(super) fn tell_speech_to_newcomer(&mut self, id: EndpointId, room: &str) {
        let Some(c) = self.conferences.get(room) else {
            return;
        };
        let mut messages = Vec::new();
        if c.told.0.is_some() || !c.told.1.is_empty() {
            messages.push(self.dominant_message(&c.told));
        }
        if !c.levels_told.is_empty() {
            messages.push(self.speaking_message(&c.levels_told));
        }
        for m in messages {
            self.signal(id, m);
        }
    }

    fn dominant_message(
        &self,
        (dominant, recent): &(Option<EndpointId>, Vec<EndpointId>),
    ) -> ServerMessage {
        ServerMessage::DominantSpeaker {
            participant: dominant.and_then(|d| self.participant_id(d)),
            recent: recent
                .iter()
                .filter_map(|&k| self.participant_id(k))
                .collect(),
        }
    }

    fn speaking_message(&self, levels: &[(EndpointId, u8)]) -> ServerMessage {
        ServerMessage::Speaking {
            levels: levels
                .iter()
                .filter_map(|&(k, level)| {
                    Some(SpeakingLevel {
                        participant: self.participant_id(k)?,
                        level,
                    })
                })
                .collect(),
        }
    }

    /// Re-rank every receiver's slots as a change of speech order does.
    /// For benchmarks (`tests/sim/benches/slots.rs`): what one talk start
    /// costs a shard.
    #[doc(hidden)]
    pub fn rerank_all_slots(&mut self, now: Instant) {
        let rooms: Vec<(Arc<str>, Vec<EndpointId>)> = self
            .conferences
            .iter()
            .map(|(r, c)| (r.clone(), c.endpoints.clone()))
            .collect();
        for (room, ids) in rooms {
            self.assign_slots_in(now, &room, &ids);
        }
    }

    /// Give receiver `id`'s audio slots to the participants who spoke most
    /// recently (`slots.rs` says when a slot may change hands).
    pub(super) fn assign_audio_slots(&mut self, now: Instant, id: EndpointId, room: &[SourceRef]) {
        // In a mixed conference the first audio slot carries the mix and
        // no slot carries a participant (`mixing.rs`).
        let mixed = self.endpoints.get(&id).is_some_and(|e| e.mixed.is_some());
        let ranked: Vec<SourceRef> = if mixed {
            Vec::new()
        } else {
            room.iter().copied().filter(|r| r.endpoint != id).collect()
        };
        let plan = SlotPlan {
            limit: ranked.len(),
            ranked,
            pinned: Vec::new(),
        };
        self.fill_slots(now, id, Kind::Audio, plan);
    }
}
