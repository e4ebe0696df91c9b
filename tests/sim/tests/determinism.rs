//! A run is a function of its seed, in whatever process it runs: the same
//! seed replayed on another machine (CI) must give the same trace, or a
//! failure there cannot be replayed here. Within one process that is cheap
//! to get right; across processes everything drawn once per process (each
//! generates its own DTLS certificate, whose size decides how a handshake
//! flight is cut into datagrams) or from the OS (DTLS retransmission timer
//! jitter) must not reach the trace.

use std::process::Command;
use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

const CHILD: &str = "TERN_SIM_DETERMINISM_CHILD";

/// A long, lossy path, where handshake flights are lost and resent: the
/// case that differed between processes.
fn run(seed: u64) -> (u64, u64) {
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

#[test]
fn a_seed_gives_the_same_trace_in_every_process() {
    let seed = seed_or(17);
    if std::env::var_os(CHILD).is_some() {
        let (hash, events) = run(seed);
        println!("TRACE {hash:016x} {events}");
        return;
    }
    with_seed(seed, |seed| {
        let here = run(seed);
        assert!(here.1 > 1_000, "a real trace: {} events", here.1);
        let exe = std::env::current_exe().expect("the test binary's path");
        for child in 0..3 {
            let out = Command::new(&exe)
                .args([
                    "--exact",
                    "a_seed_gives_the_same_trace_in_every_process",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .env("TERN_SIM_SEED", seed.to_string())
                .output()
                .expect("run the test binary again");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("TRACE "))
                .unwrap_or_else(|| panic!("child {child} printed no trace: {stdout}"));
            let expected = format!("{:016x} {}", here.0, here.1);
            assert_eq!(
                line, expected,
                "process {child} ran seed {seed} differently"
            );
        }
    });
}
