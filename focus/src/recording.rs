//! Recordings (issue 21): at most one per conference at a time, written by
//! one of the conference's bridges (the one hosting most of its
//! participants; the relay brings it the others' media), started and
//! stopped by commands, followed through the bridge's reports.
//!
//! The focus keeps each recording's state: active from the start command
//! until the bridge reports it ended (stopped, or failed with a reason), a
//! stop asked, its bridge failed, or its conference ended. Ended ones are
//! kept for listing, the newest [`KEPT_ENDED`].

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::{Focus, FocusError, FocusEvent};

/// Ended recordings listed at most.
pub const KEPT_ENDED: usize = 1_000;
/// How long a started recording may be missing from its bridge's reports
/// before the focus gives up on it (the command was lost with a stream).
const START_REPORTED_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingState {
    Active,
    Stopped,
    Failed,
}

/// A recording as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingView {
    pub id: String,
    pub conference: String,
    pub bridge: String,
    pub state: RecordingState,
    pub started_unix_ms: u64,
    pub ended_unix_ms: Option<u64>,
    pub error: Option<String>,
    pub files: u32,
    pub bytes: u64,
    /// The recording this one continues: that one's bridge lost the
    /// conference (its last participant there left, or it failed) while
    /// the meeting went on elsewhere.
    pub continues: Option<String>,
}

/// What a bridge reports of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingReport {
    pub conference: String,
    pub id: String,
    pub active: bool,
    pub error: String,
    pub files: u32,
    pub bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Recordings {
    /// Running (one per conference at most) and ended, oldest first.
    list: Vec<(Instant, bool, RecordingView)>,
    next: u64,
    /// Recordings whose bridge failed with the whole meeting on it: carried
    /// on where its participants come back, if they do within
    /// `RESUME_WITHIN` (the recording that failed, when, and its bridge).
    resume: Vec<(RecordingView, Instant, String)>,
}

impl Default for Recordings {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            next: 1,
            resume: Vec::new(),
        }
    }
}

/// How long a failed bridge's participants have to come back elsewhere for
/// its recording to carry on (clients rejoin within seconds).
const RESUME_WITHIN: Duration = Duration::from_secs(30);

impl Focus {
    /// Start recording `conference`. `unix_ms` is the wall clock now (the
    /// recording's origin, and part of its id, so ids stay unique across a
    /// focus restart).
    pub fn start_recording(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conference: &str,
    ) -> Result<RecordingView, FocusError> {
        if !self.conferences.contains_key(conference) {
            return Err(FocusError::UnknownConference(conference.to_string()));
        }
        if let Some((_, _, r)) = self
            .recordings
            .list
            .iter()
            .find(|(_, _, r)| r.conference == conference && r.state == RecordingState::Active)
        {
            return Err(FocusError::AlreadyRecording {
                conference: conference.to_string(),
                id: r.id.clone(),
            });
        }
        // A new one replaces one waiting to carry on.
        self.recordings
            .resume
            .retain(|(r, _, _)| r.conference != conference);
        self.start_on(now, unix_ms, conference, None, None)
    }

    /// Start recording `conference` on the bridge with most of it, other
    /// than `not_on`; `continues` names the recording it carries on.
    fn start_on(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conference: &str,
        not_on: Option<&str>,
        continues: Option<String>,
    ) -> Result<RecordingView, FocusError> {
        let conf = self
            .conferences
            .get(conference)
            .ok_or_else(|| FocusError::UnknownConference(conference.to_string()))?;
        // The bridge with most of the conference (the fewest streams to
        // bring over the relay); ties to the smallest id.
        let bridge = conf
            .bridges
            .iter()
            .filter(|(b, ps)| {
                !ps.is_empty()
                    && not_on != Some(b.as_str())
                    && self.bridges.get(*b).is_some_and(|b| b.online)
            })
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .map(|(b, _)| b.clone())
            .ok_or_else(|| FocusError::RecordingRefused {
                conference: conference.to_string(),
                reason: "nobody is connected to it yet".into(),
            })?;
        let id = format!("rec-{unix_ms}-{}", self.recordings.next);
        self.recordings.next += 1;
        let view = RecordingView {
            id: id.clone(),
            conference: conference.to_string(),
            bridge: bridge.clone(),
            state: RecordingState::Active,
            started_unix_ms: unix_ms,
            ended_unix_ms: None,
            error: None,
            files: 0,
            bytes: 0,
            continues,
        };
        self.recordings.list.push((now, false, view.clone()));
        info!(conference, recording = %id, %bridge, continues = view.continues.as_deref().unwrap_or(""), "recording started");
        self.events.push_back(FocusEvent::CommandStartRecording {
            bridge,
            conference: conference.to_string(),
            id: id.clone(),
            started_unix_ms: unix_ms,
        });
        self.notify_recording(conference, &id, true, None);
        Ok(view)
    }

