//! H.264 over RTP (RFC 6184) for the composite: publishers' packets back
//! into access units the decoder takes (Annex B), and the composite's
//! access units into packets no larger than the path takes.
//!
//! Non-interleaved mode only (packetization-mode 0 and 1: single NAL units,
//! STAP-A, FU-A), which is what browsers send. A packet lost inside an
//! access unit drops the unit and every unit after it until an IDR: a
//! decoder fed a picture with a hole shows garbage until the next keyframe,
//! a frozen tile is better.

/// NAL unit types (RFC 6184 5.2, H.264 7.4.1).
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const IDR: u8 = 5;
const SPS: u8 = 7;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// One picture's NAL units, Annex B (each after a start code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u32,
    pub annexb: Vec<u8>,
    /// It carries an IDR slice (a decoder can start here).
    pub keyframe: bool,
}

/// Reassembles one publisher's access units.
#[derive(Debug, Default)]
pub struct Depacketizer {
    /// The unit being gathered: its timestamp and NALs so far.
    current: Option<(u32, Vec<u8>, bool)>,
    /// A FU-A being reassembled (appended to `current` when it ends).
    fragment: Option<Vec<u8>>,
    last_seq: Option<u16>,
    /// A loss broke the stream: everything is dropped until an IDR.
    broken: bool,
    /// Packets that did not parse (counted, dropped).
    pub malformed: u64,
    /// Access units dropped for a loss.
    pub dropped_units: u64,
}

impl Depacketizer {
    /// Whether the decoder needs a keyframe to go on (a loss, or nothing
    /// decodable yet).
    pub fn needs_keyframe(&self) -> bool {
        self.broken
    }

    /// One RTP packet; returns an access unit when `marker` (or a new
    /// timestamp) completes one.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<AccessUnit> {
        let mut done = None;
        if let Some(last) = self.last_seq
            && seq != last.wrapping_add(1)
        {
            // A gap (or reordering, which RTX repair upstream makes rare):
            // the unit in progress cannot be whole.
            if seq.wrapping_sub(last) < 0x8000 {
                self.lose();
            } else {
                // Old or duplicate: ignore.
                return None;
            }
        }
        self.last_seq = Some(seq);
        if let Some((ts, _, _)) = &self.current
            && *ts != timestamp
        {
            // The previous unit's marker was lost: it may be incomplete.
            done = self.finish();
        }
        if self.current.is_none() {
            self.current = Some((timestamp, Vec::new(), false));
        }
        if !self.add(payload) {
            self.malformed += 1;
            self.lose();
            self.current = Some((timestamp, Vec::new(), false));
        }
        if marker {
            done = self.finish().or(done);
        }
        done
    }

    fn lose(&mut self) {
        if self.current.take().is_some() || self.fragment.take().is_some() {
            self.dropped_units += 1;
        }
        self.broken = true;
    }

    /// Append the NAL units of one payload; false if it does not parse.
    fn add(&mut self, p: &[u8]) -> bool {
        let Some(&header) = p.first() else {
            return false;
        };
        let Some((_, nals, idr)) = self.current.as_mut() else {
            return false;
        };
        match header & 0x1f {
            1..=23 => {
                *idr |= header & 0x1f == IDR;
                nals.extend_from_slice(&START_CODE);
                nals.extend_from_slice(p);
                true
            }
            STAP_A => {
                let mut rest = &p[1..];
                while rest.len() >= 2 {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let Some(nal) = rest.get(2..2 + n).filter(|n| !n.is_empty()) else {
                        return false;
                    };
                    *idr |= nal[0] & 0x1f == IDR;
                    nals.extend_from_slice(&START_CODE);
                    nals.extend_from_slice(nal);
                    rest = &rest[2 + n..];
                }
                rest.is_empty()
            }
            FU_A => {
                let Some(&fu) = p.get(1) else {
                    return false;
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let body = &p[2..];
                if start {
                    let mut f = Vec::with_capacity(body.len() * 4);
                    f.push((header & 0xe0) | (fu & 0x1f));
                    f.extend_from_slice(body);
                    self.fragment = Some(f);
                } else {
                    let Some(f) = self.fragment.as_mut() else {
                        // A middle without its start (the start was lost).
                        return false;
                    };
                    f.extend_from_slice(body);
                }
                if end && let Some(f) = self.fragment.take() {
                    *idr |= f[0] & 0x1f == IDR;
                    nals.extend_from_slice(&START_CODE);
                    nals.extend_from_slice(&f);
                }
                true
            }
            _ => false,
        }
    }

    fn finish(&mut self) -> Option<AccessUnit> {
        let (timestamp, annexb, keyframe) = self.current.take()?;
        if self.fragment.take().is_some() {
            // Ended inside a fragmented NAL: incomplete.
            self.dropped_units += 1;
            self.broken = true;
            return None;
        }
        if annexb.is_empty() {
            return None;
        }
        if keyframe {
            self.broken = false;
        }
        if self.broken {
            self.dropped_units += 1;
            return None;
        }
        Some(AccessUnit {
            timestamp,
            annexb,
            keyframe,
        })
    }
}

