//! One participant of a run: a tokio task that owns a [`Peer`] and its UDP
//! socket, joins through the target's signalling (Tern's WebSocket or a
//! Janus session), drives the peer until the window closes, and folds what
//! it received into its [`PeerReport`]. It must not share its peer: nothing
//! else touches it, so there is no lock on the media path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tern_peer::synth::LayerSpec;
use tern_peer::{Pacing, Peer, PeerConfig, PeerOutput};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Target;
use crate::ctx::{Ctx, Spec, lock};
use crate::error::{Error, Result};
use crate::janus;
use crate::join::tern_token;
use crate::stats::{PeerAcc, PeerReport};

/// Time allowed for one participant to connect, join and negotiate.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Received packets are folded into statistics this often.
const FOLD_EVERY: Duration = Duration::from_millis(250);
/// Datagrams drained per wakeup of a participant's socket.
const RECV_BURST: usize = 64;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a participant talks to the server.
enum Signalling {
    /// Tern's WebSocket, and its URL (for errors).
    Tern(Box<Ws>, String),
    Janus(Box<janus::Session>),
}

pub(crate) async fn participant(ctx: Arc<Ctx>, spec: Spec) -> PeerReport {
    tokio::time::sleep_until(tokio::time::Instant::from_std(spec.start_at)).await;
    let began = Instant::now();
    let mut report = PeerReport {
        name: spec.name.clone(),
        room: spec.room.clone(),
        publisher: spec.publish,
        receives: spec.receive,
        error: None,
        connect_time: None,
        first_media_time: None,
        acc: PeerAcc::default(),
        packets_sent: 0,
        plis_sent: 0,
        asked_region: ctx.args.region_for(spec.publish).map(str::to_string),
        bridge: None,
        bridge_region: None,
    };
    if let Err(e) = drive(&ctx, &spec, began, &mut report).await {
        ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
        report.error = Some(e.with_causes());
    }
    report.first_media_time = report
        .acc
        .first_media
        .map(|t| t.saturating_duration_since(began));
    report
}

async fn drive(ctx: &Ctx, spec: &Spec, began: Instant, report: &mut PeerReport) -> Result<()> {
    let args = &ctx.args;
    let bind = SocketAddr::new(args.bind_ip, 0);
    let socket = UdpSocket::bind(bind).await.map_err(|source| Error::Io {
        what: format!("binding a media socket on {bind}"),
        source,
    })?;
    let local = socket.local_addr().map_err(|source| Error::Io {
        what: format!("reading the address of the media socket bound on {bind}"),
        source,
    })?;
    let mut cfg = PeerConfig::new(local);
    cfg.audio = spec.publish;
    cfg.video = if spec.publish {
        LayerSpec::ladder().into_iter().take(args.layers).collect()
    } else {
        vec![]
    };
    let (aslots, vslots) = if spec.receive {
        (args.audio_slots, args.video_slots)
    } else {
        (0, 0)
    };
    cfg.audio_slots = aslots;
    cfg.video_slots = vslots;
    // Answer keyframe requests after a realistic encoder delay.
    cfg.keyframe_response_delay = Duration::from_millis(20);
    cfg.seed = spec.seed;
    cfg.pacing = (!args.burst).then_some(Pacing::BROWSER);
    let start = Instant::now();
    let mut peer = Peer::new(cfg, start);

    let mut sig = tokio::time::timeout(JOIN_TIMEOUT, async {
        match args.target {
            Target::Tern => {
                let (token, url, placed) = tern_token(ctx, spec).await?;
                if let Some((bridge, region)) = placed {
                    report.bridge = Some(bridge);
                    report.bridge_region = Some(region);
                }
                let (mut ws, _) =
                    tokio_tungstenite::connect_async(&url)
                        .await
                        .map_err(|e| Error::WebSocket {
                            doing: "connecting to",
                            url: url.clone(),
                            source: Box::new(e),
                        })?;
                ws_send(&mut ws, &url, &Peer::join(&token)).await?;
                Ok::<_, Error>(Signalling::Tern(Box::new(ws), url))
            }
            Target::Janus => {
                let mut j = janus::Session::open(
                    ctx.server,
                    &ctx.base_path,
                    &spec.name,
                    ctx.janus_plan(spec),
                    ctx.directory.clone(),
                )
                .await?;
                // A subscriber waits here until its room's publishers are up.
                j.start(&mut peer, Instant::now()).await?;
                Ok(Signalling::Janus(Box::new(j)))
            }
        }
    })
    .await
    .map_err(|_| Error::Timeout {
        what: "could not join".to_string(),
        limit: JOIN_TIMEOUT,
    })??;

    let mut registered = false;
    let mut buf = vec![0u8; 2048];
    let mut next_fold = Instant::now() + FOLD_EVERY;
    let end = ctx.window.1;
    let join_deadline = began + JOIN_TIMEOUT;
    loop {
        // Flush what the peer wants sent.
        while let Some(o) = peer.poll_output() {
            match o {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => {
                    let _ = socket.send_to(&contents, destination).await;
                }
                PeerOutput::Signal(m) => match &mut sig {
                    Signalling::Tern(ws, url) => ws_send(ws, url, &m).await?,
                    Signalling::Janus(j) => j.send(&mut peer, m).await?,
                },
            }
        }
        let st = peer.state();
        if let Some((code, message)) = st.errors.first() {
            return Err(Error::Session {
                code: code.clone(),
                message: message.clone(),
            });
        }
        if st.closed {
            return Err(Error::Closed { what: "connection" });
        }
        let just_joined = !registered && st.joined;
        if report.connect_time.is_none() && st.connected {
            report.connect_time = Some(began.elapsed());
            ctx.progress.connected.fetch_add(1, Ordering::Relaxed);
            if spec.publish {
                // Send times are offsets from the generator's start.
                let id = st
                    .participant_id
                    .clone()
                    .unwrap_or_else(|| spec.name.clone());
                lock(&ctx.starts).insert(id, start);
            }
        }
        if just_joined {
            registered = true;
            ctx.progress.joined.fetch_add(1, Ordering::Relaxed);
            if spec.receive && matches!(sig, Signalling::Tern(..)) {
                // `--max-height` as a constraint, flushed right away (Janus
                // gets the layer as `substream` when subscribing).
                peer.set_max_height(None, args.max_height);
                continue;
            }
        }
        let now = Instant::now();
        if report.connect_time.is_none() && now > join_deadline {
            return Err(Error::Timeout {
                what: "not connected".to_string(),
                limit: JOIN_TIMEOUT,
            });
        }
        if now >= next_fold || now >= end {
            fold(ctx, &mut peer, report);
            next_fold = now + FOLD_EVERY;
        }
        if now >= end {
            break;
        }
        let wake = peer.poll_timeout().min(next_fold).min(end);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, src) = r.map_err(|source| Error::Io {
                    what: format!("receiving on the media socket {local}"),
                    source,
                })?;
                let count_only = spec.count_only;
                on_datagram(ctx, &mut peer, report, src, &buf[..n], count_only);
                // Drain what else is queued before flushing once.
                for _ in 0..RECV_BURST {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, src)) => {
                            on_datagram(ctx, &mut peer, report, src, &buf[..n], count_only)
                        }
                        Err(_) => break,
                    }
                }
            }
            m = next_signal(&mut sig) => match (m?, &mut sig) {
                (Some(Incoming::Tern(msg)), _) => peer.handle_signal(Instant::now(), msg),
                (Some(Incoming::Janus(e)), Signalling::Janus(j)) => {
                    j.handle(&mut peer, Instant::now(), e).await?;
                }
                (Some(Incoming::Janus(_)), _) => {}
                (None, _) => return Err(Error::Closed { what: "signalling connection" }),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                peer.handle_timeout(Instant::now());
            }
        }
    }
    report.packets_sent = peer.state().packets_sent;
    report.plis_sent = peer.state().plis_sent_total();
    peer.leave();
    while let Some(o) = peer.poll_output() {
        if let PeerOutput::Signal(m) = o {
            match &mut sig {
                Signalling::Tern(ws, url) => {
                    let _ = ws_send(ws, url, &m).await;
                }
                Signalling::Janus(j) => {
                    let _ = j.send(&mut peer, m).await;
                }
            }
        }
    }
    match &mut sig {
        Signalling::Tern(ws, _) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), (**ws).close(None)).await;
        }
        Signalling::Janus(j) => j.close().await,
    }
    Ok(())
}

