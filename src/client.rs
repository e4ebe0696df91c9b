//! A native participant on real sockets: the tokio shell around
//! [`tern_peer::Peer`]. Used by the integration tests and the load tool.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};
use tern_peer::synth::LayerSpec;
use tern_peer::{Peer, PeerConfig, PeerOutput, Talk};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub use tern_peer::{PeerState as ClientState, Received};

/// What to publish and how to receive.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The bridge's HTTP address (signalling at `/signal`).
    pub bridge: SocketAddr,
    pub token: String,
    pub audio: bool,
    /// Simulcast layers of the video source; empty = no video.
    pub video: Vec<LayerSpec>,
    /// The video source's name: "camera", or "screen" for a screen share.
    pub video_source: String,
    pub audio_slots: usize,
    pub video_slots: usize,
    /// Local IP for the media socket.
    pub bind_ip: IpAddr,
    /// Drop every Nth incoming RTP datagram before the peer sees it
    /// (simulated loss on the bridge → client leg, to exercise NACK/RTX).
    pub drop_every_nth_inbound: Option<u64>,
    /// See [`PeerConfig::keyframe_response_delay`].
    pub keyframe_response_delay: Duration,
    /// When the microphone speaks and when it is quiet (see
    /// [`PeerConfig::talk`]); `None`: always the same level.
    pub talk: Option<Talk>,
    pub seed: u64,
    /// Publish real Opus carrying a sine at this frequency (see
    /// [`PeerConfig::tone_hz`]).
    pub tone_hz: Option<f32>,
    /// Keep every Opus packet received (`ClientState::audio_payloads`).
    pub record_audio: bool,
    /// Publish audio no Opus decoder takes (see
    /// [`PeerConfig::corrupt_audio`]).
    pub corrupt_audio: bool,
    /// Publish real H.264 of one colour (see [`PeerConfig::h264_pattern`]).
    pub h264_pattern: Option<(u8, u8, u8)>,
    /// Switch the picture to this colour and back every period.
    pub h264_alternate: Option<((u8, u8, u8), Duration)>,
    /// Keep every video packet received (`ClientState::video_packets`).
    pub record_video: bool,
}

impl ClientOptions {
    pub fn new(bridge: SocketAddr, token: String) -> Self {
        Self {
            bridge,
            token,
            audio: true,
            video: LayerSpec::ladder(),
            video_source: "camera".into(),
            audio_slots: 4,
            video_slots: 4,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            drop_every_nth_inbound: None,
            keyframe_response_delay: Duration::ZERO,
            talk: None,
            seed: 1,
            tone_hz: None,
            record_audio: false,
            corrupt_audio: false,
            h264_pattern: None,
            h264_alternate: None,
            record_video: false,
        }
    }
}

/// State shared with the test: the peer's observations plus what the shell
/// itself did.
pub struct Shared {
    pub peer: Peer,
    /// RTP sequence numbers the shell dropped on purpose.
    pub dropped_inbound: Vec<u64>,
}

#[derive(Debug)]
enum Cmd {
    MaxHeight(Option<String>, u32),
    Pli(String),
    Send(ClientMessage),
    /// Send `n` datagrams of garbage "RTP" from the client's own address.
    InjectGarbage(u32),
    Leave,
}

pub struct Client {
    shared: Arc<Mutex<Shared>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A view of the client's state while the lock is held.
pub struct StateGuard<'a>(MutexGuard<'a, Shared>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = ClientState;
    fn deref(&self) -> &ClientState {
        self.0.peer.state()
    }
}

impl StateGuard<'_> {
    pub fn dropped_inbound(&self) -> &[u64] {
        &self.0.dropped_inbound
    }

    /// See [`Peer::pattern_switches`].
    pub fn pattern_switches(&self) -> &[(Instant, (u8, u8, u8))] {
        self.0.peer.pattern_switches()
    }
}

