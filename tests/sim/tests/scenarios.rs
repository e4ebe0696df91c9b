//! Scenarios on virtual time. Each runs with a fixed seed (override with
//! TERN_SIM_SEED) and prints the seed if it fails.

use std::time::{Duration, Instant};

use tern_peer::{Pacing, PeerConfig};
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

/// A participant that only watches: no camera, no microphone.
fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

/// Publisher `pub` and `n` receivers asking for `height`, on clean links.
fn meeting(seed: u64, receivers: usize, height: u32) -> Sim {
    let mut sim = Sim::new(SimConfig::new(seed));
    sim.add_peer("pub", |c| c.audio = true, clean(), clean());
    for i in 0..receivers {
        let r = sim.add_peer(&format!("r{i}"), receive_only, clean(), clean());
        sim.set_max_height(r, None, height);
    }
    sim
}

#[test]
fn receivers_get_the_layer_they_ask_for_on_clean_links() {
    with_seed(seed_or(1), |seed| {
        let mut sim = meeting(seed, 2, 360);
        sim.run_until(secs(5.0));
        for r in ["r0", "r1"] {
            let rx = sim.reception(r, "pub", secs(2.0), secs(4.5));
            assert_eq!(rx.layers, vec![1], "{r}: 360p is layer 1: {rx:?}");
            assert!(rx.frame_loss() < 0.001, "{r}: {rx:?}");
            assert_eq!(rx.freezes, 0, "{r}: {rx:?}");
            assert!(rx.delay_max < Duration::from_millis(60), "{r}: {rx:?}");
        }
    });
}

/// A forwarded packet leaves the bridge while the bridge handles the
/// datagram it came in: it must not wait for a timer of the receiver's
/// connection (str0m stamps written packets only on a timeout). On real
/// sockets such a timer runs only after the shard has drained its queued
/// input, which added milliseconds under load. Timers still send paced
/// media once a receiver's pacing budget is spent, probes, padding and
/// RTCP; in a meeting well inside everyone's estimate that is a small share.
#[test]
fn forwarded_media_leaves_without_waiting_for_a_bridge_timer() {
    with_seed(seed_or(3), |seed| {
        let mut sim = meeting(seed, 4, 720);
        sim.run_until(secs(3.0));
        let before = sim.egress_bytes;
        sim.run_until(secs(6.0));
        let on_input = sim.egress_bytes[0] - before[0];
        let on_timer = sim.egress_bytes[1] - before[1];
        for r in ["r0", "r1", "r2", "r3"] {
            let rx = sim.reception(r, "pub", secs(3.0), secs(5.5));
            assert!(rx.frame_loss() < 0.001, "{r}: {rx:?}");
        }
        // Forwarding through a timer sent every forwarded byte from one.
        eprintln!("{on_input} bytes sent handling input, {on_timer} on timers");
        assert!(on_input > 2_000_000, "{on_input} bytes forwarded in 3 s");
        assert!(
            on_timer * 10 < on_input,
            "{on_timer} bytes sent on timers against {on_input} on input"
        );
    });
}

#[test]
fn same_seed_gives_the_same_trace_and_another_seed_does_not() {
    let run = |seed: u64| {
        let mut sim = meeting(seed, 2, 720);
        let p = sim.peer_index("pub");
        sim.set_uplink(
            p,
            LinkConfig {
                jitter: Duration::from_millis(8),
                reorder: 0.01,
                duplicate: 0.01,
                ..LinkConfig::latency(20).with_loss(0.03)
            },
        );
        sim.run_until(secs(4.0));
        (sim.trace.hash(), sim.trace.events)
    };
    let seed = seed_or(7);
    with_seed(seed, |seed| {
        let a = run(seed);
        let b = run(seed);
        assert!(a.1 > 2_000, "a real trace: {} events", a.1);
        assert_eq!(a, b, "two runs of seed {seed} differ");
        eprintln!("seed {seed}: trace hash {:016x}, {} events", a.0, a.1);
        let c = run(seed + 1);
        assert_ne!(a.0, c.0, "a different seed changes the run");
    });
}

