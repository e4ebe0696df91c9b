//! Loss repair towards receivers from one copy per forwarded packet.
//!
//! A video source forwarded to seventy receivers used to leave seventy
//! copies of each packet behind, one in each receiver's str0m RTX cache.
//! Now the source keeps one ([`SourceCache`]: the payload and its
//! wallclock) and each receive slot keeps a small map from
//! the sequence numbers it sent to what they were (`sent_map.rs`: which
//! source and cached packet, and the numbers the slot's rewriter gave it).
//! A receiver's NACK is answered from the two (`Core::on_nack`, resent with
//! str0m's `resend_rtp_now` on the slot's RTX stream). The map is the
//! slot's own, so it answers across layer switches (the cache holds every
//! layer of the source) and source switches (it remembers the last few
//! sources the slot carried).
//!
//! A copy's payload is let go before the window ends once every receiver
//! it went to has reported it received in its TWCC feedback
//! (`Core::confirm_delivered`): a receiver asks again only for what it did
//! not get. A meeting participant's second of forwarded 360p was ~80 KB
//! held for the window, most of its memory; confirmed, a packet nobody lost
//! is held for a feedback interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::NackRequest;
use str0m::rtp::{ExtensionValues, RtpWrite, SendNowError, SeqNo, TwccFate, Vp8Descriptor};

use super::{Core, EGRESS_BUF, EndpointId, transmit_sealed};

impl Core {
    /// A receiver lost packets on one of its video slots: resend each from
    /// its source's copy, as the slot sent it, on the slot's RTX stream.
    pub(super) fn on_nack(&mut self, now: Instant, id: EndpointId, nack: NackRequest) {
        let age = self.cfg.rtx_cache_age;
        let Some(slot) = self
            .endpoints
            .get(&id)
            .and_then(|ep| ep.slots.iter().find(|s| s.mid == nack.mid))
        else {
            return;
        };
        let asked: Vec<_> = nack
            .seq_nos
            .iter()
            .map(|seq| slot.sent.lookup(now, **seq as u16, age))
            .collect();
        for found in asked {
            self.stats.repairs_asked += 1;
            let Some((source, sent)) = found else {
                self.stats.repairs_expired += 1;
                continue;
            };
            if sent.confirmed {
                // Its feedback reported it received: a NACK that crossed it.
                self.stats.repairs_unneeded += 1;
                continue;
            }
            let Some(cached) = self
                .source_of(source)
                .and_then(|s| s.repair.get(sent.index))
                .cloned()
            else {
                self.stats.repairs_expired += 1;
                continue;
            };
            let Some(payload) = cached.payload else {
                // Every receiver it went to reported it received (this one's
                // entry was written over meanwhile): not needed either.
                self.stats.repairs_unneeded += 1;
                continue;
            };
            let mut w = RtpWrite::new(
                sent.pt,
                SeqNo::from(u64::from(sent.seq)),
                sent.ts,
                cached.wallclock,
                payload.clone(),
            )
            .marker(sent.marker)
            .ext_vals(ExtensionValues::default())
            .nackable(true);
            // The picture numbers as the slot's rewriter gave them.
            if (sent.pid.is_some() || sent.tl0.is_some())
                && let Ok(d) = Vp8Descriptor::parse(&payload)
            {
                let mut b = d.patch();
                if let Some(pid) = sent.pid {
                    b = b.picture_id(pid);
                }
                if let Some(tl0) = sent.tl0 {
                    b = b.tl0_pic_idx(tl0);
                }
                if let Ok(patch) = b.build() {
                    w = w.vp8_patch(patch);
                }
            }
            let Some(sub) = self.endpoints.get_mut(&id) else {
                return;
            };
            let mut buf = self
                .egress_pool
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(EGRESS_BUF));
            let to = match sub
                .rtc
                .direct_api()
                .resend_rtp_now(now, nack.ssrc, w, &mut buf)
            {
                Ok(to) => to,
                Err(e) => {
                    self.egress_pool.push(buf);
                    if e == SendNowError::ResendCapped {
                        self.stats.repairs_capped += 1;
                    } else {
                        self.stats.repairs_expired += 1;
                    }
                    continue;
                }
            };
            let (out, stats, pool) = (&mut self.out, &mut self.stats, &mut self.egress_pool);
            if !transmit_sealed(out, stats, pool, &sub.addrs, &to, buf) {
                continue;
            }
            self.stats.repairs_sent += 1;
            if !sub.needs_drive {
                sub.needs_drive = true;
                self.to_drive.push(id);
            }
        }
    }

    /// After a receiver's input (its TWCC feedback among it): each copy it
    /// was sent that its feedback reported received no longer needs keeping
    /// for it, and a source's packet every receiver has confirmed gives its
    /// payload back ([`SourceCache::confirm`]). Feedback comes every 50-100
    /// ms, so a packet nobody lost is held that long, not the whole repair
    /// window. What was reported lost, or pushed out of the receiver's TWCC
    /// history unreported, stays for the window: it may still be asked for.
    pub(super) fn confirm_delivered(&mut self, id: EndpointId) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        if ep.awaiting.is_empty() {
            return;
        }
        let mut confirmed = std::mem::take(&mut self.confirmed);
        let mut api = ep.rtc.direct_api();
        while let Some(a) = ep.awaiting.front() {
            match api.twcc_fate(a.twcc) {
                TwccFate::Unreported => break,
                TwccFate::Received => {
                    ep.confirms = true;
                    // Nor will its slot be asked for it: the map's entry is
                    // free for a later packet instead of growing the map.
                    if let Some(source) = ep
                        .slots
                        .get_mut(usize::from(a.slot))
                        .and_then(|slot| slot.sent.release(a.seq, a.index))
                    {
                        confirmed.push((source, a.index));
                    }
                }
                TwccFate::Lost => ep.confirms = true,
                TwccFate::Forgotten => {}
            }
            ep.awaiting.pop_front();
        }
        for &(source, index) in &confirmed {
            if let Some(src) = self.source_of_mut(source)
                && src.repair.confirm(index)
            {
                self.stats.repair_copies_released += 1;
            }
        }
        confirmed.clear();
        self.confirmed = confirmed;
    }
}

