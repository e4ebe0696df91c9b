//! Who is speaking in a conference: the dominant speaker
//! ([`dominant`], Volfin–Cohen), the order in which participants last
//! spoke (what last-N and the audio slots follow), and whether each one is
//! speaking now (the UI's indicator). One [`Speech`] per conference per
//! bridge, fed the RFC 6464 level of every audio packet, local or relayed;
//! Sans-IO like the rest of the core: time comes in, events go out.

pub mod dominant;
pub mod silence;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use dominant::{DECISION_INTERVAL, Speaker, challenger, evaluate, medium_score, speech_energy};

/// With nobody's speech for this long, nobody is dominant (Jitsi's silence
/// detection).
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// How many recent speakers the dominant-speaker event lists.
pub const RECENT: usize = 10;
/// Of a speaker's newest levels (200 ms), at least this many must be speech
/// for it to be speaking now: one missed packet or short pause does not
/// end a talk, background bursts shorter than 100 ms do not start one.
const ACTIVE_WINDOW: usize = 10;
const ACTIVE_MIN: usize = 5;

/// Talk detection, as operators tune it (the Carbonio VideoServer exposes
/// the same two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkConfig {
    /// 0..=100: higher hears quieter speech. 55 is Jitsi's threshold.
    pub sensitivity: u8,
    /// How long a participant still counts as speaking after their speech
    /// stops: the UI's indicator, and how long their audio slot is safe.
    pub interval: Duration,
}

impl Default for TalkConfig {
    fn default() -> Self {
        Self {
            sensitivity: 55,
            interval: Duration::from_secs(2),
        }
    }
}

/// What changed in a conference's speech.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeechEvent<K> {
    /// A new dominant speaker, or `None`: nobody has spoken for
    /// [`SILENCE_TIMEOUT`].
    Dominant(Option<K>),
    /// The speech order changed (someone started talking again).
    Order,
}

#[derive(Debug)]
struct Entry {
    speaker: Speaker,
    /// When it was last speaking.
    spoke: Option<Instant>,
}

/// One conference's speech.
#[derive(Debug)]
pub struct Speech<K> {
    cfg: TalkConfig,
    speech_energy: u8,
    speakers: BTreeMap<K, Entry>,
    /// Every speaker, most recently speaking first; those who never spoke
    /// at the end in the order they were first heard.
    order: Vec<K>,
    /// Each speaker's index in `order`: slot rankings look it up per
    /// candidate, per receiver, on every change of order.
    position: BTreeMap<K, usize>,
    dominant: Option<K>,
    next_decision: Option<Instant>,
    last_speech: Option<Instant>,
    events: VecDeque<SpeechEvent<K>>,
}

impl<K: Copy + Ord + std::fmt::Debug> Speech<K> {
    pub fn new(cfg: TalkConfig) -> Self {
        Self {
            speech_energy: speech_energy(cfg.sensitivity),
            cfg,
            speakers: BTreeMap::new(),
            order: Vec::new(),
            position: BTreeMap::new(),
            dominant: None,
            next_decision: None,
            last_speech: None,
            events: VecDeque::new(),
        }
    }

