//! Placement: which bridge takes a participant.
//!
//! [`select`] decides which bridges may take the participant at all (online,
//! not shutting down, of the conference's software version; draining ones
//! only when nothing else is left) and describes each once as a
//! [`Candidate`]. A [`Placer`] (one per [`Strategy`], one file each) then
//! picks among the candidates. Placers only read: recording the allocation
//! is the conference map's job.

mod region;
mod single;
mod split;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::conference::Conference;
use crate::registry::{Bridge, BridgeState};
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

/// Choose a bridge id for `participant` of `conf` (None: a new conference)
/// coming from `region`, and the rule that chose it.
pub(crate) fn select(
    now: Instant,
    cfg: &FocusConfig,
    bridges: &BTreeMap<String, Bridge>,
    conf: Option<&Conference>,
    participant: &str,
    region: &str,
) -> Result<(String, u8), FocusError> {
    // Participants of the conference already on a bridge, not counting this
    // one (a reconnect must not count against its own cap).
    let on = |id: &str| -> usize {
        conf.and_then(|c| c.bridges.get(id))
            .map_or(0, |p| p.iter().filter(|x| *x != participant).count())
    };
    let in_conf = |id: &str| conf.is_some_and(|c| c.bridges.contains_key(id));
    let eligible: Vec<(&String, &Bridge)> = bridges
        .iter()
        .filter(|(_, b)| b.usable())
        .filter(|(_, b)| {
            conf.and_then(|c| c.version.as_ref())
                .is_none_or(|v| *v == b.reg.version)
        })
        .collect();
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
        .map(|(id, b)| {
            let stress = b.corrected_stress(now, cfg);
            let on_it = on(id);
            let ok = stress < cfg.overload_stress
                && on_it < cfg.participant_cap
                && cfg
                    .max_joins_per_minute
                    .is_none_or(|m| b.joins_last_minute(now) < m);
            Candidate {
                id: id.as_str(),
                stress,
                region: b.reg.region == region,
                group: in_group(cfg, &b.reg.region, region),
                conf: in_conf(id),
                below_cap: on_it < cfg.participant_cap,
                ok,
            }
        })
        .collect();
    cfg.strategy
        .placer()
        .place(&cands)
        .map(|(id, rule)| (id.to_string(), rule))
        .ok_or_else(|| FocusError::NoBridge("none".into()))
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
