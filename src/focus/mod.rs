//! The focus shell: gRPC (`tern.focus.v1` for applications, `tern.bridge.v1`
//! for bridges, `grpc.health.v1`), HTTP (`/join` for the browser client,
//! `/api/bridges`, `/health`). One task owns the Sans-IO [`Focus`] core; the
//! handlers only pass requests to it.

mod grpc;
mod handle;
mod http;
mod limits;
mod metrics;
mod recording_http;
mod whip;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern_focus::{Focus, FocusConfig, FocusEvent, Strategy};
use tern_proto::bridge::v1 as bpb;
use tern_proto::focus::v1 as fpb;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::auth::TokenKeys;
use crate::config::Config;
pub use handle::{CommandTx, FocusHandle, RecordingOp, Req, status};
pub use metrics::{ALLOCATION_BUCKETS, ALLOCATION_DURATION};

#[derive(Debug, Clone, Copy)]
pub struct FocusBound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

fn focus_config(cfg: &Config) -> FocusConfig {
    let f = &cfg.focus;
    FocusConfig {
        local_region: f.region.clone(),
        region_groups: f.region_groups.clone(),
        strategy: match f.strategy.as_str() {
            "single" => Strategy::SingleBridge,
            "split" => Strategy::Split,
            _ => Strategy::RegionBased,
        },
        overload_stress: f.overload_stress,
        participant_cap: f.participant_cap,
        max_joins_per_minute: f.max_joins_per_minute,
        heartbeat_timeout: Duration::from_millis(f.heartbeat_timeout_ms),
        ..FocusConfig::default()
    }
}

