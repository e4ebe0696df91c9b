//! VP9 payload descriptor (RFC 9628, "RTP Payload Format for VP9"): what
//! a recorder needs to cut pictures back out of RTP ([`assemble`]), and what
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

use crate::RecordError;
use crate::bits::Bits;

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
    /// has (N_S + 1) and, when it says (Y), each one's size, lowest first.
    pub spatial: Option<Spatial>,
    /// P: the layer frame is predicted from an earlier picture.
    pub inter: bool,
    /// D: the layer frame is predicted from the spatial layer below it in
    /// the same picture (always false for layer 0).
    pub inter_layer: bool,
    /// Bytes of descriptor (scalability structure included) before the
    /// VP9 data.
    pub header_len: usize,
}

/// The spatial layers a scalability structure declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spatial {
    pub count: u8,
    /// Widths and heights of layers `0..count`; 0 where the structure
    /// gave none.
    pub widths: [u16; MAX_SPATIAL],
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
    let mut inter_layer = false;
    if l {
        let layer = *payload.get(at)?;
        sid = (layer >> 1) & 0x07;
        inter_layer = layer & 0x01 != 0;
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
        let g = ss & 0x08 != 0;
        let mut widths = [0u16; MAX_SPATIAL];
        let mut heights = [0u16; MAX_SPATIAL];
        at += 1;
        if y {
            for layer in 0..usize::from(count) {
                let w = u16::from_be_bytes([*payload.get(at)?, *payload.get(at + 1)?]);
                let h = u16::from_be_bytes([*payload.get(at + 2)?, *payload.get(at + 3)?]);
                if layer == 0 {
                    dims = Some((w, h));
                }
                widths[layer] = w;
                heights[layer] = h;
                at += 4;
            }
        }
        if g {
            // The picture group: N_G pictures, each a byte (TID, U, R)
            // and R reference differences.
            let n_g = *payload.get(at)?;
            at += 1;
            for _ in 0..n_g {
                let r = usize::from((*payload.get(at)? >> 2) & 0x03);
                at += 1 + r;
            }
        }
        spatial = Some(Spatial {
            count,
            widths,
            heights,
        });
        // A structure cut short, or with nothing after it, is no packet.
        if at >= payload.len() {
            return None;
        }
    }
    Some(Vp9Info {
        keyframe_start: b && !p && sid == 0,
        dims,
        sid,
        layer_start: b,
        layer_end: e,
        spatial,
        inter: p,
        inter_layer: inter_layer && sid > 0,
        header_len: at,
    })
}

/// A VP9 keyframe of a black 320x180 picture (35 bytes), what a video
/// file shows from its participant's arrival until the camera's first
/// picture, as [`crate::vp8::BLACK_KEYFRAME`] does for VP8. Made once with
/// libvpx: `ffmpeg -f lavfi -i color=black:s=320x180 -frames:v 1 -c:v
/// libvpx-vp9 -b:v 50k -f ivf black.ivf`, the frame after the IVF headers.
/// VP9 keyframes carry their size too, so the camera's first changes it.
pub const BLACK_KEYFRAME: [u8; 35] = [
    0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0b, 0x36, 0x00, 0x38, 0x24, 0x1c, 0x18, 0xbe, 0x00,
    0x00, 0x50, 0x61, 0xf6, 0x30, 0x00, 0x00, 0x66, 0xf7, 0x4d, 0x13, 0xbb, 0x8b, 0x53, 0x75, 0xdb,
    0xe9, 0xa2, 0x00,
];

/// One picture cut back out of RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// The recorded layer's frame, last, after the lower layers' it is
    /// predicted from (decoding order). Each is a frame a decoder shows:
    /// a file gives each its own block, the lower ones a millisecond
    /// apart just before the recorded one. Joined into one superframe they
    /// would be one block showing several pictures at one time, which
    /// FFmpeg refuses ("non monotonically increasing dts"); their
    /// show_frame bit cannot simply be cleared (an inter frame's header
    /// then gains a field).
    pub frames: Vec<Vec<u8>>,
    /// Begins with a keyframe (layer 0, not predicted from an earlier
    /// picture): a place to start a file.
    pub keyframe: bool,
    /// The recorded layer's size, when the picture says (a keyframe's
    /// scalability structure, or its keyframe header).
    pub size: Option<(u16, u16)>,
    /// The spatial layer recorded: the top one the picture carries.
    pub sid: u8,
}

/// What can be made of one picture's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    Picture(Picture),
    /// The picture lacks the layer being recorded (`record_sid`): the
    /// encoder left it out, or it was paused. Nothing can be written
    /// until a keyframe.
    LayerMissing,
}

