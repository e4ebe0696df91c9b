//! Loss repair towards receivers from one copy per forwarded packet
//! (`sfu/src/core/repair.rs`): the source keeps each packet once, each
//! receive slot a map from the sequence numbers it sent to those packets,
//! and a NACK is answered from the two on the slot's RTX stream.

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

/// A receiver that joins a running meeting gets a slot map that starts at
/// its first packet, from a source whose cache was filled before it came:
/// its losses are answered all the same, and only it needed any.
#[test]
fn a_receiver_that_joined_late_is_repaired_from_the_sources_one_copy() {
    with_seed(seed_or(5), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |c| c.audio = true, clean(), clean());
        let early = sim.add_peer("early", receive_only, clean(), clean());
        sim.set_max_height(early, None, 720);
        sim.run_until(secs(5.0));
        assert_eq!(sim.core().stats().repairs_asked, 0, "no loss yet");
        let late = sim.add_peer(
            "late",
            receive_only,
            clean(),
            LinkConfig::latency(10).with_loss(0.03),
        );
        sim.set_max_height(late, None, 720);
        sim.run_until(secs(15.0));

        let (_, (sent, lost)) = sim.link_counts(late);
        assert!(
            lost as f64 > 0.02 * sent as f64,
            "loss applied: {lost}/{sent}"
        );
        let st = sim.core().stats();
        eprintln!(
            "repairs: asked {}, sent {}, expired {}, capped {}",
            st.repairs_asked, st.repairs_sent, st.repairs_expired, st.repairs_capped
        );
        assert!(st.repairs_sent > 20, "{st:?}");
        assert_eq!(st.repairs_expired, 0, "every NACK found its packet");
        let rx = sim.reception("late", "pub", secs(7.0), secs(14.0));
        assert!(
            rx.frame_loss() < 0.005,
            "{:.3}% {rx:?}",
            rx.frame_loss() * 100.0
        );
        assert_eq!(rx.layers, vec![2], "on 720p: {rx:?}");
        let rx = sim.reception("early", "pub", secs(7.0), secs(14.0));
        assert!(rx.frame_loss() < 0.001, "{rx:?}");
    });
}

/// A NACK can arrive a round trip after the slot moved on: to a higher
/// layer of its source (the repair is of the layer it left), or to another
/// source (the repair is of the one it showed before). The slot's map
/// answers both: on a 300 ms round trip with 3 % loss, the sequence the
/// viewer's one video slot received has no hole across either switch.
#[test]
fn a_slots_repairs_reach_back_across_a_layer_switch_and_a_source_switch() {
    with_seed(seed_or(9), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("a", |c| c.audio = false, clean(), clean());
        sim.add_peer("b", |c| c.audio = false, clean(), clean());
        let v = sim.add_peer("viewer", receive_only, clean(), clean());
        sim.set_view(v, 1, &["a/camera"], 360);
        sim.run_until(secs(3.0));
        sim.set_downlink(v, LinkConfig::latency(150).with_loss(0.03));
        sim.run_until(secs(4.0));
        sim.set_view(v, 1, &["a/camera"], 720);
        sim.run_until(secs(7.0));
        let a = sim.reception("viewer", "a", secs(3.5), secs(6.9));
        assert_eq!(a.layers, vec![1, 2], "360p, then 720p: {a:?}");
        sim.set_view(v, 1, &["b/camera"], 720);
        sim.run_until(secs(10.0));

        let st = sim.core().stats();
        eprintln!(
            "repairs: asked {}, sent {}, expired {}, capped {}",
            st.repairs_asked, st.repairs_sent, st.repairs_expired, st.repairs_capped
        );
        let state = sim.state("viewer");
        let mid = state.slot_of("b/camera").expect("b shown");
        let got = &state.received[&mid];
        // Everything sent up to 9 s had time to be repaired by 10 s.
        let until = sim.at(secs(9.0));
        let last = got
            .iter()
            .filter(|r| r.at < until)
            .map(|r| r.seq)
            .max()
            .expect("received");
        let seqs: std::collections::BTreeSet<u64> = got.iter().map(|r| r.seq).collect();
        let first = *seqs.first().expect("received");
        let holes: Vec<u64> = (first..=last).filter(|s| !seqs.contains(s)).collect();
        let (_, (sent, lost)) = sim.link_counts(v);
        eprintln!(
            "{} received, {lost} of {sent} datagrams lost, holes {holes:?}",
            seqs.len()
        );
        assert!(lost > 15, "loss applied: {lost}/{sent}");
        assert!(holes.is_empty(), "unrepaired: {holes:?}");
        assert!(st.repairs_sent >= 15, "{st:?}");
    });
}

