//! Sessions: a participant joining (its str0m connection built, the room
//! told), its offer answered, the sources it declares and mutes, and every
//! way it leaves (left, replaced, moved, conference ended, media closed).
//! Conference membership changes here; which layer a receiver gets is
//! `allocate.rs`'s business and media never passes through this module.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::ice::IceCreds;
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::net::Protocol;
use str0m::{Candidate, Rtc};
use tracing::info;

use super::{
    Conference, Core, Endpoint, EndpointId, JoinRequest, Layer, Map, Output, PubSource, Slot,
};
use crate::keyframe::ReceiverBudget;
use crate::signal::MAX_CHOSEN;
use crate::signal::{
    ClientMessage, ErrorCode, Kind, PROTOCOL_VERSION, ParticipantInfo, Rejection, ServerMessage,
    SourceDecl, SourceInfo,
};
use crate::{CodecName, SfuError};

/// Sent packets str0m remembers per connection to match transport-wide
/// feedback to (str0m keeps 1,000 by default, ~90 bytes each, the largest
/// item of a bridge's memory per endpoint). 512 is 2 s of a 720p receiver
/// (~260 packets/s) and over a second at 400 packets/s, which covers a
/// round trip plus the feedback interval and the one second the egress loss
/// in peer stats is read over (BENCHMARKS.md, "Egress: repairs from one
/// copy per source").
const TWCC_SEND_HISTORY: usize = 512;

impl Core {
    /// A participant joins a room. The shell has already authenticated it.
    pub fn handle_join(&mut self, now: Instant, join: JoinRequest) -> Result<(), SfuError> {
        let JoinRequest {
            id,
            room,
            participant,
            name,
            ice_password,
            video_codec,
            may_publish,
            mix_rate,
            composite,
        } = join;
        let (room, participant, name) = (room.as_str(), participant.as_str(), name.as_str());
        if self.endpoints.contains_key(&id) {
            return Err(SfuError::DuplicateEndpoint(id.0));
        }
        // Before anything else: a refused join must not replace the same
        // participant's working connection either.
        if let Err(lag) = self.admission.check(now) {
            self.stats.joins_refused_overloaded += 1;
            return Err(SfuError::Refused(Rejection::new(
                ErrorCode::Overloaded,
                format!(
                    "the bridge is overloaded: its media is {} ms behind; join another bridge or retry in a few seconds",
                    lag.as_millis()
                ),
            )));
        }
        let room: Arc<str> = match self.conferences.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Arc::from(room),
        };
        // Checked before the replacement below: a join refused for its mode
        // or codec must not cost the same participant its working
        // connection.
        let (mixed, conference_codec) =
            self.conference_terms(&room, video_codec, mix_rate, composite)?;

        // The same participant joining again (reload, network change) replaces
        // the old connection rather than appearing twice.
        let previous = self.conferences.get(&room).and_then(|c| {
            c.endpoints.iter().copied().find(|e| {
                self.endpoints
                    .get(e)
                    .is_some_and(|ep| ep.participant == participant)
            })
        });
        if let Some(old) = previous {
            self.signal(
                old,
                ServerMessage::Error {
                    code: ErrorCode::Replaced,
                    message: "the same participant joined from another connection".into(),
                },
            );
            self.remove_endpoint(now, old, "replaced");
        }
        let size = self.conferences.get(&room).map_or(0, |c| c.endpoints.len());
        if size >= self.cfg.max_participants_per_conference {
            self.stats.joins_refused_room_full += 1;
            let msg = Rejection::new(
                ErrorCode::RoomFull,
                format!(
                    "room has {size} participants on this bridge, the limit is {}",
                    self.cfg.max_participants_per_conference
                ),
            );
            return Err(SfuError::Refused(msg));
        }

        self.ufrag_counter += 1;
        let ufrag = format!("{:02x}{:x}{:x}", self.cfg.shard, id.0, self.ufrag_counter);
        let mut rtc = self.build_rtc(now, &ufrag, ice_password, conference_codec)?;
        let candidate = Candidate::host(self.cfg.candidate_addr, Protocol::Udp)
            .map_err(|e| SfuError::Config(format!("candidate address: {e}")))?;
        rtc.add_local_candidate(candidate);
        if let Some(addr) = self.cfg.tcp_candidate_addr {
            let tcp = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .map_err(|e| SfuError::Config(format!("TCP candidate address: {e}")))?;
            rtc.add_local_candidate(tcp);
        }