pub async fn run(
    cfg: Config,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    ready: impl FnOnce(FocusBound),
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if cfg.focus.api_secret.is_empty() || cfg.focus.bridge_secret.is_empty() {
        bail!(
            "focus.api_secret and focus.bridge_secret must be set (TERN_FOCUS_API_SECRET, TERN_FOCUS_BRIDGE_SECRET)"
        );
    }
    if cfg.auth.secret.is_empty() {
        bail!("auth.secret is empty: the focus mints participant tokens with it");
    }
    metrics::describe();
    limits::register_at_zero();
    let (tx, rx) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(1024);
    let handle = FocusHandle {
        tx,
        events: events.clone(),
        keys: TokenKeys::new(&cfg.auth.secret),
        token_ttl: cfg.auth.token_ttl_secs,
        api_secret: cfg.focus.api_secret.clone(),
        bridge_secret: cfg.focus.bridge_secret.clone(),
        focus_id: format!("focus-{:08x}", rand::random::<u32>()),
        turn: cfg.turn.clone(),
        http_limits: Default::default(),
    };
    let core = tokio::spawn(core_task(Focus::new(focus_config(&cfg)), rx, events));

    let grpc_listener = tokio::net::TcpListener::bind(cfg.focus.grpc_listen)
        .await
        .with_context(|| format!("binding focus gRPC on {}", cfg.focus.grpc_listen))?;
    let http_listener = tokio::net::TcpListener::bind(cfg.focus.http_listen)
        .await
        .with_context(|| format!("binding focus HTTP on {}", cfg.focus.http_listen))?;
    let bound = FocusBound {
        grpc: grpc_listener.local_addr()?,
        http: http_listener.local_addr()?,
    };
    let grpc_limits = limits::GrpcLimits::new(cfg.focus.grpc_rate_limit, cfg.focus.grpc_rate_burst);
    let grpc = tokio::spawn(grpc::serve(handle.clone(), grpc_listener, grpc_limits));
    let router = http::router(handle.clone(), metrics);
    // With each connection's peer address, for the per-address limits.
    let web = tokio::spawn(async move {
        axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    info!(grpc = %bound.grpc, http = %bound.http, "focus ready");
    ready(bound);
    shutdown.await;
    info!("focus stopping");
    grpc.abort();
    web.abort();
    core.abort();
    Ok(())
}

/// The one owner of the focus core.
async fn core_task(
    mut focus: Focus,
    mut rx: mpsc::Receiver<Req>,
    events: broadcast::Sender<fpb::ClusterEvent>,
) {
    let mut bridges: HashMap<String, (u64, CommandTx)> = HashMap::new();
    let mut next_session = 1u64;
    let mut publish = tokio::time::interval(Duration::from_secs(1));
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stressed = std::collections::BTreeSet::new();
    loop {
        let deadline = focus.poll_timeout(Instant::now());
        tokio::select! {
            req = rx.recv() => {
                let Some(req) = req else { return };
                let now = Instant::now();
                match req {
                    Req::Allocate { conference, participant, region, video_codec, mode, reply } => {
                        let r = focus.allocate_with_options(
                            now,
                            &conference,
                            &participant,
                            Some(&region),
                            Some(&video_codec),
                            mode,
                        );
                        let _ = reply.send(r);
                    }
                    Req::Register { reg, commands, reply } => {
                        let id = reg.id.clone();
                        match focus.handle_register(now, reg) {
                            Ok(()) => {
                                let session = next_session;
                                next_session += 1;
                                bridges.insert(id, (session, commands));
                                let _ = reply.send(Ok(session));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    Req::Report { id, session, report } => {
                        if bridges.get(&id).is_some_and(|(s, _)| *s == session)
                            && let Err(e) = focus.handle_report(now, &id, report)
                        {
                            warn!(bridge = %id, error = %e, "report refused");
                        }
                    }
                    Req::Disconnect { id, session, reason } => {
                        // A stale stream of a bridge that re-registered since
                        // says nothing about the new one.
                        if bridges.get(&id).is_some_and(|(s, _)| *s == session) {
                            bridges.remove(&id);
                            focus.handle_disconnect(now, &id, &reason);
                        }
                    }
                    Req::Drain { id, on, reply } => {
                        let _ = reply.send(focus.set_drain(now, &id, on));
                    }
                    Req::End { conference, reply } => {
                        let _ = reply.send(focus.end_conference(&conference));
                    }
                    Req::Recording { op, reply } => {
                        let r = match op {
                            RecordingOp::Start { conference, unix_ms } => focus
                                .start_recording(now, unix_ms, &conference)
                                .map(|v| vec![v]),
                            RecordingOp::Stop { conference } => {
                                focus.stop_recording(now, &conference).map(|v| vec![v])
                            }
                            RecordingOp::List { conference } => {
                                Ok(focus.recordings(conference.as_deref()))
                            }
                        };
                        let _ = reply.send(r);
                    }
                    Req::Bridges { reply } => {
                        let _ = reply.send(focus.bridges(now));
                    }
                    Req::Conference { name, reply } => {
                        let _ = reply.send(focus.conference(&name));
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                focus.handle_timeout(Instant::now());
            }
            _ = publish.tick() => metrics::publish(&focus.summary(), &mut stressed),
        }
        let now = Instant::now();
        while let Some(e) = focus.poll_event() {
            dispatch(&focus, now, &mut bridges, &events, e);
        }
    }
}

fn dispatch(
    focus: &Focus,
    now: Instant,
    bridges: &mut HashMap<String, (u64, CommandTx)>,
    events: &broadcast::Sender<fpb::ClusterEvent>,
    e: FocusEvent,
) {
    use bpb::focus_command::Cmd;
    use fpb::cluster_event::Event as Ev;
    let send = |bridges: &HashMap<String, (u64, CommandTx)>, id: &str, cmd: Cmd| {
        if let Some((_, tx)) = bridges.get(id)
            && tx
                .try_send(Ok(bpb::FocusCommand { cmd: Some(cmd) }))
                .is_err()
        {
            warn!(bridge = %id, "command queue full or closed");
        }
    };
    let view = |id: &str| focus.bridge(now, id).map(|v| grpc::bridge_pb(&v));
    let ev = match e {
        FocusEvent::BridgeUp { id } => view(&id).map(Ev::BridgeUp),
        FocusEvent::BridgeDown { id, .. } => {
            bridges.remove(&id);
            view(&id).map(Ev::BridgeDown)
        }
        FocusEvent::BridgeDrain { id, .. } => view(&id).map(Ev::BridgeDrain),
        FocusEvent::Allocated {
            conference,
            participant,
            bridge,
        } => Some(Ev::Allocated(fpb::Allocation {
            conference,
            participant,
            bridge_id: bridge,
        })),
        FocusEvent::Moved {
            conference,
            participant,
            from,
            reason,
        } => Some(Ev::Moved(fpb::Move {
            conference,
            participant,
            from_bridge: from,
            reason,
        })),
        FocusEvent::CommandMove { .. }
        | FocusEvent::CommandDrain { .. }
        | FocusEvent::CommandEndConference { .. }
        | FocusEvent::CommandStartRecording { .. }
        | FocusEvent::CommandStopRecording { .. }
        | FocusEvent::CommandRecordingNotice { .. }
        | FocusEvent::CommandRelayPeers { .. } => {
            if matches!(e, FocusEvent::CommandRelayPeers { .. }) {
                metrics::relay_peer_command();
            }
            if let Some((bridge, cmd)) = e.command()
                && let Some(cmd) = cmd.cmd
            {
                send(bridges, bridge, cmd);
            }
            None
        }
    };
    if let Some(event) = ev {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _ = events.send(fpb::ClusterEvent {
            unix_ms,
            event: Some(event),
        });
    }
}
