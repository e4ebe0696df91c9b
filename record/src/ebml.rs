//! EBML (RFC 8794), as much of it as writing WebM needs: element IDs are
//! written as given (they carry their own length marker), sizes as
//! variable-length integers, and an "unknown" size for elements whose end
//! is wherever the file ends.

/// The 8-byte unknown size (all value bits set).
pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Append an element ID (1 to 4 bytes, class marker included).
pub fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Append a size as the shortest variable-length integer that holds it
/// (the all-ones value of each length is reserved for "unknown").
pub fn size(out: &mut Vec<u8>, n: u64) {
    let mut len = 1;
    while len < 8 && n >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = n | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// An element with binary content.
pub fn bytes(out: &mut Vec<u8>, element: u32, data: &[u8]) {
    id(out, element);
    size(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An unsigned integer element, in as few bytes as it needs.
pub fn uint(out: &mut Vec<u8>, element: u32, v: u64) {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(7);
    bytes(out, element, &b[skip..]);
}

/// An 8-byte float element.
pub fn float(out: &mut Vec<u8>, element: u32, v: f64) {
    bytes(out, element, &v.to_be_bytes());
}

/// A master element whose children `f` writes.
pub fn master(out: &mut Vec<u8>, element: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    f(&mut body);
    bytes(out, element, &body);
}

/// The start of a master element of unknown size: its children follow
/// until the file (or an element of a higher level) ends it.
pub fn open_unknown(out: &mut Vec<u8>, element: u32) {
    id(out, element);
    out.extend_from_slice(&UNKNOWN_SIZE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_shortest_form_and_avoid_the_reserved_all_ones() {
        let enc = |n| {
            let mut v = Vec::new();
            size(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 in one byte would be 0xFF, "unknown".
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(300), [0x41, 0x2C]);
        assert_eq!(enc(1 << 20), [0x30, 0x00, 0x00]);
    }

    #[test]
    fn ids_keep_their_marker_and_integers_are_minimal() {
        let mut v = Vec::new();
        id(&mut v, 0x1A45_DFA3);
        id(&mut v, 0xA3);
        assert_eq!(v, [0x1A, 0x45, 0xDF, 0xA3, 0xA3]);
        let mut v = Vec::new();
        uint(&mut v, 0xD7, 1);
        assert_eq!(v, [0xD7, 0x81, 0x01]);
        let mut v = Vec::new();
        uint(&mut v, 0x2A_D7B1, 1_000_000);
        assert_eq!(v, [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
        let mut v = Vec::new();
        uint(&mut v, 0xE7, 0);
        assert_eq!(v, [0xE7, 0x81, 0x00]);
    }
}
