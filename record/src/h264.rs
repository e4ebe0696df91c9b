//! H.264 frames back from RTP (RFC 6184), for Matroska: the NAL units of
//! one picture's packets (single NAL unit, STAP-A, FU-A) as an AVC sample
//! (each unit after its 4-byte length), and the parameter sets that make
//! the track's AVCDecoderConfigurationRecord (ISO 14496-15, 5.2.4.1).

use crate::RecordError;
use crate::bits::Bits;

const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const SPS: u8 = 7;
const PPS: u8 = 8;
const IDR: u8 = 5;

/// One picture, as Matroska wants it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sample {
    /// NAL units, each after its length (4 bytes, big-endian).
    pub data: Vec<u8>,
    /// It holds an IDR slice.
    pub idr: bool,
    /// The last sequence and picture parameter sets in it.
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
}

impl Sample {
    fn push_nal(&mut self, nal: &[u8]) {
        let Some(&h) = nal.first() else {
            return;
        };
        match h & 0x1f {
            SPS => self.sps = Some(nal.to_vec()),
            PPS => self.pps = Some(nal.to_vec()),
            IDR => self.idr = true,
            _ => {}
        }
        self.data
            .extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.data.extend_from_slice(nal);
    }
}

/// The NAL units in the RTP payloads of one picture, in order. A payload
/// that does not parse (a truncated aggregation, an FU-A without its
/// start) makes the whole picture an error: a partial picture would decode
/// as corruption.
pub fn depacketize<'a>(
    payloads: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Sample, RecordError> {
    let mut s = Sample::default();
    // An FU-A unit being reassembled.
    let mut fu: Option<Vec<u8>> = None;
    for p in payloads {
        let Some(&h) = p.first() else {
            return Err(RecordError::H264Payload);
        };
        match h & 0x1f {
            1..=23 => s.push_nal(p),
            STAP_A => {
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    let [a, b, ..] = rest else {
                        return Err(RecordError::H264Payload);
                    };
                    let n = usize::from(u16::from_be_bytes([*a, *b]));
                    let nal = rest.get(2..2 + n).ok_or(RecordError::H264Payload)?;
                    s.push_nal(nal);
                    rest = &rest[2 + n..];
                }
            }
            FU_A => {
                let &[_, fh, ..] = p else {
                    return Err(RecordError::H264Payload);
                };
                let (start, end) = (fh & 0x80 != 0, fh & 0x40 != 0);
                if start {
                    // The unit's header: the indicator's F and NRI bits,
                    // the fragment header's type.
                    fu = Some(vec![(h & 0xe0) | (fh & 0x1f)]);
                }
                let unit = fu.as_mut().ok_or(RecordError::H264Payload)?;
                unit.extend_from_slice(&p[2..]);
                if end && let Some(unit) = fu.take() {
                    s.push_nal(&unit);
                }
            }
            _ => return Err(RecordError::H264Payload),
        }
    }
    if fu.is_some() || s.data.is_empty() {
        return Err(RecordError::H264Payload);
    }
    Ok(s)
}

/// The AVCDecoderConfigurationRecord of one SPS and one PPS, with 4-byte
/// NAL lengths; `None` for an SPS too short to name its profile and level.
pub fn avcc(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    let (&profile, &compat, &level) = (sps.get(1)?, sps.get(2)?, sps.get(3)?);
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut c = vec![1, profile, compat, level, 0xff, 0xe1];
    c.extend_from_slice(&sps_len.to_be_bytes());
    c.extend_from_slice(sps);
    c.push(1);
    c.extend_from_slice(&pps_len.to_be_bytes());
    c.extend_from_slice(pps);
    Some(c)
}

/// Whether an RTP payload can begin a picture: a single NAL unit, an
/// aggregate, or a fragment's start (a picture's first packet is the
/// lowest-numbered of these).
pub fn can_start(payload: &[u8]) -> bool {
    match payload.first().map(|h| h & 0x1f) {
        Some(1..=STAP_A) => true,
        Some(FU_A) => payload.get(1).is_some_and(|f| f & 0x80 != 0),
        _ => false,
    }
}

