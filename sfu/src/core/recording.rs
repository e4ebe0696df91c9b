//! Recording a conference on this bridge (issue 21): every source of every
//! participant in it, local or brought over the relay, written without
//! transcoding by `tern_record` into one WebM file per source, and a
//! metadata file saying who was there when.
//!
//! The core decides, the shell writes: what leaves is
//! [`Output::Record`] ([`RecordOutput`]: bytes to append to a file in the
//! recording's directory, a file finished, the metadata replaced). A
//! write the shell could not make comes back as
//! [`Core::handle_recording_failed`] and stops the recording.
//!
//! A recorded video source is followed like a receiver's slot that always
//! wants the source's top available layer: it is demanded from the
//! publisher (sender constraints) and across the relay (relay demand), a
//! switch happens at a keyframe of the new layer, and a `Rewriter` keeps
//! the recorded stream's numbers continuous across switches, so the file
//! is one stream whatever layers it was made from. Until the first
//! keyframe nothing is written (`tern_record` waits for one).
//!
//! Timeline: see `recording/timeline.rs`.
//!
//! Codecs: Opus, VP8, VP9 (SVC too: its top spatial layer) and AV1 (into
//! WebM) and H.264 (into Matroska) are recorded as sent; a source in
//! another codec (none the bridge negotiates today) is counted as not
//! recordable and left out (its metadata has no file for it).
//!
//! A mixed conference is recorded as what its participants receive: one
//! file (`tern_record::MixRecorder`) with the mix everyone hears (the
//! mixer encodes it once for its listeners and the recording,
//! `MixCommand::Record`) and, when the bridge composes video, the
//! composite, both as the mixer encoded them. Its sources get no files of
//! their own (without a composite its video is forwarded, and recorded per
//! source as in a forwarding conference).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use tern_mixer::host::MixCommand;
use tern_record::{MixRecorder, Recording, TrackKey, TrackRecorder};
use tracing::{debug, info, warn};

use super::clocks::clock_hz;
use super::{Core, EndpointId, Map, Output, Packet, PubSource, RecordMark, SourceRef};
use crate::rewrite::{InNumbers, Rewriter};
use crate::signal::Kind;

mod mix;
mod notice;
mod timeline;

use mix::{MixTrack, close_mix, flush_mix};
use timeline::{Placed, Timeline};

/// How often what tracks produced is handed to the shell. A crash loses
/// at most this much of each file (plus what the shell had not written).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often the metadata is rewritten with the open files' progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often a video track waiting for a keyframe asks again.
const KEYFRAME_RETRY: Duration = Duration::from_millis(250);
/// How long an ended recording stays in [`Core::recordings`] (what the
/// bridge reports to the focus once a second).
const ENDED_REPORTED_FOR: Duration = Duration::from_secs(10);
/// The metadata file's name in a recording's directory.
pub const METADATA_FILE: &str = "metadata.json";

/// What the shell must do for a recording. Paths are `recording/file`
/// under the bridge's recordings directory; both are names `tern_record`
/// made safe (they cannot leave the directory or collide).
#[derive(Debug)]
pub enum RecordOutput {
    /// Append `bytes` to the file, creating it (and the recording's
    /// directory) first when `create`.
    Write {
        room: Arc<str>,
        recording: Arc<str>,
        file: Arc<str>,
        create: bool,
        bytes: Vec<u8>,
    },
    /// Nothing more goes to this file.
    Close { recording: Arc<str>, file: Arc<str> },
    /// Replace the recording's metadata file with `json`.
    Metadata {
        room: Arc<str>,
        recording: Arc<str>,
        json: String,
    },
}

/// A recording as the bridge reports it to the focus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingReport {
    pub conference: String,
    pub id: String,
    pub active: bool,
    /// Why it stopped, when it was not asked to.
    pub error: Option<String>,
    pub files: u32,
    pub bytes: u64,
}

/// One conference's recording.
#[derive(Debug)]
pub(super) struct ConfRecording {
    rec: Recording,
    id: Arc<str>,
    started: Instant,
    tracks: Map<SourceRefKey, Track>,
    /// A mixed conference's one file.
    mix: Option<MixTrack>,
    /// Per publishing endpoint: its sender clock on the recording's.
    timeline: Timeline,
    present: BTreeSet<String>,
    meta_dirty: bool,
    last_flush: Instant,
    last_progress: Instant,
}

/// `SourceRef` as a map key.
type SourceRefKey = (u64, str0m::media::Mid);

