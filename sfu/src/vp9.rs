//! VP9 payload descriptor (RFC 9628, "RTP Payload Format for VP9"): what
//! a receive slot needs to switch onto a stream — where a keyframe starts
//! and, from the scalability structure a keyframe carries, its picture
//! size.
//!
//! Tern forwards VP9 the way browsers send it under simulcast: each rid is
//! its own stream with one spatial layer (L1T1 or L1T3), so a switch is a
//! switch between streams at a keyframe, as for VP8. A keyframe's first
//! packet has B (start of frame) set and P (inter-picture predicted)
//! clear, and, when layer indices are present, spatial layer 0: the upper
//! spatial layers of an SVC keyframe depend on layer 0 and are not a place
//! to start.

/// What a VP9 packet says, as far as forwarding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Info {
    /// The first packet of a keyframe (spatial layer 0).
    pub keyframe_start: bool,
    /// Width and height of the first spatial layer, from the scalability
    /// structure (V bit) a keyframe usually carries.
    pub dims: Option<(u16, u16)>,
}

/// Parse the descriptor; `None` when it is cut short (a malformed packet).
pub fn parse(payload: &[u8]) -> Option<Vp9Info> {
    let b0 = *payload.first()?;
    let (i, p, l, f, b, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
        b0 & 0x02 != 0,
    );
    let mut at = 1;
    if i {
        // M: a 15-bit picture id.
        at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut sid = 0;
    if l {
        sid = (payload.get(at)? >> 1) & 0x07;
        at += 1;
        // Non-flexible mode carries TL0PICIDX.
        if !f {
            at += 1;
        }
    }
    if p && f {
        // Up to three reference indices, each with N (another follows).
        loop {
            let r = *payload.get(at)?;
            at += 1;
            if r & 0x01 == 0 {
                break;
            }
        }
    }
    // The descriptor must leave room for the VP9 data it describes.
    if at >= payload.len() {
        return None;
    }
    let mut dims = None;
    if v {
        let ss = *payload.get(at)?;
        let y = ss & 0x10 != 0;
        if y {
            let w = u16::from_be_bytes([*payload.get(at + 1)?, *payload.get(at + 2)?]);
            let h = u16::from_be_bytes([*payload.get(at + 3)?, *payload.get(at + 4)?]);
            dims = Some((w, h));
        }
    }
    Some(Vp9Info {
        keyframe_start: b && !p && sid == 0,
        dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_start_with_its_scalability_structure() {
        // I M picture id 0x1234, L: TID 0 SID 0, TL0PICIDX, B, V; SS: N_S=0,
        // Y, then 640x360.
        let p = [
            0xA0 | 0x08 | 0x02,
            0x80 | 0x12,
            0x34,
            0x00,
            0x07,
            0x10,
            0x02,
            0x80,
            0x01,
            0x68,
        ];
        assert_eq!(
            parse(&p),
            Some(Vp9Info {
                keyframe_start: true,
                dims: Some((640, 360)),
            })
        );
    }

    #[test]
    fn predicted_continuation_and_upper_spatial_layer_packets_are_not_keyframe_starts() {
        // P set (inter frame), B set.
        assert_eq!(parse(&[0x48, 0x00]).map(|i| i.keyframe_start), Some(false));
        // A keyframe's later packet: B clear.
        assert_eq!(parse(&[0x00, 0x00]).map(|i| i.keyframe_start), Some(false));
        // L with SID 1: not a place to start.
        assert_eq!(
            parse(&[0x28, 0x02, 0x00, 0x00]).map(|i| i.keyframe_start),
            Some(false)
        );
        // Without I or L, B and not P is a keyframe start.
        assert_eq!(parse(&[0x08, 0x00]).map(|i| i.keyframe_start), Some(true));
    }

    #[test]
    fn flexible_mode_references_are_skipped() {
        // I (7-bit), P, F, B; two reference indices (N set on the first).
        let p = [0xD8, 0x05, 0x03, 0x02, 0xAA];
        assert_eq!(parse(&p).map(|i| i.keyframe_start), Some(false));
    }

    #[test]
    fn cut_short_descriptors_are_malformed() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80]), None, "I without the picture id");
        assert_eq!(parse(&[0x80, 0x80]), None, "15-bit picture id cut");
        assert_eq!(parse(&[0x20]), None, "L without the layer byte");
        assert_eq!(parse(&[0x02, 0x10, 0x02]), None, "SS size cut");
    }
}
