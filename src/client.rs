//! A native WebRTC participant built on str0m: speaks the signalling protocol,
//! publishes synthetic VP8 simulcast and Opus-sized audio, and records exactly
//! what it receives. Used by the Rust integration tests and the load tool.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tern_sfu::signal::{ClientMessage, Kind, LayerDecl, ServerMessage, SourceDecl};
use tern_sfu::synth::{AudioGen, GenPacket, LayerSpec, VideoGen, read_block};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// What to publish and how to receive.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The bridge's HTTP address (signalling at `/signal`).
    pub bridge: SocketAddr,
    pub token: String,
    pub audio: bool,
    /// Simulcast layers of the camera source; empty = no video.
    pub video: Vec<LayerSpec>,
    pub audio_slots: usize,
    pub video_slots: usize,
    /// Local IP for the media socket.
    pub bind_ip: IpAddr,
    /// Drop every Nth incoming RTP datagram before str0m sees it (simulated
    /// loss on the bridge → client leg, to exercise NACK/RTX).
    pub drop_every_nth_inbound: Option<u64>,
    /// How long the publisher takes to answer a keyframe request (an encoder
    /// plus a network round trip; on loopback the bridge would otherwise
    /// always get its keyframe within one frame).
    pub keyframe_response_delay: Duration,
    pub seed: u64,
}

impl ClientOptions {
    pub fn new(bridge: SocketAddr, token: String) -> Self {
        Self {
            bridge,
            token,
            audio: true,
            video: LayerSpec::ladder(),
            audio_slots: 4,
            video_slots: 4,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            drop_every_nth_inbound: None,
            keyframe_response_delay: Duration::ZERO,
            seed: 1,
        }
    }
}

/// One RTP packet as received on a slot.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub seq: u64,
    pub ts: u32,
    pub pid: Option<u16>,
    pub keyframe: bool,
    /// Height from a keyframe header.
    pub height: Option<u16>,
    pub layer: Option<u8>,
    pub frame: Option<u32>,
    pub index: u16,
    pub count: u16,
    pub at: Instant,
    pub audio_level: Option<i8>,
}

/// Everything the client has observed; read it through [`Client::state`].
#[derive(Debug, Default)]
pub struct ClientState {
    pub participant_id: Option<String>,
    pub joined: bool,
    pub connected: bool,
    /// Remote participants by id (from joined/participant_joined/left).
    pub participants: BTreeMap<String, Vec<String>>,
    /// Slot mid → source id.
    pub slots: HashMap<String, Option<String>>,
    pub received: HashMap<String, Vec<Received>>,
    /// Keyframe requests the bridge sent this publisher, per layer rid.
    pub keyframe_requests: HashMap<String, u64>,
    /// NACKs the bridge sent this publisher per (mid, rid), from str0m's
    /// cumulative egress stats.
    pub nacks_by_stream: HashMap<String, u64>,
    pub errors: Vec<(String, String)>,
    pub dropped_inbound: Vec<u64>,
    pub packets_sent: u64,
    pub closed: bool,
}

impl ClientState {
    /// Packets received for a source, by looking up which slot carries it now.
    pub fn received_for(&self, source: &str) -> &[Received] {
        self.slots
            .iter()
            .find(|(_, s)| s.as_deref() == Some(source))
            .and_then(|(mid, _)| self.received.get(mid))
            .map_or(&[], Vec::as_slice)
    }

    pub fn nacks_received(&self) -> u64 {
        self.nacks_by_stream.values().sum()
    }

    pub fn slot_of(&self, source: &str) -> Option<String> {
        self.slots
            .iter()
            .find(|(_, s)| s.as_deref() == Some(source))
            .map(|(m, _)| m.clone())
    }
}

#[derive(Debug)]
enum Cmd {
    Send(ClientMessage),
    Pli(String),
    /// Send `n` datagrams of garbage "RTP" from the client's own (authenticated) address.
    InjectGarbage(u32),
    Leave,
}