    /// Tell every online bridge (or only `only`) that `conference` is
    /// recorded as `id`, or no longer: each tells its participants in it
    /// (and keeps it for those to come). Every bridge, not only those
    /// hosting it now: a participant placed on another bridge later is
    /// told at once, and a notice is a few bytes per bridge per recording.
    fn notify_recording(&mut self, conference: &str, id: &str, active: bool, only: Option<&str>) {
        let bridges: Vec<String> = self
            .bridges
            .iter()
            .filter(|(b, v)| v.online && only.is_none_or(|o| o == b.as_str()))
            .map(|(b, _)| b.clone())
            .collect();
        for bridge in bridges {
            self.events.push_back(FocusEvent::CommandRecordingNotice {
                bridge,
                conference: conference.to_string(),
                id: id.to_string(),
                active,
            });
        }
    }

    /// A participant of `conference` was placed on `bridge`: the recording
    /// running, if one is.
    pub(crate) fn recording_notice_on_placement(&mut self, conference: &str, bridge: &str) {
        if let Some(i) = self.active_recording(conference) {
            let id = self.recordings.list[i].2.id.clone();
            self.notify_recording(conference, &id, true, Some(bridge));
        }
    }

    /// A bridge registered: the recordings running, for its participants.
    pub(crate) fn recording_notices_for(&mut self, bridge: &str) {
        let active: Vec<(String, String)> = self
            .recordings
            .list
            .iter()
            .filter(|(_, _, r)| r.state == RecordingState::Active)
            .map(|(_, _, r)| (r.conference.clone(), r.id.clone()))
            .collect();
        for (conference, id) in active {
            self.notify_recording(&conference, &id, true, Some(bridge));
        }
    }

    /// Stop `conference`'s recording.
    pub fn stop_recording(
        &mut self,
        now: Instant,
        conference: &str,
    ) -> Result<RecordingView, FocusError> {
        let Some(i) = self.active_recording(conference) else {
            // One waiting to carry on is not carried on.
            if let Some(k) = self
                .recordings
                .resume
                .iter()
                .position(|(r, _, _)| r.conference == conference)
            {
                let (r, _, _) = self.recordings.resume.remove(k);
                self.notify_recording(conference, &r.id, false, None);
            }
            return Err(FocusError::NotRecording(conference.to_string()));
        };
        let (bridge, id) = {
            let r = &self.recordings.list[i].2;
            (r.bridge.clone(), r.id.clone())
        };
        self.events.push_back(FocusEvent::CommandStopRecording {
            bridge,
            conference: conference.to_string(),
            id,
        });
        Ok(self.end(now, i, RecordingState::Stopped, None, true))
    }

    /// Recordings, newest first; only `conference`'s when given.
    pub fn recordings(&self, conference: Option<&str>) -> Vec<RecordingView> {
        self.recordings
            .list
            .iter()
            .rev()
            .filter(|(_, _, r)| conference.is_none_or(|c| r.conference == c))
            .map(|(_, _, r)| r.clone())
            .collect()
    }

    /// What bridge `bridge` reported of its recordings.
    pub(crate) fn take_recording_reports(
        &mut self,
        now: Instant,
        bridge: &str,
        reports: &[RecordingReport],
    ) {
        // A recording running that this focus does not know (it restarted):
        // adopted, so it can be listed and stopped. Its wall-clock start is
        // not reported; the id carries it (`rec-<unix ms>-<n>`).
        for p in reports.iter().filter(|p| p.active) {
            if self.recordings.list.iter().any(|(_, _, r)| r.id == p.id) {
                continue;
            }
            let started_unix_ms =
                p.id.strip_prefix("rec-")
                    .and_then(|r| r.split('-').next())
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
            info!(conference = %p.conference, recording = %p.id, bridge, "recording adopted");
            self.notify_recording(&p.conference, &p.id, true, None);
            self.recordings.list.push((
                now,
                true,
                RecordingView {
                    id: p.id.clone(),
                    conference: p.conference.clone(),
                    bridge: bridge.to_string(),
                    state: RecordingState::Active,
                    started_unix_ms,
                    ended_unix_ms: None,
                    error: None,
                    files: p.files,
                    bytes: p.bytes,
                    continues: None,
                },
            ));
        }
        for i in (0..self.recordings.list.len()).rev() {
            let (started, _, r) = &self.recordings.list[i];
            if r.state != RecordingState::Active || r.bridge != bridge {
                continue;
            }
            let started = *started;
            match reports.iter().find(|p| p.id == r.id) {
                Some(p) => {
                    let e = &mut self.recordings.list[i];
                    e.1 = true;
                    e.2.files = p.files;
                    e.2.bytes = p.bytes;
                    if !p.active {
                        if p.error.is_empty() {
                            // Not asked (an asked stop is no longer
                            // active here): the conference left that
                            // bridge. The meeting may go on elsewhere.
                            let ended = self.end(now, i, RecordingState::Stopped, None, false);
                            self.continue_elsewhere(now, ended, bridge, false);
                        } else {
                            self.end(now, i, RecordingState::Failed, Some(p.error.clone()), true);
                        }
                    }
                }
                None if self.recordings.list[i].1
                    || now.saturating_duration_since(started) >= START_REPORTED_WITHIN =>
                {
                    // Reported before and now gone (the bridge restarted),
                    // or never heard of.
                    self.end(
                        now,
                        i,
                        RecordingState::Failed,
                        Some(format!("bridge {bridge} does not report it")),
                        true,
                    );
                }
                None => {}
            }
        }
    }

