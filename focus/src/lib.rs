//! The focus core: which bridge a participant should use, and what to do when
//! bridges fail, hang or drain.
//!
//! Sans-IO: `handle_*` inputs with the current `Instant`, `poll_event` /
//! `poll_timeout` outputs. The gRPC and HTTP shell lives in the `tern` binary.
//!
//! Placement follows Jicofo's region-based selection (anchors.md §4) with the
//! focus-side *corrected stress* that counts joins the bridges' reports do not
//! show yet, so a burst of joins spreads instead of landing on one bridge.

mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// The bridge ↔ focus control API versions this focus accepts.
pub const API_VERSIONS: std::ops::RangeInclusive<u32> = 1..=1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FocusError {
    #[error("bridge {0} is already registered and online")]
    DuplicateBridge(String),
    #[error("bridge {id} speaks control API version {version}; this focus accepts {min}..={max}")]
    IncompatibleApi {
        id: String,
        version: u32,
        min: u32,
        max: u32,
    },
    #[error("unknown bridge {0}")]
    UnknownBridge(String),
    #[error("unknown conference {0}")]
    UnknownConference(String),
    #[error("no bridge available: {0}")]
    NoBridge(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Jicofo's region-based order (the default).
    RegionBased,
    /// Every conference on exactly one bridge (no cascading).
    SingleBridge,
    /// Every participant of a conference on a different bridge when possible
    /// (exercises cascading).
    Split,
}

#[derive(Debug, Clone)]
pub struct FocusConfig {
    /// Region used when a request names none.
    pub local_region: String,
    /// Regions that are close to each other (e.g. `["eu-west", "eu-central"]`).
    pub region_groups: Vec<Vec<String>>,
    pub strategy: Strategy,
    /// Corrected stress at which a bridge counts as overloaded.
    pub overload_stress: f64,
    /// Participants of one conference one bridge takes before it is overloaded
    /// for that conference.
    pub participant_cap: usize,
    /// Optional: at most this many joins per bridge per minute.
    pub max_joins_per_minute: Option<usize>,
    /// Joins this recent count towards corrected stress.
    pub recent_join_window: Duration,
    /// Stress one participant adds (Jicofo's default 0.01).
    pub participant_stress: f64,
    /// A bridge that sends no report for this long has failed.
    pub heartbeat_timeout: Duration,
    /// Draining bridges lose one conference to other bridges this often.
    pub drain_interval: Duration,
}

impl Default for FocusConfig {
    fn default() -> Self {
        Self {
            local_region: "local".into(),
            region_groups: Vec::new(),
            strategy: Strategy::RegionBased,
            overload_stress: 0.8,
            participant_cap: 80,
            max_joins_per_minute: None,
            recent_join_window: Duration::from_secs(20),
            participant_stress: 0.01,
            heartbeat_timeout: Duration::from_secs(3),
            drain_interval: Duration::from_secs(1),
        }
    }
}

/// What a bridge says about itself when it (re)connects.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub id: String,
    pub region: String,
    pub version: String,
    pub api_version: u32,
    pub signal_url: String,
    pub relay_addr: String,
    pub max_packet_rate: u64,
    /// Conference → participants it already hosts (after a focus restart).
    pub conferences: BTreeMap<String, BTreeSet<String>>,
}

/// A bridge's periodic report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rtp_packets_in_per_s: u64,
    pub rtp_packets_out_per_s: u64,
    pub endpoints: u32,
    pub healthy: bool,
    pub draining: bool,
    pub shutting_down: bool,
    pub conferences: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeState {
    Operational,
    Draining,
    ShuttingDown,
    Failed,
}

/// The focus's view of one bridge.
#[derive(Debug, Clone)]
pub struct BridgeView {
    pub reg: Registration,
    pub state: BridgeState,
    pub online: bool,
    pub stress: f64,
    pub corrected_stress: f64,
    pub conferences: usize,
    pub endpoints: u32,
    pub last_failure: Option<String>,
    pub since_report: Duration,
}

#[derive(Debug)]
struct Bridge {
    reg: Registration,
    state: BridgeState,
    online: bool,
    /// The operator asked for drain (survives reports that say otherwise).
    drain_requested: bool,
    stress: f64,
    endpoints: u32,
    last_report: Instant,
    joins: VecDeque<Instant>,
    last_failure: Option<String>,
    next_drain_move: Instant,
    /// Conferences this bridge appears in, so a report touches only those.
    hosts: BTreeSet<String>,
}

