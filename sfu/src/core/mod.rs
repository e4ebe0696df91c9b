//! The bridge core for one worker shard: every conference pinned to the shard,
//! its endpoints (one str0m `Rtc` each, RTP mode), and the forwarding between
//! them.
//!
//! Sans-IO: inputs are `handle_*` calls with the current `Instant`, outputs are
//! drained with [`Core::poll_output`] and [`Core::poll_timeout`]. No sockets,
//! no clocks, no tasks — the same core runs under the tokio shell and in the
//! deterministic simulation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::ice::{IceCreds, StunMessage};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, trace, warn};

use crate::admission::Admission;
use crate::keyframe::ReceiverBudget;
use crate::layers::{LayerView, choose_layer};
use crate::rewrite::InNumbers;
use crate::signal::{
    ClientMessage, ErrorCode, Kind, PROTOCOL_VERSION, ParticipantInfo, Rejection, ServerMessage,
    SlotInfo, SourceDecl, SourceInfo,
};
use crate::stats::{CoreStats, DropReason};
use crate::{CodecName, SfuError, vp8};

mod model;
mod relay;
mod sender;
pub use model::EndpointId;
use model::{Conference, Endpoint, Layer, Packet, PubSource, Slot, SourceRef};
pub use relay::{PeerId, shard_of_conference_number};
use relay::{RelayState, RemoteParticipant};
pub use sender::PAUSE_DELAY;

/// Maps whose iteration order is the same on every run (fixed hash keys):
/// the simulation replays a seed exactly only if the core iterates
/// deterministically. Keys are not attacker-chosen (ids, SSRCs behind an
/// authenticated endpoint, addresses after authentication).
type Map<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<std::hash::DefaultHasher>>;

/// How often the core revisits layer choices and pending switches.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Ask again for a keyframe a switch is waiting for after this long.
const SWITCH_RETRY: Duration = Duration::from_millis(500);
/// The largest RTP payload forwarded, from a local publisher or a relay
/// peer. str0m assembles each outgoing packet (header, extensions, RTX's
/// original sequence number, payload) in a 2,000-byte buffer and panics on a
/// payload that does not fit; real payloads are under ~1,200 bytes
/// (browsers) or ~1,400 (a relay datagram), and nothing larger than the
/// largest MTU str0m targets (1,500) reaches a receiver in one datagram.
pub const MAX_PAYLOAD: usize = 1500;
/// Times one poll of an endpoint may advance its connection's clock when
/// str0m asks for a timeout at once; more than that is left to the timer, so
/// a connection that keeps asking cannot hold the shard.
const IMMEDIATE_TIMEOUTS: u32 = 4;
/// Resends stop while retransmissions exceed this share of a stream's bytes
/// in the last second (str0m's default; a receiver NACKing everything must
/// not double what it is sent).
const RTX_RATIO_CAP: f32 = 0.15;

#[derive(Clone)]
pub struct CoreConfig {
    /// Index of this shard; prefixes ICE ufrags so the shell can route STUN.
    pub shard: u8,
    /// The local address of the media socket (destination of received datagrams).
    pub local_addr: SocketAddr,
    /// The address advertised to clients as the ICE host candidate.
    pub candidate_addr: SocketAddr,
    /// One certificate for every endpoint: generating one per join costs ms.
    pub dtls_cert: DtlsCert,
    pub codecs: Vec<CodecName>,
    pub max_participants_per_conference: usize,
    pub default_max_height: u32,
    /// Outgoing video packets kept per receive slot to answer NACKs with RTX.
    pub rtx_cache_packets: usize,
    /// How long a sent video packet stays in that cache. Each receiver's
    /// connection keeps its own copies, so this bounds most of a bridge's
    /// memory per endpoint.
    pub rtx_cache_age: Duration,
}

impl std::fmt::Debug for CoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreConfig")
            .field("shard", &self.shard)
            .field("local_addr", &self.local_addr)
            .field("candidate_addr", &self.candidate_addr)
            .field("codecs", &self.codecs)
            .finish_non_exhaustive()
    }
}

