//! What one allocation run costs (`tern_sfu::allocation::allocate`, the
//! policy `Core::reallocate` calls for a receiver on every estimate move,
//! constraint change and 100 ms tick): receivers seeing 1, 9 and 25 video
//! sources of three simulcast layers each, under a budget that fits some of
//! them (the climbing rounds run), one that fits all, and none at all.
//!
//! `cargo bench -p tern-sfu --bench allocation` (release). Results in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::time::Instant;

use tern_sfu::allocation::{Allocation, Candidate, LayerCost, allocate};

fn ladder() -> Vec<LayerCost> {
    [(180, 150_000), (360, 500_000), (720, 1_500_000)]
        .into_iter()
        .map(|(height, bitrate_bps)| LayerCost {
            height,
            active: true,
            bitrate_bps,
        })
        .collect()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let layers = ladder();
    for n in [1usize, 9, 25] {
        let candidates: Vec<Candidate<'_>> = (0..n)
            .map(|i| Candidate {
                layers: &layers,
                max_height: if i == 0 { 720 } else { 360 },
                on_stage: i == 0,
                screen: false,
            })
            .collect();
        for (label, budget) in [
            ("fits some", Some(150_000 * n as u64 + 1_500_000)),
            ("fits all", Some(u64::MAX / 2)),
            ("no estimate", None),
        ] {
            let mut out = Allocation::default();
            let runs = 2_000_000 / n.max(1);
            // Warm up, then time.
            for _ in 0..runs / 10 {
                allocate(black_box(&candidates), black_box(budget), &mut out);
            }
            let t = Instant::now();
            for _ in 0..runs {
                allocate(black_box(&candidates), black_box(budget), &mut out);
                black_box(&out);
            }
            let per = t.elapsed().as_nanos() as f64 / runs as f64;
            println!(
                "{n:>2} sources, {label:<11}: {per:>7.0} ns per run ({:.1} ns per source)",
                per / n as f64
            );
        }
    }
}
