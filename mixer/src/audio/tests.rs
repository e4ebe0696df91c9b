use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::codec::{Pcm16, pcm16_payload};

const RATE: u32 = 16_000;
const N: usize = 320; // 20 ms at 16 kHz

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn mixer() -> AudioMixer<Pcm16> {
    AudioMixer::new(
        Pcm16,
        MixConfig {
            sample_rate: RATE,
            jitter: JitterConfig::default(),
            normalise: None,
        },
    )
    .expect("valid config")
}

/// A frame whose samples are `level` plus a ramp, so a sum shows which
/// inputs are in it and a shift would show.
fn frame(level: i16) -> Vec<i16> {
    (0..N).map(|k| level + (k % 7) as i16).collect()
}

/// Runs `ticks` ticks from `t0`, each participant in `senders` sending
/// its frame just before the tick; returns each receiver's decoded frames.
fn run(
    m: &mut AudioMixer<Pcm16>,
    t0: Instant,
    from_tick: u32,
    ticks: u32,
    senders: &[(u64, i16)],
) -> BTreeMap<u64, Vec<Vec<i16>>> {
    let mut got: BTreeMap<u64, Vec<Vec<i16>>> = BTreeMap::new();
    for k in from_tick..from_tick + ticks {
        let at = t0 + ms(20 * u64::from(k));
        for &(id, level) in senders {
            m.handle_packet(at, id, k * FRAME_TICKS, &pcm16_payload(&frame(level)))
                .expect("known participant");
        }
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            if let MixOutput::Audio { to, payload, .. } = o {
                let pcm = payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                got.entry(to).or_default().push(pcm);
            }
        }
    }
    got
}

fn sum(levels: &[i16]) -> Vec<i16> {
    (0..N)
        .map(|k| levels.iter().map(|&l| l + (k % 7) as i16).sum())
        .collect()
}

#[test]
fn each_participant_hears_everyone_but_themselves() {
    let t0 = Instant::now();
    let mut m = mixer();
    for id in [1, 2, 3] {
        m.add(t0, id, true).expect("add");
    }
    let got = run(&mut m, t0, 0, 20, &[(1, 100), (2, 1_000), (3, 10_000)]);
    // After the 60 ms jitter delay every tick carries the others' frames.
    for (id, others) in [(1, [1_000, 10_000]), (2, [100, 10_000]), (3, [100, 1_000])] {
        let frames = &got[&id];
        assert_eq!(frames.len(), 20, "one frame per tick for {id}");
        for f in &frames[4..] {
            assert_eq!(f, &sum(&others), "participant {id}");
        }
    }
}

#[test]
fn a_receive_only_participant_hears_everyone() {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, true).expect("add");
    m.add(t0, 2, true).expect("add");
    m.add(t0, 9, false).expect("add viewer");
    let got = run(&mut m, t0, 0, 10, &[(1, 100), (2, 1_000)]);
    assert_eq!(got[&9][9], sum(&[100, 1_000]));
    assert_eq!(m.stats().packets_refused, 0);
    m.handle_packet(t0, 9, 0, &[0, 0]).expect("known");
    assert_eq!(
        m.stats().packets_refused,
        1,
        "a viewer's audio is not mixed"
    );
}

#[test]
fn a_loud_mix_is_limited_not_clipped_and_keeps_its_shape() {
    let t0 = Instant::now();
    let mut m = mixer();
    for id in [1, 2, 3] {
        m.add(t0, id, true).expect("add");
    }
    let got = run(&mut m, t0, 0, 10, &[(1, 20_000), (2, 20_000), (3, 0)]);
    // 3 hears 40,000 + two ramps: scaled to fit, not flattened at the rail.
    let f = &got[&3][9];
    let raw: Vec<i32> = (0..N).map(|k| 40_000 + 2 * (k % 7) as i32).collect();
    let gain = f32::from(i16::MAX) / 40_012.0;
    for (k, &s) in f.iter().enumerate() {
        let expect = (raw[k] as f32 * gain).round() as i32;
        assert!(
            (i32::from(s) - expect).abs() <= 1,
            "sample {k}: {s} vs {expect}"
        );
    }
    assert!(f.iter().any(|&s| s < i16::MAX), "not clipped flat");
    assert!(m.stats().limited_frames > 0);
    // 1 hears 20,000 + ramp: untouched.
    assert_eq!(got[&1][9], sum(&[20_000, 0]));
}

