//! The bridge shell: sockets, tasks and HTTP around the Sans-IO core.

pub mod app;
pub mod bandwidth;
pub mod catalog;
pub mod focus_link;
pub mod histogram;
pub mod http;
pub mod latency;
pub mod loss;
pub mod mixing;
pub mod msg;
pub mod recorder;
pub mod relay;
pub mod relay_reload;
pub mod send;
pub mod shard;
pub mod status;
pub mod tcp;
pub mod whip;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use dashmap::DashMap;
use metrics::Counter;
use metrics_exporter_prometheus::PrometheusHandle;
use tern_sfu::{Core, CoreConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{Instrument, Span, info, info_span, warn};

use crate::auth::TokenKeys;
use crate::config::Config;
pub use app::App;
use msg::ShardMsg;
use shard::Shard;
use tern_sfu::node::{Shutdown, ShutdownStep, shard_of_datagram};

/// Datagrams read per wakeup before handing batches to shards.
const RECV_BATCH: usize = 64;
/// The largest datagram a receive buffer takes: a whole GRO aggregate.
const GRO_SLOT_MAX: usize = 64 * 1024;
/// Inputs queued per shard; beyond this the socket reader drops (and counts).
const SHARD_QUEUE: usize = 8192;

/// Addresses a running bridge actually bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub http: SocketAddr,
    pub media: SocketAddr,
    /// The relay's QUIC address, when relaying is configured.
    pub relay: Option<SocketAddr>,
}

/// Bind the relay endpoint if `[relay]` asks for it. The certificate must
/// name this bridge: peers check the id they dial against it.
fn start_relay(
    cfg: &Config,
    bridge_id: &str,
    shards: &[mpsc::Sender<ShardMsg>],
) -> anyhow::Result<(Option<Arc<relay::RelayShared>>, Option<SocketAddr>)> {
    let Some(listen) = cfg.relay.listen else {
        return Ok((None, None));
    };
    let creds = crate::relay_net::load_identity(&cfg.relay)?;
    let cert_id = creds.identity.id().as_str().to_string();
    if cert_id != bridge_id {
        anyhow::bail!(
            "relay certificate is for bridge {cert_id:?} but this bridge's id is {bridge_id:?} (set bridge.id or issue a certificate with `tern ca issue --id {bridge_id}`)"
        );
    }
    let revoked = crate::relay_net::load_revoked(&cfg.relay)?;
    let endpoint = crate::relay_net::RelayEndpoint::bind(listen, creds.identity, &creds.ca)?;
    relay_reload::describe(revoked.len());
    endpoint.set_revoked(revoked);
    let bound = endpoint.local_addr()?;
    let advertise = match cfg.relay.advertise {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            anyhow::bail!("relay.listen {listen} is a wildcard address: set relay.advertise")
        }
        None => bound,
    };
    let endpoint = Arc::new(endpoint);
    let shared = relay::start(endpoint.clone(), bridge_id.to_string(), shards.to_vec());
    relay_reload::spawn(cfg.relay.clone(), endpoint, shared.clone());
    Ok((Some(shared), Some(advertise)))
}

