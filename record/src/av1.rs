//! AV1 temporal units back from RTP ("RTP Payload Format For AV1", AOM,
//! section 4), in the form Matroska and WebM hold them ("AV1 Codec Mapping
//! for Matroska"): the unit's OBUs, each with its size field, temporal
//! delimiters left out; the track's `av1C` from the sequence header.
//!
//! An RTP payload is an aggregation header (Z: the first element continues
//! an OBU from the packet before; Y: the last continues into the next; W:
//! how many elements, 0 meaning each carries its length; N: the first
//! packet of a coded video sequence, a keyframe) and OBU elements, whose
//! OBUs usually leave their size field out (the element says it).

use crate::RecordError;
use crate::bits::Bits;

/// OBU types (AV1 bitstream section 6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

/// One temporal unit, as a WebM block holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalUnit {
    pub data: Vec<u8>,
    /// Its first packet set N: it begins a coded video sequence.
    pub keyframe: bool,
    /// The unit's sequence header OBU (with its size field), if it had one.
    pub sequence_header: Option<Vec<u8>>,
}

/// Cut one temporal unit (every packet from its first to the one with the
/// marker bit, in order) back into OBUs with size fields.
pub fn assemble<'a>(
    packets: impl IntoIterator<Item = &'a [u8]>,
) -> Result<TemporalUnit, RecordError> {
    let mut unit = TemporalUnit {
        data: Vec::new(),
        keyframe: false,
        sequence_header: None,
    };
    // An OBU whose elements span packets.
    let mut fragment: Option<Vec<u8>> = None;
    for (i, p) in packets.into_iter().enumerate() {
        let (&h, mut rest) = p.split_first().ok_or(RecordError::Av1Payload)?;
        let (z, y, w, n) = (h & 0x80 != 0, h & 0x40 != 0, (h >> 4) & 0x03, h & 0x08 != 0);
        if i == 0 {
            unit.keyframe = n;
        }
        let mut element = 0;
        while !rest.is_empty() {
            element += 1;
            // With W = 0 every element says its length; otherwise all but
            // the W-th, which takes the rest.
            let len = if w == 0 || element < w {
                let (len, used) = leb128(rest).ok_or(RecordError::Av1Payload)?;
                rest = &rest[used..];
                usize::try_from(len).map_err(|_| RecordError::Av1Payload)?
            } else {
                rest.len()
            };
            let data = rest.get(..len).ok_or(RecordError::Av1Payload)?;
            rest = &rest[len..];
            let first = element == 1;
            let last = rest.is_empty();
            let mut obu = match fragment.take() {
                Some(mut f) if first && z => {
                    f.extend_from_slice(data);
                    f
                }
                // A continuation with nothing to continue, or an OBU left
                // unfinished by the packet before: not this unit's.
                Some(_) => return Err(RecordError::Av1Payload),
                None if first && z => return Err(RecordError::Av1Payload),
                None => data.to_vec(),
            };
            if last && y {
                fragment = Some(std::mem::take(&mut obu));
            } else {
                add_obu(&mut unit, &obu)?;
            }
        }
        if w != 0 && element != w {
            return Err(RecordError::Av1Payload);
        }
    }
    if fragment.is_some() || unit.data.is_empty() {
        return Err(RecordError::Av1Payload);
    }
    Ok(unit)
}

/// Append one OBU to the unit with its size field (what Matroska requires),
/// leaving out what a file does not keep.
fn add_obu(unit: &mut TemporalUnit, obu: &[u8]) -> Result<(), RecordError> {
    let (&h, _) = obu.split_first().ok_or(RecordError::Av1Payload)?;
    if h & 0x80 != 0 {
        return Err(RecordError::Av1Payload); // obu_forbidden_bit
    }
    let kind = (h >> 3) & 0x0F;
    let header = if h & 0x04 != 0 { 2 } else { 1 };
    let mut payload = obu.get(header..).ok_or(RecordError::Av1Payload)?;
    if h & 0x02 != 0 {
        let (size, used) = leb128(payload).ok_or(RecordError::Av1Payload)?;
        let size = usize::try_from(size).map_err(|_| RecordError::Av1Payload)?;
        payload = payload
            .get(used..used + size)
            .ok_or(RecordError::Av1Payload)?;
    }
    if matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
        return Ok(());
    }
    let at = unit.data.len();
    unit.data.push(h | 0x02);
    unit.data.extend_from_slice(&obu[1..header]);
    write_leb128(&mut unit.data, payload.len() as u64);
    unit.data.extend_from_slice(payload);
    if kind == OBU_SEQUENCE_HEADER && unit.sequence_header.is_none() {
        unit.sequence_header = Some(unit.data[at..].to_vec());
    }
    Ok(())
}