#[test]
fn five_percent_loss_from_publisher_is_repaired_below_half_a_percent_frame_loss() {
    with_seed(seed_or(11), |seed| {
        let mut sim = meeting(seed, 3, 720);
        let p = sim.peer_index("pub");
        sim.set_uplink(p, LinkConfig::latency(20).with_loss(0.05));
        sim.run_until(secs(20.0));
        let ((sent, lost), _) = sim.link_counts(p);
        assert!(
            lost as f64 > 0.04 * sent as f64,
            "loss applied: {lost}/{sent}"
        );
        for r in ["r0", "r1", "r2"] {
            let rx = sim.reception(r, "pub", secs(3.0), secs(19.0));
            assert!(
                rx.frame_loss() < 0.005,
                "{r}: {:.3}% {rx:?}",
                rx.frame_loss() * 100.0
            );
        }
    });
}

#[test]
fn a_two_second_loss_burst_causes_at_most_one_freeze() {
    with_seed(seed_or(13), |seed| {
        let mut sim = meeting(seed, 3, 720);
        let p = sim.peer_index("pub");
        sim.set_uplink(p, LinkConfig::latency(20));
        sim.loss_window(p, secs(5.0), secs(7.0), 0.20);
        sim.run_until(secs(12.0));
        for r in ["r0", "r1", "r2"] {
            let rx = sim.reception(r, "pub", secs(2.0), secs(11.5));
            assert!(rx.freezes <= 1, "{r}: {rx:?}");
            // What the participant sees, not only what arrived.
            assert!(rx.shown_freezes <= 1, "{r}: {rx:?}");
            assert!(
                rx.frame_loss() < 0.05,
                "{r}: recovered after the burst: {rx:?}"
            );
        }
    });
}

/// A lost packet on a long path is repaired, not waited out: NACK, its
/// retries and the retransmission take more than one round trip, and the
/// repair must still be accepted when it comes (str0m took repairs only
/// within 100 packets, ~370 ms of 720p: at 300 ms a lost NACK or RTX meant a
/// frame lost for good and a 3-4 s freeze until the receiver gave up on it).
#[test]
fn receiver_behind_300ms_rtt_and_2_percent_loss_gets_every_frame_repaired() {
    with_seed(seed_or(17), |seed| {
        let mut sim = meeting(seed, 1, 720);
        let r = sim.peer_index("r0");
        sim.set_uplink(r, LinkConfig::latency(150).with_loss(0.02));
        sim.set_downlink(r, LinkConfig::latency(150).with_loss(0.02));
        sim.run_until(secs(20.0));
        let (_, (sent, lost)) = sim.link_counts(r);
        assert!(
            lost as f64 > 0.015 * sent as f64,
            "loss applied: {lost}/{sent}"
        );
        let rx = sim.reception("r0", "pub", secs(3.0), secs(18.0));
        assert!(
            rx.frame_loss() < 0.005,
            "{:.3}% {rx:?}",
            rx.frame_loss() * 100.0
        );
        assert!(
            rx.longest_shown_gap < Duration::from_millis(1500),
            "a loss is repaired within a few round trips: {rx:?}"
        );
    });
}

/// The same on the publisher's side: the bridge NACKs a publisher on a
/// 300 ms path and takes the retransmissions, so its receivers never wait
/// for a keyframe.
#[test]
fn publisher_behind_300ms_rtt_and_2_percent_loss_is_repaired_by_the_bridge() {
    with_seed(seed_or(19), |seed| {
        let mut sim = meeting(seed, 2, 720);
        let p = sim.peer_index("pub");
        sim.set_uplink(p, LinkConfig::latency(150).with_loss(0.02));
        sim.set_downlink(p, LinkConfig::latency(150).with_loss(0.02));
        sim.run_until(secs(20.0));
        let ((sent, lost), _) = sim.link_counts(p);
        assert!(
            lost as f64 > 0.015 * sent as f64,
            "loss applied: {lost}/{sent}"
        );
        for r in ["r0", "r1"] {
            let rx = sim.reception(r, "pub", secs(3.0), secs(18.0));
            assert!(rx.frame_loss() < 0.005, "{r}: {rx:?}");
            assert!(
                rx.longest_shown_gap < Duration::from_millis(1500),
                "{r}: a loss is repaired within a few round trips: {rx:?}"
            );
        }
    });
}

#[test]
fn a_three_second_partition_is_survived_without_rejoining() {
    with_seed(seed_or(19), |seed| {
        let mut sim = meeting(seed, 1, 360);
        let r = sim.peer_index("r0");
        sim.partition(r, secs(5.0), secs(8.0));
        sim.run_until(secs(12.0));
        let times = sim.frame_times("r0", "pub");
        let after = times
            .iter()
            .find(|t| **t >= secs(8.0))
            .copied()
            .expect("media resumed after the partition");
        assert!(
            after < secs(9.0),
            "first frame {:?} after healing at 8 s",
            after
        );
        assert!(
            times
                .iter()
                .filter(|t| **t > secs(5.1) && **t < secs(8.0))
                .count()
                == 0,
            "nothing crossed the partition"
        );
        let rx = sim.reception("r0", "pub", secs(9.0), secs(11.5));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.shown_freezes, 0, "the picture is back: {rx:?}");
        // Same endpoint throughout: no second join.
        assert_eq!(sim.core().stats().joins, 2);
    });
}

