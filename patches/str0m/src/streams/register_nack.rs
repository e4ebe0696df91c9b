use std::ops::Range;
use std::time::{Duration, Instant};

use crate::rtp_::{Nack, NackEntry, ReportList, SeqNo};

/// Number of out of order packets we keep track of for reports
///
/// Tern patch (patches/README.md): 100 upstream. This window is also how far
/// back a repaired packet is still accepted (`accepts`), so it has to cover
/// the NACK's round trip and its retries: at 100 packets, a 720p stream
/// (~270 packets/s) on a 300 ms round trip got one NACK per lost packet and
/// its retransmission arrived behind the window, so a single lost NACK or
/// RTX meant a frame lost for good and a multi-second freeze. 512 packets
/// is ~2 s of 720p: five NACK rounds at 300 ms (libwebrtc keeps up to 1000
/// missing packets and retries ten times).
const MAX_MISORDER: u64 = 512;

/// The max number of NACKs we perform for a single packet
const MAX_NACKS: u8 = 5;

pub(super) const DEFAULT_RTT: Duration = Duration::from_millis(100);
const NACK_RETRY_MARGIN: Duration = Duration::from_millis(5);

/// Circular buffer size
const BUFFER_SIZE: u64 = MAX_MISORDER + 1;

/// The buffer's length while the window is short (Tern patch,
/// patches/README.md). A stream whose losses are repaired keeps a window of
/// a few packets, but a buffer for the whole of `MAX_MISORDER` was 2 KB per
/// received stream, audio too. The buffer doubles (64, 128, 256, then
/// `BUFFER_SIZE`) before the window outgrows it, and halves once the window
/// is back under a quarter of it; only the window's entries move.
const MIN_BUFFER: usize = 64;

#[derive(Debug)]
pub struct NackRegister {
    /// Status of packets indexed by wrapping SeqNo: those of the `active`
    /// window (which always fits), default everywhere else.
    packets: Vec<PacketStatus>,

    /// The shortest `packets` gets (`MIN_BUFFER`; `BUFFER_SIZE` keeps the
    /// buffer at its full length, as upstream).
    min_len: usize,

    /// Range of seq numbers considered NACK reporting.
    active: Option<Range<SeqNo>>,

    /// What the packets' NACK times count from (`PacketStatus`): the first
    /// NACK's time (Tern patch, see `PacketStatus`).
    base: Option<Instant>,
}

/// A packet's state in one `u32`: whether it was received (bit 31), how
/// many times it was NACKed (bits 28-30, at most `MAX_NACKS`) and when last
/// (bits 0-27: 100 µs ticks after the register's base, plus one; 0 when
/// never).
///
/// Tern patch (patches/README.md): 4 bytes an entry. With a `bool`, a count
/// and an `Option<Instant>` it was 24, then 8 (a `u64` of ns), for 513
/// entries per received stream. A time is rounded up to its tick when
/// stored, so a retry never falls due early (at most 100 µs late). 2^28
/// ticks is 7.4 hours: the register moves its base forward every hour
/// (`NackRegister::rebase`).
#[derive(Debug, Default, Clone, Copy)]
struct PacketStatus(u32);

const RECEIVED: u32 = 1 << 31;
const COUNT_SHIFT: u32 = 28;
const COUNT_MASK: u32 = 0b111 << COUNT_SHIFT;
const TIME_MASK: u32 = (1 << COUNT_SHIFT) - 1;
const TICK_NS: u64 = 100_000;

/// How old the base may get before it moves forward, and how much of the
/// past stays exact when it does (older NACK times read as that old: every
/// retry and recovery deadline from them has long passed).
const REBASE_AFTER: Duration = Duration::from_secs(3600);
const REBASE_KEEP: Duration = Duration::from_secs(60);

impl PacketStatus {
    fn received(&self) -> bool {
        self.0 & RECEIVED != 0
    }

    fn nack_count(&self) -> u8 {
        ((self.0 & COUNT_MASK) >> COUNT_SHIFT) as u8
    }

    fn needs_nack(&self) -> bool {
        !self.received() && self.nack_count() < MAX_NACKS
    }

    fn last_nack_at(&self, base: Option<Instant>) -> Option<Instant> {
        let ticks = (self.0 & TIME_MASK).checked_sub(1)?;
        Some(base? + Duration::from_nanos(u64::from(ticks) * TICK_NS))
    }

    fn is_nack_due(&self, now: Instant, retry_interval: Duration, base: Option<Instant>) -> bool {
        self.needs_nack()
            && self
                .last_nack_at(base)
                .is_none_or(|last| now.saturating_duration_since(last) >= retry_interval)
    }

    fn mark_nacked(&mut self, now: Instant, base: Instant) {
        // Only packets that need a NACK are marked: the count stays below
        // `MAX_NACKS`, which fits the three bits.
        let count = (self.nack_count() + 1).min(0b111);
        let ns = now.saturating_duration_since(base).as_nanos();
        let ticks = ns.div_ceil(u128::from(TICK_NS)).saturating_add(1);
        let time = u32::try_from(ticks).map_or(TIME_MASK, |t| t.min(TIME_MASK));
        self.0 = (self.0 & RECEIVED) | (u32::from(count) << COUNT_SHIFT) | time;
    }

