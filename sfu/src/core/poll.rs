//! Polling endpoints' str0m connections: each is drained until only a
//! timeout is left (str0m's rule), on its input, when its timer is due, or
//! after the core changed it (`settle`); what a poll gives is sent, bound
//! or handed to `forward.rs` as events. Timers and housekeeping.
//!
//! A receiver sent forwarded copies is not polled for them: a copy sent now
//! is accounted in full as it is sent (patches/README.md, `send_rtp_now`),
//! and what the connection still wants done after it (the pacer's clock
//! step before it pads, sender reports) waits for its own timer, which its
//! bandwidth estimator keeps within 25 ms (the pacer within 40 without
//! one). Polling within 20 ms of a send as well was a third more polls
//! (61 a second per receiver at 1 -> 20 in `tests/sim/tests/polling.rs`,
//! 41 now), each a full timeout computation. It was there because
//! str0m's delay controller updated its estimate at every timeout pass
//! rather than when its 25 ms were up, so polling less often changed the
//! estimate; the vendored str0m waits for its interval (BENCHMARKS.md,
//! "Egress: the estimator's own clock").

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use str0m::net::Protocol;
use str0m::{Input, Output as RtcOutput};
use tracing::{debug, warn};

use super::{Core, EndpointId, HOUSEKEEPING, Output};
use crate::signal::{ErrorCode, ServerMessage};
use crate::stats::DropReason;

/// Times one poll of an endpoint may advance its connection's clock when
/// str0m asks for a timeout at once; more than that is left to the timer, so
/// a connection that keeps asking cannot hold the shard.
const IMMEDIATE_TIMEOUTS: u32 = 256;
/// A timeout this close ahead counts as "at once": str0m's pacer asks for
/// its clock to move one microsecond after every packet it releases, so a
/// burst of forwarded packets would otherwise leave one timer pass each.
/// Its real pacing waits are tens of milliseconds, far beyond this.
const IMMEDIATE_SLACK: Duration = Duration::from_micros(200);
impl Core {
    /// Poll every endpoint that was written to, handle what that produces,
    /// until nothing is left; then tell receivers about slot changes.
    pub(super) fn settle(&mut self, now: Instant) {
        loop {
            self.process_events(now);
            if self.to_drive.is_empty() {
                break;
            }
            let mut ids = std::mem::take(&mut self.to_drive);
            for &id in &ids {
                if let Some(ep) = self.endpoints.get_mut(&id) {
                    ep.needs_drive = false;
                }
                self.drive(now, id);
            }
            ids.clear();
            ids.append(&mut self.to_drive);
            self.to_drive = ids;
        }
        if self.relay.demand_dirty {
            self.relay.demand_dirty = false;
            self.relay_update_demand();
            self.update_sender_constraints(now);
        }
        self.flush_slots();
    }

    /// Queue `id` to be polled before this input is done.
    pub(super) fn mark_drive(&mut self, id: EndpointId) {
        if let Some(ep) = self.endpoints.get_mut(&id)
            && !ep.needs_drive
        {
            ep.needs_drive = true;
            self.to_drive.push(id);
        }
    }

    /// Time passed; run every endpoint whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.endpoints.get(&id).is_some_and(|e| e.next_timeout == t) {
                due.push(id);
            }
        }
        for &id in &due {
            let Some(ep) = self.endpoints.get_mut(&id) else {
                continue;
            };
            if let Err(e) = ep.rtc.handle_input(Input::Timeout(now)) {
                debug!(endpoint = %id, error = %e, "timeout refused");
            }
            self.stats.timer_polls += 1;
            self.drive(now, id);
        }
        due.clear();
        self.due = due;
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
        self.settle(now);
    }

    fn housekeeping(&mut self, now: Instant) {
        self.update_rates(now);
        let ids: Vec<EndpointId> = self.endpoints.keys().copied().collect();
        for id in ids {
            self.reallocate(now, id);
        }
        self.speech_housekeeping(now);
        self.recording_housekeeping(now);
        self.update_sender_constraints(now);
        self.relay_housekeeping(now);
        let dead: Vec<EndpointId> = self
            .endpoints
            .values()
            .filter(|e| !e.rtc.is_alive() && !e.closing)
            .map(|e| e.id)
            .collect();
        for id in dead {
            self.signal(
                id,
                ServerMessage::Error {
                    code: ErrorCode::BadOffer,
                    message: "media connection closed".into(),
                },
            );
            self.remove_endpoint(now, id, "media connection closed");
        }
    }

    /// Drain one Rtc until it only has a timeout left (str0m's rule).
    pub(super) fn drive(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        self.stats.polls += 1;
        let mut immediate = 0;
        loop {
            match ep.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t))
                    if t <= now + IMMEDIATE_SLACK && immediate < IMMEDIATE_TIMEOUTS =>
                {
                    // str0m wants its clock advanced before it goes on: a
                    // packet just written waits in its send queue until a
                    // timeout stamps it. Doing it here sends forwarded media
                    // in the same pass instead of after a trip through the
                    // shard's timer (which waits behind queued input).
                    immediate += 1;
                    if let Err(e) = ep.rtc.handle_input(Input::Timeout(t.max(now))) {
                        debug!(endpoint = %id, error = %e, "timeout refused");
                    }
                }
                Ok(RtcOutput::Timeout(t)) => {
                    // Never schedule in the past.
                    let t = t.max(now);
                    if t != ep.next_timeout {
                        ep.next_timeout = t;
                        self.timers.push(Reverse((t, id)));
                    }
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    if !ep.addrs.contains(&t.destination) {
                        // A valid check can be replayed from a spoofed
                        // address: never send there more than came from it.
                        if t.proto == Protocol::Udp
                            && !self.unverified.spend(&t.destination, t.contents.len())
                        {
                            self.stats.drop(DropReason::Amplification);
                            continue;
                        }
                        self.unverified.forget(&t.destination);
                        // str0m only answers checks that passed integrity, so
                        // the first transmit to an address authenticates it.
                        ep.addrs.push(t.destination);
                        self.by_addr.insert(t.destination, id);
                        self.out.push_back(Output::Bind {
                            addr: t.destination,
                        });
                    }
                    let contents: Vec<u8> = t.contents.into();
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += contents.len() as u64;
                    self.out.push_back(Output::Transmit {
                        destination: t.destination,
                        contents,
                        tcp: t.proto == Protocol::Tcp,
                    });
                }
                Ok(RtcOutput::Event(e)) => self.events.push_back((id, e)),
                Err(e) => {
                    warn!(endpoint = %id, error = %e, "rtc failed");
                    // Housekeeping removes it; until then it needs no timer.
                    ep.closing = true;
                    ep.next_timeout = now + Duration::from_secs(3600);
                    break;
                }
            }
        }
    }
}
