//! VP9 SVC: one stream carries every spatial layer, and each receiver gets
//! the layers up to its own by leaving out the packets above it.
//!
//! A source becomes SVC when its stream says so: a keyframe whose
//! scalability structure declares more than one spatial layer (Chromium's
//! `L3T3_KEY`, a WHIP encoder's SVC mode, Chromium's legacy VP9 answer to
//! several encodings without a `scalabilityMode`). Its `layers` are then
//! the spatial layers, lowest first, so allocation, sender constraints and
//! relay announcements treat them as they treat simulcast layers; only
//! forwarding differs:
//!
//! - a receiver rises to a higher spatial layer at a keyframe (the upper
//!   layers of `L3T3_KEY` depend on the lower only there) and steps down at
//!   the start of any picture (the lower layers never depend on the upper);
//! - the packets above its layer are skipped in its numbering
//!   ([`crate::rewrite::Rewriter::skip`]), so it sees no loss to repair;
//! - the last packet of its top layer's frame carries the marker bit, which
//!   the publisher set only at the end of the whole picture (RFC 9628: the
//!   marker ends a picture as the receiver sees it).
//!
//! As JVB's `Vp9AdaptiveSourceProjectionContext` and LiveKit's VP9 layer
//! selector do; the relay carries the whole stream (`docs/relay-protocol.md`)
//! and each bridge chooses for its own receivers.

use std::time::Instant;

use tracing::info;

use super::{Core, EndpointId, Layer, Slot, SourceRef};
use crate::rewrite::InNumbers;
use crate::vp9::{Spatial, Vp9Info};

/// Spatial layers a source may have as SVC: as many as a remote source may
/// announce (`relay/remote.rs`), more than any browser sends (3). A stream
/// declaring more has its layers above this never forwarded.
pub(super) const MAX_SPATIAL_LAYERS: usize = 4;

/// What to do with one packet of an SVC stream for one receive slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Not forwarding yet (waiting for a keyframe to start on).
    Wait,
    /// Above the slot's layer: left out.
    Skip,
    /// Forward it; `end_of_picture`: set the marker bit. `switched`: the
    /// slot's layer changed on this packet.
    Forward {
        end_of_picture: bool,
        switched: bool,
    },
}

/// Decide one packet for one slot, switching the slot's layer where the
/// stream allows it.
pub(super) fn step(
    slot: &mut Slot,
    info: &Vp9Info,
    keyframe: bool,
    numbers: &InNumbers,
    now: Instant,
) -> Step {
    let Some(target) = slot.target else {
        return Step::Wait;
    };
    let mut switched = false;
    match slot.current {
        None if keyframe => {
            slot.rewriter.rebase(numbers, now);
            slot.current = Some(target);
            switched = true;
        }
        None => return Step::Wait,
        Some(c) if target > c && keyframe => {
            slot.current = Some(target);
            switched = true;
        }
        Some(c) if target < c && info.layer_start && info.sid == 0 => {
            slot.current = Some(target);
            switched = true;
        }
        Some(_) => {}
    }
    if switched {
        slot.switch_requested = None;
    }
    let Some(current) = slot.current else {
        return Step::Wait;
    };
    let sid = usize::from(info.sid);
    if sid > current {
        slot.rewriter.skip(numbers.seq);
        return Step::Skip;
    }
    Step::Forward {
        end_of_picture: sid == current && info.layer_end,
        switched,
    }
}

