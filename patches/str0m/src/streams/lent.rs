//! Packets sent now whose accounting waits for the connection's next use.
//!
//! `Session::send_rtp_now` writes and seals a packet and accounts it in the
//! send stream, the pacer, the TWCC send register and the estimator. For an
//! SFU forwarding one source to hundreds of receivers, that accounting is
//! a large part of a copy's cost (~40 % of `send_rtp_now` in Tern's fan-out
//! benchmark at 560 receivers): not the work, but fetching each receiver's
//! stream, media, codec parameters, pacer and registers from memory, where
//! they no longer fit the CPU's caches.
//!
//! Once a stream has sent one packet the full way, the session lends the
//! next packets on it what writing needs (the SSRC, the extension map, the
//! payload type checked, the MID and RID while they are still sent): they
//! are written and sealed at once, and their accounting is kept here as a
//! compact record. Every other use of the connection accounts the records
//! first: a packet sent the full way, a timeout, a poll and a read of the
//! accounting keep the loans (they change nothing a loan holds); received
//! input and the API calls that change the connection end them. Either way
//! the records are accounted in order, through the same code the full path
//! runs, so nothing that reads the stream, the pacer, the registers or the
//! estimator can tell the two paths apart: no clock moved and no other
//! packet left between the send and its accounting. The packet is sealed
//! by the session's one SRTP context, with the sequence number the caller
//! gave, as the full path seals it: there is no second sealer.

use std::sync::Arc;
use std::time::Instant;

use crate::rtp_::{ExtensionMap, MidRid, Pt, SeqNo, Ssrc};

/// Records kept before the next packet goes the full way (settling them):
/// a bound on the memory a session holds for a caller that sends much and
/// uses the connection otherwise rarely.
pub(crate) const LENT_MAX: usize = 64;

/// Streams lent at once: a receiver of a few videos and their audio; a
/// stream beyond it takes the place of the one lent longest ago.
const LENT_STREAMS_MAX: usize = 16;

/// What the session lends a stream that sent its last packet the full way.
#[derive(Debug)]
pub(crate) struct LentStream {
    pub ssrc: Ssrc,
    /// The payload type the full path checked.
    pub pt: Pt,
    /// Whether a nackable packet of `pt` goes to the stream's RTX cache:
    /// those need the full path, which keeps the packet.
    pub caches_nackable: bool,
    /// The media's extension map (shared by the connection's media).
    pub exts: Arc<ExtensionMap>,
    /// Whether the transport-wide sequence number is negotiated.
    pub twcc: bool,
    /// The MID and RID each packet carries until the remote side
    /// acknowledges the SSRC (only input does that, and input ends loans).
    pub midrid: Option<MidRid>,
}

/// A packet written and sealed from a lent stream, not yet accounted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LentPacket {
    pub now: Instant,
    pub wallclock: Instant,
    pub seq_no: SeqNo,
    pub twcc: Option<u64>,
    pub ssrc: Ssrc,
    pub time: u32,
    pub payload_size: u32,
    pub pt: Pt,
}

/// The session's lent streams and the packets they sent.
#[derive(Debug, Default)]
pub(crate) struct Lent {
    pub streams: Vec<LentStream>,
    pub packets: Vec<LentPacket>,
}

impl Lent {
    /// The lent stream that can take a packet of `pt` on `ssrc` now.
    pub fn stream(&self, ssrc: Ssrc, pt: Pt, nackable: bool) -> Option<usize> {
        if self.packets.len() >= LENT_MAX {
            return None;
        }
        self.streams
            .iter()
            .position(|s| s.ssrc == ssrc && s.pt == pt && !(nackable && s.caches_nackable))
    }

    /// Lend `stream`, in place of what it had lent for its payload type.
    pub fn lend(&mut self, stream: LentStream) {
        self.streams
            .retain(|s| !(s.ssrc == stream.ssrc && s.pt == stream.pt));
        if self.streams.len() >= LENT_STREAMS_MAX {
            self.streams.remove(0);
        }
        self.streams.push(stream);
    }

    /// Whether any packet waits for its accounting or any stream is lent.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_record_is_72_bytes() {
        // 64 of them are what a session may hold between uses.
        assert!(std::mem::size_of::<LentPacket>() <= 72);
    }
}
