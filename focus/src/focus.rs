//! The `Focus` state machine: its inputs (`handle_*`, `allocate`,
//! `set_drain`, `end_conference`) with the current `Instant`, its outputs
//! (`poll_event`, `poll_timeout`) and its read-only views.
//!
//! Each input calls on the concepts in a fixed order (registry, conference
//! map, failure and drain, placement, relay reconciliation): the order of
//! the events it emits is part of what the simulator's trace hashes. It
//! must not do I/O or read a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::info;

use crate::conference::Conference;
use crate::registry::{self, Bridge, BridgeView, Registration, Report};
use crate::stress_index::StressIndex;
use crate::{ConferenceMode, FocusConfig, FocusError, FocusEvent, Placement, placement};

/// Resolution of heartbeat and drain checks.
const TICK: Duration = Duration::from_millis(100);

pub struct Focus {
    /// None until the first `handle_timeout`: due at once.
    next_tick: Option<Instant>,
    pub(crate) cfg: FocusConfig,
    pub(crate) bridges: BTreeMap<String, Bridge>,
    /// Operational bridges by corrected stress (placement's index); kept
    /// up to date by every input that changes a bridge (`reindex`).
    pub(crate) index: StressIndex,
    pub(crate) conferences: BTreeMap<String, Conference>,
    pub(crate) events: VecDeque<FocusEvent>,
    /// What each bridge was last told about each conference's relay peers:
    /// (conference, bridge) → peers.
    pub(crate) relay_told: BTreeMap<(String, String), Vec<(String, String)>>,
    /// Conferences whose relay peers may have changed since the last
    /// reconciliation (see `reconcile_relay`).
    pub(crate) relay_dirty: BTreeSet<String>,
    /// Recordings running and ended (`recording.rs`).
    pub(crate) recordings: crate::recording::Recordings,
}

impl Focus {
    pub fn new(cfg: FocusConfig) -> Self {
        Self {
            next_tick: None,
            cfg,
            bridges: BTreeMap::new(),
            index: StressIndex::default(),
            conferences: BTreeMap::new(),
            events: VecDeque::new(),
            relay_told: BTreeMap::new(),
            relay_dirty: BTreeSet::new(),
            recordings: Default::default(),
        }
    }

    pub fn config(&self) -> &FocusConfig {
        &self.cfg
    }

