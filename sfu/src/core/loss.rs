//! Packet loss per participant, for the bridge's loss histograms: str0m's
//! peer stats (every [`STATS_INTERVAL`]) give each session's loss in both
//! directions from transport-wide congestion control — downlink: the share
//! of what the bridge sent that the participant's feedback reports lost;
//! uplink: the share of the participant's packets that never reached the
//! bridge. Samples wait here until the shell drains them (once a second);
//! an undrained backlog is capped, so a shell that never drains costs
//! bounded memory.

use std::time::Duration;

use str0m::stats::PeerStats;

use super::Core;
use crate::EndpointId;

/// How often each session reports its loss.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Samples kept per direction between drains.
const MAX_PENDING: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossDirection {
    /// Participant to bridge.
    Uplink,
    /// Bridge to participant.
    Downlink,
}

#[derive(Debug, Default)]
pub(crate) struct LossSamples {
    uplink: Vec<f32>,
    downlink: Vec<f32>,
}

impl LossSamples {
    fn push(v: &mut Vec<f32>, fraction: Option<f32>) {
        // A fraction outside 0..=1 (or NaN) is not a loss measurement.
        if let Some(f) = fraction.filter(|f| (0.0..=1.0).contains(f))
            && v.len() < MAX_PENDING
        {
            v.push(f);
        }
    }
}

impl Core {
    pub(super) fn on_peer_stats(&mut self, _id: EndpointId, s: &PeerStats) {
        LossSamples::push(&mut self.loss.uplink, s.ingress_loss_fraction);
        LossSamples::push(&mut self.loss.downlink, s.egress_loss_fraction);
    }

    /// Hand every pending loss sample (a fraction in 0..=1) to `f` and
    /// forget them.
    pub fn drain_loss_samples(&mut self, mut f: impl FnMut(LossDirection, f32)) {
        for x in self.loss.uplink.drain(..) {
            f(LossDirection::Uplink, x);
        }
        for x in self.loss.downlink.drain(..) {
            f(LossDirection::Downlink, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fractions_drops_nonsense_and_caps_the_backlog() {
        let mut v = Vec::new();
        for f in [
            Some(0.0),
            Some(0.25),
            Some(1.0),
            None,
            Some(-0.1),
            Some(1.5),
            Some(f32::NAN),
        ] {
            LossSamples::push(&mut v, f);
        }
        assert_eq!(v, vec![0.0, 0.25, 1.0]);
        for _ in 0..2 * MAX_PENDING {
            LossSamples::push(&mut v, Some(0.5));
        }
        assert_eq!(v.len(), MAX_PENDING);
    }
}
