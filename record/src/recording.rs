//! One recording of one conference: the files its tracks go to and the
//! metadata file that says what they hold (who was there when, which file
//! is whose, from when to when on the recording's timeline).
//!
//! File names come from participant ids and source names, which clients
//! choose: every name here is built from a running number and those names
//! cut down to `[A-Za-z0-9_-]`, so two tracks can never share a file and
//! no name can leave the recording's directory (no `/`, no `..`, nothing
//! empty, nothing hidden).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::RecordError;
use crate::track::{Codec, TrackStats};

/// How long a name taken from a client may be, in bytes.
const NAME_MAX: usize = 48;

/// A name safe for a path component: `[A-Za-z0-9_-]`, anything else as
/// `_`, at most [`NAME_MAX`] bytes, never empty.
pub fn safe_component(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(NAME_MAX)
        .collect();
    if s.is_empty() { "_".to_owned() } else { s }
}

/// One recorded source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey {
    pub participant: String,
    pub source: String,
    pub video: bool,
}

impl TrackKey {
    fn kind(&self) -> &'static str {
        if self.video { "video" } else { "audio" }
    }
}

/// One file of a recording, as the metadata file lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileEntry {
    /// Relative to the recording's directory.
    pub file: String,
    pub participant: String,
    pub source: String,
    pub kind: &'static str,
    pub codec: &'static str,
    /// From when to when on the recording's timeline (ms); `None` while
    /// still being written (or when the recording was cut off).
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub frames: u64,
    pub bytes: u64,
    /// How the file was placed on the timeline: `sender_reports` (its
    /// publisher's RTP/NTP mapping: a participant's files line up as they
    /// were captured), `arrival` (its first frame's arrival here: no
    /// sender report came in time) or `mixer` (a mixed conference's file:
    /// the mixer's own clock).
    pub timing: &'static str,
}

/// How a file was placed: a mix by its mixer's clock, a track by its
/// sender's reports if they came.
fn timing(was: &'static str, stats: &TrackStats) -> &'static str {
    if was == "mixer" {
        was
    } else if stats.origin_set {
        "sender_reports"
    } else {
        "arrival"
    }
}

/// When a participant was in the recorded conference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Presence {
    pub participant: String,
    pub joined_ms: i64,
    pub left_ms: Option<i64>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    recording: &'a str,
    conference: &'a str,
    /// When the recording began (Unix time, ms): the timeline's zero.
    started_unix_ms: u64,
    ended_ms: Option<i64>,
    participants: Vec<&'a Presence>,
    files: &'a [FileEntry],
}

/// The bookkeeping of one recording.
#[derive(Debug)]
pub struct Recording {
    id: String,
    conference: String,
    started_unix_ms: u64,
    ended_ms: Option<i64>,
    files: Vec<FileEntry>,
    open: HashMap<TrackKey, usize>,
    /// Each participant's stays, in order.
    presence: BTreeMap<String, Vec<Presence>>,
}

impl Recording {
    /// A recording named `id` (the directory its files go to) of
    /// `conference`, begun at `started_unix_ms` (the timeline's zero).
    pub fn new(id: &str, conference: &str, started_unix_ms: u64) -> Result<Self, RecordError> {
        let ok = (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(RecordError::BadId(id.to_owned()));
        }
        Ok(Self {
            id: id.to_owned(),
            conference: conference.to_owned(),
            started_unix_ms,
            ended_ms: None,
            files: Vec::new(),
            open: HashMap::new(),
            presence: BTreeMap::new(),
        })
    }

    /// The recording's directory name.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// A mixed conference's one file starts (`composite`: with the
    /// composite's video): its name. `key` names it in later calls.
    pub fn open_mix(
        &mut self,
        composite: bool,
        at_ms: i64,
    ) -> Result<(TrackKey, &str), RecordError> {
        let key = TrackKey {
            participant: String::new(),
            source: "mix".to_owned(),
            video: composite,
        };
        if self.open.contains_key(&key) {
            return Err(RecordError::AlreadyOpen {
                participant: key.participant,
                source_name: key.source,
                kind: "mix",
            });
        }
        let n = self.files.len() + 1;
        self.files.push(FileEntry {
            file: format!("{n:04}-mix.{}", if composite { "mkv" } else { "webm" }),
            participant: String::new(),
            source: key.source.clone(),
            kind: "mix",
            codec: if composite { "H.264+Opus" } else { "Opus" },
            started_ms: at_ms,
            ended_ms: None,
            frames: 0,
            bytes: 0,
            timing: "mixer",
        });
        self.open.insert(key.clone(), n - 1);
        Ok((key, &self.files[n - 1].file))
    }

