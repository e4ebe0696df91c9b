//! The audio mixer of one mixed conference.
//!
//! Every 20 ms tick: each sending participant's packets are taken from its
//! jitter buffer and decoded (or concealed) at the conference's rate until
//! a frame's worth of samples is buffered; the frames are summed once; each participant's mix is that sum less their
//! own frame (mix-minus: nobody hears themselves), limited so it cannot
//! clip, and encoded with that participant's encoder. Summing once and
//! subtracting makes a tick O(participants) in mixing work; the encodes
//! are the cost (one per receiver, as their mixes differ).
//!
//! Before summing, each participant's frames can be normalised
//! ([`Normalise`]): a slow gain towards one speech level.
//!
//! A participant whose stream does not decode is silent for that frame
//! and, after [`MAX_BAD_FRAMES`] in a row, dropped from the mix (reported
//! once as [`MixOutput::Dropped`]); everyone else's mix goes on.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{AudioCodec, AudioDecoder, AudioEncoder};
use crate::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats};
use crate::{FRAME_MS, FRAME_TICKS, MixerError, SAMPLE_RATES, frame_samples};

/// Consecutive frames that fail to decode before a participant is dropped
/// from the mix: half a second, longer than any burst of corruption a
/// working client sends, short enough that the others hear no more noise.
pub const MAX_BAD_FRAMES: u32 = 25;
/// Ticks the mixer catches up at once after a stall; beyond that it skips
/// to the present (the frames in between are lost, not bunched).
const MAX_CATCH_UP: u32 = 5;
/// The longest Opus packet (120 ms) in 20 ms frames.
const MAX_PACKET_FRAMES: usize = 6;
/// Packets decoded for one input in one tick at most (10 ms packets need
/// two; more only when catching up after a gap).
const MAX_DECODES_PER_TICK: u32 = 4;
/// Per-tick recovery of the limiter's gain towards 1 after it cut a peak
/// (~0.3 s from 0.5 back to 0.9 at 50 ticks/s).
const LIMITER_RELEASE: f32 = 0.05;
/// Ticks a participant must have been out of the sum (silent, muted, not
/// sending) before it hears the listeners' shared mix: a second, so a pause
/// between words does not move it between encoders (each move is a
/// discontinuity its decoder conceals). Everyone who is not speaking hears
/// the same thing, the whole sum, so it is encoded once for all of them:
/// in a meeting of fifty with two talkers, three encodes a tick instead of
/// fifty.
pub const LISTEN_AFTER: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixConfig {
    /// Decoding, mixing and encoding rate (8, 12, 16, 24 or 48 kHz).
    pub sample_rate: u32,
    pub jitter: JitterConfig,
    /// Bring each participant's speech towards one level before mixing
    /// (`None`: mix as received).
    pub normalise: Option<Normalise>,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            // The seed guide's default.
            sample_rate: 16_000,
            jitter: JitterConfig::default(),
            normalise: Some(Normalise::default()),
        }
    }
}

/// Level normalisation: a slow gain per participant that moves their
/// speech towards `target_dbfs`, within bounds, adapting only on frames
/// loud enough to be speech, so a quiet microphone is lifted and a loud
/// one lowered without pumping up background noise between words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalise {
    /// Level speech is brought towards (RMS, dB below full scale).
    pub target_dbfs: f32,
    /// Most a participant is raised, and most lowered (dB).
    pub max_gain_db: f32,
    pub min_gain_db: f32,
    /// Frames quieter than this (RMS) do not move the gain.
    pub speech_dbfs: f32,
    /// Share of the remaining distance to the wanted gain covered per
    /// frame: 0.05 settles in ~1 s of speech.
    pub step: f32,
}

impl Default for Normalise {
    fn default() -> Self {
        Self {
            target_dbfs: -20.0,
            max_gain_db: 12.0,
            min_gain_db: -6.0,
            speech_dbfs: -50.0,
            step: 0.05,
        }
    }
}

/// RTP ticks (48 kHz) of `samples` at `rate`.
fn ticks_of(samples: usize, rate: u32) -> u32 {
    (samples as u64 * u64::from(crate::RTP_CLOCK) / u64::from(rate)) as u32
}

/// RMS of a frame in dB below full scale (-inf for silence).
fn rms_dbfs(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return f32::NEG_INFINITY;
    }
    let power = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    (10.0 * (power / f64::from(i16::MAX).powi(2)).log10()) as f32
}

