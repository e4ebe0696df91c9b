//! Video slots follow the meeting (JVB's last-N with its receiver
//! constraints): a receiver's video slots rank every other participant's
//! video, on-stage sources first, then the ones it selected, then by the
//! speech order (the dominant speaker first, then the recent ones; sources
//! of participants never heard in join order). Only the first `last_n`
//! are shown, but on-stage and selected sources always are. `slots.rs`
//! moves the slots with hysteresis; an on-stage source gets its own
//! maximum height (`Endpoint::max_height_for`).

use std::time::Instant;

use super::slots::SlotPlan;
use super::{Core, EndpointId, SourceRef};
use crate::signal::Kind;

impl Core {
    pub(super) fn assign_video_slots(&mut self, now: Instant, id: EndpointId, room: &[SourceRef]) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        if ep.mixed.is_some() && self.cfg.composite {
            // Its first video slot carries the composite (`mixing.rs`).
            let plan = SlotPlan {
                ranked: Vec::new(),
                limit: 0,
                pinned: Vec::new(),
            };
            return self.fill_slots(now, id, Kind::Video, plan);
        }
        let (on_stage, selected, last_n) = (
            ep.view.on_stage.clone(),
            ep.view.selected.clone(),
            ep.view.last_n,
        );
        let mut ranked: Vec<SourceRef> =
            room.iter().copied().filter(|r| r.endpoint != id).collect();
        let mut pinned: Vec<SourceRef> = Vec::new();
        if !on_stage.is_empty() || !selected.is_empty() {
            let rank = |r: &SourceRef| {
                let sid = self.source_of(*r).map(|s| s.id.as_str());
                let has = |list: &[String]| sid.is_some_and(|s| list.iter().any(|l| l == s));
                (!has(&on_stage), !has(&selected))
            };
            ranked.sort_by_cached_key(rank);
            pinned = ranked
                .iter()
                .copied()
                .take_while(|r| rank(r) != (true, true))
                .collect();
        }
        let limit = last_n.unwrap_or(usize::MAX).max(pinned.len());
        let plan = SlotPlan {
            ranked,
            limit,
            pinned,
        };
        self.fill_slots(now, id, Kind::Video, plan);
    }
}