        let ep = Box::new(Endpoint {
            id,
            room: room.clone(),
            participant: participant.to_owned(),
            name: name.to_owned(),
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            next_timeout: now,
            joined_at: now,
            may_publish,
            mixed,
            mix_seq: 0,
            composite_seq: 0,
            sources: Vec::new(),
            ssrc_map: Map::default(),
            slots: Vec::new(),
            default_max_height: self.cfg.default_max_height,
            max_height: Map::default(),
            view: Default::default(),
            budget: ReceiverBudget::default(),
            bw: Default::default(),
            data: Default::default(),
            slots_dirty: false,
            needs_drive: false,
            closing: false,
            awaiting: VecDeque::new(),
            confirms: false,
        });
        let info = ep.participant_info();
        let talk = self.cfg.talk;
        let conf = self
            .conferences
            .entry(room.clone())
            .or_insert_with(|| Conference::new(talk, conference_codec, mixed, composite));
        let others: Vec<EndpointId> = conf.endpoints.clone();
        conf.endpoints.push(id);
        self.by_ufrag.insert(ufrag, id);
        self.endpoints.insert(id, ep);
        self.timers.push(Reverse((now, id)));
        self.stats.joins += 1;
        info!(endpoint = %id, room = %room, participant, "joined");
        self.relay_drop_remote_copies(now, &room, participant);

