//! A mixed conference's recording: one file of what its participants
//! receive (`tern_record::MixRecorder`): the mix everyone hears, which the
//! mixing worker sends while the conference is recorded
//! (`MixCommand::Record`), and each composite picture.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tern_record::{MixRecorder, TrackKey};

use super::{ConfRecording, RecordOutput};
use crate::core::{Core, Output};

/// A mixed conference's file: the mix and (with one) the composite.
#[derive(Debug)]
pub(super) struct MixTrack {
    pub(super) key: TrackKey,
    pub(super) file: Arc<str>,
    pub(super) rec: MixRecorder,
    pub(super) created: bool,
    pub(super) buf: Vec<u8>,
    /// When the composite was last asked for a keyframe.
    pub(super) asked: Option<Instant>,
}

impl Core {
    /// One frame of the mix everyone in mixed conference `room` hears,
    /// for its recording.
    pub fn handle_mix_recorded(
        &mut self,
        now: Instant,
        room: &str,
        timestamp: u32,
        payload: &[u8],
    ) {
        let Some(r) = self.recordings.get_mut(room).map(|r| &mut **r) else {
            // The recording stopped while the mixer still sent it.
            return;
        };
        let at = r.at_ms(now);
        if let Some(m) = r.mix.as_mut() {
            m.rec.audio(at, timestamp, payload);
            self.stats.recorded_packets += 1;
        }
    }

    /// One picture of `room`'s composite, for its recording.
    pub(in crate::core) fn record_composite(
        &mut self,
        now: Instant,
        room: &str,
        timestamp: u32,
        payloads: &[Arc<[u8]>],
    ) {
        let Some(r) = self.recordings.get_mut(room).map(|r| &mut **r) else {
            return;
        };
        let at = r.at_ms(now);
        if let Some(m) = r.mix.as_mut() {
            m.rec.video(at, timestamp, payloads.iter().map(|p| &p[..]));
            self.stats.recorded_packets += payloads.len() as u64;
        }
    }

    /// Mixed conferences recorded here (for a mixing worker that
    /// restarted and lost its `Record`).
    pub(in crate::core) fn mixed_recordings(&self) -> Vec<Arc<str>> {
        self.recordings
            .iter()
            .filter(|(_, r)| r.mix.is_some())
            .map(|(room, _)| room.clone())
            .collect()
    }
}

pub(super) fn flush_mix(
    m: &mut MixTrack,
    room: &Arc<str>,
    recording: &Arc<str>,
    out: &mut VecDeque<Output>,
) {
    m.rec.take_output(&mut m.buf);
    if m.buf.is_empty() {
        return;
    }
    out.push_back(Output::Record(RecordOutput::Write {
        room: room.clone(),
        recording: recording.clone(),
        file: m.file.clone(),
        create: !m.created,
        bytes: std::mem::take(&mut m.buf),
    }));
    m.created = true;
}

pub(super) fn close_mix(
    r: &mut ConfRecording,
    mut m: MixTrack,
    at: i64,
    room: &Arc<str>,
    out: &mut VecDeque<Output>,
) {
    flush_mix(&mut m, room, &r.id, out);
    r.rec.close_track(&m.key, at, &m.rec.track_stats());
    r.meta_dirty = true;
    if m.created {
        out.push_back(Output::Record(RecordOutput::Close {
            recording: r.id.clone(),
            file: m.file,
        }));
    }
}
