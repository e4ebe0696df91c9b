//! What slot allocation costs a shard when the speech order changes
//! (someone starts talking): every receiver's audio and video slots are
//! re-ranked (`Core::rerank_all_slots`, the path `speakers.rs` takes).
//! Conferences of 50 and 200 participants on one bridge, each with a
//! camera (180p) and a microphone, 3 audio and 9 video slots, last-N 6;
//! the speech order comes from real talk in the simulator.
//!
//! `cargo bench -p tern-sim --bench slots` (release). Results in
//! BENCHMARKS.md.

use std::time::{Duration, Instant};

use tern_peer::Talk;
use tern_peer::synth::LayerSpec;
use tern_sim::{LinkConfig, Sim, SimConfig};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for n in [50usize, 200] {
        let mut sim = Sim::new(SimConfig::new(1));
        for i in 0..n {
            // Ten talkers in turns of 300 ms from 2 s: a speech order.
            let turns = if i % (n / 10) == 0 {
                let k = (i / (n / 10)) as u64;
                let s = Duration::from_millis(2000 + 300 * k);
                vec![(s, s + Duration::from_millis(300))]
            } else {
                vec![]
            };
            let p = sim.add_peer(
                &format!("p{i}"),
                move |c| {
                    c.video = vec![LayerSpec::new("q", 320, 180, 150_000)];
                    c.audio_slots = 3;
                    c.video_slots = 9;
                    c.talk = Some(Talk { turns, quiet: 127 });
                },
                LinkConfig::latency(5),
                LinkConfig::latency(5),
            );
            sim.set_view(p, 6, &[], 180);
        }
        sim.run_until(Duration::from_secs(6));
        let now = sim.now();
        let core = &mut sim.bridges[0].node.cores_mut()[0];
        let endpoints = core.endpoint_count();
        // Warm up, then time a batch of re-rankings.
        core.rerank_all_slots(now);
        let rounds = if n > 100 { 20 } else { 100 };
        let t = Instant::now();
        for _ in 0..rounds {
            core.rerank_all_slots(now);
        }
        let per = t.elapsed() / rounds;
        println!(
            "slots, {n} participants ({endpoints} endpoints): {:.1} us per talk start ({:.2} us per receiver)",
            per.as_secs_f64() * 1e6,
            per.as_secs_f64() * 1e6 / endpoints as f64
        );
    }
}
