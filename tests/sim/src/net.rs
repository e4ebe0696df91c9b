//! Simulated links: one direction of a network path ([`LinkConfig`]) with
//! latency, jitter, random and bursty ([`Burst`]) loss, loss windows,
//! partitions, a bandwidth limit with a queue, reordering and duplication;
//! the decision of what happens to each datagram sent on it ([`Link::send`]),
//! and how the simulation puts datagrams and reliable (TCP-like) messages
//! on a link.
//!
//! A link draws from its own seeded streams only, and draws the same numbers
//! for every packet whatever the outcome, so changing one setting does not
//! shift the others' randomness. It knows nothing of peers, bridges or what
//! the bytes mean (beyond charging DTLS and RTCP a fixed size).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Sim;
use crate::event::Event;
use crate::rng::Rng;

/// Gilbert–Elliott bursty loss: a good and a bad state with their own loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Per packet probability of entering the bad state.
    pub p_enter: f64,
    /// Per packet probability of leaving it.
    pub p_exit: f64,
    /// Loss while bad.
    pub loss_bad: f64,
}

/// One direction of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub latency: Duration,
    /// Uniform extra delay in [0, jitter). Jitter alone can reorder.
    pub jitter: Duration,
    pub loss: f64,
    pub burst: Option<Burst>,
    /// Bits per second; `None` = unlimited (packets take no time to send,
    /// which no real path does: a bandwidth probe's packets all arrive at
    /// once and measure nothing, so scenarios with bandwidth estimation
    /// give their links a rate).
    pub bandwidth_bps: Option<u64>,
    /// Bytes queued behind the bandwidth limit before tail drop.
    pub queue_bytes: usize,
    /// Probability a packet is held back by an extra `latency` (reordering).
    pub reorder: f64,
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
            reorder: 0.0,
            duplicate: 0.0,
        }
    }
}

impl LinkConfig {
    pub fn latency(ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(ms),
            ..Self::default()
        }
    }

    /// A receiver's downlink: `kbps` behind a queue of ~300 ms at that rate
    /// (a home router's buffer), 20 ms away.
    pub fn capped(kbps: u64) -> Self {
        Self {
            bandwidth_bps: Some(kbps * 1000),
            queue_bytes: (kbps * 1000 / 8 * 3 / 10) as usize,
            ..Self::latency(20)
        }
    }

    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
}

/// A loss rate applied to a link during a window of time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LossWindow {
    pub(crate) from: Instant,
    pub(crate) to: Instant,
    pub(crate) loss: f64,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) cfg: LinkConfig,
    rng: Rng,
    /// RTCP draws from its own stream: how str0m packs feedback into
    /// compound packets (which once varied between runs) must not shift the
    /// draws media packets get.
    rtcp_rng: Rng,
    bad: bool,
    /// When the bandwidth limiter is free again.
    busy_until: Instant,
    /// Partitioned from..to: datagrams dropped, signalling held.
    pub(crate) partitions: Vec<(Instant, Instant)>,
    pub(crate) windows: Vec<LossWindow>,
    pub(crate) sent: u64,
    pub(crate) lost: u64,
    /// Bytes offered to the link (delivered or not).
    pub(crate) bytes: u64,
}

/// Fate of one datagram on a link.
pub(crate) enum Fate {
    Lost,
    /// After a delay, and maybe a duplicate after another.
    Deliver(Duration, Option<Duration>),
}