        let mut participants: Vec<ParticipantInfo> = others
            .iter()
            .filter_map(|o| self.endpoints.get(o).map(|ep| ep.participant_info()))
            .collect();
        participants.extend(self.relay.participant_infos(&room));
        self.signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                room: room.to_string(),
                participant: info.clone(),
                participants,
                mix_rate: mixed,
            },
        );
        self.signal(
            id,
            ServerMessage::SendLimits {
                camera_max_bps: self.cfg.bandwidth.camera_max_bps,
                screen_max_bps: self.cfg.bandwidth.screen_max_bps,
            },
        );
        self.tell_speech_to_newcomer(id, &room);
        if let Some(rec) = self.recorded_rooms.get(&room) {
            let recording_id = rec.to_string();
            self.signal(
                id,
                ServerMessage::Recording {
                    active: true,
                    recording_id,
                },
            );
        }
        for o in others {
            self.signal(
                o,
                ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            );
        }
        if let Some(rate) = mixed {
            self.mix_join(&room, id, rate, may_publish, composite);
        }
        self.relay_local_joined(now, &room, id);
        self.drive(now, id);
        self.settle(now);
        Ok(())
    }

    /// The codecs an endpoint of a conference negotiates: the bridge's
    /// list, narrowed to the conference's video codec if it has one.
    fn codecs_for(&self, video: Option<CodecName>) -> Vec<CodecName> {
        let mut codecs: Vec<CodecName> = self
            .cfg
            .codecs
            .iter()
            .copied()
            .filter(|c| *c == CodecName::Opus || video.is_none_or(|v| v == *c))
            .collect();
        // A mixed conference's H.264 whether or not the bridge offers it
        // for forwarding.
        if let Some(v) = video
            && !codecs.contains(&v)
            && v == CodecName::H264
            && self.cfg.composite
        {
            codecs.push(v);
        }
        codecs
    }

    fn build_rtc(
        &self,
        now: Instant,
        ufrag: &str,
        pass: String,
        video: Option<CodecName>,
    ) -> Result<Rtc, SfuError> {
        let mut b = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(self.cfg.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.to_owned(),
                pass,
            })
            .set_stats_interval(Some(super::loss::STATS_INTERVAL))
            .set_send_buffer_video(self.cfg.rtx_cache_packets)
            .set_twcc_send_history(TWCC_SEND_HISTORY)
            .enable_bwe(
                self.cfg
                    .bandwidth
                    .estimation
                    .then(|| Bitrate::bps(self.cfg.bandwidth.initial_bps)),
            )
            .clear_codecs();
        for c in &self.codecs_for(video) {
            b = match c {
                // RED (RFC 2198) where the client offers it: browsers
                // send Opus with one redundant frame, which saves a
                // receiver that negotiated RED from single losses.
                CodecName::Opus => b.enable_opus(true, true),
                CodecName::Vp8 => b.enable_vp8(true),
                CodecName::Vp9 => b.enable_vp9(true),
                CodecName::H264 => b.enable_h264(true),
                CodecName::Av1 => b.enable_av1(true),
            };
        }
        Ok(b.build(now))
    }

    /// A signalling message from a joined endpoint.
    pub fn handle_message(&mut self, now: Instant, id: EndpointId, msg: ClientMessage) {
        if !self.endpoints.contains_key(&id) {
            return;
        }
        match msg {
            ClientMessage::Join { .. } => self.reject(
                id,
                Rejection::new(
                    ErrorCode::AlreadyJoined,
                    "this connection has already joined",
                ),
            ),
            ClientMessage::Offer { sdp, sources } => self.handle_offer(now, id, &sdp, sources),
            ClientMessage::SourceState { name, muted } => {
                self.handle_source_state(now, id, &name, muted)
            }
            ClientMessage::Constraints {
                default_max_height,
                max_height,
                last_n,
                selected,
                on_stage,
                on_stage_max_height,
            } => {
                // Bounds are checked by `parse_client_message`; the lists are
                // capped here too, for a core handed an unchecked message.
                let Some(ep) = self.endpoints.get_mut(&id) else {
                    return;
                };
                if let Some(h) = default_max_height {
                    ep.default_max_height = h;
                }
                ep.max_height = max_height.into_iter().collect();
                let before = ep.view.clone();
                if let Some(n) = last_n {
                    ep.view.last_n = usize::try_from(n).ok();
                }
                if let Some(s) = selected {
                    ep.view.selected = s.into_iter().take(MAX_CHOSEN).collect();
                }
                if let Some(s) = on_stage {
                    ep.view.on_stage = s.into_iter().take(MAX_CHOSEN).collect();
                }
                if let Some(h) = on_stage_max_height {
                    ep.view.on_stage_max_height = h;
                }
                if ep.view != before {
                    self.assign_slots(now, id);
                }
                self.reallocate(now, id);
            }
            ClientMessage::Leave => self.remove_endpoint(now, id, "left"),
        }
        self.settle(now);
    }

    fn reject(&mut self, id: EndpointId, r: Rejection) {
        self.signal(id, r.into_message());
    }

    fn handle_offer(&mut self, now: Instant, id: EndpointId, sdp: &str, decl: Vec<SourceDecl>) {
        // Checked before the offer touches the session: a viewer's offer
        // that publishes changes nothing it already receives.
        if !decl.is_empty() && self.endpoints.get(&id).is_some_and(|ep| !ep.may_publish) {
            let names: Vec<&str> = decl.iter().map(|d| d.name.as_str()).collect();
            return self.reject(
                id,
                Rejection::new(
                    ErrorCode::PublishNotAllowed,
                    format!(
                        "this participant's token does not allow publishing (a viewer); the offer declares sources {names:?}: offer again without sources to receive only"
                    ),
                ),
            );
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                return self.reject(
                    id,
                    Rejection::new(ErrorCode::BadOffer, format!("SDP does not parse: {e}")),
                );
            }
        };
        let video = self
            .endpoints
            .get(&id)
            .and_then(|ep| self.conferences.get(&ep.room))
            .and_then(|c| c.video_codec);
        let codecs = self.codecs_for(video);
        let supported: Vec<&str> = codecs.iter().map(|c| c.sdp_name()).collect();
        if let Some(why) = crate::sdp::unsupported_codecs(sdp, &supported) {
            return self.reject(id, Rejection::new(ErrorCode::BadOffer, why));
        }
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let answer = match ep.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                return self.reject(
                    id,
                    Rejection::new(ErrorCode::BadOffer, format!("offer refused: {e}")),
                );
            }
        };
        // str0m announces media (MediaAdded) only once SRTP is up; receive
        // slots must exist before that so sources can be mapped right away.
        let medias: Vec<(Mid, MediaKind, Direction)> = sdp
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .filter_map(|mid| {
                let m = ep.rtc.media(Mid::from(mid))?;
                Some((m.mid(), m.kind(), m.direction()))
            })
            .collect();
        for (mid, kind, dir) in medias {
            self.on_media(id, mid, kind, dir);
        }
        self.signal(
            id,
            ServerMessage::Answer {
                sdp: crate::sdp::prefer_red(&crate::sdp::complete_candidates(
                    &answer.to_sdp_string(),
                )),
            },
        );
        self.drive(now, id);
        self.process_events(now);
        self.apply_sources(now, id, decl);
        self.assign_slots(now, id);
    }

    /// Make the endpoint's published sources match its declaration.
    fn apply_sources(&mut self, now: Instant, id: EndpointId, decl: Vec<SourceDecl>) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let mut problems = Vec::new();
        let mut wanted: Vec<PubSource> = Vec::new();
        for d in decl {
            let mid = Mid::from(d.mid.as_str());
            let Some(media) = ep.rtc.media(mid) else {
                problems.push(format!("source {}: no m-line with mid {}", d.name, d.mid));
                continue;
            };
            let kind_ok = matches!(
                (media.kind(), d.kind),
                (MediaKind::Audio, Kind::Audio) | (MediaKind::Video, Kind::Video)
            );
            if !kind_ok || !media.direction().is_receiving() {
                problems.push(format!(
                    "source {}: mid {} is not a {:?} m-line the client sends on",
                    d.name, d.mid, d.kind
                ));
                continue;
            }
            let layers = if d.layers.is_empty() {
                vec![Layer::new(
                    None,
                    if d.kind == Kind::Video { 720 } else { 0 },
                )]
            } else {
                d.layers
                    .iter()
                    .map(|l| Layer::new(Some(Rid::from(l.rid.as_str())), l.height))
                    .collect()
            };
            wanted.push(PubSource {
                id: format!("{}/{}", ep.participant, d.name),
                name: d.name,
                kind: d.kind,
                mid,
                muted: false,
                layers,
                subscribers: Vec::new(),
                relay_number: self.relay.next_source_number(),
                relay_demand: Vec::new(),
                relay_active_sent: 0,
                svc: false,
                relay_sent_at: None,
                constraint: Default::default(),
                silence: Default::default(),
                record: Default::default(),
                repair: Default::default(),
            });
        }
        if !problems.is_empty() {
            self.signal(
                id,
                ServerMessage::Error {
                    code: ErrorCode::BadOffer,
                    message: problems.join("; "),
                },
            );
        }

        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        // Sources that stay keep their state (subscribers, measured heights);
        // an SVC source stays SVC while the stream it found that on is
        // still declared (the stream, not the declaration, says SVC).
        let mut removed = Vec::new();
        let old = std::mem::take(&mut ep.sources);
        for s in old {
            match wanted.iter_mut().find(|w| {
                w.mid == s.mid
                    && w.name == s.name
                    && w.kind == s.kind
                    && if s.svc {
                        let rid = s.layers.first().and_then(|l| l.rid);
                        w.layers.iter().any(|l| l.rid == rid)
                    } else {
                        w.layers
                            .iter()
                            .map(|l| l.rid)
                            .eq(s.layers.iter().map(|l| l.rid))
                    }
            }) {
                Some(w) => {
                    *w = PubSource {
                        muted: s.muted,
                        ..s
                    }
                }
                None => removed.push(s),
            }
        }
        ep.sources = wanted;
        ep.ssrc_map.clear();
        let room = ep.room.clone();
        let participant = ep.participant.clone();
        let infos: Vec<SourceInfo> = ep.sources.iter().map(|s| s.info(&participant)).collect();
        for s in removed {
            self.unsubscribe_all(&s);
        }
        self.relay_local_sources(now, &room, id);
        self.broadcast_sources(id, &room, participant, infos);
        // Give the new sources slots at every other receiver.
        let others = self.others(&room, id);
        self.assign_slots_in(now, &room, &others);
    }

    fn broadcast_sources(
        &mut self,
        id: EndpointId,
        room: &str,
        participant: String,
        sources: Vec<SourceInfo>,
    ) {
        for o in self.others(room, id) {
            self.signal(
                o,
                ServerMessage::Sources {
                    participant: participant.clone(),
                    sources: sources.clone(),
                },
            );
        }
    }

    pub(super) fn others(&self, room: &str, id: EndpointId) -> Vec<EndpointId> {
        self.conferences
            .get(room)
            .map(|c| c.endpoints.iter().copied().filter(|&e| e != id).collect())
            .unwrap_or_default()
    }

    fn handle_source_state(&mut self, now: Instant, id: EndpointId, name: &str, muted: bool) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let Some(src) = ep.sources.iter_mut().find(|s| s.name == name) else {
            return self.reject(
                id,
                Rejection::new(ErrorCode::BadMessage, format!("no source named {name}")),
            );
        };
        src.muted = muted;
        let room = ep.room.clone();
        let participant = ep.participant.clone();
        let infos = ep.sources.iter().map(|s| s.info(&participant)).collect();
        self.relay_local_sources(now, &room, id);
        self.broadcast_sources(id, &room, participant, infos);
        if !muted {
            // A camera turned back on starts with a keyframe anyway; asking
            // makes receivers' switches complete sooner.
            self.reallocate_source_receivers(now, id);
        }
    }

    /// Every conference on this shard with its participants.
    pub fn conferences(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .conferences
            .iter()
            .map(|(room, c)| {
                let ps = c
                    .endpoints
                    .iter()
                    .filter_map(|e| self.endpoints.get(e).map(|ep| ep.participant.clone()))
                    .collect();
                (room.to_string(), ps)
            })
            .collect();
        out.sort();
        out
    }

    /// Ask participants of `room` (all when `participants` is empty) to
    /// reconnect elsewhere, and let them go. Returns how many were asked.
    pub fn move_participants(
        &mut self,
        now: Instant,
        room: &str,
        participants: &[String],
        reason: &str,
    ) -> usize {
        let ids: Vec<EndpointId> = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                self.endpoints.get(e).is_some_and(|ep| {
                    participants.is_empty() || participants.contains(&ep.participant)
                })
            })
            .collect();
        for &id in &ids {
            self.signal(
                id,
                ServerMessage::Move {
                    reason: reason.to_string(),
                },
            );
            self.remove_endpoint(now, id, "moved");
        }
        self.settle(now);
        ids.len()
    }

    /// End a conference: everyone in it is told and disconnected.
    pub fn end_conference(&mut self, now: Instant, room: &str) -> usize {
        let ids = self
            .conferences
            .get(room)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        for &id in &ids {
            self.signal(
                id,
                ServerMessage::Error {
                    code: ErrorCode::ConferenceEnded,
                    message: "the conference was ended".into(),
                },
            );
            self.remove_endpoint(now, id, "conference ended");
        }
        self.settle(now);
        ids.len()
    }

    /// The shell saw the endpoint's WebSocket close, or the client left.
    pub fn handle_leave(&mut self, now: Instant, id: EndpointId) {
        self.remove_endpoint(now, id, "signalling closed");
        self.settle(now);
    }

    pub(super) fn remove_endpoint(&mut self, now: Instant, id: EndpointId, reason: &str) {
        let Some(mut ep) = self.endpoints.remove(&id) else {
            return;
        };
        info!(endpoint = %id, room = %ep.room, participant = %ep.participant, reason, "endpoint removed");
        ep.rtc.disconnect();
        for s in &ep.sources {
            self.unsubscribe_all(s);
        }
        // Forget this endpoint as a receiver of others' sources.
        for slot in &ep.slots {
            if let Some(r) = slot.source
                && let Some(src) = self.source_of_mut(r)
            {
                src.subscribers.retain(|&(e, _)| e != id);
            }
        }
        if !ep.slots.is_empty() {
            self.relay.demand_dirty = true;
        }
        for a in &ep.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
                self.out.push_back(Output::Unbind { addr: *a });
            }
        }
        self.by_ufrag.remove(&ep.ufrag);
        self.events.retain(|(e, _)| *e != id);
        if ep.mixed.is_some() {
            self.mix_leave(&ep.room, id);
        }
        let mut others = Vec::new();
        if let Some(conf) = self.conferences.get_mut(&ep.room) {
            conf.speech.remove(id);
            conf.endpoints.retain(|&e| e != id);
            others = conf.endpoints.clone();
            if conf.endpoints.is_empty() {
                // Stopped, not failed: nobody is left here to record.
                self.end_recording(now, &ep.room, None);
                self.conferences.remove(&ep.room);
                // Told again (the focus's placement notice) if anyone of
                // it comes here while it is still recorded elsewhere.
                self.recorded_rooms.remove(&ep.room);
                info!(room = %ep.room, "conference ended");
            }
        }
        self.relay_local_left(&ep.room, &ep.participant);
        for o in others {
            self.signal(
                o,
                ServerMessage::ParticipantLeft {
                    id: ep.participant.clone(),
                },
            );
        }
        self.stats.leaves += 1;
        self.out.push_back(Output::Closed { endpoint: id });
        // Freed slots can take sources that had none (more sources than slots).
        let room = ep.room.clone();
        let others = self.others(&room, id);
        self.assign_slots_in(now, &room, &others);
    }

    pub(super) fn on_media(&mut self, id: EndpointId, mid: Mid, kind: MediaKind, dir: Direction) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        // A client `recvonly` transceiver is a receive slot we send on.
        if dir == Direction::SendOnly && !ep.slots.iter().any(|s| s.mid == mid) {
            let kind = if kind.is_audio() {
                Kind::Audio
            } else {
                Kind::Video
            };
            ep.slots.push(Slot::new(mid, kind));
            if !ep.slots_dirty {
                ep.slots_dirty = true;
                self.dirty_slots.push(id);
            }
        }
    }
}
