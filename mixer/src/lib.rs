//! Tern's mixing mode (issue 18), Sans-IO.
//!
//! In a mixed conference every participant sends one stream and receives
//! one mixed audio stream (everyone but themselves) instead of one stream
//! per other participant. This crate holds what is decided rather than
//! moved, in str0m's shape: packets and time in, encoded frames out, time
//! passed in as an `Instant`, no sockets, clocks or threads.
//!
//! - [`jitter`]: one participant's packets back in playout order, one
//!   20 ms frame per tick, concealment for a lost one, idle when the
//!   participant stops sending (muted, DTX, left).
//! - [`audio`]: the audio mixer: decode every input each tick, sum,
//!   subtract each receiver's own voice (mix-minus), limit, encode once per
//!   receiver.
//! - [`host`]: the mixers of one mixing worker, one per conference, fed
//!   by the bridge's shards with [`host::MixCommand`]s.
//! - [`codec`]: the seam to the codec ([`codec::AudioCodec`]);
//!   [`opus::Opus`] is the real one, and [`codec::Pcm16`] (raw samples)
//!   lets the mixing itself be tested exactly.
//! - [`video`]: the composite: H.264 in, a grid or speaker layout of
//!   everyone's pictures encoded once, out.

pub mod audio;
pub mod codec;
pub mod host;
pub mod jitter;
pub mod opus;
pub mod video;

/// The RTP clock of Opus, whatever rate it is decoded at (RFC 7587).
pub const RTP_CLOCK: u32 = 48_000;
/// One mixing tick: the frame length browsers send (ptime 20).
pub const FRAME_MS: u32 = 20;
/// RTP timestamp ticks per frame.
pub const FRAME_TICKS: u32 = RTP_CLOCK / 1000 * FRAME_MS;

/// Sample rates a mixed conference may use (the seed guide's choices).
pub const SAMPLE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Samples in one frame at `rate`.
pub fn frame_samples(rate: u32) -> usize {
    (rate / 1000 * FRAME_MS) as usize
}

/// Why the mixer refused something. The shell counts these by
/// [`MixerError::reason`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixerError {
    #[error("sample rate {0} Hz is not one of 8000, 12000, 16000, 24000, 48000")]
    SampleRate(u32),
    #[error("participant {0} is not in the mix")]
    UnknownParticipant(u64),
    #[error("participant {0} is already in the mix")]
    DuplicateParticipant(u64),
    #[error("codec: {0}")]
    Codec(String),
}

impl MixerError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            MixerError::SampleRate(_) => "sample_rate",
            MixerError::UnknownParticipant(_) => "unknown_participant",
            MixerError::DuplicateParticipant(_) => "duplicate_participant",
            MixerError::Codec(_) => "codec",
        }
    }
}
