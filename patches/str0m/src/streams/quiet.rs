//! A send stream with nothing to do, as a timer pass sees it.
//!
//! Every session pass walks all send streams several times (sender report
//! due times, the send queues, the pacer's queue states, pending keyframe,
//! REMB and NACK requests). A bridge's receiver declares several receive
//! slots and most of them are idle at any moment; each walk dereferenced
//! every ~840-byte `StreamTx` and read a few fields spread over it. `TxSlot`
//! keeps, beside the boxed stream, the little a pass needs of a stream
//! that is quiet (nothing queued, resent, padded, requested or NACKed), so
//! the walks read the map's own buckets instead.
//!
//! The summary is taken right after the stream's own `queue_state` and
//! only kept if the state rebuilt from it equals the real one; any mutable
//! access to the stream drops it. So a pass over a quiet stream computes
//! what the stream itself would have: the state depends on time only
//! through `created_at` while nothing is queued.

use std::time::{Duration, Instant};

use crate::config_mod::RtcpReportIntervals;
use crate::pacer::{QueuePriority, QueueSnapshot, QueueState};
use crate::rtp_::{Mid, MidRid, Pt};

use super::StreamTx;

/// A send stream in the session's map, with its summary while quiet.
#[derive(Debug)]
pub(crate) struct TxSlot {
    stream: Box<StreamTx>,
    quiet: Option<Quiet>,
}

/// What a pass needs of a quiet stream.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    midrid: MidRid,
    unpaced: bool,
    use_for_padding: bool,
    padding_pt: Option<Pt>,
    is_audio: bool,
    last_emitted: Option<Instant>,
    last_sender_report: Instant,
    /// The `now` of the last queue state given for it: the stream's own
    /// `queue_info` is brought up to it when the stream is next reached.
    seen_at: Instant,
}

impl Quiet {
    fn queue_state(&self, now: Instant) -> QueueState {
        QueueState {
            midrid: self.midrid,
            unpaced: self.unpaced,
            use_for_padding: self.use_for_padding,
            snapshot: QueueSnapshot {
                created_at: now,
                byte_size: 0,
                packet_count: 0,
                total_queue_time_origin: Duration::ZERO,
                last_emitted: self.last_emitted,
                first_unsent: None,
                priority: QueuePriority::Empty,
            },
        }
    }
}

impl TxSlot {
    pub(crate) fn new(stream: StreamTx) -> Self {
        TxSlot {
            stream: Box::new(stream),
            quiet: None,
        }
    }

    pub(crate) fn get(&self) -> &StreamTx {
        &self.stream
    }

    /// The stream, to change: it may not be quiet after.
    pub(crate) fn get_mut(&mut self) -> &mut StreamTx {
        if let Some(q) = self.quiet.take() {
            self.stream
                .restore_queue_info(q.queue_state(q.seen_at).snapshot);
        }
        &mut self.stream
    }

    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet.is_some()
    }

    pub(crate) fn midrid(&self) -> MidRid {
        match &self.quiet {
            Some(q) => q.midrid,
            None => self.stream.midrid(),
        }
    }

    pub(crate) fn mid(&self) -> Mid {
        self.midrid().mid()
    }

    pub(crate) fn sender_report_at(&self, intervals: RtcpReportIntervals) -> Instant {
        match &self.quiet {
            Some(q) => q.last_sender_report + intervals.for_audio(q.is_audio),
            None => self.stream.sender_report_at(intervals),
        }
    }

    pub(crate) fn need_sr(&self, now: Instant, intervals: RtcpReportIntervals) -> bool {
        now >= self.sender_report_at(intervals)
    }

    pub(crate) fn need_timeout(&self) -> bool {
        // A quiet stream's queue is empty.
        self.quiet.is_none() && self.stream.need_timeout()
    }

    /// The pacer's view of this stream at `now` (`StreamTx::queue_state`),
    /// and the padding PT probe eligibility is judged on.
    pub(crate) fn queue_state(&mut self, now: Instant) -> (QueueState, Option<Pt>) {
        if let Some(q) = &mut self.quiet {
            q.seen_at = now;
            return (q.queue_state(now), q.padding_pt);
        }
        let state = self.stream.queue_state(now);
        self.quiet = self.stream.quiet_parts().and_then(|p| {
            let q = Quiet {
                midrid: state.midrid,
                unpaced: state.unpaced,
                use_for_padding: state.use_for_padding,
                padding_pt: self.stream.padding_pt(),
                is_audio: p.is_audio,
                last_emitted: state.snapshot.last_emitted,
                last_sender_report: p.last_sender_report,
                seen_at: now,
            };
            // Kept only where it gives exactly what the stream gave.
            same_state(&q.queue_state(now), &state).then_some(q)
        });
        (state, self.stream.padding_pt())
    }
}

/// What `StreamTx::quiet_parts` reads of a stream that has nothing to do.
pub(crate) struct QuietParts {
    pub is_audio: bool,
    pub last_sender_report: Instant,
}

/// `QueueState` has no `PartialEq` (a public type of the pacer's): its
/// fields compared.
pub(crate) fn same_state(a: &QueueState, b: &QueueState) -> bool {
    a.midrid == b.midrid
        && a.unpaced == b.unpaced
        && a.use_for_padding == b.use_for_padding
        && a.snapshot == b.snapshot
}
