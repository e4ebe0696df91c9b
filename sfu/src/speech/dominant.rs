//! Dominant speaker identification after Volfin and Cohen, "Dominant
//! Speaker Identification for Multipoint Videoconferencing" (Computer
//! Speech & Language 27(4), 2013), on RFC 6464 audio levels instead of
//! sub-band energies, with the constants Jitsi Videobridge uses
//! (`org.jitsi.utils.dsi.DominantSpeakerIdentification`).
//!
//! Each speaker keeps its last [`HISTORY`] levels (one per 20 ms packet).
//! Every [`DECISION_INTERVAL`] they are scored on three time scales:
//! - immediate: the newest level's band (`energy / 10`, 0..=12 of 13);
//! - medium: how many of the newest five levels are speech (0..=5);
//! - long: how many of the ten newest five-level blocks are mostly speech
//!   (0..=10).
//!
//! Each count `v` of `n` is scored as the log-likelihood ratio of speech
//! against noise, `ln C(n,v) + v ln p + (n-v) ln(1-p) - ln λ + λ v`. A
//! challenger replaces the dominant speaker when it beats it on all three
//! scales by the thresholds `C1..C3`; among several, the largest medium
//! margin wins.
//!
//! Each speaker's noise floor is its running minimum level, raised slowly
//! (a geometric mean with the minimum of the last 15 s); levels within one
//! band of the floor count as silence, so a noisy room does not out-talk a
//! quiet one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Levels kept per speaker: ten medium blocks of five.
pub const HISTORY: usize = N2 * N3;
/// How often the dominant speaker is re-decided.
pub const DECISION_INTERVAL: Duration = Duration::from_millis(300);
/// A speaker with no level for this long gets silence for the gap (its
/// audio stopped: muted, DTX, or lost).
pub const LEVEL_IDLE: Duration = Duration::from_millis(40);
/// One level stands for this much audio (one Opus packet).
pub const LEVEL_PERIOD: Duration = Duration::from_millis(20);

/// Bands of the level range (the paper's sub-bands), each this wide.
const N1: u32 = 13;
const BAND: u8 = 10;
/// Immediates per medium block, medium blocks per long one.
const N2: usize = 5;
const N3: usize = 10;
/// A medium block counts as speech with more than this many speech levels.
const LONG_THRESHOLD: u8 = 4;
/// Relative score thresholds (natural log) for a switch.
const C1: f64 = 3.0;
const C2: f64 = 2.0;
const C3: f64 = 0.0;
const LAMBDA_IMMEDIATE: f64 = 0.78;
const LAMBDA_MEDIUM: f64 = 24.0;
const LAMBDA_LONG: f64 = 47.0;
/// Scores are divided and logged: never zero.
const MIN_SCORE: f64 = 1e-10;
/// Levels over which a higher noise floor is looked for (15 s of packets).
const FLOOR_WINDOW: u32 = 15_000 / 20;

/// The level (energy, `127 - dBov`) at or above which a level counts as
/// speech, from a talk-detection sensitivity of 0..=100: the default 55 is
/// Jitsi's threshold (band 8, -47 dBov); each point more hears half a dB
/// quieter speech.
pub fn speech_energy(sensitivity: u8) -> u8 {
    let s = f64::from(sensitivity.min(100));
    (80.0 + (55.0 - s) * 0.5).round().clamp(1.0, 127.0) as u8
}

/// One participant's speech as the detector sees it.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// Energies (`127 - dBov`), newest first.
    levels: VecDeque<u8>,
    floor: Option<u8>,
    next_floor: Option<u8>,
    next_floor_count: u32,
    last_level: Option<Instant>,
    /// Up to when silence was filled in for a gap.
    filled_to: Option<Instant>,
    scores: [f64; 3],
}

impl Default for Speaker {
    fn default() -> Self {
        Self {
            levels: VecDeque::with_capacity(HISTORY + 1),
            floor: None,
            next_floor: None,
            next_floor_count: 0,
            last_level: None,
            filled_to: None,
            scores: [MIN_SCORE; 3],
        }
    }
}