fn lock(s: &Arc<Mutex<Shared>>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock only happens in a failing test.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Client {
    /// Connect, join and negotiate; returns once the answer is applied.
    pub async fn connect(opts: ClientOptions) -> anyhow::Result<Client> {
        let url = format!("ws://{}/signal", opts.bridge);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        send(&mut ws, &Peer::join(&opts.token)).await?;
        let socket = UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
        let mut cfg = PeerConfig::new(socket.local_addr()?);
        cfg.audio = opts.audio;
        cfg.video = opts.video.clone();
        cfg.video_source = opts.video_source.clone();
        cfg.audio_slots = opts.audio_slots;
        cfg.video_slots = opts.video_slots;
        cfg.keyframe_response_delay = opts.keyframe_response_delay;
        cfg.talk = opts.talk.clone();
        cfg.seed = opts.seed;
        cfg.tone_hz = opts.tone_hz;
        cfg.record_audio = opts.record_audio;
        cfg.corrupt_audio = opts.corrupt_audio;
        cfg.h264_pattern = opts.h264_pattern;
        cfg.h264_alternate = opts.h264_alternate;
        cfg.record_video = opts.record_video;
        let mut peer = Peer::new(cfg, Instant::now());

        // Until `joined` arrives nothing else can happen.
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .context("no answer to join")?
                .ok_or_else(|| anyhow!("bridge closed the connection"))??;
            if let Message::Text(t) = msg {
                let m: ServerMessage = serde_json::from_str(&t)?;
                if let ServerMessage::Error { code, message } = &m {
                    bail!("join refused: {}: {message}", code.as_str());
                }
                let joined = matches!(m, ServerMessage::Joined { .. });
                peer.handle_signal(Instant::now(), m);
                if joined {
                    break;
                }
            }
        }
        let shared = Arc::new(Mutex::new(Shared {
            peer,
            dropped_inbound: Vec::new(),
        }));
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            shared.clone(),
            socket,
            ws,
            cmd_rx,
            opts.drop_every_nth_inbound,
        ));
        let client = Client { shared, cmd, task };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let st = client.state();
                if st.answered {
                    break;
                }
                if let Some((code, msg)) = st.errors.first() {
                    bail!("negotiation failed: {code}: {msg}");
                }
            }
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
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard(lock(&self.shared))
    }

    pub fn send(&self, msg: ClientMessage) {
        let _ = self.cmd.send(Cmd::Send(msg));
    }

    /// Ask for at most `height` of every source (`None`) or of one.
    pub fn set_max_height(&self, source: Option<&str>, height: u32) {
        let _ = self
            .cmd
            .send(Cmd::MaxHeight(source.map(str::to_string), height));
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

    /// Hand over (and forget) the packets received so far, so a long run
    /// does not keep every packet.
    pub fn take_received(&self) -> std::collections::HashMap<String, Vec<Received>> {
        lock(&self.shared).peer.take_received()
    }

    /// The session ended: signalling closed or failed.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stop abruptly (as a crashed browser would): no `leave`.
    pub fn abort(self) {
        self.task.abort();
    }
}

async fn send(ws: &mut Ws, m: &ClientMessage) -> anyhow::Result<()> {
    ws.send(Message::Text(serde_json::to_string(m)?.into()))
        .await?;
    Ok(())
}