    /// Bridge `bridge` failed: its recordings with it.
    pub(crate) fn recordings_bridge_failed(&mut self, now: Instant, bridge: &str, reason: &str) {
        for i in 0..self.recordings.list.len() {
            let r = &self.recordings.list[i].2;
            if r.state == RecordingState::Active && r.bridge == bridge {
                let ended = self.end(
                    now,
                    i,
                    RecordingState::Failed,
                    Some(format!("bridge {bridge} failed: {reason}")),
                    false,
                );
                self.continue_elsewhere(now, ended, bridge, true);
            }
        }
    }

    fn active_recording(&self, conference: &str) -> Option<usize> {
        self.recordings
            .list
            .iter()
            .position(|(_, _, r)| r.conference == conference && r.state == RecordingState::Active)
    }

    /// `ended` stopped with its bridge's part of the conference: a new
    /// recording carries on where the rest of it is (participants there
    /// see the recording go on). With nobody elsewhere: bridges hear it
    /// ended, unless `failed` (its bridge failed: its participants come
    /// back elsewhere within seconds, and the recording carries on there
    /// when that bridge reports them, `resume_recordings`).
    fn continue_elsewhere(
        &mut self,
        now: Instant,
        ended: RecordingView,
        bridge: &str,
        failed: bool,
    ) {
        let unix_ms = ended.ended_unix_ms.unwrap_or(ended.started_unix_ms);
        match self.start_on(
            now,
            unix_ms,
            &ended.conference,
            Some(bridge),
            Some(ended.id.clone()),
        ) {
            Ok(next) => {
                info!(conference = %ended.conference, from = %ended.id, to = %next.id, bridge = %next.bridge, "recording continues on another bridge")
            }
            Err(_) if failed => {
                info!(conference = %ended.conference, recording = %ended.id, "recording waits for the meeting to come back");
                self.recordings
                    .resume
                    .push((ended, now, bridge.to_string()));
            }
            Err(_) => self.notify_recording(&ended.conference, &ended.id, false, None),
        }
    }

    /// After a bridge's report: recordings waiting for their meeting to
    /// come back carry on where it did; those waiting too long end (the
    /// bridges hear it).
    pub(crate) fn resume_recordings(&mut self, now: Instant) {
        let waiting = std::mem::take(&mut self.recordings.resume);
        for (ended, at, bridge) in waiting {
            let since = now.saturating_duration_since(at);
            let unix_ms =
                ended.ended_unix_ms.unwrap_or(ended.started_unix_ms) + since.as_millis() as u64;
            if self.active_recording(&ended.conference).is_some() {
                continue;
            }
            match self.start_on(
                now,
                unix_ms,
                &ended.conference,
                Some(&bridge),
                Some(ended.id.clone()),
            ) {
                Ok(next) => {
                    info!(conference = %ended.conference, from = %ended.id, to = %next.id, bridge = %next.bridge, "recording continues where the meeting came back")
                }
                Err(_) if since < RESUME_WITHIN => {
                    self.recordings.resume.push((ended, at, bridge));
                }
                Err(_) => self.notify_recording(&ended.conference, &ended.id, false, None),
            }
        }
    }

    /// End recording `i`; `notify`: tell every bridge (else the caller
    /// does, or a continuation takes over).
    fn end(
        &mut self,
        now: Instant,
        i: usize,
        state: RecordingState,
        error: Option<String>,
        notify: bool,
    ) -> RecordingView {
        let (started, _, r) = &mut self.recordings.list[i];
        let ran = now.saturating_duration_since(*started);
        r.state = state;
        r.ended_unix_ms = Some(r.started_unix_ms + ran.as_millis() as u64);
        if let Some(e) = &error {
            warn!(conference = %r.conference, recording = %r.id, error = %e, "recording failed");
        }
        r.error = error;
        let view = r.clone();
        if notify {
            self.notify_recording(&view.conference, &view.id, false, None);
        }
        // Keep the newest KEPT_ENDED ended ones (and every active one).
        let ended = self
            .recordings
            .list
            .iter()
            .filter(|(_, _, r)| r.state != RecordingState::Active)
            .count();
        if ended > KEPT_ENDED
            && let Some(oldest) = self
                .recordings
                .list
                .iter()
                .position(|(_, _, r)| r.state != RecordingState::Active)
        {
            self.recordings.list.remove(oldest);
        }
        view
    }
}

#[cfg(test)]
mod tests;