impl Bridge {
    fn usable(&self) -> bool {
        self.online && matches!(self.state, BridgeState::Operational | BridgeState::Draining)
    }

    fn corrected_stress(&self, now: Instant, cfg: &FocusConfig) -> f64 {
        let recent = self
            .joins
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < cfg.recent_join_window)
            .count();
        self.stress + recent as f64 * cfg.participant_stress
    }

    fn joins_last_minute(&self, now: Instant) -> usize {
        self.joins
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < Duration::from_secs(60))
            .count()
    }
}

/// Where a participant goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub bridge_id: String,
    pub region: String,
    pub signal_url: String,
    /// Which rule of the selection order chose it (1–8; 0 for strategies
    /// other than region-based).
    pub rule: u8,
}

/// What happened, for the shell to act on (commands) or publish (Watch).
#[derive(Debug, Clone, PartialEq)]
pub enum FocusEvent {
    BridgeUp {
        id: String,
    },
    BridgeDown {
        id: String,
        reason: String,
    },
    BridgeDrain {
        id: String,
        draining: bool,
    },
    Allocated {
        conference: String,
        participant: String,
        bridge: String,
    },
    /// A participant must reconnect through the focus (its bridge failed or
    /// is draining). `from` is the bridge it was on.
    Moved {
        conference: String,
        participant: String,
        from: String,
        reason: String,
    },
    /// Send to a bridge: ask these participants to move (empty = all).
    CommandMove {
        bridge: String,
        conference: String,
        participants: Vec<String>,
        reason: String,
    },
    CommandDrain {
        bridge: String,
        draining: bool,
    },
    CommandEndConference {
        bridge: String,
        conference: String,
    },
    /// Send to a bridge: the other bridges hosting `conference`, as
    /// (bridge id, relay address); empty = none any more.
    CommandRelayPeers {
        bridge: String,
        conference: String,
        peers: Vec<(String, String)>,
    },
}

/// How long an allocation counts as present before a bridge report confirms
/// it: reports lag joins (a participant allocated now connects within a
/// second or two), and must not make it vanish meanwhile.
const PENDING_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Conference {
    /// bridge id → participants on it.
    bridges: BTreeMap<String, BTreeSet<String>>,
    /// Allocations not yet seen in a report: (bridge, participant) → when.
    pending: BTreeMap<(String, String), Instant>,
    /// The software version of its bridges; others are never added.
    version: Option<String>,
}

/// Resolution of heartbeat and drain checks.
const TICK: Duration = Duration::from_millis(100);

pub struct Focus {
    /// None until the first `handle_timeout`: due at once.
    next_tick: Option<Instant>,
    cfg: FocusConfig,
    bridges: BTreeMap<String, Bridge>,
    conferences: BTreeMap<String, Conference>,
    events: VecDeque<FocusEvent>,
    /// What each bridge was last told about each conference's relay peers.
    relay_told: BTreeMap<(String, String), Vec<(String, String)>>,
}