fn key_of(r: SourceRef) -> SourceRefKey {
    (r.endpoint.0, r.mid)
}

#[derive(Debug)]
struct Track {
    key: TrackKey,
    /// `None`: the source's codec is not recordable; it is skipped.
    file: Option<Arc<str>>,
    rec: TrackRecorder,
    created: bool,
    buf: Vec<u8>,
    /// Video: the layer written, the one wanted, and the numbering.
    current: Option<usize>,
    target: Option<usize>,
    rewriter: Rewriter,
    /// Video: the layer of the last packet seen, and when a keyframe was
    /// last asked for the track.
    flowing: Option<usize>,
    asked: Option<Instant>,
    /// When its first packet was held for a sender report (ms).
    held_since: Option<i64>,
}

impl ConfRecording {
    fn at_ms(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(i64::MAX)
    }
}

impl Core {
    /// Start recording `room` here as recording `id` (its directory name),
    /// begun at `started_unix_ms` (the metadata's wall-clock origin, from
    /// the focus). Starting the recording already running is a no-op. A
    /// start refused is also reported as that recording ended with the
    /// reason ([`Self::recordings`]), which is how the focus hears it.
    pub fn start_recording(
        &mut self,
        now: Instant,
        room: &str,
        id: &str,
        started_unix_ms: u64,
    ) -> Result<(), String> {
        let r = self.try_start_recording(now, room, id, started_unix_ms);
        if let Err(e) = &r {
            warn!(room, recording = id, error = %e, "recording not started");
            self.recordings_ended.push_back((
                now,
                RecordingReport {
                    conference: room.to_owned(),
                    id: id.to_owned(),
                    active: false,
                    error: Some(e.clone()),
                    files: 0,
                    bytes: 0,
                },
            ));
        }
        r
    }

    fn try_start_recording(
        &mut self,
        now: Instant,
        room: &str,
        id: &str,
        started_unix_ms: u64,
    ) -> Result<(), String> {
        let Some(conf) = self.conferences.get(room) else {
            return Err(format!("conference {room} is not on this bridge"));
        };
        let mixed = conf.mixed.is_some();
        let size = (conf.composite.width, conf.composite.height);
        if let Some(r) = self.recordings.get(room) {
            return if &*r.id == id {
                Ok(())
            } else {
                Err(format!(
                    "conference {room} is already being recorded as {}",
                    r.id
                ))
            };
        }
        let mut rec = Recording::new(id, room, started_unix_ms).map_err(|e| e.to_string())?;
        let composite = mixed && self.cfg.composite;
        let mix = if mixed {
            let (key, file) = rec.open_mix(composite, 0).map_err(|e| e.to_string())?;
            let file = Arc::<str>::from(file);
            let size = composite.then(|| {
                let dim = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                (dim(size.0), dim(size.1))
            });
            Some(MixTrack {
                key,
                file,
                // The mixer encodes mono.
                rec: MixRecorder::new(size, 1),
                created: false,
                buf: Vec::new(),
                asked: None,
            })
        } else {
            None
        };
        self.recordings.insert(
            Arc::from(room),
            Box::new(ConfRecording {
                rec,
                id: Arc::from(id),
                started: now,
                tracks: Map::default(),
                mix,
                timeline: Timeline::default(),
                present: BTreeSet::new(),
                meta_dirty: true,
                last_flush: now,
                last_progress: now,
            }),
        );
        self.stats.recordings_started += 1;
        info!(room, recording = id, mixed, "recording started");
        let room: Arc<str> = Arc::from(room);
        if mixed {
            self.out.push_back(Output::Mix(MixCommand::Record {
                room: room.clone(),
                on: true,
            }));
        }
        self.recording_housekeeping_room(now, &room);
        Ok(())
    }

    /// Stop recording `room` (asked by the focus). `id` must name the
    /// recording running, so a late stop of an old one does not end a new.
    pub fn stop_recording(&mut self, now: Instant, room: &str, id: &str) -> Result<(), String> {
        match self.recordings.get(room) {
            Some(r) if &*r.id == id => {
                self.end_recording(now, room, None);
                Ok(())
            }
            Some(r) => Err(format!(
                "conference {room} is being recorded as {}, not {id}",
                r.id
            )),
            None => Err(format!("conference {room} is not being recorded here")),
        }
    }