/// One layer frame of a picture.
struct LayerFrame {
    sid: u8,
    inter_layer: bool,
    data: Vec<u8>,
    ended: bool,
}

/// Cut one picture (every packet from its first to the one with the
/// marker bit, in order, descriptors included) back into what a decoder
/// takes.
///
/// Browsers send VP9 as SVC too: one picture holds a layer frame per
/// spatial layer, each predicted from the one below when its D bit says
/// so (every layer of a keyframe; under `L3T3_KEY` only there). A
/// recording keeps one layer, the top: `record_sid` (the top of the last
/// keyframe, `None` at a keyframe to take the picture's top), with the
/// layers it is predicted from below it. Under `L3T3_KEY` that is the top
/// layer alone between keyframes and all three at them; what a receiver of
/// the top layer decodes.
pub fn assemble<'a>(
    packets: impl IntoIterator<Item = &'a [u8]>,
    record_sid: Option<u8>,
) -> Result<Assembled, RecordError> {
    let mut frames: Vec<LayerFrame> = Vec::new();
    let mut keyframe = false;
    let mut sizes: Option<Spatial> = None;
    for (i, p) in packets.into_iter().enumerate() {
        let info = parse(p).ok_or(RecordError::Vp9Descriptor)?;
        if i == 0 {
            if !info.layer_start {
                return Err(RecordError::Vp9Descriptor);
            }
            keyframe = info.keyframe_start;
        }
        if info.spatial.is_some() {
            sizes = info.spatial;
        }
        let data = &p[info.header_len..];
        match frames.last_mut() {
            Some(f) if !f.ended && !info.layer_start && f.sid == info.sid => {
                f.data.extend_from_slice(data);
                f.ended = info.layer_end;
            }
            // A layer frame must end (E) before the next begins (B), and
            // the next must be a layer above.
            Some(f) if !f.ended || !info.layer_start || info.sid <= f.sid => {
                return Err(RecordError::Vp9Descriptor);
            }
            _ if !info.layer_start => return Err(RecordError::Vp9Descriptor),
            _ => frames.push(LayerFrame {
                sid: info.sid,
                inter_layer: info.inter_layer,
                data: data.to_vec(),
                ended: info.layer_end,
            }),
        }
    }
    // The last packet carries the marker; browsers set E on it, but the
    // marker alone ends the picture (RFC 9628 section 4.2).
    let Some(top) = frames.last().map(|f| f.sid) else {
        return Err(RecordError::Empty);
    };
    let want = if keyframe {
        top
    } else {
        record_sid.unwrap_or(top)
    };
    let Some(end) = frames.iter().position(|f| f.sid == want) else {
        return Ok(Assembled::LayerMissing);
    };
    // Down the chain of layers the recorded one is predicted from: layer
    // ids rise frame by frame, so the chain is a run of frames.
    let mut first = end;
    while frames[first].inter_layer {
        match first.checked_sub(1) {
            Some(b) if frames[b].sid + 1 == frames[first].sid => first = b,
            _ => return Ok(Assembled::LayerMissing),
        }
    }
    let chosen: Vec<Vec<u8>> = frames
        .drain(first..=end)
        .filter(|f| !f.data.is_empty())
        .map(|f| f.data)
        .collect();
    let size = sizes
        .and_then(|s| {
            let i = usize::from(want);
            (i < usize::from(s.count) && s.widths[i] > 0).then(|| (s.widths[i], s.heights[i]))
        })
        .or_else(|| chosen.last().and_then(|f| keyframe_size(f)));
    Ok(Assembled::Picture(Picture {
        frames: chosen,
        keyframe,
        size,
        sid: want,
    }))
}

