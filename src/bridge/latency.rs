//! The bridge's own delay on forwarded packets: from the kernel's receive
//! timestamp of a client's datagram (`SO_TIMESTAMPNS`, so time spent queued
//! in the socket while the shard was busy counts) to the return of the
//! `sendmmsg` that carried the packets the core made from it. This is the
//! delay a participant would not have if the bridge were a wire; network
//! and client delays are not in it. Datagrams sent for other reasons
//! (timers, signalling, relay input) are not measured.
//!
//! Kept per shard as plain counters (one add per `sendmmsg` chunk, not per
//! packet) and exported once a second as a Prometheus histogram:
//! `tern_forward_latency_seconds_bucket{le=…}`, `_count`, `_sum`.

use std::time::Duration;

use metrics::{Counter, Gauge};

/// Bucket upper bounds in seconds: fine below 1 ms (the target is a p99
/// under 1 ms at half load), coarse above.
pub const BOUNDS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// The `le` label values of [`BOUNDS`], then `+Inf`.
const LE: [&str; 16] = [
    "0.00005", "0.0001", "0.0002", "0.0003", "0.0005", "0.00075", "0.001", "0.002", "0.005",
    "0.01", "0.025", "0.05", "0.1", "0.25", "1", "+Inf",
];

pub struct ForwardLatency {
    /// Non-cumulative: `counts[i]` holds samples in `(BOUNDS[i-1], BOUNDS[i]]`;
    /// the last one is above every bound.
    counts: [u64; BOUNDS.len() + 1],
    sum_secs: f64,
    buckets: Vec<Counter>,
    count: Counter,
    sum: Gauge,
}

impl ForwardLatency {
    pub fn new(shard: u8) -> Self {
        let s = shard.to_string();
        Self {
            counts: [0; BOUNDS.len() + 1],
            sum_secs: 0.0,
            buckets: LE
                .iter()
                .map(|le| {
                    metrics::counter!("tern_forward_latency_seconds_bucket", "shard" => s.clone(), "le" => *le)
                })
                .collect(),
            count: metrics::counter!("tern_forward_latency_seconds_count", "shard" => s.clone()),
            sum: metrics::gauge!("tern_forward_latency_seconds_sum", "shard" => s),
        }
    }

    /// `packets` forwarded packets that each took `delay`.
    pub fn record(&mut self, delay: Duration, packets: u64) {
        let secs = delay.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.counts[i] += packets;
        self.sum_secs += secs * packets as f64;
    }

    pub fn export(&self) {
        let mut cumulative = 0;
        for (c, n) in self.buckets.iter().zip(self.counts) {
            cumulative += n;
            c.absolute(cumulative);
        }
        self.count.absolute(cumulative);
        self.sum.set(self.sum_secs);
    }
}

/// A quantile from cumulative `(upper bound, count)` buckets in increasing
/// order (the last bound may be infinite), interpolated linearly inside the
/// bucket as Prometheus's `histogram_quantile` does. `None` without samples;
/// a quantile that falls in the open top bucket is reported as the highest
/// finite bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = cumulative - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * frac);
        }
        lower = if bound.is_finite() { bound } else { lower };
        below = cumulative;
    }
    Some(lower)
}

/// The `le` label for each bucket, with its bound (`+Inf` last).
pub fn labelled_bounds() -> impl Iterator<Item = (&'static str, f64)> {
    LE.iter()
        .copied()
        .zip(BOUNDS.iter().copied().chain([f64::INFINITY]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_bucket_whose_bound_they_do_not_exceed() {
        let mut h = ForwardLatency::new(0);
        h.record(Duration::from_micros(50), 2); // exactly on a bound: that bucket
        h.record(Duration::from_micros(400), 3);
        h.record(Duration::from_secs(3), 1);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[4], 3); // (0.0003, 0.0005]
        assert_eq!(h.counts[BOUNDS.len()], 1);
        assert!((h.sum_secs - (0.0001 + 0.0012 + 3.0)).abs() < 1e-9);
    }

    #[test]
    fn quantile_interpolates_inside_a_bucket_like_prometheus() {
        // 100 samples: 50 in (0, 0.1], 50 in (0.1, 0.2].
        let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        let p50 = quantile(&b, 0.5).expect("samples");
        assert!((p50 - 0.1).abs() < 1e-12, "{p50}");
        let p75 = quantile(&b, 0.75).expect("samples");
        assert!((p75 - 0.15).abs() < 1e-12, "{p75}");
        let p99 = quantile(&b, 0.99).expect("samples");
        assert!((p99 - 0.198).abs() < 1e-12, "{p99}");
    }

    #[test]
    fn quantile_in_the_open_top_bucket_is_the_highest_bound() {
        let b = [(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&b, 0.99), Some(0.1));
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn labels_match_bounds() {
        for (le, bound) in labelled_bounds() {
            if bound.is_finite() {
                assert_eq!(le.parse::<f64>().ok(), Some(bound));
            } else {
                assert_eq!(le, "+Inf");
            }
        }
    }
}
