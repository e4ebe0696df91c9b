//! VP9 payload descriptor (RFC 9628, "RTP Payload Format for VP9"): what
//! a receive slot needs to switch onto a stream — where a keyframe starts
//! and, from the scalability structure a keyframe carries, its picture
//! size.
//!
//! Browsers send VP9 two ways, and Tern forwards both. Under simulcast each
//! rid is its own stream with one spatial layer (L1T1 or L1T3), so a switch
//! is a switch between streams at a keyframe, as for VP8. As SVC (L2T3,
//! L3T3_KEY...) one stream carries every spatial layer, each packet naming
//! its layer (SID) and whether it ends that layer's frame (E); a receiver's
//! layer is then chosen by dropping the packets above it (`core/svc.rs`).
//! A keyframe's first packet has B (start of frame) set and P
//! (inter-picture predicted) clear, and, when layer indices are present,
//! spatial layer 0: the upper spatial layers of an SVC keyframe depend on
//! layer 0 and are not a place to start.

/// Most spatial layers the scalability structure can describe (N_S is 3 bits).
pub const MAX_SPATIAL: usize = 8;

/// What a VP9 packet says, as far as forwarding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Info {
    /// The first packet of a keyframe (spatial layer 0).
    pub keyframe_start: bool,
    /// Width and height of the first spatial layer, from the scalability
    /// structure (V bit) a keyframe usually carries.
    pub dims: Option<(u16, u16)>,
    /// Spatial layer of this packet (0 without layer indices).
    pub sid: u8,
    /// B: the first packet of a layer frame.
    pub layer_start: bool,
    /// E: the last packet of a layer frame.
    pub layer_end: bool,
    /// From the scalability structure: how many spatial layers the stream
    /// has (N_S + 1) and, when it says (Y), each one's height, lowest first.
    pub spatial: Option<Spatial>,
}

/// The spatial layers a scalability structure declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spatial {
    pub count: u8,
    /// Heights of layers `0..count`; 0 where the structure gave none.
    pub heights: [u16; MAX_SPATIAL],
}

/// Whether the descriptor carries a scalability structure (V bit), as a
/// keyframe's first packet does: one bit, read without parsing.
pub fn carries_structure(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x02 != 0)
}

/// Parse the descriptor; `None` when it is cut short (a malformed packet).
pub fn parse(payload: &[u8]) -> Option<Vp9Info> {
    let b0 = *payload.first()?;
    let (i, p, l, f, b, e, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
        b0 & 0x04 != 0,
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
    let mut spatial = None;
    if v {
        let ss = *payload.get(at)?;
        let count = (ss >> 5) + 1;
        let y = ss & 0x10 != 0;
        let mut heights = [0u16; MAX_SPATIAL];
        if y {
            for (layer, height) in heights.iter_mut().enumerate().take(usize::from(count)) {
                let o = at + 1 + layer * 4;
                let w = u16::from_be_bytes([*payload.get(o)?, *payload.get(o + 1)?]);
                let h = u16::from_be_bytes([*payload.get(o + 2)?, *payload.get(o + 3)?]);
                if layer == 0 {
                    dims = Some((w, h));
                }
                *height = h;
            }
        }
        spatial = Some(Spatial { count, heights });
    }
    Some(Vp9Info {
        keyframe_start: b && !p && sid == 0,
        dims,
        sid,
        layer_start: b,
        layer_end: e,
        spatial,
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
                sid: 0,
                layer_start: true,
                layer_end: false,
                spatial: Some(Spatial {
                    count: 1,
                    heights: [360, 0, 0, 0, 0, 0, 0, 0],
                }),
            })
        );
    }

    #[test]
    fn an_svc_keyframe_declares_every_spatial_layer_and_packets_name_theirs() {
        // I (7-bit pid), L: TID 0 SID 0 (non-flexible: TL0PICIDX), B, V;
        // SS: N_S=2, Y, then 320x180, 640x360, 1280x720.
        let mut p = vec![0xA0 | 0x08 | 0x02, 0x05, 0x00, 0x00, 0x50];
        for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
            p.extend_from_slice(&w.to_be_bytes());
            p.extend_from_slice(&h.to_be_bytes());
        }
        p.push(0xAA);
        assert!(carries_structure(&p));
        let info = parse(&p).expect("well formed");
        assert!(info.keyframe_start);
        assert_eq!(info.dims, Some((320, 180)));
        let spatial = info.spatial.expect("scalability structure");
        assert_eq!(spatial.count, 3);
        assert_eq!(&spatial.heights[..3], &[180, 360, 720]);
        // The last packet of spatial layer 2's frame: L with SID 2, E set.
        assert!(!carries_structure(&[0xA0 | 0x04, 0x05, 0x04, 0x00, 0xAA]));
        let info = parse(&[0xA0 | 0x04, 0x05, 0x04, 0x00, 0xAA]).expect("well formed");
        assert_eq!(
            (info.sid, info.layer_start, info.layer_end),
            (2, false, true)
        );
        assert!(!info.keyframe_start);
        assert_eq!(info.spatial, None);
    }

    #[test]
    fn a_scalability_structure_cut_short_is_malformed() {
        // N_S=1 with Y: two sizes announced, one and a half present.
        let p = [0x02, 0x30, 0x01, 0x40, 0x00, 0xB4, 0x02, 0x80];
        assert_eq!(parse(&p), None);
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