/// What the mixer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixOutput {
    /// One encoded frame of `to`'s mix. `timestamp` is on the 48 kHz RTP
    /// clock, advancing one frame per tick.
    Audio {
        to: u64,
        timestamp: u32,
        payload: Vec<u8>,
    },
    /// `participant`'s stream stopped decoding; it is out of the mix (it
    /// still receives its own).
    Dropped { participant: u64, reason: String },
    /// One encoded frame of the mix everyone hears, for the conference's
    /// recording (while [`AudioMixer::set_recorded`]): the listeners' mix,
    /// encoded once for both.
    Recorded { timestamp: u32, payload: Vec<u8> },
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MixStats {
    pub ticks: u64,
    /// Ticks skipped after a stall longer than the catch-up allows.
    pub ticks_skipped: u64,
    pub frames_decoded: u64,
    pub frames_concealed: u64,
    pub decode_errors: u64,
    pub frames_encoded: u64,
    /// Mixes delivered from the listeners' shared encode (not counted in
    /// `frames_encoded` but once).
    pub frames_shared: u64,
    pub encode_errors: u64,
    /// Receivers' frames the limiter scaled down.
    pub limited_frames: u64,
    /// Packets for inputs that were dropped or never sent audio.
    pub packets_refused: u64,
}

struct Input<D> {
    jitter: JitterBuffer,
    decoder: D,
    /// Decoded samples not mixed yet: a packet may hold 10 to 120 ms, a
    /// tick takes 20.
    fifo: VecDeque<i16>,
    /// Room for the longest packet Opus allows (120 ms).
    scratch: Vec<i16>,
    /// This tick's frame.
    pcm: Vec<i16>,
    /// This tick's frame after normalisation, as it is in the sum.
    scaled: Vec<i32>,
    /// Normalisation gain in dB.
    gain_db: f32,
    /// Whether `pcm` is in this tick's sum.
    contributing: bool,
    bad_run: u32,
    dropped: bool,
}

struct Member<D, E> {
    input: Option<Input<D>>,
    encoder: E,
    /// The limiter's current gain (1 = untouched).
    gain: f32,
    /// Ticks in a row it was not in the sum.
    quiet_ticks: u32,
}

/// The listeners' shared mix: its encoder and limiter.
struct Listeners<E> {
    encoder: E,
    gain: f32,
}

