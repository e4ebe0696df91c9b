//! Jicofo's region-based selection (`RegionBasedBridgeSelectionStrategy`,
//! with the overload checks of `BridgeSelector`): the first of eight rules
//! that any candidate matches, and within it the least stressed candidate.

use super::{Candidate, Placer, least};

pub(crate) struct RegionBased;

type Rule = (u8, fn(&Candidate) -> bool);

/// Nearness first, then staying with the conference, then load; a
/// conference spreads to another bridge only when its own are overloaded
/// or far away.
const RULES: [Rule; 8] = [
    (1, |c| c.ok && c.conf && c.region),
    (2, |c| c.ok && c.conf && c.group),
    (3, |c| c.ok && c.region),
    (4, |c| c.ok && c.group),
    (5, |c| c.ok && c.conf),
    (6, |c| c.ok),
    // Everything is overloaded: least-loaded conference bridge below the
    // participant cap, else least loaded overall.
    (7, |c| c.conf && c.below_cap),
    (8, |_| true),
];

impl Placer for RegionBased {
    fn place<'a>(&self, cands: &[Candidate<'a>]) -> Option<(&'a str, u8)> {
        RULES
            .iter()
            .find_map(|&(rule, f)| least(cands, f).map(|id| (id, rule)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::cand;

    #[test]
    fn a_loaded_conference_bridge_in_the_region_beats_an_idle_one_elsewhere() {
        let here = Candidate {
            conf: true,
            region: true,
            group: true,
            ..cand("here", 0.5)
        };
        let idle_far = cand("far", 0.0);
        assert_eq!(RegionBased.place(&[idle_far, here]), Some(("here", 1)));
    }

    #[test]
    fn when_every_bridge_is_overloaded_the_conference_stays_below_its_cap() {
        let full = Candidate {
            conf: true,
            below_cap: false,
            ok: false,
            ..cand("full", 0.1)
        };
        let other_conf = Candidate {
            conf: true,
            ok: false,
            ..cand("other", 0.95)
        };
        let stranger = Candidate {
            ok: false,
            ..cand("stranger", 0.9)
        };
        assert_eq!(
            RegionBased.place(&[full.clone(), other_conf, stranger.clone()]),
            Some(("other", 7))
        );
        assert_eq!(
            RegionBased.place(&[full, stranger]),
            Some(("full", 8)),
            "nothing below the cap: least loaded overall"
        );
    }

    #[test]
    fn equal_stress_goes_to_the_lowest_id() {
        assert_eq!(
            RegionBased.place(&[cand("b", 0.2), cand("a", 0.2)]),
            Some(("a", 6))
        );
    }
}
