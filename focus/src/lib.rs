//! The focus core: which bridge a participant should use, and what to do when
//! bridges fail, hang or drain.
//!
//! Sans-IO: `handle_*` inputs with the current `Instant`, `poll_event` /
//! `poll_timeout` outputs. The gRPC and HTTP shell lives in the `tern` binary.
//!
//! Placement is modelled on Jicofo's `RegionBasedBridgeSelectionStrategy`
//! (with the overload checks of its `BridgeSelector`), plus the focus-side
//! *corrected stress* that counts joins the bridges' reports do not show
//! yet, so a burst of joins spreads instead of landing on one bridge.
//!
//! One concept per module:
//! - `focus`: the [`Focus`] state machine (inputs, outputs, views);
//! - `registry`: registrations, reports, corrected stress, heartbeat;
//! - `placement`: the `Placer` trait and its strategies, one file each;
//! - `conference`: which bridges host whom, relay peers per conference;
//! - `failure`: failed bridges, drain, moves;
//! - `summary`: counts for metrics;
//! - `config`: [`FocusConfig`];
//! - `wire`: the core's types as `tern.bridge.v1` messages and back.

mod conference;
mod config;
mod failure;
mod focus;
mod placement;
mod recording;
mod registry;
mod stress_index;
mod summary;
mod wire;

pub use config::FocusConfig;
pub use focus::Focus;
pub use placement::{Placement, Strategy};
pub use recording::{KEPT_ENDED, RecordingReport, RecordingState, RecordingView};
pub use registry::{API_VERSIONS, BridgeState, BridgeView, Registration, Report};
pub use summary::{BridgeSummary, Summary, bridges_by_region_and_state};

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
    #[error("conference {conference} uses video codec {uses}; this allocation asks for {asked}")]
    CodecMismatch {
        conference: String,
        uses: String,
        asked: String,
    },
    #[error("conference {conference} is {uses}; this allocation asks for {asked}")]
    ModeMismatch {
        conference: String,
        uses: ConferenceMode,
        asked: ConferenceMode,
    },
    #[error("conference {conference} is already being recorded ({id}); stop that recording first")]
    AlreadyRecording { conference: String, id: String },
    #[error("conference {conference} cannot be recorded: {reason}")]
    RecordingRefused { conference: String, reason: String },
    #[error("conference {0} is not being recorded")]
    NotRecording(String),
}

/// How a conference carries media, fixed when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConferenceMode {
    /// Selective forwarding: every participant receives the others' streams.
    #[default]
    Forwarding,
    /// Every participant receives one mix (audio at this sample rate) and
    /// one composite video. A mixed conference lives on one bridge.
    Mixed { sample_rate: u32, video: MixedVideo },
}

/// A mixed conference's composite: its layout, and its size (0 x 0: the
/// bridge's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MixedVideo {
    pub layout: MixLayout,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixLayout {
    #[default]
    Grid,
    Speaker,
}

impl MixLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            MixLayout::Grid => "grid",
            MixLayout::Speaker => "speaker",
        }
    }
}

impl ConferenceMode {
    /// Mixed at `sample_rate`, the bridge's composite size, a grid.
    pub fn mixed(sample_rate: u32) -> Self {
        ConferenceMode::Mixed {
            sample_rate,
            video: MixedVideo::default(),
        }
    }

    /// The mixing rate, for the participant's token (`mix`).
    pub fn mix_rate(self) -> Option<u32> {
        match self {
            ConferenceMode::Forwarding => None,
            ConferenceMode::Mixed { sample_rate, .. } => Some(sample_rate),
        }
    }

    /// The composite's layout and size, for the token.
    pub fn mixed_video(self) -> Option<MixedVideo> {
        match self {
            ConferenceMode::Forwarding => None,
            ConferenceMode::Mixed { video, .. } => Some(video),
        }
    }
}

impl std::fmt::Display for ConferenceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConferenceMode::Forwarding => write!(f, "forwarding"),
            ConferenceMode::Mixed { sample_rate, video } => {
                write!(f, "mixed at {sample_rate} Hz")?;
                if video.layout != MixLayout::Grid {
                    write!(f, ", {} layout", video.layout.as_str())?;
                }
                if video.width > 0 {
                    write!(f, ", composite {}x{}", video.width, video.height)?;
                }
                Ok(())
            }
        }
    }
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
    /// Send to a bridge: record `conference` as recording `id`.
    CommandStartRecording {
        bridge: String,
        conference: String,
        id: String,
        started_unix_ms: u64,
    },
    CommandStopRecording {
        bridge: String,
        conference: String,
        id: String,
    },
    /// Send to a bridge: `conference` is recorded as `id` (`active`), or
    /// that recording ended; for its participants to be told.
    CommandRecordingNotice {
        bridge: String,
        conference: String,
        id: String,
        active: bool,
    },
    /// Send to a bridge: the other bridges hosting `conference`, as
    /// (bridge id, relay address); empty = none any more.
    CommandRelayPeers {
        bridge: String,
        conference: String,
        peers: Vec<(String, String)>,
    },
}

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod tests;
