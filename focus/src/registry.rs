//! The bridge registry: what each bridge said when it registered, what its
//! reports say (load, drain, shutdown), the focus-side *corrected stress* and
//! the heartbeat.
//!
//! It owns the per-bridge records and the checks a registration must pass.
//! It must not touch conferences, choose bridges or emit events: the `Focus`
//! inputs do that, in a fixed order, around these records.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::{FocusConfig, FocusError};

/// The bridge ↔ focus control API versions this focus accepts.
pub const API_VERSIONS: std::ops::RangeInclusive<u32> = 1..=1;

/// What a bridge says about itself when it (re)connects.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub id: String,
    pub region: String,
    pub version: String,
    pub api_version: u32,
    pub signal_url: String,
    pub relay_addr: String,
    pub max_packet_rate: u64,
    /// Conference → participants it already hosts (after a focus restart).
    pub conferences: BTreeMap<String, BTreeSet<String>>,
}

/// A bridge's periodic report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rtp_packets_in_per_s: u64,
    pub rtp_packets_out_per_s: u64,
    pub endpoints: u32,
    pub healthy: bool,
    pub draining: bool,
    pub shutting_down: bool,
    pub conferences: BTreeMap<String, BTreeSet<String>>,
    /// Share of the bridge's CPU its mixing workers used (0..1).
    pub mixing_load: f64,
    /// Its recordings, running and lately ended.
    pub recordings: Vec<crate::RecordingReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BridgeState {
    Operational,
    Draining,
    ShuttingDown,
    Failed,
}

/// The focus's view of one bridge.
#[derive(Debug, Clone)]
pub struct BridgeView {
    pub reg: Registration,
    pub state: BridgeState,
    pub online: bool,
    pub stress: f64,
    pub corrected_stress: f64,
    pub conferences: usize,
    pub endpoints: u32,
    pub last_failure: Option<String>,
    pub since_report: Duration,
}

#[derive(Debug)]
pub(crate) struct Bridge {
    pub(crate) reg: Registration,
    pub(crate) state: BridgeState,
    pub(crate) online: bool,
    /// The operator asked for drain (survives reports that say otherwise).
    pub(crate) drain_requested: bool,
    pub(crate) stress: f64,
    pub(crate) endpoints: u32,
    pub(crate) last_report: Instant,
    pub(crate) joins: VecDeque<Instant>,
    /// Those of `joins` that joined mixed conferences (they cost more).
    pub(crate) mixed_joins: VecDeque<Instant>,
    pub(crate) last_failure: Option<String>,
    pub(crate) next_drain_move: Instant,
    /// Conferences this bridge appears in, so a report touches only those.
    pub(crate) hosts: BTreeSet<String>,
}

/// Checks a registration must pass before the registry changes at all.
pub(crate) fn check_registration(
    bridges: &BTreeMap<String, Bridge>,
    reg: &Registration,
) -> Result<(), FocusError> {
    if reg.id.is_empty() || reg.id.len() > 128 {
        return Err(FocusError::Invalid {
            field: "bridge_id",
            reason: "must be 1-128 characters".into(),
        });
    }
    if reg.signal_url.is_empty() {
        return Err(FocusError::Invalid {
            field: "signal_url",
            reason: "must not be empty".into(),
        });
    }
    if !API_VERSIONS.contains(&reg.api_version) {
        return Err(FocusError::IncompatibleApi {
            id: reg.id.clone(),
            version: reg.api_version,
            min: *API_VERSIONS.start(),
            max: *API_VERSIONS.end(),
        });
    }
    if bridges.get(&reg.id).is_some_and(|b| b.online) {
        return Err(FocusError::DuplicateBridge(reg.id.clone()));
    }
    Ok(())
}

/// How many of the time-ordered `joins` are less than `window` old (a
/// binary search: under a join storm a bridge holds a minute of joins).
fn within(joins: &VecDeque<Instant>, now: Instant, window: Duration) -> usize {
    let old = joins.partition_point(|&t| now.saturating_duration_since(t) >= window);
    joins.len() - old
}