/// Run a bridge until `shutdown` resolves, then let clients go and return.
pub async fn run(
    cfg: Config,
    dev: bool,
    metrics: PrometheusHandle,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Every task of the bridge runs in this span (shards, the reader, relay
    // connections, the focus link, signalling sessions under their shard):
    // entered per poll, never held across an await.
    let span = info_span!("bridge", region = %cfg.bridge.region);
    run_in_span(cfg, dev, metrics, ready, shutdown)
        .instrument(span)
        .await
}

async fn run_in_span(
    cfg: Config,
    dev: bool,
    metrics: PrometheusHandle,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let socket = bind_media(cfg.bridge.media_listen)?;
    let media_addr = socket.local_addr()?;
    let socket = Arc::new(socket);
    // Several datagrams to one receiver leave as one UDP GSO message where
    // the kernel offers it (bridge/send.rs).
    let gso_segments = if cfg.bridge.udp_gso {
        match quinn_udp::UdpSocketState::new((&*socket).into()) {
            Ok(s) => s.max_gso_segments(),
            Err(e) => {
                warn!(error = %e, "probing UDP GSO failed; sending without it");
                1
            }
        }
    } else {
        1
    };
    info!(gso_segments, "media egress");
    let candidate_addr = cfg.bridge.advertise_addr.unwrap_or(media_addr);
    let tcp_writers: tcp::TcpWriters = Arc::new(DashMap::new());
    let tcp_listener = if cfg.bridge.ice_tcp {
        let l = tcp::bind_listener(media_addr, cfg.bridge.media_listen.port() == 0)
            .await
            .with_context(|| {
                format!("binding ICE-TCP on {media_addr} (bridge.ice_tcp = false turns it off)")
            })?;
        Some(l)
    } else {
        None
    };
    let tcp_candidate_addr = match &tcp_listener {
        Some(l) => Some(SocketAddr::new(candidate_addr.ip(), l.local_addr()?.port())),
        None => None,
    };

    let provider = str0m::crypto::from_feature_flags();
    let dtls_cert = provider
        .dtls_provider
        .generate_certificate()
        .context("generating the DTLS certificate")?;

    let demux: Arc<DashMap<SocketAddr, u8>> = Arc::new(DashMap::new());
    let n = cfg.shard_count();
    let snapshots: shard::Snapshots = Arc::new(
        (0..n)
            .map(|_| std::sync::Mutex::new(shard::ShardSnapshot::default()))
            .collect(),
    );
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
    let bridge_id = if cfg.bridge.id.is_empty() {
        format!("{}-{}", cfg.bridge.region, media_addr.port())
    } else {
        cfg.bridge.id.clone()
    };
    let (relay, relay_addr) = start_relay(&cfg, &bridge_id, &senders)?;
    catalog::register_at_zero(relay.is_some(), cfg.bridge.ice_tcp);
    let composite = cfg.media.mix_video.then(|| tern_mixer::video::VideoConfig {
        width: cfg.media.mix_video_width,
        height: cfg.media.mix_video_height,
        fps: cfg.media.mix_video_fps,
        bitrate_bps: cfg.media.mix_video_kbps * 1000,
        ..Default::default()
    });
    let mixing = mixing::Mixing::start(
        cfg.media.mixing_workers,
        cfg.media.mix_bitrate_kbps * 1000,
        composite,
        senders.clone(),
    );
    let recorder = recorder::Recorder::start(&cfg.bridge.recordings_dir, senders.clone());
    let mut tasks = Vec::with_capacity(n);
    let shard_spans: Vec<Span> = (0..n).map(|i| info_span!("shard", index = i)).collect();
    let now = Instant::now();
    for (i, rx) in receivers.into_iter().enumerate() {
        let core = Core::new(
            CoreConfig {
                shard: i as u8,
                local_addr: media_addr,
                candidate_addr,
                tcp_candidate_addr,
                dtls_cert: dtls_cert.clone(),
                codecs: cfg.media.codecs.clone(),
                max_participants_per_conference: cfg.bridge.max_participants_per_conference,
                default_max_height: cfg.media.default_max_height,
                rtx_cache_packets: cfg.media.rtx_cache_packets,
                rtx_cache_age: Duration::from_millis(cfg.media.rtx_cache_ms),
                talk: tern_sfu::speech::TalkConfig {
                    sensitivity: cfg.media.talk_sensitivity,
                    interval: Duration::from_millis(cfg.media.talk_interval_ms),
                },
                bandwidth: tern_sfu::BandwidthConfig {
                    estimation: cfg.media.bandwidth_estimation,
                    initial_bps: cfg.media.initial_estimate_kbps * 1000,
                    max_probe_bps: cfg.media.max_probe_kbps * 1000,
                    camera_max_bps: cfg.media.camera_max_kbps * 1000,
                    screen_max_bps: cfg.media.screen_max_kbps * 1000,
                },
                composite: cfg.media.mix_video,
            },
            now,
        );
        let shard = Shard {
            index: i as u8,
            core,
            rx,
            demux: demux.clone(),
            local_addr: media_addr,
            snapshots: snapshots.clone(),
            egress: send::Egress::new(socket.clone(), i as u8, gso_segments),
            kicked: Vec::new(),
            signal_backlog: metrics::counter!("tern_signal_backlog_drops_total"),
            relay: relay.clone(),
            tcp_writers: tcp_writers.clone(),
            mixing: mixing.clone(),
            recorder: recorder.clone(),
        };
        tasks.push(tokio::spawn(shard.run().instrument(shard_spans[i].clone())));
    }
    let reader = tokio::spawn(read_media(socket.clone(), senders.clone(), demux).in_current_span());
    let tcp_task = match (tcp_listener, tcp_candidate_addr) {
        (Some(l), Some(addr)) => Some(tokio::spawn(
            tcp::serve(l, addr, senders.clone(), tcp_writers.clone()).in_current_span(),
        )),
        _ => None,
    };

    let app = Arc::new(App {
        keys: TokenKeys::new(&cfg.auth.secret),
        cfg: cfg.clone(),
        dev,
        shards: senders,
        shard_spans,
        shutting_down: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        focus_registered: AtomicBool::new(false),
        started: Instant::now(),
        metrics,
        snapshots,
        relay: std::sync::OnceLock::new(),
        http_sessions: dashmap::DashMap::new(),
        signal_conns: dashmap::DashMap::new(),
        mixing,
    });
    if let Some(r) = relay {
        let _ = app.relay.set(r);
    }
    let listener = tokio::net::TcpListener::bind(cfg.bridge.http_listen)
        .await
        .with_context(|| format!("binding HTTP on {}", cfg.bridge.http_listen))?;
    let http_addr = listener.local_addr()?;
    let status_task = tokio::spawn(status::run(app.clone(), bridge_id.clone()).in_current_span());
    let router = http::router(app.clone());
    // With each connection's peer address: signalling limits connections
    // per client address.
    let server = tokio::spawn(
        async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        }
        .in_current_span(),
    );
    let link = if cfg.bridge.focus_url.is_empty() {
        None
    } else {
        let id = bridge_id.clone();
        let signal_url = if cfg.bridge.signal_url.is_empty() {
            format!("ws://{http_addr}/signal")
        } else {
            cfg.bridge.signal_url.clone()
        };
        let reg = tern_proto::bridge::v1::Register {
            bridge_id: id,
            region: cfg.bridge.region.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: focus_link::API_VERSION,
            signal_url,
            relay_addr: relay_addr.map(|a| a.to_string()).unwrap_or_default(),
            max_packet_rate: cfg.bridge.max_packet_rate,
            conferences: Vec::new(),
        };
        Some(tokio::spawn(
            focus_link::run(
                app.clone(),
                cfg.bridge.focus_url.clone(),
                cfg.bridge.focus_secret.clone(),
                reg,
            )
            .in_current_span(),
        ))
    };
    info!(%http_addr, %media_addr, %candidate_addr, ?relay_addr, shards = n, "bridge ready");
    ready(Bound {
        http: http_addr,
        media: media_addr,
        relay: relay_addr,
    });

    shutdown.await;
    app.shutting_down.store(true, Ordering::SeqCst);
    // With a focus, SIGTERM means drain: the focus sees `shutting_down` in
    // the next report and moves conferences away; the node's `Shutdown`
    // says how long to wait and when to close what is left.
    let drain = link
        .as_ref()
        .map(|_| Duration::from_secs(cfg.bridge.drain_timeout_secs));
    if drain.is_some() {
        info!("draining before exit");
    }
    let mut plan = Shutdown::start(Instant::now(), drain);
    loop {
        let endpoints: usize = app
            .snapshots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).endpoints)
            .sum();
        match plan.poll(Instant::now(), endpoints) {
            ShutdownStep::Wait(at) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
            }
            ShutdownStep::CloseEndpoints => {
                info!(endpoints, "shutting down: closing endpoints");
                for s in &app.shards {
                    let _ = s.send(ShardMsg::Shutdown).await;
                }
            }
            ShutdownStep::Exit => break,
        }
    }
    // Recordings ended with the endpoints: their last bytes and metadata
    // reach the disk before the process goes.
    let r = recorder.clone();
    let synced = tokio::task::spawn_blocking(move || r.sync(Duration::from_secs(5)))
        .await
        .unwrap_or(false);
    if !synced {
        tracing::warn!("recordings not all written within 5 s of the shutdown");
    }
    server.abort();
    status_task.abort();
    reader.abort();
    if let Some(t) = tcp_task {
        t.abort();
    }
    if let Some(l) = link {
        l.abort();
    }
    for t in tasks {
        t.abort();
    }
    info!("bridge stopped");
    Ok(())
}

