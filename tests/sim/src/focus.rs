//! The simulated focus and the bridge lifecycle it watches: placement of
//! participants (`allocate`), the bridges' control streams to the focus
//! ([`ToFocus`] in, focus commands out after `SimConfig::focus_latency`),
//! and the operator's and the OS's verbs on a bridge (drain, shutdown,
//! kill).
//!
//! The focus's decisions are the real `tern_focus` core's; this module
//! only carries messages between it and the bridge nodes and must not
//! decide placement itself.

use tern_focus::FocusEvent;
use tern_proto::bridge::v1 as bpb;
use tern_sfu::node::Input as NodeInput;

use crate::Sim;
use crate::event::{Event, ToFocus};
use crate::trace::focus_event_name;

impl Sim {
    /// Ask the focus where `name` goes.
    pub(crate) fn allocate(&mut self, name: &str, region: Option<&str>) -> Option<usize> {
        let now = self.now;
        let room = self.room.clone();
        let focus = self
            .focus
            .as_mut()
            .expect("joining through a focus needs SimConfig::focus");
        let placed = focus.allocate(now, &room, name, region);
        self.drain_focus();
        let t = self.t_us();
        match placed {
            Ok(p) => {
                let b = self.bridges.iter().position(|b| b.id == p.bridge_id)?;
                self.trace
                    .record(t, "f:allocate", b as u64, u64::from(p.rule));
                Some(b)
            }
            Err(e) => {
                self.trace.record(t, "f:allocate_failed", 0, 0);
                if let Some(k) = &mut self.trace.keep {
                    k.push(format!("{t} allocation of {name} failed: {e}"));
                }
                None
            }
        }
    }

    /// Act on what the focus emitted: commands travel to their bridge.
    pub(crate) fn drain_focus(&mut self) {
        let Some(focus) = self.focus.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        while let Some(e) = focus.poll_event() {
            events.push(e);
        }
        let since = self.now - self.epoch;
        for e in events {
            let t = self.t_us();
            let target = match &e {
                FocusEvent::CommandMove { bridge, .. }
                | FocusEvent::CommandDrain { bridge, .. }
                | FocusEvent::CommandEndConference { bridge, .. }
                | FocusEvent::CommandStartRecording { bridge, .. }
                | FocusEvent::CommandStopRecording { bridge, .. }
                | FocusEvent::CommandRecordingNotice { bridge, .. }
                | FocusEvent::CommandRelayPeers { bridge, .. } => {
                    self.bridges.iter().position(|b| &b.id == bridge)
                }
                _ => None,
            };
            self.trace.record(
                t,
                focus_event_name(&e),
                target.map_or(u64::MAX, |b| b as u64),
                0,
            );
            if let Some(b) = target
                && self.bridges[b].alive
                && let Some((_, cmd)) = e.command()
            {
                let at = self.now + self.focus_latency;
                self.push(
                    at,
                    Event::FromFocus {
                        bridge: b,
                        cmd: Box::new(cmd),
                    },
                );
            }
            self.focus_log.push((since, e));
        }
    }

    pub(crate) fn focus_in(&mut self, b: usize, msg: ToFocus) {
        let now = self.now;
        let id = self.bridges[b].id.clone();
        let Some(focus) = self.focus.as_mut() else {
            return;
        };
        let answer = match msg {
            ToFocus::Register(reg) => Some(match focus.handle_register(now, reg) {
                Ok(_) => bpb::focus_command::Cmd::Registered(bpb::Registered {
                    focus_id: "sim".into(),
                }),
                Err(e) => bpb::focus_command::Cmd::Refused(e.to_string()),
            }),
            ToFocus::Report(r) => {
                // A report racing the bridge's failure is refused, as over gRPC.
                let _ = focus.handle_report(now, &id, r);
                None
            }
            ToFocus::Closed => {
                focus.handle_disconnect(now, &id, "stream closed");
                None
            }
        };
        if let Some(cmd) = answer
            && self.bridges[b].alive
        {
            let at = now + self.focus_latency;
            self.push(
                at,
                Event::FromFocus {
                    bridge: b,
                    cmd: Box::new(bpb::FocusCommand { cmd: Some(cmd) }),
                },
            );
        }
        self.drain_focus();
    }

    /// Ask the focus to drain bridge `b` (as `tern` operators do over gRPC).
    pub fn drain_bridge(&mut self, b: usize) {
        let now = self.now;
        let id = self.bridges[b].id.clone();
        if let Some(f) = self.focus.as_mut() {
            f.set_drain(now, &id, true)
                .unwrap_or_else(|e| panic!("drain of {id} refused: {e}"));
        }
        self.drain_focus();
    }

    /// Tell bridge `b` to shut down, as SIGTERM does: with a focus it
    /// drains first (the focus moves its conferences away), then it closes
    /// what is left and exits.
    pub fn shutdown_bridge(&mut self, b: usize) {
        let now = self.now;
        let t = self.t_us();
        self.trace.record(t, "bridge_shutdown", b as u64, 0);
        self.bridges[b].node.handle_input(now, NodeInput::Shutdown);
        self.flush_node(b);
    }

    /// Bridge `b`'s control stream closed: the focus sees it one latency
    /// later.
    pub(crate) fn focus_stream_closed(&mut self, b: usize) {
        let at = self.now + self.focus_latency;
        self.push(
            at,
            Event::ToFocus {
                bridge: b,
                msg: Box::new(ToFocus::Closed),
            },
        );
    }

    /// Kill bridge `b` like `kill -9`: it stops at once; its participants'
    /// signalling sockets and its control stream to the focus close.
    pub fn kill_bridge(&mut self, b: usize) {
        if !self.bridges[b].alive {
            return;
        }
        self.bridges[b].alive = false;
        let t = self.t_us();
        self.trace.record(t, "bridge_killed", b as u64, 0);
        if self.focus.is_some() {
            self.focus_stream_closed(b);
        }
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.bridge == b && !p.left && !p.rejoining {
                let at = self.reliable_delay(p.down);
                let session = p.endpoint;
                self.push(at, Event::SocketClosed { peer: i, session });
            }
        }
    }
}

/// Recordings through the focus, as the gRPC API asks for them. The wall
/// clock the focus is given is the simulation's (from a fixed epoch), so
/// ids and times replay.
impl Sim {
    pub fn start_recording(
        &mut self,
        conference: &str,
    ) -> Result<tern_focus::RecordingView, tern_focus::FocusError> {
        let now = self.now;
        let unix_ms = 1_700_000_000_000 + self.elapsed().as_millis() as u64;
        let r = match self.focus.as_mut() {
            Some(f) => f.start_recording(now, unix_ms, conference),
            None => Err(tern_focus::FocusError::NoBridge("no focus".into())),
        };
        self.drain_focus();
        r
    }

    pub fn stop_recording(
        &mut self,
        conference: &str,
    ) -> Result<tern_focus::RecordingView, tern_focus::FocusError> {
        let now = self.now;
        let r = match self.focus.as_mut() {
            Some(f) => f.stop_recording(now, conference),
            None => Err(tern_focus::FocusError::NoBridge("no focus".into())),
        };
        self.drain_focus();
        r
    }

    pub fn recordings(&self, conference: Option<&str>) -> Vec<tern_focus::RecordingView> {
        self.focus
            .as_ref()
            .map(|f| f.recordings(conference))
            .unwrap_or_default()
    }
}