pub struct Client {
    state: Arc<Mutex<ClientState>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Client {
    /// Connect, join and negotiate; returns once the answer is applied.
    pub async fn connect(opts: ClientOptions) -> anyhow::Result<Client> {
        let url = format!("ws://{}/signal", opts.bridge);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let join = ClientMessage::Join {
            version: 1,
            token: opts.token.clone(),
        };
        ws.send(Message::Text(serde_json::to_string(&join)?.into()))
            .await?;
        let state = Arc::new(Mutex::new(ClientState::default()));
        // Wait for `joined` (or an error).
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .context("no answer to join")?
                .ok_or_else(|| anyhow!("bridge closed the connection"))??;
            if let Message::Text(t) = msg {
                let m: ServerMessage = serde_json::from_str(&t)?;
                let joined = matches!(m, ServerMessage::Joined { .. });
                if let ServerMessage::Error { code, message } = &m {
                    bail!("join refused: {code:?}: {message}");
                }
                apply_signal(&mut lock(&state), m);
                if joined {
                    break;
                }
            }
        }

        let socket = UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_millis(500)))
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, Protocol::Udp)?);

        let mut api = rtc.sdp_api();
        let mut sources = Vec::new();
        let mut audio_mid = None;
        let mut video_mid = None;
        if opts.audio {
            let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            sources.push(SourceDecl {
                mid: mid.to_string(),
                name: "mic".into(),
                kind: Kind::Audio,
                layers: vec![],
            });
            audio_mid = Some(mid);
        }
        if !opts.video.is_empty() {
            let mut sim = Simulcast::new();
            for l in &opts.video {
                sim.add_send_layer(SimulcastLayer::new(&l.rid));
            }
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
            sources.push(SourceDecl {
                mid: mid.to_string(),
                name: "camera".into(),
                kind: Kind::Video,
                layers: opts
                    .video
                    .iter()
                    .map(|l| LayerDecl {
                        rid: l.rid.clone(),
                        height: u32::from(l.height),
                    })
                    .collect(),
            });
            video_mid = Some(mid);
        }
        for _ in 0..opts.audio_slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        for _ in 0..opts.video_slots {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().ok_or_else(|| anyhow!("nothing to offer"))?;
        let msg = ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            sources,
        };
        ws.send(Message::Text(serde_json::to_string(&msg)?.into()))
            .await?;

        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            opts: opts.clone(),
            rtc,
            socket,
            local,
            state: state.clone(),
            pending: Some(pending),
            audio_mid,
            video_mid,
            video: (!opts.video.is_empty())
                .then(|| VideoGen::new(opts.video.clone(), now, opts.seed)),
            audio: opts.audio.then(|| AudioGen::new(now, opts.seed)),
            inbound_rtp: 0,
            gen_buf: Vec::new(),
            pending_keyframes: Vec::new(),
        };
        let task = tokio::spawn(driver.run(ws, cmd_rx));
        let client = Client { state, cmd, task };
        // Negotiation done when the answer is applied.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&client.state).slots_ready() {
            if Instant::now() > deadline {
                bail!("no answer within 10 s");
            }
            if client.task.is_finished() {
                bail!("client task ended during negotiation");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(client)
    }

    /// Look at what the client has seen so far.
    pub fn state(&self) -> std::sync::MutexGuard<'_, ClientState> {
        lock(&self.state)
    }

    pub fn send(&self, msg: ClientMessage) {
        let _ = self.cmd.send(Cmd::Send(msg));
    }

    /// Ask for at most `height` of every source (or of one).
    pub fn set_max_height(&self, source: Option<&str>, height: u32) {
        let msg = match source {
            None => ClientMessage::Constraints {
                default_max_height: Some(height),
                max_height: Default::default(),
            },
            Some(s) => ClientMessage::Constraints {
                default_max_height: None,
                max_height: [(s.to_string(), height)].into_iter().collect(),
            },
        };
        self.send(msg);
    }

    /// Send a PLI for the source received on slot `mid`.
    pub fn request_keyframe(&self, mid: &str) {
        let _ = self.cmd.send(Cmd::Pli(mid.to_string()));
    }

    pub fn inject_garbage(&self, n: u32) {
        let _ = self.cmd.send(Cmd::InjectGarbage(n));
    }

    /// Leave the room and wait for the client to stop.
    pub async fn leave(self) -> anyhow::Result<()> {
        let _ = self.cmd.send(Cmd::Leave);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(r) => r?,
            Err(_) => bail!("client did not stop after leave"),
        }
    }

    /// Stop abruptly (as a crashed browser would): no `leave`.
    pub fn abort(self) {
        self.task.abort();
    }
}

