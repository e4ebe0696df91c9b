//! The mixed conferences of one mixing worker.
//!
//! A bridge's shards do not mix: a shard tells its conference's worker who
//! is in the mix and hands it the audio packets ([`MixCommand`]), and takes
//! back each receiver's encoded frame ([`MixOutput`] with the room). The
//! worker runs one [`AudioMixer`] per conference, made when the first
//! participant joins (at the sample rate the conference was created with)
//! and dropped when the last leaves. The tokio shell runs hosts on threads
//! of their own; the simulator runs one inline. Same calls, same outputs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::audio::{AudioMixer, MixConfig, MixOutput, MixStats};
use crate::codec::AudioCodec;
use crate::jitter::JitterStats;
use crate::video::{CompositeSpec, VideoCodec, VideoConfig, VideoMixer, VideoOutput, VideoStats};
use crate::{MixerError, SAMPLE_RATES};

/// What a shard tells the mixing worker of a conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixCommand {
    /// `id` is in `room`'s mix from now on; `sends_audio` is false for a
    /// participant that may not publish (it only hears the mix). The first
    /// join makes the conference's mixer at `sample_rate`.
    Join {
        room: Arc<str>,
        id: u64,
        sample_rate: u32,
        sends_audio: bool,
        /// The composite's layout and size (the first join's holds).
        composite: CompositeSpec,
    },
    /// `room`'s dominant speaker changed (the speaker layout follows).
    Speaker {
        room: Arc<str>,
        id: Option<u64>,
    },
    Leave {
        room: Arc<str>,
        id: u64,
    },
    /// One audio packet (an Opus frame) from `id`.
    Packet {
        room: Arc<str>,
        id: u64,
        timestamp: u32,
        payload: Arc<[u8]>,
    },
    /// One video packet (H.264, RFC 6184) from `id`, for the composite.
    Video {
        room: Arc<str>,
        id: u64,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Arc<[u8]>,
    },
    /// A receiver lost the composite: the next frame is a keyframe.
    CompositeKeyframe {
        room: Arc<str>,
    },
    /// `room` is recorded (or no longer): the mix everyone hears comes out
    /// as [`MixOutput::Recorded`] every tick.
    Record {
        room: Arc<str>,
        on: bool,
    },
}

/// What a host produced for a conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mixed {
    Audio(MixOutput),
    Video(VideoOutput),
}

impl MixCommand {
    pub fn room(&self) -> &Arc<str> {
        match self {
            MixCommand::Join { room, .. }
            | MixCommand::Leave { room, .. }
            | MixCommand::Packet { room, .. }
            | MixCommand::Video { room, .. }
            | MixCommand::CompositeKeyframe { room }
            | MixCommand::Record { room, .. }
            | MixCommand::Speaker { room, .. } => room,
        }
    }
}

/// Counters over every conference a host has mixed (the ones gone too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    pub conferences: usize,
    pub participants: usize,
    pub mix: MixStats,
    pub jitter: JitterStats,
    /// Commands refused, by [`MixerError::reason`]: a packet for a room or
    /// participant the host does not have (it left meanwhile), a join with
    /// a rate no mixer takes.
    pub refused_unknown: u64,
    pub refused_sample_rate: u64,
    pub refused_other: u64,
    /// Participants dropped from a mix because their stream did not decode.
    pub dropped_participants: u64,
    /// The composites (all conferences, the ones gone too).
    pub video: VideoStats,
}

/// One conference's mixers.
struct Conference<C: AudioCodec, V: VideoCodec> {
    audio: AudioMixer<C>,
    /// With a video codec configured: the composite.
    video: Option<VideoMixer<V>>,
}

pub struct MixHost<C: AudioCodec + Clone, V: VideoCodec + Clone = NoVideo> {
    codec: C,
    template: MixConfig,
    /// The composite's codec and size; `None`: audio only (video of mixed
    /// conferences is then forwarded).
    video: Option<(V, VideoConfig)>,
    rooms: BTreeMap<Arc<str>, Conference<C, V>>,
    out: VecDeque<(Arc<str>, Mixed)>,
    /// Counters of mixers already dropped, so totals never go backwards.
    gone: MixStats,
    gone_jitter: JitterStats,
    gone_video: VideoStats,
    refused_unknown: u64,
    refused_sample_rate: u64,
    refused_other: u64,
    dropped_participants: u64,
}

