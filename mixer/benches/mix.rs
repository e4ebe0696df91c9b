//! What audio mixing costs: one conference of N participants, every one
//! speaking (a tone through Opus at 32 kbit/s, complexity 9), for 10 s of
//! 20 ms ticks; the mixer's CPU per tick (decode every input, mix-minus,
//! encode every receiver's mix) and so per participant, and how many
//! participants one core holds at 100 % (50 ticks/s). Then meetings where
//! two talk and the rest listen (sending nothing): the listeners share one
//! encode (`audio::LISTEN_AFTER`), measured after they start to.
//!
//! `cargo bench -p tern-mixer --bench mix` (release). Results in
//! BENCHMARKS.md. The senders' encoding is done before the clock starts.

use std::time::{Duration, Instant};

use tern_mixer::audio::{AudioMixer, MixConfig, MixOutput};
use tern_mixer::codec::{AudioCodec, AudioEncoder};
use tern_mixer::opus::Opus;
use tern_mixer::{FRAME_TICKS, frame_samples};

const TICKS: u32 = 500;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("rate  participants  talkers  µs/tick  µs/participant/tick  participants/core");
    for rate in [16_000u32, 48_000] {
        for n in [3u64, 10, 30] {
            run(rate, n, n);
        }
    }
    // A meeting: two talk, the rest listen (they send nothing, as muted
    // or silence-gated participants do) and share one encode.
    for n in [10u64, 30, 100] {
        run(16_000, n, 2);
    }
}

fn run(rate: u32, participants: u64, talkers: u64) {
    let samples = frame_samples(rate);
    let codec = Opus::default();
    // Every participant's packets, encoded ahead.
    let mut packets: Vec<Vec<Vec<u8>>> = Vec::new();
    for p in 0..talkers {
        let mut enc = codec.encoder(rate).expect("encoder");
        let freq = 200.0 + 50.0 * p as f64;
        let mut out = Vec::new();
        let mut frames = Vec::new();
        for k in 0..TICKS {
            let pcm: Vec<i16> = (0..samples)
                .map(|i| {
                    let t = (k as usize * samples + i) as f64 / f64::from(rate);
                    (4_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                })
                .collect();
            enc.encode(&pcm, &mut out).expect("encode");
            frames.push(out.clone());
        }
        packets.push(frames);
    }
    let t0 = Instant::now();
    let mut m = AudioMixer::new(
        codec,
        MixConfig {
            sample_rate: rate,
            ..MixConfig::default()
        },
    )
    .expect("mixer");
    for p in 0..participants {
        m.add(t0, p, true).expect("add");
    }
    // Listeners share an encode after a second: measure after that.
    let warm = tern_mixer::audio::LISTEN_AFTER + 2;
    for k in 0..warm {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        for (p, frames_of) in packets.iter().enumerate() {
            m.handle_packet(at, p as u64, k * FRAME_TICKS, &frames_of[k as usize])
                .expect("known");
        }
        m.handle_timeout(at);
        while m.poll_output().is_some() {}
    }
    let mut cpu = Duration::ZERO;
    let mut frames = 0u64;
    for k in warm..TICKS {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        for (p, frames_of) in packets.iter().enumerate() {
            m.handle_packet(at, p as u64, k * FRAME_TICKS, &frames_of[k as usize])
                .expect("known");
        }
        let start = Instant::now();
        m.handle_timeout(at);
        while let Some(o) = m.poll_output() {
            if matches!(o, MixOutput::Audio { .. }) {
                frames += 1;
            }
        }
        cpu += start.elapsed();
    }
    let ticks = TICKS - warm;
    assert_eq!(frames, participants * u64::from(ticks));
    let per_tick = cpu.as_secs_f64() * 1e6 / f64::from(ticks);
    let per_participant = per_tick / participants as f64;
    // 50 ticks a second: a core is 1e6 µs/s.
    let per_core = 1e6 / (per_participant * 50.0);
    println!(
        "{rate:>5}  {participants:>12}  {talkers:>7}  {per_tick:>7.0}  {per_participant:>19.1}  {per_core:>17.0}"
    );
}