    /// The shell could not write recording `id` of `room`: it stops, and the
    /// focus hears why.
    pub fn handle_recording_failed(&mut self, now: Instant, room: &str, id: &str, error: &str) {
        if self.recordings.get(room).is_some_and(|r| &*r.id == id) {
            warn!(room, recording = id, error, "recording failed");
            self.stats.recordings_failed += 1;
            self.end_recording(now, room, Some(format!("write failed: {error}")));
        }
    }

    /// Recordings running here, and those that ended in the last
    /// `ENDED_REPORTED_FOR`.
    pub fn recordings(&self) -> Vec<RecordingReport> {
        let mut out: Vec<RecordingReport> = self
            .recordings
            .iter()
            .map(|(room, r)| RecordingReport {
                conference: room.to_string(),
                id: r.id.to_string(),
                active: true,
                error: None,
                files: r.rec.files().len() as u32,
                bytes: r.rec.files().iter().map(|f| f.bytes).sum::<u64>()
                    + r.tracks.values().map(|t| t.rec.stats().bytes).sum::<u64>(),
            })
            .collect();
        out.extend(self.recordings_ended.iter().map(|(_, r)| r.clone()));
        out.sort_by(|a, b| (&a.conference, &a.id).cmp(&(&b.conference, &b.id)));
        out
    }

    /// End `room`'s recording: every track finished and closed, the
    /// metadata written a last time. `error`: why, when not asked.
    pub(super) fn end_recording(&mut self, now: Instant, room: &str, error: Option<String>) {
        let Some(mut r) = self.recordings.remove(room) else {
            return;
        };
        let room: Arc<str> = Arc::from(room);
        let at = r.at_ms(now);
        let keys: Vec<SourceRefKey> = r.tracks.keys().copied().collect();
        for k in keys {
            if let Some(t) = r.tracks.remove(&k) {
                close_track(&mut r, t, at, &room, &mut self.out);
            }
        }
        if let Some(m) = r.mix.take() {
            close_mix(&mut r, m, at, &room, &mut self.out);
            self.out.push_back(Output::Mix(MixCommand::Record {
                room: room.clone(),
                on: false,
            }));
        }
        r.rec.stop(at, |_| Default::default());
        let bytes = r.rec.files().iter().map(|f| f.bytes).sum();
        self.out.push_back(Output::Record(RecordOutput::Metadata {
            room: room.clone(),
            recording: r.id.clone(),
            json: r.rec.metadata_json(),
        }));
        info!(room = %room, recording = %r.id, error = error.as_deref().unwrap_or(""), "recording ended");
        self.recordings_ended.push_back((
            now,
            RecordingReport {
                conference: room.to_string(),
                id: r.id.to_string(),
                active: false,
                error,
                files: r.rec.files().len() as u32,
                bytes,
            },
        ));
        self.mark_sources(&room, false);
        self.relay.demand_dirty = true;
        // The participants here hear it ended now, whether or not the
        // focus (which tells every bridge) is there to.
        self.handle_recording_notice(&room, &r.id, false);
    }

