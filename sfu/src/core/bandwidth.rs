//! Each receiver's bandwidth: the estimate str0m's send-side BWE makes from
//! the receiver's transport-wide congestion control feedback (REMB where a
//! client sends no TWCC), when a new estimate is worth a new allocation,
//! what each layer costs, and what str0m is asked to probe for.
//!
//! The allocation itself is `crate::allocation` (a plain function); this
//! file feeds it and `allocate.rs` applies it.

use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};

use super::{Core, EndpointId};
use crate::allocation::{Allocation, ESTIMATE_CHANGE};
use crate::signal::Kind;

/// How bandwidth drives allocation on a bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct BandwidthConfig {
    /// Estimate each receiver's bandwidth (str0m's TWCC BWE, which also
    /// probes) and fit its video to it. Off: every receiver gets
    /// what its constraints ask for.
    pub estimation: bool,
    /// The estimate a receiver starts with until feedback says otherwise.
    pub initial_bps: u64,
    /// Probing never looks for more than this per receiver.
    pub max_probe_bps: u64,
    /// The most a camera layer may send (told to publishers, enforced in
    /// allocation).
    pub camera_max_bps: u64,
    /// The same for a screen share (a source named "screen").
    pub screen_max_bps: u64,
}

/// How often a receiver whose estimate is below what it wants asks str0m to
/// probe: `desired` goes up 10 % for one interval, back for the next (and
/// the wait doubles, up to [`MAX_PROBE_BACKOFF`], while probes find nothing).
const PROBE_NUDGE: Duration = Duration::from_secs(1);
const MAX_PROBE_BACKOFF: Duration = Duration::from_secs(4);

/// An estimate below this share of the budget in one step is a collapse of
/// the receiver's link, not a wobble. str0m (patched, patches/README.md)
/// reads one from the transport feedback ~200 ms after the fall and sets
/// its estimate to 0.85 of what the link still delivers, so allocation goes
/// straight to a layer that fits. The bottleneck queue is full by then:
/// what was sent before the estimate fell drains from it for its length
/// (300 ms in simulation) and the new layer's keyframe waits behind it.
const COLLAPSE_FRACTION: f64 = 0.5;
/// How long after a collapse str0m is asked for no probes (`tell_bwe`):
/// each probe cluster is a burst into the full queue, and in simulation
/// (3 -> 0.4 Mbit/s) they kept it full, the 180p keyframe lost a packet
/// there, and the picture stood still 0.52 s; without them, 0.19 s.
/// (Before str0m read collapses, its first estimate after one still
/// averaged the seconds before, and allocation spent half the estimate for
/// this long instead; with an estimate that is the link's rate, halving it
/// paused a 180p that fitted.)
const COLLAPSE_HOLD: Duration = Duration::from_millis(1500);

/// An estimate below this share of the budget (any fall big enough to
/// re-run allocation) is a sharp drop: on-stage sources that keep their
/// layer get a confirming keyframe (see `confirm_stage_after_drop`): one
/// after a run of drops, and at most one per [`CONFIRM_COOLDOWN`] per
/// receiver otherwise, so a receiver whose estimate wobbles cannot keep a
/// screen share sending keyframes. At 0.7 (only the sharper falls) the
/// screen-share scenario kept a 3 s freeze at 7 of 23 seeds; at 0.85, 4
/// (BENCHMARKS.md, "Collapse and drain").
const SHARP_DROP: f64 = 0.85;
const CONFIRM_AFTER_DROP: Duration = Duration::from_millis(400);
const CONFIRM_COOLDOWN: Duration = Duration::from_secs(2);

/// The smallest cap a publisher can be given (the seed guide's minimum).
pub const MIN_SEND_CAP_BPS: u64 = 100_000;

