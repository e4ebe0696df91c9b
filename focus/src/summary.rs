//! A cheap read-only summary of the focus's state for metrics: counts and
//! per-bridge stress, without the per-bridge conference counts that
//! [`Focus::bridges`] computes (those scan every conference per bridge).

use std::collections::{BTreeMap, BTreeSet};

use crate::{BridgeState, Focus};

/// One bridge as metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSummary {
    pub id: String,
    pub region: String,
    pub state: BridgeState,
    /// The stress from its last report (packet rate over its capacity);
    /// 0 once it is offline, so a dead bridge's last load does not linger.
    pub stress: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub bridges: Vec<BridgeSummary>,
    pub conferences: usize,
    /// Participants over all conferences and bridges (a participant
    /// allocated but not yet reported counts once allocated).
    pub participants: usize,
    /// Unordered bridge pairs currently told to relay to each other for at
    /// least one conference.
    pub relay_links: usize,
}

impl BridgeState {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeState::Operational => "operational",
            BridgeState::Draining => "draining",
            BridgeState::ShuttingDown => "shutting_down",
            BridgeState::Failed => "failed",
        }
    }

    pub const ALL: [BridgeState; 4] = [
        BridgeState::Operational,
        BridgeState::Draining,
        BridgeState::ShuttingDown,
        BridgeState::Failed,
    ];
}

impl Focus {
    pub fn summary(&self) -> Summary {
        let bridges = self
            .bridges
            .iter()
            .map(|(id, b)| BridgeSummary {
                id: id.clone(),
                region: b.reg.region.clone(),
                state: b.state,
                stress: if b.online { b.stress } else { 0.0 },
            })
            .collect();
        let participants = self
            .conferences
            .values()
            .map(|c| c.bridges.values().map(BTreeSet::len).sum::<usize>())
            .sum();
        let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
        for ((_, bridge), peers) in &self.relay_told {
            for (peer, _) in peers {
                let (a, b) = if bridge.as_str() < peer.as_str() {
                    (bridge.as_str(), peer.as_str())
                } else {
                    (peer.as_str(), bridge.as_str())
                };
                pairs.insert((a, b));
            }
        }
        Summary {
            bridges,
            conferences: self.conferences.len(),
            participants,
            relay_links: pairs.len(),
        }
    }
}

/// Bridges per (region, state), with every state present for every region
/// seen, so a gauge for a state that emptied reads 0 rather than vanishing.
pub fn bridges_by_region_and_state(s: &Summary) -> BTreeMap<(String, BridgeState), usize> {
    let mut out = BTreeMap::new();
    for b in &s.bridges {
        for st in BridgeState::ALL {
            out.entry((b.region.clone(), st)).or_insert(0);
        }
        *out.entry((b.region.clone(), b.state)).or_insert(0) += 1;
    }
    out
}
