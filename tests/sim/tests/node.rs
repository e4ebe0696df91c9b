//! Scenarios about the bridge node itself rather than the media: several
//! shards behind one socket, the relay mesh's redial policy, and a shutdown
//! that drains through the focus. The old harness drove bare cores and
//! could not express them. Each runs with a fixed seed (override with
//! TERN_SIM_SEED).

use std::time::Duration;

use tern_focus::{FocusConfig, FocusEvent, Strategy};
use tern_sfu::node::mesh::{REDIAL_MAX, REDIAL_MIN};
use tern_sfu::node::shard_of_room;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

fn receive_only(c: &mut tern_peer::PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

const SHARDS: usize = 4;

/// Three room names the node pins to three different shards (of four).
fn rooms_on_distinct_shards() -> Vec<String> {
    let mut seen = Vec::new();
    let mut rooms = Vec::new();
    for i in 0.. {
        let room = format!("room-{i}");
        let s = shard_of_room(&room, SHARDS);
        if !seen.contains(&s) {
            seen.push(s);
            rooms.push(room);
        }
        if rooms.len() == 3 {
            break;
        }
    }
    rooms
}

#[test]
fn conferences_on_different_shards_are_reached_by_ufrag_address_and_relay_number() {
    with_seed(seed_or(71), |seed| {
        let rooms = rooms_on_distinct_shards();
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        cfg.shards = SHARDS;
        cfg.room = rooms[0].clone();
        cfg.other_rooms = rooms[1..].to_vec();
        let mut sim = Sim::new(cfg);
        for room in &rooms {
            // A publisher and a local receiver on bridge 0, a remote
            // receiver on bridge 1: STUN finds the shard by ufrag, media by
            // the bound address, relayed media by the conference number.
            sim.add_peer_to_room(0, room, &format!("{room}/pub"), |_| {}, clean(), clean());
            sim.add_peer_to_room(
                0,
                room,
                &format!("{room}/local"),
                receive_only,
                clean(),
                clean(),
            );
            sim.add_peer_to_room(
                1,
                room,
                &format!("{room}/remote"),
                receive_only,
                clean(),
                clean(),
            );
        }
        sim.run_until(secs(8.0));
        for room in &rooms {
            let publisher = format!("{room}/pub");
            for r in ["local", "remote"] {
                let receiver = format!("{room}/{r}");
                let st = sim.state(&receiver);
                assert!(
                    st.participants.contains_key(&publisher),
                    "{receiver} sees its room's publisher: {:?}",
                    st.participants.keys().collect::<Vec<_>>()
                );
                // The publisher and the other receiver: nobody from the
                // rooms on the other shards.
                assert_eq!(
                    st.participants.len(),
                    2,
                    "{receiver} sees only its own room"
                );
                let rx = sim.reception(&receiver, &publisher, secs(4.0), secs(7.5));
                assert!(rx.frame_loss() < 0.01, "{receiver}: {rx:?}");
                assert_eq!(rx.shown_freezes, 0, "{receiver}: {rx:?}");
            }
            let s = shard_of_room(room, SHARDS);
            for b in 0..2 {
                let cores = sim.bridges[b].node.cores();
                for (i, core) in cores.iter().enumerate() {
                    let hosts = core.conferences().iter().any(|(c, _)| c == room);
                    assert_eq!(hosts, i == s, "bridge {b} shard {i} hosts {room}: {hosts}");
                }
                assert!(
                    cores[s].relay_stats().datagrams_in > 0 || b == 0,
                    "bridge 1's shard {s} received {room}'s relayed media"
                );
            }
        }
        for b in 0..2 {
            let st = sim.bridges[b].node.stats();
            assert_eq!(st.unknown_source, 0, "bridge {b}: {st:?}");
            assert_eq!(st.relay_unknown_conference, 0, "bridge {b}: {st:?}");
            assert_eq!(st.relay_malformed, 0, "bridge {b}: {st:?}");
        }
    });
}

/// When each relay dial started and when each failed, from the trace.
fn dials(sim: &Sim) -> (Vec<Duration>, Vec<Duration>) {
    let (mut started, mut failed) = (Vec::new(), Vec::new());
    for line in sim.trace.keep.iter().flatten() {
        let mut f = line.split(' ');
        let (Some(t), Some(what)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(t) = t.parse::<u64>() else { continue };
        let t = Duration::from_micros(t);
        match what {
            "relay_dial" | "relay_dial_timeout" => started.push(t),
            "relay_dial_failed" => failed.push(t),
            _ => {}
        }
    }
    (started, failed)
}

#[test]
fn a_relay_cut_for_twenty_seconds_is_redialled_with_the_nodes_backoff_and_heals() {
    with_seed(seed_or(73), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        let mut sim = Sim::new(cfg);
        sim.trace.keep = Some(Vec::new());
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(1, "r", receive_only, clean(), clean());
        sim.relay_partition(0, 1, secs(5.0), secs(25.0));
        sim.run_until(secs(40.0));
        let (started, failed) = dials(&sim);
        // The first dial at the start, then redials: each failed dial (a
        // QUIC idle timeout into the partition) is followed by the next
        // after the node's backoff, doubling from 100 ms.
        assert!(
            failed.len() >= 2,
            "dials into the partition failed: {failed:?}"
        );
        let waits: Vec<Duration> = failed
            .iter()
            .map(|f| {
                let next = started.iter().find(|s| *s >= f).copied();
                next.expect("a redial follows every failure") - *f
            })
            .collect();
        let mut expect = REDIAL_MIN * 2;
        for w in &waits {
            assert_eq!(*w, expect, "redial waits {waits:?}");
            expect = (expect * 2).min(REDIAL_MAX);
        }
        assert!(sim.relay_up(0, 1), "the link came back");
        let last = *started.last().expect("dials");
        assert!(
            last < secs(25.0) + REDIAL_MAX + secs(5.0),
            "redialled soon after healing: last dial at {last:?}"
        );
        let rx = sim.reception("r", "pub", secs(36.0), secs(39.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
    });
}

#[test]
fn a_bridge_told_to_shut_down_drains_through_the_focus_and_exits_once_empty() {
    with_seed(seed_or(79), |seed| {
        let cfg = SimConfig::new(seed).with_focus(
            2,
            &["local", "local"],
            FocusConfig {
                strategy: Strategy::Split,
                ..FocusConfig::default()
            },
        );
        let mut sim = Sim::new(cfg);
        sim.run_until(secs(0.05));
        let names = ["p0", "p1", "p2", "p3"];
        for n in names {
            sim.add_peer_in(Some("local"), n, |_| {}, clean(), clean());
        }
        sim.run_until(secs(5.0));
        let leaving = sim.bridge_of("p1");
        assert!(
            names.iter().any(|n| sim.bridge_of(n) != leaving),
            "split placed people on both bridges"
        );
        sim.shutdown_bridge(leaving);
        sim.run_until(secs(20.0));
        assert!(
            sim.bridges[leaving].exited,
            "the node finished its shutdown"
        );
        let moved = sim
            .focus_log
            .iter()
            .filter(|(_, e)| matches!(e, FocusEvent::CommandMove { bridge, .. } if *bridge == sim.bridges[leaving].id))
            .count();
        assert!(
            moved > 0,
            "the focus moved the conference off the leaving bridge"
        );
        for n in names {
            assert_ne!(sim.bridge_of(n), leaving, "{n} left the bridge");
        }
        for r in names {
            for p in names.iter().filter(|p| **p != r) {
                let rx = sim.reception(r, p, secs(16.0), secs(19.5));
                assert!(rx.frame_loss() < 0.01, "{r} from {p}: {rx:?}");
                let gap = sim.reception(r, p, secs(4.0), secs(19.5)).longest_shown_gap;
                assert!(
                    gap < secs(2.0),
                    "{r} sees {p} through the drain: gap {gap:?}"
                );
            }
        }
    });
}

/// How many trace lines of each kind, from the kept trace.
fn trace_count(sim: &Sim, what: &str) -> usize {
    sim.trace
        .keep
        .iter()
        .flatten()
        .filter(|l| l.split(' ').nth(1) == Some(what))
        .count()
}

#[test]
fn relay_media_too_large_for_the_path_crosses_on_the_control_stream() {
    with_seed(seed_or(83), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        // Smaller than most video packets: quinn would refuse them as
        // datagrams.
        cfg.relay_max_datagram = Some(300);
        let mut sim = Sim::new(cfg);
        sim.trace.keep = Some(Vec::new());
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(1, "r", receive_only, clean(), clean());
        sim.run_until(secs(8.0));
        let oversize = sim.bridges[0].node.stats().relay_oversize;
        assert!(
            oversize > 100,
            "video went on the control stream: {oversize}"
        );
        assert!(
            trace_count(&sim, "relay_sent") > 0,
            "small packets (audio) still went as datagrams"
        );
        assert_eq!(
            trace_count(&sim, "relay_too_large"),
            0,
            "the node sent no datagram the path refuses"
        );
        let rx = sim.reception("r", "pub", secs(4.0), secs(7.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
    });
}

#[test]
fn a_relay_link_whose_control_stream_backs_up_is_closed_redialled_and_heals() {
    with_seed(seed_or(89), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        let mut sim = Sim::new(cfg);
        sim.trace.keep = Some(Vec::new());
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(1, "r", receive_only, clean(), clean());
        sim.run_until(secs(5.0));
        assert!(sim.relay_up(0, 1));
        let closed_before = trace_count(&sim, "relay_close");
        let peer = std::sync::Arc::from(sim.bridges[1].id.as_str());
        sim.give_node(0, tern_sfu::node::Input::RelayWriteBlocked { peer });
        assert!(
            !sim.bridges[0].node.relay_up(&sim.bridges[1].id),
            "the node let the link go at once"
        );
        sim.run_until(secs(12.0));
        assert!(
            trace_count(&sim, "relay_close") > closed_before,
            "the connection was closed"
        );
        assert!(sim.relay_up(0, 1), "and dialled again");
        let rx = sim.reception("r", "pub", secs(8.0), secs(11.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
    });
}

#[test]
fn a_client_that_does_not_read_its_signalling_is_dropped_and_others_carry_on() {
    with_seed(seed_or(97), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.shards = 2;
        let mut sim = Sim::new(cfg);
        sim.add_peer_on(0, "pub", |_| {}, clean(), clean());
        sim.add_peer_on(0, "slow", receive_only, clean(), clean());
        sim.add_peer_on(0, "r", receive_only, clean(), clean());
        sim.run_until(secs(4.0));
        assert_eq!(sim.bridges[0].node.endpoint_count(), 3);
        let endpoint = sim.peer("slow").endpoint;
        sim.give_node(0, tern_sfu::node::Input::SignalBacklog { endpoint });
        let node = &sim.bridges[0].node;
        assert_eq!(node.stats().signal_backlog, 1);
        assert_eq!(node.endpoint_count(), 2, "the slow client is gone");
        assert!(
            node.cores()
                .iter()
                .flat_map(|c| c.conferences())
                .all(|(_, people)| !people.iter().any(|p| p == "slow")),
            "from its conference too"
        );
        sim.run_until(secs(8.0));
        assert!(
            !sim.state("r").participants.contains_key("slow"),
            "the others were told it left"
        );
        let rx = sim.reception("r", "pub", secs(4.0), secs(7.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
    });
}
