//! One track's WebM file, written front to back and never revisited: the
//! EBML header, a segment of unknown size with the segment info and the
//! track, then clusters of unknown size holding simple blocks. No cues and
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

/// What the one track of a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Vp8 { width: u16, height: u16 },
    Opus { channels: u8 },
}

/// Writes one track's file into caller-owned buffers.
#[derive(Debug)]
pub struct WebmWriter {
    kind: TrackKind,
    /// The open cluster's timestamp (ms), if one is open.
    cluster: Option<u64>,
    /// The last block's timestamp: blocks never go backwards.
    last: Option<u64>,
}

impl WebmWriter {
    /// Append the file's start (everything before the first cluster).
    pub fn new(kind: TrackKind, out: &mut Vec<u8>) -> Self {
        ebml::master(out, EBML, |e| {
            ebml::uint(e, EBML_VERSION, 1);
            ebml::uint(e, EBML_READ_VERSION, 1);
            ebml::uint(e, EBML_MAX_ID_LENGTH, 4);
            ebml::uint(e, EBML_MAX_SIZE_LENGTH, 8);
            ebml::bytes(e, DOC_TYPE, b"webm");
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
            ebml::master(t, TRACK_ENTRY, |e| {
                ebml::uint(e, TRACK_NUMBER, 1);
                ebml::uint(e, TRACK_UID, 1);
                match kind {
                    TrackKind::Vp8 { width, height } => {
                        ebml::uint(e, TRACK_TYPE, 1);
                        ebml::bytes(e, CODEC_ID, b"V_VP8");
                        ebml::master(e, VIDEO, |v| {
                            ebml::uint(v, PIXEL_WIDTH, u64::from(width));
                            ebml::uint(v, PIXEL_HEIGHT, u64::from(height));
                        });
                    }
                    TrackKind::Opus { channels } => {
                        ebml::uint(e, TRACK_TYPE, 2);
                        ebml::bytes(e, CODEC_ID, b"A_OPUS");
                        ebml::bytes(e, CODEC_PRIVATE, &opus_head(channels));
                        ebml::uint(
                            e,
                            CODEC_DELAY,
                            u64::from(OPUS_PRE_SKIP) * 1_000_000_000 / 48_000,
                        );
                        ebml::uint(e, SEEK_PRE_ROLL, 80_000_000);
                        ebml::master(e, AUDIO, |a| {
                            ebml::float(a, SAMPLING_FREQUENCY, 48_000.0);
                            ebml::uint(a, CHANNELS, u64::from(channels));
                        });
                    }
                }
            });
        });
        Self {
            kind,
            cluster: None,
            last: None,
        }
    }

    /// Append one frame at `ms` on the file's timeline. A frame earlier
    /// than the last one written is refused (false): a player would play
    /// it out of order.
    pub fn frame(&mut self, ms: u64, keyframe: bool, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.last.is_some_and(|l| ms < l) {
            return false;
        }
        let video = matches!(self.kind, TrackKind::Vp8 { .. });
        let start = match self.cluster {
            None => true,
            Some(c) => (video && keyframe) || ms - c >= MAX_CLUSTER_MS,
        };
        if start {
            ebml::open_unknown(out, CLUSTER);
            ebml::uint(out, TIMESTAMP, ms);
            self.cluster = Some(ms);
        }
        let rel = ms - self.cluster.unwrap_or(ms);
        // Below MAX_CLUSTER_MS, so it fits an i16.
        let rel = i16::try_from(rel).unwrap_or(i16::MAX);
        ebml::id(out, SIMPLE_BLOCK);
        ebml::size(out, 4 + data.len() as u64);
        // Track number 1 as a one-byte variable-length integer.
        out.push(0x81);
        out.extend_from_slice(&rel.to_be_bytes());
        // Audio frames are all keyframes (each decodes on its own).
        out.push(if keyframe || !video { 0x80 } else { 0x00 });
        out.extend_from_slice(data);
        self.last = Some(ms);
        true
    }
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
