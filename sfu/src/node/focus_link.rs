//! The bridge's side of `tern.bridge.v1` as a policy: what the bridge
//! registers with, what it reports and when, what each focus command
//! becomes, whether it is draining, and when it reconnects.
//!
//! - On connecting: one `Register` (with what the bridge already hosts, so
//!   a restarted focus learns the cluster back), then `Stats` every second.
//! - A lost or refused session is retried after 100 ms, doubling to 2 s; a
//!   session that registered resets the backoff.
//! - `healthy` is false while any shard has stalled (its loop has not come
//!   round for seconds; the shell counts them into [`Totals`]): the focus
//!   treats an unhealthy bridge as failed and re-invites all its
//!   participants, which is right for a bridge that has stopped moving
//!   media for some of them. Load is not ill health: an overloaded shard
//!   refuses joins itself (see `admission.rs`). Other failures are what
//!   the focus sees: a closed stream or missing reports.
//!
//! Sans-IO: the shell opens the stream when asked ([`FocusAction::Connect`]),
//! sends [`FocusAction::Send`] messages, and hands every command to
//! [`FocusLink::handle_command`]; the node carries out what it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tern_proto::bridge::v1 as bpb;

use super::shard::ShardInput;

/// How often a bridge reports to the focus.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// First reconnect delay after a lost session.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Bumped when the control messages change incompatibly.
pub const API_VERSION: u32 = 1;

/// What the bridge currently hosts and has carried, summed over shards.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub packets_in: u64,
    pub packets_out: u64,
    pub endpoints: u32,
    pub conferences: Vec<(String, Vec<String>)>,
    /// Shards whose loop has stalled: any makes the bridge unhealthy.
    pub stalled_shards: u32,
    /// CPU time the mixing workers have spent since the bridge started.
    pub mixing_busy: Duration,
    /// Cores the bridge may use (the mixing load is a share of them).
    pub cpus: u32,
    /// Recordings running, and those ended lately.
    pub recordings: Vec<crate::core::RecordingReport>,
}

impl Totals {
    fn conference_states(&self) -> Vec<bpb::ConferenceState> {
        self.conferences
            .iter()
            .map(|(name, ps)| bpb::ConferenceState {
                name: name.clone(),
                participants: ps.clone(),
            })
            .collect()
    }

