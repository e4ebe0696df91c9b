//! The conference-level detector on synthetic level sequences: one level
//! per 20 ms packet, decisions driven as the core drives them.

use super::*;
use dominant::{DECISION_INTERVAL, LEVEL_PERIOD};

const LOUD: u8 = 25;
const SILENT: u8 = 127;

/// Feed `levels(speaker, packet index)` for every speaker for `packets`
/// packets from `t0`, running the detector's timers; events by time.
fn run(
    speech: &mut Speech<u32>,
    t0: Instant,
    speakers: &[u32],
    packets: u32,
    levels: impl Fn(u32, u32) -> Option<u8>,
) -> Vec<(Duration, SpeechEvent<u32>)> {
    let mut events = Vec::new();
    for i in 0..packets {
        let now = t0 + LEVEL_PERIOD * i;
        if speech.poll_timeout().is_some_and(|t| t <= now) {
            speech.handle_timeout(now);
        }
        while let Some(e) = speech.poll_event() {
            events.push((now - t0, e));
        }
        for &s in speakers {
            if let Some(l) = levels(s, i) {
                speech.handle_level(now, s, l);
            }
        }
    }
    events
}

fn dominants(events: &[(Duration, SpeechEvent<u32>)]) -> Vec<(Duration, Option<u32>)> {
    events
        .iter()
        .filter_map(|(t, e)| match e {
            SpeechEvent::Dominant(d) => Some((*t, *d)),
            SpeechEvent::Order => None,
        })
        .collect()
}

/// Speech with syllables: loud, with a quieter packet every seventh.
fn talk(i: u32) -> u8 {
    if i % 7 == 6 { 50 } else { LOUD }
}

#[test]
fn the_one_who_talks_becomes_dominant_within_a_decision_or_two() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    let ev = run(&mut s, t0, &[1, 2, 3], 100, |k, i| {
        Some(if k == 2 { talk(i) } else { SILENT })
    });
    let d = dominants(&ev);
    assert_eq!(d.first().map(|x| x.1), Some(Some(2)), "{d:?}");
    assert!(d[0].0 <= Duration::from_millis(700), "{d:?}");
    assert_eq!(d.len(), 1, "no flapping: {d:?}");
    assert_eq!(s.order()[0], 2);
    assert!(s.is_speaking(t0 + LEVEL_PERIOD * 100, 2));
    assert!(!s.is_speaking(t0 + LEVEL_PERIOD * 100, 1));
}

#[test]
fn turns_taken_switch_the_dominant_speaker_and_the_order() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    // Speaker 1 for 4 s, then speaker 2 for 4 s, then speaker 3.
    let ev = run(&mut s, t0, &[1, 2, 3], 600, |k, i| {
        let turn = i / 200 + 1;
        Some(if k == turn { talk(i) } else { SILENT })
    });
    let d = dominants(&ev);
    let who: Vec<Option<u32>> = d.iter().map(|x| x.1).collect();
    assert_eq!(who, vec![Some(1), Some(2), Some(3)], "{d:?}");
    for (i, (t, _)) in d.iter().enumerate() {
        let start = Duration::from_secs(4 * i as u64);
        assert!(
            *t >= start && *t - start <= Duration::from_millis(1200),
            "switch {i} at {t:?}: {d:?}"
        );
    }
    assert_eq!(s.order(), &[3, 2, 1]);
    assert_eq!(s.recent().collect::<Vec<_>>(), vec![3, 2, 1]);
}

#[test]
fn a_cough_does_not_take_the_floor_from_a_talker() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    let ev = run(&mut s, t0, &[1, 2], 400, |k, i| {
        Some(match k {
            1 => talk(i),
            // Two loud packets (40 ms) every two seconds.
            _ if i % 100 < 2 && i > 50 => 10,
            _ => SILENT,
        })
    });
    let d = dominants(&ev);
    assert_eq!(
        d.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![Some(1)],
        "{d:?}"
    );
    assert!(s.last_spoke(2).is_none(), "a cough is not speech");
}

#[test]
fn steady_background_noise_does_not_count_as_speech() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    // Speaker 1 sits in a loud room (-35 dBov steady); 2 talks at times.
    let ev = run(&mut s, t0, &[1, 2], 1000, |k, i| {
        Some(match k {
            1 => 35,
            _ if (i / 150) % 2 == 1 => talk(i),
            _ => SILENT,
        })
    });
    assert!(
        dominants(&ev).iter().all(|(_, d)| *d != Some(1)),
        "{:?}",
        dominants(&ev)
    );
    // Only once the floor has caught up: the first levels are the floor.
    assert!(s.last_spoke(1).is_none());
}

#[test]
fn nobody_is_dominant_after_three_seconds_of_silence() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    let ev = run(&mut s, t0, &[1, 2], 500, |k, i| {
        Some(if k == 1 && i < 100 { talk(i) } else { SILENT })
    });
    let d = dominants(&ev);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[1].1, None);
    // Counted from the last decision that heard speech: within a
    // decision interval of the end of the talk.
    let silent_for = d[1].0 - Duration::from_secs(2);
    assert!(
        silent_for >= SILENCE_TIMEOUT - DECISION_INTERVAL
            && silent_for <= SILENCE_TIMEOUT + DECISION_INTERVAL * 2,
        "{d:?}"
    );
}

#[test]
fn audio_that_stops_counts_as_silence() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    // Speaker 1 talks, then its packets stop (muted, DTX); 2 talks next.
    let ev = run(&mut s, t0, &[1, 2], 400, |k, i| match (k, i < 200) {
        (1, true) => Some(talk(i)),
        (1, false) => None,
        (_, true) => Some(SILENT),
        _ => Some(talk(i)),
    });
    let who: Vec<Option<u32>> = dominants(&ev).iter().map(|x| x.1).collect();
    assert_eq!(who, vec![Some(1), Some(2)]);
}

#[test]
fn a_leaving_dominant_speaker_is_replaced() {
    let t0 = Instant::now();
    let mut s = Speech::new(TalkConfig::default());
    run(&mut s, t0, &[1, 2], 100, |k, i| {
        Some(if k == 1 { talk(i) } else { SILENT })
    });
    assert_eq!(s.dominant(), Some(1));
    s.remove(1);
    assert_eq!(s.poll_event(), Some(SpeechEvent::Dominant(None)));
    assert_eq!(s.order(), &[2]);
    let ev = run(&mut s, t0 + Duration::from_secs(2), &[2], 100, |_, i| {
        Some(talk(i))
    });
    assert_eq!(dominants(&ev).first().map(|x| x.1), Some(Some(2)));
}

#[test]
fn higher_sensitivity_hears_quieter_speech() {
    let quiet = |i: u32| if i % 7 == 6 { 70 } else { 55 }; // about -55 dBov
    for (sensitivity, heard) in [(55, false), (90, true)] {
        let t0 = Instant::now();
        let mut s = Speech::new(TalkConfig {
            sensitivity,
            ..TalkConfig::default()
        });
        run(&mut s, t0, &[1, 2], 100, |k, i| {
            Some(if k == 1 { quiet(i) } else { SILENT })
        });
        assert_eq!(
            s.last_spoke(1).is_some(),
            heard,
            "sensitivity {sensitivity}"
        );
    }
}