/// The picture size (pixels, after frame cropping) a sequence parameter
/// set declares (ISO 14496-10, 7.3.2.1.1); `None` for one that does not
/// parse or declares a size over 65535. `sps` is the NAL unit, header
/// byte included.
pub fn sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    // The RBSP: emulation prevention bytes (00 00 03) taken out.
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.u(8)?;
    r.u(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format_idc, mut separate_planes) = (1, false);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_planes = r.u(1)? == 1;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.u(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.u(1)? == 1 {
            // Scaling lists: read through, not kept.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.u(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.u(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.u(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.u(1)?;
    if frame_mbs_only == 0 {
        r.u(1)?; // mb_adaptive_frame_field_flag
    }
    r.u(1)?; // direct_8x8_inference_flag
    let mut crop = [0u64; 4];
    if r.u(1)? == 1 {
        for c in &mut crop {
            *c = r.ue()?;
        }
    }
    // Crop units (Table 6-1): chroma subsampling, and fields count twice.
    let (sub_w, sub_h) = match (chroma_format_idc, separate_planes) {
        (1, false) => (2, 2),
        (2, false) => (2, 1),
        _ => (1, 1),
    };
    let fields = 2 - frame_mbs_only;
    let width = (width_mbs * 16).checked_sub(sub_w * (crop[0] + crop[1]))?;
    let height =
        (fields * height_map_units * 16).checked_sub(sub_h * fields * (crop[2] + crop[3]))?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units_aggregates_and_fragments_become_one_length_prefixed_sample() {
        let sps = [0x67, 0x42, 0xc0, 0x1f, 0xaa];
        let pps = [0x68, 0xce, 0x3c];
        let mut stap = vec![0x78];
        for n in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        // An IDR slice [0x65, 1, 2, 3, 4] in two fragments.
        let fu1 = [0x7c, 0x85, 1, 2];
        let fu2 = [0x7c, 0x45, 3, 4];
        let s = depacketize([&stap[..], &fu1[..], &fu2[..]]).expect("parses");
        assert!(s.idr);
        assert_eq!(s.sps.as_deref(), Some(&sps[..]));
        assert_eq!(s.pps.as_deref(), Some(&pps[..]));
        let mut want = Vec::new();
        for n in [&sps[..], &pps[..], &[0x65, 1, 2, 3, 4][..]] {
            want.extend_from_slice(&(n.len() as u32).to_be_bytes());
            want.extend_from_slice(n);
        }
        assert_eq!(s.data, want);
        let c = avcc(&sps, &pps).expect("record");
        assert_eq!(&c[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
        assert_eq!(c.len(), 6 + 2 + sps.len() + 1 + 2 + pps.len());
    }

    #[test]
    fn the_size_comes_from_the_sps_after_cropping() {
        // libx264's SPS for 320x240 (High profile, no cropping) and for
        // 1920x1080 (Constrained Baseline: 68 map units of 16, cropped 8).
        let sps_320 = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
        ];
        assert_eq!(sps_size(&sps_320), Some((320, 240)));
        let sps_1080 = [
            0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
        ];
        assert_eq!(sps_size(&sps_1080), Some((1920, 1080)));
        assert_eq!(sps_size(&[0x67, 0x42]), None, "truncated");
        assert_eq!(
            sps_size(&[0x67, 0x42, 0, 0x1f, 0, 0, 0, 0]),
            None,
            "runs of zeros"
        );
    }

    #[test]
    fn a_truncated_aggregate_or_a_fragment_without_its_start_is_refused() {
        assert_eq!(
            depacketize([&[0x78, 0x00, 0x09, 0x67][..]]),
            Err(RecordError::H264Payload)
        );
        assert_eq!(
            depacketize([&[0x7c, 0x45, 3][..]]),
            Err(RecordError::H264Payload)
        );
        assert_eq!(
            depacketize([&[0x7c, 0x85, 3][..]]),
            Err(RecordError::H264Payload)
        );
        assert_eq!(depacketize([&[][..]]), Err(RecordError::H264Payload));
        assert!(avcc(&[0x67], &[0x68]).is_none());
    }
}
