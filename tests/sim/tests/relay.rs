//! Relay scenarios: conferences spanning bridges joined by relay links.
//! Each runs with a fixed seed (override with TERN_SIM_SEED).

use std::time::Duration;

use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

fn cluster(seed: u64, bridges: usize, relay: LinkConfig) -> Sim {
    let mut cfg = SimConfig::new(seed);
    cfg.bridges = bridges;
    cfg.relay_link = relay;
    Sim::new(cfg)
}

/// A publisher on bridge 0 and `n` receivers on bridge 1 asking for `height`.
fn across(seed: u64, n: usize, height: u32, relay: LinkConfig) -> Sim {
    let mut sim = cluster(seed, 2, relay);
    sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
    for i in 0..n {
        let r = sim.add_peer_on(
            1,
            &format!("r{i}"),
            |c| {
                c.video = vec![];
                c.audio = false;
            },
            clean(),
            clean(),
        );
        sim.set_max_height(r, None, height);
    }
    sim
}

#[test]
fn participants_on_three_bridges_all_receive_each_other() {
    with_seed(seed_or(31), |seed| {
        let mut sim = cluster(seed, 3, LinkConfig::latency(5));
        let names = ["p0", "p1", "p2", "p3"];
        for (i, n) in names.iter().enumerate() {
            // p3 shares bridge 0 with p0: local and remote mix.
            sim.add_peer_on(i % 3, n, |_| {}, clean(), clean());
        }
        sim.run_until(secs(8.0));
        for r in names {
            let st = sim.state(r);
            let mut others: Vec<String> = st.participants.keys().cloned().collect();
            others.sort();
            let expect: Vec<String> = names
                .iter()
                .filter(|n| **n != r)
                .map(|n| n.to_string())
                .collect();
            assert_eq!(others, expect, "{r} sees every other participant");
            for p in names.iter().filter(|p| **p != r) {
                let rx = sim.reception(r, p, secs(4.0), secs(7.5));
                assert_eq!(rx.layers, vec![2], "{r} gets 720p of {p}: {rx:?}");
                assert!(rx.frame_loss() < 0.01, "{r} from {p}: {rx:?}");
                assert_eq!(rx.freezes, 0, "{r} from {p}: {rx:?}");
                // Across the relay too, picture ids stay continuous: every
                // complete frame can be shown, nobody asks for a keyframe.
                assert_eq!(rx.shown_freezes, 0, "{r} from {p}: {rx:?}");
            }
            assert_eq!(st.plis_sent_total(), 0, "{r}: {:?}", st.plis_sent);
            for p in names.iter().filter(|p| **p != r) {
                let audio = sim.state(r).received_for(&format!("{p}/mic")).len();
                // 50 packets/s for ~7 s.
                assert!(audio > 250, "{r} hears {p}: {audio} audio packets");
            }
        }
        assert_eq!(sim.core_of(1).remote_participants("sim").len(), 3);
        // Only local media goes out: nothing relayed twice.
        for b in 0..3 {
            let st = sim.core_of(b).relay_stats();
            assert!(st.datagrams_out > 0 && st.datagrams_in > 0, "b{b}: {st:?}");
        }
    });
}

#[test]
fn leaving_and_joining_propagate_across_bridges() {
    with_seed(seed_or(37), |seed| {
        let mut sim = cluster(seed, 2, LinkConfig::latency(5));
        let a = sim.add_peer_on(0, "a", |_| {}, clean(), clean());
        sim.add_peer_on(1, "b", |_| {}, clean(), clean());
        sim.run_until(secs(3.0));
        assert!(sim.state("b").participants.contains_key("a"));
        sim.leave(a);
        sim.run_until(secs(3.5));
        assert!(
            !sim.state("b").participants.contains_key("a"),
            "a's leave reached b within 500 ms"
        );
        assert!(sim.core_of(1).remote_participants("sim").is_empty());
        sim.add_peer_on(0, "c", |_| {}, clean(), clean());
        sim.run_until(secs(7.0));
        assert!(sim.state("b").participants.contains_key("c"));
        let rx = sim.reception("b", "c", secs(5.0), secs(6.8));
        assert!(rx.frames_complete > 30, "b decodes c: {rx:?}");
    });
}