#[test]
fn an_undecodable_stream_is_dropped_and_the_others_keep_their_mix() {
    let t0 = Instant::now();
    let mut m = mixer();
    for id in [1, 2, 3] {
        m.add(t0, id, true).expect("add");
    }
    let mut dropped = Vec::new();
    let mut heard_by_1 = Vec::new();
    for k in 0..60u32 {
        let at = t0 + ms(20 * u64::from(k));
        m.handle_packet(at, 1, k * FRAME_TICKS, &pcm16_payload(&frame(100)))
            .expect("known");
        m.handle_packet(at, 2, k * FRAME_TICKS, &pcm16_payload(&frame(1_000)))
            .expect("known");
        // Three bytes: no 16-bit sample count.
        m.handle_packet(at, 3, k * FRAME_TICKS, &[1, 2, 3])
            .expect("known");
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            match o {
                MixOutput::Dropped { participant, .. } => dropped.push(participant),
                MixOutput::Audio { to: 1, payload, .. } => heard_by_1.push(payload),
                MixOutput::Audio { .. } | MixOutput::Recorded { .. } => {}
            }
        }
    }
    assert_eq!(dropped, vec![3], "dropped once");
    assert_eq!(m.stats().decode_errors, u64::from(MAX_BAD_FRAMES));
    let last: Vec<i16> = heard_by_1[59]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(last, sum(&[1_000]), "1 still hears 2, and nothing of 3");
    assert!(
        m.stats().packets_refused > 0,
        "3's later packets are refused"
    );
}

#[test]
fn joining_and_leaving_change_the_mix_within_a_few_ticks() {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, true).expect("add");
    m.add(t0, 2, true).expect("add");
    let before = run(&mut m, t0, 0, 10, &[(1, 100), (2, 1_000)]);
    assert_eq!(before[&1][9], sum(&[1_000]));
    m.add(t0 + ms(200), 3, true).expect("add");
    let joined = run(&mut m, t0, 10, 10, &[(1, 100), (2, 1_000), (3, 5_000)]);
    // Its first packet plays after the jitter delay: 60 ms, three ticks.
    assert_eq!(joined[&1][4], sum(&[1_000, 5_000]), "3 is heard");
    assert_eq!(joined[&3][4], sum(&[100, 1_000]), "3 hears the others");
    m.remove(2).expect("remove");
    let left = run(&mut m, t0, 20, 3, &[(1, 100), (3, 5_000)]);
    assert_eq!(left[&1][0], sum(&[5_000]), "2 is gone at the next tick");
    assert!(!left.contains_key(&2));
}

#[test]
fn a_stall_skips_ahead_instead_of_bunching_frames() {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, true).expect("add");
    m.handle_timeout(t0);
    while m.poll_output().is_some() {}
    // One second late: at most MAX_CATCH_UP frames, then on time again.
    m.handle_timeout(t0 + ms(1_000));
    let mut n = 0;
    while m.poll_output().is_some() {
        n += 1;
    }
    assert_eq!(n, MAX_CATCH_UP as usize);
    // Due at 20 ms, 49 frames behind at 1,000 ms: 45 skipped, 5 mixed.
    assert_eq!(m.stats().ticks_skipped, 45);
    assert_eq!(m.poll_timeout(), Some(t0 + ms(1_020)));
}