impl Default for BandwidthConfig {
    fn default() -> Self {
        Self {
            estimation: true,
            // Below 720p's nominal cost, so a new receiver starts on 360p
            // and str0m's start-up probes lift it to 720p where the link
            // carries it (in simulation 0.6 s on 5 Mbit/s, 1.3 s on 3; in
            // a real-socket run on loopback within 0.5 s of the first frame).
            // JVB starts at 2.5 Mbit/s; here that flooded every slower link
            // at the start (171 of 619 packets lost on 1.2 Mbit/s), and
            // str0m's loss-based estimator then held the estimate down for
            // seconds (BENCHMARKS.md, "Bandwidth simulations across seeds").
            initial_bps: 1_000_000,
            max_probe_bps: 10_000_000,
            camera_max_bps: 2_500_000,
            screen_max_bps: 2_500_000,
        }
    }
}

/// One receiver's bandwidth state.
#[derive(Debug, Default)]
pub(crate) struct Bandwidth {
    /// The newest estimate.
    pub(super) estimate: Option<u64>,
    /// TWCC estimates seen: REMB is then ignored.
    twcc: bool,
    /// The estimate allocation runs against: it follows `estimate` only when
    /// that moves by more than `ESTIMATE_CHANGE`, so a noisy estimate does
    /// not switch layers back and forth.
    pub(super) budget: Option<u64>,
    /// The last allocation.
    pub(super) allocation: Allocation,
    /// What was allocated, audio included.
    pub(super) allocated_bps: u64,
    /// The desired bitrate last given to str0m's BWE.
    told: u64,
    /// Probe nudges (see `tell_bwe`): when `desired` last moved, and
    /// whether it is raised now.
    nudged_at: Option<Instant>,
    nudge_up: bool,
    /// The estimate when the last nudge went up, and how long to wait
    /// before the next one.
    nudge_from: u64,
    nudge_backoff: Duration,
    /// When the estimate last collapsed (see [`COLLAPSE_FRACTION`]).
    collapsed_at: Option<Instant>,
    /// When a sharp drop last asked for confirming keyframes (see
    /// `confirm_stage_after_drop`).
    confirmed_at: Option<Instant>,
}

impl Bandwidth {
    /// Take a new estimate; true when allocation should run again.
    fn update(&mut self, now: Instant, bps: u64) -> bool {
        self.estimate = Some(bps);
        if self
            .budget
            .is_some_and(|b| (bps as f64) < b as f64 * COLLAPSE_FRACTION)
        {
            self.collapsed_at = Some(now);
        }
        let moved = match self.budget {
            None => true,
            Some(b) => (bps as f64 - b as f64).abs() > b as f64 * ESTIMATE_CHANGE,
        };
        if moved {
            self.budget = Some(bps);
        }
        moved
    }

    /// Whether a collapse is recent (see [`COLLAPSE_HOLD`]).
    fn collapsing(&self, now: Instant) -> bool {
        self.collapsed_at
            .is_some_and(|t| now.saturating_duration_since(t) < COLLAPSE_HOLD)
    }
}

