//! H.264 frames back from RTP (RFC 6184), for Matroska: the NAL units of
//! one picture's packets (single NAL unit, STAP-A, FU-A) as an AVC sample
//! (each unit after its 4-byte length), and the parameter sets that make
//! the track's AVCDecoderConfigurationRecord (ISO 14496-15, 5.2.4.1).

use crate::RecordError;

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