    /// A track starts: the name of the file it goes to (new for every
    /// track, including the same source recorded again after a rejoin).
    pub fn open_track(
        &mut self,
        key: TrackKey,
        codec: Codec,
        at_ms: i64,
    ) -> Result<&str, RecordError> {
        if self.open.contains_key(&key) {
            let kind = key.kind();
            return Err(RecordError::AlreadyOpen {
                participant: key.participant,
                source_name: key.source,
                kind,
            });
        }
        let n = self.files.len() + 1;
        let file = format!(
            "{n:04}-{}-{}-{}.{}",
            safe_component(&key.participant),
            safe_component(&key.source),
            key.kind(),
            if codec == Codec::H264 { "mkv" } else { "webm" }
        );
        self.files.push(FileEntry {
            file,
            participant: key.participant.clone(),
            source: key.source.clone(),
            kind: key.kind(),
            codec: match codec {
                Codec::Vp8 => "VP8",
                Codec::Opus { .. } => "Opus",
                Codec::H264 => "H.264",
                Codec::Vp9 => "VP9",
                Codec::Av1 => "AV1",
            },
            started_ms: at_ms,
            ended_ms: None,
            frames: 0,
            bytes: 0,
            timing: "arrival",
        });
        self.open.insert(key, n - 1);
        Ok(&self.files[n - 1].file)
    }

    /// How far an open track has got (its frames and bytes so far), so the
    /// metadata written meanwhile says what a file cut short holds.
    pub fn track_progress(&mut self, key: &TrackKey, stats: &TrackStats) {
        if let Some(&i) = self.open.get(key) {
            let f = &mut self.files[i];
            f.frames = stats.frames_written;
            f.bytes = stats.bytes;
            f.timing = timing(f.timing, stats);
        }
    }

    /// A track ends (its source left, or the recording stops); false if it
    /// was not open.
    pub fn close_track(&mut self, key: &TrackKey, at_ms: i64, stats: &TrackStats) -> bool {
        let Some(i) = self.open.remove(key) else {
            return false;
        };
        let f = &mut self.files[i];
        f.ended_ms = Some(at_ms);
        f.frames = stats.frames_written;
        f.bytes = stats.bytes;
        f.timing = timing(f.timing, stats);
        true
    }

    pub fn joined(&mut self, participant: &str, at_ms: i64) {
        let stays = self.presence.entry(participant.to_owned()).or_default();
        if stays.last().is_none_or(|p| p.left_ms.is_some()) {
            stays.push(Presence {
                participant: participant.to_owned(),
                joined_ms: at_ms,
                left_ms: None,
            });
        }
    }

    /// Since when `participant` is present (its current stay), if it is.
    pub fn present_since(&self, participant: &str) -> Option<i64> {
        self.presence
            .get(participant)
            .and_then(|s| s.last())
            .filter(|p| p.left_ms.is_none())
            .map(|p| p.joined_ms)
    }

    pub fn left(&mut self, participant: &str, at_ms: i64) {
        if let Some(p) = self
            .presence
            .get_mut(participant)
            .and_then(|s| s.last_mut())
            .filter(|p| p.left_ms.is_none())
        {
            p.left_ms = Some(at_ms);
        }
    }

    /// The recording stops: every open track and stay ends at `at_ms`
    /// (tracks' frame counts come from `stats` for each still open).
    pub fn stop(&mut self, at_ms: i64, mut stats: impl FnMut(&TrackKey) -> TrackStats) {
        let open: Vec<TrackKey> = self.open.keys().cloned().collect();
        for k in open {
            let s = stats(&k);
            self.close_track(&k, at_ms, &s);
        }
        let people: Vec<String> = self.presence.keys().cloned().collect();
        for p in people {
            self.left(&p, at_ms);
        }
        self.ended_ms = Some(at_ms);
    }

