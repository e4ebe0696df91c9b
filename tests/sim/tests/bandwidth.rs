//! Bandwidth-driven allocation in whole meetings: receivers behind links
//! whose capacity changes get the layers that fit, without freezes, and
//! climb back when the capacity returns.

use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sfu::DropReason;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn estimating(seed: u64) -> SimConfig {
    SimConfig {
        bandwidth_estimation: true,
        ..SimConfig::new(seed)
    }
}

fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

/// Downlink packets lost (tail drops at the bottleneck) over a window.
fn downlink_loss(sim: &mut Sim, peer: usize, from: f64, to: f64) -> f64 {
    sim.run_until(secs(from));
    let (_, (s0, l0)) = sim.link_counts(peer);
    sim.run_until(secs(to));
    let (_, (s1, l1)) = sim.link_counts(peer);
    (l1 - l0) as f64 / (s1 - s0).max(1) as f64
}

/// The layers `receiver` got of `pub`'s camera among frames sent in
/// [from, to).
fn layers(sim: &Sim, receiver: &str, from: f64, to: f64) -> Vec<u8> {
    sim.reception(receiver, "pub", secs(from), secs(to)).layers
}

/// The layers of `publisher`'s camera `receiver` was sent, in the order
/// they arrived in [from, to) (seconds of virtual time), each run of one
/// layer once.
fn layers_in_order(sim: &Sim, receiver: &str, publisher: &str, from: f64, to: f64) -> Vec<u8> {
    let (a, b) = (secs(from), secs(to));
    let mut rx = sim
        .state(receiver)
        .received_all(&format!("{publisher}/camera"));
    rx.retain(|r| (a..b).contains(&sim.since_start(r.at)));
    rx.sort_by_key(|r| r.at);
    let mut out: Vec<u8> = rx.iter().filter_map(|r| r.layer).collect();
    out.dedup();
    out
}

