//! A receive slot's map from the sequence numbers it sent to what they
//! were (`repair.rs` answers NACKs from it and the source's one copy):
//! which source and cached packet, and the numbers the slot's rewriter
//! gave it. Dense, because a meeting participant holds hundreds of entries.

use std::time::{Duration, Instant};

use str0m::media::Pt;

/// What a slot sent under one outgoing sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    /// Outgoing sequence number, as on the wire (the RTX packet carries
    /// these 16 bits; a NACK names them).
    pub(super) seq: u16,
    /// The packet's index in its source's cache, its low 32 bits
    /// (`SourceCache::get` finds the rest: a cache holds a few thousand).
    pub(super) index: u32,
    pub(super) ts: u32,
    pub(super) pt: Pt,
    pub(super) marker: bool,
    /// The rewritten VP8 picture id and TL0PICIDX, where it had them.
    pub(super) pid: Option<u16>,
    pub(super) tl0: Option<u8>,
    /// The receiver's feedback reported it received (`SentMap::release`;
    /// ignored by `record`).
    pub(super) confirmed: bool,
}

/// A compact `Sent` in the ring, 20 bytes (mediasoup's retransmission
/// buffer entry is ~40): the source is a position in the map's short list
/// of sources, and the time is milliseconds since the map began.
#[derive(Debug, Clone, Copy)]
struct Entry {
    index: u32,
    ts: u32,
    at_ms: u32,
    seq: u16,
    pid: u16,
    pt: u8,
    tl0: u8,
    /// Position in `sources`, or `EMPTY`.
    source: u8,
    /// Bit 0: marker; 1: has pid; 2: has tl0.
    flags: u8,
}

const EMPTY: u8 = u8::MAX;
const MARKER: u8 = 1;
const HAS_PID: u8 = 2;
const HAS_TL0: u8 = 4;
/// Its receiver reported it received: the entry is free for a later packet
/// (the map does not grow to keep it), and a NACK that finds it meanwhile
/// crossed the feedback.
const CONFIRMED: u8 = 8;

/// Sources a slot's map tells apart at once: a slot that carried more
/// within the repair window forgets what it sent for the oldest.
const SOURCES: usize = 4;

/// A map's first size: a feedback interval of a slot's packets (confirmed
/// ones free their entries, `release`) with room for a few lost ones; it
/// grows while the repair window needs more.
const INITIAL: usize = 32;

impl Entry {
    const VACANT: Entry = Entry {
        index: 0,
        ts: 0,
        at_ms: 0,
        seq: 0,
        pid: 0,
        pt: 0,
        tl0: 0,
        source: EMPTY,
        flags: 0,
    };
}

/// A receive slot's map from the sequence numbers it sent to what they
/// were: a ring indexed by sequence number that grows (up to `max`) while
/// the repair window holds more than it has room for.
/// `S` names a source (the core's `SourceRef`).
#[derive(Debug)]
pub(super) struct SentMap<S> {
    ring: Vec<Entry>,
    sources: [Option<S>; SOURCES],
    current: usize,
    /// When the first packet was recorded; entry times count from it.
    epoch: Option<Instant>,
}

impl<S> Default for SentMap<S> {
    fn default() -> Self {
        Self {
            ring: Vec::new(),
            sources: [const { None }; SOURCES],
            current: 0,
            epoch: None,
        }
    }
}