/// A participant the shell has authenticated.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub id: EndpointId,
    pub room: String,
    pub participant: String,
    pub name: String,
    /// ICE password for the endpoint. Randomness comes from the shell (a
    /// CSPRNG) or the simulation (a seed), never from the core.
    pub ice_password: String,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram from the media socket.
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Send a signalling message to an endpoint's WebSocket.
    Signal {
        endpoint: EndpointId,
        message: ServerMessage,
    },
    /// Non-STUN datagrams from `addr` belong to this shard from now on.
    Bind { addr: SocketAddr },
    /// ...and no longer do.
    Unbind { addr: SocketAddr },
    /// The endpoint is gone; close its WebSocket after delivering what is queued.
    Closed { endpoint: EndpointId },
    /// Send a control message to a relay peer (reliable, in order).
    RelayControl {
        peer: PeerId,
        msg: tern_relay::msg::relay_control::Msg,
    },
    /// Send a media datagram to a relay peer (unreliable). The same bytes
    /// often go to several peers, hence shared.
    RelayDatagram { peer: PeerId, datagram: Arc<[u8]> },
}

/// One shard's bridge state machine.
pub struct Core {
    cfg: CoreConfig,
    endpoints: Map<EndpointId, Endpoint>,
    conferences: Map<Arc<str>, Conference>,
    by_addr: Map<SocketAddr, EndpointId>,
    by_ufrag: Map<String, EndpointId>,
    out: VecDeque<Output>,
    events: VecDeque<(EndpointId, Event)>,
    /// Endpoint deadlines. An entry is stale when the endpoint's
    /// `next_timeout` has moved since; stale entries only cause a spurious
    /// wakeup and are skipped.
    timers: BinaryHeap<Reverse<(Instant, EndpointId)>>,
    due: Vec<EndpointId>,
    /// Receivers whose slot map changed and must be told.
    dirty_slots: Vec<EndpointId>,
    /// Endpoints written to and not yet polled.
    to_drive: Vec<EndpointId>,
    next_housekeeping: Instant,
    ufrag_counter: u64,
    stats: CoreStats,
    /// Participants on other bridges, by a core-chosen id (see `relay.rs`).
    remotes: Map<EndpointId, RemoteParticipant>,
    relay: RelayState,
    admission: Admission,
}

impl Core {
    pub fn new(cfg: CoreConfig, now: Instant) -> Self {
        let cfg_shard_prefix = cfg.shard;
        Self {
            cfg,
            endpoints: Map::default(),
            conferences: Map::default(),
            by_addr: Map::default(),
            by_ufrag: Map::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            dirty_slots: Vec::new(),
            to_drive: Vec::new(),
            next_housekeeping: now + HOUSEKEEPING,
            ufrag_counter: 0,
            stats: CoreStats::default(),
            remotes: Map::default(),
            relay: RelayState::new(cfg_shard_prefix),
            admission: Admission::default(),
        }
    }

    /// How far behind the shard is: the shell handled input the kernel
    /// received `lag` ago. Sustained lag refuses joins (`admission.rs`).
    pub fn handle_ingress_lag(&mut self, now: Instant, lag: Duration) {
        self.admission.handle_lag(now, lag);
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    pub fn conference_count(&self) -> usize {
        self.conferences.len()
    }

    /// The shard an ICE ufrag belongs to (its first two hex digits).
    pub fn shard_of_ufrag(ufrag: &str) -> Option<u8> {
        ufrag.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok())
    }