/// `total` less `own`, through a limiter whose gain is `gain` (a gain that
/// cuts at once to keep the peak in range and recovers slowly, so loud
/// moments do not clip and the level does not pump), into `mix`. Returns
/// whether it limited.
fn limit_into(total: &[i32], own: Option<&[i32]>, gain: &mut f32, mix: &mut [i16]) -> bool {
    let at = |k: usize| total[k] - own.map_or(0, |o| o[k]);
    let peak = (0..total.len()).map(|k| at(k).abs()).max().unwrap_or(0);
    let fit = if peak > i32::from(i16::MAX) {
        i16::MAX as f32 / peak as f32
    } else {
        1.0
    };
    *gain = if fit < *gain {
        fit
    } else {
        (*gain + LIMITER_RELEASE).min(fit)
    };
    for (k, out) in mix.iter_mut().enumerate() {
        let v = if *gain < 1.0 {
            (at(k) as f32 * *gain).round() as i32
        } else {
            at(k)
        };
        *out = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
    *gain < 1.0
}

pub struct AudioMixer<C: AudioCodec> {
    codec: C,
    cfg: MixConfig,
    samples: usize,
    members: BTreeMap<u64, Member<C::Decoder, C::Encoder>>,
    /// Made when the first participant becomes a listener.
    listeners: Option<Listeners<C::Encoder>>,
    next_tick: Option<Instant>,
    timestamp: u32,
    total: Vec<i32>,
    mix: Vec<i16>,
    payload: Vec<u8>,
    out: VecDeque<MixOutput>,
    stats: MixStats,
    recorded: bool,
}

/// The mix of everyone (the sum through the listeners' limiter), encoded
/// once a tick for every listener and the recording.
fn encode_full<C: AudioCodec>(
    codec: &C,
    rate: u32,
    listeners: &mut Option<Listeners<C::Encoder>>,
    total: &[i32],
    mix: &mut [i16],
    payload: &mut Vec<u8>,
    stats: &mut MixStats,
) -> Option<Vec<u8>> {
    if listeners.is_none() {
        *listeners = codec
            .encoder(rate)
            .ok()
            .map(|encoder| Listeners { encoder, gain: 1.0 });
    }
    let l = listeners.as_mut()?;
    if limit_into(total, None, &mut l.gain, mix) {
        stats.limited_frames += 1;
    }
    match l.encoder.encode(mix, payload) {
        Ok(()) => {
            stats.frames_encoded += 1;
            Some(payload.clone())
        }
        Err(_) => {
            stats.encode_errors += 1;
            None
        }
    }
}

impl<C: AudioCodec> AudioMixer<C> {
    pub fn new(codec: C, cfg: MixConfig) -> Result<Self, MixerError> {
        if !SAMPLE_RATES.contains(&cfg.sample_rate) {
            return Err(MixerError::SampleRate(cfg.sample_rate));
        }
        let samples = frame_samples(cfg.sample_rate);
        Ok(Self {
            codec,
            cfg,
            samples,
            members: BTreeMap::new(),
            listeners: None,
            next_tick: None,
            timestamp: 0,
            total: vec![0; samples],
            mix: vec![0; samples],
            payload: Vec::new(),
            out: VecDeque::new(),
            stats: MixStats::default(),
            recorded: false,
        })
    }

    /// Whether the mix everyone hears also comes out for a recording.
    pub fn set_recorded(&mut self, on: bool) {
        self.recorded = on;
    }

    pub fn sample_rate(&self) -> u32 {
        self.cfg.sample_rate
    }

    pub fn stats(&self) -> MixStats {
        self.stats
    }

    /// Jitter counters summed over the inputs present.
    pub fn jitter_stats(&self) -> JitterStats {
        let mut s = JitterStats::default();
        for i in self.members.values().filter_map(|m| m.input.as_ref()) {
            let j = i.jitter.stats();
            s.late += j.late;
            s.duplicate += j.duplicate;
            s.overflow += j.overflow;
            s.concealed += j.concealed;
            s.resyncs += j.resyncs;
        }
        s
    }

    pub fn participants(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.keys().copied()
    }

    /// `id` joins the mix at `now`: it receives a mix from the next tick,
    /// and its audio is mixed for the others when `sends_audio`.
    pub fn add(&mut self, now: Instant, id: u64, sends_audio: bool) -> Result<(), MixerError> {
        if self.members.contains_key(&id) {
            return Err(MixerError::DuplicateParticipant(id));
        }
        let input = if sends_audio {
            Some(Input {
                jitter: JitterBuffer::new(self.cfg.jitter),
                decoder: self.codec.decoder(self.cfg.sample_rate)?,
                fifo: VecDeque::with_capacity(self.samples * MAX_PACKET_FRAMES),
                scratch: vec![0; self.samples * MAX_PACKET_FRAMES],
                pcm: vec![0; self.samples],
                scaled: vec![0; self.samples],
                gain_db: 0.0,
                contributing: false,
                bad_run: 0,
                dropped: false,
            })
        } else {
            None
        };
        let encoder = self.codec.encoder(self.cfg.sample_rate)?;
        self.members.insert(
            id,
            Member {
                input,
                encoder,
                gain: 1.0,
                quiet_ticks: 0,
            },
        );
        if self.next_tick.is_none() {
            self.next_tick = Some(now);
        }
        Ok(())
    }

    /// `id` leaves: out of everyone's mix from the next tick.
    pub fn remove(&mut self, id: u64) -> Result<(), MixerError> {
        self.members
            .remove(&id)
            .map(|_| ())
            .ok_or(MixerError::UnknownParticipant(id))?;
        if self.members.is_empty() {
            self.next_tick = None;
        }
        Ok(())
    }

    /// An audio packet from `id` (its RTP timestamp and payload).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        id: u64,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), MixerError> {
        let m = self
            .members
            .get_mut(&id)
            .ok_or(MixerError::UnknownParticipant(id))?;
        match m.input.as_mut() {
            Some(i) if !i.dropped => {
                i.jitter.push(now, timestamp, payload);
                Ok(())
            }
            _ => {
                self.stats.packets_refused += 1;
                Ok(())
            }
        }
    }

    /// When the next tick is due (`None` with nobody in the mix).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Run every tick due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let frame = Duration::from_millis(u64::from(FRAME_MS));
        let Some(mut t) = self.next_tick else {
            return;
        };
        if t > now {
            return;
        }
        // Stalled: mix the last few frames, not a burst of stale ones.
        let behind = (now.duration_since(t).as_millis() / u128::from(FRAME_MS)) as u32;
        if behind >= MAX_CATCH_UP {
            let skip = behind - MAX_CATCH_UP + 1;
            self.stats.ticks_skipped += u64::from(skip);
            self.timestamp = self.timestamp.wrapping_add(FRAME_TICKS.wrapping_mul(skip));
            t += frame * skip;
        }
        while t <= now {
            self.tick(t);
            t += frame;
        }
        self.next_tick = Some(t);
    }

    pub fn poll_output(&mut self) -> Option<MixOutput> {
        self.out.pop_front()
    }

    fn tick(&mut self, now: Instant) {
        self.stats.ticks += 1;
        self.total.fill(0);
        for (&id, m) in self.members.iter_mut() {
            let Some(input) = m.input.as_mut() else {
                continue;
            };
            input.contributing = false;
            if input.dropped {
                continue;
            }
            // Decode until a frame's worth is buffered: one packet for
            // 20 ms packets, every other tick for 40 ms, two for 10 ms.
            let mut decodes = 0;
            while input.fifo.len() < self.samples && decodes < MAX_DECODES_PER_TICK {
                decodes += 1;
                let packet = match input.jitter.pop(now) {
                    Frame::Idle => break,
                    Frame::Packet(p) => Some(p),
                    Frame::Lost => None,
                };
                // Concealment fills one frame; a packet may fill six.
                let room = if packet.is_some() {
                    &mut input.scratch[..]
                } else {
                    &mut input.scratch[..self.samples]
                };
                match input.decoder.decode(packet.as_deref(), room) {
                    Ok(n) => {
                        input.bad_run = 0;
                        let n = n.min(room.len());
                        input.fifo.extend(&room[..n]);
                        if packet.is_some() {
                            self.stats.frames_decoded += 1;
                            // The next packet is expected where this one
                            // ends.
                            input.jitter.last_lasted(ticks_of(n, self.cfg.sample_rate));
                        } else {
                            self.stats.frames_concealed += 1;
                        }
                    }
                    Err(e) => {
                        self.stats.decode_errors += 1;
                        input.bad_run += 1;
                        if input.bad_run >= MAX_BAD_FRAMES {
                            input.dropped = true;
                            input.fifo.clear();
                            self.out.push_back(MixOutput::Dropped {
                                participant: id,
                                reason: e.to_string(),
                            });
                        }
                        break;
                    }
                }
            }
            if input.fifo.is_empty() {
                continue;
            }
            // A stream that stops mid-frame ends in silence.
            let have = input.fifo.len().min(self.samples);
            for (k, s) in input.pcm.iter_mut().enumerate() {
                *s = if k < have {
                    input.fifo.pop_front().unwrap_or(0)
                } else {
                    0
                };
            }
            if let Some(n) = &self.cfg.normalise {
                let level = rms_dbfs(&input.pcm);
                if level >= n.speech_dbfs {
                    let want = (n.target_dbfs - level).clamp(n.min_gain_db, n.max_gain_db);
                    input.gain_db += (want - input.gain_db) * n.step;
                }
            }
            let gain = 10f32.powf(input.gain_db / 20.0);
            for ((t, out), &s) in self
                .total
                .iter_mut()
                .zip(input.scaled.iter_mut())
                .zip(&input.pcm)
            {
                *out = if input.gain_db == 0.0 {
                    i32::from(s)
                } else {
                    (f32::from(s) * gain).round() as i32
                };
                *t += *out;
            }
            input.contributing = true;
        }
        // The listeners' mix, encoded on the first listener's turn.
        let mut shared: Option<Option<Vec<u8>>> = None;
        for (&id, m) in self.members.iter_mut() {
            let own = m.input.as_ref().filter(|i| i.contributing);
            m.quiet_ticks = if own.is_some() {
                0
            } else {
                m.quiet_ticks.saturating_add(1)
            };
            if own.is_none() && m.quiet_ticks > LISTEN_AFTER {
                let payload = shared.get_or_insert_with(|| {
                    encode_full(
                        &self.codec,
                        self.cfg.sample_rate,
                        &mut self.listeners,
                        &self.total,
                        &mut self.mix,
                        &mut self.payload,
                        &mut self.stats,
                    )
                });
                if let Some(p) = payload {
                    self.stats.frames_shared += 1;
                    self.out.push_back(MixOutput::Audio {
                        to: id,
                        timestamp: self.timestamp,
                        payload: p.clone(),
                    });
                }
                continue;
            }
            if limit_into(
                &self.total,
                own.map(|i| &i.scaled[..]),
                &mut m.gain,
                &mut self.mix,
            ) {
                self.stats.limited_frames += 1;
            }
            match m.encoder.encode(&self.mix, &mut self.payload) {
                Ok(()) => {
                    self.stats.frames_encoded += 1;
                    self.out.push_back(MixOutput::Audio {
                        to: id,
                        timestamp: self.timestamp,
                        payload: self.payload.clone(),
                    });
                }
                Err(_) => self.stats.encode_errors += 1,
            }
        }
        if self.recorded {
            let payload = shared.unwrap_or_else(|| {
                encode_full(
                    &self.codec,
                    self.cfg.sample_rate,
                    &mut self.listeners,
                    &self.total,
                    &mut self.mix,
                    &mut self.payload,
                    &mut self.stats,
                )
            });
            if let Some(payload) = payload {
                self.out.push_back(MixOutput::Recorded {
                    timestamp: self.timestamp,
                    payload,
                });
            }
        }
        self.timestamp = self.timestamp.wrapping_add(FRAME_TICKS);
    }
}

#[cfg(test)]
mod tests;
