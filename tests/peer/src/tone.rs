//! What a participant heard, as a test reads it: the Opus packets it
//! received decoded back to samples, and which tones are in them
//! (publishers send one sine each with `PeerConfig::tone_hz`).

use std::time::Instant;

use tern_mixer::codec::{AudioCodec, AudioDecoder};
use tern_mixer::opus::Opus;

use crate::HeardAudio;

/// The rate heard audio is decoded at.
pub const RATE: u32 = 48_000;

/// Decode `packets` in order (the decoder's state runs through all of
/// them) and keep the samples of those received in `[from, to)`.
pub fn decode_window(packets: &[HeardAudio], from: Instant, to: Instant) -> Vec<f32> {
    let Ok(mut dec) = Opus::default().decoder(RATE) else {
        return Vec::new();
    };
    // Room for the longest Opus packet (120 ms).
    let mut pcm = vec![0i16; (RATE / 1000 * 120) as usize];
    let mut out = Vec::new();
    for h in packets {
        let n = dec.decode(Some(&h.payload), &mut pcm).unwrap_or(0);
        if h.at >= from && h.at < to {
            out.extend(pcm[..n].iter().map(|&s| f32::from(s)));
        }
    }
    out
}

/// Power of `x` at `hz` (Goertzel), normalised by its length.
pub fn power_at(x: &[f32], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len().max(1) as f64).powi(2)
}

/// Which of `tones` (name, Hz) are in `x`: a tone counts when its power
/// is within 20 dB of the strongest one's. A tone in a mix is within a
/// few dB of the others (the mixer normalises levels); one that is not
/// there is coding noise, 30 dB or more below.
pub fn tones_in<'a>(x: &[f32], tones: &[(&'a str, f32)]) -> Vec<&'a str> {
    let p: Vec<(&str, f64)> = tones.iter().map(|(n, hz)| (*n, power_at(x, *hz))).collect();
    let max = p.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    p.into_iter()
        .filter(|(_, v)| max > 0.0 && *v > max / 100.0)
        .map(|(n, _)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (1000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn finds_the_tones_present_and_not_the_others() {
        let tones = [("a", 500.0), ("b", 700.0), ("c", 1100.0)];
        let x: Vec<f32> = sine(500.0, 48_000)
            .iter()
            .zip(sine(1100.0, 48_000))
            .map(|(a, b)| a + b)
            .collect();
        assert_eq!(tones_in(&x, &tones), ["a", "c"]);
        assert!(
            tones_in(&[0.0; 4800], &tones).is_empty(),
            "silence has none"
        );
    }
}