impl Speaker {
    /// An RFC 6464 level (`0` loudest, `127` silence) heard at `now`.
    pub fn level(&mut self, now: Instant, dbov: u8) {
        let energy = 127 - dbov.min(127);
        self.push(energy);
        self.last_level = Some(now);
        self.filled_to = Some(now);
    }

    /// Fill a gap in the levels with silence, one per [`LEVEL_PERIOD`].
    pub fn fill_idle(&mut self, now: Instant) {
        let Some(from) = self.filled_to else { return };
        let Some(last) = self.last_level else { return };
        if now.saturating_duration_since(last) < LEVEL_IDLE {
            return;
        }
        let gap = now.saturating_duration_since(from);
        let n = (gap.as_millis() / LEVEL_PERIOD.as_millis()).min(HISTORY as u128) as u32;
        for _ in 0..n {
            self.push(0);
        }
        self.filled_to = Some(from + LEVEL_PERIOD * n);
    }

    fn push(&mut self, energy: u8) {
        if self.levels.len() == HISTORY {
            self.levels.pop_back();
        }
        self.levels.push_front(energy);
        self.update_floor(energy);
    }

    /// The running minimum of non-silent levels, allowed to rise slowly
    /// towards the minimum of the last window.
    fn update_floor(&mut self, energy: u8) {
        if energy == 0 {
            return;
        }
        match self.floor {
            None => self.floor = Some(energy),
            Some(f) if energy < f => {
                self.floor = Some(energy);
                self.next_floor = None;
                self.next_floor_count = 0;
            }
            Some(f) => {
                let next = self.next_floor.map_or(energy, |n| n.min(energy));
                self.next_floor = Some(next);
                self.next_floor_count += 1;
                if self.next_floor_count >= FLOOR_WINDOW {
                    // Geometric mean: the floor rises slower than with the
                    // arithmetic one, as a minimum should.
                    let raised = (f64::from(f) * f64::from(next)).sqrt();
                    self.floor = Some(raised.round().clamp(1.0, 127.0) as u8);
                    self.next_floor = None;
                    self.next_floor_count = 0;
                }
            }
        }
    }

    /// The energy with the noise floor taken out: silence within one band
    /// of the floor.
    fn cooked(&self, energy: u8) -> u8 {
        match self.floor {
            Some(f) if energy < f.saturating_add(BAND) => 0,
            _ => energy,
        }
    }

    /// How many of the newest `n` levels are speech.
    pub fn speech_count(&self, n: usize, speech_energy: u8) -> usize {
        self.levels
            .iter()
            .take(n)
            .filter(|&&e| self.cooked(e) >= speech_energy)
            .count()
    }

    /// The newest level with the floor taken out (energy, 0 = silence).
    pub fn energy(&self) -> u8 {
        self.levels.front().map_or(0, |&e| self.cooked(e))
    }

    /// Score the three time scales from the history.
    fn evaluate(&mut self, speech_energy: u8) {
        let newest = self.levels.front().copied().unwrap_or(0);
        let immediate = u32::from(self.cooked(newest) / BAND).min(N1 - 1);
        let block = |b: usize| {
            self.levels
                .iter()
                .skip(b * N2)
                .take(N2)
                .filter(|&&e| self.cooked(e) >= speech_energy)
                .count() as u32
        };
        let medium = block(0);
        let long = (0..N3)
            .filter(|&b| block(b) > u32::from(LONG_THRESHOLD))
            .count() as u32;
        self.scores = [
            score(immediate, N1, LAMBDA_IMMEDIATE),
            score(medium, N2 as u32, LAMBDA_MEDIUM),
            score(long, N3 as u32, LAMBDA_LONG),
        ];
    }
}

