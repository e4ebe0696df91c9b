//! Meetings larger than a receiver's audio slots: speech decides who is
//! heard. Twenty participants, each receiving three audio slots, take
//! turns talking (the last to join first); every listener must hear each
//! talker within 500 ms, slots must hold still during a talk, and the
//! silent must cost nothing. Once on one bridge, once split across two.
//! Fixed seeds (override with TERN_SIM_SEED).

use std::time::Duration;

use tern_peer::Talk;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

const PEOPLE: usize = 20;
const SLOTS: usize = 3;
/// Who talks in each turn: the last to join first.
const TALKERS: [usize; 8] = [19, 3, 11, 0, 7, 15, 5, 12];
const FIRST_TURN: f64 = 4.0;
const TURN: f64 = 3.0;
const TALK: f64 = 2.5;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

fn name(i: usize) -> String {
    format!("p{i:02}")
}

fn turn(i: usize) -> (Duration, Duration) {
    let start = secs(FIRST_TURN + TURN * i as f64);
    (start, start + secs(TALK))
}

fn audio_slot_switches(sim: &Sim, bridges: usize) -> u64 {
    (0..bridges)
        .map(|b| sim.core_of(b).stats().audio_slot_switches)
        .sum()
}

fn run_turns(seed: u64, bridges: usize) {
    let mut cfg = SimConfig::new(seed);
    cfg.bridges = bridges;
    let mut sim = Sim::new(cfg);
    for i in 0..PEOPLE {
        let turns: Vec<(Duration, Duration)> = TALKERS
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == i)
            .map(|(k, _)| turn(k))
            .collect();
        let b = i * bridges / PEOPLE;
        sim.add_peer_on(
            b,
            &name(i),
            move |c| {
                c.video = vec![];
                c.video_slots = 0;
                c.audio_slots = SLOTS;
                c.talk = Some(Talk { turns, quiet: 127 });
            },
            clean(),
            clean(),
        );
    }
    let tags: Vec<u32> = (0..PEOPLE)
        .map(|i| sim.peer(&name(i)).peer.audio_tag())
        .collect();
    let mut switches_during_talk = Vec::new();
    for k in 0..TALKERS.len() {
        let (start, end) = turn(k);
        sim.run_until(start + secs(1.0));
        let settled = audio_slot_switches(&sim, bridges);
        sim.run_until(end);
        switches_during_talk.push(audio_slot_switches(&sim, bridges) - settled);
    }
    sim.run_until(turn(TALKERS.len() - 1).1 + secs(0.5));

    for (k, &talker) in TALKERS.iter().enumerate() {
        let (start, end) = turn(k);
        let (start_at, end_at) = (sim.at(start), sim.at(end));
        for listener in (0..PEOPLE).filter(|&l| l != talker) {
            let st = sim.state(&name(listener));
            let speech: Vec<(&String, &tern_peer::Received)> = st
                .received
                .iter()
                .flat_map(|(mid, rs)| rs.iter().map(move |r| (mid, r)))
                .filter(|(_, r)| r.at >= start_at && r.at < end_at)
                .collect();
            let from_talker: Vec<_> = speech
                .iter()
                .filter(|(_, r)| r.tag == Some(tags[talker]) && r.audio_level != Some(-127))
                .collect();
            let first = from_talker
                .iter()
                .map(|(_, r)| r.at)
                .min()
                .unwrap_or_else(|| {
                    panic!(
                        "{} never heard {} in turn {k}",
                        name(listener),
                        name(talker)
                    )
                });
            let delay = first - start_at;
            assert!(
                delay <= secs(0.5),
                "{} heard {} {delay:?} after turn {k} started",
                name(listener),
                name(talker)
            );
            let mids: std::collections::BTreeSet<&String> =
                from_talker.iter().map(|(m, _)| *m).collect();
            assert_eq!(
                mids.len(),
                1,
                "{} got {}'s talk on one slot, not {mids:?}",
                name(listener),
                name(talker)
            );
            // The previous talker's last silent packets may trail in
            // right after the turn starts; after that only the talker.
            let others: Vec<_> = speech
                .iter()
                .filter(|(_, r)| r.at >= start_at + secs(0.3) && r.tag != Some(tags[talker]))
                .collect();
            assert!(
                others.is_empty(),
                "{} received {} packets from silent participants in turn {k}",
                name(listener),
                others.len()
            );
        }
    }
    assert!(
        switches_during_talk.iter().all(|&n| n == 0),
        "audio slots changed during talks: {switches_during_talk:?}"
    );
    let suppressed: u64 = (0..bridges)
        .map(|b| sim.core_of(b).stats().silence_suppressed)
        .sum();
    assert!(suppressed > 0, "silence was suppressed");
}

