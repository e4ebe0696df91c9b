//! CPU per audio packet of the speech path: each packet's level into its
//! conference's `Speech`, and the 300 ms decisions (scores, dominant
//! speaker, speech order) amortised over the packets. Conferences of 50
//! and 200 participants, every participant sending 50 levels a second,
//! three talking at a time in turns (the rest: room noise).
//!
//! `cargo bench -p tern-sfu --bench speech` (release). Results in
//! BENCHMARKS.md. Slot allocation is not in this figure: it runs per
//! receiver when the speech order changes, not per packet (see there).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tern_sfu::speech::{Speech, TalkConfig};

fn run(participants: u32, seconds: u32) -> (Duration, u64, u64) {
    let t0 = Instant::now();
    let mut s: Speech<u32> = Speech::new(TalkConfig::default());
    let mut packets = 0u64;
    let mut changes = 0u64;
    let started = Instant::now();
    for tick in 0..seconds * 50 {
        let now = t0 + Duration::from_millis(u64::from(tick) * 20);
        // Three talkers at a time, a new trio every 4 s.
        let trio = (tick / 200) * 3;
        for p in 0..participants {
            let talking = (trio..trio + 3).any(|t| t % participants == p);
            let level = if talking {
                if tick % 7 == 6 {
                    50
                } else {
                    20 + (tick % 5) as u8
                }
            } else {
                70 + (p % 5) as u8
            };
            s.handle_level(now, p, level);
            packets += 1;
        }
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
            while s.poll_event().is_some() {
                changes += 1;
            }
        }
        black_box(s.dominant());
    }
    (started.elapsed(), packets, changes)
}

fn main() {
    // Measure only under `cargo bench` (which passes `--bench`): test
    // runners that list or run every target (`cargo nextest run
    // --all-targets` asks with `--list`) find nothing here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for n in [50u32, 200] {
        // Warm up, then the best of five: the figure is the code's, not the
        // machine's other load.
        run(n, 5);
        let best = (0..5)
            .map(|_| run(n, 60))
            .min_by_key(|r| r.0)
            .expect("five runs");
        let (t, packets, changes) = best;
        println!(
            "speech, {n} participants: {:.0} ns per audio packet ({packets} packets, {changes} events, {:.1} ms for 60 s of audio)",
            t.as_nanos() as f64 / packets as f64,
            t.as_secs_f64() * 1e3
        );
    }
}