impl<C: AudioCodec + Clone> MixHost<C, NoVideo> {
    /// Audio only: `template` is every mixer's configuration but its
    /// sample rate.
    pub fn new(codec: C, template: MixConfig) -> Self {
        Self::with_video(codec, template, None)
    }
}

impl<C: AudioCodec + Clone, V: VideoCodec + Clone> MixHost<C, V> {
    /// Audio and, with `video`, the composite of every mixed conference.
    pub fn with_video(codec: C, template: MixConfig, video: Option<(V, VideoConfig)>) -> Self {
        Self {
            codec,
            template,
            video,
            rooms: BTreeMap::new(),
            out: VecDeque::new(),
            gone: MixStats::default(),
            gone_jitter: JitterStats::default(),
            gone_video: VideoStats::default(),
            refused_unknown: 0,
            refused_sample_rate: 0,
            refused_other: 0,
            dropped_participants: 0,
        }
    }

    /// Whether mixed conferences get a composite here.
    pub fn composites(&self) -> bool {
        self.video.is_some()
    }

    pub fn handle_command(&mut self, now: Instant, cmd: MixCommand) {
        let result = match cmd {
            MixCommand::Join {
                room,
                id,
                sample_rate,
                sends_audio,
                composite,
            } => self.join(now, room, id, sample_rate, sends_audio, composite),
            MixCommand::Leave { room, id } => self.leave(&room, id),
            MixCommand::Packet {
                room,
                id,
                timestamp,
                payload,
            } => match self.rooms.get_mut(&room) {
                Some(c) => c.audio.handle_packet(now, id, timestamp, &payload),
                None => Err(MixerError::UnknownParticipant(id)),
            },
            MixCommand::Video {
                room,
                id,
                seq,
                timestamp,
                marker,
                payload,
            } => match self.rooms.get_mut(&room).and_then(|c| c.video.as_mut()) {
                Some(v) => {
                    let r = v.handle_packet(now, id, seq, timestamp, marker, &payload);
                    // Keyframe requests go out now, not at the next frame.
                    while let Some(o) = v.poll_output() {
                        self.out.push_back((room.clone(), Mixed::Video(o)));
                    }
                    r
                }
                None => Err(MixerError::UnknownParticipant(id)),
            },
            MixCommand::Speaker { room, id } => {
                if let Some(v) = self.rooms.get_mut(&room).and_then(|c| c.video.as_mut()) {
                    v.set_speaker(id);
                    while let Some(o) = v.poll_output() {
                        self.out.push_back((room.clone(), Mixed::Video(o)));
                    }
                }
                Ok(())
            }
            MixCommand::CompositeKeyframe { room } => {
                if let Some(v) = self.rooms.get_mut(&room).and_then(|c| c.video.as_mut()) {
                    v.request_keyframe();
                }
                Ok(())
            }
            MixCommand::Record { room, on } => match self.rooms.get_mut(&room) {
                Some(c) => {
                    c.audio.set_recorded(on);
                    Ok(())
                }
                // Its last participant left meanwhile: refused as unknown.
                None => {
                    self.refused_unknown += 1;
                    Ok(())
                }
            },
        };
        if let Err(e) = result {
            match e {
                MixerError::UnknownParticipant(_) | MixerError::DuplicateParticipant(_) => {
                    self.refused_unknown += 1
                }
                MixerError::SampleRate(_) => self.refused_sample_rate += 1,
                MixerError::Codec(_) => self.refused_other += 1,
            }
        }
    }

