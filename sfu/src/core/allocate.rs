//! Allocation: which source each receive slot shows, which layer of it the
//! receiver should get (its constraints against the layers that flow), the
//! keyframe requests a layer switch waits on, and telling receivers their
//! slot map. Decides targets only: the switch itself happens on a keyframe
//! in `forward.rs`, and nothing here touches a packet.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, Mid};
use tracing::trace;

use super::model::Layer;
use super::{Core, EndpointId, PubSource, SourceRef};
use crate::allocation::{Allocation, Candidate, Choice, LayerCost, allocate};
use crate::signal::{Kind, ServerMessage, SlotInfo, Suspension};

/// Ask again for a keyframe a switch is waiting for after this long.
const SWITCH_RETRY: Duration = Duration::from_millis(500);

/// A video slot with a source, as allocation ranks it.
#[derive(Clone, Copy)]
struct VideoSlot {
    slot: usize,
    /// The receiver's constraint for it.
    max_height: u32,
    on_stage: bool,
    screen: bool,
    /// Not selected, position in the speech order, slot index: lower first.
    rank: (bool, usize, usize),
}

/// A layer above the one a slot is on counts this much of its rate (in
/// percent) when allocation weighs going up to it (JVB and LiveKit keep a
/// similar margin before an upward switch).
const UP_HEADROOM_PERCENT: u64 = 115;

