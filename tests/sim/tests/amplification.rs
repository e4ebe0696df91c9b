//! A bridge is no amplifier: to an address that has not proven itself it
//! never sends more bytes than it received from there, even when someone
//! replays a participant's valid ICE check from spoofed addresses.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tern_peer::PeerConfig;
use tern_sfu::DropReason;
use tern_sfu::node::Input as NodeInput;
use tern_sim::{LinkConfig, Sim, SimConfig, Tap, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

#[test]
fn replayed_ice_checks_from_spoofed_addresses_get_no_more_bytes_than_they_sent() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.tap = Some(Tap::default());
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(10),
            LinkConfig::latency(10),
        );
        sim.add_peer(
            "r0",
            receive_only,
            LinkConfig::latency(10),
            LinkConfig::latency(10),
        );
        sim.run_until(secs(3.0));
        let tap = sim.tap.as_ref().expect("tap");
        // The last ICE check a participant sent: valid, with USE-CANDIDATE
        // or not, as the browser would send it.
        let checks: Vec<Vec<u8>> = tap
            .stun
            .iter()
            .rev()
            .take(4)
            .map(|(_, d)| d.clone())
            .collect();
        assert!(!checks.is_empty(), "the peers sent ICE checks");
        let bridge = sim.bridges[0].addr;
        let mut received: Vec<(SocketAddr, u64)> = Vec::new();
        for i in 0..20u16 {
            let spoofed: SocketAddr = format!("10.66.0.{}:{}", 1 + i % 200, 5000 + i)
                .parse()
                .expect("addr");
            let mut n = 0;
            for c in &checks {
                for _ in 0..3 {
                    n += c.len() as u64;
                    sim.give_node(
                        0,
                        NodeInput::Datagrams {
                            local: bridge,
                            batch: vec![(spoofed, Bytes::from(c.clone()))],
                        },
                    );
                }
            }
            received.push((spoofed, n));
        }
        sim.run_until(secs(6.0));
        let tap = sim.tap.as_ref().expect("tap");
        let mut answered = 0;
        for (addr, n) in &received {
            let sent = tap.sent_to.get(addr).copied().unwrap_or(0);
            println!("{addr}: received {n} bytes, sent {sent}");
            assert!(
                sent <= *n,
                "{addr}: the bridge sent {sent} bytes for {n} received"
            );
            answered += usize::from(sent > 0);
        }
        // The replays are valid checks: str0m answers them (so the limit
        // is what bounds the answer), and media stays with the participants.
        assert!(
            answered > 0,
            "no replayed check was answered: nothing tested"
        );
        let core = sim.core();
        assert_eq!(core.stats().dropped(DropReason::Amplification), 0);
        let rx = sim.reception("r0", "pub", secs(3.5), secs(6.0));
        assert!(
            rx.frames_complete > 50 && rx.freezes == 0,
            "r0 still receives: {rx:?}"
        );
    });
}
