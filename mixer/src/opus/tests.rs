use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::audio::{AudioMixer, MixConfig, MixOutput};
use crate::jitter::JitterConfig;
use crate::{FRAME_TICKS, frame_samples};

const RATE: u32 = 16_000;
const AMP: f64 = 6_000.0;

fn tone(freq: f64, frame: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|k| {
            let t = (frame as usize * n + k) as f64 / f64::from(RATE);
            (AMP * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

/// Energy of `x` at `freq` (Goertzel), relative to the signal's length.
fn power_at(x: &[f64], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// Three participants each send a tone through Opus; returns what each
/// receiver's mix decodes to, over `frames` ticks.
fn mix_tones(frames: u32, tones: &[(u64, f64)]) -> BTreeMap<u64, Vec<f64>> {
    let n = frame_samples(RATE);
    let t0 = Instant::now();
    let codec = Opus::default();
    let mut m = AudioMixer::new(
        codec,
        MixConfig {
            sample_rate: RATE,
            jitter: JitterConfig::default(),
            normalise: None,
        },
    )
    .expect("mixer");
    let mut senders = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    for &(id, _) in tones {
        m.add(t0, id, true).expect("add");
        senders.insert(id, codec.encoder(RATE).expect("encoder"));
        receivers.insert(id, codec.decoder(RATE).expect("decoder"));
    }
    let mut heard: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut payload = Vec::new();
    let mut pcm = vec![0i16; n];
    for k in 0..frames {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        for &(id, freq) in tones {
            let enc = senders.get_mut(&id).expect("sender");
            enc.encode(&tone(freq, k, n), &mut payload).expect("encode");
            m.handle_packet(at, id, k * FRAME_TICKS, &payload)
                .expect("known");
        }
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            let MixOutput::Audio { to, payload, .. } = o else {
                panic!("nobody should be dropped: {o:?}");
            };
            let dec = receivers.get_mut(&to).expect("receiver");
            let got = dec.decode(Some(&payload), &mut pcm).expect("decode");
            heard
                .entry(to)
                .or_default()
                .extend(pcm[..got].iter().map(|&s| f64::from(s)));
        }
    }
    heard
}

/// Signal-to-noise ratio of `got` against `want`, at the lag (within
/// `max_lag` samples) and gain that fit best: what the two codec passes
/// and the jitter buffer's delay leave of the expected mix.
fn snr_db(want: &[f64], got: &[f64], max_lag: usize) -> f64 {
    let len = want.len().min(got.len()) - max_lag;
    let mut best = f64::MIN;
    for lag in 0..max_lag {
        let w = &want[..len];
        let g = &got[lag..lag + len];
        let wg: f64 = w.iter().zip(g).map(|(a, b)| a * b).sum();
        let gg: f64 = g.iter().map(|b| b * b).sum();
        if gg == 0.0 {
            continue;
        }
        let gain = wg / gg;
        let signal: f64 = w.iter().map(|a| a * a).sum();
        let noise: f64 = w.iter().zip(g).map(|(a, b)| (a - gain * b).powi(2)).sum();
        best = best.max(db(signal / noise.max(1e-9)));
    }
    best
}

#[test]
fn a_mix_of_opus_tones_decodes_to_the_expected_mix_within_tolerance() {
    let frames = 100; // 2 s
    let tones = [(1u64, 440.0), (2, 1_000.0), (3, 1_700.0)];
    let heard = mix_tones(frames, &tones);
    let n = frame_samples(RATE);
    // Skip the first half second: jitter delay and codec start-up.
    let skip = 25 * n;
    for &(id, own) in &tones {
        let got = &heard[&id][skip..];
        let want: Vec<f64> = (25..frames)
            .flat_map(|k| {
                let others: Vec<Vec<i16>> = tones
                    .iter()
                    .filter(|t| t.0 != id)
                    .map(|t| tone(t.1, k, n))
                    .collect();
                (0..n).map(move |i| others.iter().map(|o| f64::from(o[i])).sum())
            })
            .collect();
        // Jitter delay (60 ms) plus the two codec passes' lookahead.
        let snr = snr_db(&want, got, 1_600);
        eprintln!("participant {id}: SNR {snr:.1} dB");
        assert!(snr >= 15.0, "participant {id}: SNR {snr:.1} dB");
        // Its own tone is absent; the others' are there.
        let own_p = power_at(got, own);
        for &(other, freq) in tones.iter().filter(|t| t.0 != id) {
            let p = power_at(got, freq);
            assert!(
                db(p / own_p.max(1e-12)) >= 30.0,
                "participant {id} hears {other} ({freq} Hz) 30 dB above itself ({own} Hz): {:.1} dB",
                db(p / own_p.max(1e-12))
            );
        }
    }
}

#[test]
fn a_lost_packet_is_concealed_not_silenced() {
    let codec = Opus::default();
    let n = frame_samples(RATE);
    let mut enc = codec.encoder(RATE).expect("encoder");
    let mut dec = codec.decoder(RATE).expect("decoder");
    let mut payload = Vec::new();
    let mut pcm = vec![0i16; n];
    for k in 0..20 {
        enc.encode(&tone(440.0, k, n), &mut payload)
            .expect("encode");
        dec.decode(Some(&payload), &mut pcm).expect("decode");
    }
    let got = dec.decode(None, &mut pcm).expect("conceal");
    assert_eq!(got, n);
    let energy: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / n as f64;
    assert!(
        energy.sqrt() > AMP / 10.0,
        "concealment carries on the tone: rms {}",
        energy.sqrt()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Whatever bytes arrive as a participant's audio, the Opus mixer does
    /// not panic and keeps giving everyone a frame per tick.
    #[test]
    fn arbitrary_payloads_never_stop_the_mix(
        packets in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1..30),
    ) {
        let t0 = Instant::now();
        let mut m = AudioMixer::new(Opus::default(), MixConfig::default()).expect("mixer");
        m.add(t0, 1, true).expect("add");
        m.add(t0, 2, true).expect("add");
        let mut frames = 0;
        for (k, p) in packets.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * k as u64);
            m.handle_packet(at, 1, k as u32 * FRAME_TICKS, p).expect("known");
            m.handle_timeout(at);
            while let Some(o) = m.poll_output() {
                if matches!(o, MixOutput::Audio { .. }) {
                    frames += 1;
                }
            }
        }
        proptest::prop_assert_eq!(frames, 2 * packets.len());
    }
}

#[test]
fn opus_packets_of_40_and_60_ms_are_mixed_like_20_ms_ones() {
    let n = frame_samples(RATE);
    for frames_per_packet in [2u32, 3] {
        let t0 = Instant::now();
        let codec = Opus::default();
        let mut m = AudioMixer::new(
            codec,
            MixConfig {
                sample_rate: RATE,
                jitter: JitterConfig::default(),
                normalise: None,
            },
        )
        .expect("mixer");
        m.add(t0, 1, true).expect("add");
        m.add(t0, 9, false).expect("add");
        let mut enc = codec.encoder(RATE).expect("encoder");
        let mut dec = codec.decoder(RATE).expect("decoder");
        let (mut payload, mut pcm) = (Vec::new(), vec![0i16; n]);
        let mut heard = Vec::new();
        for k in 0..90u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(k));
            if k % frames_per_packet == 0 {
                let long: Vec<i16> = (k..k + frames_per_packet)
                    .flat_map(|f| tone(440.0, f, n))
                    .collect();
                enc.encode(&long, &mut payload).expect("encode");
                m.handle_packet(at, 1, k * FRAME_TICKS, &payload)
                    .expect("known");
            }
            m.handle_timeout(at);
            while let Some(o) = m.poll_output() {
                if let MixOutput::Audio { to: 9, payload, .. } = o {
                    let got = dec.decode(Some(&payload), &mut pcm).expect("decode");
                    heard.extend(pcm[..got].iter().map(|&s| f64::from(s)));
                }
            }
        }
        let want: Vec<f64> = (25..90)
            .flat_map(|k| tone(440.0, k, n))
            .map(f64::from)
            .collect();
        let snr = snr_db(&want, &heard[25 * n..], 2_400);
        assert!(
            snr >= 15.0,
            "{} ms packets: SNR {snr:.1} dB",
            20 * frames_per_packet
        );
    }
}