fn lock(s: &Arc<Mutex<ClientState>>) -> std::sync::MutexGuard<'_, ClientState> {
    // A panic while holding the lock only happens in a failing test.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientState {
    fn slots_ready(&self) -> bool {
        self.connected || !self.slots.is_empty() || self.closed || !self.errors.is_empty()
    }
}

fn apply_signal(st: &mut ClientState, m: ServerMessage) {
    match m {
        ServerMessage::Joined {
            participant,
            participants,
            ..
        } => {
            st.joined = true;
            st.participant_id = Some(participant.id);
            for p in participants {
                st.participants
                    .insert(p.id, p.sources.into_iter().map(|s| s.id).collect());
            }
        }
        ServerMessage::ParticipantJoined { participant } => {
            st.participants.insert(
                participant.id,
                participant.sources.into_iter().map(|s| s.id).collect(),
            );
        }
        ServerMessage::ParticipantLeft { id } => {
            st.participants.remove(&id);
        }
        ServerMessage::Sources {
            participant,
            sources,
        } => {
            st.participants
                .insert(participant, sources.into_iter().map(|s| s.id).collect());
        }
        ServerMessage::Slots { slots } => {
            for s in slots {
                st.slots.insert(s.mid, s.source);
            }
        }
        ServerMessage::Error { code, message } => {
            st.errors.push((code.as_str().to_string(), message));
        }
        ServerMessage::Answer { .. } => {}
    }
}

