//! Participants' audio packets as the mixer gets them: arbitrary payloads,
//! timestamps and timing into a mixer that decodes with Opus. Nothing may
//! panic, and every tick gives every participant a frame.
//!
//! The mix is encoded as raw PCM here: what comes from the network is only
//! ever decoded, and Opus encoding (our own samples, ~0.1 ms a frame) would
//! make each input ten times slower to run.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_mixer::MixerError;
use tern_mixer::audio::{AudioMixer, MixConfig, MixOutput};
use tern_mixer::codec::{AudioCodec, Pcm16, Pcm16Encoder};
use tern_mixer::opus::{Opus, OpusIn};

/// Opus in, PCM out.
struct DecodeOnly;

impl AudioCodec for DecodeOnly {
    type Decoder = OpusIn;
    type Encoder = Pcm16Encoder;
    fn decoder(&self, rate: u32) -> Result<OpusIn, MixerError> {
        Opus::default().decoder(rate)
    }
    fn encoder(&self, rate: u32) -> Result<Pcm16Encoder, MixerError> {
        Pcm16.encoder(rate)
    }
}

/// Ticks one input may run: enough for the jitter buffer's delay, losses,
/// concealment, going idle and restarting.
const MAX_TICKS: u32 = 40;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let Ok(mut m) = AudioMixer::new(DecodeOnly, MixConfig::default()) else {
        return;
    };
    for id in 0..3u64 {
        let _ = m.add(t0, id, id != 2);
    }
    let mut now = t0;
    let mut ticks = 0;
    let mut rest = data;
    // Each record: participant, timestamp step, payload length, payload.
    while let [who, step, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let ts = u32::from(*step).wrapping_mul(960);
        let _ = m.handle_packet(now, u64::from(*who % 4), ts, payload);
        if step % 3 == 0 {
            let before = m.stats().ticks;
            now += Duration::from_millis(u64::from(*step % 50));
            m.handle_timeout(now);
            let ran = m.stats().ticks - before;
            let mut frames = 0;
            while let Some(o) = m.poll_output() {
                if matches!(o, MixOutput::Audio { .. }) {
                    frames += 1;
                }
            }
            assert_eq!(frames, 3 * ran, "every participant gets a frame per tick");
            ticks += ran;
            if ticks >= u64::from(MAX_TICKS) {
                return;
            }
        }
    }
});