#[test]
fn timestamps_advance_one_frame_per_tick() {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, false).expect("add");
    m.handle_timeout(t0 + ms(60));
    let ts: Vec<u32> = std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            MixOutput::Audio { timestamp, .. } => Some(timestamp),
            MixOutput::Dropped { .. } | MixOutput::Recorded { .. } => None,
        })
        .collect();
    assert_eq!(ts, vec![0, FRAME_TICKS, 2 * FRAME_TICKS, 3 * FRAME_TICKS]);
}

#[test]
fn bad_rates_and_unknown_participants_are_refused_precisely() {
    assert_eq!(
        AudioMixer::new(
            Pcm16,
            MixConfig {
                sample_rate: 44_100,
                ..MixConfig::default()
            }
        )
        .err(),
        Some(MixerError::SampleRate(44_100))
    );
    let t0 = Instant::now();
    let mut m = mixer();
    assert_eq!(
        m.handle_packet(t0, 7, 0, &[]),
        Err(MixerError::UnknownParticipant(7))
    );
    m.add(t0, 7, true).expect("add");
    assert_eq!(m.add(t0, 7, true), Err(MixerError::DuplicateParticipant(7)));
    assert_eq!(m.remove(8), Err(MixerError::UnknownParticipant(8)));
    m.remove(7).expect("remove");
    assert_eq!(m.poll_timeout(), None, "nobody left: no ticks");
}

proptest! {
    /// Whatever the inputs (within range, so the limiter stays out), each
    /// receiver's frame is exactly the sum of the others' frames.
    #[test]
    fn every_mix_is_the_sum_of_the_others(
        levels in prop::collection::vec(-8_000i16..8_000, 1..5),
    ) {
        let t0 = Instant::now();
        let mut m = mixer();
        let senders: Vec<(u64, i16)> =
            levels.iter().enumerate().map(|(i, &l)| (i as u64, l)).collect();
        for &(id, _) in &senders {
            m.add(t0, id, true).expect("add");
        }
        let got = run(&mut m, t0, 0, 6, &senders);
        for &(id, _) in &senders {
            let others: Vec<i16> =
                senders.iter().filter(|s| s.0 != id).map(|s| s.1).collect();
            prop_assert_eq!(&got[&id][5], &sum(&others));
        }
    }
}

/// A sine frame whose RMS is `dbfs` below full scale.
fn sine_at(dbfs: f64, k: u32) -> Vec<i16> {
    let amp = f64::from(i16::MAX) * 10f64.powf(dbfs / 20.0) * std::f64::consts::SQRT_2;
    (0..N)
        .map(|i| {
            let t = (k as usize * N + i) as f64 / f64::from(RATE);
            (amp * (2.0 * std::f64::consts::PI * 300.0 * t).sin()).round() as i16
        })
        .collect()
}

fn level_dbfs(pcm: &[i16]) -> f64 {
    let p = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    10.0 * (p / f64::from(i16::MAX).powi(2)).log10()
}

/// Runs 3 s of `senders` (id, level) with normalisation on; returns the
/// level each receiver hears in the last frame.
fn normalised(senders: &[(u64, f64)], receivers: &[u64]) -> BTreeMap<u64, f64> {
    let t0 = Instant::now();
    let mut m = AudioMixer::new(
        Pcm16,
        MixConfig {
            sample_rate: RATE,
            jitter: JitterConfig::default(),
            normalise: Some(Normalise::default()),
        },
    )
    .expect("mixer");
    for &(id, _) in senders {
        m.add(t0, id, true).expect("add");
    }
    for &id in receivers {
        m.add(t0, id, false).expect("add");
    }
    let mut heard = BTreeMap::new();
    for k in 0..150u32 {
        let at = t0 + ms(20 * u64::from(k));
        for &(id, level) in senders {
            m.handle_packet(at, id, k * FRAME_TICKS, &pcm16_payload(&sine_at(level, k)))
                .expect("known");
        }
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            if let MixOutput::Audio { to, payload, .. } = o {
                let pcm: Vec<i16> = payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                heard.insert(to, level_dbfs(&pcm));
            }
        }
    }
    heard
}

