//! VP8 frames back from RTP (RFC 7741). Packets of one frame share an RTP
//! timestamp; the first has the start bit set on partition 0, the last
//! the marker bit. A frame is complete when every sequence number from its
//! first packet to its last arrived.

use crate::RecordError;

/// A VP8 keyframe of a black 320x180 picture (133 bytes), what a video
/// file shows from its participant's arrival until the camera's first
/// picture ([`crate::TrackRecorder::begin_at`]). Made once with libvpx:
/// `ffmpeg -f lavfi -i color=black:s=320x180 -frames:v 1 -c:v libvpx
/// -b:v 50k -f ivf black.ivf`, the frame after the IVF headers; a recorder
/// cannot encode, and VP8 keyframes carry their own size, so the camera's
/// first keyframe after it changes the size as any decoder expects.
pub const BLACK_KEYFRAME: [u8; 133] = [
    0xf0, 0x0e, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, 0x02, 0xc7, 0x08, 0x85, 0x85, 0x88,
    0x99, 0x84, 0x88, 0x0f, 0x82, 0x00, 0x06, 0x16, 0x04, 0xf7, 0x06, 0x81, 0x64, 0x9f, 0x6b, 0xdb,
    0x9b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b,
    0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27,
    0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38,
    0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b,
    0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27,
    0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x38, 0x7b, 0x27, 0x2e,
    0x00, 0xfe, 0xfa, 0x77, 0x40,
];

/// Where the VP8 payload starts in an RTP payload, and what the payload
/// descriptor says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes of descriptor before the VP8 data.
    pub len: usize,
    /// The first packet of a frame (S set, partition index 0).
    pub start: bool,
}

/// Read the payload descriptor (RFC 7741 section 4.2).
pub fn descriptor(payload: &[u8]) -> Result<Descriptor, RecordError> {
    let first = *payload.first().ok_or(RecordError::Empty)?;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let x = *payload.get(1).ok_or(RecordError::Vp8Descriptor)?;
        len = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let pid = *payload.get(len).ok_or(RecordError::Vp8Descriptor)?;
            len += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            len += 1; // TID/Y/KEYIDX
        }
    }
    if payload.len() <= len {
        return Err(RecordError::Vp8Descriptor);
    }
    Ok(Descriptor { len, start })
}

/// A complete frame's first bytes say whether it is a keyframe, and a
/// keyframe its dimensions (RFC 6386 section 9.1).
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_of_every_shape_are_measured() {
        // Minimal: no extensions, start of partition 0.
        assert_eq!(
            descriptor(&[0x10, 0xAA]),
            Ok(Descriptor {
                len: 1,
                start: true
            })
        );
        // X, I with a 15-bit picture id, L, T: 1 + 1 + 2 + 1 + 1.
        assert_eq!(
            descriptor(&[0x90, 0xE0, 0x81, 0x23, 0x05, 0x20, 0xAA]),
            Ok(Descriptor {
                len: 6,
                start: true
            })
        );
        // A continuation packet.
        assert_eq!(
            descriptor(&[0x80, 0x80, 0x05, 0xAA]),
            Ok(Descriptor {
                len: 3,
                start: false
            })
        );
        // Start bit on another partition is not a frame's start.
        assert!(!descriptor(&[0x11, 0xAA]).is_ok_and(|d| d.start));
    }

    #[test]
    fn truncated_descriptors_are_refused() {
        assert_eq!(descriptor(&[]), Err(RecordError::Empty));
        assert_eq!(descriptor(&[0x90]), Err(RecordError::Vp8Descriptor));
        assert_eq!(
            descriptor(&[0x90, 0x80, 0x81]),
            Err(RecordError::Vp8Descriptor)
        );
        // A descriptor and no VP8 data.
        assert_eq!(descriptor(&[0x10]), Err(RecordError::Vp8Descriptor));
    }

    #[test]
    fn keyframes_carry_their_size_and_interframes_are_not_keyframes() {
        let key = [0x50, 0x01, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01];
        assert_eq!(keyframe_size(&key), Some((640, 360)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(keyframe_size(&inter), None);
        assert_eq!(keyframe_size(&key[..5]), None);
    }
}
