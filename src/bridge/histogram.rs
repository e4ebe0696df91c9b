//! A Prometheus histogram kept as plain per-bucket counts (an add per
//! observation, no atomics on the hot path) and exported whole when the
//! shard publishes its metrics: `NAME_bucket{le=…}` (cumulative), `_count`,
//! `_sum`, per shard. Readers (the load tool's `histogram`) take the bounds
//! from the `le` labels.

use metrics::{Counter, Gauge};

pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative: `counts[i]` holds observations in
    /// `(bounds[i-1], bounds[i]]`; the last one is above every bound.
    counts: Vec<u64>,
    sum: f64,
    buckets: Vec<Counter>,
    count: Counter,
    sum_gauge: Gauge,
}

impl Histogram {
    /// `le` holds the label of each bound, then `+Inf`.
    pub fn new(name: &str, shard: u8, bounds: &'static [f64], le: &'static [&'static str]) -> Self {
        debug_assert_eq!(le.len(), bounds.len() + 1);
        let s = shard.to_string();
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            buckets: le
                .iter()
                .map(|le| metrics::counter!(format!("{name}_bucket"), "shard" => s.clone(), "le" => *le))
                .collect(),
            count: metrics::counter!(format!("{name}_count"), "shard" => s.clone()),
            sum_gauge: metrics::gauge!(format!("{name}_sum"), "shard" => s),
        }
    }

    /// `n` observations of `value`.
    pub fn observe(&mut self, value: f64, n: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += n;
        self.sum += value * n as f64;
    }

    pub fn export(&self) {
        let mut cumulative = 0;
        for (c, n) in self.buckets.iter().zip(&self.counts) {
            cumulative += n;
            c.absolute(cumulative);
        }
        self.count.absolute(cumulative);
        self.sum_gauge.set(self.sum);
    }

    #[cfg(test)]
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    #[cfg(test)]
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Each `le` label is its bound, and the last is `+Inf`.
#[cfg(test)]
pub fn assert_labels_match(bounds: &[f64], le: &[&str]) {
    for (b, l) in bounds.iter().zip(le) {
        assert_eq!(l.parse::<f64>().ok(), Some(*b), "label {l} for bound {b}");
    }
    assert_eq!(le.len(), bounds.len() + 1);
    assert_eq!(le.last(), Some(&"+Inf"));
}