#[test]
fn listeners_hear_each_talker_within_half_a_second_with_three_slots_for_twenty() {
    with_seed(seed_or(101), |seed| run_turns(seed, 1));
}

#[test]
fn talkers_on_another_bridge_take_slots_as_fast() {
    with_seed(seed_or(103), |seed| run_turns(seed, 2));
}

/// Video slots a participant's client shows now: source ids.
fn shown_video(sim: &Sim, who: &str) -> std::collections::BTreeSet<String> {
    sim.state(who)
        .slots
        .values()
        .flatten()
        .filter(|s| s.ends_with("/camera"))
        .cloned()
        .collect()
}

/// How long after `start` (since the meeting began) `who` first received
/// a keyframe of `publisher`'s video, on whichever slot (by the
/// publisher's tag).
fn video_seen_after(sim: &Sim, who: &str, publisher: &str, start: Duration) -> Option<Duration> {
    let tag = sim.peer(publisher).peer.audio_tag();
    let start_at = sim.at(start);
    sim.state(who)
        .received
        .values()
        .flatten()
        .filter(|p| p.tag == Some(tag) && p.keyframe && p.audio_level.is_none())
        .map(|p| p.at)
        .filter(|&at| at >= start_at)
        .min()
        .map(|at| at - start_at)
}

/// The cameras of the `n` most recent of `talkers` (in talk order) other
/// than receiver `r`: what its last-N should show.
fn recent_cameras(talkers: &[usize], r: usize, n: usize) -> std::collections::BTreeSet<String> {
    talkers
        .iter()
        .rev()
        .filter(|&&t| t != r)
        .take(n)
        .map(|t| format!("p{t}/camera"))
        .collect()
}

#[test]
fn fifty_with_last_n_six_show_the_six_most_recent_speakers_and_the_stage() {
    with_seed(seed_or(107), |seed| {
        const N: usize = 50;
        const LAST_N: usize = 6;
        // Eight talks of 1.5 s from 3 s on, the last joiner first.
        let talkers = [49, 10, 20, 30, 40, 5, 15, 25];
        let talk = |k: usize| {
            let s = secs(3.0 + 1.5 * k as f64);
            (s, s + secs(1.4))
        };
        let stage = "p33/camera";
        let mut sim = Sim::new(SimConfig::new(seed));
        for i in 0..N {
            let turns: Vec<(Duration, Duration)> = talkers
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == i)
                .map(|(k, _)| talk(k))
                .collect();
            let p = sim.add_peer(
                &format!("p{i}"),
                move |c| {
                    c.audio_slots = 3;
                    c.video_slots = 9;
                    c.talk = Some(Talk { turns, quiet: 127 });
                },
                clean(),
                clean(),
            );
            // Thumbnails at 180p; p0 puts p33 on stage at up to 720p.
            sim.set_max_height(p, None, 180);
            let on_stage: &[&str] = if i == 0 { &[stage] } else { &[] };
            sim.set_view(p, LAST_N as i32, on_stage, 720);
        }
        for (k, &t) in talkers.iter().enumerate() {
            let (start, end) = talk(k);
            sim.run_until(end);
            // Everyone (but the talker) gets the talker's video within 1 s:
            // a keyframe of it, on whichever slot.
            for r in (0..N).filter(|&r| r != t) {
                let who = format!("p{r}");
                let seen = video_seen_after(&sim, &who, &format!("p{t}"), start);
                assert!(
                    seen.is_some_and(|d| d <= secs(1.0)),
                    "{who} got p{t}'s video {seen:?} after turn {k} started"
                );
            }
        }
        sim.run_until(talk(talkers.len() - 1).1 + secs(1.0));
        // The six most recent speakers (p0 has a stage: below).
        for r in 1..N {
            let who = format!("p{r}");
            let want = recent_cameras(&talkers, r, LAST_N);
            assert_eq!(shown_video(&sim, &who), want, "{who}'s video slots");
        }
        // p0: the stage plus the five most recent speakers.
        let shown = shown_video(&sim, "p0");
        assert!(shown.contains(stage), "{shown:?}");
        assert_eq!(shown.len(), LAST_N, "{shown:?}");
        let end = talk(talkers.len() - 1).1 + secs(1.0);
        let rx = sim.reception("p0", "p33", end - secs(2.0), end);
        assert!(rx.frame_loss() < 0.01, "{rx:?}");
        assert_eq!(rx.layers, vec![2], "the stage arrives at its high layer");
        let thumb = sim.reception("p1", "p25", end - secs(2.0), end);
        assert_eq!(thumb.layers, vec![0], "thumbnails stay small");
        // Sender constraints follow: a camera nobody shows is paused, a
        // thumbnail sends its small layer, the stage its large one.
        let told = |who: &str| sim.state(who).sender_max_height;
        assert_eq!(told("p45"), Some(0), "p45: never spoke, shown by nobody");
        assert_eq!(told("p25"), Some(180), "p25: a thumbnail everywhere");
        // (`None`: never constrained, every layer flows.)
        assert!(
            told("p33").is_none_or(|h| h >= 720),
            "p33: on p0's stage: {:?}",
            told("p33")
        );
    });
}

