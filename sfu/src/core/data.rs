//! The room data channel: chat, reactions and application messages.
//!
//! Each participant opens one WebRTC data channel labelled [`DATA_LABEL`].
//! A text message on it goes to every other participant in the room, here
//! and across the relay, wrapped as `{"from": "<participant id>", "data":
//! "<the text>"}` so the sender cannot be forged. The bridge bounds what one
//! participant can make it carry: at most [`MAX_DATA_MESSAGE`] bytes of
//! UTF-8 text per message, [`DATA_RATE`] messages a second with a burst of
//! [`DATA_BURST`]. Anything else is dropped, counted and told to the sender
//! as a (non-fatal) `error`; nobody else notices. A receiver whose channel
//! buffer is full (it reads too slowly) loses messages rather than making
//! the bridge hold them.

use std::time::Instant;

use str0m::channel::{ChannelData, ChannelId};

use super::{Core, EndpointId};
use crate::limits::{RATE_ERROR_EVERY, TokenBucket};
use crate::signal::{ErrorCode, Rejection};
use crate::stats::DataDrop;

/// The label of the one data channel the bridge carries.
pub const DATA_LABEL: &str = "tern";
/// The largest message, in bytes of UTF-8 text.
pub const MAX_DATA_MESSAGE: usize = 16 * 1024;
/// Messages a second one participant may send, sustained.
pub const DATA_RATE: f64 = 10.0;
/// Messages one participant may send at once.
pub const DATA_BURST: f64 = 20.0;

/// One participant's room channel and its send budget.
#[derive(Debug)]
pub(super) struct DataState {
    channel: Option<ChannelId>,
    budget: TokenBucket,
    rate_error_at: Option<Instant>,
}

impl Default for DataState {
    fn default() -> Self {
        Self {
            channel: None,
            budget: TokenBucket::new(DATA_RATE, DATA_BURST),
            rate_error_at: None,
        }
    }
}

impl DataState {
    /// Take one message from the budget; false when there is none left.
    fn take(&mut self, now: Instant) -> bool {
        self.budget.take(now)
    }
}

/// What receivers get: the sender's id and its text, as JSON.
pub(super) fn envelope(from: &str, data: &str) -> String {
    serde_json::json!({ "from": from, "data": data }).to_string()
}

impl Core {
    pub(super) fn on_channel_open(&mut self, id: EndpointId, channel: ChannelId, label: &str) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        if label == DATA_LABEL {
            ep.data.channel = Some(channel);
        } else {
            self.stats.data_drop(DataDrop::UnknownChannel);
        }
    }

    /// A message on one of `id`'s data channels.
    pub(super) fn on_channel_data(&mut self, now: Instant, id: EndpointId, d: ChannelData) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        if ep.data.channel != Some(d.id) {
            self.stats.data_drop(DataDrop::UnknownChannel);
            return;
        }
        let text = (!d.binary)
            .then(|| std::str::from_utf8(&d.data).ok())
            .flatten();
        let refused = if d.data.len() > MAX_DATA_MESSAGE {
            let why = format!(
                "data channel message of {} bytes; at most {MAX_DATA_MESSAGE}",
                d.data.len()
            );
            Some((DataDrop::TooLarge, ErrorCode::DataTooLarge, why))
        } else if text.is_none() {
            let why = "data channel messages must be UTF-8 text".to_string();
            Some((DataDrop::NotText, ErrorCode::DataNotText, why))
        } else if !ep.data.take(now) {
            self.stats.data_drop(DataDrop::RateLimited);
            let due = ep
                .data
                .rate_error_at
                .is_none_or(|t| now.saturating_duration_since(t) >= RATE_ERROR_EVERY);
            if due {
                ep.data.rate_error_at = Some(now);
                let why = format!(
                    "more than {DATA_RATE} data channel messages a second (burst {DATA_BURST}); dropped"
                );
                self.signal(
                    id,
                    Rejection::new(ErrorCode::DataRateLimited, why).into_message(),
                );
            }
            return;
        } else {
            None
        };
        if let Some((drop, code, why)) = refused {
            self.stats.data_drop(drop);
            self.signal(id, Rejection::new(code, why).into_message());
            return;
        }
        let Some(text) = text else {
            return;
        };
        self.stats.data_in += 1;
        let room = ep.room.clone();
        let from = ep.participant.clone();
        let wrapped = envelope(&from, text);
        self.deliver_data(&room, Some(id), &wrapped);
        self.relay_data(&room, &from, text);
    }

    /// Send `wrapped` on the room channel of every local participant in
    /// `room` but `except`.
    pub(super) fn deliver_data(&mut self, room: &str, except: Option<EndpointId>, wrapped: &str) {
        let Some(conf) = self.conferences.get(room) else {
            return;
        };
        let to: Vec<EndpointId> = conf
            .endpoints
            .iter()
            .copied()
            .filter(|&e| Some(e) != except)
            .collect();
        for e in to {
            let Some(ep) = self.endpoints.get_mut(&e) else {
                continue;
            };
            let Some(cid) = ep.data.channel else {
                continue;
            };
            let sent = ep
                .rtc
                .channel(cid)
                .is_some_and(|mut ch| matches!(ch.write(false, wrapped.as_bytes()), Ok(true)));
            if sent {
                self.stats.data_out += 1;
                self.mark_drive(e);
            } else {
                self.stats.data_drop(DataDrop::ReceiverFull);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_allows_a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut s = DataState::default();
        let burst = (0..100).filter(|_| s.take(t0)).count();
        assert_eq!(burst, DATA_BURST as usize);
        // One second later: DATA_RATE more.
        let t1 = t0 + Duration::from_secs(1);
        let more = (0..100).filter(|_| s.take(t1)).count();
        assert_eq!(more, DATA_RATE as usize);
    }

    #[test]
    fn the_envelope_names_the_sender_and_escapes_the_text() {
        let e = envelope("alice-1", "say \"hi\"\n");
        let v: serde_json::Value = serde_json::from_str(&e).expect("json");
        assert_eq!(v["from"], "alice-1");
        assert_eq!(v["data"], "say \"hi\"\n");
    }
}
