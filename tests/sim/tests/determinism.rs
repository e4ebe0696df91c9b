//! A run is a function of its seed, in whatever process it runs: the same
//! seed replayed on another machine (CI) must give the same trace, or a
//! failure there cannot be replayed here. Within one process that is cheap
//! to get right; across processes nothing drawn once per process, from the
//! OS (DTLS retransmission timer jitter) or from a randomly keyed hash map
//! (str0m's streams: which one pads a probe) may reach the trace. Each
//! scenario below fails without the fix for its source of difference.

use std::process::Command;
use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

type Scenario = fn(u64) -> (u64, u64);

const CHILD: &str = "TERN_SIM_DETERMINISM_CHILD";

/// A long, lossy path, where handshake flights are lost and resent: the
/// case that differed between processes.
fn long_lossy_path(seed: u64) -> (u64, u64) {
    let mut sim = Sim::new(SimConfig::new(seed));
    sim.add_peer(
        "pub",
        |c| c.audio = true,
        LinkConfig::latency(10),
        LinkConfig::latency(10),
    );
    let r = sim.add_peer(
        "r0",
        |c: &mut PeerConfig| {
            c.video = vec![];
            c.audio = false;
        },
        LinkConfig::latency(10),
        LinkConfig::latency(10),
    );
    sim.set_max_height(r, None, 720);
    sim.set_uplink(r, LinkConfig::latency(150).with_loss(0.02));
    sim.set_downlink(r, LinkConfig::latency(150).with_loss(0.02));
    sim.run_until(Duration::from_secs(4));
    (sim.trace.hash(), sim.trace.events)
}

/// Several video sources per receiver with bandwidth estimation: str0m
/// picks the stream it pads probes on from its stream map, and iterated
/// that map in a per-process random order.
fn probing_with_several_sources(seed: u64) -> (u64, u64) {
    let capped = |kbps: u64| LinkConfig {
        bandwidth_bps: Some(kbps * 1000),
        queue_bytes: (kbps * 1000 / 8 * 3 / 10) as usize,
        ..LinkConfig::latency(20)
    };
    let mut sim = Sim::new(SimConfig {
        bandwidth_estimation: true,
        ..SimConfig::new(seed)
    });
    for name in ["ana", "ben", "cy"] {
        sim.add_peer(
            name,
            |c| c.audio = false,
            LinkConfig::latency(20),
            capped(5000),
        );
    }
    let r = sim.add_peer(
        "r",
        |c: &mut PeerConfig| {
            c.video = vec![];
            c.audio = false;
        },
        LinkConfig::latency(20),
        capped(5000),
    );
    sim.set_max_height(r, None, 720);
    sim.run_until(Duration::from_secs(3));
    sim.set_downlink(r, capped(1500));
    sim.run_until(Duration::from_secs(6));
    (sim.trace.hash(), sim.trace.events)
}

const SCENARIOS: [(&str, Scenario); 2] = [
    ("long_lossy_path", long_lossy_path),
    ("probing_with_several_sources", probing_with_several_sources),
];

#[test]
fn a_seed_gives_the_same_trace_in_every_process() {
    let seed = seed_or(17);
    if let Some(name) = std::env::var_os(CHILD) {
        for (n, scenario) in SCENARIOS {
            if name == n {
                let (hash, events) = scenario(seed);
                println!("TRACE {hash:016x} {events}");
            }
        }
        return;
    }
    with_seed(seed, |seed| {
        let exe = std::env::current_exe().expect("the test binary's path");
        for (name, scenario) in SCENARIOS {
            let here = scenario(seed);
            assert!(here.1 > 1_000, "{name}: a real trace: {} events", here.1);
            for child in 0..3 {
                let out = Command::new(&exe)
                    .args([
                        "--exact",
                        "a_seed_gives_the_same_trace_in_every_process",
                        "--nocapture",
                    ])
                    .env(CHILD, name)
                    .env("TERN_SIM_SEED", seed.to_string())
                    .output()
                    .expect("run the test binary again");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let line = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("TRACE "))
                    .unwrap_or_else(|| panic!("{name}: child {child} printed no trace: {stdout}"));
                let expected = format!("{:016x} {}", here.0, here.1);
                assert_eq!(
                    line, expected,
                    "{name}: process {child} ran seed {seed} differently"
                );
            }
        }
    });
}