    pub fn poll_event(&mut self) -> Option<FocusEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must run next. A fixed tick rather than the
    /// earliest deadline: with thousands of bridges reporting every second,
    /// scanning them for the minimum on every event costs more than waking
    /// ten times a second; failures are detected within one tick of the
    /// heartbeat timeout.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        self.next_tick.map_or(now, |t| t.max(now))
    }

    /// A bridge (re)connected. A bridge that is online already cannot register
    /// twice; one that failed or restarted can, and what it reports it hosts
    /// becomes the focus's view (this is how a restarted focus rebuilds).
    pub fn handle_register(&mut self, now: Instant, reg: Registration) -> Result<(), FocusError> {
        registry::check_registration(&self.bridges, &reg)?;
        let id = reg.id.clone();
        let hosted = reg.conferences.clone();
        let bridge = Bridge::registered(now, reg, self.bridges.get(&id));
        let drain_requested = bridge.drain_requested;
        self.bridges.insert(id.clone(), bridge);
        self.reindex(now, &id);
        self.adopt(now, &id, &hosted);
        self.forget_relay_peers_of(&id);
        info!(bridge = %id, conferences = hosted.len(), "bridge registered");
        self.events
            .push_back(FocusEvent::BridgeUp { id: id.clone() });
        self.recording_notices_for(&id);
        if drain_requested {
            self.events.push_back(FocusEvent::CommandDrain {
                bridge: id,
                draining: true,
            });
        }
        Ok(())
    }

    /// A bridge's periodic report: its load, its state, what it hosts. A
    /// report saying `healthy: false` fails the bridge at once.
    pub fn handle_report(&mut self, now: Instant, id: &str, r: Report) -> Result<(), FocusError> {
        let b = self
            .bridges
            .get_mut(id)
            .filter(|b| b.online)
            .ok_or_else(|| FocusError::UnknownBridge(id.to_string()))?;
        b.take_load(now, &r, &self.cfg);
        if !r.healthy {
            self.fail(now, id, "bridge reported itself unhealthy".into());
            return Ok(());
        }
        let new_state = b.reported_state(&r);
        if new_state != b.state {
            b.state = new_state;
            self.events.push_back(FocusEvent::BridgeDrain {
                id: id.to_string(),
                draining: new_state != registry::BridgeState::Operational,
            });
        }
        self.reindex(now, id);
        self.adopt(now, id, &r.conferences);
        self.take_recording_reports(now, id, &r.recordings);
        self.resume_recordings(now);
        Ok(())
    }

    /// The bridge's control stream ended (process died, network cut).
    pub fn handle_disconnect(&mut self, now: Instant, id: &str, reason: &str) {
        if self.bridges.get(id).is_some_and(|b| b.online) {
            self.fail(now, id, format!("control stream closed: {reason}"));
        }
    }

    /// Time passed: fail silent bridges, move participants off draining ones.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_tick = Some(now + TICK);
        self.fail_silent_bridges(now);
        self.resume_recordings(now);
        self.drain_step(now);
        self.reconcile_relay();
    }

    /// Operator drain (or undrain) of a bridge.
    pub fn set_drain(
        &mut self,
        now: Instant,
        id: &str,
        draining: bool,
    ) -> Result<BridgeView, FocusError> {
        if !self.request_drain(now, id, draining) {
            return Err(FocusError::UnknownBridge(id.to_string()));
        }
        self.bridge(now, id)
            .ok_or_else(|| FocusError::UnknownBridge(id.to_string()))
    }

    /// End a conference: every bridge hosting it is told to close it.
    pub fn end_conference(&mut self, name: &str) -> Result<usize, FocusError> {
        let conf = self
            .conferences
            .remove(name)
            .ok_or_else(|| FocusError::UnknownConference(name.to_string()))?;
        self.relay_dirty.insert(name.to_string());
        let mut n = 0;
        for (bridge, ps) in conf.bridges {
            n += ps.len();
            self.events.push_back(FocusEvent::CommandEndConference {
                bridge,
                conference: name.to_string(),
            });
        }
        Ok(n)
    }

    /// A participant left (the shell learns it from reports; this makes the
    /// focus's view exact at once, e.g. after an explicit end).
    pub fn handle_left(&mut self, conference: &str, participant: &str) {
        if let Some(c) = self.conferences.get_mut(conference) {
            for ps in c.bridges.values_mut() {
                ps.remove(participant);
            }
        }
    }

    /// Choose a bridge for `participant` of `conference`.
    pub fn allocate(
        &mut self,
        now: Instant,
        conference: &str,
        participant: &str,
        region: Option<&str>,
    ) -> Result<Placement, FocusError> {
        self.allocate_with_options(now, conference, participant, region, None, None)
    }

    /// [`Self::allocate`] naming the conference's video codec (see
    /// [`Self::allocate_with_options`]).
    pub fn allocate_with_codec(
        &mut self,
        now: Instant,
        conference: &str,
        participant: &str,
        region: Option<&str>,
        video_codec: Option<&str>,
    ) -> Result<Placement, FocusError> {
        self.allocate_with_options(now, conference, participant, region, video_codec, None)
    }

    /// [`Self::allocate`] naming the conference's video codec: the first
    /// allocation that names one sets it for the conference (on every
    /// bridge, through the tokens), an allocation naming another is refused
    /// before anything is placed, and one naming none gets the conference's.
    /// The conference's mode works the same way: the first allocation's
    /// `mode` (forwarding when it names none) holds for the conference's
    /// life; a mixed conference is placed on one bridge.
    pub fn allocate_with_options(
        &mut self,
        now: Instant,
        conference: &str,
        participant: &str,
        region: Option<&str>,
        video_codec: Option<&str>,
        mode: Option<ConferenceMode>,
    ) -> Result<Placement, FocusError> {
        for (field, v) in [("conference", conference), ("participant", participant)] {
            if v.is_empty() || v.len() > 128 {
                return Err(FocusError::Invalid {
                    field,
                    reason: "must be 1-128 characters".into(),
                });
            }
        }
        let video_codec = video_codec.filter(|c| !c.is_empty());
        if let (Some(uses), Some(asked)) = (
            self.conferences
                .get(conference)
                .and_then(|c| c.video_codec.as_deref()),
            video_codec,
        ) && uses != asked
        {
            return Err(FocusError::CodecMismatch {
                conference: conference.to_string(),
                uses: uses.to_string(),
                asked: asked.to_string(),
            });
        }
        if let (Some(uses), Some(asked)) =
            (self.conferences.get(conference).and_then(|c| c.mode), mode)
            && uses != asked
        {
            return Err(FocusError::ModeMismatch {
                conference: conference.to_string(),
                uses,
                asked,
            });
        }
        if let Some(ConferenceMode::Mixed { sample_rate, video }) = mode {
            if ![8_000, 12_000, 16_000, 24_000, 48_000].contains(&sample_rate) {
                return Err(FocusError::Invalid {
                    field: "audio_sample_rate",
                    reason: format!("{sample_rate} is not 8000, 12000, 16000, 24000 or 48000"),
                });
            }
            let (w, h) = (video.width, video.height);
            let bridge_default = w == 0 && h == 0;
            let fits = (16..=1920).contains(&w)
                && (16..=1080).contains(&h)
                && w.is_multiple_of(2)
                && h.is_multiple_of(2);
            if !bridge_default && !fits {
                return Err(FocusError::Invalid {
                    field: "video_width",
                    reason: format!(
                        "{w}x{h}: the composite is even, 16x16 to 1920x1080 (or 0x0, the bridge's)"
                    ),
                });
            }
        }
        let region = region
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.cfg.local_region)
            .to_string();
        let (id, rule) = placement::select(
            now,
            &self.cfg,
            &self.bridges,
            &mut self.index,
            self.conferences.get(conference),
            participant,
            &region,
        )?;
        let b = self
            .bridges
            .get_mut(&id)
            .ok_or_else(|| FocusError::UnknownBridge(id.clone()))?;
        let joined = b.record_join(now);
        let mixed = self
            .conferences
            .get(conference)
            .and_then(|c| c.mode)
            .or(mode)
            .is_some_and(|m| m != ConferenceMode::Forwarding);
        if mixed {
            b.record_mixed_join(joined);
        }
        self.index.join_placed(&id, joined, &self.cfg);
        let mut placement = Placement {
            bridge_id: id.clone(),
            region: b.reg.region.clone(),
            signal_url: b.reg.signal_url.clone(),
            rule,
            video_codec: None,
            mode: ConferenceMode::Forwarding,
        };
        let version = b.reg.version.clone();
        self.reindex(now, &id);
        self.place_in_conference(now, conference, participant, &id, version);
        if let Some(c) = self.conferences.get_mut(conference) {
            if c.video_codec.is_none() {
                c.video_codec = video_codec.map(str::to_string);
            }
            placement.video_codec = c.video_codec.clone();
            let mode = *c.mode.get_or_insert(mode.unwrap_or_default());
            placement.mode = mode;
        }
        self.events.push_back(FocusEvent::Allocated {
            conference: conference.to_string(),
            participant: participant.to_string(),
            bridge: id.clone(),
        });
        // Its bridge may have forgotten the conference's recording (it
        // hosted nobody of it since): told again before the participant
        // joins there.
        self.recording_notice_on_placement(conference, &id);
        self.reconcile_relay();
        Ok(placement)
    }

    /// File bridge `id` in the stress index as it is now.
    pub(crate) fn reindex(&mut self, now: Instant, id: &str) {
        if let Some(b) = self.bridges.get(id) {
            self.index.update(now, &self.cfg, id, b);
        }
    }

    pub fn bridge(&self, now: Instant, id: &str) -> Option<BridgeView> {
        self.bridges
            .get(id)
            .map(|b| b.view(now, &self.cfg, self.conferences_on(id)))
    }

    pub fn bridges(&self, now: Instant) -> Vec<BridgeView> {
        self.bridges
            .iter()
            .map(|(id, b)| b.view(now, &self.cfg, self.conferences_on(id)))
            .collect()
    }

    /// Conference → bridge → participants.
    pub fn conference(&self, name: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
        self.conferences.get(name).map(|c| c.bridges.clone())
    }

    pub fn conference_names(&self) -> Vec<String> {
        self.conferences.keys().cloned().collect()
    }
}