struct Driver {
    opts: ClientOptions,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    state: Arc<Mutex<ClientState>>,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    video: Option<VideoGen>,
    audio: Option<AudioGen>,
    inbound_rtp: u64,
    gen_buf: Vec<GenPacket>,
    /// Keyframe requests not yet answered: (when, layer).
    pending_keyframes: Vec<(Instant, usize)>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Driver {
    async fn run(
        mut self,
        mut ws: Ws,
        mut cmd: mpsc::UnboundedReceiver<Cmd>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 2048];
        let mut remote: Option<SocketAddr> = None;
        loop {
            let rtc_timeout = self.drain(&mut remote).await?;
            let media_at = self.media_timeout();
            let wake = media_at.map_or(rtc_timeout, |m| m.min(rtc_timeout));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, src) = r?;
                    remote = Some(src);
                    let data = &buf[..n];
                    // RTP/RTCP first byte is 128..=191; drop some RTP to simulate loss.
                    if let Some(every) = self.opts.drop_every_nth_inbound
                        && (128..192).contains(&data[0]) && n > 12 && !(192..=223).contains(&data[1])
                    {
                        self.inbound_rtp += 1;
                        if self.inbound_rtp.is_multiple_of(every) {
                            let seq = u16::from_be_bytes([data[2], data[3]]);
                            lock(&self.state).dropped_inbound.push(u64::from(seq));
                            continue;
                        }
                    }
                    if let Ok(r) = Receive::new(Protocol::Udp, src, self.local, data) {
                        let _ = self.rtc.handle_input(Input::Receive(Instant::now(), r));
                    }
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let msg: ServerMessage = serde_json::from_str(&t)?;
                        if let ServerMessage::Answer { sdp } = &msg {
                            let answer = SdpAnswer::from_sdp_string(sdp)?;
                            if let Some(p) = self.pending.take() {
                                self.rtc.sdp_api().accept_answer(p, answer)?;
                            }
                        }
                        apply_signal(&mut lock(&self.state), msg);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        lock(&self.state).closed = true;
                        return Ok(());
                    }
                },
                c = cmd.recv() => match c {
                    Some(Cmd::Send(m)) => {
                        ws.send(Message::Text(serde_json::to_string(&m)?.into())).await?;
                    }
                    Some(Cmd::Pli(mid)) => {
                        let mid = Mid::from(mid.as_str());
                        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
                            rx.request_keyframe(KeyframeRequestKind::Pli);
                        }
                    }
                    Some(Cmd::InjectGarbage(n)) => {
                        if let Some(to) = remote {
                            for i in 0..n {
                                let mut p = vec![0x80, 96, (i >> 8) as u8, i as u8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
                                p.resize(200, i as u8);
                                let _ = self.socket.send_to(&p, to).await;
                            }
                        }
                    }
                    Some(Cmd::Leave) | None => {
                        let _ = ws.send(Message::Text(serde_json::to_string(&ClientMessage::Leave)?.into())).await;
                        let _ = ws.close(None).await;
                        self.rtc.disconnect();
                        lock(&self.state).closed = true;
                        return Ok(());
                    }
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                    self.generate(now);
                }
            }
        }
    }

    fn media_timeout(&self) -> Option<Instant> {
        if !lock(&self.state).connected {
            return None;
        }
        let v = self.video.as_ref().map(VideoGen::poll_timeout);
        let a = self.audio.as_ref().map(AudioGen::poll_timeout);
        match (v, a) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    fn generate(&mut self, now: Instant) {
        if !lock(&self.state).connected {
            return;
        }
        let mut sent = 0;
        if let Some(g) = self.video.as_mut() {
            self.pending_keyframes.retain(|&(at, layer)| {
                let due = at <= now;
                if due {
                    g.request_keyframe(layer);
                }
                !due
            });
        }
        if let (Some(g), Some(mid)) = (self.video.as_mut(), self.video_mid) {
            self.gen_buf.clear();
            g.poll(now, &mut self.gen_buf);
            let rids: Vec<Rid> = g.layers().map(|l| Rid::from(l.rid.as_str())).collect();
            let pt = pt_of(&self.rtc, Codec::Vp8);
            for p in self.gen_buf.drain(..) {
                let (Some(pt), Some(rid)) = (pt, rids.get(p.layer)) else {
                    continue;
                };
                if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, Some(*rid)) {
                    tx.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, now, p.payload)
                            .marker(p.marker)
                            .nackable(true),
                    );
                    sent += 1;
                }
            }
        }
        if let (Some(g), Some(mid)) = (self.audio.as_mut(), self.audio_mid) {
            self.gen_buf.clear();
            g.poll(now, &mut self.gen_buf);
            let level = g.level;
            let pt = pt_of(&self.rtc, Codec::Opus);
            for p in self.gen_buf.drain(..) {
                let Some(pt) = pt else { continue };
                let ext = ExtensionValues {
                    audio_level: Some(-(level as i8)),
                    voice_activity: Some(true),
                    ..Default::default()
                };
                if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                    tx.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, now, p.payload)
                            .marker(p.marker)
                            .ext_vals(ext),
                    );
                    sent += 1;
                }
            }
        }
        lock(&self.state).packets_sent += sent;
    }

    /// Drain str0m's outputs; returns its next timeout.
    async fn drain(&mut self, remote: &mut Option<SocketAddr>) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    *remote = Some(t.destination);
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let mut st = lock(&self.state);
        match e {
            Event::Connected => st.connected = true,
            Event::RtpPacket(p) => {
                let Some(mid) = p.header.ext_vals.mid.or_else(|| {
                    self.rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                }) else {
                    return;
                };
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
                    at: Instant::now(),
                    audio_level: p.header.ext_vals.audio_level,
                };
                st.received.entry(mid.to_string()).or_default().push(r);
            }
            Event::KeyframeRequest(k) => {
                let rid = k.rid.map(|r| r.to_string()).unwrap_or_default();
                *st.keyframe_requests.entry(rid).or_default() += 1;
                drop(st);
                if let (Some(g), Some(rid)) = (self.video.as_ref(), k.rid) {
                    let idx = g.layers().position(|l| l.rid == rid.to_string());
                    if let Some(i) = idx {
                        let at = Instant::now() + self.opts.keyframe_response_delay;
                        self.pending_keyframes.push((at, i));
                    }
                }
            }
            Event::MediaEgressStats(s) => {
                let key = format!(
                    "{}/{}",
                    s.mid,
                    s.rid.map(|r| r.to_string()).unwrap_or_default()
                );
                st.nacks_by_stream.insert(key, s.nacks);
            }
            _ => {}
        }
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}
