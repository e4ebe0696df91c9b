//! What the tap keeps of the SRTP packets a bridge seals: every packet
//! index per destination and SSRC, so a test can show none was sealed
//! twice (a reused AES-GCM nonce).

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::Tap;

/// The indexes sealed on one SSRC towards one address.
#[derive(Debug, Default)]
pub struct SrtpIndexes {
    /// Every extended sequence number (rollover counter and sequence
    /// number) sealed.
    pub seen: HashSet<u64>,
    /// Packets whose index was already in `seen`.
    pub reused: u64,
    last: Option<u64>,
}

impl SrtpIndexes {
    /// RFC 3711's index estimate: the extended number closest to the last.
    fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = last >> 16;
        let mut ext = (roc << 16) | u64::from(seq);
        for r in [roc.checked_sub(1), Some(roc + 1)].into_iter().flatten() {
            let c = (r << 16) | u64::from(seq);
            if c.abs_diff(last) < ext.abs_diff(last) {
                ext = c;
            }
        }
        if ext > last {
            self.last = Some(ext);
        }
        ext
    }
}

impl Tap {
    /// Note an SRTP packet the bridge sent to `to` (its header is in the
    /// clear); anything else (STUN, DTLS, SRTCP: payload types 64-95 with
    /// the marker bit, RFC 5761) is left.
    pub fn note_srtp(&mut self, to: SocketAddr, d: &[u8]) {
        let rtp = d.len() >= 12 && d[0] >> 6 == 2 && !(64..=95).contains(&(d[1] & 0x7f));
        if !rtp {
            return;
        }
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let seq = u16::from_be_bytes([d[2], d[3]]);
        let ix = self.srtp.entry((to, ssrc)).or_default();
        let ext = ix.extend(seq);
        if !ix.seen.insert(ext) {
            ix.reused += 1;
        }
    }
}