    /// The metadata file's contents (JSON), as things stand: written again
    /// whenever they change, so a recording cut off still says what it
    /// holds up to then.
    pub fn metadata_json(&self) -> String {
        let m = Metadata {
            recording: &self.id,
            conference: &self.conference,
            started_unix_ms: self.started_unix_ms,
            ended_ms: self.ended_ms,
            participants: self.presence.values().flatten().collect(),
            files: &self.files,
        };
        serde_json::to_string_pretty(&m).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, s: &str, video: bool) -> TrackKey {
        TrackKey {
            participant: p.into(),
            source: s.into(),
            video,
        }
    }

    #[test]
    fn file_names_cannot_collide_or_leave_the_directory() {
        let mut r = Recording::new("rec-1", "room", 0).expect("id");
        let mut names = Vec::new();
        for (p, s) in [
            ("../../etc", "passwd"),
            ("a/b", "cam"),
            ("a_b", "cam"),
            ("", ".."),
            ("ünïcödé", "screen"),
            (&"x".repeat(500), "cam"),
        ] {
            let n = r
                .open_track(key(p, s, true), Codec::Vp8, 0)
                .expect("open")
                .to_owned();
            assert!(
                !n.contains('/') && !n.contains("..") && !n.starts_with('.'),
                "{n}"
            );
            assert!(n.len() < 4 + 1 + 48 + 1 + 48 + 11, "{n}");
            names.push(n);
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        // "a/b" and "a_b" read alike; their numbers keep them apart.
        assert_eq!(names[1], "0002-a_b-cam-video.webm");
        assert_eq!(names[2], "0003-a_b-cam-video.webm");
    }

    #[test]
    fn ids_are_checked_and_a_track_is_open_once() {
        assert!(Recording::new("../x", "room", 0).is_err());
        assert!(Recording::new("", "room", 0).is_err());
        let mut r = Recording::new("r1", "room", 0).expect("id");
        assert!(r.open_track(key("ana", "cam", true), Codec::Vp8, 0).is_ok());
        assert_eq!(
            r.open_track(key("ana", "cam", true), Codec::Vp8, 5),
            Err(RecordError::AlreadyOpen {
                participant: "ana".into(),
                source_name: "cam".into(),
                kind: "video"
            })
        );
        // Audio of the same source is another track.
        assert!(
            r.open_track(key("ana", "cam", false), Codec::Opus { channels: 2 }, 0)
                .is_ok()
        );
    }

    #[test]
    fn metadata_lists_stays_and_files_with_their_times() {
        let mut r = Recording::new("r1", "standup", 1_700_000_000_000).expect("id");
        r.joined("ana", 0);
        r.joined("ben", 0);
        let audio = key("ana", "mic", false);
        r.open_track(audio.clone(), Codec::Opus { channels: 2 }, 120)
            .expect("open");
        r.left("ben", 4_000);
        r.joined("ben", 9_000);
        r.open_track(key("ben", "cam", true), Codec::Vp8, 9_050)
            .expect("open");
        let stats = TrackStats {
            frames_written: 500,
            bytes: 40_000,
            ..TrackStats::default()
        };
        r.close_track(&audio, 10_120, &stats);
        r.stop(20_000, |_| TrackStats {
            frames_written: 300,
            ..TrackStats::default()
        });
        let v: serde_json::Value = serde_json::from_str(&r.metadata_json()).expect("json");
        assert_eq!(v["conference"], "standup");
        assert_eq!(v["ended_ms"], 20_000);
        let stays: Vec<(String, i64, i64)> = v["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .map(|p| {
                (
                    p["participant"].as_str().unwrap_or("").to_owned(),
                    p["joined_ms"].as_i64().unwrap_or(-1),
                    p["left_ms"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        assert_eq!(
            stays,
            vec![
                ("ana".into(), 0, 20_000),
                ("ben".into(), 0, 4_000),
                ("ben".into(), 9_000, 20_000)
            ]
        );
        let files = v["files"].as_array().expect("files");
        assert_eq!(files[0]["file"], "0001-ana-mic-audio.webm");
        assert_eq!(files[0]["codec"], "Opus");
        assert_eq!(
            (
                files[0]["started_ms"].as_i64(),
                files[0]["ended_ms"].as_i64()
            ),
            (Some(120), Some(10_120))
        );
        assert_eq!(files[0]["frames"], 500);
        assert_eq!(files[1]["file"], "0002-ben-cam-video.webm");
        assert_eq!(files[1]["ended_ms"], 20_000);
        assert_eq!(files[1]["frames"], 300);
    }
}
