//! A mixed conference's side of the core (issue 18): the shard does not
//! mix, it tells the conference's mixing worker who is in the mix and
//! hands it the audio ([`Output::Mix`]), and writes the encoded mix the
//! worker sends back for each receiver ([`Core::handle_mixed_audio`]) to
//! that receiver's first audio slot, as one RTP stream the core numbers.
//!
//! In a mixed conference audio is never forwarded: the audio slots carry
//! no source (`speakers.rs` leaves them empty), talk detection still
//! hears every packet's level before it goes to the mixer, so dominant
//! speaker events flow as in a forwarding conference.
//! A mixed conference lives on one bridge (the focus places it so): its
//! audio does not cross the relay.
//!
//! With a composite (`CoreConfig::composite`), video goes the same way: a
//! mixed conference negotiates H.264 only, each publisher's first layer
//! goes to the mixer, the composite comes back once for everyone and is
//! written to each receiver's first video slot; receivers' keyframe
//! requests go to the composite, the composite's to publishers, and who is
//! in which tile is told to everyone (`composite`).

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use tern_mixer::host::MixCommand;
use tern_mixer::video::{CompositeSpec, VideoOutput};
use tracing::debug;

use super::{Core, EndpointId, Output, SourceRef};
use crate::signal::{CompositeTile, Kind, ServerMessage};
use crate::stats::DropReason;

impl Core {
    pub(super) fn mix_join(
        &mut self,
        room: &Arc<str>,
        id: EndpointId,
        rate: u32,
        sends: bool,
        composite: CompositeSpec,
    ) {
        self.out.push_back(Output::Mix(MixCommand::Join {
            room: room.clone(),
            id: id.0,
            sample_rate: rate,
            sends_audio: sends,
            composite,
        }));
    }

    /// A mixing worker restarted (it panicked and lost its conferences):
    /// tell the workers again who is in every mixed conference here. A
    /// worker that still has them refuses the repeats (counted); the one
    /// that restarted rebuilds its mixers, and its composites ask the
    /// publishers for keyframes as their streams resume.
    pub fn handle_mixer_restarted(&mut self) {
        let mut joins = Vec::new();
        for (room, c) in &self.conferences {
            let Some(rate) = c.mixed else { continue };
            for id in &c.endpoints {
                if let Some(ep) = self.endpoints.get(id) {
                    joins.push((room.clone(), *id, rate, ep.may_publish, c.composite));
                }
            }
        }
        for (room, id, rate, sends, composite) in joins {
            self.mix_join(&room, id, rate, sends, composite);
        }
        // ... and which of them are recorded.
        for room in self.mixed_recordings() {
            self.out
                .push_back(Output::Mix(MixCommand::Record { room, on: true }));
        }
    }

    /// The dominant speaker of a mixed conference changed (the composite's
    /// speaker layout follows it).
    pub(super) fn mix_speaker(&mut self, room: &Arc<str>, id: Option<EndpointId>) {
        self.out.push_back(Output::Mix(MixCommand::Speaker {
            room: room.clone(),
            id: id.map(|e| e.0),
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

/// The composite (mixed conferences with `CoreConfig::composite`).
impl Core {
    /// A publisher's video packet for the composite (its first layer).
    pub(super) fn composite_packet(&mut self, room: Arc<str>, id: EndpointId, p: &RtpPacket) {
        self.stats.composite_packets_in += 1;
        self.out.push_back(Output::Mix(MixCommand::Video {
            room,
            id: id.0,
            seq: *p.seq_no as u16,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            payload: Arc::from(&p.payload[..]),
        }));
    }

    /// A receiver lost the composite (its PLI, within its budget).
    pub(super) fn composite_keyframe(&mut self, room: Arc<str>) {
        self.out
            .push_back(Output::Mix(MixCommand::CompositeKeyframe { room }));
    }

    /// What the composite of `room` produced.
    pub fn handle_composite(&mut self, now: Instant, room: &str, output: VideoOutput) {
        match output {
            VideoOutput::Frame {
                timestamp,
                payloads,
                ..
            } => {
                self.record_composite(now, room, timestamp, &payloads);
                self.write_composite(now, room, timestamp, &payloads)
            }
            VideoOutput::KeyframeRequest { participant } => {
                let id = EndpointId(participant);
                let Some(mid) = self.endpoints.get(&id).and_then(|ep| {
                    (&*ep.room == room)
                        .then(|| ep.sources.iter().find(|s| s.kind == Kind::Video))
                        .flatten()
                        .map(|s| s.mid)
                }) else {
                    return;
                };
                self.request_keyframe(now, SourceRef { endpoint: id, mid }, 0);
                self.settle(now);
            }
            VideoOutput::Layout {
                width,
                height,
                tiles,
            } => {
                let tiles: Vec<CompositeTile> = tiles
                    .into_iter()
                    .filter_map(|(id, r)| {
                        let participant = self.endpoints.get(&EndpointId(id))?.participant.clone();
                        Some(CompositeTile {
                            participant,
                            x: r.x,
                            y: r.y,
                            width: r.w,
                            height: r.h,
                        })
                    })
                    .collect();
                let ids: Vec<EndpointId> = self
                    .conferences
                    .get(room)
                    .map(|c| c.endpoints.clone())
                    .unwrap_or_default();
                for id in ids {
                    self.signal(
                        id,
                        ServerMessage::Composite {
                            width,
                            height,
                            tiles: tiles.clone(),
                        },
                    );
                }
            }
        }
    }

    /// One composite picture to every receiver of `room`: the same payloads
    /// on each one's first video slot, numbered per receiver.
    fn write_composite(
        &mut self,
        now: Instant,
        room: &str,
        timestamp: u32,
        payloads: &[Arc<[u8]>],
    ) {
        let ids: Vec<EndpointId> = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        for id in ids {
            let Some(ep) = self.endpoints.get_mut(&id) else {
                continue;
            };
            if !ep.rtc.is_connected() {
                self.stats.drop(DropReason::NotConnected);
                continue;
            }
            let Some(slot_i) = ep.slots.iter().position(|s| s.kind == Kind::Video) else {
                continue;
            };
            let Some(pt) = ep.pt_for(Codec::H264) else {
                self.stats.drop(DropReason::NoCodec);
                continue;
            };
            let n = payloads.len();
            let slot = &mut ep.slots[slot_i];
            let mut api = ep.rtc.direct_api();
            let tx = match slot.tx_ssrc.and_then(|ssrc| api.stream_tx(&ssrc)) {
                Some(tx) => tx,
                None => {
                    let Some(tx) = api.stream_tx_by_mid(slot.mid, None) else {
                        self.stats.drop(DropReason::NoSlotStream);
                        continue;
                    };
                    tx.set_rtx_cache(self.cfg.rtx_cache_packets, self.cfg.rtx_cache_age, None);
                    // The mixer paces: one picture per frame interval.
                    tx.set_unpaced(true);
                    slot.tx_ssrc = Some(tx.ssrc());
                    tx
                }
            };
            for (i, p) in payloads.iter().enumerate() {
                let w = RtpWrite::new(pt, SeqNo::from(ep.composite_seq), timestamp, now, p.clone())
                    .marker(i + 1 == n)
                    .nackable(true);
                ep.composite_seq += 1;
                tx.write_rtp(w);
            }
            self.stats.composite_packets_out += n as u64;
            if !ep.needs_drive {
                ep.needs_drive = true;
                self.to_drive.push(id);
            }
        }
        self.settle(now);
    }
}