/// An unsigned LEB128 number and the bytes it took (at most 8).
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().enumerate().take(8) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn write_leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// What a file's header needs of a sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceInfo {
    /// The largest frame the sequence holds.
    pub width: u16,
    pub height: u16,
    /// The `AV1CodecConfigurationRecord` ("AV1 Codec ISOBMFF Binding"
    /// section 2.3): four bytes from the sequence header, then the
    /// sequence header OBU itself.
    pub av1c: Vec<u8>,
}

/// Read a sequence header OBU (with its size field, as [`assemble`] gives
/// it; AV1 bitstream section 5.5) for the file's header.
pub fn sequence_info(obu: &[u8]) -> Option<SequenceInfo> {
    let h = *obu.first()?;
    let header = if h & 0x04 != 0 { 2 } else { 1 };
    let (_, used) = leb128(obu.get(header..)?)?;
    let mut r = Bits::new(obu.get(header + used..)?);
    let profile = r.u32(3)?;
    r.u32(1)?; // still_picture
    let reduced = r.u32(1)? == 1;
    let (level, tier);
    if reduced {
        level = r.u32(5)?;
        tier = 0;
    } else {
        let mut decoder_model = false;
        let mut delay_length = 0;
        if r.u32(1)? == 1 {
            // timing_info
            r.u32(32)?;
            r.u32(32)?;
            if r.u32(1)? == 1 {
                r.ue()?;
            }
            decoder_model = r.u32(1)? == 1;
            if decoder_model {
                delay_length = r.u32(5)? + 1;
                r.u32(32)?;
                r.u32(10)?; // two 5-bit lengths
            }
        }
        let display_delay = r.u32(1)? == 1;
        let points = r.u32(5)? + 1;
        let (mut level0, mut tier0) = (0, 0);
        for i in 0..points {
            r.u32(12)?; // operating_point_idc
            let level = r.u32(5)?;
            let tier = if level > 7 { r.u32(1)? } else { 0 };
            if i == 0 {
                (level0, tier0) = (level, tier);
            }
            if decoder_model && r.u32(1)? == 1 {
                r.u32(delay_length)?;
                r.u32(delay_length)?;
                r.u32(1)?;
            }
            if display_delay && r.u32(1)? == 1 {
                r.u32(4)?;
            }
        }
        (level, tier) = (level0, tier0);
    }
    let width_bits = r.u32(4)? + 1;
    let height_bits = r.u32(4)? + 1;
    let width = r.u32(width_bits)? + 1;
    let height = r.u32(height_bits)? + 1;
    if !reduced && r.u32(1)? == 1 {
        r.u32(7)?; // frame id lengths
    }
    r.u32(3)?; // 128x128 superblocks, filter intra, intra edge filter
    if !reduced {
        r.u32(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = r.u32(1)? == 1;
        if order_hint {
            r.u32(2)?; // jnt_comp, ref_frame_mvs
        }
        let screen_content = if r.u32(1)? == 1 { 2 } else { r.u32(1)? };
        if screen_content > 0 && r.u32(1)? == 0 {
            r.u32(1)?; // seq_force_integer_mv
        }
        if order_hint {
            r.u32(3)?;
        }
    }
    r.u32(3)?; // superres, cdef, restoration
    // color_config
    let high_bitdepth = r.u32(1)?;
    let twelve_bit = if profile == 2 && high_bitdepth == 1 {
        r.u32(1)?
    } else {
        0
    };
    let mono = if profile == 1 { 0 } else { r.u32(1)? };
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.u32(1)? == 1 {
        primaries = r.u32(8)?;
        transfer = r.u32(8)?;
        matrix = r.u32(8)?;
    }
    let (mut sub_x, mut sub_y, mut position) = (1, 1, 0);
    if mono == 1 {
        r.u32(1)?; // color_range
    } else if primaries == 1 && transfer == 13 && matrix == 0 {
        (sub_x, sub_y) = (0, 0);
    } else {
        r.u32(1)?; // color_range
        match profile {
            0 => {}
            1 => (sub_x, sub_y) = (0, 0),
            _ if twelve_bit == 1 => {
                sub_x = r.u32(1)?;
                sub_y = if sub_x == 1 { r.u32(1)? } else { 0 };
            }
            _ => (sub_x, sub_y) = (1, 0),
        }
        if sub_x == 1 && sub_y == 1 {
            position = r.u32(2)?;
        }
    }
    let mut av1c = vec![
        0x81,
        ((profile << 5) | level) as u8,
        ((tier << 7)
            | (high_bitdepth << 6)
            | (twelve_bit << 5)
            | (mono << 4)
            | (sub_x << 3)
            | (sub_y << 2)
            | position) as u8,
        0,
    ];
    av1c.extend_from_slice(obu);
    Some(SequenceInfo {
        width: u16::try_from(width).ok()?,
        height: u16::try_from(height).ok()?,
        av1c,
    })
}

#[cfg(test)]
mod tests;
