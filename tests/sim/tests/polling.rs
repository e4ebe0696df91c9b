//! A receiver of forwarded copies and its connection: the copies are sent
//! now (`send_rtp_now`, patches/README.md) and the connection is polled on
//! its own timer or after its input, not for the copies it was sent
//! (`sfu/src/core/poll.rs`).
//! What a poll gives must still arrive: sender reports on every stream,
//! whose times a receiver can synchronise audio and video by.

use std::time::Duration;

use tern_peer::PeerConfig;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn receive_only(c: &mut PeerConfig) {
    c.video = vec![];
    c.audio = false;
}

const RECEIVERS: usize = 20;

fn one_to_many(seed: u64) -> Sim {
    one_to_many_with(SimConfig::new(seed))
}

fn one_to_many_with(cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.add_peer(
        "pub",
        |c| c.audio = true,
        LinkConfig::latency(10),
        LinkConfig::latency(10),
    );
    for i in 0..RECEIVERS {
        let r = sim.add_peer(
            &format!("r{i}"),
            receive_only,
            LinkConfig::latency(10),
            LinkConfig::latency(10),
        );
        sim.set_max_height(r, None, 720);
    }
    sim
}

/// Once, every pass that sent a receiver copies polled its connection
/// after: one full timeout computation per receiver per pass, about one
/// per two copies (121 polls a second for 241 copies here). Then a receiver
/// was polled for its input (feedback), its timer, and within 20 ms of a
/// send (61 a second). Now for its input and its timer only (41).
#[test]
fn a_receiver_is_polled_for_its_input_and_timer_not_after_every_copy() {
    with_seed(seed_or(3), |seed| {
        let mut sim = one_to_many(seed);
        sim.run_until(secs(5.0));
        let before = sim.core().stats().clone();
        sim.run_until(secs(15.0));
        let after = sim.core().stats().clone();
        let copies = after.rtp_forwarded - before.rtp_forwarded;
        let polls = after.polls - before.polls;
        let timer_polls = after.timer_polls - before.timer_polls;
        let per_receiver = |n: u64| n as f64 / RECEIVERS as f64 / 10.0;
        eprintln!(
            "per receiver and second: {:.0} copies, {:.0} polls, {:.1} of them on timers (the whole core's, the publisher's too)",
            per_receiver(copies),
            per_receiver(polls),
            per_receiver(timer_polls),
        );
        assert!(
            per_receiver(copies) > 150.0,
            "720p and audio forwarded: {copies}"
        );
        assert!(
            polls * 5 < copies,
            "{polls} polls for {copies} copies: polled for the copies again?"
        );
        for i in 0..RECEIVERS {
            let rx = sim.reception(&format!("r{i}"), "pub", secs(6.0), secs(15.0));
            assert!(rx.frame_loss() < 0.001, "r{i}: {rx:?}");
            assert_eq!(rx.layers, vec![2], "r{i} on 720p: {rx:?}");
        }
    });
}