#[test]
fn a_receiver_whose_downlink_drops_to_400_kbps_moves_down_without_freezing_and_climbs_back() {
    with_seed(seed_or(101), |seed| {
        let mut sim = Sim::new(estimating(seed));
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        let r = sim.add_peer(
            "r",
            receive_only,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        sim.set_max_height(r, None, 720);
        sim.run_until(secs(8.0));
        // 400 kbps: only 180p (150 kbps) and audio fit.
        sim.set_downlink(r, LinkConfig::capped(400));
        let loss = downlink_loss(&mut sim, r, 11.0, 16.0);
        // Back to 3 Mbps: probing finds it.
        sim.set_downlink(r, LinkConfig::capped(3000));
        sim.run_until(secs(27.0));

        assert_eq!(layers(&sim, "r", 6.0, 8.0), vec![2], "720p fits 3 Mbps");
        let after = sim.reception("r", "pub", secs(10.0), secs(16.0));
        assert_eq!(after.layers, vec![0], "on 180p within 2 s: {after:?}");
        assert!(after.frame_loss() < 0.01, "{after:?}");
        assert!(loss < 0.01, "residual loss after adapting: {loss}");
        // The issue's target: no shown freeze over 500 ms across the drop.
        // 0.19 s at seeds 1-23. It was 0.67-0.71 s while str0m's first
        // reaction came from its delay trend, ~470 ms after the drop (few
        // packets a feedback at 400 kbit/s); str0m (patched) now reads the
        // collapse from how the feedback spreads packets, ~220 ms after, and
        // no probe is sent into the full queue the 180p keyframe waits
        // behind (BENCHMARKS.md, "Switches up that settle, and a collapse
        // read from the feedback").
        let across = sim.reception("r", "pub", secs(7.0), secs(16.0));
        eprintln!("across the drop: {across:?}");
        assert!(
            across.longest_shown_gap <= Duration::from_millis(500),
            "shown freeze across the drop: {across:?}"
        );
        // Straight to 180p, not by way of 360p, and 720p was stopped while
        // the switch waited for 180p's keyframe.
        assert_eq!(across.layers, vec![0, 2], "{across:?}");
        let core = sim.bridges[0].core("sim").stats();
        assert!(
            core.dropped(DropReason::Draining) > 0,
            "720p drained while switching down: {core:?}"
        );
        let back = sim.reception("r", "pub", secs(25.0), secs(27.0));
        assert_eq!(back.layers, vec![2], "back on 720p within 10 s: {back:?}");
        let climb = sim.reception("r", "pub", secs(16.0), secs(27.0));
        assert!(
            climb.longest_shown_gap <= Duration::from_millis(500),
            "no freeze while climbing: {climb:?}"
        );
    });
}

/// Holds at all of seeds 1-23. With a 2.5 Mbit/s initial estimate it failed
/// at four (1, 3, 12, and 103): that start overflowed the 1.2 Mbit/s link,
/// and str0m's loss-based estimator remembered the loss for seconds,
/// holding the estimate near 200-600 kbit/s with no loss since, so that
/// receiver moved between 180p and 360p (BENCHMARKS.md, "Bandwidth
/// simulations across seeds").
#[test]
fn three_receivers_on_different_links_each_get_what_fits_their_own() {
    three_receivers_on_different_links(seed_or(103));
}

/// The same at two seeds where it failed when the bridge first sent
/// forwarded copies with str0m's `send_rtp_now` (patches/README.md): the
/// pacer was not asked to move its clock after such a packet, as it is after
/// a polled one, so probe padding went out beside the media burst instead of
/// after it; a probe into the 1.2 Mbit/s link read as overuse, and that
/// receiver sat on 180p for seconds (6 of seeds 1-69; none before, none
/// since).
#[test]
fn three_receivers_each_get_what_fits_at_seeds_where_sending_now_once_starved_one() {
    for seed in [13, 32] {
        three_receivers_on_different_links(seed);
    }
}

fn three_receivers_on_different_links(seed: u64) {
    with_seed(seed, |seed| {
        let mut sim = Sim::new(estimating(seed));
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        for (name, kbps) in [("slow", 500), ("mid", 1200), ("fast", 5000)] {
            let r = sim.add_peer(
                name,
                receive_only,
                LinkConfig::latency(20),
                LinkConfig::capped(kbps),
            );
            sim.set_max_height(r, None, 720);
        }
        sim.run_until(secs(20.0));
        for (name, want) in [("slow", 0), ("mid", 1), ("fast", 2)] {
            let rx = sim.reception(name, "pub", secs(15.0), secs(20.0));
            assert_eq!(rx.layers, vec![want], "{name}: {rx:?}");
            assert!(rx.frame_loss() < 0.02, "{name}: {rx:?}");
            assert_eq!(rx.shown_freezes, 0, "{name}: {rx:?}");
        }
    });
}

#[test]
fn a_receiver_starved_below_the_lowest_layer_is_told_it_is_paused_and_resumes_when_the_link_returns()
 {
    with_seed(seed_or(107), |seed| {
        let mut sim = Sim::new(estimating(seed));
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        let r = sim.add_peer(
            "r",
            receive_only,
            LinkConfig::latency(20),
            LinkConfig::capped(3000),
        );
        sim.run_until(secs(6.0));
        assert!(sim.state("r").suspended.is_empty());
        // 90 kbps: audio fits, 180p (150 kbps) does not.
        sim.set_downlink(r, LinkConfig::capped(90));
        let mut paused_at = None;
        for tenth in 61..=200 {
            sim.run_until(secs(tenth as f64 / 10.0));
            if !sim.state("r").suspended.is_empty() {
                paused_at = Some(tenth as f64 / 10.0);
                break;
            }
        }
        let paused_at = paused_at.expect("the slot is suspended on a 90 kbps link");
        eprintln!("paused at {paused_at} s");
        sim.run_until(secs(25.0));
        assert!(!sim.state("r").suspended.is_empty(), "still paused at 25 s");
        sim.set_downlink(r, LinkConfig::capped(3000));
        let mut resumed_at = None;
        for tenth in 251..=450 {
            sim.run_until(secs(tenth as f64 / 10.0));
            if sim.state("r").suspended.is_empty() {
                resumed_at = Some(tenth as f64 / 10.0);
                break;
            }
        }
        eprintln!("resumed at {resumed_at:?}");
        let resumed_at = resumed_at.expect("the slot resumes within 20 s of the link returning");
        sim.run_until(secs(resumed_at + 5.0));
        let rx = sim.reception("r", "pub", secs(resumed_at + 2.0), secs(resumed_at + 5.0));
        assert!(!rx.layers.is_empty() && rx.frame_loss() < 0.02, "{rx:?}");
        // Climbing back, each layer is left only for a higher one: a switch
        // up, then down on the rate the switch's own keyframe added, then up
        // again, was two more keyframes on the way (UP_SETTLE).
        let climb = layers_in_order(&sim, "r", "pub", resumed_at - 1.0, resumed_at + 5.0);
        assert!(
            climb.windows(2).all(|w| w[0] < w[1]),
            "layers on the way back: {climb:?}"
        );
    });
}

/// A presenter's screen on stage and three cameras as thumbnails, watched
/// by a receiver whose link falls from 5 to 2.5 Mbps at 4 s; run to 16 s.
fn screen_share_on_a_link_that_halves(seed: u64) -> Sim {
    let mut sim = Sim::new(estimating(seed));
    sim.add_peer(
        "presenter",
        |c| {
            c.audio = true;
            c.video_source = "screen".into();
        },
        LinkConfig::latency(20),
        LinkConfig::capped(5000),
    );
    for name in CAMERAS {
        sim.add_peer(
            name,
            |c| c.audio = false,
            LinkConfig::latency(20),
            LinkConfig::capped(5000),
        );
    }
    let r = sim.add_peer(
        "r",
        receive_only,
        LinkConfig::latency(20),
        LinkConfig::capped(5000),
    );
    sim.set_max_height(r, None, 360);
    sim.set_view(r, -1, &["presenter/screen"], 720);
    sim.run_until(secs(4.0));
    // 2.5 Mbps: the screen's 720p (1.5 Mbps) still fits, with the
    // thumbnails at 180p (0.15 each); at 360p (0.5 each) they do not.
    sim.set_downlink(r, LinkConfig::capped(2500));
    sim.run_until(secs(16.0));
    sim
}

const CAMERAS: [&str; 3] = ["ana", "ben", "cy"];

/// It looks at 8-16 s, from 4 s after the drop; across the drop itself the
/// screen freezes longer (the next test). The thumbnails must have gone
/// down to 180p by then; later one may go back up to 360p where the
/// estimate finds room beside the screen (2.5 Mbit/s carries the screen's
/// 1.5, three 180p and one 360p), but not come down again: that is
/// flapping. Passes at 21 of seeds 1-23 and its own (at seed 22 a
/// thumbnail went 180p -> 360p -> 180p; at seed 8 one was still on 360p
/// for a few frames at 8 s). It was ignored, passing at 12 and
/// not its own, while it asked every thumbnail to stay on 180p to the end
/// and before a slot that just switched up stopped going straight back
/// down on its own keyframe's rate (`UP_SETTLE`); at 6 seeds the highest
/// thumbnail now climbs back once. BENCHMARKS.md, "Switches up that
/// settle, and a collapse read from the feedback".
#[test]
fn a_screen_share_on_stage_keeps_its_resolution_while_thumbnails_degrade() {
    screen_keeps_its_resolution_while_thumbnails_degrade(seed_or(109));
}

/// The same at two seeds where it failed when the bridge polled a receiver
/// within 100 ms of sending it forwarded copies (and at 50 ms) rather than
/// within 20: a thumbnail went up to 360p and back down (4 of seeds 1-23;
/// as many polled on its timers alone). str0m's delay controller
/// updated its estimate at every timeout pass, so the estimate followed how
/// often the bridge polled; it now updates when its 25 ms are up, and a
/// receiver is polled on its timers and inputs only (`sfu/src/core/poll.rs`,
/// patches/README.md).
#[test]
fn a_screen_share_keeps_its_resolution_at_seeds_where_polling_receivers_later_flapped_a_thumbnail()
{
    for seed in [6, 16] {
        screen_keeps_its_resolution_while_thumbnails_degrade(seed);
    }
}

fn screen_keeps_its_resolution_while_thumbnails_degrade(seed: u64) {
    with_seed(seed, |seed| {
        let sim = screen_share_on_a_link_that_halves(seed);
        let thumbs_before: Vec<u8> = CAMERAS
            .iter()
            .flat_map(|c| sim.reception("r", c, secs(0.0), secs(4.0)).layers)
            .collect();
        assert!(
            thumbs_before.contains(&1),
            "some thumbnail at 360p on 5 Mbps: {thumbs_before:?}"
        );
        let after = sim.reception_of("r", "presenter", "screen", secs(8.0), secs(16.0));
        eprintln!("screen after the drop: {after:?}");
        eprintln!(
            "screen frames on 720p after the drop: {:.2}",
            after.share_on(2)
        );
        // Mostly, not only: str0m's estimate on this link still dips below
        // what 720p needs even with the oversend (issue 16, BENCHMARKS.md).
        assert!(
            after.share_on(2) >= 0.8,
            "the screen stays on 720p: {after:?}"
        );
        assert_eq!(after.shown_freezes, 0, "{after:?}");
        for c in CAMERAS {
            let t = sim.reception("r", c, secs(8.0), secs(16.0));
            let order = layers_in_order(&sim, "r", c, 8.0, 16.0);
            eprintln!("{c} after the drop: {order:?} {t:?}");
            assert_eq!(
                order.first(),
                Some(&0),
                "{c}'s thumbnail degrades to 180p within 4 s: {t:?}"
            );
            assert!(
                order.len() <= 2 && order.iter().all(|&l| l <= 1),
                "{c}'s thumbnail goes back up at most once, to 360p: {order:?}"
            );
        }
    });
}

/// The screen keeps its layer through the drop, but its packets are lost in
/// the full bottleneck queue too, and retransmission does not bring them
/// all back in time: the receiver's picture stood still until it asked for
/// a keyframe itself, 3.25 s at this seed (3.2-4.0 s at 13 of seeds 1-23,
/// across the drop). A fall of the estimate gets on-stage sources a
/// keyframe 400 ms after the last step (0.62 s here), thumbnails that
/// switch up no longer go straight back down on their own keyframe's rate
/// (`UP_SETTLE`, 0.43 s here), and str0m (patched) reads the overload from
/// the feedback once the queue has grown 150 ms instead of seconds later
/// (0.12 s here). The issue's "no freeze over 500 ms" holds at every one of
/// seeds 1-23, the longest 0.13 s (BENCHMARKS.md, "Switches up that
/// settle, and a collapse read from the feedback").
#[test]
fn a_screen_on_stage_is_not_left_frozen_until_the_receiver_asks_after_a_drop() {
    with_seed(seed_or(6), |seed| {
        let sim = screen_share_on_a_link_that_halves(seed);
        let screen = sim.reception_of("r", "presenter", "screen", secs(4.0), secs(16.0));
        eprintln!("screen across the drop: {screen:?}");
        assert!(
            screen.longest_shown_gap <= Duration::from_millis(500),
            "{screen:?}"
        );
        assert!(screen.share_on(2) >= 0.9, "{screen:?}");
    });
}

/// A new receiver's first keyframe is of a layer its starting estimate
/// carries. Before any rate is measured (the publisher's layers have sent
/// nothing yet) allocation aimed at the receiver's constraint alone, so the
/// first frames were 720p whatever the link, and on a slow one that burst
/// was loss str0m's loss-based estimator held on to for seconds.
#[test]
fn a_new_receiver_is_first_sent_a_layer_its_starting_estimate_carries() {
    with_seed(seed_or(1), |seed| {
        let mut cfg = estimating(seed);
        cfg.bridge_config = |mut c| {
            // 180p (nominally 200 kbit/s before it is measured) fits, 360p
            // (500) does not.
            c.bandwidth.initial_bps = 400_000;
            c
        };
        let mut sim = Sim::new(cfg);
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(20),
            LinkConfig::capped(5000),
        );
        let r = sim.add_peer(
            "r",
            receive_only,
            LinkConfig::latency(20),
            LinkConfig::capped(1200),
        );
        sim.set_max_height(r, None, 720);
        sim.run_until(secs(3.0));
        let rx = sim.state("r").received_all("pub/camera");
        let first = rx.first().expect("video arrived");
        assert_eq!(
            first.layer,
            Some(0),
            "the first frames fit 400 kbit/s (at {:?})",
            sim.since_start(first.at)
        );
        let (_, (sent, lost)) = sim.link_counts(r);
        assert_eq!(
            lost, 0,
            "nothing lost on the 1.2 Mbit/s link: {lost}/{sent}"
        );
    });
}

