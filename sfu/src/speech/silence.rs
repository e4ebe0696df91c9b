//! Silence suppression on the forwarding path, as Jitsi Videobridge does
//! it: a source's audio is forwarded while it speaks, plus the first few
//! silent packets after (so the receiver's comfort noise and jitter buffer
//! settle on a quiet frame), then none until its next speech. In a large
//! meeting most participants are silent most of the time; their audio is
//! most of the audio a bridge would otherwise send.

/// Silent packets forwarded in a row before the rest are dropped.
pub const SILENT_PACKETS: u8 = 3;

/// RFC 6464's level for digital silence (-127 dBov). Only that counts:
/// quiet speech must never be cut, and the noise floor is the detector's
/// business, not the forwarder's.
const SILENT: u8 = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Drop,
}

/// One audio source's run of silent packets.
#[derive(Debug, Clone, Default)]
pub struct SilenceGate {
    silent_run: u8,
    dropped: u64,
}

impl SilenceGate {
    /// `dbov`: the packet's RFC 6464 level, `None` without the extension
    /// (always forwarded: nothing says it is silent).
    pub fn pass(&mut self, dbov: Option<u8>) -> Verdict {
        match dbov {
            Some(l) if l >= SILENT => {
                if self.silent_run >= SILENT_PACKETS {
                    self.dropped += 1;
                    return Verdict::Drop;
                }
                self.silent_run += 1;
                Verdict::Forward
            }
            _ => {
                self.silent_run = 0;
                Verdict::Forward
            }
        }
    }

    /// The sequence number a forwarded packet continues with: the source's
    /// own less every packet dropped so far. Receivers (and relay peers)
    /// see an unbroken sequence whose timestamps jump over the silence, as
    /// after Opus DTX, not a gap they would conceal or NACK as loss.
    pub fn compact(&self, seq: u64) -> u64 {
        seq.saturating_sub(self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_three_silent_packets_then_drops_until_speech() {
        let mut g = SilenceGate::default();
        let fwd = Verdict::Forward;
        assert_eq!(g.pass(Some(30)), fwd);
        for _ in 0..SILENT_PACKETS {
            assert_eq!(g.pass(Some(127)), fwd);
        }
        for _ in 0..100 {
            assert_eq!(g.pass(Some(127)), Verdict::Drop);
        }
        assert_eq!(g.pass(Some(40)), fwd);
        assert_eq!(g.pass(Some(40)), fwd);
    }

    #[test]
    fn forwarded_sequence_numbers_close_the_gap_of_dropped_ones() {
        let mut g = SilenceGate::default();
        let mut out = Vec::new();
        for seq in 100..120u64 {
            let level = if (105..115).contains(&seq) { 127 } else { 30 };
            if g.pass(Some(level)) != Verdict::Drop {
                out.push(g.compact(seq));
            }
        }
        let want: Vec<u64> = (100..113).collect();
        assert_eq!(out, want, "10 silent: 3 forwarded, 7 dropped");
    }

    #[test]
    fn packets_without_a_level_are_never_dropped() {
        let mut g = SilenceGate::default();
        for _ in 0..10 {
            g.pass(Some(127));
        }
        assert_eq!(g.pass(None), Verdict::Forward);
        assert_eq!(g.pass(Some(127)), Verdict::Forward, "the run starts again");
    }

    #[test]
    fn quiet_speech_is_not_silence() {
        let mut g = SilenceGate::default();
        for _ in 0..10 {
            assert_ne!(g.pass(Some(126)), Verdict::Drop);
        }
    }
}
