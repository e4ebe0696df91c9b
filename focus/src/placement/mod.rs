//! Placement: which bridge takes a participant.
//!
//! [`walk`] decides which bridges may take the participant at all (online,
//! not shutting down, of the conference's software version; draining ones
//! only when nothing else is left) and describes each once as a
//! [`Candidate`]. A [`Placer`] (one per [`Strategy`], one file each) then
//! picks among the candidates. For the region-based strategy [`select`]
//! first asks the stress index (`indexed`), which gives the same answer
//! without walking the fleet. Placers only read: recording the allocation
//! is the conference map's job.

mod region;
mod single;
mod split;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::conference::Conference;
use crate::registry::{Bridge, BridgeState};
use crate::stress_index::StressIndex;
use crate::{FocusConfig, FocusError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Jicofo's region-based order (the default).
    RegionBased,
    /// Every conference on exactly one bridge (no cascading).
    SingleBridge,
    /// Every participant of a conference on a different bridge when possible
    /// (exercises cascading).
    Split,
}

impl Strategy {
    fn placer(self) -> &'static dyn Placer {
        match self {
            Strategy::RegionBased => &region::RegionBased,
            Strategy::SingleBridge => &single::SingleBridge,
            Strategy::Split => &split::Split,
        }
    }
}

/// Where a participant goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub bridge_id: String,
    pub region: String,
    pub signal_url: String,
    /// Which rule of the selection order chose it (1–8; 0 for strategies
    /// other than region-based).
    pub rule: u8,
    /// The conference's video codec, for the participant's token: the
    /// first allocation of the conference that named one set it.
    pub video_codec: Option<String>,
    /// The conference's mode, for the participant's token.
    pub mode: crate::ConferenceMode,
}

/// Everything the strategies ask about one eligible bridge, computed once:
/// with thousands of bridges, recomputing stress and map lookups per
/// comparison dominated allocation time.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub(crate) id: &'a str,
    /// Corrected stress.
    pub(crate) stress: f64,
    /// In the participant's region.
    pub(crate) region: bool,
    /// In the participant's region or a region grouped with it.
    pub(crate) group: bool,
    /// Already hosts the conference.
    pub(crate) conf: bool,
    /// Holds fewer of the conference's participants than the cap.
    pub(crate) below_cap: bool,
    /// Not overloaded for this conference: below the overload stress, the
    /// participant cap and the join rate limit.
    pub(crate) ok: bool,
}

/// A placement strategy, like Jicofo's `BridgeSelectionStrategy` subclasses.
pub(crate) trait Placer {
    /// The chosen candidate's id and the rule that chose it (0 for
    /// strategies without numbered rules); None when nothing fits.
    /// `cands` is in bridge id order.
    fn place<'a>(&self, cands: &[Candidate<'a>]) -> Option<(&'a str, u8)>;
}

/// The least stressed candidate that `f` accepts; ties go to the lowest id,
/// so placement does not depend on anything but the state.
pub(crate) fn least<'a>(
    cands: &[Candidate<'a>],
    f: impl Fn(&Candidate) -> bool,
) -> Option<&'a str> {
    cands
        .iter()
        .filter(|c| f(c))
        .min_by(|a, b| a.stress.total_cmp(&b.stress).then_with(|| a.id.cmp(b.id)))
        .map(|c| c.id)
}

fn in_group(cfg: &FocusConfig, a: &str, b: &str) -> bool {
    a == b
        || cfg
            .region_groups
            .iter()
            .any(|g| g.iter().any(|r| r == a) && g.iter().any(|r| r == b))
}

/// Describe bridge `id` for this allocation.
fn candidate<'a>(
    now: Instant,
    cfg: &FocusConfig,
    id: &'a str,
    b: &Bridge,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Candidate<'a> {
    // Participants of the conference already on the bridge, not counting
    // this one (a reconnect must not count against its own cap).
    let on_it = conf
        .and_then(|c| c.bridges.get(id))
        .map_or(0, |p| p.iter().filter(|x| *x != participant).count());
    let stress = b.corrected_stress(now, cfg);
    let ok = stress < cfg.overload_stress
        && on_it < cfg.participant_cap
        && cfg
            .max_joins_per_minute
            .is_none_or(|m| b.joins_last_minute(now) < m);
    Candidate {
        id,
        stress,
        region: b.reg.region == region,
        group: in_group(cfg, &b.reg.region, region),
        conf: conf.is_some_and(|c| c.bridges.contains_key(id)),
        below_cap: on_it < cfg.participant_cap,
        ok,
    }
}

/// May `b` take a participant of `conf` at all (before draining ones are
/// set aside)?
fn eligible(b: &Bridge, conf: Option<&Conference>) -> bool {
    b.usable()
        && conf
            .and_then(|c| c.version.as_ref())
            .is_none_or(|v| *v == b.reg.version)
}