impl Focus {
    pub fn new(cfg: FocusConfig) -> Self {
        Self {
            next_tick: None,
            cfg,
            bridges: BTreeMap::new(),
            conferences: BTreeMap::new(),
            events: VecDeque::new(),
            relay_told: BTreeMap::new(),
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
        if reg.id.is_empty() || reg.id.len() > 128 {
            return Err(FocusError::Invalid {
                field: "bridge_id",
                reason: "must be 1-128 characters".into(),
            });
        }
        if reg.signal_url.is_empty() {
            return Err(FocusError::Invalid {
                field: "signal_url",
                reason: "must not be empty".into(),
            });
        }
        if !API_VERSIONS.contains(&reg.api_version) {
            return Err(FocusError::IncompatibleApi {
                id: reg.id,
                version: reg.api_version,
                min: *API_VERSIONS.start(),
                max: *API_VERSIONS.end(),
            });
        }
        if self.bridges.get(&reg.id).is_some_and(|b| b.online) {
            return Err(FocusError::DuplicateBridge(reg.id));
        }
        let id = reg.id.clone();
        let hosted = reg.conferences.clone();
        let last_failure = self.bridges.get(&id).and_then(|b| b.last_failure.clone());
        let drain_requested = self.bridges.get(&id).is_some_and(|b| b.drain_requested);
        self.bridges.insert(
            id.clone(),
            Bridge {
                reg,
                state: if drain_requested {
                    BridgeState::Draining
                } else {
                    BridgeState::Operational
                },
                online: true,
                drain_requested,
                stress: 0.0,
                endpoints: 0,
                last_report: now,
                joins: VecDeque::new(),
                last_failure,
                next_drain_move: now,
                hosts: self
                    .bridges
                    .get(&id)
                    .map(|b| b.hosts.clone())
                    .unwrap_or_default(),
            },
        );
        self.adopt(now, &id, &hosted);
        // A (re)started bridge knows nothing of its relay peers: tell it
        // again, and its peers too (its relay address may have changed).
        self.relay_told
            .retain(|(b, _), peers| *b != id && !peers.iter().any(|(p, _)| *p == id));
        info!(bridge = %id, conferences = hosted.len(), "bridge registered");
        self.events
            .push_back(FocusEvent::BridgeUp { id: id.clone() });
        if drain_requested {
            self.events.push_back(FocusEvent::CommandDrain {
                bridge: id,
                draining: true,
            });
        }
        Ok(())
    }

    /// Make the conference map agree with what a bridge says it hosts, plus
    /// its allocations too recent to be in the report.
    fn adopt(&mut self, now: Instant, id: &str, hosted: &BTreeMap<String, BTreeSet<String>>) {
        let version = self.bridges.get(id).map(|b| b.reg.version.clone());
        let known = self
            .bridges
            .get(id)
            .map(|b| b.hosts.clone())
            .unwrap_or_default();
        for name in &known {
            let Some(conf) = self.conferences.get_mut(name) else {
                continue;
            };
            let reported = hosted.get(name);
            conf.pending.retain(|(b, p), t| {
                b != id
                    || (now.saturating_duration_since(*t) < PENDING_GRACE
                        && !reported.is_some_and(|r| r.contains(p)))
            });
            let mut set: BTreeSet<String> = reported.cloned().unwrap_or_default();
            set.extend(
                conf.pending
                    .keys()
                    .filter(|(b, _)| b == id)
                    .map(|(_, p)| p.clone()),
            );
            if set.is_empty() {
                conf.bridges.remove(id);
            } else {
                conf.bridges.insert(id.to_string(), set);
            }
        }
        for (name, participants) in hosted {
            let conf = self.conferences.entry(name.clone()).or_default();
            if conf.version.is_none() {
                conf.version = version.clone();
            }
            conf.bridges
                .entry(id.to_string())
                .or_default()
                .extend(participants.iter().cloned());
        }
        let mut now_hosts = BTreeSet::new();
        for name in known.iter().chain(hosted.keys()) {
            let empty = match self.conferences.get(name) {
                Some(c) if c.bridges.contains_key(id) => {
                    now_hosts.insert(name.clone());
                    false
                }
                Some(c) => c.bridges.is_empty(),
                None => false,
            };
            if empty {
                self.conferences.remove(name);
            }
        }
        if let Some(b) = self.bridges.get_mut(id) {
            b.hosts = now_hosts;
        }
    }

    pub fn handle_report(&mut self, now: Instant, id: &str, r: Report) -> Result<(), FocusError> {
        let cfg = &self.cfg;
        let b = self
            .bridges
            .get_mut(id)
            .filter(|b| b.online)
            .ok_or_else(|| FocusError::UnknownBridge(id.to_string()))?;
        b.last_report = now;
        let rate = b.reg.max_packet_rate.max(1) as f64;
        b.stress = (r.rtp_packets_in_per_s + r.rtp_packets_out_per_s) as f64 / rate;
        b.endpoints = r.endpoints;
        // Joins older than the window no longer matter for corrected stress.
        while b.joins.front().is_some_and(|&t| {
            now.saturating_duration_since(t) >= Duration::from_secs(60).max(cfg.recent_join_window)
        }) {
            b.joins.pop_front();
        }
        if !r.healthy {
            self.fail(now, id, "bridge reported itself unhealthy".into());
            return Ok(());
        }
        let new_state = if r.shutting_down {
            BridgeState::ShuttingDown
        } else if r.draining || b.drain_requested {
            BridgeState::Draining
        } else {
            BridgeState::Operational
        };
        if new_state != b.state {
            b.state = new_state;
            self.events.push_back(FocusEvent::BridgeDrain {
                id: id.to_string(),
                draining: new_state != BridgeState::Operational,
            });
        }
        self.adopt(now, id, &r.conferences);
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

        let silent: Vec<(String, Duration)> = self
            .bridges
            .iter()
            .filter(|(_, b)| b.online)
            .map(|(id, b)| (id.clone(), now.saturating_duration_since(b.last_report)))
            .filter(|(_, d)| *d >= self.cfg.heartbeat_timeout)
            .collect();
        for (id, d) in silent {
            self.fail(now, &id, format!("no report for {} ms", d.as_millis()));
        }
        let draining: Vec<String> = self
            .bridges
            .iter()
            .filter(|(_, b)| {
                b.online
                    && matches!(b.state, BridgeState::Draining | BridgeState::ShuttingDown)
                    && b.next_drain_move <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in draining {
            // One conference at a time, so the rest of the cluster absorbs
            // the move gradually.
            let next = self
                .conferences
                .iter()
                .find(|(_, c)| c.bridges.get(&id).is_some_and(|p| !p.is_empty()))
                .map(|(name, _)| name.clone());
            if let Some(b) = self.bridges.get_mut(&id) {
                b.next_drain_move = now + self.cfg.drain_interval;
            }
            if let Some(conf) = next {
                let participants: Vec<String> = self
                    .conferences
                    .get_mut(&conf)
                    .and_then(|c| {
                        c.pending.retain(|(b, _), _| *b != id);
                        c.bridges.remove(&id)
                    })
                    .map(|p| p.into_iter().collect())
                    .unwrap_or_default();
                for p in &participants {
                    self.events.push_back(FocusEvent::Moved {
                        conference: conf.clone(),
                        participant: p.clone(),
                        from: id.clone(),
                        reason: "bridge draining".into(),
                    });
                }
                self.events.push_back(FocusEvent::CommandMove {
                    bridge: id.clone(),
                    conference: conf,
                    participants,
                    reason: "bridge draining".into(),
                });
                self.conferences.retain(|_, c| !c.bridges.is_empty());
            }
        }
        self.reconcile_relay();
    }

    /// Tell every bridge which other bridges share its conferences, when
    /// that changed. Bridges without a relay address cannot take part; a
    /// bridge that re-registers is told everything again (see
    /// `handle_register`). Runs every tick and after each allocation, so a
    /// conference spreading to a new bridge is meshed before its first
    /// participant finishes connecting.
    fn reconcile_relay(&mut self) {
        let mut want: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for (name, conf) in &self.conferences {
            if conf.bridges.len() < 2 {
                continue;
            }
            let members: Vec<(String, String)> = conf
                .bridges
                .keys()
                .filter_map(|id| self.bridges.get(id).map(|b| (id, b)))
                .filter(|(_, b)| b.online && !b.reg.relay_addr.is_empty())
                .map(|(id, b)| (id.clone(), b.reg.relay_addr.clone()))
                .collect();
            for (id, _) in &members {
                let peers: Vec<(String, String)> =
                    members.iter().filter(|(o, _)| o != id).cloned().collect();
                if !peers.is_empty() {
                    want.insert((id.clone(), name.clone()), peers);
                }
            }
        }
        let stale: Vec<(String, String)> = self
            .relay_told
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            self.relay_told.remove(&key);
            let online = self.bridges.get(&key.0).is_some_and(|b| b.online);
            if online {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge: key.0,
                    conference: key.1,
                    peers: Vec::new(),
                });
            }
        }
        for (key, peers) in want {
            if self.relay_told.get(&key) != Some(&peers) {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge: key.0.clone(),
                    conference: key.1.clone(),
                    peers: peers.clone(),
                });
                self.relay_told.insert(key, peers);
            }
        }
    }

    fn fail(&mut self, _now: Instant, id: &str, reason: String) {
        let Some(b) = self.bridges.get_mut(id) else {
            return;
        };
        warn!(bridge = %id, %reason, "bridge failed");
        b.online = false;
        b.state = BridgeState::Failed;
        b.last_failure = Some(reason.clone());
        b.joins.clear();
        // What it last reported is no longer true.
        b.stress = 0.0;
        b.endpoints = 0;
        b.hosts.clear();
        let mut moved = Vec::new();
        for (name, conf) in self.conferences.iter_mut() {
            if let Some(ps) = conf.bridges.remove(id) {
                moved.extend(ps.into_iter().map(|p| (name.clone(), p)));
            }
            conf.pending.retain(|(b, _), _| b != id);
        }
        self.conferences.retain(|_, c| !c.bridges.is_empty());
        self.events.push_back(FocusEvent::BridgeDown {
            id: id.to_string(),
            reason: reason.clone(),
        });
        for (conference, participant) in moved {
            self.events.push_back(FocusEvent::Moved {
                conference,
                participant,
                from: id.to_string(),
                reason: format!("bridge failed: {reason}"),
            });
        }
    }

    /// Operator drain (or undrain) of a bridge.
    pub fn set_drain(
        &mut self,
        now: Instant,
        id: &str,
        draining: bool,
    ) -> Result<BridgeView, FocusError> {
        let b = self
            .bridges
            .get_mut(id)
            .ok_or_else(|| FocusError::UnknownBridge(id.to_string()))?;
        b.drain_requested = draining;
        if b.state != BridgeState::Failed && b.state != BridgeState::ShuttingDown {
            b.state = if draining {
                BridgeState::Draining
            } else {
                BridgeState::Operational
            };
            b.next_drain_move = now;
        }
        self.events.push_back(FocusEvent::CommandDrain {
            bridge: id.to_string(),
            draining,
        });
        self.events.push_back(FocusEvent::BridgeDrain {
            id: id.to_string(),
            draining,
        });
        self.bridge(now, id)
            .ok_or_else(|| FocusError::UnknownBridge(id.to_string()))
    }

    /// End a conference: every bridge hosting it is told to close it.
    pub fn end_conference(&mut self, name: &str) -> Result<usize, FocusError> {
        let conf = self
            .conferences
            .remove(name)
            .ok_or_else(|| FocusError::UnknownConference(name.to_string()))?;
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
        for (field, v) in [("conference", conference), ("participant", participant)] {
            if v.is_empty() || v.len() > 128 {
                return Err(FocusError::Invalid {
                    field,
                    reason: "must be 1-128 characters".into(),
                });
            }
        }
        let region = region
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.cfg.local_region)
            .to_string();
        let (id, rule) = self.select(now, conference, participant, &region)?;
        let b = self
            .bridges
            .get_mut(&id)
            .ok_or_else(|| FocusError::UnknownBridge(id.clone()))?;
        b.joins.push_back(now);
        let placement = Placement {
            bridge_id: id.clone(),
            region: b.reg.region.clone(),
            signal_url: b.reg.signal_url.clone(),
            rule,
        };
        let version = b.reg.version.clone();
        let conf = self.conferences.entry(conference.to_string()).or_default();
        conf.version.get_or_insert(version);
        // A participant re-allocated (reconnecting) is only on one bridge.
        for ps in conf.bridges.values_mut() {
            ps.remove(participant);
        }
        conf.bridges.retain(|_, ps| !ps.is_empty());
        conf.pending.retain(|(_, p), _| p != participant);
        conf.bridges
            .entry(id.clone())
            .or_default()
            .insert(participant.to_string());
        conf.pending
            .insert((id.clone(), participant.to_string()), now);
        if let Some(b) = self.bridges.get_mut(&id) {
            b.hosts.insert(conference.to_string());
        }
        self.events.push_back(FocusEvent::Allocated {
            conference: conference.to_string(),
            participant: participant.to_string(),
            bridge: id,
        });
        self.reconcile_relay();
        Ok(placement)
    }

    fn in_group(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .cfg
                .region_groups
                .iter()
                .any(|g| g.iter().any(|r| r == a) && g.iter().any(|r| r == b))
    }

    fn select(
        &self,
        now: Instant,
        conference: &str,
        participant: &str,
        region: &str,
    ) -> Result<(String, u8), FocusError> {
        let conf = self.conferences.get(conference);
        let on = |id: &str| -> usize {
            conf.and_then(|c| c.bridges.get(id))
                .map_or(0, |p| p.iter().filter(|x| *x != participant).count())
        };
        let in_conf = |id: &str| conf.is_some_and(|c| c.bridges.contains_key(id));
        // Bridges that may take the participant at all: online, not shutting
        // down, same version as the conference.
        let eligible: Vec<(&String, &Bridge)> = self
            .bridges
            .iter()
            .filter(|(_, b)| b.usable())
            .filter(|(_, b)| {
                conf.and_then(|c| c.version.as_ref())
                    .is_none_or(|v| *v == b.reg.version)
            })
            .collect();
        if eligible.is_empty() {
            return Err(FocusError::NoBridge(
                "no operational bridge of the conference's version".into(),
            ));
        }
        // Draining bridges only when nothing else is left.
        let preferred: Vec<(&String, &Bridge)> = {
            let active: Vec<_> = eligible
                .iter()
                .copied()
                .filter(|(_, b)| b.state == BridgeState::Operational)
                .collect();
            if active.is_empty() { eligible } else { active }
        };
        // Everything the rules ask about a bridge, computed once: with
        // thousands of bridges, recomputing stress and map lookups per
        // comparison dominated allocation time.
        struct Cand<'a> {
            id: &'a String,
            stress: f64,
            region: bool,
            group: bool,
            conf: bool,
            below_cap: bool,
            ok: bool,
        }
        let cands: Vec<Cand> = preferred
            .iter()
            .map(|(id, b)| {
                let stress = b.corrected_stress(now, &self.cfg);
                let on_it = on(id);
                let ok = stress < self.cfg.overload_stress
                    && on_it < self.cfg.participant_cap
                    && self
                        .cfg
                        .max_joins_per_minute
                        .is_none_or(|m| b.joins_last_minute(now) < m);
                Cand {
                    id,
                    stress,
                    region: b.reg.region == region,
                    group: self.in_group(&b.reg.region, region),
                    conf: in_conf(id),
                    below_cap: on_it < self.cfg.participant_cap,
                    ok,
                }
            })
            .collect();
        let least = |f: &dyn Fn(&Cand) -> bool| -> Option<String> {
            cands
                .iter()
                .filter(|c| f(c))
                .min_by(|a, b| a.stress.total_cmp(&b.stress).then_with(|| a.id.cmp(b.id)))
                .map(|c| c.id.clone())
        };
        let none = || FocusError::NoBridge("none".into());

        match self.cfg.strategy {
            Strategy::SingleBridge => {
                if let Some(c) = conf
                    && let Some(id) = c
                        .bridges
                        .keys()
                        .find(|id| cands.iter().any(|x| x.id == *id))
                {
                    return Ok((id.clone(), 0));
                }
                return least(&|c| c.region)
                    .or_else(|| least(&|_| true))
                    .map(|id| (id, 0))
                    .ok_or_else(none);
            }
            Strategy::Split => {
                return least(&|c| !c.conf)
                    .or_else(|| least(&|_| true))
                    .map(|id| (id, 0))
                    .ok_or_else(none);
            }
            Strategy::RegionBased => {}
        }
        type Rule<'r> = (u8, &'r dyn Fn(&Cand) -> bool);
        let rules: [Rule; 8] = [
            (1, &|c| c.ok && c.conf && c.region),
            (2, &|c| c.ok && c.conf && c.group),
            (3, &|c| c.ok && c.region),
            (4, &|c| c.ok && c.group),
            (5, &|c| c.ok && c.conf),
            (6, &|c| c.ok),
            // Everything is overloaded: least-loaded conference bridge below
            // the participant cap, else least loaded overall.
            (7, &|c| c.conf && c.below_cap),
            (8, &|_| true),
        ];
        for (rule, f) in rules {
            if let Some(id) = least(f) {
                return Ok((id, rule));
            }
        }
        Err(none())
    }

    pub fn bridge(&self, now: Instant, id: &str) -> Option<BridgeView> {
        self.bridges.get(id).map(|b| self.view(now, b))
    }

    fn view(&self, now: Instant, b: &Bridge) -> BridgeView {
        let conferences = self
            .conferences
            .values()
            .filter(|c| c.bridges.contains_key(&b.reg.id))
            .count();
        BridgeView {
            reg: b.reg.clone(),
            state: b.state,
            online: b.online,
            stress: b.stress,
            corrected_stress: b.corrected_stress(now, &self.cfg),
            conferences,
            endpoints: b.endpoints,
            last_failure: b.last_failure.clone(),
            since_report: now.saturating_duration_since(b.last_report),
        }
    }

    pub fn bridges(&self, now: Instant) -> Vec<BridgeView> {
        self.bridges.values().map(|b| self.view(now, b)).collect()
    }

    /// Conference → bridge → participants.
    pub fn conference(&self, name: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
        self.conferences.get(name).map(|c| c.bridges.clone())
    }

    pub fn conference_names(&self) -> Vec<String> {
        self.conferences.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
