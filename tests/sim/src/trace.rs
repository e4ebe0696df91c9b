//! The event trace and what makes it reproducible: [`Trace`] hashes every
//! event (and keeps them as text when asked), `canonical_order` puts the
//! datagrams of one flush in an order that depends only on their contents,
//! and the `*_name` helpers give signalling and focus events stable names.
//!
//! Only what is the same on every run with the same seed may go into the
//! trace: no wall-clock time, no str0m hash-map order, no bytes that differ
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

/// str0m emits the packets of one poll in an order that depends on its
/// internal hash maps (randomly keyed per process in upstream str0m; the
/// vendored copy keys them fixed, see patches/README.md). Everything in one flush
/// leaves at the same instant, so put it in an order that depends only on
/// what is sent: destination, then the clear-text RTP/RTCP header (SSRC,
/// sequence number) — SRTP encrypts payloads, not headers. Other datagrams
/// (STUN, DTLS) go by protocol and length.
pub(crate) fn canonical_order(t: &mut [Transmit]) {
    t.sort_by_key(|(dest, key, _)| (*dest, *key));
}

/// A datagram to send, with its [`order_key`].
pub(crate) type Transmit = (SocketAddr, (u8, u32, u32), Vec<u8>);

/// Where a datagram goes in [`canonical_order`] among those to the same
/// destination.
pub(crate) fn order_key(d: &[u8]) -> (u8, u32, u32) {
    match d {
        [b0, b1, rest @ ..] if (128..192).contains(b0) && rest.len() >= 10 => {
            if (192..=223).contains(b1) {
                // RTCP: sender SSRC at bytes 4..8.
                let ssrc = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
                (2, ssrc, u32::from(*b1))
            } else if b0 & 0x20 != 0 {
                // Padding (a bandwidth probe): str0m pads on whichever video
                // stream sent last, picked in hash-map order on a tie. Where
                // it goes within the flush must not depend on which.
                (1, u32::MAX, d.len() as u32)
            } else {
                let seq = u16::from_be_bytes([rest[0], rest[1]]);
                let ssrc = u32::from_be_bytes([rest[6], rest[7], rest[8], rest[9]]);
                (1, ssrc, u32::from(seq))
            }
        }
        // STUN, DTLS: by first byte (the protocol, RFC 7983) and length.
        // str0m's ICE agent can emit a check and a handshake record in
        // either order within one flush; the contents differ between runs
        // anyway (transaction ids, randoms), the kind and length do not.
        [b0, ..] => (0, u32::from(*b0), d.len() as u32),
        [] => (0, 0, 0),
    }
}

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
    }
}
