//! A WebM (or, with H.264, Matroska) file, written front to back and never
//! revisited: the EBML header, a segment of unknown size with the segment
//! info and the tracks, then clusters of unknown size holding simple
//! blocks. One track per participant's source; two (the composite and the
//! mix) for a mixed conference. No cues and
//! no duration: both would need the end known (or a rewrite of the start),
//! and players find their way through a file like this one as they do
//! through a live WebM stream. A cluster starts at every video keyframe
//! (so a player can start at any cluster) and at least every
//! [`MAX_CLUSTER_MS`].

use crate::ebml;

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// A block's timestamp is an i16 offset from its cluster's: start a new
/// cluster well before that runs out (and keep clusters small enough that a
/// file cut short loses little of what a player can seek to).
pub const MAX_CLUSTER_MS: u64 = 5_000;

/// Opus's pre-skip at 48 kHz, declared in the header: RTP does not carry
/// it, and libopus (what browsers encode with) starts with 312 samples
/// (6.5 ms) of encoder delay.
const OPUS_PRE_SKIP: u16 = 312;

/// What a track of a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    Vp8 {
        width: u16,
        height: u16,
    },
    Opus {
        channels: u8,
    },
    Vp9 {
        width: u16,
        height: u16,
    },
    /// `av1c`: the AV1CodecConfigurationRecord, the sequence header last.
    Av1 {
        width: u16,
        height: u16,
        av1c: Vec<u8>,
    },
    /// H.264 as length-prefixed NAL units (4-byte lengths); `avcc` is the
    /// AVCDecoderConfigurationRecord (ISO 14496-15) Matroska requires.
    H264 {
        width: u16,
        height: u16,
        avcc: Vec<u8>,
    },
}

impl TrackKind {
    fn video(&self) -> bool {
        !matches!(self, TrackKind::Opus { .. })
    }
}

/// Writes one file into caller-owned buffers.
#[derive(Debug)]
pub struct WebmWriter {
    /// Per track (number = index + 1): whether it is video.
    video: Vec<bool>,
    /// The open cluster's timestamp (ms), if one is open.
    cluster: Option<u64>,
    /// Per track, the last block's timestamp: a track never goes backwards.
    last: Vec<Option<u64>>,
}

impl WebmWriter {
    /// Append the start of a one-track file (everything before the first
    /// cluster).
    pub fn new(kind: TrackKind, out: &mut Vec<u8>) -> Self {
        Self::with_tracks(std::slice::from_ref(&kind), out)
    }

    /// Append the start of a file of `kinds` (track numbers 1, 2, ...; at
    /// most 127). With H.264 the file is Matroska (WebM has no H.264).
    pub fn with_tracks(kinds: &[TrackKind], out: &mut Vec<u8>) -> Self {
        let kinds = &kinds[..kinds.len().min(127)];
        let matroska = kinds.iter().any(|k| matches!(k, TrackKind::H264 { .. }));
        ebml::master(out, EBML, |e| {
            ebml::uint(e, EBML_VERSION, 1);
            ebml::uint(e, EBML_READ_VERSION, 1);
            ebml::uint(e, EBML_MAX_ID_LENGTH, 4);
            ebml::uint(e, EBML_MAX_SIZE_LENGTH, 8);
            ebml::bytes(e, DOC_TYPE, if matroska { b"matroska" } else { b"webm" });
            ebml::uint(e, DOC_TYPE_VERSION, 4);
            ebml::uint(e, DOC_TYPE_READ_VERSION, 2);
        });
        ebml::open_unknown(out, SEGMENT);
        ebml::master(out, INFO, |i| {
            // Block timestamps in milliseconds.
            ebml::uint(i, TIMESTAMP_SCALE, 1_000_000);
            ebml::bytes(i, MUXING_APP, b"tern-record");
            ebml::bytes(i, WRITING_APP, b"tern");
        });
        ebml::master(out, TRACKS, |t| {
            for (i, kind) in kinds.iter().enumerate() {
                track_entry(t, i as u64 + 1, kind);
            }
        });
        Self {
            video: kinds.iter().map(TrackKind::video).collect(),
            cluster: None,
            last: vec![None; kinds.len()],
        }
    }

    /// Append one frame of the first track at `ms` on the file's
    /// timeline. A frame earlier than the last one written is refused
    /// (false): a player would play it out of order.
    pub fn frame(&mut self, ms: u64, keyframe: bool, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.frame_on(1, ms, keyframe, data, out)
    }