#[test]
fn five_percent_loss_on_the_relay_is_repaired_below_half_a_percent_frame_loss() {
    with_seed(seed_or(41), |seed| {
        let mut sim = across(seed, 3, 720, LinkConfig::latency(20).with_loss(0.05));
        sim.run_until(secs(20.0));
        let (sent, lost) = sim.relay_counts(0, 1);
        assert!(
            lost as f64 > 0.04 * sent as f64,
            "loss applied on the relay: {lost}/{sent}"
        );
        for r in ["r0", "r1", "r2"] {
            let rx = sim.reception(r, "pub", secs(3.0), secs(19.0));
            assert!(
                rx.frame_loss() < 0.005,
                "{r}: {:.3}% {rx:?}",
                rx.frame_loss() * 100.0
            );
        }
        let (b0, b1) = (sim.core_of(0).relay_stats(), sim.core_of(1).relay_stats());
        eprintln!("origin {b0:?}\nreceiving {b1:?}");
        assert!(
            b1.nacks_sent > 0 && b0.retransmissions > 0,
            "repaired hop by hop"
        );
        assert!(b1.repaired > lost / 2, "most holes repaired: {b1:?}");
    });
}

#[test]
fn a_ten_second_relay_partition_heals_and_media_resumes_within_two_seconds() {
    with_seed(seed_or(43), |seed| {
        let mut sim = across(seed, 1, 360, LinkConfig::latency(10));
        sim.relay_partition(0, 1, secs(5.0), secs(15.0));
        sim.run_until(secs(10.0));
        assert!(!sim.relay_up(0, 1), "the link noticed the partition");
        assert!(
            sim.state("r0").participants.contains_key("pub"),
            "a relay outage does not make remote participants vanish"
        );
        sim.run_until(secs(22.0));
        assert!(sim.relay_up(0, 1), "the link came back");
        let times = sim.frame_times("r0", "pub");
        let after = times
            .iter()
            .find(|t| **t >= secs(15.0))
            .copied()
            .expect("media resumed after the partition");
        assert!(
            after < secs(17.0),
            "first frame at {after:?}, healed at 15 s"
        );
        let rx = sim.reception("r0", "pub", secs(17.0), secs(21.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        // And the picture is back, not only the packets.
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
        assert!(sim.state("r0").participants.contains_key("pub"));
    });
}

#[test]
fn remote_participants_leave_when_the_relay_stays_down_past_the_grace_and_return_when_it_heals() {
    with_seed(seed_or(61), |seed| {
        let mut sim = across(seed, 1, 360, LinkConfig::latency(10));
        // Down from ~10 s (5 s idle timeout); the grace runs out at ~40 s.
        sim.relay_partition(0, 1, secs(5.0), secs(45.0));
        sim.run_until(secs(38.0));
        assert!(
            sim.state("r0").participants.contains_key("pub"),
            "kept within the grace"
        );
        sim.run_until(secs(42.0));
        assert!(
            !sim.state("r0").participants.contains_key("pub"),
            "gone once the grace ran out"
        );
        assert!(sim.core_of(1).remote_participants("sim").is_empty());
        sim.run_until(secs(52.0));
        assert!(
            sim.state("r0").participants.contains_key("pub"),
            "back after healing"
        );
        let rx = sim.reception("r0", "pub", secs(48.0), secs(51.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
    });
}

#[test]
fn a_participant_who_left_during_a_relay_outage_is_gone_once_it_heals() {
    with_seed(seed_or(67), |seed| {
        let mut sim = across(seed, 1, 360, LinkConfig::latency(10));
        let gone = sim.add_peer_on(0, "gone", |_| {}, clean(), clean());
        sim.relay_partition(0, 1, secs(5.0), secs(15.0));
        sim.run_until(secs(8.0));
        // Its "left" cannot cross the partition.
        sim.leave(gone);
        sim.run_until(secs(14.0));
        assert!(
            sim.state("r0").participants.contains_key("gone"),
            "no news yet"
        );
        // Healed at 15 s, relinked within the redial, reconfirmed within 3 s.
        sim.run_until(secs(21.0));
        let st = sim.state("r0");
        assert!(
            !st.participants.contains_key("gone"),
            "{:?}",
            st.participants
        );
        assert!(
            st.participants.contains_key("pub"),
            "the one who stayed is still there"
        );
        assert_eq!(
            sim.core_of(1).remote_participants("sim"),
            vec!["pub".to_string()]
        );
    });
}

#[test]
fn the_relay_carries_only_the_layer_remote_receivers_want() {
    with_seed(seed_or(47), |seed| {
        let run = |height: u32| {
            let mut sim = across(seed, 3, height, LinkConfig::latency(10));
            sim.run_until(secs(12.0));
            for r in ["r0", "r1", "r2"] {
                let rx = sim.reception(r, "pub", secs(4.0), secs(11.5));
                assert!(rx.frame_loss() < 0.01, "{r} at {height}p: {rx:?}");
            }
            let layers = sim.reception("r0", "pub", secs(4.0), secs(11.5)).layers;
            let told = sim.state("pub").sender_max_height;
            (sim.core_of(0).relay_stats().bytes_out, layers, told)
        };
        let (low, low_layers, low_told) = run(180);
        let (high, high_layers, high_told) = run(720);
        assert_eq!(low_layers, vec![0]);
        assert_eq!(high_layers, vec![2]);
        // Remote demand reaches the publisher too: it stops encoding what
        // no receiver anywhere wants.
        assert_eq!(low_told, Some(180));
        assert_eq!(high_told, None, "never restricted while 720p is wanted");
        // The ladder is 150 + 500 + 1500 kbit/s: 180p plus audio is well
        // under a fifth of 720p, and forwarding every layer would be more
        // than 720p alone.
        eprintln!(
            "relay bytes in 12 s: {low} with every remote receiver at 180p, {high} at 720p ({:.1}%)",
            100.0 * low as f64 / high as f64
        );
        assert!(
            (low as f64) < 0.2 * high as f64,
            "180p only: {low} vs {high} bytes"
        );
    });
}

/// A relay peer is trusted to be a bridge, not to be bug-free. A payload no
/// receiver can be sent (str0m builds each outgoing packet in a 2,000-byte
/// buffer and panicked on a bigger one; `OversizeMedia` carries any size up
/// to the 256 KiB frame limit) is dropped and counted, while packets of the
/// same sources that fit still reach the receiver, and the camera (another
/// layer) keeps flowing. Found by the `relay_datagram` fuzz target.
#[test]
fn a_relayed_payload_too_large_for_any_receiver_is_dropped_and_counted() {
    use std::sync::Arc;
    use tern_sfu::PeerId;
    use tern_sfu::tern_relay::msg::relay_control::Msg;
    use tern_sfu::tern_relay::wire::{Codec, MediaHeader};

    with_seed(seed_or(53), |seed| {
        let mut sim = across(seed, 1, 720, clean());
        sim.run_until(secs(3.0));
        // Bridge 0's first conference on shard 0 is number 1; its publisher's
        // sources are numbered from 1 (microphone and camera, in some order:
        // an Opus packet on the camera's layer 0 is simply not forwarded).
        let datagram = |source: u16, seq: u16, len: usize| {
            let h = MediaHeader {
                conference: 1,
                source,
                layer: 0,
                marker: false,
                retransmission: false,
                seq,
                timestamp: 0,
                audio_level: Some(30),
                voice_activity: true,
                codec: Codec::Opus,
            };
            let mut out = Vec::new();
            h.write(&vec![0x55; len], &mut out);
            out
        };
        let b0: PeerId = Arc::from("b0");
        let now = sim.now();
        let core = sim.bridges[1].node.core_for_room_mut("sim");
        // Steps of 8192 are always ahead of the last one for the gap tracker,
        // so after at most one restart every packet is new and past the
        // point the receiver's rewriter started at.
        let mut seq = 0u16;
        let forwarded = core.stats().rtp_forwarded;
        for _ in 0..12 {
            for source in [1, 2] {
                core.handle_relay_datagram(now, &b0, &datagram(source, seq, 1000));
            }
            seq = seq.wrapping_add(8192);
        }
        assert!(
            core.stats().rtp_forwarded > forwarded,
            "injected packets that fit reach the receiver"
        );
        let malformed = core.relay_stats().dropped_malformed;
        for _ in 0..4 {
            for source in [1, 2] {
                core.handle_relay_datagram(now, &b0, &datagram(source, seq, 1600));
                let big = datagram(source, seq.wrapping_add(1), 64 * 1024);
                core.handle_relay_control(now, "b0", Msg::OversizeMedia(big));
            }
            seq = seq.wrapping_add(8192);
        }
        assert_eq!(core.relay_stats().dropped_malformed, malformed + 16);
        sim.run_until(secs(5.0));
        let rx = sim.reception("r0", "pub", secs(3.5), secs(4.5));
        assert!(
            rx.frame_loss() < 0.01,
            "camera after the bad packets: {rx:?}"
        );
    });
}

/// A peer that announces more than any bridge could (participants beyond
/// the conference cap, too many sources or layers) is refused past the
/// limits and counted; the room it shares keeps working.
#[test]
fn a_peer_announcing_beyond_the_limits_is_refused_and_counted() {
    use tern_sfu::tern_relay::msg::{self, relay_control::Msg};

    with_seed(seed_or(79), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        cfg.bridge_config = |mut c| {
            c.max_participants_per_conference = 10;
            c
        };
        let mut sim = Sim::new(cfg);
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(1, "r0", |c| c.video = vec![], clean(), clean());
        sim.run_until(secs(3.0));
        let now = sim.now();
        let core = sim.bridges[1].node.core_for_room_mut("sim");
        let refused = core.relay_stats().control_refused;
        // Bridge 0's conference on shard 0 is number 1 (it hosts "pub").
        for i in 0..50 {
            core.handle_relay_control(
                now,
                "b0",
                Msg::ParticipantJoined(msg::ParticipantJoined {
                    conference: 1,
                    participant: format!("ghost{i}"),
                    name: String::new(),
                }),
            );
        }
        // "pub" plus nine ghosts fill the cap of ten.
        assert_eq!(core.remote_participants("sim").len(), 10);
        assert_eq!(core.relay_stats().control_refused, refused + 41);
        let layer = |h: u32| msg::Layer {
            rid: format!("l{h}"),
            height: h,
            active: true,
            bitrate_bps: 0,
        };
        let source = |n: u32, layers: usize| msg::Source {
            number: 1000 + n,
            id: format!("ghost0/s{n}"),
            name: format!("s{n}"),
            kind: msg::Kind::Video as i32,
            muted: false,
            layers: (0..layers as u32).map(|l| layer(180 << l)).collect(),
            svc: false,
        };
        let mut sources: Vec<msg::Source> = (0..20).map(|n| source(n, 1)).collect();
        sources.push(source(99, 9));
        core.handle_relay_control(
            now,
            "b0",
            Msg::Sources(msg::Sources {
                conference: 1,
                participant: "ghost0".into(),
                sources,
            }),
        );
        // 16 sources taken, 4 more and the 9-layer one refused.
        assert_eq!(core.relay_stats().control_refused, refused + 41 + 5);
        sim.run_until(secs(5.0));
        let rx = sim.reception("r0", "pub", secs(3.5), secs(4.9));
        assert!(
            rx.frame_loss() < 0.01,
            "the real participant still flows: {rx:?}"
        );
    });
}

/// A room a peer announces again under a new number (it ended and started
/// again there while the "left" was lost) replaces the old one: its old
/// participants go, nobody is shown twice.
#[test]
fn a_room_announced_again_under_a_new_number_replaces_the_old_participants() {
    use tern_sfu::tern_relay::msg::{self, relay_control::Msg};

    with_seed(seed_or(83), |seed| {
        let mut sim = across(seed, 1, 360, clean());
        sim.run_until(secs(3.0));
        assert_eq!(
            sim.core_of(1).remote_participants("sim"),
            vec!["pub".to_string()]
        );
        let now = sim.now();
        let core = sim.bridges[1].node.core_for_room_mut("sim");
        core.handle_relay_control(
            now,
            "b0",
            Msg::ConferenceJoined(msg::ConferenceJoined {
                number: 77,
                name: "sim".into(),
            }),
        );
        core.handle_relay_control(
            now,
            "b0",
            Msg::ParticipantJoined(msg::ParticipantJoined {
                conference: 77,
                participant: "newcomer".into(),
                name: String::new(),
            }),
        );
        assert_eq!(
            core.remote_participants("sim"),
            vec!["newcomer".to_string()],
            "the old number's participants left with it"
        );
    });
}

/// Regression: a participant that moves to another bridge gets there before
/// the relay brings its old bridge's "left" (relay slower than the client's
/// links). The late "left" must not hide it from anyone, and nobody may see
/// it twice.
#[test]
fn a_participant_moving_faster_than_the_relay_stays_visible_to_everyone() {
    with_seed(seed_or(89), |seed| {
        let mut sim = cluster(seed, 2, LinkConfig::latency(60));
        let p = sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        for (b, name) in [(1, "far"), (0, "near")] {
            sim.add_peer_on(
                b,
                name,
                |c| {
                    c.video = vec![];
                    c.audio = false;
                },
                clean(),
                clean(),
            );
        }
        sim.run_until(secs(4.0));
        sim.move_peer(p, 1);
        sim.run_until(secs(9.0));
        for r in ["far", "near"] {
            let st = sim.state(r);
            assert!(
                st.participants.contains_key("pub"),
                "{r} still sees pub: {:?}",
                st.participants
            );
            let rx = sim.reception(r, "pub", secs(6.0), secs(8.9));
            assert!(
                rx.frame_loss() < 0.01,
                "{r} receives pub after the move: {rx:?}"
            );
            assert_eq!(rx.freezes, 0, "{r}: {rx:?}");
        }
        assert_eq!(
            sim.core_of(1).remote_participants("sim"),
            vec!["near".to_string()],
            "pub is local to bridge 1 now, not also remote"
        );
        let mut on_b0 = sim.core_of(0).remote_participants("sim");
        on_b0.sort();
        assert_eq!(on_b0, vec!["far".to_string(), "pub".to_string()]);
    });
}

/// Room data channel messages from a relay peer are taken only for a
/// conference and participant the peer announced, and only up to the size
/// an origin may send; the rest is dropped and counted, and the room keeps
/// working.
#[test]
fn relayed_data_messages_from_unknown_senders_or_oversized_are_dropped_and_counted() {
    use tern_sfu::DataDrop;
    use tern_sfu::tern_relay::msg::{self, relay_control::Msg};

    with_seed(seed_or(83), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        let mut sim = Sim::new(cfg);
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(1, "r0", |c| c.video = vec![], clean(), clean());
        sim.run_until(secs(3.0));
        let pub_id = sim.state("pub").participant_id.clone().expect("pub joined");
        let now = sim.now();
        let core = sim.bridges[1].node.core_for_room_mut("sim");
        let data = |conference: u32, participant: &str, len: usize| {
            Msg::Data(msg::Data {
                conference,
                participant: participant.to_owned(),
                text: "x".repeat(len),
            })
        };
        let (taken, dropped) = (
            core.stats().data_in,
            core.stats().data_dropped(DataDrop::Relay),
        );
        // Bridge 0's conference on shard 0 is number 1 (it hosts "pub").
        core.handle_relay_control(now, "b0", data(1, &pub_id, 100));
        core.handle_relay_control(now, "b0", data(1, "nobody", 100));
        core.handle_relay_control(now, "b0", data(77, &pub_id, 100));
        core.handle_relay_control(now, "b9", data(1, &pub_id, 100));
        core.handle_relay_control(now, "b0", data(1, &pub_id, tern_sfu::MAX_DATA_MESSAGE + 1));
        assert_eq!(core.stats().data_in, taken + 1);
        assert_eq!(core.stats().data_dropped(DataDrop::Relay), dropped + 4);
        sim.run_until(secs(5.0));
        let rx = sim.reception("r0", "pub", secs(3.5), secs(4.5));
        assert!(
            rx.frame_loss() < 0.01,
            "camera after the bad messages: {rx:?}"
        );
    });
}
