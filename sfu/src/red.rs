//! RFC 2198 redundant audio (RED), as browsers send Opus with it: the
//! bridge forwards RED as is to receivers that negotiated it and the
//! primary block alone to those that did not.

/// The primary (newest) block of a RED payload: after the block headers (4
/// bytes each while the F bit is set, then 1 byte) and the redundant blocks
/// whose lengths they give. None if the payload is not well-formed.
pub fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        let h = payload.get(at..at + 4)?;
        redundant += (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        at += 4;
    }
    payload.get(at + redundant..)
}

#[cfg(test)]
mod tests {
    use super::red_primary;
    use proptest::prelude::*;

    #[test]
    fn the_primary_block_follows_the_redundant_ones() {
        // One redundant block of 3 bytes (PT 111, offset 960), then the
        // primary (PT 111): "abc" redundant, "PRIMARY" primary.
        let mut p = vec![
            0x80 | 111,
            (960u16 >> 6) as u8,
            ((960u16 & 0x3f) << 2) as u8,
            3,
        ];
        p.push(111);
        p.extend_from_slice(b"abc");
        p.extend_from_slice(b"PRIMARY");
        assert_eq!(red_primary(&p), Some(&b"PRIMARY"[..]));
        // No redundancy: one 1-byte header, then the primary.
        assert_eq!(red_primary(&[111, 1, 2, 3]), Some(&[1u8, 2, 3][..]));
        // A length past the end, a header cut short, nothing at all.
        assert_eq!(red_primary(&[0x80 | 111, 0, 0, 200, 111, 1]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0]), None);
        assert_eq!(red_primary(&[]), None);
    }

    proptest! {
        #[test]
        fn any_payload_gives_a_suffix_or_nothing(p in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Some(primary) = red_primary(&p) {
                prop_assert!(p.ends_with(primary));
            }
        }
    }
}
