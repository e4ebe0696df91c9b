//! Publishers' clocks: what each layer's RTCP sender reports say about
//! when its RTP timestamps were sampled (the publisher's NTP time). Kept
//! per layer, for local sources from the reports str0m hands up and for
//! remote ones from the origin (`SenderClock` on the relay), so a
//! recording can place one publisher's audio and video as they were
//! captured rather than as they arrived (`recording.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use str0m::media::SenderFeedback;
use tern_relay::msg::{self, relay_control::Msg};
use tracing::trace;

use super::relay::PeerId;
use super::{Core, EndpointId, Output};
use crate::signal::Kind;

/// One layer's RTP timestamp `rtp` was sampled at `ntp_us` (microseconds
/// since the Unix epoch on its publisher's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SenderClock {
    pub(super) rtp: u32,
    pub(super) ntp_us: i64,
}

impl SenderClock {
    /// When RTP timestamp `ts` was sampled on the publisher's clock (µs),
    /// for a stream whose clock runs at `hz`. Timestamps within half the
    /// 32-bit range either side of the report's are told apart (over 6
    /// hours at 90 kHz).
    pub(super) fn sampled_us(&self, ts: u32, hz: u32) -> i64 {
        let ticks = i64::from(ts.wrapping_sub(self.rtp) as i32);
        // Saturating: a peer's clock is input, and may be any number.
        self.ntp_us
            .saturating_add(ticks * 1_000_000 / i64::from(hz.max(1)))
    }
}

/// A report is passed to relay peers only when the last one passed
/// predicts it worse than this: a sender's RTP and NTP clocks move together
/// (drifting apart by tens of ppm), so most reports say nothing new; a
/// restarted stream (a new RTP offset) says a lot.
const RELAY_CLOCK_ERROR_US: i64 = 1_000;

/// The RTP clock rate of a source's media (Opus 48 kHz, video 90 kHz).
pub(super) fn clock_hz(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    }
}

fn unix_us(t: SystemTime) -> Option<i64> {
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

impl Core {
    /// A sender report from a local publisher: kept on its layer, and
    /// passed to the relay peers that share its conference when it says
    /// something new (`RELAY_CLOCK_ERROR_US`).
    pub(super) fn on_sender_report(&mut self, id: EndpointId, f: SenderFeedback) {
        let Some(ntp_us) = unix_us(f.sender_info.ntp_time) else {
            // An NTP time before 1970 is a sender's bug; nothing to place by.
            return;
        };
        let clock = SenderClock {
            rtp: f.sender_info.rtp_time.numer() as u32,
            ntp_us,
        };
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let room = ep.room.clone();
        let Some(src) = ep.source_mut(f.mid) else {
            return;
        };
        let Some(layer) = src.layers.iter().position(|l| l.rid == f.rid) else {
            return;
        };
        let hz = clock_hz(src.kind);
        let l = &mut src.layers[layer];
        l.sender_clock = Some(clock);
        let number = u32::from(src.relay_number);
        trace!(endpoint = %id, mid = %f.mid, layer, ?clock, "sender report");
        let known = l.clock_relayed.is_some_and(|c| {
            (c.sampled_us(clock.rtp, hz) - clock.ntp_us).abs() <= RELAY_CLOCK_ERROR_US
        });
        if known {
            return;
        }
        l.clock_relayed = Some(clock);
        let Some(conference) = self.relay.number_of(&room) else {
            return;
        };
        for peer in self.relay.announced_peers(&room) {
            self.out.push_back(Output::RelayControl {
                peer,
                msg: clock_msg(conference, number, layer, clock),
            });
        }
    }

    /// Tell `peers` the clocks known for local participant `id`'s layers
    /// (when it is announced to them: reports come only every few seconds
    /// for audio).
    pub(super) fn relay_send_clocks(&mut self, conference: u32, id: EndpointId, peers: &[PeerId]) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        for s in &ep.sources {
            for (layer, l) in s.layers.iter().enumerate() {
                let Some(clock) = l.sender_clock else {
                    continue;
                };
                for p in peers {
                    self.out.push_back(Output::RelayControl {
                        peer: p.clone(),
                        msg: clock_msg(conference, u32::from(s.relay_number), layer, clock),
                    });
                }
            }
        }
    }

    /// The origin's word on a remote source's layer clock.
    pub(super) fn remote_sender_clock(&mut self, peer: &PeerId, c: msg::SenderClock) {
        let Ok(number) = u16::try_from(c.source) else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        let Some(layer) = self
            .relay
            .remote_layer_mut(peer, c.conference, number, c.layer)
        else {
            self.stats.relay.control_unknown += 1;
            return;
        };
        layer.sender_clock = Some(SenderClock {
            rtp: c.rtp_timestamp,
            ntp_us: c.ntp_unix_micros,
        });
    }
}

fn clock_msg(conference: u32, source: u32, layer: usize, c: SenderClock) -> Msg {
    Msg::SenderClock(msg::SenderClock {
        conference,
        source,
        layer: layer as u32,
        rtp_timestamp: c.rtp,
        ntp_unix_micros: c.ntp_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_placed_by_its_distance_from_the_report_across_the_wrap() {
        let c = SenderClock {
            rtp: u32::MAX - 8_999,
            ntp_us: 1_000_000,
        };
        // 9,000 ticks past the report at 90 kHz (across the wrap): +100 ms.
        assert_eq!(c.sampled_us(0, 90_000), 1_100_000);
        // 48,000 ticks before it at 48 kHz: -1 s.
        assert_eq!(c.sampled_us(u32::MAX - 8_999 - 48_000, 48_000), 0);
    }
}
