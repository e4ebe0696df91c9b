//! Operational bridges ordered by corrected stress, per region and over the
//! fleet, so placement finds the least stressed bridge that fits without
//! walking every bridge (a join storm on a fleet of thousands).
//!
//! Corrected stress moves when a report arrives, when a join is placed and
//! when a join leaves the recent-join window; the first two re-key the
//! bridge at once, the third through a queue of expiries that
//! [`StressIndex::expire`] drains before every placement. So at any `now`
//! the order is exactly what computing every bridge's corrected stress
//! would give. It must not decide anything: placement reads it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Instant;

use crate::FocusConfig;
use crate::registry::{Bridge, BridgeState};

/// Corrected stress as an order-preserving key (stress is never negative,
/// and for non-negative floats the bit pattern orders like the value), then
/// the bridge id: the same order as `placement::least`'s tie-break.
type Key = (u64, String);

#[derive(Debug, Default)]
pub(crate) struct StressIndex {
    by_region: BTreeMap<String, BTreeSet<Key>>,
    fleet: BTreeSet<Key>,
    /// Bridge id → (region, key) it is filed under.
    filed: BTreeMap<String, (String, u64)>,
    /// When a placed join stops counting towards a bridge's corrected
    /// stress.
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
}

impl StressIndex {
    /// File `b` under its current corrected stress, or take it out when it
    /// may not take participants as an operational bridge.
    pub(crate) fn update(&mut self, now: Instant, cfg: &FocusConfig, id: &str, b: &Bridge) {
        self.remove(id);
        if !(b.online && b.state == BridgeState::Operational) {
            return;
        }
        let stress = b.corrected_stress(now, cfg).max(0.0);
        let bits = stress.to_bits();
        self.by_region
            .entry(b.reg.region.clone())
            .or_default()
            .insert((bits, id.to_string()));
        self.fleet.insert((bits, id.to_string()));
        self.filed
            .insert(id.to_string(), (b.reg.region.clone(), bits));
    }

    fn remove(&mut self, id: &str) {
        let Some((region, bits)) = self.filed.remove(id) else {
            return;
        };
        let key = (bits, id.to_string());
        self.fleet.remove(&key);
        if let Some(set) = self.by_region.get_mut(&region) {
            set.remove(&key);
            if set.is_empty() {
                self.by_region.remove(&region);
            }
        }
    }

    /// A join placed on `id` at `at` stops counting at `at + window`.
    pub(crate) fn join_placed(&mut self, id: &str, at: Instant, cfg: &FocusConfig) {
        self.expiries
            .push(Reverse((at + cfg.recent_join_window, id.to_string())));
    }

    /// Re-key every bridge one of whose joins left the window by `now`.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        cfg: &FocusConfig,
        bridges: &BTreeMap<String, Bridge>,
    ) {
        while let Some(Reverse((at, _))) = self.expiries.peek()
            && *at <= now
        {
            let Some(Reverse((_, id))) = self.expiries.pop() else {
                break;
            };
            if let Some(b) = bridges.get(&id) {
                self.update(now, cfg, &id, b);
            }
        }
    }

    /// Operational bridges of `region`, least stressed first.
    pub(crate) fn region(&self, region: &str) -> impl Iterator<Item = (f64, &str)> {
        self.by_region
            .get(region)
            .into_iter()
            .flatten()
            .map(|(bits, id)| (f64::from_bits(*bits), id.as_str()))
    }

    /// Every operational bridge, least stressed first.
    pub(crate) fn fleet(&self) -> impl Iterator<Item = (f64, &str)> {
        self.fleet
            .iter()
            .map(|(bits, id)| (f64::from_bits(*bits), id.as_str()))
    }

    /// Regions with at least one operational bridge.
    pub(crate) fn regions(&self) -> impl Iterator<Item = &str> {
        self.by_region.keys().map(String::as_str)
    }
}