impl Bridge {
    /// A bridge (re)registering. Of an earlier life it keeps the operator's
    /// drain request, its last failure (for operators) and the conferences
    /// it appeared in (so the registration's list can replace them).
    pub(crate) fn registered(now: Instant, reg: Registration, before: Option<&Bridge>) -> Self {
        let drain_requested = before.is_some_and(|b| b.drain_requested);
        Bridge {
            reg,
            state: if drain_requested {
                BridgeState::Draining
            } else {
                BridgeState::Operational
            },
            online: true,
            drain_requested,
            stress: 0.0,
            endpoints: 0,
            last_report: now,
            joins: VecDeque::new(),
            mixed_joins: VecDeque::new(),
            last_failure: before.and_then(|b| b.last_failure.clone()),
            next_drain_move: now,
            hosts: before.map(|b| b.hosts.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn usable(&self) -> bool {
        self.online && matches!(self.state, BridgeState::Operational | BridgeState::Draining)
    }

    /// Reported stress plus the joins too recent to be in a report: a burst
    /// of joins spreads instead of landing on the bridge that looked idle.
    /// A join to a mixed conference counts `mixed_participant_stress`
    /// instead (its audio is decoded and encoded, not only forwarded).
    pub(crate) fn corrected_stress(&self, now: Instant, cfg: &FocusConfig) -> f64 {
        let mixed = within(&self.mixed_joins, now, cfg.recent_join_window);
        self.stress
            + self.joins_within(now, cfg.recent_join_window) as f64 * cfg.participant_stress
            + mixed as f64 * (cfg.mixed_participant_stress - cfg.participant_stress).max(0.0)
    }

    pub(crate) fn joins_last_minute(&self, now: Instant) -> usize {
        self.joins_within(now, Duration::from_secs(60))
    }

    /// Joins less than `window` old. `joins` is in time order (see
    /// [`Bridge::record_join`]), so this is a binary search: under a join
    /// storm a bridge holds a minute of joins, and placement asks this of
    /// every candidate for every allocation.
    fn joins_within(&self, now: Instant, window: Duration) -> usize {
        within(&self.joins, now, window)
    }

    /// Count a join to a mixed conference, recorded at `t` by
    /// [`Bridge::record_join`].
    pub(crate) fn record_mixed_join(&mut self, t: Instant) {
        let t = self.mixed_joins.back().map_or(t, |&last| last.max(t));
        self.mixed_joins.push_back(t);
    }

    /// Count a join placed on this bridge now; returns the time recorded.
    /// Time never goes back here, but should a caller's clock do so the
    /// deque stays sorted.
    pub(crate) fn record_join(&mut self, now: Instant) -> Instant {
        let t = self.joins.back().map_or(now, |&last| last.max(now));
        self.joins.push_back(t);
        t
    }

    /// Take a report's load figures; it also counts as the heartbeat.
    pub(crate) fn take_load(&mut self, now: Instant, r: &Report, cfg: &FocusConfig) {
        self.last_report = now;
        let rate = self.reg.max_packet_rate.max(1) as f64;
        // Mixing is CPU the packet rate does not show.
        self.stress = (r.rtp_packets_in_per_s + r.rtp_packets_out_per_s) as f64 / rate
            + r.mixing_load.clamp(0.0, 1.0);
        self.endpoints = r.endpoints;
        // Joins older than the window no longer matter for corrected stress.
        while self.joins.front().is_some_and(|&t| {
            now.saturating_duration_since(t) >= Duration::from_secs(60).max(cfg.recent_join_window)
        }) {
            self.joins.pop_front();
        }
        while self
            .mixed_joins
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= cfg.recent_join_window)
        {
            self.mixed_joins.pop_front();
        }
    }

    /// The state a report puts the bridge in; an operator's drain request
    /// holds whatever the bridge says.
    pub(crate) fn reported_state(&self, r: &Report) -> BridgeState {
        if r.shutting_down {
            BridgeState::ShuttingDown
        } else if r.draining || self.drain_requested {
            BridgeState::Draining
        } else {
            BridgeState::Operational
        }
    }

    /// Forget what a failed bridge last reported: none of it is true any more.
    pub(crate) fn mark_failed(&mut self, reason: String) {
        self.online = false;
        self.state = BridgeState::Failed;
        self.last_failure = Some(reason);
        self.joins.clear();
        self.mixed_joins.clear();
        self.stress = 0.0;
        self.endpoints = 0;
        self.hosts.clear();
    }

    pub(crate) fn view(&self, now: Instant, cfg: &FocusConfig, conferences: usize) -> BridgeView {
        BridgeView {
            reg: self.reg.clone(),
            state: self.state,
            online: self.online,
            stress: self.stress,
            corrected_stress: self.corrected_stress(now, cfg),
            conferences,
            endpoints: self.endpoints,
            last_failure: self.last_failure.clone(),
            since_report: now.saturating_duration_since(self.last_report),
        }
    }
}

/// Online bridges whose last report is at least `timeout` old, and how old.
pub(crate) fn silent(
    bridges: &BTreeMap<String, Bridge>,
    now: Instant,
    timeout: Duration,
) -> Vec<(String, Duration)> {
    bridges
        .iter()
        .filter(|(_, b)| b.online)
        .map(|(id, b)| (id.clone(), now.saturating_duration_since(b.last_report)))
        .filter(|(_, d)| *d >= timeout)
        .collect()
}
