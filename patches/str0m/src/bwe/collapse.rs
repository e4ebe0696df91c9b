//! A collapse of the path's capacity, read from how the bottleneck spreads
//! packets (a Tern patch, patches/README.md).
//!
//! When a link falls to a fraction of the rate being sent, the delay trend
//! needs a window of arrival groups to turn, and at a few hundred kbit/s a
//! TWCC report carries only a handful of packets: the first overuse comes
//! ~450 ms after the fall, while the bottleneck queue fills with what can no
//! longer be carried. The fall shows much earlier in the feedback itself:
//! packets sent within a few milliseconds of each other arrive spread over
//! a hundred, back to back, each later than the one before. While the queue
//! stands, how fast they arrive is the link's rate.
//!
//! The detector finds the trailing stretch of reported packets that waited
//! in a queue (one-way delay above the recent minimum) and fires when that
//! stretch took at least twice as long to arrive as to send, lasted long
//! enough to measure, and was delivered below half the current estimate.
//! It also fires on an overload short of a collapse: a queue grown 150 ms
//! over a stretch of 200 ms or more that arrived over at least 115 % of
//! its sending time, delivered below 0.85 of the estimate (the delay trend
//! can take seconds there too, its threshold having adapted upwards).
//!
//! A sender that paces below the link's rate never builds such a stretch;
//! a burst (a keyframe) is spread at the link's rate, which is not below
//! half an estimate the link carried; arrivals bunched by a radio link
//! arrive as fast as they were sent on average over the stretch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::AckedPacket;
use crate::rtp_::{Bitrate, DataSize};

/// How far back (in arrival time) the minimum one-way delay is taken.
const HISTORY: Duration = Duration::from_secs(1);
/// The minimum is kept per slice of arrival time this long: a slice leaves
/// the history once all of it is older than `HISTORY`, so the minimum is
/// taken over at most `HISTORY + BUCKET`.
const BUCKET_US: i64 = 10_000;
/// At most this many slices are kept whatever the arrival times say (one
/// more than `HISTORY` spans, and one for a slice begun).
const MAX_BUCKETS: usize = (HISTORY.as_micros() as i64 / BUCKET_US) as usize + 2;
/// At most this many packets are kept whatever the arrival times say (they
/// come from the remote peer: times that run backwards never age out).
/// `MAX_STRETCH` of 24 Mbit/s in 1200-byte packets.
const MAX_SAMPLES: usize = 1024;
/// A packet whose one-way delay is this far above the minimum waited in a
/// queue.
const QUEUED: Duration = Duration::from_millis(25);
/// The longest stretch measured: the rate should be the link's now.
const MAX_STRETCH: Duration = Duration::from_millis(400);
/// The shortest stretch that is a measurement.
const MIN_STRETCH: Duration = Duration::from_millis(100);
const MIN_PACKETS: usize = 4;
/// The stretch took at least this many times as long to arrive as to send.
const DISPERSION: u32 = 2;
/// A delivery rate below this share of the estimate is a collapse.
const COLLAPSE_SHARE: f64 = 0.5;
/// The estimate after a collapse, as a share of the delivery rate: below it,
/// so the standing queue drains (libwebrtc's back-off on overuse, 0.85).
const BACKOFF: f64 = 0.85;

/// An overload short of a collapse (the link carries more than half of
/// what is sent, so the stretch is not spread twice over): the queue has
/// grown this much over the last second's minimum...
const STANDING: Duration = Duration::from_millis(150);
/// ...over a stretch at least this long...
const MIN_STANDING_STRETCH: Duration = Duration::from_millis(200);
/// ...that took at least this share (percent) of its sending time to
/// arrive, i.e. the queue grew by 15 % of the stretch's length while it
/// was delivered, and delivered below what the estimate backed off would
/// allow. In simulation a 5 Mbit/s estimate on a link halved to 2.5 Mbit/s,
/// carrying 3 Mbit/s, stood for 2.2 s before the delay trend moved it, and
/// the queue overflowed meanwhile.
const STANDING_SPREAD_PERCENT: u32 = 115;

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it arrived (the remote clock), in µs after the anchor's
    /// receive time.
    recv_us: i64,
    /// Its one-way delay in µs against the anchor's clocks: arrival minus
    /// send. Within ±35 minutes of the first sample's (a `i32`); a remote
    /// clock that jumps further saturates it.
    delay_us: i32,
    /// Its size in bytes.
    size: u32,
}

