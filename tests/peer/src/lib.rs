//! A simulated WebRTC participant, the other end of a Tern bridge: the
//! signalling client ([`peer`]), the media it publishes ([`synth`]) and what
//! a browser's receiver would make of the media it gets ([`decoder`]).
//!
//! It is test and measurement equipment, not part of the bridge: the tokio
//! test client (`tern::client`), the load tool (`tern-loadtest`), the
//! simulator (`tern-sim`) and the fuzzers drive it. Sans-IO: no sockets, no
//! clocks, no tasks; the signalling types and VP8 parsing come from
//! `tern-sfu`, so both ends read the same wire format.

pub mod config;
pub mod decoder;
pub mod pattern;
pub mod peer;
pub mod state;
pub mod synth;
pub mod tone;

pub use crate::peer::{Pacing, Peer, PeerConfig, PeerOutput, PeerState, Received};
pub use crate::state::{HeardAudio, HeardVideo};
pub use crate::synth::Talk;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// An SDP offer the peer could not parse or answer.
    #[error("negotiation: {0}")]
    Negotiation(String),
}
