//! Demand: which layers of each source are wanted across the relay — what
//! local receivers want of a remote source is told to its origin, what
//! peers want of a local source decides what is sent them (and feeds the
//! sender constraints) — and keyframe requests relayed to an origin.

use std::collections::VecDeque;
use std::time::Instant;

use tern_relay::msg::{self, relay_control::Msg};
use tracing::trace;

use super::{PeerId, Relay};
use crate::core::{Core, Output, SourceRef};
use crate::signal::Kind;
use crate::stats::CoreStats;

impl Core {
    /// Recompute, per remote source, the layers local receivers forward or
    /// wait for, and tell origins what changed.
    pub(in crate::core) fn relay_update_demand(&mut self) {
        let mut changes = Vec::new();
        for (&id, rp) in self.relay.remotes.iter_mut() {
            for (i, src) in rp.sources.iter().enumerate() {
                let r = SourceRef {
                    endpoint: id,
                    mid: src.mid,
                };
                // A recording here wants the top layer.
                let mut mask = src.record.layers;
                for &(sub, slot_i) in &src.subscribers {
                    let Some(slot) = self.endpoints.get(&sub).and_then(|e| e.slots.get(slot_i))
                    else {
                        continue;
                    };
                    if slot.source != Some(r) {
                        continue;
                    }
                    for l in [slot.current, slot.target].into_iter().flatten() {
                        mask |= 1 << (l % 32);
                    }
                }
                let Some(state) = rp.state.get_mut(i) else {
                    continue;
                };
                if mask != state.demand_sent {
                    // A layer resumed later restarts its sequence tracking.
                    let stopped = state.demand_sent & !mask;
                    for (l, g) in state.gaps.iter_mut().enumerate() {
                        if stopped & (1 << (l % 32)) != 0 {
                            g.reset();
                        }
                    }
                    state.demand_sent = mask;
                    changes.push((
                        rp.peer.clone(),
                        msg::Demand {
                            conference: rp.conference,
                            source: u32::from(src.relay_number),
                            layers: mask,
                        },
                    ));
                }
            }
        }
        for (peer, d) in changes {
            trace!(%peer, source = d.source, layers = d.layers, "relay demand");
            self.out.push_back(Output::RelayControl {
                peer,
                msg: Msg::Demand(d),
            });
        }
    }

    pub(super) fn peer_demand(&mut self, now: Instant, peer: PeerId, d: msg::Demand) {
        let Some(r) = self.local_source_by_number(d.conference, d.source) else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        let Some(src) = self.source_of_mut(r) else {
            return;
        };
        let before = src
            .relay_demand
            .iter()
            .find(|(p, _)| *p == peer)
            .map_or(0, |(_, m)| *m);
        src.relay_demand.retain(|(p, _)| *p != peer);
        if d.layers != 0 {
            src.relay_demand.push((peer, d.layers));
        }
        // A layer a peer starts to want is useless to it until a keyframe.
        let started = d.layers & !before;
        let kind = src.kind;
        // The publisher may have to send more (or less).
        self.relay.demand_dirty = true;
        if kind == Kind::Video {
            for l in 0..32 {
                if started & (1 << l) != 0 {
                    self.request_keyframe(now, r, l);
                }
            }
        }
    }
}

impl Relay {
    /// A receiver here wants a keyframe of a remote source's layer: ask the
    /// origin, which applies its own per-publisher throttle too.
    pub(in crate::core) fn request_keyframe(
        &mut self,
        now: Instant,
        r: SourceRef,
        layer: usize,
        stats: &mut CoreStats,
        out: &mut VecDeque<Output>,
    ) {
        let Some(rp) = self.remotes.get_mut(&r.endpoint) else {
            return;
        };
        let Some(src) = rp.sources.iter_mut().find(|s| s.mid == r.mid) else {
            return;
        };
        let Some(l) = src.layers.get_mut(layer) else {
            return;
        };
        if !l.gate.try_pass(now) {
            stats.keyframe_requests_throttled += 1;
            return;
        }
        stats.keyframe_requests_sent += 1;
        out.push_back(Output::RelayControl {
            peer: rp.peer.clone(),
            msg: Msg::KeyframeRequest(msg::KeyframeRequest {
                conference: rp.conference,
                source: u32::from(src.relay_number),
                layer: layer as u32,
            }),
        });
    }
}
