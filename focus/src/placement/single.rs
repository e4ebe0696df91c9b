//! One bridge per conference (no cascading): the conference's bridge if it
//! may still take participants, whatever its load or cap; for a new
//! conference the least stressed bridge in the participant's region, else
//! anywhere.

use super::{Candidate, Placer, least};

pub(crate) struct SingleBridge;

impl Placer for SingleBridge {
    fn place<'a>(&self, cands: &[Candidate<'a>]) -> Option<(&'a str, u8)> {
        // Candidates are in id order: of several bridges (a conference
        // rebuilt after a focus restart), the lowest id.
        cands
            .iter()
            .find(|c| c.conf)
            .map(|c| c.id)
            .or_else(|| least(cands, |c| c.region))
            .or_else(|| least(cands, |_| true))
            .map(|id| (id, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::cand;

    #[test]
    fn an_overloaded_conference_bridge_still_takes_the_conference() {
        let busy = Candidate {
            conf: true,
            ok: false,
            below_cap: false,
            ..cand("busy", 0.99)
        };
        let idle = Candidate {
            region: true,
            ..cand("idle", 0.0)
        };
        assert_eq!(SingleBridge.place(&[busy, idle]), Some(("busy", 0)));
    }

    #[test]
    fn a_new_conference_goes_to_the_least_loaded_bridge_in_the_region() {
        let near = |id, s| Candidate {
            region: true,
            ..cand(id, s)
        };
        let cands = [cand("far", 0.0), near("n1", 0.4), near("n2", 0.3)];
        assert_eq!(SingleBridge.place(&cands), Some(("n2", 0)));
        assert_eq!(
            SingleBridge.place(&[cand("x", 0.5), cand("y", 0.1)]),
            Some(("y", 0)),
            "none in the region: least loaded anywhere"
        );
    }
}
