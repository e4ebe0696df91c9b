//! Every participant of a conference on a bridge the conference is not on
//! yet, when there is one (to exercise the relay), else the least stressed
//! bridge. Region and overload are ignored.

use super::{Candidate, Placer, least};

pub(crate) struct Split;

impl Placer for Split {
    fn place<'a>(&self, cands: &[Candidate<'a>]) -> Option<(&'a str, u8)> {
        least(cands, |c| !c.conf)
            .or_else(|| least(cands, |_| true))
            .map(|id| (id, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::cand;

    #[test]
    fn a_busier_bridge_without_the_conference_beats_an_idle_one_with_it() {
        let with = Candidate {
            conf: true,
            ..cand("with", 0.0)
        };
        assert_eq!(
            Split.place(&[with.clone(), cand("without", 0.7)]),
            Some(("without", 0))
        );
        assert_eq!(
            Split.place(&[
                with,
                Candidate {
                    conf: true,
                    ..cand("also", 0.2)
                }
            ]),
            Some(("with", 0)),
            "every bridge has it: least loaded"
        );
    }
}