/// The speech-activity score of `v` active units of `n`.
fn score(v: u32, n: u32, lambda: f64) -> f64 {
    let p: f64 = 0.5;
    let v = v.min(n);
    let s = ln_binomial(n, v) + f64::from(v) * p.ln() + f64::from(n - v) * (1.0 - p).ln()
        - lambda.ln()
        + lambda * f64::from(v);
    s.max(MIN_SCORE)
}

fn ln_binomial(n: u32, k: u32) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| (f64::from(n - i) / f64::from(i + 1)).ln())
        .sum()
}

/// The decision among `speakers` (dominant first if any): the challenger
/// that beats the dominant speaker on every time scale, by the largest
/// medium margin. `speakers` must have been evaluated.
pub(super) fn challenger<'a, K: Copy>(
    dominant: &Speaker,
    others: impl Iterator<Item = (K, &'a Speaker)>,
) -> Option<K> {
    let mut best: Option<(K, f64)> = None;
    for (k, s) in others {
        let r: [f64; 3] = std::array::from_fn(|i| (s.scores[i] / dominant.scores[i]).ln());
        if r[0] > C1 && r[1] > C2 && r[2] > C3 && best.is_none_or(|(_, m)| r[1] > m) {
            best = Some((k, r[1]));
        }
    }
    best.map(|(k, _)| k)
}

pub(super) fn evaluate(s: &mut Speaker, speech_energy: u8) {
    s.evaluate(speech_energy);
}

pub(super) fn medium_score(s: &Speaker) -> f64 {
    s.scores[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sensitivity_is_jitsis_threshold() {
        assert_eq!(speech_energy(55), 80);
        assert!(speech_energy(100) < speech_energy(55));
        assert!(speech_energy(0) > speech_energy(55));
    }

    #[test]
    fn medium_and_long_scores_grow_with_activity() {
        for (n, l) in [(5, LAMBDA_MEDIUM), (10, LAMBDA_LONG)] {
            let s: Vec<f64> = (0..=n).map(|v| score(v, n, l)).collect();
            assert_eq!(s[0], MIN_SCORE);
            assert!(s.windows(2).all(|w| w[1] > w[0]), "{s:?}");
        }
    }

    #[test]
    fn immediate_score_separates_loud_from_quiet_bands() {
        // With the paper's small lambda the binomial term shapes it: zero
        // for the quiet bands, highest for the loud middle ones.
        let s: Vec<f64> = (0..N1).map(|v| score(v, N1, LAMBDA_IMMEDIATE)).collect();
        assert!(s[..4].iter().all(|x| *x == MIN_SCORE), "{s:?}");
        assert!(s[7..].iter().all(|x| *x > 1.0), "{s:?}");
        // A challenger talking loudly against a silent dominant speaker
        // clears the immediate threshold.
        assert!((s[9] / MIN_SCORE).ln() > C1);
    }

    #[test]
    fn binomial_matches_pascal() {
        assert!((ln_binomial(13, 0)).abs() < 1e-12);
        assert!((ln_binomial(5, 2) - 10f64.ln()).abs() < 1e-12);
        assert!((ln_binomial(13, 6) - 1716f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn noise_floor_discounts_a_steady_background() {
        let t = Instant::now();
        let mut s = Speaker::default();
        // Background noise at -60 dBov (energy 67) for a while.
        for i in 0..100 {
            s.level(t + LEVEL_PERIOD * i, 60);
        }
        assert_eq!(s.energy(), 0, "noise at the floor is silence");
        s.level(t + LEVEL_PERIOD * 100, 20);
        assert_eq!(s.energy(), 107, "speech well above it is not");
    }

    #[test]
    fn idle_gap_is_filled_with_silence() {
        let t = Instant::now();
        let mut s = Speaker::default();
        // A quiet packet sets the floor, then speech.
        s.level(t, 90);
        for i in 1..11 {
            s.level(t + LEVEL_PERIOD * i, 20);
        }
        assert_eq!(s.speech_count(10, 80), 10);
        s.fill_idle(t + Duration::from_millis(200 + 200));
        assert_eq!(s.speech_count(10, 80), 0, "200 ms without levels");
    }
}
