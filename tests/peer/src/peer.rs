//! A native WebRTC participant as a Sans-IO state machine: speaks signalling
//! v1, publishes synthetic VP8 simulcast and Opus-sized audio (see
//! [`crate::synth`]), and records exactly what it receives.
//!
//! The tokio test client, the load tool and the deterministic simulation all
//! drive this same type; only how bytes and time reach it differs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RawPacket;
use str0m::rtp::rtcp::Rtcp;
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::PeerError;
use crate::decoder::{FrameDecoder, VideoPacket};
use crate::synth::{AudioGen, GenPacket, VideoGen, read_block};
use tern_sfu::signal::{ClientMessage, Kind, LayerDecl, ServerMessage, SourceDecl};

pub use crate::config::{Pacing, PeerConfig};
pub use crate::state::{PeerState, Received};

/// What the driver of a peer must do.
#[derive(Debug)]
pub enum PeerOutput {
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    Signal(ClientMessage),
}

pub struct Peer {
    cfg: PeerConfig,
    rtc: Rtc,
    state: PeerState,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    video: Option<VideoGen>,
    /// With `h264_pattern`: real H.264 instead of `video`.
    pattern: Option<crate::pattern::PatternGen>,
    audio: Option<AudioGen>,
    rids: Vec<Rid>,
    gen_buf: Vec<GenPacket>,
    /// Video waiting for the pacer, with the instant it was generated.
    paced: VecDeque<(Instant, GenPacket)>,
    /// Video waiting out `video_latency`, with the instant it was captured.
    encoding: VecDeque<(Instant, GenPacket)>,
    /// Bytes the pacer may still send, and when it was last served.
    pace_budget: f64,
    pace_last: Option<Instant>,
    pending_keyframes: Vec<(Instant, usize)>,
    /// A browser-like decoder per receiving video slot. Ordered, so that
    /// keyframe requests due together go out in the same order every run.
    decoders: BTreeMap<Mid, FrameDecoder>,
    out: VecDeque<PeerOutput>,
    next_timeout: Instant,
    /// A reconnected session has not sent media yet: skip what the encoders
    /// produced while there was no transport, and start on keyframes.
    resumed: bool,
}

mod send;

