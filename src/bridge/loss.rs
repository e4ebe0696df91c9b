//! Participants' packet loss as Prometheus histograms, one per direction:
//! `tern_uplink_loss_ratio` (participant to bridge) and
//! `tern_downlink_loss_ratio` (bridge to participant). Each session adds
//! one observation every few seconds (the core's `STATS_INTERVAL`), so the
//! histogram is a distribution over participants: "the share of sessions
//! losing more than 5 %" is one PromQL division, without a participant
//! label.

use tern_sfu::{Core, LossDirection};

use super::histogram::Histogram;

/// Loss fractions worth telling apart: clean, FEC/NACK-repairable, visible,
/// unusable.
const BOUNDS: [f64; 8] = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
const LE: [&str; 9] = [
    "0", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "+Inf",
];

pub struct Loss {
    uplink: Histogram,
    downlink: Histogram,
}

impl Loss {
    pub fn new(shard: u8) -> Self {
        Self {
            uplink: Histogram::new("tern_uplink_loss_ratio", shard, &BOUNDS, &LE),
            downlink: Histogram::new("tern_downlink_loss_ratio", shard, &BOUNDS, &LE),
        }
    }

    /// Take the core's pending samples and export (once a second).
    pub fn export(&mut self, core: &mut Core) {
        let (up, down) = (&mut self.uplink, &mut self.downlink);
        core.drain_loss_samples(|dir, f| match dir {
            LossDirection::Uplink => up.observe(f64::from(f), 1),
            LossDirection::Downlink => down.observe(f64::from(f), 1),
        });
        self.uplink.export();
        self.downlink.export();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_bounds() {
        super::super::histogram::assert_labels_match(&BOUNDS, &LE);
    }
}