/// A copy sent to a receiver that its TWCC feedback has not covered yet:
/// the transport-wide sequence number str0m gave it, and where its slot's
/// map has it (which names the source). 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Awaiting {
    pub(super) twcc: u64,
    /// The packet's index in its source's cache (low 32 bits).
    pub(super) index: u32,
    /// The sequence number the slot sent it under, and the slot's position
    /// among the receiver's.
    pub(super) seq: u16,
    pub(super) slot: u8,
}

/// Copies a receiver keeps awaiting its feedback once its feedback has
/// confirmed any: a quarter second of a 1080p screen share and nine
/// thumbnails (~1,000 packets/s) on a 150 ms round trip plus a 100 ms
/// feedback interval. Past it, what it is sent is kept for the window
/// ([`UNCONFIRMABLE`]) until its feedback catches up.
pub(super) const AWAITING_MAX: usize = 256;

/// ... and before: a receiver that negotiated TWCC and never reports
/// (the load tool's counting receivers, or one misbehaving) holds no more
/// than this, 512 bytes. A browser's first report comes within ~100 ms;
/// until then, the copies past this many are kept for the window.
pub(super) const AWAITING_PROBATION: usize = 32;

/// `Cached::unconfirmed` for a packet sent to a receiver that cannot confirm
/// it (no TWCC negotiated, or its list was full): kept for the window.
pub(super) const UNCONFIRMABLE: u16 = u16::MAX;

/// A source's repair cache holds up to this many receive slots' worth of
/// packets (`rtx_cache_packets` each): it keeps every layer some receiver
/// is sent, a slot one.
pub(super) const SOURCE_CACHE_SLOTS: usize = 4;

/// A source's forwarded video packet, kept for repairs: 40 bytes and the
/// shared payload, which goes once every receiver confirmed the packet. No
/// header extensions: ingest keeps none for video (only
/// audio's level and voice activity), so a copy was sent with none, and
/// str0m writes its own (transport-wide sequence, mid) on the resend. With
/// str0m's `ExtensionValues` inline (192 bytes) an entry was 240, the largest
/// part of a meeting participant's repair window.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    /// `None` once every receiver it was sent to reported it received.
    pub(super) payload: Option<Arc<[u8]>>,
    pub(super) wallclock: Instant,
    /// When it was kept, in µs after `wallclock` (its arrival: the fan-out
    /// that keeps it runs a moment later), saturating at ~71 minutes. A
    /// second `Instant` made an entry 56 bytes.
    kept_after_us: u32,
    /// Receivers it was sent to that have not reported it received yet
    /// (`Core::confirm_delivered`), or `UNCONFIRMABLE`.
    pub(super) unconfirmed: u16,
}