    /// Append one frame of track `track` (1-based) at `ms`; false for a
    /// frame earlier than the track's last, or an unknown track. Tracks
    /// interleave: a frame a little before the open cluster (another
    /// track's keyframe opened it) gets a negative offset in it.
    pub fn frame_on(
        &mut self,
        track: u8,
        ms: u64,
        keyframe: bool,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let i = usize::from(track.wrapping_sub(1));
        let (Some(&video), Some(last)) = (self.video.get(i), self.last.get(i)) else {
            return false;
        };
        if last.is_some_and(|l| ms < l) {
            return false;
        }
        let start = match self.cluster {
            None => true,
            Some(c) => (video && keyframe) || ms.saturating_sub(c) >= MAX_CLUSTER_MS,
        };
        if start {
            ebml::open_unknown(out, CLUSTER);
            ebml::uint(out, TIMESTAMP, ms);
            self.cluster = Some(ms);
        }
        let rel = ms as i64 - self.cluster.unwrap_or(ms) as i64;
        // Under MAX_CLUSTER_MS after the cluster; before it by what tracks
        // interleave (clamped, never wrapped).
        let rel = rel.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        ebml::id(out, SIMPLE_BLOCK);
        ebml::size(out, 4 + data.len() as u64);
        // The track number as a one-byte variable-length integer.
        out.push(0x80 | track);
        out.extend_from_slice(&rel.to_be_bytes());
        // Audio frames are all keyframes (each decodes on its own).
        out.push(if keyframe || !video { 0x80 } else { 0x00 });
        out.extend_from_slice(data);
        self.last[i] = Some(ms);
        true
    }
}

fn track_entry(t: &mut Vec<u8>, number: u64, kind: &TrackKind) {
    ebml::master(t, TRACK_ENTRY, |e| {
        ebml::uint(e, TRACK_NUMBER, number);
        ebml::uint(e, TRACK_UID, number);
        match kind {
            TrackKind::Vp8 { width, height } | TrackKind::Vp9 { width, height } => {
                ebml::uint(e, TRACK_TYPE, 1);
                let vp8 = matches!(kind, TrackKind::Vp8 { .. });
                ebml::bytes(e, CODEC_ID, if vp8 { b"V_VP8" } else { b"V_VP9" });
                ebml::master(e, VIDEO, |v| {
                    ebml::uint(v, PIXEL_WIDTH, u64::from(*width));
                    ebml::uint(v, PIXEL_HEIGHT, u64::from(*height));
                });
            }
            TrackKind::H264 {
                width,
                height,
                avcc: private,
            }
            | TrackKind::Av1 {
                width,
                height,
                av1c: private,
            } => {
                ebml::uint(e, TRACK_TYPE, 1);
                let h264 = matches!(kind, TrackKind::H264 { .. });
                ebml::bytes(
                    e,
                    CODEC_ID,
                    if h264 { b"V_MPEG4/ISO/AVC" } else { b"V_AV1" },
                );
                ebml::bytes(e, CODEC_PRIVATE, private);
                ebml::master(e, VIDEO, |v| {
                    ebml::uint(v, PIXEL_WIDTH, u64::from(*width));
                    ebml::uint(v, PIXEL_HEIGHT, u64::from(*height));
                });
            }
            TrackKind::Opus { channels } => {
                ebml::uint(e, TRACK_TYPE, 2);
                ebml::bytes(e, CODEC_ID, b"A_OPUS");
                ebml::bytes(e, CODEC_PRIVATE, &opus_head(*channels));
                ebml::uint(
                    e,
                    CODEC_DELAY,
                    u64::from(OPUS_PRE_SKIP) * 1_000_000_000 / 48_000,
                );
                ebml::uint(e, SEEK_PRE_ROLL, 80_000_000);
                ebml::master(e, AUDIO, |a| {
                    ebml::float(a, SAMPLING_FREQUENCY, 48_000.0);
                    ebml::uint(a, CHANNELS, u64::from(*channels));
                });
            }
        }
    });
}

/// The Opus identification header (RFC 7845 section 5.1) Matroska carries
/// as the track's codec private data.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&OPUS_PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    // Mapping family 0: mono or stereo, no table.
    h.push(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_start_at_video_keyframes_and_at_least_every_five_seconds() {
        let mut out = Vec::new();
        let mut w = WebmWriter::new(
            TrackKind::Vp8 {
                width: 64,
                height: 48,
            },
            &mut out,
        );
        let header = out.len();
        let clusters = |out: &[u8]| {
            out.windows(4)
                .filter(|w| *w == [0x1F, 0x43, 0xB6, 0x75])
                .count()
        };
        assert!(w.frame(0, true, b"k", &mut out));
        assert!(w.frame(33, false, b"d", &mut out));
        assert_eq!(clusters(&out[header..]), 1);
        assert!(w.frame(66, true, b"k", &mut out));
        assert_eq!(clusters(&out[header..]), 2);
        assert!(w.frame(66 + MAX_CLUSTER_MS, false, b"d", &mut out));
        assert_eq!(clusters(&out[header..]), 3);
        // Never backwards.
        assert!(!w.frame(10, false, b"d", &mut out));
    }

    #[test]
    fn the_opus_header_declares_channels_pre_skip_and_48_khz() {
        let h = opus_head(2);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!(h[9], 2);
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312);
        assert_eq!(u32::from_le_bytes([h[12], h[13], h[14], h[15]]), 48_000);
        assert_eq!(h.len(), 19);
    }
}
