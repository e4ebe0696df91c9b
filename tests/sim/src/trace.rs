//! The event trace and what makes it reproducible: [`Trace`] hashes every
//! event (and keeps them as text when asked), `canonical_order` groups the
//! datagrams of one flush by destination in the order they were emitted,
//! and the `*_name` helpers give signalling and focus events stable names.
//!
//! Only what is the same on every run with the same seed may go into the
//! trace: no wall-clock time, no order of a randomly keyed map, no bytes that differ
//! between runs (DTLS signatures, encrypted payloads).

use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;

use tern_focus::FocusEvent;
use tern_sfu::signal::{ClientMessage, ServerMessage};

use crate::Sim;

/// The event trace: hashed as it grows, optionally kept for debugging.
#[derive(Debug, Default)]
pub struct Trace {
    hasher: DefaultHasher,
    pub events: u64,
    pub keep: Option<Vec<String>>,
}

impl Trace {
    pub(crate) fn record(&mut self, t_us: u64, what: &str, a: u64, b: u64) {
        self.hasher.write_u64(t_us);
        self.hasher.write(what.as_bytes());
        self.hasher.write_u64(a);
        self.hasher.write_u64(b);
        self.events += 1;
        if let Some(k) = &mut self.keep {
            k.push(format!("{t_us} {what} {a} {b}"));
        }
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }
}

impl Sim {
    /// Virtual time since the start, as the trace records it.
    pub(crate) fn t_us(&self) -> u64 {
        (self.now - self.epoch).as_micros() as u64
    }
}

/// Group one flush's datagrams by destination, keeping the order they were
/// emitted in for each destination (a stable sort): the shells send them in
/// that order, and a link is a FIFO. The order across destinations follows
/// Tern's own maps, so it is fixed here; within one it is str0m's, which is
/// the same in every run since its stream maps hash with fixed keys
/// (patches/README.md).
///
/// This once sorted each destination's datagrams by SSRC and sequence
/// number as well (when str0m's order followed randomly keyed maps). That
/// reordered a flush: a keyframe's packets queued behind a slow link after
/// other streams' later ones, the receiver's transport-wide feedback
/// reported them missing, and str0m's loss-based estimator took a start-up
/// burst for 60 % loss and held the estimate far below the link for
/// seconds (BENCHMARKS.md, "Bandwidth simulations across seeds").
pub(crate) fn canonical_order(t: &mut [Transmit]) {
    t.sort_by_key(|(dest, _)| *dest);
}

/// A datagram to send.
pub(crate) type Transmit = (SocketAddr, Vec<u8>);

pub(crate) fn focus_event_name(e: &FocusEvent) -> &'static str {
    match e {
        FocusEvent::BridgeUp { .. } => "f:bridge_up",
        FocusEvent::BridgeDown { .. } => "f:bridge_down",
        FocusEvent::BridgeDrain { .. } => "f:bridge_drain",
        FocusEvent::Allocated { .. } => "f:allocated",
        FocusEvent::Moved { .. } => "f:moved",
        FocusEvent::CommandMove { .. } => "f:cmd_move",
        FocusEvent::CommandDrain { .. } => "f:cmd_drain",
        FocusEvent::CommandEndConference { .. } => "f:cmd_end",
        FocusEvent::CommandRelayPeers { .. } => "f:cmd_relay_peers",
        FocusEvent::CommandStartRecording { .. } => "f:cmd_start_recording",
        FocusEvent::CommandStopRecording { .. } => "f:cmd_stop_recording",
        FocusEvent::CommandRecordingNotice { .. } => "f:cmd_recording_notice",
    }
}

pub(crate) fn signal_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Join { .. } => "c:join",
        ClientMessage::Offer { .. } => "c:offer",
        ClientMessage::SourceState { .. } => "c:source_state",
        ClientMessage::Constraints { .. } => "c:constraints",
        ClientMessage::Leave => "c:leave",
    }
}

pub(crate) fn server_name(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Joined { .. } => "s:joined",
        ServerMessage::Composite { .. } => "s:composite",
        ServerMessage::Answer { .. } => "s:answer",
        ServerMessage::ParticipantJoined { .. } => "s:participant_joined",
        ServerMessage::ParticipantLeft { .. } => "s:participant_left",
        ServerMessage::Sources { .. } => "s:sources",
        ServerMessage::Slots { .. } => "s:slots",
        ServerMessage::Error { .. } => "s:error",
        ServerMessage::Move { .. } => "s:move",
        ServerMessage::SenderConstraints { .. } => "s:sender_constraints",
        ServerMessage::DominantSpeaker { .. } => "s:dominant_speaker",
        ServerMessage::Speaking { .. } => "s:speaking",
        ServerMessage::SendLimits { .. } => "s:send_limits",
        ServerMessage::Recording { .. } => "s:recording",
    }
}