    fn join(
        &mut self,
        now: Instant,
        room: Arc<str>,
        id: u64,
        sample_rate: u32,
        sends_audio: bool,
        composite: CompositeSpec,
    ) -> Result<(), MixerError> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(MixerError::SampleRate(sample_rate));
        }
        let conf = match self.rooms.entry(room.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let cfg = MixConfig {
                    sample_rate,
                    ..self.template
                };
                let video = match &self.video {
                    Some((codec, cfg)) => {
                        Some(VideoMixer::new(codec.clone(), cfg.with_spec(composite))?)
                    }
                    None => None,
                };
                e.insert(Conference {
                    audio: AudioMixer::new(self.codec.clone(), cfg)?,
                    video,
                })
            }
        };
        conf.audio.add(now, id, sends_audio)?;
        if let Some(v) = conf.video.as_mut() {
            v.add(now, id, sends_audio)?;
            while let Some(o) = v.poll_output() {
                self.out.push_back((room.clone(), Mixed::Video(o)));
            }
        }
        Ok(())
    }

    fn leave(&mut self, room: &Arc<str>, id: u64) -> Result<(), MixerError> {
        let conf = self
            .rooms
            .get_mut(room)
            .ok_or(MixerError::UnknownParticipant(id))?;
        conf.audio.remove(id)?;
        if let Some(v) = conf.video.as_mut() {
            v.remove(id)?;
            while let Some(o) = v.poll_output() {
                self.out.push_back((room.clone(), Mixed::Video(o)));
            }
        }
        if conf.audio.participants().next().is_none() {
            // Its last frames were taken at its last tick; what it counted
            // stays in the totals.
            if let Some(c) = self.rooms.remove(room) {
                add_stats(&mut self.gone, &c.audio.stats());
                add_jitter(&mut self.gone_jitter, &c.audio.jitter_stats());
                if let Some(v) = &c.video {
                    add_video(&mut self.gone_video, &v.stats());
                }
            }
        }
        Ok(())
    }

    /// The earliest tick any conference is due for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .flat_map(|c| {
                [
                    c.audio.poll_timeout(),
                    c.video.as_ref().and_then(|v| v.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    /// Run every tick due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (room, c) in self.rooms.iter_mut() {
            if c.audio.poll_timeout().is_some_and(|t| t <= now) {
                c.audio.handle_timeout(now);
                while let Some(o) = c.audio.poll_output() {
                    if matches!(o, MixOutput::Dropped { .. }) {
                        self.dropped_participants += 1;
                    }
                    self.out.push_back((room.clone(), Mixed::Audio(o)));
                }
            }
            if let Some(v) = c.video.as_mut()
                && v.poll_timeout().is_some_and(|t| t <= now)
            {
                v.handle_timeout(now);
                while let Some(o) = v.poll_output() {
                    self.out.push_back((room.clone(), Mixed::Video(o)));
                }
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<(Arc<str>, Mixed)> {
        self.out.pop_front()
    }

    pub fn stats(&self) -> HostStats {
        let mut mix = self.gone;
        let mut jitter = self.gone_jitter;
        let mut video = self.gone_video;
        let mut participants = 0;
        for c in self.rooms.values() {
            add_stats(&mut mix, &c.audio.stats());
            add_jitter(&mut jitter, &c.audio.jitter_stats());
            if let Some(v) = &c.video {
                add_video(&mut video, &v.stats());
            }
            participants += c.audio.participants().count();
        }
        HostStats {
            conferences: self.rooms.len(),
            participants,
            mix,
            jitter,
            refused_unknown: self.refused_unknown,
            refused_sample_rate: self.refused_sample_rate,
            refused_other: self.refused_other,
            dropped_participants: self.dropped_participants,
            video,
        }
    }
}

fn add_video(a: &mut VideoStats, b: &VideoStats) {
    a.frames_composed += b.frames_composed;
    a.units_decoded += b.units_decoded;
    a.decode_errors += b.decode_errors;
    a.encode_errors += b.encode_errors;
    a.keyframes_sent += b.keyframes_sent;
    a.keyframe_requests += b.keyframe_requests;
    a.malformed_packets += b.malformed_packets;
    a.units_dropped += b.units_dropped;
}

/// The video "codec" of a host without composites: never asked for a
/// decoder or an encoder (a host made with [`MixHost::new`] has none).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVideo;

impl VideoCodec for NoVideo {
    type Decoder = NoVideo;
    type Encoder = NoVideo;
    fn decoder(&self) -> Result<NoVideo, MixerError> {
        Err(MixerError::Codec("no video codec".into()))
    }
    fn encoder(&self, _: &VideoConfig) -> Result<NoVideo, MixerError> {
        Err(MixerError::Codec("no video codec".into()))
    }
}

impl crate::video::VideoDecoder for NoVideo {
    fn decode(&mut self, _: &[u8]) -> Result<Option<crate::video::layout::Picture>, MixerError> {
        Ok(None)
    }
}

impl crate::video::VideoEncoder for NoVideo {
    fn encode(
        &mut self,
        _: &crate::video::layout::Picture,
        _: bool,
    ) -> Result<Vec<u8>, MixerError> {
        Ok(Vec::new())
    }
}

fn add_stats(a: &mut MixStats, b: &MixStats) {
    a.ticks += b.ticks;
    a.ticks_skipped += b.ticks_skipped;
    a.frames_decoded += b.frames_decoded;
    a.frames_concealed += b.frames_concealed;
    a.decode_errors += b.decode_errors;
    a.frames_encoded += b.frames_encoded;
    a.frames_shared += b.frames_shared;
    a.encode_errors += b.encode_errors;
    a.limited_frames += b.limited_frames;
    a.packets_refused += b.packets_refused;
}

fn add_jitter(a: &mut JitterStats, b: &JitterStats) {
    a.late += b.late;
    a.duplicate += b.duplicate;
    a.overflow += b.overflow;
    a.concealed += b.concealed;
    a.resyncs += b.resyncs;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::codec::{Pcm16, pcm16_payload};
    use crate::{FRAME_TICKS, frame_samples};

    fn join(room: &str, id: u64) -> MixCommand {
        MixCommand::Join {
            room: Arc::from(room),
            id,
            sample_rate: 8_000,
            sends_audio: true,
            composite: Default::default(),
        }
    }

    fn run(host: &mut MixHost<Pcm16>, until: Instant) -> Vec<(Arc<str>, Mixed)> {
        let mut out = Vec::new();
        while let Some(t) = host.poll_timeout().filter(|t| *t <= until) {
            host.handle_timeout(t);
            out.extend(std::iter::from_fn(|| host.poll_output()));
        }
        out
    }

    #[test]
    fn conferences_are_mixed_apart_and_a_mixer_goes_with_its_last_participant() {
        let t0 = Instant::now();
        // Mixed as received, so samples can be recognised.
        let cfg = MixConfig {
            normalise: None,
            ..MixConfig::default()
        };
        let mut host = MixHost::new(Pcm16, cfg);
        for (room, id) in [("a", 1), ("a", 2), ("b", 3), ("b", 4)] {
            host.handle_command(t0, join(room, id));
        }
        let n = frame_samples(8_000);
        // One frame from 1 in room a and from 3 in room b, far enough ahead
        // of the jitter delay to be played.
        for (room, id, v) in [("a", 1u64, 1000i16), ("b", 3, -2000)] {
            for k in 0..10u32 {
                host.handle_command(
                    t0,
                    MixCommand::Packet {
                        room: Arc::from(room),
                        id,
                        timestamp: k * FRAME_TICKS,
                        payload: Arc::from(pcm16_payload(&vec![v; n])),
                    },
                );
            }
        }
        let out = run(&mut host, t0 + Duration::from_millis(150));
        let heard = |to: u64| -> Vec<i16> {
            out.iter()
                .filter_map(|(_, o)| match o {
                    Mixed::Audio(MixOutput::Audio { to: t, payload, .. }) if *t == to => Some(
                        payload
                            .chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]]))
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        // 2 hears 1 and not room b; 4 hears 3 and not room a; the senders
        // hear nobody.
        assert!(heard(2).contains(&1000) && !heard(2).contains(&-2000));
        assert!(heard(4).contains(&-2000) && !heard(4).contains(&1000));
        assert!(heard(1).iter().all(|&s| s == 0));
        assert_eq!(host.stats().conferences, 2);
        for (room, id) in [("a", 1), ("a", 2)] {
            host.handle_command(
                t0,
                MixCommand::Leave {
                    room: Arc::from(room),
                    id,
                },
            );
        }
        let before = host.stats();
        assert_eq!(before.conferences, 1);
        assert_eq!(before.participants, 2);
        assert!(before.mix.frames_encoded > 0, "room a's counters stay");
    }

    #[test]
    fn commands_for_unknown_rooms_and_bad_rates_are_counted_not_fatal() {
        let t0 = Instant::now();
        let mut host = MixHost::new(Pcm16, MixConfig::default());
        host.handle_command(
            t0,
            MixCommand::Packet {
                room: Arc::from("nowhere"),
                id: 9,
                timestamp: 0,
                payload: Arc::from(&[1u8, 2][..]),
            },
        );
        host.handle_command(
            t0,
            MixCommand::Join {
                room: Arc::from("odd"),
                id: 1,
                sample_rate: 44_100,
                sends_audio: true,
                composite: Default::default(),
            },
        );
        host.handle_command(
            t0,
            MixCommand::Leave {
                room: Arc::from("nowhere"),
                id: 9,
            },
        );
        let s = host.stats();
        assert_eq!((s.refused_unknown, s.refused_sample_rate), (2, 1));
        assert_eq!(s.conferences, 0);
        assert_eq!(host.poll_timeout(), None);
    }
}
