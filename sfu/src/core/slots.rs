//! Which source each receive slot carries. For each kind a ranking says
//! who a receiver should get, best first (`speakers.rs` for audio: speech
//! order; `lastn.rs` for video: on-stage, selected, then speech order,
//! within last-N); [`Core::fill_slots`] moves the slots towards it with
//! hysteresis, so that slots change only for a reason a participant would
//! see:
//!
//! - a wanted source takes a free slot at once;
//! - it takes an occupied one only if it is pinned (on stage, selected)
//!   or its participant spoke more recently than the holder's, and never
//!   from a holder who is pinned or still speaking; the least recently
//!   heard holder goes first. Join order alone never displaces anyone;
//! - beyond the receiver's limit (last-N lowered) the least recently heard
//!   unpinned holders are let go.
//!
//! A slot that changes source stays one RTP stream (its rewriter rebases,
//! video on the new source's next keyframe, which `reallocate` asks for).

use std::time::Instant;

use super::{Core, EndpointId, SourceRef};
use crate::signal::Kind;

/// What a ranking wants for one receiver and one kind.
pub(super) struct SlotPlan {
    /// Best first; only the first `limit` are wanted.
    pub(super) ranked: Vec<SourceRef>,
    /// At most this many slots carry a source.
    pub(super) limit: usize,
    /// Always shown, never displaced.
    pub(super) pinned: Vec<SourceRef>,
}

impl Core {
    pub(super) fn fill_slots(&mut self, now: Instant, id: EndpointId, kind: Kind, plan: SlotPlan) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let slots: Vec<(usize, Option<SourceRef>)> = ep
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == kind)
            .map(|(i, s)| (i, s.source))
            .collect();
        if slots.is_empty() {
            return;
        }
        let Some(speech) = self.conferences.get(&ep.room).map(|c| &c.speech) else {
            return;
        };
        let limit = plan.limit.min(slots.len());
        let wanted: Vec<SourceRef> = plan.ranked.iter().copied().take(limit).collect();
        let spoke = |r: &SourceRef| speech.last_spoke(r.endpoint);
        let protected =
            |r: &SourceRef| plan.pinned.contains(r) || speech.is_speaking(now, r.endpoint);
        // Holders nobody wants any more, least recently heard last (popped
        // first).
        let mut unwanted: Vec<(usize, SourceRef)> = slots
            .iter()
            .filter_map(|&(i, s)| s.map(|s| (i, s)))
            .filter(|(_, s)| !wanted.contains(s) && !protected(s))
            .collect();
        unwanted.sort_by_key(|(i, s)| std::cmp::Reverse((spoke(s), *i)));
        let mut held = slots.iter().filter(|(_, s)| s.is_some()).count();
        let mut free: Vec<usize> = slots
            .iter()
            .rev()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| *i)
            .collect();
        let mut changes: Vec<(usize, Option<SourceRef>, Option<SourceRef>)> = Vec::new();
        // Over the limit: let the least recently heard go.
        while held > limit {
            let Some((i, old)) = unwanted.pop() else {
                break;
            };
            changes.push((i, Some(old), None));
            held -= 1;
        }
        let held_now: Vec<SourceRef> = slots.iter().filter_map(|(_, s)| *s).collect();
        for r in wanted.iter().filter(|r| !held_now.contains(r)) {
            if held < limit
                && let Some(i) = free.pop()
            {
                changes.push((i, None, Some(*r)));
                held += 1;
                continue;
            }
            // Displace the least recently heard holder this one outranks.
            if let Some(pos) = unwanted
                .iter()
                .rposition(|(_, h)| plan.pinned.contains(r) || spoke(r) > spoke(h))
            {
                let (i, old) = unwanted.remove(pos);
                changes.push((i, Some(old), Some(*r)));
                continue;
            }
            // On stage and selected mean shown: a holder that is only
            // protected because it is talking makes way (the least recently
            // heard of them), unless it is pinned or wanted itself.
            if plan.pinned.contains(r)
                && let Some((i, old)) = slots
                    .iter()
                    .filter_map(|&(i, s)| s.map(|s| (i, s)))
                    .filter(|(i, s)| {
                        !plan.pinned.contains(s)
                            && !wanted.contains(s)
                            && !changes.iter().any(|(c, _, _)| c == i)
                    })
                    .min_by_key(|(i, s)| (spoke(s), *i))
            {
                unwanted.retain(|(u, _)| *u != i);
                changes.push((i, Some(old), Some(*r)));
            }
        }
        if changes.is_empty() {
            return;
        }
        for &(i, old, new) in &changes {
            if let Some(old) = old
                && let Some(src) = self.source_of_mut(old)
            {
                src.subscribers.retain(|&(e, s)| (e, s) != (id, i));
                if new.is_some() {
                    match kind {
                        Kind::Audio => self.stats.audio_slot_switches += 1,
                        Kind::Video => self.stats.video_slot_switches += 1,
                    }
                }
            }
            if let Some(new) = new
                && let Some(src) = self.source_of_mut(new)
            {
                src.subscribers.push((id, i));
            }
            if let Some(ep) = self.endpoints.get_mut(&id)
                && let Some(slot) = ep.slots.get_mut(i)
            {
                slot.detach();
                slot.source = new;
            }
        }
        self.relay.demand_dirty = true;
        if let Some(ep) = self.endpoints.get_mut(&id)
            && !ep.slots_dirty
        {
            ep.slots_dirty = true;
            self.dirty_slots.push(id);
        }
        self.reallocate(now, id);
    }

    /// Every source of the conference in `room`, of each kind, ranked by
    /// the speech order (stable: local participants in join order, then
    /// those on other bridges, among the never heard). Computed once per
    /// change for all the room's receivers: each filters its own sources
    /// out, so a talk start costs one sort, not one per receiver.
    pub(super) fn room_ranking(&self, room: &str) -> RoomRanking {
        let mut r = RoomRanking::default();
        let Some(conf) = self.conferences.get(room) else {
            return r;
        };
        let local = conf
            .endpoints
            .iter()
            .filter_map(|&o| self.endpoints.get(&o).map(|p| (o, p.sources.as_slice())));
        for (o, sources) in local.chain(self.relay.publishers(room)) {
            for s in sources {
                let sr = SourceRef {
                    endpoint: o,
                    mid: s.mid,
                };
                match s.kind {
                    Kind::Audio => r.audio.push(sr),
                    Kind::Video => r.video.push(sr),
                }
            }
        }
        let speech = &conf.speech;
        let key = |x: &SourceRef| speech.position(x.endpoint).unwrap_or(usize::MAX);
        r.audio.sort_by_cached_key(key);
        r.video.sort_by_cached_key(key);
        r
    }

    /// Fill and re-rank the slots of `receivers`, all in `room`.
    pub(super) fn assign_slots_in(&mut self, now: Instant, room: &str, receivers: &[EndpointId]) {
        if receivers.is_empty() {
            return;
        }
        let ranking = self.room_ranking(room);
        for &id in receivers {
            self.assign_audio_slots(now, id, &ranking.audio);
            self.assign_video_slots(now, id, &ranking.video);
        }
    }
}

/// A room's sources by kind, best first (see [`Core::room_ranking`]).
#[derive(Debug, Default)]
pub(super) struct RoomRanking {
    pub(super) audio: Vec<SourceRef>,
    pub(super) video: Vec<SourceRef>,
}
