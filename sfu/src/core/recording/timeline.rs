//! Where a recorded track goes on the recording's timeline (ms since the
//! recording started): a participant's tracks are placed by its
//! publisher's sender reports (`clocks.rs`: each layer's RTP/NTP mapping,
//! brought across the relay for remote participants), so its audio and
//! video line up as they were captured, whatever their network and
//! encoder delays. One offset per participant maps its sender clock onto
//! the recording's: the least (arrival − capture) seen over its first
//! `SETTLE_MS` of reported packets, i.e. its fastest packet's delay (a
//! first packet late from pacing or a retransmission would shift the
//! participant). A track holds its frames unwritten until it can be placed
//! so; without a report within `HOLD_FOR_MS` (a publisher that sends none)
//! it is placed by its first frame's arrival instead, and the metadata
//! says which (`timing`).

use tern_record::{TrackKey, TrackRecorder};
use tracing::{debug, info, warn};

use crate::core::Map;

/// How long a track waits for its publisher's sender report before it is
/// placed by arrival. Chromium reports audio every ~5 s (randomised
/// 0.5-1.5x), video every second.
const HOLD_FOR_MS: i64 = 8_000;
/// ... or until it holds this much (a 4 Mbit/s source for 8 s).
const HOLD_MAX_BYTES: usize = 4 << 20;
/// A participant's clock offset is the least seen over this long of its
/// reported packets before its first track is placed by it.
const SETTLE_MS: i64 = 500;
/// A packet placed by its sender's clock further from its arrival than
/// this says the publisher's clocks disagree (no encoder or pacer delays
/// one of its tracks by seconds more than another): its track is placed
/// by arrival instead. Within it a track may well be placed after its
/// arrival: a participant's audio waits for its slower video.
const PLACED_FROM_ARRIVAL_MAX_MS: i64 = 5_000;

/// One publisher's clock on the recording's: a packet sampled at `s` µs on
/// the sender's clock is placed at `s + us` µs into the recording.
#[derive(Debug, Clone, Copy)]
struct ClockOffset {
    us: i64,
    /// When the first reported packet came (ms into the recording).
    since_ms: i64,
    /// A track was placed by it: it no longer moves.
    fixed: bool,
}

/// How a held track was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    BySenderReports,
    /// No report in time, or clocks that disagree: counted.
    ByArrival,
}

/// Every publisher's clock offset in one recording, by endpoint.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    offsets: Map<u64, ClockOffset>,
}

impl Timeline {
    /// A packet of `endpoint` that arrived `at` ms into the recording,
    /// sampled at `sampled` µs on its sender's clock (when its layer's
    /// clock is known).
    pub(super) fn observe(&mut self, endpoint: u64, sampled: Option<i64>, at: i64) {
        let Some(s) = sampled else {
            return;
        };
        let o = self.offsets.entry(endpoint).or_insert(ClockOffset {
            us: i64::MAX,
            since_ms: at,
            fixed: false,
        });
        if !o.fixed {
            o.us = o.us.min(at.saturating_mul(1000).saturating_sub(s));
        }
    }

    /// Place `rec` (a track of `endpoint` still holding its frames) if it
    /// can be now: by its sender's clock once the offset settled, by
    /// arrival once it waited too long. `ts` is the packet's timestamp as
    /// the track numbers it; `held_since` when its first frame was held.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn place(
        &mut self,
        endpoint: u64,
        rec: &mut TrackRecorder,
        held_since: &mut Option<i64>,
        key: &TrackKey,
        sampled: Option<i64>,
        at: i64,
        ts: u32,
    ) -> Option<Placed> {
        if !rec.holding() {
            return None;
        }
        let since = *held_since.get_or_insert(at);
        match (sampled, self.offsets.get_mut(&endpoint)) {
            (Some(s), Some(o)) if o.fixed || at - o.since_ms >= SETTLE_MS => {
                o.fixed = true;
                let ms = s.saturating_add(o.us).div_euclid(1000);
                if (ms - at).abs() <= PLACED_FROM_ARRIVAL_MAX_MS {
                    debug!(participant = %key.participant, source = %key.source, held_ms = at - since, at_ms = ms, "recording track placed by sender reports");
                    rec.set_origin(ts, ms);
                    Some(Placed::BySenderReports)
                } else {
                    warn!(participant = %key.participant, source = %key.source, arrived_ms = at, at_ms = ms, "sender clocks disagree: recording track placed by arrival");
                    rec.release();
                    Some(Placed::ByArrival)
                }
            }
            _ if at - since >= HOLD_FOR_MS || rec.pending_bytes() > HOLD_MAX_BYTES => {
                info!(participant = %key.participant, source = %key.source, "no sender report: recording track placed by arrival");
                rec.release();
                Some(Placed::ByArrival)
            }
            _ => None,
        }
    }
}