#[test]
fn a_quiet_and_a_loud_talker_are_brought_to_one_level() {
    // 1 speaks at -30 dBFS, 2 at -14; each hears only the other.
    let heard = normalised(&[(1, -30.0), (2, -14.0)], &[]);
    assert!(
        (heard[&2] - -20.0).abs() < 1.0,
        "2 hears 1 at {:.1} dBFS",
        heard[&2]
    );
    assert!(
        (heard[&1] - -20.0).abs() < 1.0,
        "1 hears 2 at {:.1} dBFS",
        heard[&1]
    );
}

#[test]
fn normalisation_stays_within_its_bounds_and_leaves_noise_alone() {
    // -45 dBFS wants +25 dB: raised by the 12 dB maximum only.
    let heard = normalised(&[(1, -45.0)], &[9]);
    assert!((heard[&9] - -33.0).abs() < 1.0, "{:.1} dBFS", heard[&9]);
    // -60 dBFS is below the speech threshold: never raised.
    let heard = normalised(&[(1, -60.0)], &[9]);
    assert!((heard[&9] - -60.0).abs() < 0.5, "{:.1} dBFS", heard[&9]);
}

/// Sends `packets` of `per_packet` samples each (a running sample count
/// as the signal, so order and gaps show) from participant 1 to listener
/// 9, one packet as soon as the previous one's samples are due; returns
/// what 9 heard after the jitter delay.
fn continuous(per_packet: usize, ticks: u32) -> Vec<i16> {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, true).expect("add");
    m.add(t0, 9, false).expect("add");
    let mut sent = 0usize;
    let mut heard = Vec::new();
    for k in 0..ticks {
        let at = t0 + ms(20 * u64::from(k));
        // Everything due by the end of this tick.
        while sent < (k as usize + 1) * N {
            let pcm: Vec<i16> = (sent..sent + per_packet)
                .map(|i| (i % 30_000) as i16)
                .collect();
            let ts = (sent as u64 * 48_000 / u64::from(RATE)) as u32;
            m.handle_packet(at, 1, ts, &pcm16_payload(&pcm))
                .expect("known");
            sent += per_packet;
        }
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            if let MixOutput::Audio { to: 9, payload, .. } = o {
                heard.extend(
                    payload
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
            }
        }
    }
    heard
}

#[test]
fn packets_of_10_40_and_60_ms_play_as_one_unbroken_stream() {
    for ms_per_packet in [10, 20, 40, 60] {
        let per_packet = N * ms_per_packet / 20;
        let heard = continuous(per_packet, 50);
        // Skip the silence before playout starts; from there every sample
        // follows the one before.
        let start = heard.iter().position(|&s| s != 0).unwrap_or(heard.len());
        let played = &heard[start..];
        assert!(
            played.len() >= 40 * N,
            "{ms_per_packet} ms: only {} samples played",
            played.len()
        );
        for w in played.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "{ms_per_packet} ms packets: a gap or a repeat in what was heard"
            );
        }
    }
}

#[test]
fn listeners_share_one_encode_and_hear_the_whole_mix() {
    let t0 = Instant::now();
    let mut m = mixer();
    // Two talkers, five who never send.
    m.add(t0, 1, true).expect("add");
    m.add(t0, 2, true).expect("add");
    for id in 10..15 {
        m.add(t0, id, true).expect("add");
    }
    let ticks = LISTEN_AFTER + 20;
    let before = m.stats();
    let got = run(&mut m, t0, 0, ticks, &[(1, 100), (2, 1000)]);
    let last = |id: u64| got[&id].last().cloned().expect("frames");
    // Talkers still hear each other only; listeners everyone.
    assert_eq!(last(1), sum(&[1000]));
    assert_eq!(last(2), sum(&[100]));
    for id in 10..15 {
        assert_eq!(last(id), sum(&[100, 1000]), "listener {id}");
    }
    let s = m.stats();
    // Once they count as listeners: three encodes a tick (two talkers and
    // the shared one) for seven receivers.
    let shared_ticks = u64::from(ticks - LISTEN_AFTER - 1);
    assert!(
        s.frames_shared - before.frames_shared >= 5 * (shared_ticks - 4),
        "{s:?}"
    );
    assert!(
        s.frames_encoded < 7 * u64::from(ticks) - 4 * (shared_ticks - 4),
        "fewer encodes than receivers: {s:?}"
    );
}