#[test]
fn join_order_alone_never_displaces_a_shown_participant_but_speech_does() {
    with_seed(seed_or(109), |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        let mut sim = Sim::new(cfg);
        // A viewer on bridge 0 with one video slot; a camera on bridge 1
        // (no microphone: never heard) is there first and takes it.
        sim.add_peer_on(
            0,
            "viewer",
            |c| {
                c.video = vec![];
                c.audio = false;
                c.video_slots = 1;
                c.audio_slots = 0;
            },
            clean(),
            clean(),
        );
        sim.add_peer_on(1, "remote", |c| c.audio = false, clean(), clean());
        sim.run_until(secs(3.0));
        // A local participant joins later with a microphone: heard (its
        // room noise), so it ranks first, but takes nothing from the
        // holder...
        sim.add_peer_on(
            0,
            "local",
            |c| {
                // From 6 s to 8 s of the meeting (turns count from its own
                // start, at 3 s).
                c.talk = Some(Talk {
                    turns: vec![(secs(3.0), secs(5.0))],
                    quiet: 60,
                });
            },
            clean(),
            clean(),
        );
        sim.run_until(secs(6.0));
        let shown = |sim: &Sim| {
            sim.state("viewer")
                .slots
                .values()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&sim),
            vec!["remote/camera".to_string()],
            "join order displaced nobody"
        );
        // ...until it speaks.
        sim.run_until(secs(7.0));
        assert_eq!(shown(&sim), vec!["local/camera".to_string()], "speech did");
    });
}

/// Found with a WHEP viewer (one video slot, `?source=` on stage) in
/// tests/browser_whip.rs: the slot's holder was talking, so it was
/// protected, and the on-stage source never got shown. On stage means shown.
#[test]
fn an_on_stage_source_takes_the_only_slot_from_a_holder_who_is_talking() {
    with_seed(seed_or(113), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        let viewer = sim.add_peer(
            "viewer",
            |c| {
                c.video = vec![];
                c.audio = false;
                c.video_slots = 1;
                c.audio_slots = 0;
            },
            clean(),
            clean(),
        );
        // The talker talks the whole time and holds the only slot.
        sim.add_peer(
            "talker",
            |c| {
                c.talk = Some(Talk {
                    turns: vec![(secs(0.5), secs(30.0))],
                    quiet: 127,
                });
            },
            clean(),
            clean(),
        );
        sim.add_peer("quiet", |c| c.audio = false, clean(), clean());
        sim.run_until(secs(4.0));
        let shown = |sim: &Sim| {
            sim.state("viewer")
                .slots
                .values()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(&sim), vec!["talker/camera".to_string()]);
        // The viewer puts the silent one on stage: it is shown at once,
        // talker or not.
        sim.set_view(viewer, -1, &["quiet/camera"], 720);
        sim.run_until(secs(4.5));
        assert_eq!(
            shown(&sim),
            vec!["quiet/camera".to_string()],
            "the on-stage source is shown"
        );
        // And it stays while the talker goes on talking.
        sim.run_until(secs(8.0));
        assert_eq!(shown(&sim), vec!["quiet/camera".to_string()]);
        let got = sim.state("viewer").received_for("quiet/camera").len();
        assert!(got > 50, "the viewer got {got} packets of quiet/camera");
    });
}

mod slot_invariants {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const PEOPLE: usize = 8;
    const A_SLOTS: usize = 2;
    const V_SLOTS: usize = 3;

    /// Each participant's talks: (start, length) in tenths of a second.
    fn schedules() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
        prop::collection::vec(prop::collection::vec((20u8..100, 3u8..25), 0..4), PEOPLE)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