impl Core {
    /// A keyframe of local source `r` came with a scalability structure:
    /// make the source SVC (or re-shape its spatial layers) when the
    /// structure says so, and refresh its layers' heights.
    ///
    /// Returns true when the source is SVC afterwards.
    pub(super) fn svc_structure(
        &mut self,
        now: Instant,
        r: SourceRef,
        stream_layer: usize,
        spatial: Spatial,
    ) -> bool {
        let count = usize::from(spatial.count).min(MAX_SPATIAL_LAYERS);
        let Some(ep) = self.endpoints.get_mut(&r.endpoint) else {
            return false;
        };
        let Some(src) = ep.source_mut(r.mid) else {
            return false;
        };
        let height = |k: usize| u32::from(spatial.heights.get(k).copied().unwrap_or(0));
        if src.svc && src.layers.len() == count {
            for (k, l) in src.layers.iter_mut().enumerate() {
                if height(k) > 0 {
                    l.measured_height = Some(height(k));
                }
            }
            return true;
        }
        if !src.svc && count <= 1 {
            return false;
        }
        // Every spatial layer arrives on the stream this keyframe came on.
        let rid = src.layers.get(stream_layer).and_then(|l| l.rid);
        let top = src.layers.iter().map(|l| l.declared_height).max();
        src.layers = (0..count)
            .map(|k| {
                // Without sizes in the structure, halve down from the top.
                let declared = match height(k) {
                    0 => top.unwrap_or(720) >> (count - 1 - k),
                    h => h,
                };
                let mut l = Layer::new(rid, declared);
                l.measured_height = (height(k) > 0).then_some(height(k));
                l
            })
            .collect();
        src.svc = true;
        src.constraint = Default::default();
        let subscribers = src.subscribers.clone();
        let mid = r.mid;
        // Its packets are now all "layer 0" of the source.
        ep.ssrc_map.retain(|_, (m, _)| *m != mid);
        info!(endpoint = %r.endpoint, %mid, spatial_layers = count, "source sends VP9 SVC");
        // Receivers' layer indices named the old layers: they start over on
        // the new ones, at this keyframe if allocation picks one at once.
        let mut receivers: Vec<EndpointId> = Vec::new();
        for (sub, slot_i) in subscribers {
            let Some(slot) = self
                .endpoints
                .get_mut(&sub)
                .and_then(|e| e.slots.get_mut(slot_i))
            else {
                continue;
            };
            if slot.source != Some(r) {
                continue;
            }
            slot.current = None;
            slot.target = None;
            slot.switch_requested = None;
            slot.confirm_keyframe_at = None;
            slot.rewriter.unmap();
            if !receivers.contains(&sub) {
                receivers.push(sub);
            }
        }
        self.relay.demand_dirty = true;
        for sub in receivers {
            self.reallocate(now, sub);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Kind;
    use str0m::media::Mid;

    fn slot(target: Option<usize>) -> Slot {
        let mut s = Slot::new(Mid::from("v0"), Kind::Video);
        s.target = target;
        s
    }

    fn pkt(sid: u8, start: bool, end: bool) -> Vp9Info {
        Vp9Info {
            sid,
            layer_start: start,
            layer_end: end,
            ..Default::default()
        }
    }

    fn n(seq: u64) -> InNumbers {
        InNumbers {
            seq,
            ts: seq as u32 * 100,
            pid: None,
            tl0: None,
        }
    }

    /// One picture of three spatial layers, one packet each.
    fn picture(s: &mut Slot, seq: u64, keyframe: bool, now: Instant) -> Vec<Step> {
        (0..3u8)
            .map(|sid| {
                step(
                    s,
                    &pkt(sid, true, true),
                    keyframe && sid == 0,
                    &n(seq + u64::from(sid)),
                    now,
                )
            })
            .collect()
    }

    #[test]
    fn starts_at_a_keyframe_and_leaves_out_the_layers_above_its_own() {
        let now = Instant::now();
        let mut s = slot(Some(1));
        assert_eq!(picture(&mut s, 10, false, now), vec![Step::Wait; 3]);
        let steps = picture(&mut s, 13, true, now);
        assert_eq!(
            steps[0],
            Step::Forward {
                end_of_picture: false,
                switched: true
            }
        );
        assert_eq!(
            steps[1],
            Step::Forward {
                end_of_picture: true,
                switched: false
            },
            "layer 1 ends this receiver's picture"
        );
        assert_eq!(steps[2], Step::Skip);
        // The next picture's packets follow on without a gap.
        let a = s.rewriter.map(&n(16), now).expect("mapped").seq;
        let b = s.rewriter.map(&n(17), now).expect("mapped").seq;
        assert_eq!(b, a + 1);
        assert_eq!(a, s.rewriter.last_seq().expect("sent") - 1);
    }

    #[test]
    fn rises_only_at_a_keyframe_and_steps_down_at_any_picture_start() {
        let now = Instant::now();
        let mut s = slot(Some(0));
        picture(&mut s, 1, true, now);
        assert_eq!(s.current, Some(0));
        s.target = Some(2);
        let steps = picture(&mut s, 4, false, now);
        assert_eq!(s.current, Some(0), "no keyframe: stays");
        assert_eq!(steps[1], Step::Skip);
        let steps = picture(&mut s, 7, true, now);
        assert_eq!(s.current, Some(2));
        assert!(matches!(
            steps[2],
            Step::Forward {
                end_of_picture: true,
                ..
            }
        ));
        s.target = Some(1);
        // Mid-picture (layer 1's packet) is no place to step down...
        let mid = step(&mut s, &pkt(1, true, false), false, &n(10), now);
        assert_eq!(s.current, Some(2));
        assert!(matches!(
            mid,
            Step::Forward {
                end_of_picture: false,
                ..
            }
        ));
        // ...the next picture's first packet is.
        let steps = picture(&mut s, 11, false, now);
        assert_eq!(s.current, Some(1));
        assert!(matches!(steps[0], Step::Forward { switched: true, .. }));
        assert_eq!(steps[2], Step::Skip);
    }

    #[test]
    fn a_slot_with_no_target_forwards_nothing() {
        let now = Instant::now();
        let mut s = slot(None);
        assert_eq!(picture(&mut s, 1, true, now), vec![Step::Wait; 3]);
    }
}