fn bind_media(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Bursts (keyframes fanned out to many receivers) overflow default buffers.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("binding media UDP on {addr}"))?;
    Ok(UdpSocket::from_std(sock.into())?)
}

/// The one reader of the media socket: routes each datagram to the shard that
/// owns its sender (by address once authenticated, by ICE ufrag for STUN).
async fn read_media(
    socket: Arc<UdpSocket>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    demux: Arc<DashMap<SocketAddr, u8>>,
) {
    use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};
    use std::io::IoSliceMut;
    let unknown: Counter = metrics::counter!("tern_packets_dropped_total", "shard" => "reader", "reason" => "unknown_source");
    let overload: Counter = metrics::counter!("tern_packets_dropped_total", "shard" => "reader", "reason" => "shard_overloaded");
    // recvmmsg (BATCH_SIZE datagrams per syscall) and, where the kernel
    // offers it, GRO (several datagrams of one sender in one buffer, split
    // by `stride`).
    let state = match UdpSocketState::new((&*socket).into()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "media socket setup failed");
            return;
        }
    };
    // A GRO aggregate is one UDP datagram to the kernel, so it is at most
    // 64 KiB (the kernel's default GRO limit, and UDP's length field),
    // whatever the segment count says: a batch of 2 KiB × 64 segments per
    // slot was 4 MiB of buffers, each slot's second half never filled.
    let slot = (2048 * state.gro_segments()).clamp(2048, GRO_SLOT_MAX);
    let mut storage: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| vec![0u8; slot]).collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut buf = BytesMut::with_capacity(RECV_BATCH * 2048);
    // Each datagram with its kernel receive time: where the bridge's
    // forwarding delay starts.
    let mut batches: Vec<Vec<(SocketAddr, bytes::Bytes, Option<Duration>)>> =
        vec![Vec::new(); shards.len()];
    loop {
        if let Err(e) = socket.readable().await {
            warn!(error = %e, "media socket failed");
            return;
        }
        let mut received = 0;
        while received < RECV_BATCH {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let n = match socket.try_io(tokio::io::Interest::READABLE, || {
                state.recv((&*socket).into(), &mut bufs, &mut meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors surface here on Linux; they say nothing
                    // about other senders.
                    tracing::trace!(error = %e, "recv error");
                    break;
                }
            };
            drop(bufs);
            for (m, b) in meta.iter().zip(&storage).take(n) {
                let stride = m.stride.max(1);
                for d in b[..m.len.min(b.len())].chunks(stride) {
                    received += 1;
                    buf.extend_from_slice(d);
                    let data = buf.split().freeze();
                    let bound = demux.get(&m.addr).map(|s| *s);
                    let shard = shard_of_datagram(bound, &data, shards.len());
                    match shard {
                        Some(s) => batches[s].push((m.addr, data, m.timestamp)),
                        None => unknown.increment(1),
                    }
                }
            }
            if buf.capacity() - buf.len() < RECV_BATCH * 1500 {
                buf.reserve(RECV_BATCH * 2048);
            }
        }
        for (s, batch) in batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let full = std::mem::take(batch);
            if shards[s].try_send(ShardMsg::Datagrams(full)).is_err() {
                overload.increment(n);
            }
        }
    }
}