    /// The base moved `ticks` forward: keep the time where it was, or at the
    /// new base if it was before it.
    fn shift_time(&mut self, ticks: u32) {
        let time = self.0 & TIME_MASK;
        if time > 0 {
            let moved = time.saturating_sub(ticks).max(1);
            self.0 = (self.0 & !TIME_MASK) | moved;
        }
    }

    fn mark_received(&mut self) -> bool {
        let new = !self.received();
        self.0 = RECEIVED;
        new
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

struct NackIterator<'a> {
    reg: &'a mut NackRegister,
    next: u64,
    end: u64,
    now: Instant,
    retry_interval: Duration,
}

impl<'a> Iterator for NackIterator<'a> {
    type Item = NackEntry;

    fn next(&mut self) -> Option<Self::Item> {
        let base = self.reg.base;
        self.next = (self.next..=self.end).find(|s| {
            self.reg
                .packet((*s).into())
                .is_nack_due(self.now, self.retry_interval, base)
        })?;
        // Set by `nack_reports` before it builds this iterator.
        let base = base.unwrap_or(self.now);

        let mut entry = NackEntry {
            pid: self.next as u16,
            blp: 0,
        };

        self.reg
            .packet_mut(self.next.into())
            .mark_nacked(self.now, base);
        self.next += 1;

        for (i, s) in (self.next..self.end).take(16).enumerate() {
            let packet = self.reg.packet_mut(s.into());
            if packet.is_nack_due(self.now, self.retry_interval, Some(base)) {
                packet.mark_nacked(self.now, base);
                entry.blp |= 1 << i
            }
            self.next += 1;
        }

        Some(entry)
    }
}

impl NackRegister {
    /// Creates a new register.
    ///
    /// The max_seq_no is to provide a starting point for ROC calculations.
    pub fn new(max_seq_no: Option<SeqNo>) -> Self {
        Self::with_min_len(max_seq_no, MIN_BUFFER)
    }

    fn with_min_len(max_seq_no: Option<SeqNo>, min_len: usize) -> Self {
        let mut n = NackRegister {
            packets: vec![PacketStatus::default(); min_len],
            min_len,
            active: None,
            base: None,
        };

        if let Some(seq) = max_seq_no {
            n.init_with_seq(seq);
        }

        n
    }

    pub fn accepts(&self, seq: SeqNo) -> bool {
        let Some(active) = self.active.clone() else {
            // if we don't have initialized, we do want the first packet.
            return true;
        };

        // behind the window
        if seq < active.start {
            return false;
        }

        !self.packet(seq).received() || seq > active.end
    }

    pub fn update(&mut self, seq: SeqNo) -> bool {
        let Some(active) = self.active.clone() else {
            // automatically pick up the first seq number
            self.init_with_seq(seq);
            return true;
        };

        if seq < active.start {
            // skip old seq numbers, report as not new
            return false;
        }

        // The window's entries move before it grows past the buffer: an
        // index past the buffer's length from the window's start would
        // fall on one of them.
        let span = (*seq.max(active.end) - *active.start).saturating_add(1);
        if span > self.packets.len() as u64 {
            self.resize(Self::len_for(span));
        }

        let new = !self.packet_mut(seq).received() || seq > active.end;

        let end = active.end.max(seq);

        let start: SeqNo = {
            let min = end.saturating_sub(MAX_MISORDER);
            let mut start = (*active.start).max(min);
            while start < *end {
                if !self.packet_mut(start.into()).received() && start != *seq {
                    break;
                }
                start += 1;
            }
            start.into()
        };

        // reset packets that are rolling our of the nack window
        for (i, s) in (*active.start..*start).enumerate() {
            let p = self.packet_mut(s.into());
            if !p.received() && s != *seq {
                trace!("Seq no {} missing after {} attempts", s, p.nack_count());
            }
            self.packet_mut(s.into()).reset();

            if i > self.packets.len() {
                // we have reset all entries already
                break;
            }
        }

        if (start..=end).contains(&seq) {
            self.packet_mut(seq).mark_received();
        }

        self.active = Some(start..end);

        let window = *end - *start + 1;
        if self.packets.len() > self.min_len && window * 4 <= self.packets.len() as u64 {
            self.resize(Self::len_for(window * 2).max(self.min_len));
        }

        new
    }

    /// The buffer length for a window of `span` packets: 64, 128, 256, or
    /// `BUFFER_SIZE` (a window never spans more).
    fn len_for(span: u64) -> usize {
        let mut len = MIN_BUFFER;
        while (len as u64) < span && len < 256 {
            len *= 2;
        }
        if (len as u64) < span {
            BUFFER_SIZE as usize
        } else {
            len
        }
    }

    /// A buffer of `len` holding the window's entries where they index now.
    fn resize(&mut self, len: usize) {
        if len == self.packets.len() {
            return;
        }
        let mut packets = vec![PacketStatus::default(); len];
        if let Some(active) = &self.active {
            // At most `BUFFER_SIZE` of them: a window is cut to
            // `MAX_MISORDER` behind its end.
            let from = (*active.start).max(active.end.saturating_sub(MAX_MISORDER));
            for s in from..=*active.end {
                packets[(s % len as u64) as usize] = *self.packet(s.into());
            }
        }
        self.packets = packets;
    }