#[test]
fn a_listener_who_starts_talking_gets_its_own_mix_at_once() {
    let t0 = Instant::now();
    let mut m = mixer();
    for id in [1, 2, 3] {
        m.add(t0, id, true).expect("add");
    }
    // 3 listens for a while, then speaks.
    run(&mut m, t0, 0, LISTEN_AFTER + 10, &[(1, 100), (2, 1000)]);
    let got = run(
        &mut m,
        t0,
        LISTEN_AFTER + 10,
        10,
        &[(1, 100), (2, 1000), (3, 5000)],
    );
    // Before, it heard the whole sum, the two talkers; from its first
    // frame in the sum it hears them less itself: the same. Never itself.
    assert!(
        got[&3].iter().all(|f| *f == sum(&[100, 1000])),
        "3 never hears itself: {:?}",
        got[&3].iter().map(|f| f[0]).collect::<Vec<_>>()
    );
    assert_eq!(got[&1].last().cloned().expect("frames"), sum(&[1000, 5000]));
}

#[test]
fn a_recorded_mix_is_everyone_and_costs_no_encode_beside_listeners() {
    let t0 = Instant::now();
    let mut m = mixer();
    m.add(t0, 1, true).expect("add");
    m.add(t0, 2, true).expect("add");
    m.set_recorded(true);
    // Two talkers and no listener: the recorded mix is encoded for itself.
    let recorded = |m: &mut AudioMixer<Pcm16>, from: u32, ticks: u32, who: &[(u64, i16)]| {
        let mut frames = Vec::new();
        for k in from..from + ticks {
            let at = t0 + ms(20 * u64::from(k));
            for &(id, level) in who {
                m.handle_packet(at, id, k * FRAME_TICKS, &pcm16_payload(&frame(level)))
                    .expect("known participant");
            }
            m.handle_timeout(at);
            while let Some(o) = m.poll_output() {
                if let MixOutput::Recorded { timestamp, payload } = o {
                    let pcm: Vec<i16> = payload
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    frames.push((timestamp, pcm));
                }
            }
        }
        frames
    };
    let before = m.stats().frames_encoded;
    let got = recorded(&mut m, 0, 20, &[(1, 100), (2, 1000)]);
    assert_eq!(got.len(), 20, "one frame a tick");
    assert!(
        got.windows(2)
            .all(|w| w[1].0 == w[0].0.wrapping_add(FRAME_TICKS))
    );
    assert_eq!(got.last().map(|f| f.1.clone()), Some(sum(&[100, 1000])));
    assert_eq!(
        m.stats().frames_encoded - before,
        3 * 20,
        "two talkers and the recording"
    );
    // With a listener, the recording takes the listeners' encode.
    m.add(t0, 10, true).expect("add");
    let _ = recorded(&mut m, 20, LISTEN_AFTER + 2, &[(1, 100), (2, 1000)]);
    let before = m.stats().frames_encoded;
    let got = recorded(&mut m, 22 + LISTEN_AFTER, 10, &[(1, 100), (2, 1000)]);
    assert_eq!(got.len(), 10);
    assert_eq!(
        m.stats().frames_encoded - before,
        3 * 10,
        "still three encodes a tick"
    );
    m.set_recorded(false);
    assert!(recorded(&mut m, 32 + LISTEN_AFTER, 5, &[(1, 100)]).is_empty());
}