/// For this long after a slot switched up, the layer it went to is weighed
/// at no more than what it cost when the switch was decided. The switch
/// asked for a keyframe of it, several frames' worth of bytes inside the
/// rate meter's one-second window: weighed at that, a layer that fitted with
/// its headroom no longer fits an unchanged estimate, and the slot went
/// back down and up again, a keyframe each time (seen in simulation on a
/// receiver climbing back to 720p). A fall of the estimate still moves it
/// down at once.
const UP_SETTLE: Duration = Duration::from_secs(2);

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

    /// Re-choose the layer of every slot of receiver `id`: audio slots get
    /// their source's one layer; video slots share the receiver's estimated
    /// bandwidth (`crate::allocation`), after what its audio takes.
    pub(super) fn reallocate(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let speech = self.conferences.get(&ep.room).map(|c| &c.speech);
        let mut audio_bps = 0;
        // Video slots with a source, and each one's layer costs.
        let mut video: Vec<VideoSlot> = Vec::new();
        let mut costs: Vec<Vec<LayerCost>> = Vec::new();
        // (slot, target, suspended, drain the current layer, raised to
        // (layer, its rate))
        type Decision = (usize, Option<usize>, bool, bool, Option<(usize, u64)>);
        let mut decisions: Vec<Decision> = Vec::new();
        // Slots showing an SVC source: they step down without a keyframe.
        let mut svc_slots: Vec<usize> = Vec::new();
        for (i, slot) in ep.slots.iter().enumerate() {
            let Some(r) = slot.source else { continue };
            let Some(src) = self.source_of(r) else {
                continue;
            };
            match slot.kind {
                Kind::Audio => {
                    audio_bps += src
                        .layers
                        .first()
                        .and_then(|l| l.rate.current_bps())
                        .unwrap_or(0);
                    decisions.push((i, Some(0), false, false, None));
                }
                Kind::Video => {
                    if src.svc {
                        svc_slots.push(i);
                    }
                    let cap = self.send_cap(&src.name);
                    let lowest = src.layers.iter().map(Layer::height).min().unwrap_or(0);
                    let held = slot.current.or(slot.target);
                    let settling = slot
                        .raised
                        .filter(|(t, _, _)| now.saturating_duration_since(*t) < UP_SETTLE);
                    costs.push(
                        src.layers
                            .iter()
                            .enumerate()
                            .map(|(k, l)| {
                                let mut c = l.cost(now, cap, l.height() == lowest);
                                // Going up must fit with room to spare, so a
                                // rate wobbling around the estimate does not
                                // switch layers back and forth.
                                if held.is_some_and(|h| k > h) {
                                    c.bitrate_bps = c.bitrate_bps * UP_HEADROOM_PERCENT / 100;
                                }
                                if let Some((_, layer, bps)) = settling
                                    && layer == k
                                    && held == Some(k)
                                {
                                    c.bitrate_bps = c.bitrate_bps.min(bps);
                                }
                                c
                            })
                            .collect(),
                    );
                    let on_stage = ep.view.on_stage.contains(&src.id);
                    let selected = ep.view.selected.contains(&src.id);
                    let heard = speech
                        .and_then(|s| s.position(r.endpoint))
                        .unwrap_or(usize::MAX);
                    video.push(VideoSlot {
                        slot: i,
                        max_height: ep.max_height_for(&src.id),
                        on_stage,
                        screen: src.name == "screen",
                        rank: (!selected, heard, i),
                    });
                }
            }
        }
        // Priority: the allocator puts on-stage and screen shares first;
        // among the rest, selected, then the speech order, then slot order.
        let mut order: Vec<usize> = (0..video.len()).collect();
        order.sort_by_key(|&v| video[v].rank);
        let candidates: Vec<Candidate<'_>> = order
            .iter()
            .map(|&v| {
                let s = video[v];
                Candidate {
                    layers: &costs[v],
                    max_height: s.max_height,
                    on_stage: s.on_stage,
                    screen: s.screen,
                }
            })
            .collect();
        let estimation = self.cfg.bandwidth.estimation;
        let budget = ep
            .bw
            .budget
            .filter(|_| estimation)
            .map(|b| b.saturating_sub(audio_bps));
        // The first source on its lowest layer keeps it through a dip of
        // the estimate to 3/4 of its rate: a receiver sending little reads
        // any probe's queueing as congestion and its estimate falls to just
        // under what it was receiving; suspending its one picture for that
        // is worse than sending at most a quarter of a thumbnail's rate over.
        let keep = order.first().and_then(|&v| {
            let layer = costs[v].get(ep.slots[video[v].slot].current?)?;
            let lowest = costs[v]
                .iter()
                .filter(|l| l.active)
                .map(|l| l.height)
                .min()?;
            (layer.height == lowest).then_some(layer.bitrate_bps)
        });
        let budget = budget.map(|b| match keep {
            Some(c) if b < c && b >= c * 3 / 4 => c,
            _ => b,
        });
        let mut allocation = Allocation::default();
        allocate(&candidates, budget, &mut allocation);
        for (k, &v) in order.iter().enumerate() {
            let i = video[v].slot;
            let (target, suspended) = match allocation.choices[k] {
                Choice::Layer(l) => (Some(l), false),
                Choice::Suspended => (None, true),
                Choice::Off => (None, false),
            };
            // Going down from a layer that costs more than the receiver's
            // whole budget: its packets only fill the bottleneck queue the
            // new layer's keyframe will wait behind (and get lost there), so
            // stop them now rather than at that keyframe. The picture holds
            // its last frame either way.
            let current = ep.slots[i].current;
            // (Draining every slot going down while the slots together
            // overshoot the budget was tried: thumbnails switching down
            // beside a screen share then froze the screen's receiver more,
            // not less; BENCHMARKS.md, "Collapse and drain".)
            let drain = target.zip(current).is_some_and(|(t, c)| t < c)
                && budget
                    .zip(current.and_then(|c| costs[v].get(c)))
                    .is_some_and(|(b, c)| c.bitrate_bps > b);
            // The layer's own rate, without the headroom going up adds.
            let raised = target
                .filter(|&t| {
                    let slot = &ep.slots[i];
                    Some(t) != slot.target && current.or(slot.target).is_some_and(|h| t > h)
                })
                .and_then(|t| Some((t, costs[v].get(t)?.bitrate_bps * 100 / UP_HEADROOM_PERCENT)));
            decisions.push((i, target, suspended, drain, raised));
        }
        drop(candidates);

        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        ep.bw.allocated_bps = allocation.allocated_bps + audio_bps;
        ep.bw.allocation = allocation;
        let mut requests = Vec::new();
        let mut slots_changed = false;
        // A receiver not connected yet is sent nothing (`fan_out`): its
        // keyframes are asked for when it connects.
        let connected = ep.rtc.is_connected();
        for (i, target, suspended, drain, raised) in decisions {
            let slot = &mut ep.slots[i];
            let Some(r) = slot.source else { continue };
            if target.is_none() && slot.current.is_some() {
                slot.current = None;
                slot.rewriter.unmap();
            }
            if slot.target != target {
                self.relay.demand_dirty = true;
                if slot.kind == Kind::Video {
                    self.stats.allocation_changes += 1;
                }
            }
            if slot.suspended != suspended {
                slots_changed = true;
                if suspended {
                    self.stats.suspensions += 1;
                }
            }
            if let Some((layer, bps)) = raised {
                slot.raised = Some((now, layer, bps));
            }
            slot.target = target;
            slot.suspended = suspended;
            slot.draining = drain && !svc_slots.contains(&i);
            if let (Some(at), Some(c)) = (slot.confirm_keyframe_at, slot.current)
                && now >= at
            {
                slot.confirm_keyframe_at = None;
                requests.push((r, c));
            }
            let down_in_svc =
                svc_slots.contains(&i) && slot.current.zip(target).is_some_and(|(c, t)| t < c);
            let waiting = target.is_some() && target != slot.current && !down_in_svc;
            let retry = slot
                .switch_requested
                .is_none_or(|t| now.saturating_duration_since(t) >= SWITCH_RETRY);
            if let (true, Kind::Video, true, Some(t)) =
                (waiting && connected, slot.kind, retry, target)
            {
                slot.switch_requested = Some(now);
                requests.push((r, t));
            }
        }
        if slots_changed && !ep.slots_dirty {
            ep.slots_dirty = true;
            self.dirty_slots.push(id);
        }
        self.tell_bwe(now, id, audio_bps);
        for (r, layer) in requests {
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
        // An SVC source's layers are one stream: one keyframe serves all.
        let layer = if src.svc { 0 } else { layer };
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
        if ep.mixed.is_some() && self.cfg.composite {
            let room = ep.room.clone();
            if ep.budget.try_take(now) {
                self.composite_keyframe(room);
            } else {
                self.stats.keyframe_requests_throttled += 1;
            }
            return;
        }
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
            let refs: Vec<(String, Option<SourceRef>, bool)> = ep
                .slots
                .iter()
                .map(|s| (s.mid.to_string(), s.source, s.suspended))
                .collect();
            let slots = refs
                .into_iter()
                .map(|(mid, r, suspended)| SlotInfo {
                    mid,
                    source: r.and_then(|r| self.source_of(r).map(|s| s.id.clone())),
                    suspended: suspended.then_some(Suspension::Bandwidth),
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