/// A subscriber whose decoder lost frames for good (a partition longer than
/// any repair) asks for a keyframe as a browser does; the bridge passes the
/// request to the publisher, and the picture is back well before the
/// publisher's next periodic keyframe. On clean links nobody asks.
fn frames_lost_for_good(seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig::new(seed));
    // Periodic keyframes too rare to explain a quick recovery.
    sim.add_peer(
        "pub",
        |c| c.keyframe_interval = Duration::from_secs(60),
        clean(),
        clean(),
    );
    for r in ["r0", "r1"] {
        let i = sim.add_peer(r, receive_only, clean(), clean());
        sim.set_max_height(i, None, 360);
    }
    let r0 = sim.peer_index("r0");
    sim.partition(r0, secs(5.0), secs(9.0));
    sim.run_until(secs(14.0));
    sim
}

#[test]
fn a_subscriber_that_lost_frames_for_good_asks_for_a_keyframe_and_sees_again() {
    with_seed(seed_or(59), |seed| {
        let sim = frames_lost_for_good(seed);
        let st = sim.state("r0");
        assert!(st.plis_sent_total() >= 1, "r0 asked: {:?}", st.plis_sent);
        assert_eq!(sim.state("r1").plis_sent_total(), 0, "r1 had no reason to");
        let requests: u64 = sim.state("pub").keyframe_requests.values().sum();
        assert!(requests >= 1, "the publisher was asked");

        let shown = st.decoded_all("pub/camera");
        let back = shown
            .iter()
            .map(|t| sim.since_start(*t))
            .find(|t| *t >= secs(9.0))
            .expect("the picture came back");
        assert!(back < secs(10.0), "shown again at {back:?}, healed at 9 s");
        let rx = sim.reception("r0", "pub", secs(10.0), secs(13.5));
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
        let rx1 = sim.reception("r1", "pub", secs(2.0), secs(13.5));
        assert_eq!(rx1.shown_freezes, 0, "{rx1:?}");
    });
}

/// Keyframe requests from several decoders stay deterministic: the same
/// seed gives the same trace with PLIs in it.
#[test]
fn a_run_with_keyframe_requests_is_the_same_for_the_same_seed() {
    with_seed(seed_or(59), |seed| {
        let a = frames_lost_for_good(seed);
        let b = frames_lost_for_good(seed);
        assert!(a.state("r0").plis_sent_total() >= 1);
        assert_eq!(
            (a.trace.hash(), a.trace.events),
            (b.trace.hash(), b.trace.events)
        );
    });
}

/// Subscribers give the feedback a browser gives: transport-wide congestion
/// control feedback several times a second, receiver reports, NACKs for
/// what the link lost (repaired, so no keyframe requests).
#[test]
fn a_subscriber_sends_twcc_receiver_reports_and_nacks_like_a_browser() {
    with_seed(seed_or(61), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |_| {}, clean(), clean());
        let r = sim.add_peer(
            "r0",
            |c| {
                receive_only(c);
                c.record_rtcp = true;
            },
            clean(),
            LinkConfig::latency(20).with_loss(0.03),
        );
        sim.set_max_height(r, None, 360);
        sim.run_until(secs(12.0));
        let sent = &sim.state("r0").rtcp_sent;
        eprintln!("r0 sent {sent:?}");
        let n = |k: &str| sent.get(k).copied().unwrap_or(0);
        // Transport feedback every 50 ms while media flows (str0m's
        // interval; libwebrtc's is 50-250 ms by bitrate): ~11.5 s of media.
        assert!((180..=250).contains(&n("twcc")), "{sent:?}");
        // Reception reports at least once a second (str0m sends them in a
        // sender report with report blocks, plus an XR).
        assert!(n("rr") + n("sr") >= 11, "{sent:?}");
        assert!(n("nack") >= 5, "{sent:?}");
        assert_eq!(n("pli"), 0, "{sent:?}");
        let rx = sim.reception("r0", "pub", secs(3.0), secs(11.5));
        assert_eq!(rx.shown_freezes, 0, "{rx:?}");
    });
}