    fn init_with_seq(&mut self, seq: SeqNo) {
        self.active = Some(seq..seq);
        self.packet_mut(seq).mark_received();
    }

    pub fn max_seq(&self) -> Option<SeqNo> {
        self.active.as_ref().map(|a| a.end)
    }

    /// Whether a missing packet still has NACK attempts remaining.
    ///
    /// Includes retries that are waiting for their RTT deadline.
    pub fn has_pending_nacks(&self) -> bool {
        let Some(active) = &self.active else {
            return false;
        };

        (*active.start..=*active.end).any(|seq| self.packet(seq.into()).needs_nack())
    }

    /// Create NACK reports for packets whose requests are due.
    ///
    /// First requests are immediately eligible. Retries wait one receive-stream RTT plus
    /// 5 ms, using 100 ms until RTT is known. Only included packets consume an attempt.
    pub fn nack_reports(
        &mut self,
        now: Instant,
        rtt: Option<Duration>,
    ) -> Option<impl Iterator<Item = Nack>> {
        let retry_interval = rtt.unwrap_or(DEFAULT_RTT).saturating_add(NACK_RETRY_MARGIN);
        self.rebase(now);
        let Range { start, end } = self.active.clone()?;
        let base = self.base;
        let start = (*start..=*end).find(|s| {
            self.packet((*s).into())
                .is_nack_due(now, retry_interval, base)
        })?;
        self.base.get_or_insert(now);

        Some(
            ReportList::lists_from_iter(NackIterator {
                reg: self,
                next: start,
                end: *end,
                now,
                retry_interval,
            })
            .into_iter()
            .map(|reports| {
                Nack {
                    sender_ssrc: 0.into(),
                    ssrc: 0.into(), // changed when sending
                    reports,
                }
            }),
        )
    }

    /// Deadline for abandoning missing packets in a candidate's preceding sequence range.
    /// None means a relevant packet still has NACK attempts remaining.
    pub fn recovery_deadline(
        &self,
        range: Range<SeqNo>,
        candidate_received: Instant,
        rtt: Option<Duration>,
    ) -> Option<Instant> {
        let grace = rtt.unwrap_or(DEFAULT_RTT).saturating_mul(3);
        let fallback = candidate_received.checked_add(grace);
        let Some(active) = &self.active else {
            return fallback;
        };
        let mut deadline = None;
        for seq in *range.start.max(active.start)..*range.end.min(active.end) {
            let packet = self.packet(seq.into());
            if packet.received() {
                continue;
            }
            if packet.needs_nack() {
                return None;
            }
            let at = packet.last_nack_at(self.base)?.checked_add(grace)?;
            deadline = Some(deadline.map_or(at, |previous: Instant| previous.max(at)));
        }
        // Gaps outside the bounded NACK window and missing tail markers have no final
        // request to time from. Give them a candidate-relative grace period instead.
        deadline.or(fallback)
    }

    /// Move the base forward once it is `REBASE_AFTER` old, so the times
    /// counted from it stay within their 28 bits.
    fn rebase(&mut self, now: Instant) {
        let Some(base) = self.base else {
            return;
        };
        if now.saturating_duration_since(base) <= REBASE_AFTER {
            return;
        }
        let by = now
            .saturating_duration_since(base)
            .saturating_sub(REBASE_KEEP);
        let ticks = u32::try_from(by.as_nanos() / u128::from(TICK_NS)).unwrap_or(TIME_MASK);
        for p in &mut self.packets {
            p.shift_time(ticks);
        }
        self.base = Some(base + Duration::from_nanos(u64::from(ticks) * TICK_NS));
    }

    fn as_index(&self, seq: SeqNo) -> usize {
        (*seq % self.packets.len() as u64) as usize
    }

    fn packet(&self, seq: SeqNo) -> &PacketStatus {
        let index = self.as_index(seq);
        &self.packets[index]
    }

    fn packet_mut(&mut self, seq: SeqNo) -> &mut PacketStatus {
        let index = self.as_index(seq);
        &mut self.packets[index]
    }
}

#[cfg(test)]
mod test {
    use std::ops::Range;
    use std::time::{Duration, Instant};

    use crate::rtp_::NackEntry;
    use crate::rtp_::SeqNo;
    use crate::streams::register_nack::{MAX_MISORDER, MIN_BUFFER};

    use super::NackRegister;

    #[test]
    fn recovery_waits_for_final_nack_and_three_rtts() {
        for rtt in [
            None,
            Some(Duration::from_millis(20)),
            Some(Duration::from_millis(400)),
        ] {
            let base = Instant::now();
            let measured = rtt.unwrap_or(Duration::from_millis(100));
            let mut reg = NackRegister::new(None);
            reg.update(10.into());
            reg.update(12.into());
            let mut now = base;
            for attempt in 0..5 {
                assert_eq!(reg.recovery_deadline(10.into()..12.into(), base, rtt), None);
                assert_eq!(nack_entries(&mut reg, now, rtt).len(), 1);
                if attempt < 4 {
                    now += measured + Duration::from_millis(5);
                }
            }
            let deadline = Some(now + measured * 3);
            // Include a received packet before the active window; it must not add a fallback wait.
            assert_eq!(
                reg.recovery_deadline(10.into()..12.into(), base, rtt),
                deadline
            );
            reg.update(14.into());
            assert_eq!(
                reg.recovery_deadline(10.into()..12.into(), base, rtt),
                deadline
            );
            assert_eq!(reg.recovery_deadline(10.into()..14.into(), base, rtt), None);
            reg.update(11.into());
            assert_eq!(
                reg.recovery_deadline(10.into()..12.into(), base, rtt),
                Some(base + measured * 3)
            );
        }
    }