impl Link {
    pub(crate) fn new(cfg: LinkConfig, seed: u64, now: Instant) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            rtcp_rng: Rng::new(seed ^ 0x5254_4350),
            bad: false,
            busy_until: now,
            partitions: Vec::new(),
            windows: Vec::new(),
            sent: 0,
            lost: 0,
            bytes: 0,
        }
    }

    pub(crate) fn partitioned_at(&self, t: Instant) -> Option<Instant> {
        self.partitions
            .iter()
            .find(|(a, b)| *a <= t && t < *b)
            .map(|(_, b)| *b)
    }

    /// Decide what happens to a datagram of `size` bytes sent at `now`.
    pub(crate) fn send(&mut self, now: Instant, size: usize, rtcp: bool) -> Fate {
        self.sent += 1;
        self.bytes += size as u64;
        // Draw every random number for every packet, whatever the outcome, so
        // one setting changing does not shift the others' random streams.
        let rng = if rtcp {
            &mut self.rtcp_rng
        } else {
            &mut self.rng
        };
        let r_loss = rng.f64();
        let r_burst = rng.f64();
        let r_jitter = rng.f64();
        let r_reorder = rng.f64();
        let r_dup = rng.f64();
        if self.partitioned_at(now).is_some() {
            self.lost += 1;
            return Fate::Lost;
        }
        let mut loss = self.cfg.loss;
        for w in &self.windows {
            if w.from <= now && now < w.to {
                loss = loss.max(w.loss);
            }
        }
        if let (Some(b), false) = (self.cfg.burst, rtcp) {
            if self.bad {
                if r_burst < b.p_exit {
                    self.bad = false;
                }
            } else if r_burst < b.p_enter {
                self.bad = true;
            }
            if self.bad {
                loss = loss.max(b.loss_bad);
            }
        }
        if r_loss < loss {
            self.lost += 1;
            return Fate::Lost;
        }
        let mut queue_delay = Duration::ZERO;
        if let Some(bps) = self.cfg.bandwidth_bps {
            let start = self.busy_until.max(now);
            let backlog = start.saturating_duration_since(now);
            let backlog_bytes = backlog.as_secs_f64() * bps as f64 / 8.0;
            if backlog_bytes > self.cfg.queue_bytes as f64 {
                self.lost += 1;
                return Fate::Lost;
            }
            let tx = Duration::from_secs_f64(size as f64 * 8.0 / bps as f64);
            self.busy_until = start + tx;
            queue_delay = self.busy_until - now;
        }
        let jitter = self.cfg.jitter.mul_f64(r_jitter);
        let mut delay = self.cfg.latency + jitter + queue_delay;
        if r_reorder < self.cfg.reorder {
            delay += self.cfg.latency;
        }
        let dup = (r_dup < self.cfg.duplicate).then(|| delay + Duration::from_micros(100));
        Fate::Deliver(delay, dup)
    }
}

impl Sim {
    /// Signalling is reliable (TCP-like): held through partitions, never lost.
    pub(crate) fn reliable_delay(&self, link: usize) -> Instant {
        let l = &self.links[link];
        let at = self.now + l.cfg.latency;
        l.partitioned_at(self.now)
            .map_or(at, |healed| healed + l.cfg.latency)
    }

    pub(crate) fn send_datagram(
        &mut self,
        link: usize,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) {
        // DTLS handshake records differ by a byte or two between runs (ECDSA
        // signatures) and RTCP compounds by how str0m packed them: charge both
        // a fixed size so timing and the trace stay seeded.
        let first = data.first().copied().unwrap_or(0);
        let rtcp =
            (128..192).contains(&first) && data.get(1).is_some_and(|pt| (192..=223).contains(pt));
        let charged = if (20..=63).contains(&first) {
            1200
        } else if rtcp {
            100
        } else {
            data.len()
        };
        let now = self.now;
        let t = self.t_us();

        match self.links[link].send(now, charged, rtcp) {
            Fate::Lost => self.trace.record(t, "lost", link as u64, charged as u64),
            Fate::Deliver(first, dup) => {
                self.trace.record(t, "sent", link as u64, charged as u64);
                if let Some(d) = dup {
                    self.push(
                        now + d,
                        Event::Datagram {
                            from,
                            to,
                            data: data.clone(),
                        },
                    );
                }
                self.push(now + first, Event::Datagram { from, to, data });
            }
        }
    }
}
