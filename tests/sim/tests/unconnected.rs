//! A receiver whose media connection is not up yet (ICE and DTLS still
//! running, or never completing) is not sent media: a bridge must not queue
//! the meeting's video for it while it cannot be sent.

use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

#[test]
fn a_receiver_that_connects_late_gets_fresh_media_not_a_backlog() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |c| c.audio = true, clean(), clean());
        // Its uplink drops everything: no ICE check reaches the bridge, so
        // its media connection cannot come up.
        let r = sim.add_peer(
            "r",
            receive_only,
            LinkConfig {
                loss: 1.0,
                ..clean()
            },
            clean(),
        );
        sim.set_max_height(r, None, 720);
        sim.run_until(secs(5.0));
        assert!(
            sim.state("r").received_all("pub/camera").is_empty(),
            "nothing can arrive before the connection is up"
        );
        sim.set_uplink(r, clean());
        sim.run_until(secs(9.0));
        let rx = sim.state("r").received_all("pub/camera");
        assert!(!rx.is_empty(), "connected and receiving");
        assert!(
            rx[0].keyframe,
            "the slot starts on a keyframe asked for at connection: {:?}",
            rx[0]
        );
        let first = sim.since_start(rx[0].at);
        let frames = sim.reception("r", "pub", first, secs(9.0));
        assert_eq!(frames.shown_freezes, 0, "{frames:?}");
        // How old each packet was when it arrived (the publisher's
        // generator starts with the simulation).
        let ages: Vec<Duration> = rx
            .iter()
            .filter_map(|p| {
                let sent = Duration::from_micros(p.sent_us?);
                Some(sim.since_start(p.at).saturating_sub(sent))
            })
            .collect();
        let stale = ages.iter().filter(|a| **a > secs(0.5)).count();
        let oldest = ages.iter().max();
        assert_eq!(
            stale,
            0,
            "{stale} of {} packets arrived over 500 ms old (oldest {oldest:?}): queued while unconnected",
            ages.len()
        );
    });
}