// `MAX_STRETCH` of packets is kept, 16 bytes each (24 with the send time
// as an `i64`, 48 with two `Instant`s, a size and the delay), and the
// second's minimum delay as a minimum per 10 ms slice: ~6 KB for a receiver
// of a few videos. A second of packets kept for the minimum was ~16 KB
// (~50 KB with 48-byte samples), and each report scanned all of it.

impl Sample {
    fn new(send_us: i64, recv_us: i64, size: u32) -> Self {
        let delay = recv_us.saturating_sub(send_us);
        Sample {
            recv_us,
            delay_us: delay.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            size,
        }
    }

    /// One-way delay in µs against the first sample's clocks (the remote
    /// receive times are on another clock; only differences count).
    fn delay_us(&self) -> i64 {
        i64::from(self.delay_us)
    }

    /// When it was sent, in µs after the anchor's send time.
    fn send_us(&self) -> i64 {
        self.recv_us - self.delay_us()
    }

    /// How long after `earlier` it arrived (zero if it did not).
    fn recv_since(&self, earlier: &Sample) -> Duration {
        Duration::from_micros(self.recv_us.saturating_sub(earlier.recv_us).max(0) as u64)
    }
}

/// The lowest one-way delay of the packets that arrived in one slice of
/// `BUCKET_US`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Which slice: arrival µs (after the anchor) divided by `BUCKET_US`.
    index: i64,
    delay_us: i32,
}

#[derive(Debug, Default)]
pub struct CollapseDetector {
    /// The packets of the last `MAX_STRETCH`, in arrival order: what a
    /// stretch is measured over.
    samples: VecDeque<Sample>,
    /// The slices of the last `HISTORY` that may still hold its minimum:
    /// their delays rise from front to back (a slice whose minimum a later
    /// one matches can never be the lowest again), so the front is the
    /// minimum.
    minima: VecDeque<Bucket>,
    anchor: Option<(Instant, Instant)>,
}

fn signed_us(a: Instant, b: Instant) -> i64 {
    if a >= b {
        (a - b).as_micros() as i64
    } else {
        -((b - a).as_micros() as i64)
    }
}