        /// Whatever the talking: no receiver has one source on two slots,
        /// more video than its last-N, or slots that change more often
        /// than the 300 ms decisions allow.
        #[test]
        fn slots_never_duplicate_never_exceed_and_change_at_a_bounded_rate(
            talks in schedules(),
            last_n in 1i32..=3,
            seed in 0u64..1000,
        ) {
            let mut sim = Sim::new(SimConfig::new(seed));
            for (i, t) in talks.iter().enumerate() {
                let turns: Vec<(Duration, Duration)> = t
                    .iter()
                    .map(|&(s, l)| {
                        let s = Duration::from_millis(u64::from(s) * 100);
                        (s, s + Duration::from_millis(u64::from(l) * 100))
                    })
                    .collect();
                let p = sim.add_peer(
                    &name(i),
                    move |c| {
                        c.audio_slots = A_SLOTS;
                        c.video_slots = V_SLOTS;
                        c.video = vec![tern_peer::synth::LayerSpec::new("q", 320, 180, 150_000)];
                        c.talk = Some(Talk { turns, quiet: 127 });
                    },
                    clean(),
                    clean(),
                );
                sim.set_view(p, last_n, &[], 180);
            }
            let mut last: Vec<BTreeMap<String, Option<String>>> = vec![BTreeMap::new(); PEOPLE];
            let mut changes = [0usize; PEOPLE];
            let step = Duration::from_millis(100);
            let mut t = Duration::from_secs(2);
            sim.run_until(t);
            for (i, l) in last.iter_mut().enumerate() {
                *l = sim.state(&name(i)).slots.clone().into_iter().collect();
            }
            while t < Duration::from_secs(12) {
                t += step;
                sim.run_until(t);
                for (i, prev) in last.iter_mut().enumerate() {
                    let now: BTreeMap<String, Option<String>> =
                        sim.state(&name(i)).slots.clone().into_iter().collect();
                    let shown: Vec<&String> = now.values().flatten().collect();
                    let mut unique = shown.clone();
                    unique.sort();
                    unique.dedup();
                    prop_assert_eq!(unique.len(), shown.len(), "{} has a source twice: {:?}", name(i), now);
                    let video = shown.iter().filter(|s| s.ends_with("/camera")).count();
                    let audio = shown.len() - video;
                    prop_assert!(video <= last_n as usize && audio <= A_SLOTS,
                        "{}: {} video (last_n {}), {} audio", name(i), video, last_n, audio);
                    changes[i] += now.iter().filter(|(m, s)| prev.get(*m) != Some(*s)).count();
                    *prev = now;
                }
            }
            // Slots change hands only when someone starts talking: at most
            // an audio and a video slot per talk (talks that overlap or
            // touch count once, so this over-counts), plus the last-N
            // limit settling in at the start.
            let started = talks.iter().map(Vec::len).sum::<usize>();
            let bound = 2 * started + A_SLOTS + V_SLOTS;
            for (i, c) in changes.iter().enumerate() {
                prop_assert!(*c <= bound, "{}: {} slot changes in 10 s", name(i), c);
            }
        }
    }
}

/// `dominant_speaker` and `speaking` go out on a change only: someone who
/// joins while a talk goes on must still be told at once who dominates and
/// who speaks, not at the next change.
#[test]
fn a_late_joiner_is_told_the_dominant_speaker_and_who_speaks() {
    with_seed(seed_or(107), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        let audio_only = |talk: Option<Talk>| {
            move |c: &mut tern_peer::PeerConfig| {
                c.video = vec![];
                c.video_slots = 0;
                c.audio_slots = SLOTS;
                c.talk = talk;
            }
        };
        let talks = Talk {
            turns: vec![(secs(0.5), secs(60.0))],
            quiet: 127,
        };
        let silent = Talk {
            turns: vec![],
            quiet: 127,
        };
        sim.add_peer("talker", audio_only(Some(talks)), clean(), clean());
        sim.add_peer("early", audio_only(Some(silent.clone())), clean(), clean());
        sim.run_until(secs(4.0));
        let talker = sim
            .state("talker")
            .participant_id
            .clone()
            .expect("talker joined");
        let early = sim.state("early");
        assert_eq!(
            early.dominant.last().map(|(_, d)| d.clone()),
            Some(Some(talker.clone())),
            "the early listener was told"
        );
        let told_early = early.dominant.len();

        sim.add_peer("late", audio_only(Some(silent)), clean(), clean());
        let joined_at = sim.now();
        sim.run_until(secs(4.5));
        let late = sim.state("late");
        let (at, dominant) = late.dominant.first().expect("the late joiner was told");
        assert_eq!(dominant.as_deref(), Some(talker.as_str()));
        assert!(
            *at - joined_at <= secs(0.2),
            "told {:?} after joining",
            *at - joined_at
        );
        assert_eq!(late.recent_speakers, vec![talker.clone()]);
        assert!(
            late.speaking.iter().any(|(p, _)| *p == talker),
            "the late joiner was told who speaks: {:?}",
            late.speaking
        );
        assert_eq!(
            sim.state("early").dominant.len(),
            told_early,
            "nothing changed for the others: nothing new told"
        );
    });
}

