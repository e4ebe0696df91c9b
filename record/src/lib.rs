//! Tern's recording (issue 21), Sans-IO: each participant's audio and video
//! written to WebM (Opus, VP8, VP9, AV1) or Matroska (H.264) as it was
//! sent, without transcoding.
//!
//! - [`ebml`]: the EBML encoding Matroska and WebM are made of.
//! - [`webm`]: one track's file: a header, then clusters of blocks. The
//!   segment and every cluster have an unknown size, so the file is never
//!   rewritten and one cut short (a crash, a full disk) still plays up to
//!   its last complete block.
//! - [`vp8`]: VP8 frames back from RTP (RFC 7741): a frame is written only
//!   when every packet of it arrived; after a lost one nothing is written
//!   until the next keyframe, so a gap is a gap, not a corrupt picture.
//! - [`vp9`]: the VP9 payload descriptor (RFC 9628), which the bridge's
//!   forwarding reads too (`tern_sfu::vp9` is this module).
//! - [`av1`]: AV1 temporal units back from RTP, with the `av1C` a file's
//!   header needs.
//! - [`h264`]: H.264 pictures back from RTP (RFC 6184) for Matroska.
//! - [`mix`]: a mixed conference's one file: the composite (H.264) and the
//!   mix (Opus) as the mixer made them.
//! - [`track`]: one recorded source: RTP packets and their arrival in,
//!   WebM bytes out, timestamps placed on the recording's timeline.
//! - [`recording`]: one recording's files (names that cannot collide or
//!   leave its directory) and its metadata file (who was there when, which
//!   file holds what).
//!
//! The bridge core drives it (`tern_sfu`'s `core/recording.rs`); the
//! shell writes the bytes (`src/bridge/recorder.rs`).

pub mod av1;
mod bits;
pub mod ebml;
pub mod h264;
pub mod mix;
pub mod recording;
pub mod track;
pub mod vp8;
pub mod vp9;
pub mod webm;

pub use mix::{MixRecorder, MixStats};
pub use recording::{Recording, TrackKey};
pub use track::{Codec, TrackRecorder, TrackStats};

/// What a recorder refuses. Network input never panics a recorder: a
/// packet it cannot use is dropped and counted ([`TrackStats`]); the first
/// four are those reasons, the rest a recording's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("empty RTP payload")]
    Empty,
    #[error("VP8 payload descriptor truncated")]
    Vp8Descriptor,
    #[error("packet older than what was already written")]
    Late,
    #[error("frame larger than {max} bytes", max = track::MAX_FRAME_BYTES)]
    FrameTooLarge,
    #[error("VP9 payload descriptor malformed, or layer frames out of order (RFC 9628)")]
    Vp9Descriptor,
    #[error("AV1 RTP payload that does not parse (OBUs cut short or out of place)")]
    Av1Payload,
    #[error("H.264 RTP payload that does not parse (RFC 6184)")]
    H264Payload,
    #[error("recording id {0:?} is not 1-64 characters of [A-Za-z0-9_-]")]
    BadId(String),
    #[error("{participant}'s {source_name} {kind} is already being recorded")]
    AlreadyOpen {
        participant: String,
        source_name: String,
        kind: &'static str,
    },
}