/// The source keeps a copy of what a receiver was sent, and only that: a
/// receiver on the lowest layer leaves the two higher ones uncached (kept,
/// they were most of a meeting's memory), and its losses are still
/// repaired from the copies of what it was sent.
#[test]
fn only_packets_a_receiver_was_sent_are_kept_for_repairs() {
    with_seed(seed_or(3), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        let publisher = sim.add_peer("pub", |c| c.audio = false, clean(), clean());
        let low = sim.add_peer(
            "low",
            receive_only,
            clean(),
            LinkConfig::latency(10).with_loss(0.03),
        );
        sim.set_max_height(low, None, 180);
        sim.run_until(secs(10.0));

        let st = sim.core().stats();
        let ((uplink, _), _) = sim.link_counts(publisher);
        eprintln!(
            "kept {}, forwarded {}, publisher sent {uplink} datagrams; repairs: asked {}, sent {}, expired {}",
            st.repair_copies_kept,
            st.rtp_forwarded,
            st.repairs_asked,
            st.repairs_sent,
            st.repairs_expired
        );
        let rx = sim.reception("low", "pub", secs(2.0), secs(9.5));
        assert_eq!(rx.layers, vec![0], "180p only: {rx:?}");
        // One receiver of video alone: one copy per packet forwarded.
        assert_eq!(st.repair_copies_kept, st.rtp_forwarded);
        assert!(
            st.repair_copies_kept * 3 < uplink,
            "the 360p and 720p layers are not kept: {} of {uplink}",
            st.repair_copies_kept
        );
        assert!(st.repairs_sent > 5, "{st:?}");
        assert_eq!(st.repairs_expired, 0, "every NACK found its packet");
    });
}

/// A forwarded packet is kept for repairs only until every receiver it went
/// to has reported it received (TWCC feedback, every 50 ms from these
/// peers), not for the whole one-second window: on clean links most of the
/// window's packets hold no payload. What a lossy receiver missed is still
/// there when it asks, and only it keeps its packets longer.
#[test]
fn a_packet_every_receiver_reported_received_gives_back_its_payload() {
    with_seed(seed_or(11), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |c| c.audio = false, clean(), clean());
        for name in ["a", "b"] {
            let r = sim.add_peer(name, receive_only, clean(), clean());
            sim.set_max_height(r, None, 720);
        }
        sim.run_until(secs(6.0));
        let (window, held) = sim.core().repair_window_counts();
        let st = sim.core().stats().clone();
        eprintln!(
            "clean: {held} of {window} packets in the window hold a payload ({} bytes); kept {}, released {}",
            sim.core().repair_payload_bytes(),
            st.repair_copies_kept,
            st.repair_copies_released
        );
        assert!(window > 100, "a second of 720p is in the window: {window}");
        assert!(
            held * 5 < window,
            "a fifth of the window at most: {held} of {window}"
        );
        assert!(
            st.repair_copies_released * 10 > st.repair_copies_kept * 9,
            "{st:?}"
        );

        let lossy = sim.add_peer(
            "lossy",
            receive_only,
            clean(),
            LinkConfig::latency(10).with_loss(0.03),
        );
        sim.set_max_height(lossy, None, 720);
        sim.run_until(secs(14.0));
        let st = sim.core().stats();
        eprintln!(
            "repairs: asked {}, sent {}, expired {}, unneeded {}",
            st.repairs_asked, st.repairs_sent, st.repairs_expired, st.repairs_unneeded
        );
        assert!(st.repairs_sent > 20, "{st:?}");
        assert_eq!(st.repairs_expired, 0, "every NACK found its packet");
        let rx = sim.reception("lossy", "pub", secs(8.0), secs(13.0));
        assert!(
            rx.frame_loss() < 0.005,
            "{:.3}% {rx:?}",
            rx.frame_loss() * 100.0
        );
        let (window, held) = sim.core().repair_window_counts();
        eprintln!("with the lossy receiver: {held} of {window} hold a payload");
        assert!(held * 5 < window, "{held} of {window}");
    });
}

/// A receiver whose feedback stops (its uplink lost for two seconds) holds
/// a bounded list of copies awaiting it, and what it is sent meanwhile keeps
/// its payload for the window, as every packet did before confirmations.
/// When its feedback is back, packets are let go early again.
#[test]
fn a_receiver_whose_feedback_stops_keeps_its_packets_and_a_bounded_list() {
    with_seed(seed_or(12), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        sim.add_peer("pub", |c| c.audio = false, clean(), clean());
        let a = sim.add_peer("a", receive_only, clean(), clean());
        let b = sim.add_peer("b", receive_only, clean(), clean());
        for r in [a, b] {
            sim.set_max_height(r, None, 720);
        }
        sim.run_until(secs(3.0));
        let (window, held) = sim.core().repair_window_counts();
        assert!(held * 5 < window, "{held} of {window}");

        sim.set_uplink(b, LinkConfig::latency(10).with_loss(1.0));
        sim.run_until(secs(5.0));
        let (window, held) = sim.core().repair_window_counts();
        let awaiting = sim.core().awaiting_feedback();
        eprintln!("b silent: {held} of {window} hold a payload; {awaiting} copies await feedback");
        assert!(held * 10 > window * 9, "kept for b: {held} of {window}");
        assert!(awaiting <= 256 + 64, "bounded: {awaiting}");

        sim.set_uplink(b, clean());
        sim.run_until(secs(8.0));
        let (window, held) = sim.core().repair_window_counts();
        eprintln!("b back: {held} of {window} hold a payload");
        assert!(held * 5 < window, "{held} of {window}");
        let rx = sim.reception("b", "pub", secs(6.5), secs(7.9));
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
    });
}