/// One audio slot, and the talk passes from one participant to another:
/// while the first still counts as speaking (the talk interval) the slot is
/// theirs, but once that runs out the new talker must get it, although the
/// speech order does not change again.
#[test]
fn a_single_audio_slot_passes_to_the_new_talker_once_the_old_one_is_done() {
    with_seed(seed_or(109), |seed| {
        let mut sim = Sim::new(SimConfig::new(seed));
        let audio_only = |slots: usize, turns: Vec<(Duration, Duration)>| {
            move |c: &mut tern_peer::PeerConfig| {
                c.video = vec![];
                c.video_slots = 0;
                c.audio_slots = slots;
                c.talk = Some(Talk { turns, quiet: 127 });
            }
        };
        sim.add_peer("listener", audio_only(1, vec![]), clean(), clean());
        sim.add_peer(
            "first",
            audio_only(1, vec![(secs(0.5), secs(4.0))]),
            clean(),
            clean(),
        );
        sim.add_peer(
            "second",
            audio_only(1, vec![(secs(4.3), secs(30.0))]),
            clean(),
            clean(),
        );
        let second_tag = sim.peer("second").peer.audio_tag();
        sim.run_until(secs(10.0));
        let st = sim.state("listener");
        let heard = st
            .received
            .values()
            .flatten()
            .filter(|r| r.tag == Some(second_tag) && r.audio_level != Some(-127))
            .map(|r| sim.since_start(r.at))
            .min();
        // The first talker's interval (2 s) ends about 6 s in; a decision
        // or two later the slot is the second's.
        assert!(
            heard.is_some_and(|t| t <= secs(7.0)),
            "the listener first heard the second talker at {heard:?}"
        );
    });
}

#[test]
fn last_n_follows_speakers_on_either_bridge() {
    with_seed(seed_or(113), |seed| {
        const N: usize = 16;
        const LAST_N: usize = 4;
        // Talkers alternate between the two bridges (0..8 on bridge 0).
        let talkers = [15, 2, 9, 4, 12, 0];
        let talk = |k: usize| {
            let s = secs(3.0 + 1.5 * k as f64);
            (s, s + secs(1.4))
        };
        let mut cfg = SimConfig::new(seed);
        cfg.bridges = 2;
        let mut sim = Sim::new(cfg);
        for i in 0..N {
            let turns: Vec<(Duration, Duration)> = talkers
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == i)
                .map(|(k, _)| talk(k))
                .collect();
            let p = sim.add_peer_on(
                i * 2 / N,
                &format!("p{i}"),
                move |c| {
                    c.audio_slots = 2;
                    c.video_slots = 6;
                    c.talk = Some(Talk { turns, quiet: 127 });
                },
                clean(),
                clean(),
            );
            sim.set_max_height(p, None, 180);
            sim.set_view(p, LAST_N as i32, &[], 720);
        }
        for (k, &t) in talkers.iter().enumerate() {
            let (start, end) = talk(k);
            sim.run_until(end);
            for r in (0..N).filter(|&r| r != t) {
                let who = format!("p{r}");
                let seen = video_seen_after(&sim, &who, &format!("p{t}"), start);
                assert!(
                    seen.is_some_and(|d| d <= secs(1.0)),
                    "{who} (bridge {}) got p{t}'s video {seen:?} after turn {k} started",
                    r * 2 / N
                );
            }
        }
        sim.run_until(talk(talkers.len() - 1).1 + secs(1.0));
        for r in 0..N {
            let who = format!("p{r}");
            let want = recent_cameras(&talkers, r, LAST_N);
            assert_eq!(shown_video(&sim, &who), want, "{who}'s video slots");
        }
    });
}