/// A keyframe's size from its uncompressed header (VP9 bitstream section
/// 6.2); `None` for anything else.
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits::new(frame);
    if r.u32(2)? != 2 {
        return None; // frame_marker
    }
    let profile = r.u32(1)? | (r.u32(1)? << 1);
    if profile == 3 {
        r.u32(1)?;
    }
    if r.u32(1)? == 1 {
        return None; // show_existing_frame
    }
    if r.u32(1)? != 0 {
        return None; // frame_type: not a keyframe
    }
    r.u32(2)?; // show_frame, error_resilient_mode
    if r.u32(24)? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    // color_config
    if profile >= 2 {
        r.u32(1)?; // ten_or_twelve_bit
    }
    let color_space = r.u32(3)?;
    if color_space != 7 {
        r.u32(1)?; // color_range
        if profile == 1 || profile == 3 {
            r.u32(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.u32(1)?; // reserved_zero
    }
    let w = r.u32(16)? + 1;
    let h = r.u32(16)? + 1;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_black_keyframe_is_a_320x180_keyframe() {
        assert_eq!(keyframe_size(&BLACK_KEYFRAME), Some((320, 180)));
    }

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
            0xAA,
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
                    widths: [640, 0, 0, 0, 0, 0, 0, 0],
                    heights: [360, 0, 0, 0, 0, 0, 0, 0],
                }),
                inter: false,
                inter_layer: false,
                header_len: 10,
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

    /// A packet of spatial layer `sid` (non-flexible, 7-bit picture id):
    /// B, E, P and D as given, then `data`.
    fn svc(sid: u8, b: bool, e: bool, p: bool, d: bool, data: &[u8]) -> Vec<u8> {
        let mut first = 0xA0;
        if p {
            first |= 0x40;
        }
        if b {
            first |= 0x08;
        }
        if e {
            first |= 0x04;
        }
        let mut v = vec![first, 0x05, (sid << 1) | u8::from(d), 0x00];
        v.extend_from_slice(data);
        v
    }

    fn picture(a: Result<Assembled, RecordError>) -> Picture {
        match a {
            Ok(Assembled::Picture(p)) => p,
            other => panic!("no picture: {other:?}"),
        }
    }

    #[test]
    fn one_layer_pictures_are_their_packets_joined() {
        let pkts = [
            svc(0, true, false, false, false, &BLACK_KEYFRAME[..20]),
            svc(0, false, true, false, false, &BLACK_KEYFRAME[20..]),
        ];
        let p = picture(assemble(pkts.iter().map(|p| &p[..]), None));
        assert_eq!(p.frames, [BLACK_KEYFRAME.to_vec()]);
        assert!(p.keyframe);
        assert_eq!(p.size, Some((320, 180)), "from the keyframe header");
        assert_eq!(p.sid, 0);
    }

    #[test]
    fn an_svc_keyframe_keeps_every_layer_and_later_pictures_the_top_one() {
        // L3T3_KEY: at the keyframe, layers 1 and 2 are predicted from the
        // one below (D); later each layer only from itself.
        let s1 = vec![0x11; 300];
        let key = [
            svc(0, true, true, false, false, &[0x00; 10]),
            svc(1, true, false, true, true, &s1[..150]),
            svc(1, false, true, true, true, &s1[150..]),
            svc(2, true, true, true, true, &[0x22; 5]),
        ];
        let p = picture(assemble(key.iter().map(|p| &p[..]), Some(1)));
        assert!(p.keyframe);
        assert_eq!(p.sid, 2, "a keyframe chooses the top layer afresh");
        assert_eq!(p.frames, [vec![0x00; 10], s1, vec![0x22; 5]]);
        let delta = [
            svc(0, true, true, true, false, &[0x01; 4]),
            svc(1, true, true, true, false, &[0x02; 4]),
            svc(2, true, true, true, false, &[0x03; 4]),
        ];
        let p = picture(assemble(delta.iter().map(|p| &p[..]), Some(2)));
        assert!(!p.keyframe);
        assert_eq!(p.frames, [vec![0x03; 4]], "the top layer alone");
        // Full SVC (L3T3): the top is predicted from below in every picture.
        let full = [
            svc(0, true, true, true, false, &[0x01; 4]),
            svc(1, true, true, true, true, &[0x02; 4]),
            svc(2, true, true, true, true, &[0x03; 4]),
        ];
        let p = picture(assemble(full.iter().map(|p| &p[..]), Some(2)));
        assert_eq!(p.frames.len(), 3);
        // The top layer left out of a picture: nothing to write.
        assert_eq!(
            assemble(delta[..2].iter().map(|p| &p[..]), Some(2)),
            Ok(Assembled::LayerMissing)
        );
        // Predicted from a layer that is not there.
        assert_eq!(
            assemble([&full[0][..], &full[2][..]], Some(2)),
            Ok(Assembled::LayerMissing)
        );
    }

    #[test]
    fn layer_frames_out_of_order_or_unfinished_are_malformed() {
        let a = svc(0, true, false, false, false, &[1]);
        let b = svc(1, true, true, true, false, &[2]);
        let c = svc(0, false, true, false, false, &[3]);
        // Layer 1 begins before layer 0 ended.
        assert_eq!(
            assemble([&a[..], &b[..]], None),
            Err(RecordError::Vp9Descriptor)
        );
        // A picture that does not begin with B.
        assert_eq!(assemble([&c[..]], None), Err(RecordError::Vp9Descriptor));
        // Layers going down.
        let d = svc(1, true, true, false, false, &[4]);
        let e = svc(0, true, true, false, false, &[5]);
        assert_eq!(
            assemble([&d[..], &e[..]], None),
            Err(RecordError::Vp9Descriptor)
        );
        assert_eq!(
            assemble([&[0x80][..]], None),
            Err(RecordError::Vp9Descriptor)
        );
    }
}