/// The NAL units of an Annex B stream (without start codes).
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                // A four-byte start code leaves a zero behind the NAL.
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                out.push(&data[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < data.len()
    {
        out.push(&data[s..]);
    }
    out.retain(|n| !n.is_empty());
    out
}

/// Whether an Annex B unit starts a decodable sequence (carries an SPS
/// and an IDR slice).
pub fn is_keyframe(annexb: &[u8]) -> bool {
    let nals = split_annexb(annexb);
    nals.iter().any(|n| n[0] & 0x1f == SPS) && nals.iter().any(|n| n[0] & 0x1f == IDR)
}

/// RTP payloads for one access unit's NAL units: each NAL whole when it
/// fits in `mtu` bytes, else as FU-A fragments. The last payload is the
/// one to mark.
pub fn packetize(nals: &[&[u8]], mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(16);
    let mut out = Vec::new();
    for nal in nals.iter().filter(|n| !n.is_empty()) {
        if nal.len() <= mtu {
            out.push(nal.to_vec());
            continue;
        }
        let header = nal[0];
        let body = &nal[1..];
        let chunk = mtu - 2;
        let n = body.len().div_ceil(chunk);
        for (k, part) in body.chunks(chunk).enumerate() {
            let mut fu = 0x1f & header;
            if k == 0 {
                fu |= 0x80;
            }
            if k + 1 == n {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(part.len() + 2);
            p.push((header & 0xe0) | FU_A);
            p.push(fu);
            p.extend_from_slice(part);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| START_CODE.iter().chain(n.iter()).copied())
            .collect()
    }

    #[test]
    fn a_packetized_unit_comes_back_whole_through_fragments() {
        let sps: &[u8] = &[0x67, 1, 2, 3];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000u32).map(|i| (i % 251) as u8))
            .collect();
        let payloads = packetize(&[sps, &idr], 1200);
        assert!(payloads.len() >= 4, "the IDR is fragmented");
        assert!(payloads.iter().all(|p| p.len() <= 1200));
        let mut d = Depacketizer::default();
        let mut got = None;
        for (i, p) in payloads.iter().enumerate() {
            got = d
                .push(100 + i as u16, 9000, i + 1 == payloads.len(), p)
                .or(got);
        }
        let au = got.expect("a unit");
        assert!(au.keyframe && is_keyframe(&au.annexb));
        assert_eq!(au.annexb, unit(&[sps, &idr]));
        assert_eq!(split_annexb(&au.annexb), vec![sps, &idr[..]]);
    }

    #[test]
    fn stap_a_carries_several_nal_units() {
        let mut p = vec![0x78];
        for nal in [&[0x67u8, 9][..], &[0x68, 8], &[0x65, 7, 7]] {
            p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            p.extend_from_slice(nal);
        }
        let mut d = Depacketizer::default();
        let au = d.push(1, 0, true, &p).expect("unit");
        assert_eq!(au.annexb, unit(&[&[0x67, 9], &[0x68, 8], &[0x65, 7, 7]]));
        assert!(au.keyframe);
    }

    #[test]
    fn a_loss_drops_units_until_the_next_idr() {
        let p_slice: &[u8] = &[0x41, 1, 2];
        let idr: &[u8] = &[0x65, 3, 4];
        let mut d = Depacketizer::default();
        assert!(d.push(1, 0, true, idr).is_some());
        assert!(d.push(2, 3000, true, p_slice).is_some());
        // 3 is lost.
        assert_eq!(d.push(4, 9000, true, p_slice), None);
        assert!(d.needs_keyframe());
        assert_eq!(d.push(5, 12000, true, p_slice), None);
        assert!(d.push(6, 15000, true, idr).is_some(), "an IDR mends it");
        assert!(!d.needs_keyframe());
        assert!(d.push(7, 18000, true, p_slice).is_some());
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = Depacketizer::default();
        for (i, p) in [
            &[][..],
            &[0x7c],
            &[0x78, 0, 9, 1],
            &[0x1f, 0],
            &[0x7c, 0x05, 1],
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(d.push(i as u16, 0, true, p), None);
        }
        assert!(d.malformed >= 4, "{}", d.malformed);
    }
}
