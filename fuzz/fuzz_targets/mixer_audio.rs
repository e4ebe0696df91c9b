//! Participants' audio packets as the mixer gets them: arbitrary payloads,
//! timestamps and timing into an Opus mixer. Nothing may panic, and what
//! comes out is encoded frames.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_mixer::audio::{AudioMixer, MixConfig, MixOutput};
use tern_mixer::opus::Opus;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let Ok(mut m) = AudioMixer::new(Opus::default(), MixConfig::default()) else {
        return;
    };
    for id in 0..3u64 {
        let _ = m.add(t0, id, id != 2);
    }
    let mut now = t0;
    let mut rest = data;
    // Each record: participant, timestamp step, payload length, payload.
    while let [who, step, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let ts = u32::from(*step).wrapping_mul(960);
        let _ = m.handle_packet(now, u64::from(*who % 4), ts, payload);
        if step % 3 == 0 {
            now += Duration::from_millis(u64::from(*step % 50));
            m.handle_timeout(now);
            while let Some(o) = m.poll_output() {
                if let MixOutput::Audio { payload, .. } = o {
                    assert!(!payload.is_empty(), "an encoded frame is never empty");
                }
            }
        }
    }
});
