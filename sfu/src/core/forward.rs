//! The media path: datagrams in, each endpoint's events handled (its
//! connection is polled in `poll.rs`), and every RTP packet fanned out to
//! the receive slots that want it, rewritten into each receiver's
//! numbering. Layer targets are read, not chosen, here (`allocate.rs`
//! chooses them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SendNowError, SeqNo, Vp8Descriptor};
use str0m::{Event, IceConnectionState, Input};
use tracing::{debug, info};

use super::repair::{
    AWAITING_MAX, AWAITING_PROBATION, Awaiting, Cached, SOURCE_CACHE_SLOTS, UNCONFIRMABLE,
};
use super::sent_map::Sent;
use super::{Core, EGRESS_BUF, EndpointId, MAX_PAYLOAD, Packet, SourceRef, svc, transmit_sealed};
use crate::rewrite::InNumbers;
use crate::signal::Kind;
use crate::speech::silence::Verdict;
use crate::stats::DropReason;
use crate::vp8;

/// A switch down usually means the receiver's link just got full, and the
/// keyframe the switch starts on may lose packets that retransmission cannot
/// bring back in time (a receiver waits seconds before asking for another).
/// One more keyframe this long after the switch, when the link has drained,
/// bounds that freeze.
const CONFIRM_KEYFRAME_AFTER: Duration = Duration::from_millis(400);
/// Resends stop while retransmissions exceed this share of a stream's bytes
/// in the last second (str0m's default; a receiver NACKing everything must
/// not double what it is sent).
const RTX_RATIO_CAP: f32 = 0.15;

/// str0m's audio level (negative dBov) as RFC 6464's 0..=127.
fn dbov(level: i8) -> u8 {
    level.unsigned_abs().min(127)
}