/// Sender reports are what a poll sends: every forwarded stream gets its
/// first about one interval after its first packet (str0m's: 1 s for
/// video, 5 s for audio) and then keeps getting them, and their RTP/NTP
/// pairs put audio and video on one clock. A receiver's lip sync maps each
/// packet's RTP time to NTP time by its stream's latest report; on a link
/// of constant delay, audio and video captured together arrive together,
/// so NTP time minus arrival time must agree for the two.
#[test]
fn every_forwarded_stream_gets_sender_reports_that_put_audio_and_video_on_one_clock() {
    with_seed(seed_or(4), |seed| {
        let mut sim = one_to_many(seed);
        sim.run_until(secs(16.0));
        let epoch = sim.at(Duration::ZERO);
        for i in 0..RECEIVERS {
            let st = sim.state(&format!("r{i}"));
            let video = st.slot_of("pub/camera").expect("a video slot");
            let audio = st.slot_of("pub/mic").expect("an audio slot");
            let mut offsets = Vec::new();
            for (mid, interval, rate) in [(&audio, 5.0, 48_000.0), (&video, 1.0, 90_000.0)] {
                let packets = &st.received[mid];
                let reports = &st.sender_reports[mid];
                let first = packets[0].at.duration_since(epoch).as_secs_f64();
                let times: Vec<f64> = reports
                    .iter()
                    .map(|(at, _)| at.duration_since(epoch).as_secs_f64())
                    .collect();
                assert!(
                    times[0] - first < interval + 0.5,
                    "r{i} {mid}: first report {:.3} s after the first packet",
                    times[0] - first
                );
                for w in times.windows(2) {
                    assert!(
                        w[1] - w[0] < interval + 0.5,
                        "r{i} {mid}: reports {times:.3?}"
                    );
                }
                // Per packet (a frame's first, for video): NTP time by the
                // latest report before it, minus its arrival.
                let mut per_packet = Vec::new();
                let mut last_ts = None;
                for p in packets {
                    if last_ts == Some(p.ts) {
                        continue;
                    }
                    last_ts = Some(p.ts);
                    let Some((_, sr)) = reports.iter().rev().find(|(at, _)| *at <= p.at) else {
                        continue;
                    };
                    let rtp_diff = p.ts.wrapping_sub(sr.rtp_time.numer() as u32) as i32 as f64;
                    let ntp = sr
                        .ntp_time
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("after the epoch")
                        .as_secs_f64()
                        + rtp_diff / rate;
                    per_packet.push(ntp - p.at.duration_since(epoch).as_secs_f64());
                }
                assert!(per_packet.len() > 100, "r{i} {mid}: {}", per_packet.len());
                per_packet.sort_by(f64::total_cmp);
                offsets.push(per_packet[per_packet.len() / 2]);
            }
            let skew = offsets[0] - offsets[1];
            if i == 0 {
                eprintln!("r0: audio against video {:.1} ms", skew * 1000.0);
            }
            assert!(
                skew.abs() < 0.015,
                "r{i}: audio and video captured together map {:.1} ms apart",
                skew * 1000.0
            );
        }
    });
}

/// A receiver whose feedback stops (its uplink lost, the bridge still
/// sending) is polled on its own timers: str0m's send-side estimator looks
/// for a report every 25 ms and the pacer runs every 40 ms. What
/// `tern_connection_polls_total{cause="timer"}` counts, and why the load
/// tool's count-only receivers cost a bridge ~40 passes a second each
/// (BENCHMARKS.md, "Egress: where the saturation sweep's timer passes go").
#[test]
fn a_receiver_whose_feedback_stopped_is_polled_on_its_timers() {
    with_seed(seed_or(3), |seed| {
        // The send-side estimator is on, as on a real bridge.
        let mut sim = one_to_many_with(SimConfig {
            bandwidth_estimation: true,
            ..SimConfig::new(seed)
        });
        sim.run_until(secs(5.0));
        let per_receiver_second =
            |a: u64, b: u64, secs: f64| (b - a) as f64 / RECEIVERS as f64 / secs;
        let before = sim.core().stats().clone();
        sim.run_until(secs(7.0));
        let flowing = sim.core().stats().clone();
        for i in 0..RECEIVERS {
            let r = sim.peer_index(&format!("r{i}"));
            sim.loss_window(r, secs(7.0), secs(10.0), 1.0);
        }
        sim.run_until(secs(7.5));
        let cut = sim.core().stats().clone();
        sim.run_until(secs(9.5));
        let after = sim.core().stats().clone();
        let with_feedback = per_receiver_second(before.timer_polls, flowing.timer_polls, 2.0);
        let without = per_receiver_second(cut.timer_polls, after.timer_polls, 2.0);
        let copies = per_receiver_second(cut.rtp_forwarded, after.rtp_forwarded, 2.0);
        eprintln!(
            "timer polls per receiver-second: {with_feedback:.1} with feedback, {without:.1} without ({copies:.0} copies a second)"
        );
        assert!(copies > 150.0, "still sent media: {copies}");
        // With feedback the estimator's 25 ms updates follow its reports
        // (some served by the reports' own polls); without, every look
        // for one is a timer pass of its own.
        assert!(without >= 35.0, "{without}");
        assert!(
            without > with_feedback + 10.0,
            "{without} vs {with_feedback}"
        );
    });
}
