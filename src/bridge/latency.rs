//! The bridge's own delay on forwarded packets: from the kernel's receive
//! timestamp of a client's datagram (`SO_TIMESTAMPNS`, so time spent queued
//! in the socket while the shard was busy counts) to the return of the
//! `sendmmsg` that carried the packets the core made from it. This is the
//! delay a participant would not have if the bridge were a wire; network
//! and client delays are not in it. Datagrams sent for other reasons
//! (timers, signalling, relay input) are not measured.
//!
//! Kept per shard as plain counters (one add per run of datagrams made from
//! the same input in a `sendmmsg` call, not per packet) and exported once a second as a Prometheus histogram:
//! `tern_forward_latency_seconds_bucket{le=…}`, `_count`, `_sum`. Readers
//! (the load tool's `histogram`) take the bounds from the `le` labels.

use std::time::Duration;

use super::histogram::Histogram;

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

pub struct ForwardLatency(Histogram);

impl ForwardLatency {
    pub fn new(shard: u8) -> Self {
        Self(Histogram::new(
            "tern_forward_latency_seconds",
            shard,
            &BOUNDS,
            &LE,
        ))
    }

    /// `packets` forwarded packets that each took `delay`.
    pub fn record(&mut self, delay: Duration, packets: u64) {
        self.0.observe(delay.as_secs_f64(), packets);
    }

    pub fn export(&self) {
        self.0.export();
    }
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
        let counts = h.0.counts();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[4], 3); // (0.0003, 0.0005]
        assert_eq!(counts[BOUNDS.len()], 1);
        assert!((h.0.sum() - (0.0001 + 0.0012 + 3.0)).abs() < 1e-9);
    }

    #[test]
    fn labels_match_bounds() {
        // Readers (the load tool) take the bounds from these labels.
        super::super::histogram::assert_labels_match(&BOUNDS, &LE);
    }
}