    #[test]
    fn pending_nacks_follow_repair_and_retry_exhaustion() {
        let mut reg = NackRegister::new(None);
        assert!(!reg.has_pending_nacks());

        reg.update(10.into());
        assert!(!reg.has_pending_nacks());

        reg.update(12.into());
        assert!(reg.has_pending_nacks());
        reg.update(11.into());
        assert!(!reg.has_pending_nacks());

        reg.update(14.into());
        let mut now = Instant::now();
        for _ in 0..super::MAX_NACKS {
            assert!(reg.has_pending_nacks());
            let reports: Vec<_> = reg
                .nack_reports(now, None)
                .expect("pending retry")
                .collect();
            assert_eq!(reports.len(), 1);
            assert_eq!(reports[0].reports[0].pid, 13);
            now += Duration::from_millis(105);
        }
        assert!(!reg.has_pending_nacks());
        assert!(reg.nack_reports(now, None).is_none());
    }

    fn nack_entries(reg: &mut NackRegister, now: Instant, rtt: Option<Duration>) -> Vec<NackEntry> {
        reg.nack_reports(now, rtt)
            .into_iter()
            .flatten()
            .flat_map(|nack| nack.reports)
            .collect()
    }

    #[test]
    fn nack_retry_deadlines_and_limit() {
        for (rtt, interval_ms) in [
            (None, 105),
            (Some(Duration::ZERO), 5),
            (Some(Duration::from_millis(20)), 25),
            (Some(Duration::from_millis(250)), 255),
        ] {
            let mut reg = NackRegister::new(None);
            reg.update(10.into());
            reg.update(13.into());
            let now = Instant::now();
            let interval = Duration::from_millis(interval_ms);
            let expected = [NackEntry { pid: 11, blp: 1 }];

            for attempt in 0..super::MAX_NACKS {
                let due = now + interval * u32::from(attempt);
                if attempt > 0 {
                    assert!(nack_entries(&mut reg, due - Duration::from_nanos(1), rtt).is_empty());
                }
                assert!(reg.has_pending_nacks());
                assert_eq!(nack_entries(&mut reg, due, rtt), expected);
                assert!(nack_entries(&mut reg, due, rtt).is_empty());
                for seq in [11, 12] {
                    let packet = reg.packet(seq.into());
                    assert_eq!(packet.nack_count(), attempt + 1);
                    assert_eq!(packet.last_nack_at(reg.base), Some(due));
                }
            }

            assert!(!reg.has_pending_nacks());
            assert!(nack_entries(&mut reg, now + interval * 10, rtt).is_empty());
        }
    }

    #[test]
    fn a_register_that_resizes_answers_as_one_of_full_length() {
        // Random arrivals (in order, lost, late, duplicated, jumps past the
        // window and the u16 wrap) and NACK rounds: the register whose
        // buffer follows its window says what one of `BUFFER_SIZE` says.
        let mut rng = fastrand::Rng::with_seed(20);
        let mut lens = std::collections::BTreeSet::new();
        for round in 0..40 {
            let start: u64 = rng.u64(0..200_000);
            let mut small = NackRegister::new(None);
            let mut full = NackRegister::with_min_len(None, super::BUFFER_SIZE as usize);
            let mut now = Instant::now();
            let mut next = start;
            let loss = [0u32, 1, 5, 30][round % 4];
            let rtt = [None, Some(Duration::from_millis(40))][round % 2];
            for step in 0..3000 {
                let seq = match rng.u32(0..1000) {
                    0..=2 => next + rng.u64(0..1500),
                    3..=40 => next.saturating_sub(rng.u64(1..600)),
                    _ => next,
                };
                if seq >= next {
                    next = seq + 1;
                }
                if rng.u32(0..100) >= loss {
                    let (a, b) = (small.update(seq.into()), full.update(seq.into()));
                    assert_eq!(a, b, "update({seq}) round {round} step {step}");
                }
                let probe: SeqNo = next.saturating_sub(rng.u64(0..700)).into();
                assert_eq!(small.accepts(probe), full.accepts(probe));
                assert_eq!(small.max_seq(), full.max_seq());
                assert_eq!(small.active, full.active);
                assert_eq!(small.has_pending_nacks(), full.has_pending_nacks());
                now += Duration::from_millis(rng.u64(0..8));
                if step % 7 == 0 {
                    assert_eq!(
                        nack_entries(&mut small, now, rtt),
                        nack_entries(&mut full, now, rtt),
                        "round {round} step {step}"
                    );
                }
                let to = next.into();
                let from = next.saturating_sub(300).into();
                assert_eq!(
                    small.recovery_deadline(from..to, now, rtt),
                    full.recovery_deadline(from..to, now, rtt)
                );
                lens.insert(small.packets.len());
                assert_eq!(full.packets.len(), super::BUFFER_SIZE as usize);
            }
        }
        // Every length was used, so every resize was compared.
        assert_eq!(
            lens.into_iter().collect::<Vec<_>>(),
            [64, 128, 256, super::BUFFER_SIZE as usize]
        );
    }