    /// The local ufrag a STUN request is addressed to (`USERNAME` is
    /// `local:remote` from the receiver's point of view).
    pub fn stun_target_ufrag(datagram: &[u8]) -> Option<&str> {
        if !is_stun(datagram) {
            return None;
        }
        let msg = StunMessage::parse(datagram).ok()?;
        msg.username()
            .and_then(|u| u.split_once(':'))
            .map(|(local, _)| local)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Instant {
        match self.timers.peek() {
            Some(Reverse((t, _))) => (*t).min(self.next_housekeeping),
            None => self.next_housekeeping,
        }
    }

    /// A participant joins a room. The shell has already authenticated it.
    pub fn handle_join(&mut self, now: Instant, join: JoinRequest) -> Result<(), SfuError> {
        let JoinRequest {
            id,
            room,
            participant,
            name,
            ice_password,
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
        let mut rtc = self.build_rtc(now, &ufrag, ice_password)?;
        let candidate = Candidate::host(self.cfg.candidate_addr, Protocol::Udp)
            .map_err(|e| SfuError::Config(format!("candidate address: {e}")))?;
        rtc.add_local_candidate(candidate);

        let ep = Endpoint {
            id,
            room: room.clone(),
            participant: participant.to_owned(),
            name: name.to_owned(),
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            next_timeout: now,
            joined_at: now,
            sources: Vec::new(),
            ssrc_map: Map::default(),
            slots: Vec::new(),
            default_max_height: self.cfg.default_max_height,
            max_height: Map::default(),
            budget: ReceiverBudget::default(),
            slots_dirty: false,
            needs_drive: false,
            closing: false,
        };
        let info = ep.participant_info();
        let conf = self.conferences.entry(room.clone()).or_default();
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
            .filter_map(|o| self.endpoints.get(o).map(Endpoint::participant_info))
            .collect();
        participants.extend(self.remote_participant_infos(&room));
        self.signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                room: room.to_string(),
                participant: info.clone(),
                participants,
            },
        );
        for o in others {
            self.signal(
                o,
                ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            );
        }
        self.relay_local_joined(now, &room, id);
        self.drive(now, id);
        self.settle(now);
        Ok(())
    }