fn on_datagram(
    ctx: &Ctx,
    peer: &mut Peer,
    report: &mut PeerReport,
    src: SocketAddr,
    d: &[u8],
    count_only: bool,
) {
    let now = Instant::now();
    let in_window = now >= ctx.window.0 && now <= ctx.window.1;
    if in_window {
        report.acc.bytes += d.len() as u64;
    }
    // SRTP (RFC 7983: first byte 128..=191; RTCP has packet types 192..=223
    // in the second byte, and str0m still gets those and STUN/DTLS).
    let srtp = matches!(d, [b0, b1, ..] if (128..=191).contains(b0) && !(192..=223).contains(b1));
    if count_only && srtp {
        report.acc.first_media.get_or_insert(now);
        if in_window {
            report.acc.packets += 1;
            ctx.progress.rx_packets.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    peer.handle_datagram(now, src, d);
}

fn fold(ctx: &Ctx, peer: &mut Peer, report: &mut PeerReport) {
    let received = peer.take_received();
    for (mid, times) in peer.take_decoded() {
        report.acc.fold_shown(&mid, &times, ctx.window);
    }
    let slots = &peer.state().slots;
    let mut n = 0;
    for (mid, packets) in received {
        n += packets.len() as u64;
        let source = slots.get(&mid).cloned().flatten();
        let start = source.as_deref().and_then(|s| ctx.start_of(s));
        report
            .acc
            .fold(&mid, source.as_deref(), start, &packets, ctx.window);
    }
    ctx.progress.rx_packets.fetch_add(n, Ordering::Relaxed);
}

async fn ws_send(ws: &mut Ws, url: &str, m: &ClientMessage) -> Result<()> {
    let text = serde_json::to_string(m).map_err(|source| Error::Serialize {
        what: "a signalling message",
        source,
    })?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| Error::WebSocket {
            doing: "sending to",
            url: url.to_string(),
            source: Box::new(e),
        })
}

/// A message from the server, in its own protocol.
enum Incoming {
    Tern(ServerMessage),
    Janus(janus::Event),
}

async fn next_signal(sig: &mut Signalling) -> Result<Option<Incoming>> {
    match sig {
        Signalling::Tern(ws, url) => loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let m = serde_json::from_str(&t).map_err(|source| Error::BadAnswer {
                        from: format!("signalling at {url}"),
                        expected: "a Tern server message",
                        source,
                    })?;
                    return Ok(Some(Incoming::Tern(m)));
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Error::WebSocket {
                        doing: "reading from",
                        url: url.clone(),
                        source: Box::new(e),
                    });
                }
            }
        },
        Signalling::Janus(j) => Ok(j.next().await?.map(Incoming::Janus)),
    }
}