    fn recording_states(&self) -> Vec<bpb::RecordingState> {
        self.recordings
            .iter()
            .map(|r| bpb::RecordingState {
                conference: r.conference.clone(),
                recording_id: r.id.clone(),
                active: r.active,
                error: r.error.clone().unwrap_or_default(),
                files: r.files,
                bytes: r.bytes,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FocusAction {
    /// Open a control stream to the focus, then report
    /// [`FocusLink::connected`] or [`FocusLink::disconnected`].
    Connect,
    Send(bpb::BridgeMessage),
}

/// A focus command, as the node must carry it out.
#[derive(Debug, Clone, PartialEq)]
pub enum FocusOrder {
    Move {
        room: String,
        participants: Vec<String>,
        reason: String,
    },
    End {
        room: String,
    },
    /// The other bridges hosting `room` (id, relay address); empty: none.
    RelayPeers {
        room: String,
        peers: Vec<(String, String)>,
    },
    StartRecording {
        room: String,
        id: String,
        started_unix_ms: u64,
    },
    StopRecording {
        room: String,
        id: String,
    },
    /// `room` is recorded as `id` somewhere (`active`), or no longer.
    RecordingNotice {
        room: String,
        id: String,
        active: bool,
    },
}

impl FocusOrder {
    /// The conference it is about (its shard carries it out).
    pub fn room(&self) -> &str {
        match self {
            FocusOrder::Move { room, .. }
            | FocusOrder::End { room }
            | FocusOrder::RelayPeers { room, .. }
            | FocusOrder::StartRecording { room, .. }
            | FocusOrder::StopRecording { room, .. }
            | FocusOrder::RecordingNotice { room, .. } => room,
        }
    }

    /// What the conference's shard is told. For `RelayPeers`, the mesh is
    /// told the addresses first (they do not reach the shard).
    pub fn into_shard_input(self) -> ShardInput {
        match self {
            FocusOrder::Move {
                room,
                participants,
                reason,
            } => ShardInput::Move {
                room,
                participants,
                reason,
            },
            FocusOrder::End { room } => ShardInput::End { room },
            FocusOrder::RelayPeers { room, peers } => ShardInput::RelayPeers {
                room,
                peers: peers.into_iter().map(|(id, _)| id).collect(),
            },
            FocusOrder::StartRecording {
                room,
                id,
                started_unix_ms,
            } => ShardInput::StartRecording {
                room,
                id,
                started_unix_ms,
            },
            FocusOrder::StopRecording { room, id } => ShardInput::StopRecording { room, id },
            FocusOrder::RecordingNotice { room, id, active } => {
                ShardInput::RecordingNotice { room, id, active }
            }
        }
    }
}

#[derive(Debug)]
pub struct FocusLink {
    register: bpb::Register,
    connected: bool,
    registered: bool,
    next_connect: Option<Instant>,
    backoff: Duration,
    next_report: Option<Instant>,
    last: (u64, u64, Instant),
    /// The mixing workers' CPU time at the last report.
    last_mixing: Duration,
    draining: bool,
    shutting_down: bool,
    out: VecDeque<FocusAction>,
}

impl FocusLink {
    /// `register` is what the bridge registers with (its `conferences` are
    /// filled in at each connection).
    pub fn new(register: bpb::Register, now: Instant) -> Self {
        Self {
            register,
            connected: false,
            registered: false,
            next_connect: Some(now),
            backoff: RECONNECT_MIN,
            next_report: None,
            last: (0, 0, now),
            last_mixing: Duration::ZERO,
            draining: false,
            shutting_down: false,
            out: VecDeque::new(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Connected and accepted by the focus: the bridge can be placed on.
    pub fn is_registered(&self) -> bool {
        self.connected && self.registered
    }

    /// The focus asked this bridge to drain (no new conferences).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// The bridge is going away: reported so the focus moves its
    /// conferences elsewhere.
    pub fn set_shutting_down(&mut self) {
        self.shutting_down = true;
    }

    /// The stream is open: register.
    pub fn connected(&mut self, now: Instant, totals: &Totals) {
        self.connected = true;
        self.registered = false;
        let mut reg = self.register.clone();
        reg.conferences = totals.conference_states();
        self.out.push_back(FocusAction::Send(bpb::BridgeMessage {
            msg: Some(bpb::bridge_message::Msg::Register(reg)),
        }));
        self.last = (totals.packets_in, totals.packets_out, now);
        self.next_report = Some(now + REPORT_INTERVAL);
    }

    /// The stream closed, failed, or could not be opened.
    pub fn disconnected(&mut self, now: Instant) {
        self.connected = false;
        // What was queued for the lost stream is stale (the next session
        // registers afresh).
        self.out.clear();
        self.next_report = None;
        if std::mem::take(&mut self.registered) {
            self.backoff = RECONNECT_MIN;
        }
        self.next_connect = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
    }

    /// A command from the focus. `Err`: the session must end (the focus
    /// refused this bridge); the reason is for the log.
    pub fn handle_command(&mut self, cmd: bpb::FocusCommand) -> Result<Option<FocusOrder>, String> {
        use bpb::focus_command::Cmd;
        Ok(match cmd.cmd {
            Some(Cmd::Registered(_)) => {
                self.registered = true;
                self.backoff = RECONNECT_MIN;
                None
            }
            Some(Cmd::Refused(why)) => return Err(format!("focus refused: {why}")),
            Some(Cmd::Move(m)) => Some(FocusOrder::Move {
                room: m.conference,
                participants: m.participants,
                reason: m.reason,
            }),
            Some(Cmd::EndConference(room)) => Some(FocusOrder::End { room }),
            Some(Cmd::Drain(on)) => {
                self.draining = on;
                None
            }
            Some(Cmd::RelayPeers(r)) => Some(FocusOrder::RelayPeers {
                room: r.conference,
                peers: r
                    .peers
                    .into_iter()
                    .map(|p| (p.bridge_id, p.relay_addr))
                    .collect(),
            }),
            Some(Cmd::StartRecording(r)) => Some(FocusOrder::StartRecording {
                room: r.conference,
                id: r.recording_id,
                started_unix_ms: r.started_unix_ms,
            }),
            Some(Cmd::StopRecording(r)) => Some(FocusOrder::StopRecording {
                room: r.conference,
                id: r.recording_id,
            }),
            Some(Cmd::RecordingNotice(r)) => Some(FocusOrder::RecordingNotice {
                room: r.conference,
                id: r.recording_id,
                active: r.active,
            }),
            None => None,
        })
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_connect, self.next_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a report is due: the caller then passes [`Totals`] to
    /// [`Self::report`].
    pub fn report_due(&self, now: Instant) -> bool {
        self.next_report.is_some_and(|t| t <= now)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_connect.is_some_and(|t| t <= now) && !self.connected {
            self.next_connect = None;
            self.out.push_back(FocusAction::Connect);
        }
    }

    /// The periodic report, from what the bridge has done since the last.
    pub fn report(&mut self, now: Instant, totals: &Totals) {
        let Some(due) = self.next_report else {
            return;
        };
        // The next report is a second after this one was due, not after
        // it was sent: a late report does not shift the schedule.
        self.next_report = Some((due + REPORT_INTERVAL).max(now));
        let (pin, pout, then) = self.last;
        let secs = now.saturating_duration_since(then).as_secs_f64().max(0.001);
        let rate = |n: u64, before: u64| (n.saturating_sub(before) as f64 / secs) as u64;
        let stats = bpb::Stats {
            rtp_packets_in_per_s: rate(totals.packets_in, pin),
            rtp_packets_out_per_s: rate(totals.packets_out, pout),
            endpoints: totals.endpoints,
            healthy: totals.stalled_shards == 0,
            draining: self.draining,
            shutting_down: self.shutting_down,
            conferences: totals.conference_states(),
            recordings: totals.recording_states(),
            mixing_load: totals
                .mixing_busy
                .saturating_sub(self.last_mixing)
                .as_secs_f64()
                / secs
                / f64::from(totals.cpus.max(1)),
        };
        self.last = (totals.packets_in, totals.packets_out, now);
        self.last_mixing = totals.mixing_busy;
        self.out.push_back(FocusAction::Send(bpb::BridgeMessage {
            msg: Some(bpb::bridge_message::Msg::Stats(stats)),
        }));
    }

    pub fn poll_action(&mut self) -> Option<FocusAction> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported_health(link: &mut FocusLink) -> Option<bool> {
        let mut healthy = None;
        while let Some(a) = link.poll_action() {
            if let FocusAction::Send(bpb::BridgeMessage {
                msg: Some(bpb::bridge_message::Msg::Stats(s)),
            }) = a
            {
                healthy = Some(s.healthy);
            }
        }
        healthy
    }

    #[test]
    fn reports_unhealthy_while_a_shard_is_stalled_and_healthy_again_after() {
        let t = Instant::now();
        let mut link = FocusLink::new(bpb::Register::default(), t);
        link.handle_timeout(t);
        let mut totals = Totals::default();
        link.connected(t, &totals);
        assert!(!link.is_registered(), "not until the focus accepts");
        link.handle_command(bpb::FocusCommand {
            cmd: Some(bpb::focus_command::Cmd::Registered(Default::default())),
        })
        .expect("registered");
        assert!(link.is_registered());
        let t1 = t + REPORT_INTERVAL;
        link.report(t1, &totals);
        assert_eq!(reported_health(&mut link), Some(true));
        totals.stalled_shards = 1;
        link.report(t1 + REPORT_INTERVAL, &totals);
        assert_eq!(reported_health(&mut link), Some(false));
        totals.stalled_shards = 0;
        link.report(t1 + 2 * REPORT_INTERVAL, &totals);
        assert_eq!(reported_health(&mut link), Some(true));
        link.disconnected(t1 + 2 * REPORT_INTERVAL);
        assert!(!link.is_registered());
    }
}