/// Not a test of speed (see BENCHMARKS.md): a 50-participant meeting runs
/// a minute of virtual time; everyone sends, everyone sees a 3x3 grid and
/// hears the five talkers.
#[test]
fn fifty_participants_for_a_simulated_minute() {
    with_seed(seed_or(23), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        let n = 50;
        for i in 0..n {
            let p = sim.add_peer(
                &format!("p{i}"),
                |c| {
                    // Five talkers; everyone sends a camera; each receiver
                    // shows a 3x3 grid (the first nine sources get slots).
                    c.audio = i < 5;
                    c.audio_slots = 5;
                    c.video_slots = 9;
                },
                clean(),
                clean(),
            );
            // Thumbnails: everyone asks for 180p.
            sim.set_max_height(p, None, 180);
        }
        let t = Instant::now();
        let simulated: f64 = std::env::var("TERN_SIM_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60.0);
        sim.run_until(secs(simulated));
        let wall = t.elapsed();
        eprintln!(
            "50 participants, {simulated} s simulated in {:.1} s wall ({:.1} simulated s per s), {} trace events",
            wall.as_secs_f64(),
            simulated / wall.as_secs_f64(),
            sim.trace.events
        );
        eprintln!(
            "work (peer timeouts, core timeouts, peer datagrams, bridge batches): {:?}",
            sim.work
        );
        eprintln!("trace hash {:016x}", sim.trace.hash());
        // p0 shows p1..p9; everyone else shows p0..p8 (minus themselves).
        for (r, p) in [("p0", "p9"), ("p49", "p0"), ("p25", "p3"), ("p5", "p8")] {
            let rx = sim.reception(r, p, secs(10.0), secs(58.0));
            assert_eq!(rx.layers, vec![0], "{r} gets 180p of {p}: {rx:?}");
            assert!(rx.frame_loss() < 0.01, "{r} from {p}: {rx:?}");
            assert_eq!(rx.shown_freezes, 0, "{r} from {p}: {rx:?}");
        }
        // Clean links: no decoder ever had to ask for a keyframe.
        for i in 0..n {
            let st = sim.state(&format!("p{i}"));
            assert_eq!(st.plis_sent_total(), 0, "p{i}: {:?}", st.plis_sent);
        }
    });
}

fn video_sent(sim: &Sim, name: &str) -> Vec<u64> {
    let mut v = sim.state(name).video_sent_by_layer.clone();
    v.resize(3, 0);
    v
}

#[test]
fn publishers_stop_layers_nobody_wants_and_resume_them_when_asked() {
    with_seed(seed_or(71), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |_| {}, clean(), clean());
        let r = sim.add_peer("r0", receive_only, clean(), clean());
        sim.set_max_height(r, None, 180);
        sim.run_until(secs(8.0));
        // Told after the pause delay: only the 180p layer is wanted.
        assert_eq!(sim.state("pub").sender_max_height, Some(180));
        let before = video_sent(&sim, "pub");
        sim.run_until(secs(10.0));
        let after = video_sent(&sim, "pub");
        assert!(
            after[0] > before[0] + 50,
            "180p flows: {before:?} -> {after:?}"
        );
        assert_eq!(
            after[1..],
            before[1..],
            "360p and 720p paused: {before:?} -> {after:?}"
        );

        // Asking for 720p resumes it at once; the switch waits for its
        // keyframe while 180p keeps flowing, so the picture never stops.
        sim.set_max_height(r, None, 720);
        sim.run_until(secs(13.0));
        assert_eq!(sim.state("pub").sender_max_height, Some(720));
        let rx = sim.reception("r0", "pub", secs(11.0), secs(12.9));
        assert_eq!(rx.layers, vec![2], "r0 switched to 720p: {rx:?}");
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        let times: Vec<Duration> = sim
            .frame_times("r0", "pub")
            .into_iter()
            .filter(|t| *t >= secs(9.5) && *t <= secs(12.5))
            .collect();
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(
            gap < Duration::from_millis(200),
            "no stall while resuming: {gap:?}"
        );
    });
}