    #[test]
    fn a_register_keeps_a_short_buffer_while_losses_are_repaired() {
        let mut reg = NackRegister::new(None);
        for seq in 0..1000u64 {
            // Every tenth packet comes three packets late (repaired).
            if seq % 10 != 0 {
                reg.update(seq.into());
            }
            if seq % 10 == 3 {
                reg.update((seq - 3).into());
            }
        }
        assert_eq!(reg.packets.len(), MIN_BUFFER);
        // A loss never repaired holds the window open until it is
        // `MAX_MISORDER` behind: the buffer grows to hold it, and shrinks
        // back once the window is short again.
        reg.update(1001.into());
        for seq in 1002..1300u64 {
            reg.update(seq.into());
        }
        assert_eq!(reg.packets.len(), super::BUFFER_SIZE as usize);
        for seq in 1300..1600u64 {
            reg.update(seq.into());
        }
        assert_eq!(reg.packets.len(), MIN_BUFFER);
        assert_not_dirty(&reg);
    }

    #[test]
    fn a_packet_status_is_4_bytes() {
        assert_eq!(std::mem::size_of::<super::PacketStatus>(), 4);
    }

    /// `t` rounded up to the register's tick after `base`.
    fn tick_up(base: Instant, t: Instant) -> Instant {
        let tick = u128::from(super::TICK_NS);
        let ns = (t - base).as_nanos().div_ceil(tick) * tick;
        base + Duration::from_nanos(ns as u64)
    }

    #[test]
    fn a_packet_status_keeps_its_count_and_time_apart_and_saturates_the_time() {
        use super::PacketStatus;
        let base = Instant::now();
        let mut p = PacketStatus::default();
        for n in 1..=super::MAX_NACKS {
            let at = base + Duration::from_nanos(u64::from(n) * 1_000_000_007);
            p.mark_nacked(at, base);
            assert_eq!(p.nack_count(), n);
            assert!(!p.received());
            let kept = p.last_nack_at(Some(base)).expect("nacked");
            assert_eq!(kept, tick_up(base, at));
            assert!(kept >= at && kept - at < Duration::from_micros(100));
        }
        assert!(!p.needs_nack());
        // Past 2^28 ticks (7.4 hours) the time stops at its largest; the
        // count is untouched.
        let mut far = PacketStatus::default();
        far.mark_nacked(base + Duration::from_secs(8 * 3600), base);
        assert_eq!(far.nack_count(), 1);
        assert_eq!(
            far.last_nack_at(Some(base)),
            Some(base + Duration::from_nanos(u64::from(super::TIME_MASK - 1) * super::TICK_NS))
        );
        assert!(p.mark_received());
        assert!(p.received());
        assert_eq!(p.nack_count(), 0);
        assert_eq!(p.last_nack_at(Some(base)), None);
        assert!(!p.mark_received());
    }

    #[test]
    fn nack_retries_never_fall_due_early_and_at_most_a_tick_late() {
        let mut reg = NackRegister::new(None);
        let t0 = Instant::now();
        reg.update(10.into());
        reg.update(12.into());
        assert_eq!(
            nack_entries(&mut reg, t0, None),
            [NackEntry { pid: 11, blp: 0 }]
        );
        reg.update(11.into());
        reg.update(14.into());
        let t1 = t0 + Duration::from_nanos(1_800_000_000_007);
        assert_eq!(
            nack_entries(&mut reg, t1, None),
            [NackEntry { pid: 13, blp: 0 }]
        );
        assert_eq!(reg.base, Some(t0));
        assert_eq!(
            reg.packet(13.into()).last_nack_at(reg.base),
            Some(tick_up(t0, t1))
        );
        // 13's retry falls due 105 ms after its NACK: never before, and
        // within the 100 µs tick after.
        let due = t1 + Duration::from_millis(105);
        assert!(nack_entries(&mut reg, due - Duration::from_nanos(1), None).is_empty());
        assert!(nack_entries(&mut reg, due + Duration::from_micros(99), None).is_empty());
        assert_eq!(
            nack_entries(&mut reg, due + Duration::from_micros(100), None),
            [NackEntry { pid: 13, blp: 0 }]
        );
    }

    #[test]
    fn the_register_moves_its_base_forward_and_keeps_retries_spaced() {
        let mut reg = NackRegister::new(None);
        let t0 = Instant::now();
        reg.update(10.into());
        reg.update(12.into());
        assert_eq!(
            nack_entries(&mut reg, t0, None),
            [NackEntry { pid: 11, blp: 0 }]
        );
        // Eight hours on (past the 7.4 that 28 bits of ticks hold from t0),
        // 11 is still missing: the base moves, and its old NACK reads as
        // long past, so the retry is due at once. Without the move, the time
        // marked now would stop at 7.4 hours and the next retry fall due at
        // once instead of after its interval.
        let t1 = t0 + Duration::from_secs(8 * 3600);
        assert_eq!(
            nack_entries(&mut reg, t1, None),
            [NackEntry { pid: 11, blp: 0 }]
        );
        assert_eq!(reg.base, Some(t1 - super::REBASE_KEEP));
        assert_eq!(reg.packet(11.into()).last_nack_at(reg.base), Some(t1));
        // The next retry waits its interval from t1, as it would have
        // without the move.
        let due = t1 + Duration::from_millis(105);
        assert!(nack_entries(&mut reg, due - Duration::from_nanos(1), None).is_empty());
        assert_eq!(
            nack_entries(&mut reg, due, None),
            [NackEntry { pid: 11, blp: 0 }]
        );
    }

