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
            let Some(pos) = unwanted
                .iter()
                .rposition(|(_, h)| plan.pinned.contains(r) || spoke(r) > spoke(h))
            else {
                continue;
            };
            let (i, old) = unwanted.remove(pos);
            changes.push((i, Some(old), Some(*r)));
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

    /// Every other participant's sources of `kind` that `id` could get, in
    /// join order (local participants, then those on other bridges).
    pub(super) fn candidates(&self, id: EndpointId, kind: Kind) -> Vec<SourceRef> {
        let Some(ep) = self.endpoints.get(&id) else {
            return Vec::new();
        };
        let room = ep.room.clone();
        self.others(&room, id)
            .into_iter()
            .filter_map(|o| self.endpoints.get(&o).map(|p| (o, p.sources.as_slice())))
            .chain(self.relay.publishers(&room))
            .flat_map(|(o, sources)| {
                sources
                    .iter()
                    .filter(move |s| s.kind == kind)
                    .map(move |s| SourceRef {
                        endpoint: o,
                        mid: s.mid,
                    })
            })
            .collect()
    }

    /// Sort `refs` by their participants' place in the room's speech order
    /// (stable: join order among those never heard).
    pub(super) fn sort_by_speech(&self, id: EndpointId, refs: &mut [SourceRef]) {
        let Some(speech) = self
            .endpoints
            .get(&id)
            .and_then(|ep| self.conferences.get(&ep.room))
            .map(|c| &c.speech)
        else {
            return;
        };
        refs.sort_by_cached_key(|r| speech.position(r.endpoint).unwrap_or(usize::MAX));
    }
}
