//! Tern bridge core: Sans-IO forwarding of WebRTC media.
//!
//! This crate never touches a socket, a clock or a task; `Cargo.toml` keeps
//! tokio out so the compiler enforces it. See `ARCHITECTURE.md`.

pub mod admission;
pub mod allocation;
pub mod av1;
pub mod core;
pub mod h264;
pub mod keyframe;
pub mod layers;
pub mod limits;
pub mod node;
pub mod rate;
pub mod red;
pub mod rewrite;
pub mod sdp;
pub mod sdp_audit;
pub mod signal;
pub mod speech;
pub mod stats;
pub mod vp8;
/// The VP9 payload descriptor, shared with the recorder (which cuts
/// pictures back out of RTP with it).
pub use tern_record::vp9;
pub mod whip;

pub use crate::core::{
    BandwidthConfig, Core, CoreConfig, DATA_BURST, DATA_LABEL, DATA_RATE, EndpointId, JoinRequest,
    LossDirection, MAX_DATA_MESSAGE, MAX_PAYLOAD, METADATA_FILE, Output, PeerId, RecordOutput,
    RecordingReport, RelaySource, shard_of_conference_number,
};
pub use crate::stats::{CoreStats, DataDrop, DropReason, RelayStats};
pub use tern_relay;

use serde::{Deserialize, Serialize};

/// Codecs a bridge can negotiate; the configured list decides the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecName {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl CodecName {
    /// The video codecs, by their lowercase names.
    pub const VIDEO: [CodecName; 4] = [
        CodecName::Vp8,
        CodecName::Vp9,
        CodecName::H264,
        CodecName::Av1,
    ];

    /// A video codec by its lowercase name ("vp8", "vp9", "h264", "av1"), as
    /// tokens, the focus's API and `media.codecs` name them.
    pub fn video_from_name(name: &str) -> Option<CodecName> {
        Self::VIDEO.into_iter().find(|c| c.name() == name)
    }

    /// The lowercase name (configuration, tokens, the API).
    pub fn name(self) -> &'static str {
        match self {
            CodecName::Opus => "opus",
            CodecName::Vp8 => "vp8",
            CodecName::Vp9 => "vp9",
            CodecName::H264 => "h264",
            CodecName::Av1 => "av1",
        }
    }

    /// The encoding name in SDP (`a=rtpmap`), compared without case.
    pub fn sdp_name(self) -> &'static str {
        match self {
            CodecName::Opus => "opus",
            CodecName::Vp8 => "VP8",
            CodecName::Vp9 => "VP9",
            CodecName::H264 => "H264",
            CodecName::Av1 => "AV1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("endpoint id {0} is already in use")]
    DuplicateEndpoint(u64),
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Refused(signal::Rejection),
    #[error("configuration: {0}")]
    Config(String),
    /// An SDP offer or answer that could not be parsed or applied.
    #[error("negotiation: {0}")]
    Negotiation(String),
}
