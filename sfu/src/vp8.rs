//! Just enough VP8 (RFC 7741) to forward simulcast: keyframe starts, picture
//! ids and the resolution a keyframe announces.

/// What the bridge needs to know about one VP8 RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// First packet of a keyframe (S=1, PID=0, P=0).
    pub keyframe_start: bool,
    /// Picture id and whether it is 15 bits wide.
    pub pid: Option<(u16, bool)>,
    pub tl0: Option<u8>,
    pub tid: Option<u8>,
    /// Width and height from the keyframe header, when this is a keyframe start.
    pub dims: Option<(u16, u16)>,
}

/// Parse a VP8 payload descriptor; `None` for a payload too short or malformed
/// to be VP8 (the caller drops and counts it).
pub fn parse(payload: &[u8]) -> Option<Vp8Info> {
    let b0 = *payload.first()?;
    let mut info = Vp8Info::default();
    let mut off = 1usize;
    if b0 & 0x80 != 0 {
        let ext = *payload.get(off)?;
        off += 1;
        if ext & 0x80 != 0 {
            let p0 = *payload.get(off)?;
            off += 1;
            if p0 & 0x80 != 0 {
                let p1 = *payload.get(off)?;
                off += 1;
                info.pid = Some(((u16::from(p0 & 0x7f) << 8) | u16::from(p1), true));
            } else {
                info.pid = Some((u16::from(p0 & 0x7f), false));
            }
        }
        if ext & 0x40 != 0 {
            info.tl0 = Some(*payload.get(off)?);
            off += 1;
        }
        if ext & 0x30 != 0 {
            let tk = *payload.get(off)?;
            off += 1;
            if ext & 0x20 != 0 {
                info.tid = Some(tk >> 6);
            }
        }
    }
    let header = payload.get(off..)?;
    if header.is_empty() {
        return None;
    }
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if start && header[0] & 0x01 == 0 {
        info.keyframe_start = true;
        // 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
        if header.len() >= 10 && header[3..6] == [0x9d, 0x01, 0x2a] {
            let w = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
            let h = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
            info.dims = Some((w, h));
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A keyframe start as Chrome sends it: X, I with 15-bit picture id, L, T.
    fn keyframe(pid: u16, w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0xe0, 0x80 | (pid >> 8) as u8, pid as u8, 5, 0x00];
        p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn reads_keyframe_dimensions_and_picture_id() {
        let info = parse(&keyframe(0x1234, 640, 360)).expect("valid");
        assert!(info.keyframe_start);
        assert_eq!(info.pid, Some((0x1234, true)));
        assert_eq!(info.tl0, Some(5));
        assert_eq!(info.tid, Some(0));
        assert_eq!(info.dims, Some((640, 360)));
    }

    #[test]
    fn interframe_and_continuation_are_not_keyframes() {
        let mut p = keyframe(1, 320, 180);
        p[6] |= 0x01; // P bit: interframe
        assert!(!parse(&p).expect("valid").keyframe_start);
        let mut p = keyframe(1, 320, 180);
        p[0] &= !0x10; // not the start of a partition
        assert!(!parse(&p).expect("valid").keyframe_start);
    }

    #[test]
    fn truncated_descriptors_are_refused() {
        let p = keyframe(1, 320, 180);
        for n in 0..6 {
            assert_eq!(parse(&p[..n]), None, "len {n}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_payloads(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&data);
        }
    }
}