/// On a link far faster than the media (a LAN, loopback) str0m's start-up
/// probes must still measure it, so a receiver that starts below 720p (the
/// 1 Mbit/s starting estimate) is raised within a second (here 0.17 s).
/// In a real-socket run it took 3.5 s: the forwarded keyframe burst
/// completed both start-up probe clusters and both were rejected. This
/// scenario does not put the burst first and passes without that fix too;
/// `str0m_probe.rs` reproduces it (patches/README.md).
#[test]
fn a_receiver_on_a_fast_link_is_raised_to_the_top_layer_by_the_start_up_probes() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(estimating(seed));
        sim.add_peer(
            "pub",
            |c| c.audio = true,
            LinkConfig::latency(1),
            LinkConfig::latency(1),
        );
        // Joining a meeting under way, as in a real-socket run: the
        // bridge asks for a keyframe on the receiver's connection, and its
        // burst is the first thing sent when the probes start.
        sim.run_until(secs(2.0));
        let r = sim.add_peer(
            "r",
            receive_only,
            LinkConfig::latency(1),
            LinkConfig::latency(1),
        );
        sim.set_max_height(r, None, 720);
        sim.run_until(secs(6.0));
        let rx = sim.state("r").received_all("pub/camera");
        let first = rx.first().expect("video arrived").at;
        let top = rx
            .iter()
            .find(|p| p.layer == Some(2))
            .map(|p| p.at.duration_since(first));
        assert!(
            top.is_some_and(|t| t <= Duration::from_secs(1)),
            "720p within 1 s of the first frame, not {top:?}"
        );
    });
}
