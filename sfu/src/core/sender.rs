//! Sender constraints ("dynacast", JVB's `SenderSourceConstraints`): a
//! publisher is told the tallest layer of each video source anybody wants —
//! local receivers or peers over the relay — and stops encoding and sending
//! the layers above it. Nobody watching means nothing is sent.
//!
//! A layer paused this way stays *available* to layer selection (it was
//! flowing, it can again): a receiver that starts wanting it raises the
//! constraint at once, and the publisher resumes with a keyframe. Lowering
//! waits for [`PAUSE_DELAY`], so receivers moving between layers do not make
//! encoders flap.

use std::time::{Duration, Instant};

use super::{Core, EndpointId, Layer};
use crate::signal::{Kind, ServerMessage};

/// How long a layer nobody wants keeps flowing before its publisher is told
/// to stop it.
pub const PAUSE_DELAY: Duration = Duration::from_secs(3);
/// How long a resumed layer counts as available before its first packets.
const RESUME_GRACE: Duration = Duration::from_secs(3);

/// What the publisher of one local video source was told.
#[derive(Debug, Default, Clone)]
pub(super) struct SendConstraint {
    /// Tallest declared height it may send; `None`: never told (all layers).
    told: Option<u32>,
    /// Since when fewer layers than `told` allows have been wanted.
    lower_since: Option<Instant>,
}

impl Layer {
    /// Whether layer selection may choose it: flowing now, or paused by a
    /// sender constraint after it flowed (it resumes when asked), or paused
    /// before it ever sent and never yet resumed (a browser ramps its top
    /// layer up late: a publisher alone from the start can be told to stop
    /// before its 720p ever flowed, and that layer must stay reachable), or
    /// resumed and its first packets are on their way.
    pub(super) fn available(&self, now: Instant) -> bool {
        if self.is_active(now) {
            return true;
        }
        if self.remote_active.is_some() {
            return false;
        }
        if self.paused {
            // A layer that never sent and did not come when resumed once is
            // one the publisher does not send at all.
            return self.last_packet.is_some() || self.resumed_at.is_none();
        }
        self.resumed_at
            .is_some_and(|t| now.saturating_duration_since(t) < RESUME_GRACE)
    }
}

impl Core {
    /// Recompute what each local video source's publisher must send and tell
    /// it when that changes (raised at once, lowered after `PAUSE_DELAY`).
    pub(super) fn update_sender_constraints(&mut self, now: Instant) {
        let mut messages: Vec<(EndpointId, String, u32)> = Vec::new();
        let ids: Vec<EndpointId> = self.endpoints.keys().copied().collect();
        for id in ids {
            let Some(ep) = self.endpoints.get(&id) else {
                continue;
            };
            let mut wanted: Vec<(usize, u32)> = Vec::new();
            for (i, s) in ep.sources.iter().enumerate() {
                if s.kind != Kind::Video {
                    continue;
                }
                let r = super::SourceRef {
                    endpoint: id,
                    mid: s.mid,
                };
                let mut mask = s.relay_demand.iter().fold(0u32, |m, (_, d)| m | d);
                // A recording wants the top layer.
                mask |= s.record.layers;
                if ep.mixed.is_some() && self.cfg.composite {
                    // The composite decodes its first layer.
                    mask |= 1;
                }
                for &(sub, slot_i) in &s.subscribers {
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
                let height = s
                    .layers
                    .iter()
                    .enumerate()
                    .filter(|(l, _)| mask & (1 << (l % 32)) != 0)
                    .map(|(_, l)| l.declared_height.max(1))
                    .max()
                    .unwrap_or(0);
                wanted.push((i, height));
            }
            let Some(ep) = self.endpoints.get_mut(&id) else {
                continue;
            };
            for (i, height) in wanted {
                let Some(s) = ep.sources.get_mut(i) else {
                    continue;
                };
                let all = s
                    .layers
                    .iter()
                    .map(|l| l.declared_height.max(1))
                    .max()
                    .unwrap_or(0);
                let told = s.constraint.told.unwrap_or(all);
                let send = if height > told {
                    true
                } else if height < told {
                    let since = *s.constraint.lower_since.get_or_insert(now);
                    now.saturating_duration_since(since) >= PAUSE_DELAY
                } else {
                    s.constraint.lower_since = None;
                    false
                };
                if !send {
                    continue;
                }
                s.constraint.told = Some(height);
                s.constraint.lower_since = None;
                for l in &mut s.layers {
                    let pause = l.declared_height.max(1) > height;
                    if l.paused && !pause {
                        l.resumed_at = Some(now);
                    }
                    l.paused = pause;
                }
                messages.push((id, s.name.clone(), height));
            }
        }
        for (id, source, max_height) in messages {
            self.stats.sender_constraints += 1;
            tracing::debug!(endpoint = %id, %source, max_height, "sender constraint");
            self.signal(id, ServerMessage::SenderConstraints { source, max_height });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_paused_before_it_ever_sent_stays_available_until_a_resume_fails() {
        let t0 = Instant::now();
        let mut l = Layer::new(None, 720);
        l.paused = true;
        assert!(l.available(t0), "paused before its first packet");
        // Resumed: available while its first packets may be on their way.
        l.paused = false;
        l.resumed_at = Some(t0);
        assert!(l.available(t0 + Duration::from_secs(1)));
        assert!(!l.available(t0 + RESUME_GRACE + Duration::from_millis(1)));
        // Nothing came: paused again, it no longer counts.
        l.paused = true;
        assert!(!l.available(t0 + Duration::from_secs(10)));
        // One that flowed before its pause always does.
        l.last_packet = Some(t0);
        assert!(l.available(t0 + Duration::from_secs(10)));
    }
}