impl Peer {
    fn build_rtc(cfg: &PeerConfig, now: Instant) -> Rtc {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_millis(500)))
            .enable_raw_packets(cfg.record_rtcp)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(cfg.h264_pattern.is_some())
            .build(now);
        if let Ok(c) = Candidate::host(cfg.local_addr, Protocol::Udp) {
            rtc.add_local_candidate(c);
        }
        rtc
    }

    pub fn new(cfg: PeerConfig, now: Instant) -> Self {
        let rtc = Self::build_rtc(&cfg, now);
        let pattern = match (cfg.h264_pattern, cfg.video.is_empty()) {
            (Some(colour), false) => {
                crate::pattern::PatternGen::new(now, colour, cfg.seed).map(|mut g| {
                    if let Some((other, period)) = cfg.h264_alternate {
                        g.alternate(now, colour, other, period);
                    }
                    g.corrupt = cfg.corrupt_video;
                    g
                })
            }
            _ => None,
        };
        let mut video = (!cfg.video.is_empty() && pattern.is_none())
            .then(|| VideoGen::new(cfg.video.clone(), now, cfg.seed));
        if let Some(v) = video.as_mut() {
            v.set_keyframe_interval(cfg.keyframe_interval);
        }
        let rids = cfg
            .video
            .iter()
            .map(|l| Rid::from(l.rid.as_str()))
            .collect();
        Self {
            audio: cfg.audio.then(|| {
                let mut g = AudioGen::new(now, cfg.seed);
                g.talk = cfg.talk.clone();
                g.tone = cfg.tone_hz.and_then(crate::synth::Tone::new);
                g.corrupt = cfg.corrupt_audio;
                g
            }),
            video,
            pattern,
            rids,
            cfg,
            rtc,
            state: PeerState::default(),
            pending: None,
            audio_mid: None,
            video_mid: None,
            gen_buf: Vec::new(),
            paced: VecDeque::new(),
            encoding: VecDeque::new(),
            pace_budget: 0.0,
            pace_last: None,
            pending_keyframes: Vec::new(),
            decoders: BTreeMap::new(),
            out: VecDeque::new(),
            next_timeout: now,
            resumed: false,
        }
    }

    /// Start a new session, as the browser client does after losing its
    /// bridge (socket closed, `move`): a fresh peer connection, the same
    /// participant and the same local media. What was received so far moves
    /// to [`PeerState::history`]. The driver sends [`Peer::join`] next.
    pub fn reconnect(&mut self, now: Instant) {
        let st = &mut self.state;
        into_history(std::mem::take(&mut st.received), &st.slots, &mut st.history);
        into_history(
            std::mem::take(&mut st.decoded),
            &st.slots,
            &mut st.decoded_history,
        );
        self.decoders.clear();
        self.rtc = Self::build_rtc(&self.cfg, now);
        let st = &mut self.state;
        st.participant_id = None;
        st.joined = false;
        st.connected = false;
        st.answered = false;
        st.closed = false;
        st.participants.clear();
        st.slots.clear();
        st.reconnects += 1;
        // A new session starts with every layer on, as a new browser
        // peer connection does.
        st.sender_max_height = None;
        if let Some(g) = self.video.as_mut() {
            for i in 0..self.cfg.video.len() {
                g.set_enabled(i, true);
            }
        }
        self.pending = None;
        self.audio_mid = None;
        self.video_mid = None;
        self.pending_keyframes.clear();
        self.paced.clear();
        self.encoding.clear();
        self.pace_last = None;
        self.out.clear();
        self.next_timeout = now;
        self.resumed = true;
    }

    /// The tag on this participant's media ([`crate::synth::audio_tag`]).
    pub fn audio_tag(&self) -> u32 {
        crate::synth::audio_tag(self.cfg.seed)
    }

    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// With `h264_alternate`: when the published picture changed colour,
    /// and to which.
    pub fn pattern_switches(&self) -> &[(Instant, (u8, u8, u8))] {
        self.pattern.as_ref().map_or(&[], |g| &g.switches[..])
    }

    /// Hand over (and forget) what was received so far: a long-running
    /// driver such as the load tool folds packets into its own statistics
    /// instead of keeping every packet of a whole run in memory.
    pub fn take_received(&mut self) -> HashMap<String, Vec<Received>> {
        std::mem::take(&mut self.state.received)
    }

    /// Hand over (and forget) when each slot could show frames so far
    /// ([`PeerState::decoded`]), as [`Peer::take_received`] does for packets.
    pub fn take_decoded(&mut self) -> HashMap<String, Vec<Instant>> {
        std::mem::take(&mut self.state.decoded)
    }

    /// Whether `pt` is a negotiated retransmission (RTX) payload type: a
    /// shell that simulates loss uses it to lose originals only.
    pub fn is_retransmission_pt(&self, pt: u8) -> bool {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .any(|p| p.resend().is_some_and(|r| *r == pt))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.local_addr
    }

    /// The first message to send.
    pub fn join(token: &str) -> ClientMessage {
        ClientMessage::Join {
            version: tern_sfu::signal::PROTOCOL_VERSION,
            token: token.to_string(),
        }
    }

    pub fn poll_output(&mut self) -> Option<PeerOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_timeout;
        if self.state.connected {
            if let Some(v) = &self.video {
                t = t.min(v.poll_timeout());
            }
            if let Some(p) = &self.pattern {
                t = t.min(p.poll_timeout());
            }
            if let Some(a) = &self.audio {
                t = t.min(a.poll_timeout());
            }
        }
        for &(at, _) in &self.pending_keyframes {
            t = t.min(at);
        }
        if let Some(&(at, _)) = self.encoding.front() {
            t = t.min(at + self.cfg.video_latency);
        }
        for d in self.decoders.values() {
            if let Some(at) = d.poll_timeout() {
                t = t.min(at);
            }
        }
        if let (Some(p), Some(last), false) =
            (self.cfg.pacing, self.pace_last, self.paced.is_empty())
        {
            t = t.min(last + p.interval);
        }
        t
    }

    /// A message from the bridge.
    pub fn handle_signal(&mut self, now: Instant, msg: ServerMessage) {
        match msg {
            ServerMessage::Joined {
                participant,
                participants,
                ..
            } => {
                self.state.joined = true;
                self.state.participant_id = Some(participant.id);
                for p in participants {
                    self.state
                        .participants
                        .insert(p.id, p.sources.into_iter().map(|s| s.id).collect());
                }
                self.offer();
            }
            ServerMessage::Answer { sdp } => {
                if let (Ok(answer), Some(p)) =
                    (SdpAnswer::from_sdp_string(&sdp), self.pending.take())
                {
                    match self.rtc.sdp_api().accept_answer(p, answer) {
                        Ok(()) => self.state.answered = true,
                        Err(e) => self.state.errors.push(("answer".into(), e.to_string())),
                    }
                }
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.state.participants.insert(
                    participant.id,
                    participant.sources.into_iter().map(|s| s.id).collect(),
                );
            }
            ServerMessage::ParticipantLeft { id } => {
                self.state.participants.remove(&id);
            }
            ServerMessage::Sources {
                participant,
                sources,
            } => {
                self.state
                    .participants
                    .insert(participant, sources.into_iter().map(|s| s.id).collect());
            }
            ServerMessage::Composite {
                width,
                height,
                tiles,
            } => self.state.composite = Some((width, height, tiles)),
            ServerMessage::Slots { slots } => {
                for s in slots {
                    if s.suspended.is_some() {
                        self.state.suspended.insert(s.mid.clone());
                    } else {
                        self.state.suspended.remove(&s.mid);
                    }
                    self.state.slots.insert(s.mid, s.source);
                }
            }
            ServerMessage::Recording {
                active,
                recording_id,
            } => {
                self.state.recording = active.then_some(recording_id);
            }
            ServerMessage::SendLimits {
                camera_max_bps,
                screen_max_bps,
            } => {
                // This peer publishes one video source: the cap for its kind.
                let cap = if self.cfg.video_source == "screen" {
                    screen_max_bps
                } else {
                    camera_max_bps
                };
                if let Some(g) = self.video.as_mut() {
                    g.cap_bitrate(u32::try_from(cap).unwrap_or(u32::MAX));
                }
                self.state.send_limits = Some((camera_max_bps, screen_max_bps));
            }
            ServerMessage::Error { code, message } => {
                self.state.errors.push((code.as_str().to_string(), message));
            }
            ServerMessage::Move { reason } => {
                self.state.errors.push(("move".to_string(), reason));
            }
            ServerMessage::SenderConstraints { source, max_height } => {
                if source == self.cfg.video_source
                    && let Some(g) = self.video.as_mut()
                {
                    for (i, l) in self.cfg.video.iter().enumerate() {
                        g.set_enabled(i, u32::from(l.height) <= max_height);
                    }
                    self.state.sender_max_height = Some(max_height);
                }
            }
            ServerMessage::DominantSpeaker {
                participant,
                recent,
            } => {
                self.state.dominant.push((now, participant));
                self.state.recent_speakers = recent;
            }
            ServerMessage::Speaking { levels } => {
                self.state.speaking = levels
                    .into_iter()
                    .map(|l| (l.participant, l.level))
                    .collect();
            }
        }
        self.drive(now);
    }

    /// Make the offer a Tern `joined` would trigger, without one: for servers
    /// whose signalling is not Tern's (the load tool's Janus target), where
    /// joining is the driver's business. The offer comes out of
    /// [`Peer::poll_output`] as `Signal(ClientMessage::Offer)`, exactly as
    /// after `joined`, and the answer goes back in as `ServerMessage::Answer`.
    pub fn start_offer(&mut self, now: Instant) {
        self.state.joined = true;
        self.offer();
        self.drive(now);
    }

    /// Answer an offer made by the server, and return the answer SDP.
    ///
    /// Tern never offers (the client does, see signalling.md), but other
    /// SFUs do: Janus VideoRoom offers to each subscriber the streams it
    /// subscribed to. What the offered m-lines carry is then the driver's
    /// knowledge: it names them with `ServerMessage::Slots`, as Tern would.
    /// Received media is recorded like on Tern's receive slots. May be
    /// called again for a renegotiation (a new offer from the server).
    pub fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String, PeerError> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| PeerError::Negotiation(e.to_string()))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PeerError::Negotiation(e.to_string()))?;
        self.state.joined = true;
        self.state.answered = true;
        self.drive(now);
        Ok(answer.to_sdp_string())
    }

    fn offer(&mut self) {
        let mut api = self.rtc.sdp_api();
        let mut sources = Vec::new();
        if self.cfg.audio {
            let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            sources.push(SourceDecl {
                mid: mid.to_string(),
                name: "mic".into(),
                kind: Kind::Audio,
                layers: vec![],
            });
            self.audio_mid = Some(mid);
        }
        if !self.cfg.video.is_empty() {
            let mut sim = Simulcast::new();
            for l in &self.cfg.video {
                sim.add_send_layer(SimulcastLayer::new(&l.rid));
            }
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
            sources.push(SourceDecl {
                mid: mid.to_string(),
                name: self.cfg.video_source.clone(),
                kind: Kind::Video,
                layers: self
                    .cfg
                    .video
                    .iter()
                    .map(|l| LayerDecl {
                        rid: l.rid.clone(),
                        height: u32::from(l.height),
                    })
                    .collect(),
            });
            self.video_mid = Some(mid);
        }
        for _ in 0..self.cfg.audio_slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        for _ in 0..self.cfg.video_slots {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        if let Some((offer, pending)) = api.apply() {
            self.pending = Some(pending);
            self.out.push_back(PeerOutput::Signal(ClientMessage::Offer {
                sdp: offer.to_sdp_string(),
                sources,
            }));
        }
    }

    /// Ask for at most `height` of every source (`None`) or of one.
    pub fn set_max_height(&mut self, source: Option<&str>, height: u32) {
        let msg = match source {
            None => ClientMessage::Constraints {
                default_max_height: Some(height),
                max_height: Default::default(),
                last_n: None,
                selected: None,
                on_stage: None,
                on_stage_max_height: None,
            },
            Some(s) => ClientMessage::Constraints {
                default_max_height: None,
                max_height: [(s.to_string(), height)].into_iter().collect(),
                last_n: None,
                selected: None,
                on_stage: None,
                on_stage_max_height: None,
            },
        };
        self.out.push_back(PeerOutput::Signal(msg));
    }

    /// Ask to see at most `last_n` video sources (-1: as many as slots),
    /// with `on_stage` sources always shown at up to `stage_height`.
    pub fn set_view(&mut self, last_n: i32, on_stage: &[&str], stage_height: u32) {
        self.out
            .push_back(PeerOutput::Signal(ClientMessage::Constraints {
                default_max_height: None,
                max_height: Default::default(),
                last_n: Some(last_n),
                selected: None,
                on_stage: Some(on_stage.iter().map(|s| s.to_string()).collect()),
                on_stage_max_height: Some(stage_height),
            }));
    }

    /// Send a PLI for the source received on slot `mid`.
    pub fn request_keyframe(&mut self, now: Instant, mid: &str) {
        let mid = Mid::from(mid);
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.drive(now);
    }

    pub fn leave(&mut self) {
        self.out.push_back(PeerOutput::Signal(ClientMessage::Leave));
        self.rtc.disconnect();
        self.state.closed = true;
    }

    /// A datagram for this peer.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if let Ok(r) = Receive::new(Protocol::Udp, source, self.cfg.local_addr, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
        self.drive(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Media first: str0m only sends what was written before a timeout
        // (it timestamps queued packets there), so writing after it would
        // need a second timeout at the same instant to send the frame.
        self.generate(now);
        self.request_keyframes(now);
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drive(now);
    }

    /// Send the PLIs the slots' decoders ask for, as a browser does.
    fn request_keyframes(&mut self, now: Instant) {
        for (&mid, d) in &mut self.decoders {
            if !d.poll_keyframe_request(now) {
                continue;
            }
            if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                *self.state.plis_sent.entry(mid.to_string()).or_default() += 1;
            }
        }
    }

    fn drive(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t.max(now);
                    return;
                }
                Ok(Output::Transmit(t)) => self.out.push_back(PeerOutput::Transmit {
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(e) => {
                    self.state.errors.push(("rtc".into(), e.to_string()));
                    self.state.closed = true;
                    self.next_timeout = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => {
                self.state.connected = true;
                if std::mem::take(&mut self.resumed) {
                    self.gen_buf.clear();
                    if let Some(g) = self.video.as_mut() {
                        g.poll(now, &mut self.gen_buf);
                        for layer in 0..self.rids.len() {
                            g.request_keyframe(layer);
                        }
                    }
                    if let Some(a) = self.audio.as_mut() {
                        a.poll(now, &mut self.gen_buf);
                    }
                    self.gen_buf.clear();
                }
            }
            Event::RtpPacket(p) => {
                let mid = p.header.ext_vals.mid.or_else(|| {
                    self.rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                });
                let Some(mid) = mid else { return };
                if self.cfg.record_video && Some(p.header.payload_type) != self.opus_pt() {
                    self.state
                        .video_packets
                        .entry(mid.to_string())
                        .or_default()
                        .push(crate::state::HeardVideo {
                            at: now,
                            seq: *p.seq_no,
                            ts: p.header.timestamp,
                            marker: p.header.marker,
                            payload: p.payload.to_vec(),
                        });
                }
                if self.cfg.record_audio && Some(p.header.payload_type) == self.opus_pt() {
                    self.state
                        .audio_payloads
                        .entry(mid.to_string())
                        .or_default()
                        .push(crate::state::HeardAudio {
                            at: now,
                            ts: p.header.timestamp,
                            payload: p.payload.to_vec(),
                        });
                }
                let vp8 = tern_sfu::vp8::parse(&p.payload);
                let block = read_block(&p.payload);
                let r = Received {
                    seq: *p.seq_no,
                    ts: p.header.timestamp,
                    pid: vp8.and_then(|v| v.pid.map(|(p, _)| p)),
                    keyframe: vp8.is_some_and(|v| v.keyframe_start),
                    height: vp8.and_then(|v| v.dims.map(|(_, h)| h)),
                    layer: block.map(|b| b.layer),
                    frame: block.map(|b| b.frame),
                    index: block.map_or(0, |b| b.index),
                    count: block.map_or(1, |b| b.count),
                    at: now,
                    sent_us: block.map(|b| b.sent_us),
                    audio_level: p.header.ext_vals.audio_level,
                    tag: crate::synth::read_tag(&p.payload),
                };
                if let (Some(v), Some(b)) = (vp8, block)
                    && let Some(pid) = v.pid
                {
                    let shown = self.decoders.entry(mid).or_default().handle_packet(
                        now,
                        VideoPacket {
                            ts: r.ts,
                            pid,
                            keyframe_start: v.keyframe_start,
                            index: b.index,
                            count: b.count,
                        },
                    );
                    if shown > 0 {
                        let d = match self.state.decoded.get_mut(&*mid) {
                            Some(d) => d,
                            None => self.state.decoded.entry(mid.to_string()).or_default(),
                        };
                        d.extend(std::iter::repeat_n(now, shown as usize));
                    }
                }
                // Looked up by &str: no String per packet.
                match self.state.received.get_mut(&*mid) {
                    Some(v) => v.push(r),
                    None => {
                        self.state.received.insert(mid.to_string(), vec![r]);
                    }
                }
            }
            Event::KeyframeRequest(k) => {
                let rid = k.rid.map(|r| r.to_string()).unwrap_or_default();
                *self.state.keyframe_requests.entry(rid).or_default() += 1;
                if let Some(i) = k
                    .rid
                    .and_then(|rid| self.rids.iter().position(|r| *r == rid))
                {
                    self.pending_keyframes
                        .push((now + self.cfg.keyframe_response_delay, i));
                }
            }
            Event::SenderFeedback(f) => {
                self.state
                    .sender_reports
                    .entry(f.mid.to_string())
                    .or_default()
                    .push((now, f.sender_info));
            }
            Event::RawPacket(p) => {
                if let RawPacket::RtcpTx(r) = *p {
                    *self.state.rtcp_sent.entry(rtcp_kind(&r)).or_default() += 1;
                }
            }
            Event::MediaEgressStats(s) => {
                let key = format!(
                    "{}/{}",
                    s.mid,
                    s.rid.map(|r| r.to_string()).unwrap_or_default()
                );
                self.state.nacks_by_stream.insert(key, s.nacks);
            }
            _ => {}
        }
    }

    /// The payload type the peer negotiated for Opus.
    fn opus_pt(&self) -> Option<Pt> {
        pt_of(&self.rtc, Codec::Opus)
    }

    /// Write garbage "RTP" from this peer's own (authenticated) address.
    pub fn garbage_rtp(i: u32) -> Vec<u8> {
        let mut p = vec![
            0x80,
            96,
            (i >> 8) as u8,
            i as u8,
            0,
            0,
            0,
            1,
            0xde,
            0xad,
            0xbe,
            0xef,
        ];
        p.resize(200, i as u8);
        p
    }
}

/// Move what slots collected (by mid) to their sources' history: a new
/// session starts its slots and mids afresh, the sources stay.
fn into_history<T>(
    by_mid: HashMap<String, Vec<T>>,
    slots: &HashMap<String, Option<String>>,
    history: &mut HashMap<String, Vec<T>>,
) {
    for (mid, items) in by_mid {
        if let Some(Some(source)) = slots.get(&mid) {
            history.entry(source.clone()).or_default().extend(items);
        }
    }
}

fn rtcp_kind(r: &Rtcp) -> &'static str {
    match r {
        Rtcp::SenderReport(_) => "sr",
        Rtcp::ReceiverReport(_) => "rr",
        Rtcp::ExtendedReport(_) => "xr",
        Rtcp::SourceDescription(_) => "sdes",
        Rtcp::Goodbye(_) => "bye",
        Rtcp::Nack(_) => "nack",
        Rtcp::Pli(_) => "pli",
        Rtcp::Fir(_) => "fir",
        Rtcp::Twcc(_) => "twcc",
        Rtcp::Remb(_) => "remb",
        _ => "other",
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}
