//! H.264 keyframe detection (RFC 6184 packetization), for switching receive
//! slots on IDR pictures.

const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const IDR: u8 = 5;
const SPS: u8 = 7;

/// True for the first packet of an IDR picture (or the SPS that precedes it).
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(nal) = rest.get(2) else { break };
                if matches!(nal & 0x1f, IDR | SPS) {
                    return true;
                }
                rest = rest.get(2 + len..).unwrap_or(&[]);
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_idr_in_single_stap_and_fragmented_packets() {
        assert!(starts_keyframe(&[0x65, 1, 2]));
        assert!(!starts_keyframe(&[0x41, 1, 2]), "non-IDR slice");
        assert!(starts_keyframe(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        assert!(starts_keyframe(&[0x7c, 0x85, 0]), "FU-A start of IDR");
        assert!(!starts_keyframe(&[0x7c, 0x05, 0]), "FU-A continuation");
        assert!(!starts_keyframe(&[]));
        assert!(!starts_keyframe(&[0x78, 0xff]));
    }
}