impl Cached {
    pub(super) fn new(
        at: Instant,
        payload: Arc<[u8]>,
        wallclock: Instant,
        unconfirmed: u16,
    ) -> Self {
        let after = at.saturating_duration_since(wallclock).as_micros();
        Cached {
            payload: Some(payload),
            wallclock,
            kept_after_us: u32::try_from(after).unwrap_or(u32::MAX),
            unconfirmed,
        }
    }

    /// When it was kept (the repair window counts from there).
    fn at(&self) -> Instant {
        self.wallclock + Duration::from_micros(u64::from(self.kept_after_us))
    }
}

/// One copy of each video packet a source forwarded, for as long as
/// receivers may ask for it again. Indexes count the source's packets.
#[derive(Debug, Default)]
pub(super) struct SourceCache {
    packets: VecDeque<Cached>,
    /// Index of `packets[0]`.
    first: u64,
    /// Payload bytes held.
    held: usize,
}

impl SourceCache {
    /// Keep `packet`, forgetting what is older than `age` or beyond `max`;
    /// returns its index.
    pub(super) fn push(&mut self, packet: Cached, age: Duration, max: usize) -> u64 {
        let now = packet.at();
        while let Some(old) = self.packets.front()
            && (self.packets.len() >= max || now.saturating_duration_since(old.at()) > age)
        {
            if let Some(gone) = self.packets.pop_front().and_then(|c| c.payload) {
                self.held -= gone.len();
            }
            self.first += 1;
        }
        self.held += packet.payload.as_ref().map_or(0, |p| p.len());
        self.packets.push_back(packet);
        self.first + self.packets.len() as u64 - 1
    }

    /// The index the next packet pushed will get.
    pub(super) fn next_index(&self) -> u64 {
        self.first + self.packets.len() as u64
    }

    /// Keep a video packet the fan-out sent to at least one slot, once,
    /// under the `index` those slots recorded (`next_index` before the
    /// fan-out, which pushes nothing meanwhile). What no receiver was sent
    /// is never asked for again; keeping every layer of every source was
    /// most of a meeting's memory.
    pub(super) fn keep_sent(&mut self, packet: Cached, index: u64, age: Duration, max: usize) {
        let kept = self.push(packet, age, max);
        debug_assert_eq!(kept, index);
    }

    /// The packet under the index whose low 32 bits are `low`: the one
    /// nearest below the next index (the cache's few thousand are there).
    pub(super) fn get(&self, low: u32) -> Option<&Cached> {
        self.packets.get(self.position(low)?)
    }

    fn position(&self, low: u32) -> Option<usize> {
        let next = self.next_index();
        let mut index = (next & !u64::from(u32::MAX)) | u64::from(low);
        if index >= next {
            index = index.checked_sub(1 << 32)?;
        }
        usize::try_from(index.checked_sub(self.first)?).ok()
    }

    /// One receiver reported the packet under `low` received; true if that
    /// was the last and its payload is let go (the entry stays, so a late
    /// NACK for it is told apart from one for a packet too old).
    pub(super) fn confirm(&mut self, low: u32) -> bool {
        let Some(c) = self.position(low).and_then(|i| self.packets.get_mut(i)) else {
            return false;
        };
        if c.unconfirmed == UNCONFIRMABLE || c.unconfirmed == 0 {
            return false;
        }
        c.unconfirmed -= 1;
        if c.unconfirmed > 0 {
            return false;
        }
        let Some(gone) = c.payload.take() else {
            return false;
        };
        self.held -= gone.len();
        true
    }

    /// Payload bytes held.
    pub(super) fn payload_bytes(&self) -> usize {
        self.held
    }

