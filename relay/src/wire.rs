//! The relay wire format: media datagrams and length-delimited control frames.
//!
//! A media datagram is a 16-byte header followed by the RTP payload, all
//! integers big-endian:
//!
//! ```text
//!  0      version (high nibble, 1) | kind (low nibble, 0 = media)
//!  1..5   conference number (origin's)
//!  5..7   source number (origin's, per conference)
//!  7      layer (bits 0-3) | 0x10 audio level present | 0x20 voice activity
//!         | 0x40 retransmission | 0x80 RTP marker
//!  8..10  RTP sequence number of the layer, as the publisher sent it
//!  10..14 RTP timestamp
//!  14     audio level, -dBov 0..127 (RFC 6464), when present
//!  15     codec: 1 Opus, 2 VP8, 3 H.264
//!  16..   RTP payload
//! ```
//!
//! The RTP header is not carried: the receiving bridge rewrites sequence
//! numbers and timestamps per receiver anyway, and SSRCs are its own.

use prost::Message;

use crate::RelayError;
use crate::msg::RelayControl;

pub const HEADER_LEN: usize = 16;
/// Control frames larger than this are a protocol violation (the largest
/// legitimate one, a participant's source list, is a few hundred bytes).
pub const MAX_CONTROL_FRAME: usize = 256 * 1024;

const VERSION: u8 = 1;
const KIND_MEDIA: u8 = 0;

const F_LEVEL: u8 = 0x10;
const F_VOICE: u8 = 0x20;
const F_RTX: u8 = 0x40;
const F_MARKER: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus = 1,
    Vp8 = 2,
    H264 = 3,
    Vp9 = 4,
    Av1 = 5,
}

