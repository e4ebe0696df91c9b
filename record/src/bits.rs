//! Reading a bitstream's headers bit by bit, most significant first: the
//! H.264 SPS, the VP9 keyframe header and the AV1 sequence header a
//! recording's file header is made from.

pub(crate) struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    /// The next `n` bits (at most 64); `None` past the end.
    pub(crate) fn u(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u64::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        Some(v)
    }

    /// The next `n` bits (at most 32).
    pub(crate) fn u32(&mut self, n: u32) -> Option<u32> {
        u32::try_from(self.u(n.min(32))?).ok()
    }

    /// Exp-Golomb, unsigned (at most 32 leading zeros): H.264's ue(v),
    /// AV1's uvlc().
    pub(crate) fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.u(1)? == 0 {
            zeros += 1;
            if zeros > 32 {
                return None;
            }
        }
        Some((1u64 << zeros) - 1 + self.u(zeros)?)
    }

    /// Exp-Golomb, signed.
    pub(crate) fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}