    /// Every `HOUSEKEEPING`: who is present, which tracks open and close,
    /// which layer each video track wants, and the bytes to hand out.
    pub(super) fn recording_housekeeping(&mut self, now: Instant) {
        while self
            .recordings_ended
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= ENDED_REPORTED_FOR)
        {
            self.recordings_ended.pop_front();
        }
        let rooms: Vec<Arc<str>> = self.recordings.keys().cloned().collect();
        for room in rooms {
            if self.conferences.contains_key(&room) {
                self.recording_housekeeping_room(now, &room);
            } else {
                // Its conference went without its last leave ending it.
                self.end_recording(now, &room, None);
            }
        }
    }

    fn recording_housekeeping_room(&mut self, now: Instant, room: &Arc<str>) {
        // Who is here, and their sources (with the layer a video track
        // wants: the top one available).
        let mut people: BTreeSet<String> = BTreeSet::new();
        let mut sources: Vec<(SourceRef, Option<usize>, bool)> = Vec::new();
        // A mixed conference's audio (and, composed, its video) is in the
        // mix file, not in files of its own.
        let mixed = self
            .conferences
            .get(room)
            .is_some_and(|c| c.mixed.is_some());
        let own_file = |k: Kind| !mixed || (k == Kind::Video && !self.cfg.composite);
        for (endpoint, participant, srcs) in self.room_publishers(room) {
            people.insert(participant.to_owned());
            for s in srcs.iter().filter(|s| own_file(s.kind)) {
                let top = s.layers.iter().rposition(|l| l.available(now));
                sources.push((
                    SourceRef {
                        endpoint,
                        mid: s.mid,
                    },
                    top,
                    s.svc,
                ));
            }
        }
        let Some(r) = self.recordings.get_mut(room).map(|r| &mut **r) else {
            return;
        };
        let at = r.at_ms(now);
        for p in people.difference(&r.present) {
            r.rec.joined(p, at);
            r.meta_dirty = true;
        }
        for p in r.present.difference(&people) {
            r.rec.left(p, at);
            r.meta_dirty = true;
        }
        r.present = people;
        // Tracks whose source is gone.
        let live: BTreeSet<SourceRefKey> = sources.iter().map(|(s, ..)| key_of(*s)).collect();
        let gone: Vec<SourceRefKey> = r
            .tracks
            .keys()
            .filter(|k| !live.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(t) = r.tracks.remove(&k) {
                close_track(r, t, at, room, &mut self.out);
            }
        }
        // Video tracks follow the top layer: a new target is asked a
        // keyframe, and a track still waiting for one asks again every
        // `KEYFRAME_RETRY` (a request can be lost, or land on a layer not
        // yet resumed, or inside the source's 200 ms throttle after a
        // receiver's; 250 ms clears that throttle).
        let mut keyframes = Vec::new();
        for (s, top, svc) in &sources {
            let Some(t) = r.tracks.get_mut(&key_of(*s)) else {
                continue;
            };
            // An SVC source's layers are spatial layers of its one stream,
            // which the track takes whole (the top is demanded below).
            let top = if *svc { &Some(0) } else { top };
            if !t.key.video || t.file.is_none() {
                continue;
            }
            let retry = t
                .asked
                .is_none_or(|a| now.saturating_duration_since(a) >= KEYFRAME_RETRY);
            // A file standing still after a frame was lost for good asks
            // for a keyframe of what it records: nobody else may (the top
            // layer can be wanted by the recording alone).
            if let Some(l) = t.current
                && t.target == Some(l)
                && *top == Some(l)
                && retry
                && t.rec.awaiting_keyframe()
            {
                t.asked = Some(now);
                keyframes.push((*s, l));
                continue;
            }
            if t.target != *top || (t.current != t.target && retry) {
                t.target = *top;
                if let Some(l) = top
                    && t.current != Some(*l)
                {
                    t.asked = Some(now);
                    keyframes.push((*s, *l));
                    // Nothing written yet: the layer flowing may start it.
                    if let Some(f) = t.flowing.filter(|f| t.current.is_none() && f != l) {
                        keyframes.push((*s, f));
                    }
                }
            }
        }
        // The composite begins the mix file at an IDR picture: ask until
        // one comes (a request can land inside the encoder's own).
        let mut composite_keyframe = false;
        if let Some(m) = r.mix.as_mut()
            && m.rec.needs_keyframe()
            && m.asked
                .is_none_or(|a| now.saturating_duration_since(a) >= KEYFRAME_RETRY)
        {
            m.asked = Some(now);
            composite_keyframe = true;
        }
        // Hand out what the tracks wrote.
        if now.saturating_duration_since(r.last_flush) >= FLUSH_EVERY {
            r.last_flush = now;
            for t in r.tracks.values_mut() {
                flush_track(t, room, &r.id, &mut self.out);
            }
            if let Some(m) = r.mix.as_mut() {
                flush_mix(m, room, &r.id, &mut self.out);
            }
        }
        // The metadata follows the open files' progress, so what a crash
        // leaves says roughly what each file holds.
        if now.saturating_duration_since(r.last_progress) >= PROGRESS_EVERY {
            r.last_progress = now;
            for t in r.tracks.values().filter(|t| t.file.is_some()) {
                r.rec.track_progress(&t.key, t.rec.stats());
            }
            if let Some(m) = &r.mix {
                r.rec.track_progress(&m.key, &m.rec.track_stats());
            }
            r.meta_dirty = true;
        }
        if std::mem::take(&mut r.meta_dirty) {
            self.out.push_back(Output::Record(RecordOutput::Metadata {
                room: room.clone(),
                recording: r.id.clone(),
                json: r.rec.metadata_json(),
            }));
        }
        // Mark the sources: recorded, and (video) the layer wanted.
        let mut changed = false;
        for (s, top, _) in sources {
            if let Some(src) = self.source_of_mut(s) {
                // Before any layer flows (a participant still connecting,
                // or its origin not yet saying which layers it sends),
                // every layer is wanted, so whichever keyframe comes first
                // (the encoder's own at the stream's start) gets here
                // and begins the file, rather than one asked for later.
                let all = u32::MAX >> (32 - src.layers.len().clamp(1, 32));
                let want = top.map_or(all, |l| 1u32 << (l % 32));
                let layers = if src.kind == Kind::Video { want } else { 0 };
                changed |= src.record.layers != layers || !src.record.on;
                src.record = RecordMark { on: true, layers };
            }
        }
        if changed {
            self.relay.demand_dirty = true;
        }
        for (s, l) in keyframes {
            self.request_keyframe(now, s, l);
        }
        if composite_keyframe {
            self.composite_keyframe(room.clone());
        }
    }

    /// Everyone in `room` here, local and brought by the relay, with
    /// their sources.
    fn room_publishers<'a>(
        &'a self,
        room: &'a str,
    ) -> impl Iterator<Item = (EndpointId, &'a str, &'a [PubSource])> + 'a {
        let local = self
            .conferences
            .get(room)
            .into_iter()
            .flat_map(|c| c.endpoints.iter())
            .filter_map(|id| {
                let ep = self.endpoints.get(id)?;
                Some((*id, ep.participant.as_str(), ep.sources.as_slice()))
            });
        let remote = self
            .relay
            .remotes
            .iter()
            .filter(move |(_, rp)| &*rp.room == room)
            .map(|(id, rp)| (*id, rp.participant.as_str(), rp.sources.as_slice()));
        local.chain(remote)
    }

    fn mark_sources(&mut self, room: &str, on: bool) {
        let refs: Vec<SourceRef> = self
            .room_publishers(room)
            .flat_map(|(endpoint, _, srcs)| {
                srcs.iter().map(move |s| SourceRef {
                    endpoint,
                    mid: s.mid,
                })
            })
            .collect();
        for s in refs {
            if let Some(src) = self.source_of_mut(s) {
                src.record = RecordMark { on, layers: 0 };
            }
        }
    }

    /// One packet of a source whose conference is recorded (`fan_out`
    /// calls this when the source's mark says so).
    pub(super) fn record_packet(
        &mut self,
        now: Instant,
        p: &Packet,
        numbers: &InNumbers,
        keyframe: bool,
    ) {
        let (room, participant, source) = match self.endpoints.get(&p.source.endpoint) {
            Some(ep) => {
                let Some(s) = ep.source(p.source.mid) else {
                    return;
                };
                (ep.room.clone(), &ep.participant, s)
            }
            None => {
                let Some(rp) = self.relay.remotes.get(&p.source.endpoint) else {
                    return;
                };
                let Some(s) = rp.source(p.source.mid) else {
                    return;
                };
                (rp.room.clone(), &rp.participant, s)
            }
        };
        let kind = source.kind;
        let svc = source.svc;
        // When this packet was sampled on its publisher's clock (µs).
        let sampled = source
            .layers
            .get(p.layer)
            .and_then(|l| l.sender_clock)
            .map(|c| c.sampled_us(numbers.ts, clock_hz(kind)));
        let source = &source.name;
        let Some(r) = self.recordings.get_mut(&room).map(|r| &mut **r) else {
            return;
        };
        let at = r.at_ms(now);
        let k = key_of(p.source);
        if !r.tracks.contains_key(&k) {
            let key = TrackKey {
                participant: participant.clone(),
                source: source.clone(),
                video: kind == Kind::Video,
            };
            let codec = match p.codec {
                Codec::Vp8 => Some(tern_record::Codec::Vp8),
                Codec::H264 => Some(tern_record::Codec::H264),
                Codec::Vp9 => Some(tern_record::Codec::Vp9),
                Codec::Av1 => Some(tern_record::Codec::Av1),
                Codec::Opus => Some(tern_record::Codec::Opus { channels: 2 }),
                _ => None,
            };
            let file = match codec {
                Some(c) => match r.rec.open_track(key.clone(), c, at) {
                    Ok(f) => Some(Arc::<str>::from(f)),
                    Err(e) => {
                        warn!(room = %room, error = %e, "recording track refused");
                        None
                    }
                },
                None => {
                    self.stats.recording_unsupported += 1;
                    warn!(room = %room, participant = %key.participant, source = %key.source, codec = ?p.codec, "not recorded: only Opus, VP8, VP9, H.264 and AV1 are");
                    None
                }
            };
            r.meta_dirty |= file.is_some();
            let top = if kind == Kind::Video && svc {
                Some(p.layer)
            } else if kind == Kind::Video {
                self.source_of(p.source)
                    .and_then(|s| s.layers.iter().rposition(|l| l.available(now)))
            } else {
                Some(0)
            };
            let Some(r) = self.recordings.get_mut(&room).map(|r| &mut **r) else {
                return;
            };
            // The file starts at a keyframe: ask for one now, of the layer
            // flowing and of the top one, rather than wait for the
            // encoder's next.
            let ask = (kind == Kind::Video && file.is_some())
                .then_some(top)
                .flatten();
            let ask_flowing = ask.filter(|top| *top != p.layer).map(|_| p.layer);
            let mut rec = TrackRecorder::new(codec.unwrap_or(tern_record::Codec::Vp8));
            // Written once placed by the publisher's clock (or given up on).
            rec.hold();
            // A file lasts from the participant's arrival (its media comes
            // later: a connection, a camera's first keyframe; a muted one
            // sends none): silence before its first audio packet, black
            // before its camera's first picture.
            if let Some(since) = r.rec.present_since(&key.participant) {
                rec.begin_at(since);
            }
            r.tracks.insert(
                k,
                Track {
                    key,
                    rec,
                    file,
                    created: false,
                    buf: Vec::new(),
                    current: None,
                    target: top,
                    rewriter: Rewriter::video(),
                    flowing: Some(p.layer),
                    asked: Some(now),
                    held_since: None,
                },
            );
            for l in [ask, ask_flowing].into_iter().flatten() {
                self.request_keyframe(now, p.source, l);
            }
        }
        let Some(r) = self.recordings.get_mut(&room).map(|r| &mut **r) else {
            return;
        };
        let Some(t) = r.tracks.get_mut(&k) else {
            return;
        };
        if t.file.is_none() {
            return;
        }
        t.flowing = Some(p.layer);
        let (seq, ts) = if t.key.video {
            if t.current != Some(p.layer) {
                // The file starts at the first keyframe of any layer up to
                // the target (the top one may be paused and take a while
                // to resume; none known yet: any layer), and moves up at
                // the target's first keyframe.
                let up = t.target == Some(p.layer);
                let start = t.current.is_none() && t.target.is_none_or(|top| p.layer <= top);
                if !keyframe || !(up || start) {
                    tracing::trace!(layer = p.layer, target = ?t.target, current = ?t.current, keyframe, "recording waits for a keyframe");
                    return;
                }
                debug!(participant = %t.key.participant, source = %t.key.source, layer = p.layer, "recording video from this layer");
                t.rewriter.rebase(numbers, now);
                t.current = Some(p.layer);
            }
            let Some(out) = t.rewriter.map(numbers, now) else {
                return;
            };
            (out.seq, out.ts)
        } else {
            (numbers.seq, numbers.ts)
        };
        let payload: &[u8] = if p.red {
            match crate::red::red_primary(&p.payload) {
                Some(b) => b,
                None => return,
            }
        } else {
            &p.payload
        };
        // A packet the recorder cannot use is counted in its stats.
        let _ = t.rec.push(at, seq as u16, ts, p.marker, payload);
        self.stats.recorded_packets += 1;
        r.timeline.observe(p.source.endpoint.0, sampled, at);
        if r.timeline.place(
            p.source.endpoint.0,
            &mut t.rec,
            &mut t.held_since,
            &t.key,
            sampled,
            at,
            ts,
        ) == Some(Placed::ByArrival)
        {
            self.stats.recording_tracks_by_arrival += 1;
        }
    }
}

fn flush_track(t: &mut Track, room: &Arc<str>, recording: &Arc<str>, out: &mut VecDeque<Output>) {
    let Some(file) = &t.file else {
        return;
    };
    t.rec.take_output(&mut t.buf);
    if t.buf.is_empty() {
        return;
    }
    out.push_back(Output::Record(RecordOutput::Write {
        room: room.clone(),
        recording: recording.clone(),
        file: file.clone(),
        create: !t.created,
        bytes: std::mem::take(&mut t.buf),
    }));
    t.created = true;
}

fn close_track(
    r: &mut ConfRecording,
    mut t: Track,
    at: i64,
    room: &Arc<str>,
    out: &mut VecDeque<Output>,
) {
    if t.file.is_none() {
        return;
    }
    t.rec.finish();
    t.rec.end_at(at);
    flush_track(&mut t, room, &r.id, out);
    r.rec.close_track(&t.key, at, t.rec.stats());
    r.meta_dirty = true;
    if let (Some(file), true) = (t.file, t.created) {
        out.push_back(Output::Record(RecordOutput::Close {
            recording: r.id.clone(),
            file,
        }));
    }
}