/// Choose a bridge id for `participant` of `conf` (None: a new conference)
/// coming from `region`, and the rule that chose it.
pub(crate) fn select(
    now: Instant,
    cfg: &FocusConfig,
    bridges: &BTreeMap<String, Bridge>,
    index: &mut StressIndex,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Result<(String, u8), FocusError> {
    index.expire(now, cfg, bridges);
    // A mixed conference is mixed in one place: all of it on one bridge,
    // whatever the configured strategy.
    if conf.is_some_and(|c| matches!(c.mode, Some(crate::ConferenceMode::Mixed { .. }))) {
        return walk_with(
            now,
            cfg,
            Strategy::SingleBridge,
            bridges,
            conf,
            participant,
            region,
        );
    }
    if cfg.strategy == Strategy::RegionBased
        && let Some(hit) = indexed(now, cfg, bridges, index, conf, participant, region)
    {
        return Ok(hit);
    }
    walk(now, cfg, bridges, conf, participant, region)
}

/// [`select`] over every registered bridge.
pub(crate) fn walk(
    now: Instant,
    cfg: &FocusConfig,
    bridges: &BTreeMap<String, Bridge>,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Result<(String, u8), FocusError> {
    walk_with(now, cfg, cfg.strategy, bridges, conf, participant, region)
}

/// [`walk`] with a given strategy.
fn walk_with(
    now: Instant,
    cfg: &FocusConfig,
    strategy: Strategy,
    bridges: &BTreeMap<String, Bridge>,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Result<(String, u8), FocusError> {
    let eligible: Vec<(&String, &Bridge)> =
        bridges.iter().filter(|(_, b)| eligible(b, conf)).collect();
    if eligible.is_empty() {
        return Err(FocusError::NoBridge(
            "no operational bridge of the conference's version".into(),
        ));
    }
    // Draining bridges only when nothing else is left.
    let preferred: Vec<(&String, &Bridge)> = {
        let active: Vec<_> = eligible
            .iter()
            .copied()
            .filter(|(_, b)| b.state == BridgeState::Operational)
            .collect();
        if active.is_empty() { eligible } else { active }
    };
    let cands: Vec<Candidate> = preferred
        .iter()
        .map(|(id, b)| candidate(now, cfg, id, b, conf, participant, region))
        .collect();
    strategy
        .placer()
        .place(&cands)
        .map(|(id, rule)| (id.to_string(), rule))
        .ok_or_else(|| FocusError::NoBridge("none".into()))
}

/// The region-based rules through the stress index: the conference's own
/// bridges are few and looked at directly; "least stressed in the region",
/// "in the region group" and "anywhere" are the first fitting entries of
/// the index's stress-ordered sets. What it finds is what [`walk`] finds:
/// the index holds exactly the operational bridges, in the order of
/// [`least`] (stress, then id), at `now`. None when no operational bridge
/// of the conference's version exists (then only draining ones may take
/// it, which [`walk`] handles). So an allocation costs the conference's
/// bridges and a few index steps, not the fleet.
fn indexed(
    now: Instant,
    cfg: &FocusConfig,
    bridges: &BTreeMap<String, Bridge>,
    index: &StressIndex,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Option<(String, u8)> {
    let cand_of = |id: &str| {
        bridges
            .get_key_value(id)
            .filter(|(_, b)| eligible(b, conf) && b.state == BridgeState::Operational)
            .map(|(id, b)| candidate(now, cfg, id, b, conf, participant, region))
    };
    // The first candidate that is not overloaded, in stress order: past
    // the overload stress nothing can be.
    let first_ok = |order: &mut dyn Iterator<Item = (f64, &str)>| {
        order
            .take_while(|(stress, _)| *stress < cfg.overload_stress)
            .filter_map(|(_, id)| cand_of(id))
            .find(|c| c.ok)
    };
    let own: Vec<Candidate> = conf
        .into_iter()
        .flat_map(|c| c.bridges.keys())
        .filter_map(|id| cand_of(id))
        .collect();
    let hit = |id: &str, rule: u8| Some((id.to_string(), rule));
    if let Some(id) = least(&own, |c| c.ok && c.region) {
        return hit(id, 1);
    }
    if let Some(id) = least(&own, |c| c.ok && c.group) {
        return hit(id, 2);
    }
    if let Some(c) = first_ok(&mut index.region(region)) {
        return hit(c.id, 3);
    }
    let group: Vec<Candidate> = index
        .regions()
        .filter(|r| in_group(cfg, r, region))
        .filter_map(|r| first_ok(&mut index.region(r)))
        .collect();
    if let Some(id) = least(&group, |_| true) {
        return hit(id, 4);
    }
    if let Some(id) = least(&own, |c| c.ok) {
        return hit(id, 5);
    }
    if let Some(c) = first_ok(&mut index.fleet()) {
        return hit(c.id, 6);
    }
    if let Some(id) = least(&own, |c| c.below_cap) {
        return hit(id, 7);
    }
    let any = index.fleet().find_map(|(_, id)| cand_of(id))?;
    hit(any.id, 8)
}

/// Candidates for the strategies' unit tests.
#[cfg(test)]
pub(crate) fn cand(id: &str, stress: f64) -> Candidate<'_> {
    Candidate {
        id,
        stress,
        region: false,
        group: false,
        conf: false,
        below_cap: true,
        ok: true,
    }
}