async fn run(
    shared: Arc<Mutex<Shared>>,
    socket: UdpSocket,
    mut ws: Ws,
    mut cmd: mpsc::UnboundedReceiver<Cmd>,
    drop_every: Option<u64>,
) -> anyhow::Result<()> {
    let state = UdpSocketState::new((&socket).into())?;
    let mut storage: Vec<Vec<u8>> = (0..BATCH_SIZE)
        .map(|_| vec![0u8; (2048 * state.gro_segments()).max(2048)])
        .collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut last_arrival: Option<Instant> = None;
    let mut remote: Option<SocketAddr> = None;
    let mut inbound_rtp = 0u64;
    let mut leaving = false;
    loop {
        // Flush what the peer wants sent, then sleep until it needs time.
        let (transmits, signals, wake) = {
            let mut s = lock(&shared);
            let mut transmits = Vec::new();
            let mut signals = Vec::new();
            while let Some(o) = s.peer.poll_output() {
                match o {
                    PeerOutput::Transmit {
                        destination,
                        contents,
                    } => transmits.push((destination, contents)),
                    PeerOutput::Signal(m) => signals.push(m),
                }
            }
            (transmits, signals, s.peer.poll_timeout())
        };
        for (to, data) in transmits {
            remote = Some(to);
            let _ = socket.send_to(&data, to).await;
        }
        for m in signals {
            send(&mut ws, &m).await?;
        }
        if leaving {
            let _ = ws.close(None).await;
            return Ok(());
        }
        tokio::select! {
            r = socket.readable() => {
                r?;
                let (n, meta) = match recv_batch(&socket, &state, &mut storage, &mut meta) {
                    Ok(n) => (n, &meta),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    // ICMP errors surface here on Linux; nothing to do.
                    Err(_) => continue,
                };
                let now = Instant::now();
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                let mut s = lock(&shared);
                for (m, b) in meta.iter().zip(&storage).take(n) {
                    let stride = m.stride.max(1);
                    for data in b[..m.len.min(b.len())].chunks(stride) {
                        // Original RTP (not RTCP, PT 192..=223, and not a
                        // retransmission) is what we drop on purpose: a test
                        // that asks for every loss to be repaired would
                        // otherwise depend on how often str0m's receiver
                        // re-asks for a lost repair, which it stops after
                        // five tries, within ~200 ms on a starved host.
                        if let Some(every) = drop_every
                            && data.len() > 12 && (128..192).contains(&data[0]) && !(192..=223).contains(&data[1])
                            && !s.peer.is_retransmission_pt(data[1] & 0x7f)
                        {
                            inbound_rtp += 1;
                            if inbound_rtp.is_multiple_of(every) {
                                let seq = u16::from_be_bytes([data[2], data[3]]);
                                s.dropped_inbound.push(u64::from(seq));
                                continue;
                            }
                        }
                        let at = arrival(now, wall, m.timestamp, &mut last_arrival);
                        s.peer.handle_datagram(at, m.addr, data);
                    }
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let msg: ServerMessage = serde_json::from_str(&t)?;
                    let now = Instant::now();
                    last_arrival = Some(now);
                    lock(&shared).peer.handle_signal(now, msg);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    lock(&shared).peer.leave();
                    return Ok(());
                }
            },
            c = cmd.recv() => {
                let now = Instant::now();
                last_arrival = Some(now);
                let mut s = lock(&shared);
                match c {
                    Some(Cmd::MaxHeight(src, h)) => s.peer.set_max_height(src.as_deref(), h),
                    Some(Cmd::Pli(mid)) => s.peer.request_keyframe(now, &mid),
                    Some(Cmd::Send(m)) => {
                        drop(s);
                        send(&mut ws, &m).await?;
                    }
                    Some(Cmd::InjectGarbage(n)) => {
                        drop(s);
                        if let Some(to) = remote {
                            for i in 0..n {
                                let _ = socket.send_to(&Peer::garbage_rtp(i), to).await;
                            }
                        }
                    }
                    Some(Cmd::Leave) | None => {
                        s.peer.leave();
                        leaving = true;
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                last_arrival = Some(now);
                lock(&shared).peer.handle_timeout(now);
            }
        }
    }
}

/// One `recvmmsg` (with GRO where the kernel offers it) into `storage`.
fn recv_batch(
    socket: &UdpSocket,
    state: &UdpSocketState,
    storage: &mut [Vec<u8>],
    meta: &mut [RecvMeta],
) -> std::io::Result<usize> {
    let mut bufs: Vec<IoSliceMut<'_>> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    socket.try_io(tokio::io::Interest::READABLE, || {
        state.recv(socket.into(), &mut bufs, meta)
    })
}

/// When a datagram arrived, for str0m: the kernel's receive time where it
/// gave one, else now. The receiver's congestion feedback reports these
/// times to the sender, whose bandwidth probes measure how fast a burst
/// arrived; stamping datagrams when this task got round to them (behind
/// a busy host) squeezes a 15 ms probe into one instant and the sender
/// can never measure more than it already sends. Never before the last
/// time given (str0m's clock must not go back) nor after `now`.
fn arrival(
    now: Instant,
    wall: Duration,
    kernel: Option<Duration>,
    last: &mut Option<Instant>,
) -> Instant {
    let at = kernel
        .map(|k| now.checked_sub(wall.saturating_sub(k)).unwrap_or(now))
        .unwrap_or(now);
    let at = match *last {
        Some(l) => at.max(l),
        None => at,
    };
    *last = Some(at);
    at
}