    /// Packets in the window, and how many of them still hold a payload.
    pub(super) fn counts(&self) -> (usize, usize) {
        let held = self.packets.iter().filter(|c| c.payload.is_some()).count();
        (self.packets.len(), held)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.packets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(1);

    fn cached(at: Instant, byte: u8) -> Cached {
        Cached::new(at, Arc::from(vec![byte; 10]), at, 2)
    }

    #[test]
    fn a_source_cache_finds_a_packet_by_its_index_low_bits_across_their_wrap() {
        let t0 = Instant::now();
        let mut cache = SourceCache {
            first: (1 << 32) - 3,
            ..Default::default()
        };
        for i in 0..6u8 {
            cache.push(cached(t0, i), AGE, 100);
        }
        // Indexes 2^32 - 3 ..= 2^32 + 2; their low bits wrap past zero.
        for (low, byte) in [(u32::MAX - 2, 0), (u32::MAX, 2), (0, 3), (2, 5)] {
            assert_eq!(
                cache
                    .get(low)
                    .map(|c| c.payload.as_ref().map_or(0, |p| p[0])),
                Some(byte)
            );
        }
        // The next index, and one far behind, are not there.
        assert!(cache.get(3).is_none());
        assert!(cache.get(u32::MAX - 3).is_none());
    }

    #[test]
    fn a_payload_goes_when_every_receiver_confirmed_it_and_not_before() {
        let t0 = Instant::now();
        let mut cache = SourceCache::default();
        // Two receivers each (`cached`), then one that cannot confirm.
        for i in 0..3u8 {
            let index = cache.next_index();
            let mut c = cached(t0, i);
            if i == 2 {
                c.unconfirmed = UNCONFIRMABLE;
            }
            cache.keep_sent(c, index, AGE, 100);
        }
        assert_eq!(cache.payload_bytes(), 30);
        assert!(!cache.confirm(0), "one of two");
        assert!(cache.get(0).and_then(|c| c.payload.as_ref()).is_some());
        assert!(cache.confirm(0), "both");
        assert!(cache.get(0).is_some_and(|c| c.payload.is_none()));
        assert_eq!(cache.payload_bytes(), 20);
        assert!(!cache.confirm(0), "a third confirmation changes nothing");
        for _ in 0..5 {
            assert!(!cache.confirm(2), "kept for the window");
        }
        assert!(!cache.confirm(7), "never kept");
        assert_eq!(cache.payload_bytes(), 20);
        // Ageing out what is still held keeps the count right.
        let index = cache.next_index();
        cache.keep_sent(cached(t0 + AGE * 2, 9), index, AGE, 100);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.payload_bytes(), 10);
    }

    #[test]
    fn a_copy_awaiting_feedback_is_16_bytes() {
        // A receiver holds a feedback interval's worth, or
        // `AWAITING_PROBATION` if it never reports.
        assert_eq!(std::mem::size_of::<Awaiting>(), 16);
    }

    #[test]
    fn a_cached_packet_is_40_bytes_beside_its_payload() {
        // A meeting participant's second of repairs is a few hundred of
        // these per source (56 with the time kept as an `Instant`).
        assert_eq!(std::mem::size_of::<Cached>(), 40);
    }

    #[test]
    fn a_cached_packet_ages_from_when_it_was_kept_not_from_its_arrival() {
        // A packet that waited in the shard's input (arrived 300 ms before
        // the fan-out kept it) still gets its whole window.
        let t0 = Instant::now();
        let mut cache = SourceCache::default();
        let late = Cached::new(
            t0 + Duration::from_millis(300),
            Arc::from(vec![1u8; 10]),
            t0,
            1,
        );
        assert_eq!(late.at(), t0 + Duration::from_millis(300));
        cache.push(late, AGE, 100);
        cache.push(cached(t0 + Duration::from_millis(1200), 2), AGE, 100);
        assert_eq!(cache.len(), 2);
        cache.push(cached(t0 + Duration::from_millis(1301), 3), AGE, 100);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_source_cache_keeps_its_window_and_bound_and_finds_by_index() {
        let t0 = Instant::now();
        let mut cache = SourceCache::default();
        let mut indexes = Vec::new();
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i * 20);
            indexes.push(cache.push(cached(at, i as u8), AGE, 1000));
        }
        assert_eq!(indexes, (0..100).collect::<Vec<_>>());
        // 1 s at 20 ms: 51 packets (the oldest exactly 1 s old).
        assert_eq!(cache.len(), 51);
        assert!(cache.get(48).is_none());
        assert_eq!(
            cache
                .get(49)
                .map(|c| c.payload.as_ref().map_or(0, |p| p[0])),
            Some(49)
        );
        assert_eq!(
            cache
                .get(99)
                .map(|c| c.payload.as_ref().map_or(0, |p| p[0])),
            Some(99)
        );
        assert!(cache.get(100).is_none());
        for i in 100..120u64 {
            cache.push(cached(t0 + Duration::from_secs(2), i as u8), AGE, 10);
        }
        assert_eq!(cache.len(), 10);
        assert_eq!(
            cache
                .get(110)
                .map(|c| c.payload.as_ref().map_or(0, |p| p[0])),
            Some(110)
        );
        assert!(cache.get(109).is_none());
    }
}
