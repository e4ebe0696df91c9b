//! Allocation: which source each receive slot shows, which layer of it the
//! receiver should get (its constraints against the layers that flow), the
//! keyframe requests a layer switch waits on, and telling receivers their
//! slot map. Decides targets only: the switch itself happens on a keyframe
//! in `forward.rs`, and nothing here touches a packet.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, Mid};
use tracing::trace;

use super::{Core, EndpointId, PubSource, SourceRef};
use crate::layers::{LayerView, choose_layer};
use crate::signal::{Kind, ServerMessage, SlotInfo};

/// Ask again for a keyframe a switch is waiting for after this long.
const SWITCH_RETRY: Duration = Duration::from_millis(500);

impl Core {
    /// Detach a removed source from every receive slot it fed.
    pub(super) fn unsubscribe_all(&mut self, s: &PubSource) {
        if !s.subscribers.is_empty() {
            self.relay.demand_dirty = true;
        }
        for &(sub, slot) in &s.subscribers {
            if let Some(ep) = self.endpoints.get_mut(&sub)
                && let Some(sl) = ep.slots.get_mut(slot)
            {
                sl.detach();
                if !ep.slots_dirty {
                    ep.slots_dirty = true;
                    self.dirty_slots.push(sub);
                }
            }
        }
    }

    pub(super) fn reallocate_source_receivers(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let subs: Vec<EndpointId> = ep
            .sources
            .iter()
            .flat_map(|s| s.subscribers.iter().map(|&(e, _)| e))
            .collect();
        for s in subs {
            self.reallocate(now, s);
        }
    }

    /// Fill and re-rank receiver `id`'s slots: audio by speech
    /// (`speakers.rs`), video by last-N (`lastn.rs`).
    pub(super) fn assign_slots(&mut self, now: Instant, id: EndpointId) {
        if let Some(room) = self.endpoints.get(&id).map(|ep| ep.room.clone()) {
            self.assign_slots_in(now, &room, &[id]);
        }
    }

    /// Re-choose the layer of every slot of receiver `id`.
    pub(super) fn reallocate(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let mut requests = Vec::new();
        let mut decisions = Vec::new();
        for (i, slot) in ep.slots.iter().enumerate() {
            let Some(r) = slot.source else { continue };
            let Some(src) = self.source_of(r) else {
                continue;
            };
            let target = match slot.kind {
                Kind::Audio => Some(0),
                Kind::Video => {
                    let views: Vec<LayerView> = src.layers.iter().map(|l| l.view(now)).collect();
                    let wanted = choose_layer(&views, ep.max_height_for(&src.id));
                    // Nothing active yet (publisher just started): aim at what
                    // the constraints would pick once it is.
                    wanted.or_else(|| {
                        let all: Vec<LayerView> = views
                            .iter()
                            .map(|v| LayerView { active: true, ..*v })
                            .collect();
                        choose_layer(&all, ep.max_height_for(&src.id))
                    })
                }
            };
            decisions.push((i, target));
            let waiting = target.is_some() && target != slot.current;
            let retry = slot
                .switch_requested
                .is_none_or(|t| now.saturating_duration_since(t) >= SWITCH_RETRY);
            if let (true, Kind::Video, true, Some(t)) = (waiting, slot.kind, retry, target) {
                requests.push((r, t, i));
            }
        }
        if let Some(ep) = self.endpoints.get_mut(&id) {
            for (i, target) in decisions {
                let slot = &mut ep.slots[i];
                if target.is_none() && slot.current.is_some() {
                    slot.current = None;
                    slot.rewriter.unmap();
                }
                if slot.target != target {
                    self.relay.demand_dirty = true;
                }
                slot.target = target;
            }
            for &(_, _, i) in &requests {
                ep.slots[i].switch_requested = Some(now);
            }
        }
        for (r, layer, _) in requests {
            self.request_keyframe(now, r, layer);
        }
    }

    /// Ask a publisher for a keyframe on one layer, at most once per interval.
    pub(super) fn request_keyframe(&mut self, now: Instant, r: SourceRef, layer: usize) {
        if self.relay.remotes.contains_key(&r.endpoint) {
            return self
                .relay
                .request_keyframe(now, r, layer, &mut self.stats, &mut self.out);
        }
        let Some(p) = self.endpoints.get_mut(&r.endpoint) else {
            return;
        };
        let Some(src) = p.sources.iter_mut().find(|s| s.mid == r.mid) else {
            return;
        };
        let Some(l) = src.layers.get_mut(layer) else {
            return;
        };
        if !l.gate.try_pass(now) {
            self.stats.keyframe_requests_throttled += 1;
            return;
        }
        let rid = l.rid;
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(r.mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests_sent += 1;
            trace!(publisher = %r.endpoint, mid = %r.mid, ?rid, "keyframe requested");
            self.mark_drive(r.endpoint);
        }
    }

    pub(super) fn on_keyframe_request(&mut self, now: Instant, id: EndpointId, mid: Mid) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let Some(slot) = ep.slots.iter().find(|s| s.mid == mid) else {
            return;
        };
        let (Some(r), Some(layer)) = (slot.source, slot.current.or(slot.target)) else {
            return;
        };
        if !ep.budget.try_take(now) {
            self.stats.keyframe_requests_throttled += 1;
            return;
        }
        self.request_keyframe(now, r, layer);
    }

    pub(super) fn flush_slots(&mut self) {
        if self.dirty_slots.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty_slots);
        for &id in &dirty {
            let Some(ep) = self.endpoints.get_mut(&id) else {
                continue;
            };
            ep.slots_dirty = false;
            let refs: Vec<(String, Option<SourceRef>)> = ep
                .slots
                .iter()
                .map(|s| (s.mid.to_string(), s.source))
                .collect();
            let slots = refs
                .into_iter()
                .map(|(mid, r)| SlotInfo {
                    mid,
                    source: r.and_then(|r| self.source_of(r).map(|s| s.id.clone())),
                })
                .collect();
            self.signal(id, ServerMessage::Slots { slots });
        }
        // Keep the allocation for next time.
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty_slots);
        self.dirty_slots = dirty;
    }
}