impl Core {
    /// One datagram arrived on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.receive(now, Protocol::Udp, source, destination, data);
        self.settle(now);
    }

    /// Several datagrams arrived together (one socket read batch). Receivers
    /// are polled once for everything forwarded to them in the batch rather
    /// than once per packet: str0m's poll costs grow with the streams of a
    /// connection, so this is most of the per-packet saving under load.
    pub fn handle_datagrams<'a>(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        batch: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        for (source, data) in batch {
            self.receive(now, Protocol::Udp, source, destination, data);
        }
        self.settle(now);
    }

    /// Frames from ICE-TCP connections (RFC 4571, already unframed by the
    /// shell), each with its connection's remote address; `destination` is
    /// the TCP candidate's address.
    pub fn handle_tcp_datagrams<'a>(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        batch: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        for (source, data) in batch {
            self.receive(now, Protocol::Tcp, source, destination, data);
        }
        self.settle(now);
    }

    /// Feed one datagram to its endpoint and forward what comes out of it.
    /// The receiving Rtc is polled at once (str0m keeps only one received
    /// RTP packet between polls); receivers are only marked for polling.
    fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let id = match self.by_addr.get(&source) {
            Some(&id) => id,
            None => {
                let Some(ufrag) = Self::stun_target_ufrag(data) else {
                    self.stats.drop(DropReason::UnknownSource);
                    return;
                };
                match self.by_ufrag.get(ufrag) {
                    Some(&id) => {
                        if proto == Protocol::Udp {
                            self.unverified.received(&source, data.len());
                        }
                        id
                    }
                    None => {
                        self.stats.drop(DropReason::UnknownUfrag);
                        return;
                    }
                }
            }
        };
        let Ok(recv) = Receive::new(proto, source, destination, data) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        let Some(ep) = self.endpoints.get_mut(&id) else {
            self.stats.drop(DropReason::UnknownSource);
            return;
        };
        let input = Input::Receive(now, recv);
        if !ep.rtc.accepts(&input) {
            self.stats.drop(DropReason::NotAccepted);
            return;
        }
        if let Err(e) = ep.rtc.handle_input(input) {
            debug!(endpoint = %id, error = %e, "input refused");
            self.stats.drop(DropReason::RtcError);
        }
        self.drive(now, id);
        self.confirm_delivered(id);
        self.process_events(now);
    }

    pub(super) fn process_events(&mut self, now: Instant) {
        while let Some((id, e)) = self.events.pop_front() {
            match e {
                Event::RtpPacket(p) => self.forward(now, id, p),
                Event::KeyframeRequest(k) => self.on_keyframe_request(now, id, k.mid),
                Event::Nack(n) => self.on_nack(now, id, n),
                Event::EgressBitrateEstimate(k) => self.on_bitrate_estimate(now, id, k),
                Event::MediaAdded(m) => self.on_media(id, m.mid, m.kind, m.direction),
                Event::ChannelOpen(cid, label) => self.on_channel_open(id, cid, &label),
                Event::ChannelData(d) => self.on_channel_data(now, id, d),
                Event::PeerStats(s) => self.on_peer_stats(id, &s),
                Event::SenderFeedback(f) => self.on_sender_report(id, f),
                Event::MediaChanged(m) => {
                    debug!(endpoint = %id, mid = %m.mid, direction = ?m.direction, "media changed")
                }
                Event::IceConnectionStateChange(s) => {
                    debug!(endpoint = %id, state = ?s, "ice");
                    if s == IceConnectionState::Disconnected {
                        self.stats.ice_disconnects += 1;
                    }
                }
                Event::Connected => {
                    if let Some(ep) = self.endpoints.get(&id) {
                        let ms = now.saturating_duration_since(ep.joined_at).as_millis();
                        info!(endpoint = %id, after_ms = ms as u64, "media connected");
                    }
                    self.stats.connects += 1;
                    // Its slots were sent nothing so far: ask for the
                    // keyframes they start on now.
                    self.reallocate(now, id);
                    // ... and the composite's, which it missed too.
                    if let Some(ep) = self.endpoints.get(&id)
                        && ep.mixed.is_some()
                        && self.cfg.composite
                    {
                        let room = ep.room.clone();
                        self.composite_keyframe(room);
                    }
                }
                _ => {}
            }
        }
    }

    /// Forward one RTP packet from publisher `id` to every slot that wants it,
    /// and to relay peers that want its layer.
    fn forward(&mut self, now: Instant, id: EndpointId, p: RtpPacket) {
        if p.payload.len() > MAX_PAYLOAD {
            self.stats.drop(DropReason::TooLarge);
            return;
        }
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let ssrc = p.header.ssrc;
        let (mid, layer) = match ep.ssrc_map.get(&ssrc) {
            Some(&v) => v,
            None => {
                let mut api = ep.rtc.direct_api();
                let Some(rx) = api.stream_rx(&ssrc) else {
                    self.stats.drop(DropReason::UnknownStream);
                    return;
                };
                let (mid, rid) = (rx.mid(), rx.rid());
                let Some(src) = ep.source(mid) else {
                    // Media the client sends without declaring it as a source.
                    self.stats.drop(DropReason::UnknownStream);
                    return;
                };
                let Some(layer) = src.layers.iter().position(|l| l.rid == rid) else {
                    self.stats.drop(DropReason::UnknownStream);
                    return;
                };
                ep.ssrc_map.insert(ssrc, (mid, layer));
                (mid, layer)
            }
        };
        let pt = p.header.payload_type;
        let Some((codec, red)) = ep
            .codec_of(pt)
            .map(|c| (c, false))
            .or_else(|| ep.red_codec_of(pt).map(|c| (c, true)))
        else {
            self.stats.drop(DropReason::UnknownStream);
            return;
        };
        if red {
            self.stats.red_in += 1;
        }
        if red && crate::red::red_primary(&p.payload).is_none() {
            self.stats.drop(DropReason::Malformed);
            return;
        }
        let mut ext = ExtensionValues::default();
        let mut seq = *p.seq_no;
        if codec == Codec::Opus {
            ext.audio_level = p.header.ext_vals.audio_level;
            ext.voice_activity = p.header.ext_vals.voice_activity;
            let dbov = ext.audio_level.map(dbov);
            let verdict = ep.source_mut(mid).map(|src| {
                let v = src.silence.pass(dbov);
                seq = src.silence.compact(seq);
                v
            });
            // Silence is heard too: it is what ends a talk.
            if let Some(l) = dbov {
                self.hear_level(now, id, l);
            }
            if verdict == Some(Verdict::Drop) {
                self.stats.silence_suppressed += 1;
                return;
            }
            // A mixed conference's audio goes to its mixer, not to the
            // others (`mixing.rs`); its level was heard above.
            if let Some(ep) = self.endpoints.get(&id)
                && ep.mixed.is_some()
            {
                let room = ep.room.clone();
                let payload: std::sync::Arc<[u8]> = if red {
                    // Checked well-formed above.
                    std::sync::Arc::from(crate::red::red_primary(&p.payload).unwrap_or_default())
                } else {
                    p.payload
                };
                self.mix_packet(room, id, p.header.timestamp, payload);
                return;
            }
        }
        // A composite conference's video goes to its mixer (its first
        // layer: what the composite's tile needs), not to the others.
        if codec == Codec::H264
            && self.cfg.composite
            && let Some(ep) = self.endpoints.get(&id)
            && ep.mixed.is_some()
        {
            if layer == 0 {
                let room = ep.room.clone();
                self.composite_packet(room, id, &p);
            }
            return;
        }
        let mut layer = layer;
        // Only a keyframe's first packets carry a scalability structure (V
        // bit): the rest of the stream is not parsed here a second time.
        if codec == Codec::Vp9
            && crate::vp9::carries_structure(&p.payload)
            && let Some(info) = crate::vp9::parse(&p.payload)
            && info.keyframe_start
            && let Some(spatial) = info.spatial
            && self.svc_structure(now, SourceRef { endpoint: id, mid }, layer, spatial)
        {
            // Every spatial layer travels as the source's one stream.
            layer = 0;
        }
        let packet = Packet {
            source: SourceRef { endpoint: id, mid },
            layer,
            codec,
            red,
            seq,
            ts: p.header.timestamp,
            marker: p.header.marker,
            ext,
            payload: p.payload,
            wallclock: p.timestamp,
        };
        self.relay_forward(&packet);
        self.fan_out(now, packet);
    }

    /// Deliver one packet of a (local or remote) source to its subscribers.
    pub(super) fn fan_out(&mut self, now: Instant, p: Packet) {
        if p.codec == Codec::Opus
            && !self.endpoints.contains_key(&p.source.endpoint)
            && let Some(l) = p.ext.audio_level
        {
            self.hear_level(now, p.source.endpoint, dbov(l));
        }
        let Some(src) = self.source_of_mut(p.source) else {
            return;
        };
        let kind = src.kind;
        let layer = p.layer;

        let mut numbers = InNumbers {
            seq: p.seq,
            ts: p.ts,
            pid: None,
            tl0: None,
        };
        let mut keyframe = kind == Kind::Audio;
        let mut descriptor = None;
        // For an SVC source: the packet's spatial layer and frame bounds.
        let mut svc_info = None;
        match p.codec {
            Codec::Vp8 => {
                let Some(info) = vp8::parse(&p.payload) else {
                    self.stats.drop(DropReason::Malformed);
                    return;
                };
                numbers.pid = info.pid;
                numbers.tl0 = info.tl0;
                keyframe = info.keyframe_start;
                if let (true, Some((_, h)), Some(l)) =
                    (info.keyframe_start, info.dims, src.layers.get_mut(layer))
                {
                    l.measured_height = Some(u32::from(h));
                }
                if info.pid.is_some() || info.tl0.is_some() {
                    descriptor = Vp8Descriptor::parse(&p.payload).ok();
                }
            }
            Codec::Vp9 => {
                let Some(info) = crate::vp9::parse(&p.payload) else {
                    self.stats.drop(DropReason::Malformed);
                    return;
                };
                keyframe = info.keyframe_start;
                if src.svc {
                    svc_info = Some(info);
                } else if let (true, Some((_, h)), Some(l)) =
                    (info.keyframe_start, info.dims, src.layers.get_mut(layer))
                {
                    l.measured_height = Some(u32::from(h));
                }
            }
            Codec::H264 => keyframe = crate::h264::starts_keyframe(&p.payload),
            Codec::Av1 => keyframe = crate::av1::starts_keyframe(&p.payload),
            _ => {}
        }
        if let Some(info) = &svc_info {
            // Layer k costs a receiver every layer up to k.
            let sid = usize::from(info.sid);
            if let Some(l) = src.layers.get_mut(sid) {
                l.last_packet = Some(now);
            }
            for l in src.layers.iter_mut().skip(sid) {
                l.rate.add(now, p.payload.len());
            }
        } else if let Some(l) = src.layers.get_mut(layer) {
            l.last_packet = Some(now);
            l.rate.add(now, p.payload.len());
        }
        // An SVC stream is recorded whole: the recorder keeps its top
        // spatial layer and what that is predicted from.
        if src.record.on {
            self.record_packet(now, &p, &numbers, keyframe);
        }
        let Some(src) = self.source_of_mut(p.source) else {
            return;
        };
        if src.subscribers.is_empty() {
            return;
        }
        let subscribers = std::mem::take(&mut src.subscribers);
        let source_ref = p.source;
        // One copy for every receiver's repairs, kept after the fan-out if
        // a receiver was sent it (`SourceCache::keep_sent`).
        let cache_index = (kind == Kind::Video).then(|| src.repair.next_index());
        let mut sent_to_any = false;
        // Receivers sent it whose TWCC feedback will confirm it (`repair.rs`),
        // or `UNCONFIRMABLE` once one was sent it that cannot.
        let mut unconfirmed: u16 = 0;
        // RED's primary block for receivers that did not negotiate RED:
        // made once per packet, shared by all of them.
        let mut plain: Option<std::sync::Arc<[u8]>> = None;
        for &(sub_id, slot_i) in &subscribers {
            let Some(sub) = self.endpoints.get_mut(&sub_id) else {
                continue;
            };
            let Some(slot) = sub.slots.get_mut(slot_i) else {
                continue;
            };
            if slot.source != Some(source_ref) {
                continue;
            }
            // Until its connection is up str0m cannot send, and would keep
            // every packet written meanwhile (without bound, for a client
            // that never connects) to send it all at once, stale. The slot
            // starts at a keyframe asked for when it connects.
            if !sub.rtc.is_connected() {
                self.stats.drop(DropReason::NotConnected);
                continue;
            }
            let mut marker = p.marker;
            if let Some(info) = &svc_info {
                match svc::step(slot, info, keyframe, &numbers, now) {
                    svc::Step::Wait => continue,
                    svc::Step::Skip => {
                        self.stats.svc_skipped += 1;
                        continue;
                    }
                    svc::Step::Forward {
                        end_of_picture,
                        switched,
                    } => {
                        marker |= end_of_picture;
                        if switched {
                            self.stats.layer_switches += 1;
                            self.relay.demand_dirty = true;
                        }
                    }
                }
            } else if slot.current == Some(layer) && slot.draining {
                self.stats.drop(DropReason::Draining);
                continue;
            } else if slot.current != Some(layer) {
                if slot.target == Some(layer) && keyframe {
                    if slot.current.is_some_and(|c| c > layer) {
                        slot.confirm_keyframe_at = Some(now + CONFIRM_KEYFRAME_AFTER);
                        // After a switch down the receiver's decoder starts
                        // over at this keyframe: resending what it lost of
                        // the old layer only fills the link that just proved
                        // too small, and spends the resend budget
                        // (RTX_RATIO_CAP) the new keyframe may need.
                        // Measured in the 400 kbps drop simulation: the
                        // keyframe's lost packet came back 230 ms later
                        // instead of never.
                        slot.sent.forget();
                    }
                    slot.rewriter.rebase(&numbers, now);
                    slot.current = Some(layer);
                    slot.draining = false;
                    slot.switch_requested = None;
                    self.stats.layer_switches += 1;
                    self.relay.demand_dirty = true;
                } else {
                    continue;
                }
            }
            let Some(out) = slot.rewriter.map(&numbers, now) else {
                self.stats.drop(DropReason::BeforeSwitch);
                continue;
            };
            let slot_mid = slot.mid;
            let cached = slot.tx_ssrc;
            // RED goes as RED where the receiver takes it, else its
            // primary block goes as the plain codec.
            let red_pt = if p.red { sub.red_pt_for(p.codec) } else { None };
            let Some(pt) = red_pt.or_else(|| sub.pt_for(p.codec)) else {
                self.stats.drop(DropReason::NoCodec);
                continue;
            };
            if p.red {
                if red_pt.is_some() {
                    self.stats.red_out += 1;
                } else {
                    self.stats.red_out_primary += 1;
                }
            }
            let payload = if p.red && red_pt.is_none() {
                // Checked well-formed at ingest (local RED only).
                plain
                    .get_or_insert_with(|| {
                        std::sync::Arc::from(
                            crate::red::red_primary(&p.payload).unwrap_or_default(),
                        )
                    })
                    .clone()
            } else {
                p.payload.clone()
            };
            let mut w = RtpWrite::new(pt, SeqNo::from(out.seq), out.ts, p.wallclock, payload)
                .marker(marker)
                .ext_vals(p.ext.clone())
                .nackable(kind == Kind::Video);
            if let Some(d) = &descriptor {
                let mut b = d.patch();
                if let Some(pid) = out.pid {
                    b = b.picture_id(pid);
                }
                if let Some(tl0) = out.tl0 {
                    b = b.tl0_pic_idx(tl0);
                }
                match b.build() {
                    Ok(patch) => w = w.vp8_patch(patch),
                    Err(_) => self.stats.drop(DropReason::Malformed),
                }
            }
            let mut api = sub.rtc.direct_api();
            // The cached stream takes the write (`send_rtp_now` looks it up;
            // a second lookup here was 3 % of the bridge's CPU); the first
            // packet on a slot finds it by mid and sets it up.
            let ssrc = match cached {
                Some(ssrc) => ssrc,
                None => {
                    let Some(tx) = api.stream_tx_by_mid(slot_mid, None) else {
                        self.stats.drop(DropReason::NoSlotStream);
                        continue;
                    };
                    // First packet on this send stream: its NACKs are
                    // answered from the source's one copy (`repair.rs`),
                    // so str0m keeps none; it still holds video's resends
                    // to the ratio cap. Audio is never resent: no cap, and
                    // so no history of its bytes (a second of 20 ms steps
                    // per stream).
                    let cap = (kind == Kind::Video).then_some(RTX_RATIO_CAP);
                    tx.set_rtx_cache(0, self.cfg.rtx_cache_age, cap);
                    tx.set_nacks_to_caller(kind == Kind::Video);
                    // Forwarded media was paced by its publisher; a second
                    // pacer here would queue it behind the receiver's
                    // estimate (a picture seconds late when the link
                    // shrinks, where a lower layer is the answer). Sent
                    // now, it never meets str0m's pacer; marked unpaced
                    // for str0m's accounting all the same.
                    tx.set_unpaced(true);
                    tx.ssrc()
                }
            };
            // Sealed by str0m straight into a datagram buffer of our own,
            // reused once the shell sent it (`Core::recycle`): no queue, no
            // pass over the connection and no allocation per copy
            // (patches/README.md, `send_rtp_now`).
            let mut buf = self
                .egress_pool
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(EGRESS_BUF));
            let to = match api.send_rtp_now(now, ssrc, w, &mut buf) {
                Ok(to) => to,
                Err(e) => {
                    self.egress_pool.push(buf);
                    // The slot's stream went with a renegotiation: the next
                    // packet finds what its mid has now.
                    if matches!(e, SendNowError::NoStream(_))
                        && cached.is_some()
                        && let Some(slot) = sub.slots.get_mut(slot_i)
                    {
                        slot.tx_ssrc = None;
                    }
                    self.stats.drop(match e {
                        SendNowError::NotConnected => DropReason::NotConnected,
                        SendNowError::NoStream(_) => DropReason::NoSlotStream,
                        SendNowError::UnknownPt(_) => DropReason::NoCodec,
                        _ => DropReason::TooLarge,
                    });
                    continue;
                }
            };
            let (queue, stats, pool) = (&mut self.out, &mut self.stats, &mut self.egress_pool);
            if !transmit_sealed(queue, stats, pool, &sub.addrs, &to, buf) {
                continue;
            }
            if let Some(slot) = sub.slots.get_mut(slot_i) {
                slot.tx_ssrc = Some(ssrc);
                if let Some(index) = cache_index {
                    // The map keeps what names the packet: the sequence
                    // number's 16 bits, the index's low 32.
                    let sent = Sent {
                        seq: out.seq as u16,
                        index: index as u32,
                        ts: out.ts,
                        pt,
                        marker,
                        pid: out.pid,
                        tl0: out.tl0,
                        confirmed: false,
                    };
                    let (age, max) = (self.cfg.rtx_cache_age, self.cfg.rtx_cache_packets);
                    slot.sent.record(now, source_ref, sent, age, max);
                    sent_to_any = true;
                    let room = if sub.confirms {
                        AWAITING_MAX
                    } else {
                        AWAITING_PROBATION
                    };
                    match to.twcc {
                        Some(twcc)
                            if unconfirmed < UNCONFIRMABLE - 1 && sub.awaiting.len() < room =>
                        {
                            sub.awaiting.push_back(Awaiting {
                                twcc,
                                index: index as u32,
                                seq: out.seq as u16,
                                slot: u8::try_from(slot_i).unwrap_or(u8::MAX),
                            });
                            unconfirmed += 1;
                        }
                        _ => unconfirmed = UNCONFIRMABLE,
                    }
                }
            }
            self.stats.rtp_forwarded += 1;
        }
        if sent_to_any && let Some(index) = cache_index {
            let age = self.cfg.rtx_cache_age;
            let max = SOURCE_CACHE_SLOTS * self.cfg.rtx_cache_packets;
            if let Some(src) = self.source_of_mut(source_ref) {
                let copy = Cached::new(now, p.payload.clone(), p.wallclock, unconfirmed);
                src.repair.keep_sent(copy, index, age, max);
                self.stats.repair_copies_kept += 1;
            }
        }
        if let Some(src) = self.source_of_mut(source_ref) {
            // Subscribers added meanwhile (none can be, we hold &mut self) are
            // kept by appending rather than overwriting.
            let mut subscribers = subscribers;
            subscribers.append(&mut src.subscribers);
            src.subscribers = subscribers;
        }
    }
}