impl Codec {
    fn from_u8(v: u8) -> Result<Codec, RelayError> {
        match v {
            1 => Ok(Codec::Opus),
            2 => Ok(Codec::Vp8),
            3 => Ok(Codec::H264),
            4 => Ok(Codec::Vp9),
            5 => Ok(Codec::Av1),
            other => Err(RelayError::DatagramCodec(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaHeader {
    pub conference: u32,
    pub source: u16,
    /// Simulcast layer index, 0..=15.
    pub layer: u8,
    pub marker: bool,
    /// Sent again in answer to a NACK (not counted as new on the link).
    pub retransmission: bool,
    pub seq: u16,
    pub timestamp: u32,
    /// RFC 6464 level, 0..=127 (-dBov).
    pub audio_level: Option<u8>,
    pub voice_activity: bool,
    pub codec: Codec,
}

impl MediaHeader {
    /// Append the header then `payload` to `out` (cleared first).
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER_LEN + payload.len());
        out.push(VERSION << 4 | KIND_MEDIA);
        out.extend_from_slice(&self.conference.to_be_bytes());
        out.extend_from_slice(&self.source.to_be_bytes());
        let mut b = self.layer & 0x0f;
        if self.audio_level.is_some() {
            b |= F_LEVEL;
        }
        if self.voice_activity {
            b |= F_VOICE;
        }
        if self.retransmission {
            b |= F_RTX;
        }
        if self.marker {
            b |= F_MARKER;
        }
        out.push(b);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.push(self.audio_level.unwrap_or(0) & 0x7f);
        out.push(self.codec as u8);
        out.extend_from_slice(payload);
    }

    /// Split a datagram into header and payload.
    pub fn parse(data: &[u8]) -> Result<(MediaHeader, &[u8]), RelayError> {
        if data.len() < HEADER_LEN {
            return Err(RelayError::ShortDatagram(data.len()));
        }
        let version = data[0] >> 4;
        if version != VERSION {
            return Err(RelayError::DatagramVersion(version));
        }
        let kind = data[0] & 0x0f;
        if kind != KIND_MEDIA {
            return Err(RelayError::DatagramKind(kind));
        }
        let b = data[7];
        let h = MediaHeader {
            conference: u32::from_be_bytes([data[1], data[2], data[3], data[4]]),
            source: u16::from_be_bytes([data[5], data[6]]),
            layer: b & 0x0f,
            marker: b & F_MARKER != 0,
            retransmission: b & F_RTX != 0,
            seq: u16::from_be_bytes([data[8], data[9]]),
            timestamp: u32::from_be_bytes([data[10], data[11], data[12], data[13]]),
            audio_level: (b & F_LEVEL != 0).then_some(data[14] & 0x7f),
            voice_activity: b & F_VOICE != 0,
            codec: Codec::from_u8(data[15])?,
        };
        Ok((h, &data[HEADER_LEN..]))
    }
}

/// Mark a datagram already written as a retransmission.
pub fn set_retransmission(datagram: &mut [u8]) {
    if let Some(b) = datagram.get_mut(7) {
        *b |= F_RTX;
    }
}

/// Append one control message, length-prefixed, to `out`.
pub fn encode_control(msg: &RelayControl, out: &mut Vec<u8>) {
    // Encoding into a Vec cannot run out of space.
    let _ = msg.encode_length_delimited(out);
}

/// Reassembles control messages from the bytes of the control stream.
#[derive(Debug, Default)]
pub struct ControlDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl ControlDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a message. Once
    /// [`ControlDecoder::next_message`] has returned `None` this is less than
    /// one frame of [`MAX_CONTROL_FRAME`] plus its length prefix: what a
    /// peer can make a link buffer is bounded by the frame limit.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, if any. After an error the stream is
    /// unusable (framing is lost) and the link must be closed.
    pub fn next_message(&mut self) -> Option<Result<RelayControl, RelayError>> {
        let mut rest = &self.buf[self.start..];
        if rest.is_empty() {
            return None;
        }
        let before = rest.len();
        let len = match prost::encoding::decode_varint(&mut rest) {
            Ok(l) => l,
            // A varint is at most 10 bytes: fewer may just be incomplete.
            Err(_) if before < 10 => return None,
            Err(e) => return Some(Err(RelayError::BadFrame(e.to_string()))),
        };
        let Ok(len) = usize::try_from(len) else {
            return Some(Err(RelayError::FrameTooLarge(usize::MAX)));
        };
        if len > MAX_CONTROL_FRAME {
            return Some(Err(RelayError::FrameTooLarge(len)));
        }
        let prefix = before - rest.len();
        if rest.len() < len {
            return None;
        }
        let result =
            RelayControl::decode(&rest[..len]).map_err(|e| RelayError::BadFrame(e.to_string()));
        self.start += prefix + len;
        if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Ping, relay_control};
    use proptest::prelude::*;

    fn header() -> MediaHeader {
        MediaHeader {
            conference: 7,
            source: 3,
            layer: 2,
            marker: true,
            retransmission: false,
            seq: 65535,
            timestamp: 0xdead_beef,
            audio_level: Some(42),
            voice_activity: true,
            codec: Codec::Vp8,
        }
    }

    #[test]
    fn media_header_round_trips() {
        let mut out = Vec::new();
        header().write(b"payload", &mut out);
        assert_eq!(out.len(), HEADER_LEN + 7);
        let (h, p) = MediaHeader::parse(&out).expect("parses");
        assert_eq!(h, header());
        assert_eq!(p, b"payload");
        set_retransmission(&mut out);
        let (h, _) = MediaHeader::parse(&out).expect("parses");
        assert!(h.retransmission);
    }

    #[test]
    fn every_video_codec_a_bridge_forwards_crosses_with_its_own_byte() {
        for (codec, byte) in [
            (Codec::Opus, 1),
            (Codec::Vp8, 2),
            (Codec::H264, 3),
            (Codec::Vp9, 4),
            (Codec::Av1, 5),
        ] {
            let mut out = Vec::new();
            MediaHeader { codec, ..header() }.write(b"x", &mut out);
            assert_eq!(out[15], byte);
            let (h, payload) = MediaHeader::parse(&out).expect("parses");
            assert_eq!((h.codec, payload), (codec, &b"x"[..]));
        }
    }

    #[test]
    fn bad_datagrams_are_refused_with_their_reason() {
        let mut out = Vec::new();
        header().write(b"", &mut out);
        assert_eq!(
            MediaHeader::parse(&out[..5]),
            Err(RelayError::ShortDatagram(5))
        );
        let mut v2 = out.clone();
        v2[0] = 0x20;
        assert_eq!(MediaHeader::parse(&v2), Err(RelayError::DatagramVersion(2)));
        let mut k = out.clone();
        k[0] = 0x13;
        assert_eq!(MediaHeader::parse(&k), Err(RelayError::DatagramKind(3)));
        let mut c = out.clone();
        c[15] = 9;
        assert_eq!(MediaHeader::parse(&c), Err(RelayError::DatagramCodec(9)));
    }

    #[test]
    fn control_frames_reassemble_across_arbitrary_splits() {
        let mut bytes = Vec::new();
        for id in 0..50u64 {
            let m = RelayControl {
                msg: Some(relay_control::Msg::Ping(Ping { id })),
            };
            encode_control(&m, &mut bytes);
        }
        for chunk in [1, 2, 3, 7, 64, 1000] {
            let mut d = ControlDecoder::default();
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                d.push(c);
                while let Some(m) = d.next_message() {
                    got.push(m.expect("valid"));
                }
            }
            assert_eq!(got.len(), 50, "chunk {chunk}");
        }
    }

    #[test]
    fn oversized_control_frame_is_refused_before_buffering_it() {
        let mut d = ControlDecoder::default();
        let mut b = Vec::new();
        prost::encoding::encode_varint(10 * 1024 * 1024, &mut b);
        d.push(&b);
        assert_eq!(
            d.next_message(),
            Some(Err(RelayError::FrameTooLarge(10 * 1024 * 1024)))
        );
        assert_eq!(d.pending(), b.len());
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = MediaHeader::parse(&data);
            let mut d = ControlDecoder::default();
            d.push(&data);
            while let Some(Ok(_)) = d.next_message() {}
        }
    }
}