#[test]
fn a_publisher_nobody_watches_sends_no_video_until_someone_does() {
    with_seed(seed_or(73), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("alone", |_| {}, clean(), clean());
        sim.run_until(secs(5.0));
        assert_eq!(sim.state("alone").sender_max_height, Some(0));
        let before = video_sent(&sim, "alone");
        sim.run_until(secs(7.0));
        assert_eq!(
            video_sent(&sim, "alone"),
            before,
            "nothing sent while unwatched"
        );
        let r = sim.add_peer("viewer", receive_only, clean(), clean());
        sim.set_max_height(r, None, 360);
        sim.run_until(secs(10.0));
        let first = sim
            .frame_times("viewer", "alone")
            .first()
            .copied()
            .expect("the viewer gets video");
        assert!(
            first < secs(8.0),
            "video within a second of joining: {first:?}"
        );
        let rx = sim.reception("viewer", "alone", secs(8.5), secs(9.9));
        assert_eq!(rx.layers, vec![1], "{rx:?}");
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
    });
}

/// How long each frame of `layer` took to arrive at `receiver`, first
/// packet to last, for frames of at least `min_packets` sent in [from, to).
fn frame_spreads(
    sim: &Sim,
    receiver: &str,
    publisher: &str,
    layer: u8,
    min_packets: u16,
    (from, to): (Duration, Duration),
) -> Vec<Duration> {
    let mut frames: std::collections::BTreeMap<u32, (u16, Instant, Instant)> =
        std::collections::BTreeMap::new();
    for r in sim
        .state(receiver)
        .received_all(&format!("{publisher}/camera"))
    {
        let (Some(l), Some(f), Some(sent)) = (r.layer, r.frame, r.sent_us) else {
            continue;
        };
        let sent = Duration::from_micros(sent);
        if l != layer || r.count < min_packets || sent < from || sent >= to {
            continue;
        }
        let e = frames.entry(f).or_insert((0, r.at, r.at));
        e.0 += 1;
        e.1 = e.1.min(r.at);
        e.2 = e.2.max(r.at);
    }
    let mut v: Vec<Duration> = frames
        .values()
        .filter(|(n, ..)| *n >= min_packets)
        .map(|(_, first, last)| *last - *first)
        .collect();
    v.sort();
    v
}

/// The load tool's publishers pace video as a browser does (2.5x the
/// bitrate, 5 ms turns): a 720p frame reaches the subscriber spread over
/// several turns instead of as one burst, and nothing is lost to it.
#[test]
fn paced_publisher_spreads_each_frame_over_pacer_turns_and_loses_nothing() {
    with_seed(seed_or(43), |seed| {
        let run = |pacing: Option<Pacing>| {
            let mut sim = Sim::new(SimConfig::new(seed));
            sim.add_peer("pub", |c| c.pacing = pacing, clean(), clean());
            sim.add_peer("r0", receive_only, clean(), clean());
            sim.run_until(secs(9.0));
            let rx = sim.reception("r0", "pub", secs(4.0), secs(8.0));
            // The publisher's clock starts when it joins, at the start.
            let spreads = frame_spreads(&sim, "r0", "pub", 2, 4, (secs(4.0), secs(8.0)));
            (rx, spreads)
        };
        let (burst_rx, burst) = run(None);
        let (paced_rx, paced) = run(Some(Pacing::BROWSER));
        assert_eq!(burst_rx.layers, vec![2], "{burst_rx:?}");
        assert_eq!(paced_rx.layers, vec![2], "{paced_rx:?}");
        assert!(burst.len() > 60 && paced.len() > 60, "{burst:?} {paced:?}");
        // A burst arrives at one instant on a clean link.
        assert!(
            burst.iter().all(|d| *d < Duration::from_millis(1)),
            "{burst:?}"
        );
        // Paced: a ~6 KB frame after ~2.7 KB of lower layers, at ~3.4 KB per
        // 5 ms turn, spans at least one turn and stays well under a frame
        // interval.
        let median = paced[paced.len() / 2];
        assert!(median >= Duration::from_millis(5), "{paced:?}");
        assert!(median < Duration::from_millis(33), "{paced:?}");
        assert!(paced_rx.frame_loss() < 0.01, "{paced_rx:?}");
        assert!(
            paced_rx.delay_p50 > burst_rx.delay_p50,
            "{paced_rx:?} vs {burst_rx:?}"
        );
    });
}