impl CollapseDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep `sample`'s delay as its slice's minimum, dropping the slices
    /// before it that can no longer be the lowest: they leave the history
    /// first and are no lower. A packet that arrived before the last slice
    /// counts in that slice (kept a little longer, never dropped early), so
    /// the slices stay in order.
    fn note_minimum(&mut self, sample: Sample) {
        let mut index = sample.recv_us.div_euclid(BUCKET_US);
        if let Some(b) = self.minima.back() {
            index = index.max(b.index);
        }
        while self
            .minima
            .back()
            .is_some_and(|b| b.delay_us >= sample.delay_us)
        {
            self.minima.pop_back();
        }
        match self.minima.back() {
            // A lower delay in its own slice: this one adds nothing.
            Some(b) if b.index == index => {}
            _ => self.minima.push_back(Bucket {
                index,
                delay_us: sample.delay_us,
            }),
        }
    }

    /// Take a report's acknowledged packets (in arrival order); the new
    /// estimate when they show a collapse below `estimate`.
    pub fn update(&mut self, acked: &[AckedPacket], estimate: Option<Bitrate>) -> Option<Bitrate> {
        for p in acked {
            let (send0, recv0) = *self
                .anchor
                .get_or_insert((p.local_send_time, p.remote_recv_time));
            let sample = Sample::new(
                signed_us(p.local_send_time, send0),
                signed_us(p.remote_recv_time, recv0),
                u32::try_from(p.size.as_bytes_usize()).unwrap_or(u32::MAX),
            );
            self.samples.push_back(sample);
            self.note_minimum(sample);
        }
        let newest = *self.samples.back()?;
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| newest.recv_since(s) > MAX_STRETCH)
        {
            self.samples.pop_front();
        }
        let horizon = newest.recv_us.saturating_sub(HISTORY.as_micros() as i64);
        while self.minima.len() > MAX_BUCKETS
            || self
                .minima
                .front()
                .is_some_and(|b| (b.index + 1).saturating_mul(BUCKET_US) <= horizon)
        {
            self.minima.pop_front();
        }
        if acked.is_empty() {
            return None;
        }
        let estimate = estimate?;

        let min_delay = i64::from(self.minima.front()?.delay_us);
        let queued = min_delay + QUEUED.as_micros() as i64;

        // The trailing stretch that waited in the queue.
        let mut count = 0;
        let mut bytes = DataSize::ZERO;
        let mut first = newest;
        let mut send_min = newest.send_us();
        let mut send_max = newest.send_us();
        for s in self.samples.iter().rev() {
            if s.delay_us() < queued || newest.recv_since(s) > MAX_STRETCH {
                break;
            }
            if count > 0 {
                // The first packet's arrival starts the span; its bytes came
                // before it.
                bytes += DataSize::from(first.size as usize);
            }
            count += 1;
            first = *s;
            send_min = send_min.min(s.send_us());
            send_max = send_max.max(s.send_us());
        }
        let recv_span = newest.recv_since(&first);
        if count < MIN_PACKETS || recv_span < MIN_STRETCH {
            return None;
        }
        let delivered = bytes / recv_span;
        let send_span = Duration::from_micros((send_max - send_min) as u64);
        let collapse = send_span * DISPERSION <= recv_span
            && delivered.as_f64() < estimate.as_f64() * COLLAPSE_SHARE;
        let overload = newest.delay_us() - min_delay >= STANDING.as_micros() as i64
            && recv_span >= MIN_STANDING_STRETCH
            && send_span * STANDING_SPREAD_PERCENT <= recv_span * 100
            && delivered.as_f64() < estimate.as_f64() * BACKOFF;
        (collapse || overload).then(|| Bitrate::from(delivered.as_f64() * BACKOFF))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::rtp_::TwccSeq;

    fn packet(seq: u64, send: Instant, recv: Instant, size: usize) -> AckedPacket {
        AckedPacket {
            seq_no: TwccSeq::from(seq),
            size: DataSize::from(size),
            local_send_time: send,
            remote_recv_time: recv,
            local_recv_time: recv + Duration::from_millis(20),
        }
    }

    /// A sender and a link with a queue; 1200 byte packets, 20 ms of path.
    struct Path {
        start: Instant,
        seq: u64,
        queue_free_at: Instant,
    }

    impl Path {
        fn new() -> Self {
            let start = Instant::now();
            Path {
                start,
                seq: 0,
                queue_free_at: start,
            }
        }

        /// Send at `send_kbps` over a link that now carries `link_kbps`,
        /// from `from` (after the start) for `dur`.
        fn send(
            &mut self,
            from: Duration,
            dur: Duration,
            send_kbps: f64,
            link_kbps: f64,
        ) -> Vec<AckedPacket> {
            let gap = Duration::from_secs_f64(1200.0 * 8.0 / (send_kbps * 1000.0));
            let serialise = Duration::from_secs_f64(1200.0 * 8.0 / (link_kbps * 1000.0));
            let mut out = vec![];
            let mut t = self.start + from;
            while t < self.start + from + dur {
                let at_link = t + Duration::from_millis(20);
                self.queue_free_at = at_link.max(self.queue_free_at) + serialise;
                out.push(packet(self.seq, t, self.queue_free_at, 1200));
                self.seq += 1;
                t += gap;
            }
            out
        }
    }

    /// Feed packets in reports every 50 ms of arrival time; the first
    /// collapse and when its report came.
    fn feed(
        det: &mut CollapseDetector,
        packets: &[AckedPacket],
        estimate: Bitrate,
    ) -> Option<(Instant, Bitrate)> {
        let Some(first) = packets.first() else {
            return None;
        };
        let mut report_at = first.remote_recv_time + Duration::from_millis(50);
        let mut batch = vec![];
        for p in packets {
            while p.remote_recv_time > report_at {
                if let Some(b) = det.update(&batch, Some(estimate)) {
                    return Some((report_at, b));
                }
                batch.clear();
                report_at += Duration::from_millis(50);
            }
            batch.push(*p);
        }
        det.update(&batch, Some(estimate)).map(|b| (report_at, b))
    }

    /// 2.8 Mbit/s over a 3 Mbit/s link for 2 s (nothing read), then over
    /// `link_kbps` for 2 s with `estimate_kbps` believed: how long after
    /// the cut the detector fired, and the estimate it gave, in kbit/s.
    fn cut(link_kbps: f64, estimate_kbps: u64) -> (Duration, f64) {
        let mut path = Path::new();
        let mut det = CollapseDetector::new();
        let estimate = Bitrate::kbps(estimate_kbps);
        let before = path.send(Duration::ZERO, Duration::from_secs(2), 2800.0, 3000.0);
        assert_eq!(feed(&mut det, &before, estimate), None, "nothing to read");
        let after = path.send(
            Duration::from_secs(2),
            Duration::from_secs(2),
            2800.0,
            link_kbps,
        );
        let (at, rate) = feed(&mut det, &after, estimate).expect("read");
        (
            at - (path.start + Duration::from_secs(2)),
            rate.as_f64() / 1000.0,
        )
    }

    #[test]
    fn a_sample_is_16_bytes_and_gives_back_its_times() {
        // A second of every acknowledged packet is kept per connection.
        assert_eq!(std::mem::size_of::<Sample>(), 16);
        for (send, recv) in [(0, 0), (1_000, -5_000_000), (-7, 123_456_789_012)] {
            let s = Sample::new(send, recv, 1200);
            if (recv - send).abs() <= i64::from(i32::MAX) {
                assert_eq!((s.send_us(), s.delay_us()), (send, recv - send));
            } else {
                // A remote clock ~34 hours off: the delay saturates.
                assert_eq!(s.delay_us(), i64::from(i32::MAX));
            }
            assert_eq!(s.recv_us, recv);
        }
    }

    #[test]
    fn a_link_cut_to_a_seventh_is_found_within_250_ms_at_its_rate() {
        let (after, kbps) = cut(400.0, 2900);
        assert!(
            after <= Duration::from_millis(250),
            "found {after:?} after the cut"
        );
        assert!((300.0..=400.0).contains(&kbps), "estimate {kbps} kbit/s");
    }

    #[test]
    fn a_link_cut_below_what_is_sent_is_read_once_its_queue_has_grown() {
        // 2.8 Mbit/s into 2.3: more than half arrives, so no collapse; the
        // queue grows by 22 % of the time, 150 ms of it in ~0.7 s.
        let (after, kbps) = cut(2300.0, 5000);
        assert!(
            after <= Duration::from_millis(1000),
            "found {after:?} after the cut"
        );
        assert!((1800.0..=2100.0).contains(&kbps), "estimate {kbps} kbit/s");
    }

    #[test]
    fn a_burst_spread_at_the_links_rate_is_no_collapse() {
        let start = Instant::now();
        let mut det = CollapseDetector::new();
        // 40 packets sent within 2 ms after 300 ms of nothing, through a
        // 3 Mbit/s link: 128 ms to arrive.
        let mut packets = vec![packet(0, start, start + Duration::from_millis(20), 1200)];
        let serialise = Duration::from_micros(3200);
        for i in 0..40u32 {
            let send = start + Duration::from_millis(300) + Duration::from_micros(50) * i;
            let recv = start + Duration::from_millis(320) + serialise * (i + 1);
            packets.push(packet(1 + i as u64, send, recv, 1200));
        }
        assert_eq!(feed(&mut det, &packets, Bitrate::kbps(3000)), None);
    }

    #[test]
    fn arrivals_bunched_by_a_radio_link_are_no_collapse() {
        let start = Instant::now();
        let mut det = CollapseDetector::new();
        // Sent every 4 ms (2.4 Mbit/s); delivered in bunches every 40 ms,
        // each packet held until its bunch leaves.
        let mut packets = vec![];
        let (mut bunch_was, mut in_bunch) = (0, 0u32);
        for i in 0..500u32 {
            let send = start + Duration::from_millis(4) * i;
            let at = send + Duration::from_millis(20);
            let bunch = (at - start).as_millis() as u32 / 40 + 1;
            if bunch != bunch_was {
                (bunch_was, in_bunch) = (bunch, 0);
            }
            let recv =
                start + Duration::from_millis(40) * bunch + Duration::from_micros(100) * in_bunch;
            in_bunch += 1;
            packets.push(packet(i as u64, send, recv, 1200));
        }
        // The sender uses less than half the estimate (application
        // limited): only the dispersion tells the bunching from a collapse.
        assert_eq!(feed(&mut det, &packets, Bitrate::kbps(6000)), None);
    }

    #[test]
    fn a_light_sender_behind_a_growing_queue_is_no_collapse() {
        let start = Instant::now();
        let mut det = CollapseDetector::new();
        // 150 kbit/s (a packet every 64 ms) while someone else's traffic
        // fills the queue: the delay grows by 100 ms a second.
        let packets: Vec<_> = (0..60u32)
            .map(|i| {
                let send = start + Duration::from_millis(64) * i;
                let recv = send + Duration::from_millis(20) + Duration::from_micros(6400) * i;
                packet(i as u64, send, recv, 1200)
            })
            .collect();
        assert_eq!(feed(&mut det, &packets, Bitrate::kbps(3000)), None);
    }

    /// What a report costs (`patches/test-str0m.sh --release
    /// bwe_::collapse --ignored --nocapture`; BENCHMARKS.md): a 2.5 Mbit/s
    /// stream (260 packets a second, a second of history) reported every
    /// 50 ms, 13 packets a report.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn cost_per_report() {
        let packets = Path::new().send(Duration::ZERO, Duration::from_secs(600), 2500.0, 3000.0);
        let mut det = CollapseDetector::new();
        let began = std::time::Instant::now();
        let mut reports = 0u32;
        let mut fired = 0u32;
        for chunk in packets.chunks(13) {
            reports += 1;
            if det.update(chunk, Some(Bitrate::kbps(2900))).is_some() {
                fired += 1;
            }
        }
        let per = began.elapsed() / reports;
        println!("{reports} reports, {per:?} per report, {fired} collapses");
        assert_eq!(fired, 0);
    }

    #[test]
    fn arrival_times_that_run_backwards_keep_a_bounded_history() {
        let start = Instant::now() + Duration::from_secs(100);
        let mut det = CollapseDetector::new();
        for i in 0..10_000u32 {
            let send = start + Duration::from_millis(1) * i;
            let recv = start - Duration::from_micros(5) * i;
            det.update(
                &[packet(i as u64, send, recv, 1200)],
                Some(Bitrate::kbps(3000)),
            );
        }
        assert!(
            det.samples.len() <= MAX_SAMPLES + 1,
            "{}",
            det.samples.len()
        );
        assert!(det.minima.len() <= MAX_BUCKETS, "{}", det.minima.len());
    }

    #[test]
    fn the_minimum_delay_is_the_lowest_of_the_last_second_to_its_slice() {
        let start = Instant::now();
        let mut det = CollapseDetector::new();
        // (arrival µs, delay µs) of every packet, against the first's clocks.
        let mut seen: Vec<(i64, i64)> = vec![];
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut recv = start + Duration::from_millis(20);
        for i in 0..5_000u64 {
            // Arrivals 0-8 ms apart, one-way delays of 20-220 ms, a few
            // packets at a time per report.
            recv += Duration::from_micros(next(8_000));
            let delay = Duration::from_millis(20) + Duration::from_micros(next(200_000));
            let send = recv - delay;
            let p = packet(i, send, recv, 1200);
            det.update(&[p], Some(Bitrate::kbps(3000)));
            let (send0, recv0) = det.anchor.expect("anchored");
            let recv_us = signed_us(recv, recv0);
            seen.push((recv_us, recv_us - signed_us(send, send0)));
            // What the minimum covers: every packet of the last second, and
            // the rest of the oldest 10 ms slice it reaches into.
            let horizon = recv_us - HISTORY.as_micros() as i64;
            let expected = seen
                .iter()
                .filter(|(at, _)| (at.div_euclid(BUCKET_US) + 1) * BUCKET_US > horizon)
                .map(|(_, d)| *d)
                .min();
            let got = det.minima.front().map(|b| i64::from(b.delay_us));
            assert_eq!(got, expected, "packet {i}");
            assert!(det.minima.len() <= MAX_BUCKETS, "{}", det.minima.len());
        }
    }

    #[test]
    fn a_receiver_of_a_few_videos_keeps_a_few_kilobytes() {
        // 5 Mbit/s (520 packets a second) reported every 50 ms for a minute.
        let packets = Path::new().send(Duration::ZERO, Duration::from_secs(60), 5000.0, 6000.0);
        let mut det = CollapseDetector::new();
        for chunk in packets.chunks(26) {
            det.update(chunk, Some(Bitrate::kbps(5500)));
        }
        // 400 ms of packets (~210) and at most a second of slices.
        assert!(det.samples.len() <= 230, "{}", det.samples.len());
        let bytes = det.samples.capacity() * std::mem::size_of::<Sample>()
            + det.minima.capacity() * std::mem::size_of::<Bucket>();
        // 6 KB with this toolchain's queue growth (4 + 2); a second of
        // packets was 16.
        assert!(bytes <= 8 * 1024, "{bytes} bytes");
    }

    #[test]
    fn a_short_overload_is_left_to_the_delay_trend() {
        let mut path = Path::new();
        let mut det = CollapseDetector::new();
        // 2.8 Mbit/s into 2.4 for 0.6 s: the queue grows 100 ms, then drains.
        let mut packets = path.send(Duration::ZERO, Duration::from_millis(600), 2800.0, 2400.0);
        packets.extend(path.send(
            Duration::from_millis(600),
            Duration::from_secs(2),
            2000.0,
            2400.0,
        ));
        assert_eq!(feed(&mut det, &packets, Bitrate::kbps(3000)), None);
    }
}