    #[test]
    fn nack_new_losses_and_retries_have_independent_deadlines() {
        let mut reg = NackRegister::new(None);
        let now = Instant::now();
        reg.update(10.into());
        reg.update(12.into());
        assert_eq!(
            nack_entries(&mut reg, now, None),
            [NackEntry { pid: 11, blp: 0 }]
        );

        reg.update(14.into());
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(30), None),
            [NackEntry { pid: 13, blp: 0 }]
        );
        assert_eq!(reg.packet(11.into()).last_nack_at(reg.base), Some(now));

        reg.update(16.into());
        // 11 is due again and 15 is new, but 13 must not be included in the bitmask yet.
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(105), None),
            [NackEntry {
                pid: 11,
                blp: 0b1000
            }]
        );
        assert_eq!(reg.packet(13.into()).nack_count(), 1);
        assert_eq!(
            reg.packet(13.into()).last_nack_at(reg.base),
            Some(now + Duration::from_millis(30))
        );
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(135), None),
            [NackEntry { pid: 13, blp: 0 }]
        );
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(210), None),
            [NackEntry {
                pid: 11,
                blp: 0b1000
            }]
        );
        assert_eq!(reg.packet(11.into()).nack_count(), 3);
        assert_eq!(reg.packet(15.into()).nack_count(), 2);
    }

    #[test]
    fn nack_retry_uses_updated_rtt() {
        let mut reg = NackRegister::new(None);
        reg.update(10.into());
        reg.update(12.into());
        let now = Instant::now();
        assert_eq!(nack_entries(&mut reg, now, None).len(), 1);
        assert_eq!(
            nack_entries(
                &mut reg,
                now + Duration::from_millis(50),
                Some(Duration::from_millis(20))
            )
            .len(),
            1
        );
        let rtt = Some(Duration::from_millis(200));
        assert!(nack_entries(&mut reg, now + Duration::from_millis(254), rtt).is_empty());
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(255), rtt).len(),
            1
        );
    }

    #[test]
    fn nack_repair_clears_only_recovered_packet_state() {
        let mut reg = NackRegister::new(None);
        reg.update(10.into());
        reg.update(14.into());
        let now = Instant::now();
        assert_eq!(
            nack_entries(&mut reg, now, None),
            [NackEntry { pid: 11, blp: 3 }]
        );
        reg.update(12.into());
        let packet = reg.packet(12.into());
        assert!(packet.received());
        assert_eq!(packet.nack_count(), 0);
        assert_eq!(packet.last_nack_at(reg.base), None);
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(105), None),
            [NackEntry { pid: 11, blp: 0b10 }]
        );
    }

    #[test]
    fn nack_window_reuse_clears_retry_state() {
        let mut reg = NackRegister::new(None);
        reg.update(10.into());
        reg.update(12.into());
        let now = Instant::now();
        assert_eq!(nack_entries(&mut reg, now, None).len(), 1);
        for seq in 13..112 {
            reg.update(seq.into());
        }
        reg.update(113.into());
        assert_eq!(reg.as_index(11.into()), reg.as_index(112.into()));
        assert_eq!(reg.packet(112.into()).nack_count(), 0);
        assert_eq!(reg.packet(112.into()).last_nack_at(reg.base), None);
        assert_eq!(
            nack_entries(&mut reg, now, None),
            [NackEntry { pid: 112, blp: 0 }]
        );
        assert_not_dirty(&reg);
    }

    #[test]
    fn nack_retry_timing_across_sequence_rollover() {
        let mut reg = NackRegister::new(None);
        reg.update(65_534.into());
        reg.update(65_538.into());
        let now = Instant::now();
        assert_eq!(
            nack_entries(&mut reg, now, None),
            [NackEntry {
                pid: 65_535,
                blp: 3
            }]
        );
        reg.update(65_536.into());
        assert!(nack_entries(&mut reg, now + Duration::from_millis(104), None).is_empty());
        assert_eq!(
            nack_entries(&mut reg, now + Duration::from_millis(105), None),
            [NackEntry {
                pid: 65_535,
                blp: 0b10
            }]
        );
    }

    fn assert_update(
        reg: &mut NackRegister,
        seq: u64,
        expect_new: bool,
        expect_received: bool,
        expect_active: Range<u64>,
    ) {
        assert_eq!(
            reg.update(seq.into()),
            expect_new,
            "seq {} was expected to{} be new",
            seq,
            if expect_new { "" } else { " NOT" }
        );
        let active = reg.active.clone().expect("nack range");
        assert_eq!(
            reg.packet_mut(seq.into()).received(),
            expect_received,
            "seq {} expected to{} be received in {:?}",
            seq,
            if expect_received { "" } else { " NOT" },
            active
        );
        assert_eq!(active, expect_active.start.into()..expect_active.end.into());
        assert_not_dirty(reg);
    }

    fn assert_not_dirty(reg: &NackRegister) {
        // we should leave no dirty state outside of the nack window
        let active = reg.active.clone().expect("nack range");
        let active = (*active.start..=*active.end)
            .map(|seq| reg.as_index(seq.into()))
            .collect::<Vec<_>>();

        for i in 0..reg.packets.len() {
            if active.contains(&i) {
                continue;
            }
            assert!(
                !reg.packets[i].received()
                    && reg.packets[i].nack_count() == 0
                    && reg.packets[i].last_nack_at(reg.base).is_none(),
                "dirty state at index {} outside of nack window {:?}",
                i,
                active,
            );
        }
    }

    #[test]
    fn active_window_sliding() {
        let mut reg = NackRegister::new(None);

        assert!(reg.accepts(10.into()));
        assert_update(&mut reg, 10, true, true, 10..10);

        // packet before window start is ignored
        assert!(!reg.accepts(9.into()));
        assert_update(&mut reg, 9, false, false, 10..10);

        // duped packet
        assert!(!reg.accepts(10.into()));
        assert_update(&mut reg, 10, false, true, 10..10);

        // future packets accepted, window not sliding
        let next = 10 + MAX_MISORDER;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, true, 11..next);
        let next = 11 + MAX_MISORDER;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, true, 11..next);

        // future packet accepted, sliding window
        let next = 12 + MAX_MISORDER;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, true, 12..next);

        // older packet received within window
        let next = 13;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, true, 12..(12 + MAX_MISORDER));

        // do not want the same packet again
        assert!(!reg.accepts(next.into()));

        // future packet accepted, sliding window start skips over received
        let next = 13 + MAX_MISORDER;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, true, 14..next);

        // do not want the same packet again
        assert!(!reg.accepts(next.into()));

        // older packet accepted, window star moves ahead
        let next = 14;
        assert!(reg.accepts(next.into()));
        assert_update(&mut reg, next, true, false, 15..(13 + MAX_MISORDER));
    }

    #[test]
    fn nack_report_none() {
        let mut reg = NackRegister::new(None);
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(110.into());
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(111.into());
        assert!(reg.nack_reports(Instant::now(), None).is_none());
    }

    #[test]
    fn nack_test_huge_seq_gap_no_hang() {
        let mut reg = NackRegister::new(None);

        reg.update(0.into());
        reg.update(18446744073709551515.into());
    }

    #[test]
    fn nack_report_one() {
        let mut reg = NackRegister::new(None);
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(110.into());
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(112.into());
        let report = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert!(report.len() == 1);
        assert_eq!(report[0].reports.len(), 1);
        assert_eq!(report[0].reports[0].pid, 111);
        assert_eq!(report[0].reports[0].blp, 0);
    }

    #[test]
    fn nack_report_two() {
        let mut reg = NackRegister::new(None);
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(110.into());
        assert!(reg.nack_reports(Instant::now(), None).is_none());

        reg.update(113.into());
        let report = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert!(report.len() == 1);
        assert_eq!(report[0].reports.len(), 1);
        assert_eq!(report[0].reports[0].pid, 111);
        assert_eq!(report[0].reports[0].blp, 0b1);
    }

    #[test]
    fn nack_report_with_hole() {
        let mut reg = NackRegister::new(None);

        for i in &[100, 101, 103, 105, 106, 107, 108, 109, 110] {
            reg.update((*i).into());
        }

        let report = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert!(report.len() == 1);
        assert_eq!(report[0].reports.len(), 1);
        assert_eq!(report[0].reports[0].pid, 102);
        assert_eq!(report[0].reports[0].blp, 0b10);
    }

    #[test]
    fn nack_report_stop_at_17() {
        let mut reg = NackRegister::new(None);

        let seq = &[
            100, 101, 103, 104, 105, 106, 107, 108, 109, 110, //
            111, 112, 113, 114, 115, 116, 117, 118, 119, 120, //
            121, 122, 123, 125,
        ];

        for i in seq {
            reg.update((*i).into());
        }

        let report = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].reports.len(), 2);
        assert_eq!(report[0].reports[0].pid, 102);
        assert_eq!(report[0].reports[0].blp, 0);
    }

    #[test]
    fn nack_report_hole_at_17() {
        let mut reg = NackRegister::new(None);

        let seq = &[
            100, 101, 103, 104, 105, 106, 107, 108, 109, 110, //
            111, 112, 113, 114, 115, 116, 117, 119, 120, 121, //
            122, 123, 124, 125, 126, 127, 128, 129,
        ];

        for i in seq {
            reg.update((*i).into());
        }

        let report = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].reports.len(), 1);
        assert_eq!(report[0].reports[0].pid, 102);
        assert_eq!(report[0].reports[0].blp, 0b1000_0000_0000_0000);
    }

    #[test]
    fn nack_report_no_stop_all_there() {
        let mut reg = NackRegister::new(None);

        let seq = &[
            100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, //
            111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, //
            122, 123, 124, 125, 126, 127, 128, 129,
        ];

        for i in seq {
            reg.update((*i).into());
        }

        assert!(reg.nack_reports(Instant::now(), None).is_none());
    }

    #[test]
    fn nack_report_rtx() {
        let mut reg = NackRegister::new(None);
        for i in &[
            100, 101, 102, 103, 104, 105, //
        ] {
            reg.update((*i).into());
        }
        assert!(reg.nack_reports(Instant::now(), None).is_none());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 105);

        for i in &[
            106, 108, 109, 110, 111, 112, 113, 114, 115, //
        ] {
            reg.update((*i).into());
        }
        assert!(reg.nack_reports(Instant::now(), None).is_some());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 107);

        reg.update(107.into()); // Got 107 via RTX

        let nacks = reg.nack_reports(Instant::now(), None).map(Vec::from_iter);
        assert!(
            nacks.is_none(),
            "Expected no NACKs to be generated after repairing the stream, got {nacks:?}"
        );
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 115);
    }

    #[test]
    fn nack_report_rollover_rtx() {
        // This test is checking that after rollover nacks are not skipped because of
        // packet position that would remain marked as received from before the rollover
        let mut reg = NackRegister::new(None);
        for i in &[
            100, 101, 102, 103, 104, 105, 106, 108, 109, 110, 111, 112, 113, 114, 115,
        ] {
            reg.update((*i).into());
        }

        reg.update(107.into()); // Got 107 via RTX
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 115);

        for i in 116..3106 {
            reg.update(i.into());
        }
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 3105);

        for i in &[3106, 3108, 3109, 3110, 3111, 3112, 3113, 3114, 3115] {
            reg.update((*i).into()); // Missing at postion 107 again
        }

        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 3107);
    }

    #[test]
    fn nack_report_rollover_rtx_with_seq_jump() {
        let mut reg = NackRegister::new(None);

        // 2999 is missing
        for i in 0..2999 {
            reg.update(i.into());
        }

        // 3002 is missing
        reg.update(3003.into());
        reg.update(3004.into());
        reg.update(3000.into());
        reg.update(3001.into());

        let reports = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].reports[0].pid, 2999);
        assert_eq!(reports[0].reports[0].blp, 4);
    }

    #[test]
    fn out_of_order_and_rollover() {
        let mut reg = NackRegister::new(None);

        reg.update(2998.into());
        reg.update(2999.into());

        // receive older packet
        reg.update(2995.into());

        // wrap
        for i in 3000..5995 {
            reg.update(i.into());
        }

        // 5995 is missing

        reg.update(5996.into());
        reg.update(5997.into());

        let reports = reg
            .nack_reports(Instant::now(), None)
            .map(Vec::from_iter)
            .expect("some report");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].reports[0].pid, 5995);
    }

    #[test]
    fn nack_check_on_seq_rollover() {
        let range = 65530..65541;
        let missing = [65535_u64, 65536_u64, 65537_u64];
        let expected = [65535_u16, 0_u16, 1_u16];

        for (missing, expected) in missing.iter().zip(expected.iter()) {
            let mut seqs: Vec<_> = range.clone().collect();
            let mut reg = NackRegister::new(None);

            seqs.retain(|x| *x != *missing);
            for i in seqs.as_slice() {
                reg.update((*i).into());
            }

            let reports = reg
                .nack_reports(Instant::now(), None)
                .map(Vec::from_iter)
                .expect("some report");
            let pid = reports[0].reports[0].pid;
            assert_eq!(pid, *expected);
        }
    }

    #[test]
    fn nack_check_forward_at_boundary() {
        let mut reg = NackRegister::new(None);
        for i in 2996..=3003 {
            reg.update(i.into());
        }

        assert!(reg.nack_reports(Instant::now(), None).is_none());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 3003);

        for i in 3004..=3008 {
            reg.update(i.into());
        }

        let report = reg.nack_reports(Instant::now(), None).map(Vec::from_iter);
        assert!(report.is_none(), "Expected empty NACKs got {:?}", report);
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 3008);
    }

    #[test]
    fn nack_check_forward_at_u16_boundary() {
        let mut reg = NackRegister::new(None);
        for i in 65500..=65534 {
            reg.update(i.into());
        }
        assert!(reg.nack_reports(Instant::now(), None).is_none());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 65534);

        for i in 65536..=65566 {
            reg.update(i.into());
        }

        assert!(reg.nack_reports(Instant::now(), None).is_some());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 65535);

        for i in 65567..=65666 {
            reg.update(i.into());
        }

        reg.update(65535.into());

        assert!(reg.nack_reports(Instant::now(), None).is_none());
        let active = reg.active.clone().expect("nack range");
        assert_eq!(*active.start, 65666);
    }

    #[test]
    fn nack_reports_on_boundaries() {
        let mut reg = NackRegister::new(None);

        for i in 0..=20 {
            // gap must be at least 17 packets to separate the reports.
            if i == 2 || i == 19 {
                continue;
            }
            reg.update(i.into());
        }

        let reports: Vec<_> = reg
            .nack_reports(Instant::now(), None)
            .expect("should generate reports")
            .flat_map(|nack| nack.reports)
            .collect();

        assert_eq!(reports.len(), 2, "Should have found two NACK entries");
        assert_eq!(reports[0].pid, 2, "First missing packet should be 2");
        assert_eq!(
            reports[0].blp, 0,
            "No missing packets in blp bits following 2"
        );
        assert_eq!(reports[1].pid, 19, "Second missing packet should be 19");
        assert_eq!(
            reports[1].blp, 0,
            "No missing packets in blp bits following 19"
        );
    }
}