impl<S: Copy + PartialEq> SentMap<S> {
    fn ms(&self, t: Instant) -> u32 {
        let Some(epoch) = self.epoch else {
            return 0;
        };
        u32::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u32::MAX)
    }

    /// Remember what went out under `sent.seq`.
    pub(super) fn record(
        &mut self,
        now: Instant,
        source: S,
        sent: Sent,
        age: Duration,
        max: usize,
    ) {
        let source = self.source_position(source);
        self.epoch.get_or_insert(now);
        let at_ms = self.ms(now);
        if self.ring.is_empty() {
            self.ring = vec![Entry::VACANT; INITIAL.min(max.next_power_of_two())];
        }
        let mask = self.ring.len() - 1;
        let old = self.ring[sent.seq as usize & mask];
        // The entry this one displaces is still inside the repair window:
        // grow rather than forget it.
        if old.source != EMPTY
            && old.flags & CONFIRMED == 0
            && old.seq != sent.seq
            && at_ms.saturating_sub(old.at_ms) <= age.as_millis() as u32
            && self.ring.len() < max
        {
            self.grow(max);
        }
        let mask = self.ring.len() - 1;
        let mut flags = 0;
        if sent.marker {
            flags |= MARKER;
        }
        if sent.pid.is_some() {
            flags |= HAS_PID;
        }
        if sent.tl0.is_some() {
            flags |= HAS_TL0;
        }
        self.ring[sent.seq as usize & mask] = Entry {
            seq: sent.seq,
            index: sent.index,
            ts: sent.ts,
            at_ms,
            pid: sent.pid.unwrap_or(0),
            pt: *sent.pt,
            tl0: sent.tl0.unwrap_or(0),
            source,
            flags,
        };
    }

    fn grow(&mut self, max: usize) {
        let len = (self.ring.len() * 2).min(max.next_power_of_two());
        let mut ring = vec![Entry::VACANT; len];
        for e in self.ring.iter().filter(|e| e.source != EMPTY) {
            ring[e.seq as usize & (len - 1)] = *e;
        }
        self.ring = ring;
    }

    fn source_position(&mut self, source: S) -> u8 {
        if self.sources[self.current] != Some(source) {
            if let Some(p) = self.sources.iter().position(|s| *s == Some(source)) {
                self.current = p;
            } else {
                // The oldest source's entries go with its place in the list:
                // kept, they would name the new source's packets.
                self.current = (self.current + 1) % SOURCES;
                let forgotten = self.current as u8;
                for e in self.ring.iter_mut().filter(|e| e.source == forgotten) {
                    *e = Entry::VACANT;
                }
                self.sources[self.current] = Some(source);
            }
        }
        self.current as u8
    }

    /// What went out under the 16-bit sequence number `seq16`, if it is
    /// still within `age` of `now`.
    pub(super) fn lookup(&self, now: Instant, seq16: u16, age: Duration) -> Option<(S, Sent)> {
        if self.ring.is_empty() {
            return None;
        }
        let e = self.ring[seq16 as usize & (self.ring.len() - 1)];
        if e.source == EMPTY || e.seq != seq16 {
            return None;
        }
        if self.ms(now).saturating_sub(e.at_ms) > age.as_millis() as u32 {
            return None;
        }
        let source = self.sources[usize::from(e.source)]?;
        Some((
            source,
            Sent {
                seq: e.seq,
                index: e.index,
                ts: e.ts,
                pt: e.pt.into(),
                marker: e.flags & MARKER != 0,
                pid: (e.flags & HAS_PID != 0).then_some(e.pid),
                tl0: (e.flags & HAS_TL0 != 0).then_some(e.tl0),
                confirmed: e.flags & CONFIRMED != 0,
            },
        ))
    }

    /// The receiver reported what went out under `seq16` received: mark its
    /// entry free for a later packet, if it still names the packet under
    /// `index`, and say whose packet it was (once: a second release of the
    /// same entry says nothing).
    pub(super) fn release(&mut self, seq16: u16, index: u32) -> Option<S> {
        if self.ring.is_empty() {
            return None;
        }
        let mask = self.ring.len() - 1;
        let e = &mut self.ring[seq16 as usize & mask];
        if e.source == EMPTY || e.seq != seq16 || e.index != index || e.flags & CONFIRMED != 0 {
            return None;
        }
        e.flags |= CONFIRMED;
        self.sources[usize::from(e.source)]
    }

    /// Forget everything sent so far (after a switch down, see
    /// `Core::fan_out`).
    pub(super) fn forget(&mut self) {
        self.ring.fill(Entry::VACANT);
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(1);

    /// Sources are named by a number here (the core names them by
    /// `SourceRef`).
    fn source(n: u64) -> u64 {
        n
    }

    fn sent(seq: u64, index: u64) -> Sent {
        Sent {
            seq: seq as u16,
            index: index as u32,
            ts: (seq as u32).wrapping_mul(3000),
            pt: 96.into(),
            marker: seq.is_multiple_of(3),
            pid: seq
                .is_multiple_of(2)
                .then_some((seq as u16).wrapping_add(7)),
            tl0: seq.is_multiple_of(2).then_some(seq as u8),
            confirmed: false,
        }
    }

    #[test]
    fn a_slots_map_answers_for_every_source_and_layer_it_carried_in_the_window() {
        let t0 = Instant::now();
        let mut map = SentMap::default();
        let mut now = t0;
        // Source 1 (its indexes cover every layer: a layer switch is a
        // jump in index), then source 2, then source 1 again.
        let mut expected = Vec::new();
        for seq in 100..400u64 {
            let (src, index) = match seq {
                100..200 => (source(1), seq * 2),
                200..300 => (source(2), seq),
                _ => (source(1), 10_000 + seq),
            };
            map.record(now, src, sent(seq, index), AGE, 512);
            expected.push((seq, src, index));
            now += Duration::from_millis(2);
        }
        for (seq, src, index) in expected {
            let (got_src, got) = map.lookup(now, seq as u16, AGE).expect("answered");
            assert_eq!(got_src, src);
            assert_eq!(got, sent(seq, index));
        }
        assert!(map.lookup(now, 99, AGE).is_none());
        assert!(map.lookup(now, 400, AGE).is_none());
    }

    #[test]
    fn a_slot_that_carried_more_sources_than_it_tells_apart_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut map = SentMap::default();
        for n in 0..=SOURCES as u64 {
            map.record(t0, source(n), sent(n, n), AGE, 512);
        }
        // The first source's place went to the last: its packet is not
        // answered as if it were the new source's.
        assert!(map.lookup(t0, 0, AGE).is_none());
        for n in 1..=SOURCES as u64 {
            assert_eq!(
                map.lookup(t0, n as u16, AGE).map(|(s, _)| s),
                Some(source(n))
            );
        }
    }

    #[test]
    fn a_slots_map_grows_to_its_window_and_no_further() {
        let t0 = Instant::now();
        let mut map = SentMap::default();
        // 300 packets within 300 ms: all inside the window.
        for seq in 0..300u64 {
            map.record(
                t0 + Duration::from_millis(seq),
                source(1),
                sent(seq, seq),
                AGE,
                512,
            );
        }
        assert_eq!(map.capacity(), 512);
        let now = t0 + Duration::from_millis(300);
        assert!((0..300u16).all(|s| map.lookup(now, s, AGE).is_some()));
        // Bounded at `max`: the oldest go first.
        let mut small = SentMap::default();
        for seq in 0..300u64 {
            small.record(t0, source(1), sent(seq, seq), AGE, 128);
        }
        assert_eq!(small.capacity(), 128);
        assert!(small.lookup(t0, 171, AGE).is_none());
        assert!((172..300u16).all(|s| small.lookup(t0, s, AGE).is_some()));
    }

    #[test]
    fn a_slots_map_does_not_grow_for_what_its_receiver_confirmed() {
        let t0 = Instant::now();
        // 300 packets within 300 ms, each confirmed 20 packets after it
        // went out (a feedback interval): the map keeps its first size.
        let mut map = SentMap::default();
        for seq in 0..300u64 {
            map.record(
                t0 + Duration::from_millis(seq),
                source(1),
                sent(seq, seq),
                AGE,
                512,
            );
            if let Some(old) = seq.checked_sub(20) {
                assert_eq!(map.release(old as u16, old as u32), Some(source(1)));
            }
        }
        assert_eq!(map.capacity(), 32);
        let now = t0 + Duration::from_millis(300);
        let confirmed = |map: &SentMap<u64>, s| map.lookup(now, s, AGE).map(|(_, x)| x.confirmed);
        // Released, and not yet written over: a NACK for it is told apart.
        assert_eq!(confirmed(&map, 279), Some(true));
        assert!((280..300u16).all(|s| confirmed(&map, s) == Some(false)));
        // A release that names another packet (an index the entry does not
        // hold) leaves the entry alone; a second release says nothing.
        assert_eq!(map.release(299, 298), None);
        assert_eq!(confirmed(&map, 299), Some(false));
        assert_eq!(map.release(299, 299), Some(source(1)));
        assert_eq!(map.release(299, 299), None);
        assert_eq!(confirmed(&map, 299), Some(true));
    }

    #[test]
    fn a_slots_map_neither_grows_for_nor_answers_what_is_older_than_the_window() {
        let t0 = Instant::now();
        let mut map = SentMap::default();
        // 50 packets a second for 4 s: 64 entries cover the window.
        for seq in 0..200u64 {
            map.record(
                t0 + Duration::from_millis(seq * 20),
                source(1),
                sent(seq, seq),
                AGE,
                512,
            );
        }
        assert_eq!(map.capacity(), 64);
        let now = t0 + Duration::from_millis(199 * 20);
        assert!(map.lookup(now, 199, AGE).is_some());
        assert!(map.lookup(now, 149, AGE).is_some(), "1.0 s old");
        assert!(map.lookup(now, 148, AGE).is_none(), "1.02 s old");
        map.forget();
        assert!(map.lookup(now, 199, AGE).is_none());
    }

    proptest::proptest! {
        /// Whatever a slot sent (six sources coming and going, gaps in time
        /// and in numbering, across the 16-bit wrap, more than the map
        /// holds), a lookup answers only with what went out under that
        /// number, and only within the window; the newest is always found.
        #[test]
        fn a_slots_map_never_answers_with_another_packet(
            steps in proptest::collection::vec((0u64..6, 0u64..40, 1u64..4), 1..600),
            max in proptest::sample::select(vec![64usize, 128, 512]),
        ) {
            let t0 = Instant::now();
            let mut map = SentMap::default();
            let mut now = t0;
            let mut seq = 65_300u64;
            let mut log: Vec<(Instant, u64, Sent)> = Vec::new();
            for (i, (src, gap_ms, jump)) in steps.into_iter().enumerate() {
                now += Duration::from_millis(gap_ms);
                seq += jump;
                let sent = sent(seq, i as u64);
                map.record(now, source(src), sent, AGE, max);
                log.push((now, source(src), sent));
                proptest::prop_assert_eq!(map.lookup(now, seq as u16, AGE), Some((source(src), sent)));
                let first = u64::from(log[0].2.seq);
                for q in [seq - 1, seq.saturating_sub(7), seq.saturating_sub(200), first] {
                    let Some((got_src, got)) = map.lookup(now, q as u16, AGE) else {
                        continue;
                    };
                    let Some((at, src, s)) = log.iter().find(|(_, _, s)| s.seq == q as u16) else {
                        proptest::prop_assert!(false, "answered for {q}, never sent");
                        continue;
                    };
                    proptest::prop_assert_eq!((got_src, got), (*src, *s));
                    proptest::prop_assert!(now - *at <= AGE + Duration::from_millis(1));
                }
            }
        }
    }

    #[test]
    fn a_sent_map_entry_is_20_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 20);
    }
}