impl Core {
    /// str0m's estimate for receiver `id`.
    pub(super) fn on_bitrate_estimate(&mut self, now: Instant, id: EndpointId, kind: BweKind) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let bps = match kind {
            BweKind::Twcc { estimate, .. } => {
                ep.bw.twcc = true;
                estimate.as_u64()
            }
            BweKind::Remb { estimate, .. } if !ep.bw.twcc => estimate.as_u64(),
            _ => return,
        };
        self.stats.bandwidth_estimates += 1;
        let before = ep.bw.budget;
        let moved = ep.bw.update(now, bps);
        if before.is_some_and(|b| (bps as f64) < b as f64 * SHARP_DROP) {
            self.confirm_stage_after_drop(now, id);
        }
        if moved {
            self.reallocate(now, id);
        }
    }

    /// After a sharp drop of receiver `id`'s estimate, the on-stage sources
    /// it keeps on their layer will get one more keyframe
    /// ([`CONFIRM_AFTER_DROP`] later, when the bottleneck queue has had
    /// time to drain): their packets were lost in that queue too, and if
    /// retransmission cannot bring them back in time (str0m stops resending
    /// above its retransmission share, and the cache ages out) the
    /// receiver freezes until it asks for a keyframe itself, ~3 s later.
    /// Only on-stage sources: a keyframe for every thumbnail at once would
    /// burst onto the link that just shrank.
    fn confirm_stage_after_drop(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let steady: Vec<usize> = ep
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == Kind::Video && s.current.is_some() && s.current == s.target)
            .filter_map(|(i, s)| {
                let src = self.source_of(s.source?)?;
                ep.view.on_stage.contains(&src.id).then_some(i)
            })
            .collect();
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        // A drop that comes while a confirmation waits pushes it later (the
        // estimate falls in steps; the keyframe should follow the last);
        // otherwise one at most every CONFIRM_COOLDOWN.
        let pending = steady.iter().any(|&i| {
            ep.slots
                .get(i)
                .and_then(|s| s.confirm_keyframe_at)
                .is_some_and(|t| t > now)
        });
        let cooled = ep
            .bw
            .confirmed_at
            .is_none_or(|t| now.saturating_duration_since(t) >= CONFIRM_COOLDOWN);
        if !(pending || cooled) {
            return;
        }
        ep.bw.confirmed_at = Some(now);
        for i in steady {
            if let Some(s) = ep.slots.get_mut(i) {
                s.confirm_keyframe_at = Some(now + CONFIRM_AFTER_DROP);
            }
        }
    }

    /// Measure every layer's rate over the window ending now.
    pub(super) fn update_rates(&mut self, now: Instant) {
        let local = self
            .endpoints
            .values_mut()
            .flat_map(|e| e.sources.iter_mut());
        for s in local {
            for l in &mut s.layers {
                l.rate.update(now);
            }
        }
        for r in self.relay.remotes.values_mut() {
            for s in &mut r.sources {
                for l in &mut s.layers {
                    l.rate.update(now);
                }
            }
        }
    }

    /// The cap for a source of this name.
    pub(super) fn send_cap(&self, name: &str) -> u64 {
        if name == "screen" {
            self.cfg.bandwidth.screen_max_bps
        } else {
            self.cfg.bandwidth.camera_max_bps
        }
    }

    /// Tell str0m's BWE what receiver `id` could use, so it probes towards
    /// every source at its preferred layer (bounded by `max_probe_bps`)
    /// while allocation holds the receiver below that, and not at all
    /// once it has everything it wants.
    pub(super) fn tell_bwe(&mut self, now: Instant, id: EndpointId, audio_bps: u64) {
        if !self.cfg.bandwidth.estimation {
            return;
        }
        let max = self.cfg.bandwidth.max_probe_bps;
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        // str0m probes at up to twice `desired`, and a probe's result
        // becomes the estimate. Before any video is wanted and sent there is
        // nothing worth probing for: a receiver of audio alone would probe
        // itself down to it (and with no video stream to pad on, str0m picks
        // one in hash-map order, which makes simulated runs differ).
        let video_sent = ep
            .slots
            .iter()
            .any(|s| s.kind == Kind::Video && s.tx_ssrc.is_some());
        let a = &ep.bw.allocation;
        if !video_sent || a.ideal_bps == 0 {
            return;
        }

        // Probing looks for what every source at its preferred layer would
        // cost, no more: str0m's periodic probes burst at twice this, and a
        // burst far above a slow link reads as congestion.
        let wanted = (a.ideal_bps + audio_bps).min(max);
        // Held below what it wants: some source could go a step up.
        let limited = a.next_step_bps > 0;
        let bw = &mut ep.bw;
        // str0m probes on its own at startup, after a large drop and while
        // the link is mostly idle, and when `desired` rises above the
        // estimate. A receiver held below what it wants sends neither
        // idle nor more: raise `desired` a little every other interval so
        // str0m probes (at most twice its estimate, a short burst) for room.
        let due = bw.nudged_at.is_none_or(|t| {
            let wait = if bw.nudge_up {
                PROBE_NUDGE
            } else {
                bw.nudge_backoff
            };
            now.saturating_duration_since(t) >= wait
        });
        // No probing into the full queue a collapse leaves, and a nudge
        // that cannot probe must not count as one that found nothing.
        let collapsing = bw.collapsing(now);
        if limited && due && !collapsing {
            let estimate = bw.estimate.unwrap_or_default();
            if bw.nudge_up {
                // A probe that found nothing (on a full link it even cuts
                // the estimate: its burst queues) waits twice as long before
                // the next; one that found room lets the next come soon.
                bw.nudge_backoff = if estimate > bw.nudge_from + bw.nudge_from / 20 {
                    PROBE_NUDGE
                } else {
                    (bw.nudge_backoff * 2).clamp(PROBE_NUDGE, MAX_PROBE_BACKOFF)
                };
            } else {
                bw.nudge_from = estimate;
            }
            bw.nudged_at = Some(now);
            bw.nudge_up = !bw.nudge_up;
        } else if !limited {
            bw.nudge_up = false;
            bw.nudge_backoff = PROBE_NUDGE;
        }
        // str0m's periodic probes burst at twice `desired`: far above a slow
        // link that reads as congestion and cuts the estimate to what was
        // acknowledged. Look for at most half again the estimate at a time.
        let step = bw.estimate.map_or(wanted, |e| wanted.min(e + e / 2));
        // A receiver that has everything it wants needs no probing, and
        // str0m probes every 5 s while the link is application-limited (at
        // twice `desired`, capped to twice `desired`): `desired` 0 stops
        // that. Those probes measured only their own padding next to our
        // unpaced media, and str0m takes a probe's result as the estimate
        // even far below what was just delivered (libwebrtc raises it to the
        // acknowledged throughput): in simulation a 3 Mbps link carrying
        // 1.5 Mbps of 720p fell to a 485 kbps estimate, 180p for seconds.
        let desired = if !limited || collapsing {
            0
        } else if bw.nudge_up {
            (step + step / 10).min(max)
        } else {
            step
        };
        let old = bw.told;
        // Small moves of measured rates are not worth re-arming str0m.
        if desired.abs_diff(old) <= old / 20 {
            return;
        }
        bw.told = desired;
        if desired > old && bw.estimate.is_some_and(|e| desired > e) {
            self.stats.bandwidth_probes += 1;
        }
        // No minimum, so no sustained padding: filling the link up to the
        // next step's rate congests a receiver whose estimate is already
        // too high (measured on a link that just got slower). str0m's probe
        // clusters (short bursts) find room instead.
        ep.rtc
            .bwe()
            .set_bitrate(Bitrate::bps(0), Bitrate::bps(desired));
        self.mark_drive(id);
    }

    /// Every receiver's (estimate, allocated) in bits per second, for the
    /// shell's histograms; receivers without an estimate are left out.
    pub fn bandwidth_samples(&self, out: &mut Vec<(u64, u64)>) {
        out.extend(
            self.endpoints
                .values()
                .filter_map(|e| e.bw.estimate.map(|est| (est, e.bw.allocated_bps))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collapse_holds_probing_for_a_while() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::default();
        assert!(bw.update(t0, 2_600_000));
        assert!(!bw.collapsing(t0));
        // 2.6 -> 0.9 Mbit/s in one estimate: a collapse, followed at once.
        let fell = t0 + Duration::from_millis(500);
        assert!(bw.update(fell, 900_000));
        assert_eq!(bw.budget, Some(900_000));
        assert!(bw.collapsing(fell + COLLAPSE_HOLD / 2));
        assert!(!bw.collapsing(fell + COLLAPSE_HOLD));
    }

    #[test]
    fn a_fall_short_of_half_is_followed_as_it_is() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::default();
        bw.update(t0, 2_000_000);
        // 40 % down: a new budget, not a collapse.
        assert!(bw.update(t0 + Duration::from_millis(200), 1_200_000));
        assert_eq!(bw.budget, Some(1_200_000));
        assert!(!bw.collapsing(t0 + Duration::from_millis(300)));
        // Small moves keep the budget.
        assert!(!bw.update(t0 + Duration::from_millis(400), 1_100_000));
        assert_eq!(bw.budget, Some(1_200_000));
    }
}