/// Admission control: a shard that stays a quarter second behind for a
/// second refuses new joins with `overloaded` (without touching the same
/// participant's working connection) until five seconds after it caught
/// up; those already in keep their media, and joins work again after.
#[test]
fn joins_are_refused_while_the_bridge_lags_and_admitted_after_it_catches_up() {
    use tern_sfu::signal::ErrorCode;
    use tern_sfu::{EndpointId, JoinRequest, SfuError};
    with_seed(seed_or(47), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |_| {}, clean(), clean());
        sim.add_peer("r0", receive_only, clean(), clean());
        let join = |sim: &mut Sim, id: u64, participant: &str| {
            let req = JoinRequest {
                id: EndpointId(id),
                room: sim.room().to_string(),
                participant: participant.into(),
                name: participant.into(),
                ice_password: "0123456789abcdef0123456789abcdef".into(),
                video_codec: None,
                may_publish: true,
                mix_rate: None,
                composite: Default::default(),
            };
            let now = sim.now();
            sim.core_mut().handle_join(now, req)
        };
        // The shell reports the shard 300 ms behind, every 100 ms, from
        // 4.0 s to 5.0 s; joins are refused from the first second's end.
        for i in 0..=10 {
            sim.run_until(secs(4.0 + f64::from(i) * 0.1));
            let now = sim.now();
            sim.core_mut()
                .handle_ingress_lag(now, Duration::from_millis(300));
            if i == 9 {
                // 900 ms behind is not overload yet.
                assert_eq!(sim.core().stats().joins_refused_overloaded, 0);
            }
        }
        sim.run_until(secs(5.5));
        let now = sim.now();
        sim.core_mut()
            .handle_ingress_lag(now, Duration::from_millis(4));
        // A newcomer and a second connection of r0: both refused, precisely.
        for (id, who) in [(1_000_001, "late"), (1_000_002, "r0")] {
            match join(&mut sim, id, who) {
                Err(SfuError::Refused(r)) => {
                    assert_eq!(r.code, ErrorCode::Overloaded);
                    assert!(r.message.contains("4 ms behind"), "{}", r.message);
                }
                other => panic!("join of {who} while overloaded: {other:?}"),
            }
        }
        assert_eq!(sim.core().stats().joins_refused_overloaded, 2);
        sim.run_until(secs(9.9));
        assert!(matches!(
            join(&mut sim, 1_000_003, "late"),
            Err(SfuError::Refused(_))
        ));
        // Five seconds after the last overloaded sample (5.0 s): admitted.
        sim.run_until(secs(10.1));
        sim.add_peer("late", receive_only, clean(), clean());
        sim.run_until(secs(14.0));
        // r0 was never replaced and got the publisher throughout.
        let rx = sim.reception("r0", "pub", secs(3.0), secs(13.5));
        assert!(rx.frame_loss() < 0.01 && rx.freezes == 0, "{rx:?}");
        let late = sim.reception("late", "pub", secs(12.0), secs(13.5));
        assert!(late.frame_loss() < 0.01, "{late:?}");
        assert_eq!(sim.core().stats().joins_refused_overloaded, 3);
    });
}

/// A packet of the new layer that arrives after the switch but precedes the
/// switch point cannot be forwarded (its number has no place in the
/// receiver's sequence): it is dropped and counted (`before_switch`), on a
/// reordering uplink, and never on a clean one.
#[test]
fn stragglers_from_before_a_layer_switch_are_dropped_and_counted() {
    use tern_sfu::stats::DropReason;
    with_seed(seed_or(53), |seed| {
        let run = |reorder: f64| {
            let mut sim = Sim::new(SimConfig::new(seed));
            // Held back by one more 40 ms latency: past the next frame
            // (33 ms), so a delta frame's packet can land behind the
            // keyframe that follows it.
            let up = LinkConfig {
                reorder,
                ..LinkConfig::latency(40)
            };
            sim.add_peer("pub", |_| {}, up, clean());
            let r = sim.add_peer("r0", receive_only, clean(), clean());
            // Up and down the ladder: every switch waits for a keyframe of
            // the new layer, whose first packet is the switch point.
            for (i, h) in [180, 720, 180, 720, 360, 720].into_iter().enumerate() {
                sim.set_max_height(r, None, h);
                sim.run_until(secs(3.0 + 2.0 * i as f64));
            }
            sim.run_until(secs(16.0));
            let rx = sim.reception("r0", "pub", secs(14.0), secs(15.5));
            (sim.core().stats().dropped(DropReason::BeforeSwitch), rx)
        };
        let (clean_drops, clean_rx) = run(0.0);
        let (drops, rx) = run(0.3);
        assert_eq!(clean_drops, 0);
        assert!(
            drops > 0,
            "no straggler in six switches with 30 % reordering"
        );
        assert_eq!(clean_rx.layers, vec![2], "{clean_rx:?}");
        assert_eq!(rx.layers, vec![2], "{rx:?}");
    });
}