    fn build_rtc(&self, now: Instant, ufrag: &str, pass: String) -> Result<Rtc, SfuError> {
        let mut b = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(self.cfg.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.to_owned(),
                pass,
            })
            .set_stats_interval(None)
            .set_send_buffer_video(self.cfg.rtx_cache_packets)
            .clear_codecs();
        for c in &self.cfg.codecs {
            b = match c {
                CodecName::Opus => b.enable_opus(true, false),
                CodecName::Vp8 => b.enable_vp8(true),
                CodecName::H264 => b.enable_h264(true),
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
            } => {
                if let Some(ep) = self.endpoints.get_mut(&id) {
                    if let Some(h) = default_max_height {
                        ep.default_max_height = h;
                    }
                    ep.max_height = max_height.into_iter().collect();
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
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                return self.reject(
                    id,
                    Rejection::new(ErrorCode::BadOffer, format!("SDP does not parse: {e}")),
                );
            }
        };
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
                sdp: answer.to_sdp_string(),
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
            self.relay.next_source_number = self.relay.next_source_number.wrapping_add(1);
            wanted.push(PubSource {
                id: format!("{}/{}", ep.participant, d.name),
                name: d.name,
                kind: d.kind,
                mid,
                muted: false,
                layers,
                subscribers: Vec::new(),
                relay_number: self.relay.next_source_number,
                relay_demand: Vec::new(),
                relay_active_sent: 0,
                constraint: Default::default(),
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
        // Sources that stay keep their state (subscribers, measured heights).
        let mut removed = Vec::new();
        let old = std::mem::take(&mut ep.sources);
        for s in old {
            match wanted.iter_mut().find(|w| {
                w.mid == s.mid
                    && w.name == s.name
                    && w.kind == s.kind
                    && w.layers
                        .iter()
                        .map(|l| l.rid)
                        .eq(s.layers.iter().map(|l| l.rid))
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
        for o in others {
            self.assign_slots(now, o);
        }
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

    fn others(&self, room: &str, id: EndpointId) -> Vec<EndpointId> {
        self.conferences
            .get(room)
            .map(|c| c.endpoints.iter().copied().filter(|&e| e != id).collect())
            .unwrap_or_default()
    }

    /// Detach a removed source from every receive slot it fed.
    fn unsubscribe_all(&mut self, s: &PubSource) {
        if !s.subscribers.is_empty() {
            self.relay.demand_dirty = true;
        }
        for &(sub, slot) in &s.subscribers {
            if let Some(ep) = self.endpoints.get_mut(&sub)
                && let Some(sl) = ep.slots.get_mut(slot)
            {
                sl.detach();
                if !ep.slots_dirty {
                    ep.slots_dirty = true;
                    self.dirty_slots.push(sub);
                }
            }
        }
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

    fn reallocate_source_receivers(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let subs: Vec<EndpointId> = ep
            .sources
            .iter()
            .flat_map(|s| s.subscribers.iter().map(|&(e, _)| e))
            .collect();
        for s in subs {
            self.reallocate(now, s);
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

    fn remove_endpoint(&mut self, _now: Instant, id: EndpointId, reason: &str) {
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
        let mut others = Vec::new();
        if let Some(conf) = self.conferences.get_mut(&ep.room) {
            conf.endpoints.retain(|&e| e != id);
            others = conf.endpoints.clone();
            if conf.endpoints.is_empty() {
                self.conferences.remove(&ep.room);
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
        for o in self.others(&room, id) {
            self.assign_slots(_now, o);
        }
    }

    /// Map unassigned remote sources onto free receive slots of `id`.
    fn assign_slots(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        if ep.slots.iter().all(|s| s.source.is_some()) {
            return;
        }
        let room = ep.room.clone();
        let mut candidates: Vec<(SourceRef, Kind)> = Vec::new();
        let publishers = self
            .others(&room, id)
            .into_iter()
            .filter_map(|o| self.endpoints.get(&o).map(|p| (o, p.sources.as_slice())))
            .chain(self.remote_publishers(&room));
        for (other, sources) in publishers {
            for s in sources {
                let r = SourceRef {
                    endpoint: other,
                    mid: s.mid,
                };
                if !ep.slots.iter().any(|sl| sl.source == Some(r)) {
                    candidates.push((r, s.kind));
                }
            }
        }
        let mut assigned = Vec::new();
        if let Some(ep) = self.endpoints.get_mut(&id) {
            for (r, kind) in candidates {
                if let Some((i, slot)) = ep
                    .slots
                    .iter_mut()
                    .enumerate()
                    .find(|(_, s)| s.kind == kind && s.source.is_none())
                {
                    slot.detach();
                    slot.source = Some(r);
                    assigned.push((r, i));
                }
            }
        }
        if let Some(ep) = self.endpoints.get_mut(&id)
            && !assigned.is_empty()
            && !ep.slots_dirty
        {
            ep.slots_dirty = true;
            self.dirty_slots.push(id);
        }
        for (r, i) in &assigned {
            if let Some(src) = self.source_of_mut(*r) {
                src.subscribers.push((id, *i));
            }
        }
        if !assigned.is_empty() {
            self.reallocate(now, id);
        }
    }

    /// Re-choose the layer of every slot of receiver `id`.
    fn reallocate(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        let mut requests = Vec::new();
        let mut decisions = Vec::new();
        for (i, slot) in ep.slots.iter().enumerate() {
            let Some(r) = slot.source else { continue };
            let Some(src) = self.source_of(r) else {
                continue;
            };
            let target = match slot.kind {
                Kind::Audio => Some(0),
                Kind::Video => {
                    let views: Vec<LayerView> = src.layers.iter().map(|l| l.view(now)).collect();
                    let wanted = choose_layer(&views, ep.max_height_for(&src.id));
                    // Nothing active yet (publisher just started): aim at what
                    // the constraints would pick once it is.
                    wanted.or_else(|| {
                        let all: Vec<LayerView> = views
                            .iter()
                            .map(|v| LayerView { active: true, ..*v })
                            .collect();
                        choose_layer(&all, ep.max_height_for(&src.id))
                    })
                }
            };
            decisions.push((i, target));
            let waiting = target.is_some() && target != slot.current;
            let retry = slot
                .switch_requested
                .is_none_or(|t| now.saturating_duration_since(t) >= SWITCH_RETRY);
            if let (true, Kind::Video, true, Some(t)) = (waiting, slot.kind, retry, target) {
                requests.push((r, t, i));
            }
        }
        if let Some(ep) = self.endpoints.get_mut(&id) {
            for (i, target) in decisions {
                let slot = &mut ep.slots[i];
                if target.is_none() && slot.current.is_some() {
                    slot.current = None;
                    slot.rewriter.unmap();
                }
                if slot.target != target {
                    self.relay.demand_dirty = true;
                }
                slot.target = target;
            }
            for &(_, _, i) in &requests {
                ep.slots[i].switch_requested = Some(now);
            }
        }
        for (r, layer, _) in requests {
            self.request_keyframe(now, r, layer);
        }
    }

    /// Ask a publisher for a keyframe on one layer, at most once per interval.
    fn request_keyframe(&mut self, now: Instant, r: SourceRef, layer: usize) {
        if self.remotes.contains_key(&r.endpoint) {
            return self.relay_request_keyframe(now, r, layer);
        }
        let Some(p) = self.endpoints.get_mut(&r.endpoint) else {
            return;
        };
        let Some(src) = p.sources.iter_mut().find(|s| s.mid == r.mid) else {
            return;
        };
        let Some(l) = src.layers.get_mut(layer) else {
            return;
        };
        if !l.gate.try_pass(now) {
            self.stats.keyframe_requests_throttled += 1;
            return;
        }
        let rid = l.rid;
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(r.mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests_sent += 1;
            trace!(publisher = %r.endpoint, mid = %r.mid, ?rid, "keyframe requested");
            self.mark_drive(r.endpoint);
        }
    }

    /// One datagram arrived on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.receive(now, source, destination, data);
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
            self.receive(now, source, destination, data);
        }
        self.settle(now);
    }

    /// Feed one datagram to its endpoint and forward what comes out of it.
    /// The receiving Rtc is polled at once (str0m keeps only one received
    /// RTP packet between polls); receivers are only marked for polling.
    fn receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
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
                    Some(&id) => id,
                    None => {
                        self.stats.drop(DropReason::UnknownUfrag);
                        return;
                    }
                }
            }
        };
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
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
        self.process_events(now);
    }

    /// Poll every endpoint that was written to, handle what that produces,
    /// until nothing is left; then tell receivers about slot changes.
    fn settle(&mut self, now: Instant) {
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
    fn mark_drive(&mut self, id: EndpointId) {
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
            if let Some(ep) = self.endpoints.get_mut(&id)
                && let Err(e) = ep.rtc.handle_input(Input::Timeout(now))
            {
                debug!(endpoint = %id, error = %e, "timeout refused");
            }
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
        let ids: Vec<EndpointId> = self.endpoints.keys().copied().collect();
        for id in ids {
            self.reallocate(now, id);
        }
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
    fn drive(&mut self, now: Instant, id: EndpointId) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let mut immediate = 0;
        loop {
            match ep.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) if t <= now && immediate < IMMEDIATE_TIMEOUTS => {
                    // str0m wants its clock advanced before it goes on: a
                    // packet just written waits in its send queue until a
                    // timeout stamps it. Doing it here sends forwarded media
                    // in the same pass instead of after a trip through the
                    // shard's timer (which waits behind queued input).
                    immediate += 1;
                    if let Err(e) = ep.rtc.handle_input(Input::Timeout(now)) {
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

    fn process_events(&mut self, now: Instant) {
        while let Some((id, e)) = self.events.pop_front() {
            match e {
                Event::RtpPacket(p) => self.forward(now, id, p),
                Event::KeyframeRequest(k) => self.on_keyframe_request(now, id, k.mid),
                Event::MediaAdded(m) => self.on_media(id, m.mid, m.kind, m.direction),
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
                }
                _ => {}
            }
        }
    }

    fn on_media(&mut self, id: EndpointId, mid: Mid, kind: MediaKind, dir: Direction) {
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

    fn on_keyframe_request(&mut self, now: Instant, id: EndpointId, mid: Mid) {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return;
        };
        let Some(slot) = ep.slots.iter().find(|s| s.mid == mid) else {
            return;
        };
        let (Some(r), Some(layer)) = (slot.source, slot.current.or(slot.target)) else {
            return;
        };
        if !ep.budget.try_take(now) {
            self.stats.keyframe_requests_throttled += 1;
            return;
        }
        self.request_keyframe(now, r, layer);
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
        let Some(codec) = ep.codec_of(p.header.payload_type) else {
            self.stats.drop(DropReason::UnknownStream);
            return;
        };
        let mut ext = ExtensionValues::default();
        if codec == Codec::Opus {
            ext.audio_level = p.header.ext_vals.audio_level;
            ext.voice_activity = p.header.ext_vals.voice_activity;
        }
        let packet = Packet {
            source: SourceRef { endpoint: id, mid },
            layer,
            codec,
            seq: *p.seq_no,
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
    fn fan_out(&mut self, now: Instant, p: Packet) {
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
            Codec::H264 => keyframe = crate::h264::starts_keyframe(&p.payload),
            _ => {}
        }
        if let Some(l) = src.layers.get_mut(layer) {
            l.last_packet = Some(now);
        }
        if src.subscribers.is_empty() {
            return;
        }
        let subscribers = std::mem::take(&mut src.subscribers);
        let source_ref = p.source;
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
            if slot.current != Some(layer) {
                if slot.target == Some(layer) && keyframe {
                    slot.rewriter.rebase(&numbers, now);
                    slot.current = Some(layer);
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
            let Some(pt) = sub.pt_for(p.codec) else {
                self.stats.drop(DropReason::NoCodec);
                continue;
            };
            let mut w = RtpWrite::new(
                pt,
                SeqNo::from(out.seq),
                out.ts,
                p.wallclock,
                p.payload.clone(),
            )
            .marker(p.marker)
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
            // One lookup on the usual path: the cached stream takes the
            // write, else (first packet, renegotiated slot) find it by mid.
            let unwritten = match cached.map(|ssrc| (ssrc, api.stream_tx(&ssrc))) {
                Some((ssrc, Some(tx))) => {
                    tx.write_rtp(w);
                    Ok(ssrc)
                }
                _ => Err(w),
            };
            let ssrc = match unwritten {
                Ok(ssrc) => ssrc,
                Err(w) => {
                    let Some(tx) = api.stream_tx_by_mid(slot_mid, None) else {
                        self.stats.drop(DropReason::NoSlotStream);
                        continue;
                    };
                    // First packet on this send stream: str0m sized its
                    // cache by count with a fixed 3 s age; bound it by time
                    // as well (this empties a cache that holds nothing yet).
                    let packets = if kind == Kind::Video {
                        self.cfg.rtx_cache_packets
                    } else {
                        0
                    };
                    tx.set_rtx_cache(packets, self.cfg.rtx_cache_age, Some(RTX_RATIO_CAP));
                    let ssrc = tx.ssrc();
                    tx.write_rtp(w);
                    ssrc
                }
            };
            if cached != Some(ssrc)
                && let Some(slot) = sub.slots.get_mut(slot_i)
            {
                slot.tx_ssrc = Some(ssrc);
            }
            self.stats.rtp_forwarded += 1;
            if !sub.needs_drive {
                sub.needs_drive = true;
                self.to_drive.push(sub_id);
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

    /// A source of a local endpoint or of a remote participant.
    fn source_of(&self, r: SourceRef) -> Option<&PubSource> {
        match self.endpoints.get(&r.endpoint) {
            Some(ep) => ep.source(r.mid),
            None => self.remotes.get(&r.endpoint)?.source(r.mid),
        }
    }

    fn source_of_mut(&mut self, r: SourceRef) -> Option<&mut PubSource> {
        match self.endpoints.get_mut(&r.endpoint) {
            Some(ep) => ep.source_mut(r.mid),
            None => self.remotes.get_mut(&r.endpoint)?.source_mut(r.mid),
        }
    }

    fn flush_slots(&mut self) {
        if self.dirty_slots.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty_slots);
        for &id in &dirty {
            let Some(ep) = self.endpoints.get_mut(&id) else {
                continue;
            };
            ep.slots_dirty = false;
            let refs: Vec<(String, Option<SourceRef>)> = ep
                .slots
                .iter()
                .map(|s| (s.mid.to_string(), s.source))
                .collect();
            let slots = refs
                .into_iter()
                .map(|(mid, r)| SlotInfo {
                    mid,
                    source: r.and_then(|r| self.source_of(r).map(|s| s.id.clone())),
                })
                .collect();
            self.signal(id, ServerMessage::Slots { slots });
        }
        // Keep the allocation for next time.
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty_slots);
        self.dirty_slots = dirty;
    }

    fn signal(&mut self, endpoint: EndpointId, message: ServerMessage) {
        self.out.push_back(Output::Signal { endpoint, message });
    }
}

/// STUN messages start with two zero bits and carry the magic cookie.
fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 2 && data[4..8] == [0x21, 0x12, 0xa4, 0x42]
}
