//! Hop-by-hop repair on the relay leg.
//!
//! The origin keeps the last datagrams it sent per source layer
//! ([`SendCache`]); the receiving bridge notices holes in each layer's
//! sequence numbers ([`GapTracker`]) and asks for them with `Nack` on the
//! control stream. Receivers behind the receiving bridge keep NACKing their
//! own bridge, so their repair loop sees only their own short RTT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The last `capacity` datagrams of one source layer, by RTP sequence.
/// Buffers are reused: inserting does not allocate once the ring is warm.
#[derive(Debug)]
pub struct SendCache {
    slots: Vec<(Option<u16>, Vec<u8>)>,
}

impl SendCache {
    /// `capacity` is rounded up to a power of two.
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(1).next_power_of_two();
        Self {
            slots: (0..n).map(|_| (None, Vec::new())).collect(),
        }
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) & (self.slots.len() - 1)
    }

    pub fn insert(&mut self, seq: u16, datagram: &[u8]) {
        let i = self.index(seq);
        let slot = &mut self.slots[i];
        slot.0 = Some(seq);
        slot.1.clear();
        slot.1.extend_from_slice(datagram);
    }

    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let slot = &self.slots[self.index(seq)];
        (slot.0 == Some(seq)).then_some(slot.1.as_slice())
    }
}

/// A jump larger than this is a restart of the stream (demand resumed, the
/// publisher reconnected), not loss.
const MAX_GAP: u64 = 256;
/// Give up on a hole after this many requests or this long.
const MAX_NACKS: u8 = 4;
const GIVE_UP: Duration = Duration::from_millis(1500);
/// Wait at least this long between requests for the same packet.
const MIN_RETRY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
struct Hole {
    first_seen: Instant,
    last_nack: Option<Instant>,
    nacks: u8,
}

/// Loss detection for one layer of one remote source.
#[derive(Debug, Default)]
pub struct GapTracker {
    highest: Option<u64>,
    holes: BTreeMap<u64, Hole>,
    /// Holes that were filled after being reported (repair worked).
    pub repaired: u64,
    /// Holes given up on.
    pub lost: u64,
}

impl GapTracker {
    /// Extend a 16-bit sequence number to the one closest to the highest.
    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return u64::from(seq) + (1 << 16);
        };
        let base = h & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b + u64::from(seq))
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(h)
    }

    /// A packet arrived: its extended sequence number, or `None` for a
    /// duplicate (or a hole already given up on).
    pub fn on_packet(&mut self, now: Instant, seq: u16) -> Option<u64> {
        let ext = self.extend(seq);
        let Some(h) = self.highest else {
            self.highest = Some(ext);
            return Some(ext);
        };
        if ext > h {
            if ext - h > MAX_GAP {
                self.holes.clear();
            } else {
                for missing in h + 1..ext {
                    self.holes.insert(
                        missing,
                        Hole {
                            first_seen: now,
                            last_nack: None,
                            nacks: 0,
                        },
                    );
                }
            }
            self.highest = Some(ext);
            Some(ext)
        } else if let Some(hole) = self.holes.remove(&ext) {
            if hole.nacks > 0 {
                self.repaired += 1;
            }
            Some(ext)
        } else if h - ext > MAX_GAP {
            // Far behind: the stream restarted lower. Follow it.
            self.holes.clear();
            self.highest = Some(ext);
            Some(ext)
        } else {
            None
        }
    }

    /// Forget everything (the stream stopped on this link).
    pub fn reset(&mut self) {
        self.highest = None;
        self.holes.clear();
    }

    /// Sequence numbers to request now. `rtt` is the link's round trip time.
    pub fn poll_nacks(&mut self, now: Instant, rtt: Duration, out: &mut Vec<u16>) {
        let retry = (rtt + rtt / 2).max(MIN_RETRY);
        let mut expired = Vec::new();
        for (&seq, hole) in self.holes.iter_mut() {
            if hole.nacks >= MAX_NACKS || now.saturating_duration_since(hole.first_seen) > GIVE_UP {
                expired.push(seq);
                continue;
            }
            if hole
                .last_nack
                .is_none_or(|t| now.saturating_duration_since(t) >= retry)
            {
                hole.last_nack = Some(now);
                hole.nacks += 1;
                out.push(seq as u16);
            }
        }
        for seq in expired {
            self.holes.remove(&seq);
            self.lost += 1;
        }
    }

    pub fn has_holes(&self) -> bool {
        !self.holes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cache_returns_what_was_inserted_until_overwritten() {
        let mut c = SendCache::new(4);
        for s in 0..4u16 {
            c.insert(s, &[s as u8]);
        }
        assert_eq!(c.get(2), Some(&[2u8][..]));
        c.insert(6, &[6]);
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(6), Some(&[6u8][..]));
    }

    #[test]
    fn holes_are_nacked_then_counted_repaired_or_lost() {
        let t = Instant::now();
        let rtt = Duration::from_millis(40);
        let mut g = GapTracker::default();
        for s in [65533u16, 65534, 1, 2] {
            assert!(g.on_packet(t, s).is_some());
        }
        let mut out = Vec::new();
        g.poll_nacks(t, rtt, &mut out);
        assert_eq!(out, vec![65535, 0]);
        out.clear();
        g.poll_nacks(t + Duration::from_millis(10), rtt, &mut out);
        assert!(out.is_empty(), "retries wait for 1.5 RTT");
        assert!(g.on_packet(t, 0).is_some());
        assert!(g.on_packet(t, 0).is_none(), "duplicate");
        assert_eq!(g.repaired, 1);
        let mut later = t;
        for _ in 0..10 {
            later += Duration::from_millis(100);
            g.poll_nacks(later, rtt, &mut out);
        }
        assert_eq!(g.lost, 1);
        assert!(!g.has_holes());
    }

    #[test]
    fn a_large_jump_restarts_instead_of_nacking_thousands() {
        let t = Instant::now();
        let mut g = GapTracker::default();
        g.on_packet(t, 100);
        g.on_packet(t, 5000);
        let mut out = Vec::new();
        g.poll_nacks(t, Duration::ZERO, &mut out);
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn every_missing_sequence_is_nacked_once_per_round(
            start in any::<u16>(),
            drops in proptest::collection::vec(any::<bool>(), 1..200),
        ) {
            let t = Instant::now();
            let mut g = GapTracker::default();
            g.on_packet(t, start);
            let mut expect = Vec::new();
            let mut last = start;
            for (i, d) in drops.iter().enumerate() {
                let s = start.wrapping_add(i as u16 + 1);
                if *d { expect.push(s) } else { g.on_packet(t, s); last = s; }
            }
            // Holes after the last received packet are not known yet.
            expect.retain(|&s| s.wrapping_sub(start) < last.wrapping_sub(start));
            let mut out = Vec::new();
            g.poll_nacks(t, Duration::ZERO, &mut out);
            prop_assert_eq!(out, expect);
        }
    }
}