    /// The RFC 6464 level (`0` loudest, `127` silence) of one packet of
    /// `id`'s audio.
    pub fn handle_level(&mut self, now: Instant, id: K, dbov: u8) {
        let e = match self.speakers.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                self.position.insert(id, self.order.len());
                self.order.push(id);
                v.insert(Entry {
                    speaker: Speaker::default(),
                    spoke: None,
                })
            }
        };
        e.speaker.level(now, dbov);
        if self.next_decision.is_none() {
            self.next_decision = Some(now + DECISION_INTERVAL);
        }
    }

    /// `id` left (or its audio went away for good).
    pub fn remove(&mut self, id: K) {
        if self.speakers.remove(&id).is_none() {
            return;
        }
        self.order.retain(|k| *k != id);
        self.reindex();
        if self.dominant == Some(id) {
            self.dominant = None;
            self.events.push_back(SpeechEvent::Dominant(None));
        }
        if self.speakers.is_empty() {
            self.next_decision = None;
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_decision
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_decision else {
            return;
        };
        if now < due {
            return;
        }
        // The next decision a whole interval after this one, however late
        // this one was: decisions never bunch up.
        self.next_decision = Some(now + DECISION_INTERVAL);
        self.decide(now);
    }

    pub fn poll_event(&mut self) -> Option<SpeechEvent<K>> {
        self.events.pop_front()
    }

    pub fn dominant(&self) -> Option<K> {
        self.dominant
    }

    /// Everyone heard, most recently speaking first (those who never spoke
    /// last).
    pub fn order(&self) -> &[K] {
        &self.order
    }

    /// `id`'s place in [`Self::order`] (`None`: never heard).
    pub fn position(&self, id: K) -> Option<usize> {
        self.position.get(&id).copied()
    }

    fn reindex(&mut self) {
        self.position.clear();
        self.position
            .extend(self.order.iter().enumerate().map(|(i, k)| (*k, i)));
    }

    /// Up to [`RECENT`] of those who have spoken, most recent first.
    pub fn recent(&self) -> impl Iterator<Item = K> + '_ {
        self.order
            .iter()
            .copied()
            .filter(|k| self.speakers.get(k).is_some_and(|e| e.spoke.is_some()))
            .take(RECENT)
    }

    /// Whether `id` spoke within the talk interval.
    pub fn is_speaking(&self, now: Instant, id: K) -> bool {
        self.last_spoke(id)
            .is_some_and(|t| now.saturating_duration_since(t) <= self.cfg.interval)
    }

    pub fn last_spoke(&self, id: K) -> Option<Instant> {
        self.speakers.get(&id).and_then(|e| e.spoke)
    }

    /// The newest level of `id` with its noise floor taken out, 0..=127
    /// (for the UI's level meter).
    pub fn energy(&self, id: K) -> u8 {
        self.speakers.get(&id).map_or(0, |e| e.speaker.energy())
    }

    fn decide(&mut self, now: Instant) {
        let energy = self.speech_energy;
        let mut talking: Vec<K> = Vec::new();
        for (k, e) in &mut self.speakers {
            e.speaker.fill_idle(now);
            evaluate(&mut e.speaker, energy);
            if e.speaker.speech_count(ACTIVE_WINDOW, energy) >= ACTIVE_MIN {
                e.spoke = Some(now);
                talking.push(*k);
            }
        }
        if !talking.is_empty() {
            self.last_speech = Some(now);
        }
        let before = self.dominant;
        self.dominant = match self
            .dominant
            .and_then(|d| self.speakers.get(&d).map(|e| (d, e)))
        {
            // Nobody yet (or the dominant left): the most active talker, if
            // anyone talks.
            None => talking.iter().copied().max_by(|a, b| {
                let (sa, sb) = (&self.speakers[a].speaker, &self.speakers[b].speaker);
                medium_score(sa)
                    .total_cmp(&medium_score(sb))
                    .then_with(|| b.cmp(a))
            }),
            Some((d, de)) => {
                let others = self
                    .speakers
                    .iter()
                    .filter(|(k, _)| **k != d)
                    .map(|(k, e)| (*k, &e.speaker));
                Some(challenger(&de.speaker, others).unwrap_or(d))
            }
        };
        if self
            .last_speech
            .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE_TIMEOUT)
        {
            self.dominant = None;
        }
        if self.dominant != before {
            self.events.push_back(SpeechEvent::Dominant(self.dominant));
        }
        // Talkers to the front: the dominant first, then by medium score.
        if !talking.is_empty() {
            let dominant = self.dominant;
            talking.sort_by(|a, b| {
                let (sa, sb) = (&self.speakers[a].speaker, &self.speakers[b].speaker);
                (Some(*b) == dominant)
                    .cmp(&(Some(*a) == dominant))
                    .then(medium_score(sb).total_cmp(&medium_score(sa)))
                    .then(a.cmp(b))
            });
            let old = self.order.clone();
            self.order.retain(|k| !talking.contains(k));
            let rest = std::mem::take(&mut self.order);
            self.order = talking;
            self.order.extend(rest);
            if self.order != old {
                self.reindex();
                self.events.push_back(SpeechEvent::Order);
            }
        } else if self.dominant != before
            && let Some(d) = self.dominant
            && self.order.first() != Some(&d)
        {
            self.order.retain(|k| *k != d);
            self.order.insert(0, d);
            self.reindex();
            self.events.push_back(SpeechEvent::Order);
        }
    }
}

#[cfg(test)]
mod tests;
