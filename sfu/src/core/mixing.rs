//! A mixed conference's side of the core (issue 18): the shard does not
//! mix, it tells the conference's mixing worker who is in the mix and
//! hands it the audio ([`Output::Mix`]), and writes the encoded mix the
//! worker sends back for each receiver ([`Core::handle_mixed_audio`]) to
//! that receiver's first audio slot, as one RTP stream the core numbers.
//!
//! In a mixed conference audio is never forwarded: the audio slots carry
//! no source (`speakers.rs` leaves them empty), talk detection still
//! hears every packet's level before it goes to the mixer, so dominant
//! speaker events flow as in a forwarding conference. Video is forwarded
//! as in any conference until the composite exists (issue 18's notes).
//! A mixed conference lives on one bridge (the focus places it so): its
//! audio does not cross the relay.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use tern_mixer::host::MixCommand;
use tracing::debug;

use super::{Core, EndpointId, Output};
use crate::signal::Kind;
use crate::stats::DropReason;

impl Core {
    pub(super) fn mix_join(&mut self, room: &Arc<str>, id: EndpointId, rate: u32, sends: bool) {
        self.out.push_back(Output::Mix(MixCommand::Join {
            room: room.clone(),
            id: id.0,
            sample_rate: rate,
            sends_audio: sends,
        }));
    }

    pub(super) fn mix_leave(&mut self, room: &Arc<str>, id: EndpointId) {
        self.out.push_back(Output::Mix(MixCommand::Leave {
            room: room.clone(),
            id: id.0,
        }));
    }

    /// An audio packet of a participant of a mixed conference, after talk
    /// detection and the silence gate: it goes to the mixer instead of to
    /// the other participants. `payload` is the codec's (a RED packet's
    /// primary block).
    pub(super) fn mix_packet(
        &mut self,
        room: Arc<str>,
        id: EndpointId,
        ts: u32,
        payload: Arc<[u8]>,
    ) {
        self.stats.mix_packets_in += 1;
        self.out.push_back(Output::Mix(MixCommand::Packet {
            room,
            id: id.0,
            timestamp: ts,
            payload,
        }));
    }

    /// One encoded frame of `to`'s mix from the mixing worker of `room`.
    /// `timestamp` is the mixer's (48 kHz, one frame per 20 ms tick), so
    /// the receiver's stream stays continuous while people come and go.
    pub fn handle_mixed_audio(
        &mut self,
        now: Instant,
        room: &str,
        to: EndpointId,
        timestamp: u32,
        payload: Vec<u8>,
    ) {
        let Some(ep) = self.endpoints.get_mut(&to) else {
            // Left while its frame was being mixed.
            self.stats.mix_frames_stale += 1;
            return;
        };
        if ep.mixed.is_none() || &*ep.room != room {
            self.stats.mix_frames_stale += 1;
            return;
        }
        if !ep.rtc.is_connected() {
            self.stats.drop(DropReason::NotConnected);
            return;
        }
        let Some(slot_i) = ep.slots.iter().position(|s| s.kind == Kind::Audio) else {
            // It receives no audio (no audio slot offered).
            self.stats.drop(DropReason::NoSlotStream);
            return;
        };
        let Some(pt) = ep.pt_for(Codec::Opus) else {
            self.stats.drop(DropReason::NoCodec);
            return;
        };
        let seq = ep.mix_seq;
        ep.mix_seq += 1;
        let w = RtpWrite::new(
            pt,
            SeqNo::from(seq),
            timestamp,
            now,
            Arc::<[u8]>::from(payload),
        )
        .ext_vals(ExtensionValues::default())
        .nackable(false);
        let slot = &mut ep.slots[slot_i];
        let cached = slot.tx_ssrc;
        let mut api = ep.rtc.direct_api();
        let ssrc = match cached.and_then(|ssrc| api.stream_tx(&ssrc).map(|tx| (ssrc, tx))) {
            Some((ssrc, tx)) => {
                tx.write_rtp(w);
                ssrc
            }
            None => {
                let Some(tx) = api.stream_tx_by_mid(slot.mid, None) else {
                    self.stats.drop(DropReason::NoSlotStream);
                    return;
                };
                tx.set_rtx_cache(0, self.cfg.rtx_cache_age, None);
                // Mixed frames leave as the mixer makes them, 20 ms apart.
                tx.set_unpaced(true);
                let ssrc = tx.ssrc();
                tx.write_rtp(w);
                debug!(endpoint = %to, %ssrc, "mix stream started");
                ssrc
            }
        };
        slot.tx_ssrc = Some(ssrc);
        self.stats.mix_frames_out += 1;
        if !ep.needs_drive {
            ep.needs_drive = true;
            self.to_drive.push(to);
        }
        self.settle(now);
    }

    /// The mixer dropped `participant` (its stream does not decode): said
    /// in the log and counted; the others keep their mix.
    pub fn handle_mix_dropped(&mut self, room: &str, participant: EndpointId, reason: &str) {
        self.stats.mix_inputs_dropped += 1;
        tracing::warn!(room, endpoint = %participant, reason, "dropped from the mix: its audio does not decode");
    }
}
