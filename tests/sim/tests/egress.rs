//! What a bridge seals for its receivers: every forwarded copy is sealed by
//! str0m (`send_rtp_now`, patches/README.md) while str0m itself seals the
//! resends, probes and padding of the same connection, so the two must
//! share one sequence space per SSRC. An SRTP packet index sealed twice
//! under one key is an AES-GCM nonce reused, which gives away the XOR of
//! the two plaintexts and lets anyone forge packets.

use std::net::SocketAddr;
use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sim::{LinkConfig, Sim, SimConfig, Tap, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

#[test]
fn no_srtp_index_is_sealed_twice_across_resends_probes_and_layer_switches() {
    with_seed(seed_or(7), |seed| {
        let mut sim = Sim::new(SimConfig {
            bandwidth_estimation: true,
            ..SimConfig::new(seed)
        });
        sim.tap = Some(Tap::default());
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        // One receiver loses 2 % of what it is sent (NACKs, resends on its
        // RTX SSRCs) and its link drops to 400 kbit/s for a while (switches
        // down and back up, probes into the link); the other has room.
        let lossy = LinkConfig {
            loss: 0.02,
            ..LinkConfig::capped(3000)
        };
        let r = sim.add_peer("r", receive_only, LinkConfig::latency(20), lossy.clone());
        sim.set_max_height(r, None, 720);
        let f = sim.add_peer(
            "f",
            receive_only,
            LinkConfig::latency(20),
            LinkConfig::capped(5000),
        );
        sim.set_max_height(f, None, 720);
        sim.run_until(secs(6.0));
        sim.set_downlink(
            r,
            LinkConfig {
                loss: 0.02,
                ..LinkConfig::capped(400)
            },
        );
        sim.run_until(secs(10.0));
        sim.set_downlink(r, lossy);
        sim.run_until(secs(20.0));

        let stats = sim.core().stats();
        assert!(
            stats.layer_switches >= 3,
            "layers switched: {}",
            stats.layer_switches
        );
        assert!(stats.bandwidth_probes > 0, "probes were asked for");
        let tap = sim.tap.as_ref().expect("tap");
        let mut by_dest: std::collections::HashMap<SocketAddr, (usize, u64)> = Default::default();
        for ((to, ssrc), ix) in &tap.srtp {
            assert_eq!(
                ix.reused, 0,
                "{to} SSRC {ssrc}: {} indexes sealed twice",
                ix.reused
            );
            let e = by_dest.entry(*to).or_default();
            e.0 += 1;
            e.1 += ix.seen.len() as u64;
        }
        // Both receivers: audio, video and the video's RTX SSRC (resends
        // and padding), thousands of packets each.
        let receivers: Vec<_> = by_dest.values().filter(|(_, n)| *n > 2_000).collect();
        assert_eq!(receivers.len(), 2, "{by_dest:?}");
        assert!(
            receivers.iter().all(|(ssrcs, _)| *ssrcs >= 3),
            "{by_dest:?}"
        );
    });
}

#[test]
fn the_tap_counts_an_index_sealed_twice() {
    let mut tap = Tap::default();
    let to: SocketAddr = "10.0.0.9:9".parse().expect("addr");
    let packet = |seq: u16| {
        let mut d = vec![0x80, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 42];
        d[2..4].copy_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&[0; 100]);
        d
    };
    // Across a rollover: 65,535 then 0 is a new index, not a repeat.
    for seq in [65_534u16, 65_535, 0, 1, 2] {
        tap.note_srtp(to, &packet(seq));
    }
    assert_eq!(tap.srtp[&(to, 42)].reused, 0);
    tap.note_srtp(to, &packet(1));
    assert_eq!(tap.srtp[&(to, 42)].reused, 1);
    // SRTCP (a receiver report) is not an RTP packet index.
    tap.note_srtp(to, &[0x81, 201, 0, 7, 0, 0, 0, 42, 0, 0, 0, 0]);
    assert_eq!(tap.srtp.len(), 1);
}
