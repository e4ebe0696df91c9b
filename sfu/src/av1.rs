//! AV1 RTP payload (AV1 RTP specification, section 4.4): the aggregation
//! header's N bit marks the first packet of a coded video sequence — a
//! keyframe, where a receive slot can switch onto a stream. As with VP8,
//! each simulcast rid is its own stream with one spatial layer.

/// N: this packet starts a new coded video sequence.
const N: u8 = 0x08;

/// True for the first packet of a keyframe (a new coded video sequence).
pub fn starts_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|h| h & N != 0) && payload.len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_bit_of_the_aggregation_header_marks_a_keyframe_start() {
        // Z=0 Y=0 W=1 N=1, then an OBU.
        assert!(starts_keyframe(&[0x18, 0x0A, 0x00]));
        // W=1, N=0: a delta frame.
        assert!(!starts_keyframe(&[0x10, 0x32, 0x00]));
        // Z set (continues a fragment): N is 0 on continuations.
        assert!(!starts_keyframe(&[0x80 | 0x10, 0x00]));
        assert!(!starts_keyframe(&[]));
        assert!(!starts_keyframe(&[0x08]), "a header with nothing after it");
    }
}
