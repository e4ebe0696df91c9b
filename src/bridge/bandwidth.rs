//! Receivers' bandwidth as Prometheus histograms: once a second every
//! receiver with an estimate contributes one observation of its estimated
//! downlink and one of what allocation gave it (video and audio), in bytes
//! per second. No participant label: the distribution across a bridge's
//! receivers is what an operator reads (how many sit on thin links, how
//! much of their estimate they get), and a label per participant would be
//! unbounded.
//!
//! `tern_receiver_bandwidth_estimate_bytes_per_second_bucket{le=…}`,
//! `_count`, `_sum`, and the same for `..._allocated_...`.

use metrics::Counter;
use tern_sfu::Core;

use super::histogram::Histogram;

/// Bucket upper bounds in bytes per second: 50 kbit/s .. 20 Mbit/s.
const BOUNDS: [f64; 12] = [
    6_250.0,
    12_500.0,
    25_000.0,
    50_000.0,
    75_000.0,
    125_000.0,
    187_500.0,
    250_000.0,
    375_000.0,
    625_000.0,
    1_250_000.0,
    2_500_000.0,
];

/// The `le` label values of [`BOUNDS`], then `+Inf`.
const LE: [&str; 13] = [
    "6250", "12500", "25000", "50000", "75000", "125000", "187500", "250000", "375000", "625000",
    "1250000", "2500000", "+Inf",
];

pub struct ReceiverBandwidth {
    estimate: Histogram,
    allocated: Histogram,
    estimates: Counter,
    probes: Counter,
    allocation_changes: Counter,
    suspensions: Counter,
    samples: Vec<(u64, u64)>,
}

impl ReceiverBandwidth {
    pub fn new(shard: u8) -> Self {
        let s = shard.to_string();
        Self {
            estimate: Histogram::new(
                "tern_receiver_bandwidth_estimate_bytes_per_second",
                shard,
                &BOUNDS,
                &LE,
            ),
            allocated: Histogram::new(
                "tern_receiver_bandwidth_allocated_bytes_per_second",
                shard,
                &BOUNDS,
                &LE,
            ),
            estimates: metrics::counter!("tern_bandwidth_estimates_total", "shard" => s.clone()),
            probes: metrics::counter!("tern_bandwidth_probes_total", "shard" => s.clone()),
            allocation_changes: metrics::counter!("tern_allocation_changes_total", "shard" => s.clone()),
            suspensions: metrics::counter!("tern_video_suspensions_total", "shard" => s),
            samples: Vec::new(),
        }
    }

    /// Sample every receiver and export (once a second).
    pub fn export(&mut self, core: &Core) {
        self.samples.clear();
        core.bandwidth_samples(&mut self.samples);
        for &(estimate, allocated) in &self.samples {
            self.estimate.observe(estimate as f64 / 8.0, 1);
            self.allocated.observe(allocated as f64 / 8.0, 1);
        }
        self.estimate.export();
        self.allocated.export();
        let st = core.stats();
        self.estimates.absolute(st.bandwidth_estimates);
        self.probes.absolute(st.bandwidth_probes);
        self.allocation_changes.absolute(st.allocation_changes);
        self.suspensions.absolute(st.suspensions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_bounds() {
        super::super::histogram::assert_labels_match(&BOUNDS, &LE);
    }

    #[test]
    fn a_sample_lands_in_the_first_bucket_it_does_not_exceed() {
        let mut h = Histogram::new("test_bandwidth", 0, &BOUNDS, &LE);
        h.observe(50_000.0, 1);
        h.observe(50_001.0, 1);
        h.observe(1e9, 1);
        assert_eq!(h.counts()[3], 1);
        assert_eq!(h.counts()[4], 1);
        assert_eq!(h.counts()[BOUNDS.len()], 1);
    }
}
