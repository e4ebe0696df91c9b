//! The bridge's side of `tern.bridge.v1`: register with the focus, report
//! once a second, carry out its commands. Reconnects with backoff, so a focus
//! restart is survived (the registration carries what the bridge hosts).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tern_proto::bridge::v1 as bpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tracing::{info, warn};

use super::App;
use super::shard::ShardInput;

/// Bumped when the control messages change incompatibly.
pub const API_VERSION: u32 = 1;

/// Totals across shards from their latest snapshots.
fn totals(app: &App) -> (u64, u64, u32, Vec<bpb::ConferenceState>) {
    let (mut pin, mut pout, mut eps) = (0, 0, 0);
    let mut confs = Vec::new();
    for s in app.snapshots.iter() {
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        pin += s.packets_in;
        pout += s.packets_out;
        eps += s.endpoints as u32;
        confs.extend(s.conferences.iter().map(|(name, ps)| bpb::ConferenceState {
            name: name.clone(),
            participants: ps.clone(),
        }));
    }
    (pin, pout, eps, confs)
}

pub async fn run(app: Arc<App>, focus_url: String, secret: String, reg: bpb::Register) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&app, &focus_url, &secret, &reg).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => warn!(focus = %focus_url, error = %e, "focus link down"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn session(
    app: &Arc<App>,
    url: &str,
    secret: &str,
    reg: &bpb::Register,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let secret: MetadataValue<_> = secret.parse()?;
    let mut client = bpb::bridge_control_client::BridgeControlClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("x-tern-bridge-secret", secret.clone());
            Ok(req)
        },
    );
    let (tx, rx) = mpsc::channel(16);
    let mut register = reg.clone();
    register.conferences = totals(app).3;
    tx.send(bpb::BridgeMessage {
        msg: Some(bpb::bridge_message::Msg::Register(register)),
    })
    .await?;
    let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    info!(focus = %url, "registered with the focus");
    let (mut last_in, mut last_out, _, _) = totals(app);
    let mut last_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (pin, pout, endpoints, conferences) = totals(app);
                let secs = last_at.elapsed().as_secs_f64().max(0.001);
                let rate = |now: u64, before: u64| (now.saturating_sub(before) as f64 / secs) as u64;
                let stats = bpb::Stats {
                    rtp_packets_in_per_s: rate(pin, last_in),
                    rtp_packets_out_per_s: rate(pout, last_out),
                    endpoints,
                    healthy: true,
                    draining: app.draining.load(Ordering::SeqCst),
                    shutting_down: app.shutting_down.load(Ordering::SeqCst),
                    conferences,
                };
                (last_in, last_out, last_at) = (pin, pout, Instant::now());
                tx.send(bpb::BridgeMessage { msg: Some(bpb::bridge_message::Msg::Stats(stats)) }).await?;
            }
            cmd = inbound.message() => {
                let Some(cmd) = cmd? else { return Ok(()) };
                use bpb::focus_command::Cmd;
                match cmd.cmd {
                    Some(Cmd::Registered(r)) => info!(focus_id = %r.focus_id, "focus accepted registration"),
                    Some(Cmd::Refused(why)) => anyhow::bail!("focus refused: {why}"),
                    Some(Cmd::Move(m)) => {
                        let shard = app.shard_for(&m.conference).clone();
                        shard.send(ShardInput::Move { room: m.conference, participants: m.participants, reason: m.reason }).await?;
                    }
                    Some(Cmd::EndConference(room)) => {
                        let shard = app.shard_for(&room).clone();
                        shard.send(ShardInput::End { room }).await?;
                    }
                    Some(Cmd::Drain(on)) => {
                        info!(draining = on, "drain set by the focus");
                        app.draining.store(on, Ordering::SeqCst);
                    }
                    Some(Cmd::RelayPeers(r)) => {
                        let Some(relay) = app.relay.get() else {
                            warn!(conference = %r.conference, "the focus names relay peers but relaying is not configured here");
                            continue;
                        };
                        let named: Vec<(String, String)> = r.peers.iter().map(|p| (p.bridge_id.clone(), p.relay_addr.clone())).collect();
                        relay.set_room_peers(&r.conference, &named);
                        let peers = r.peers.into_iter().map(|p| p.bridge_id).collect();
                        let shard = app.shard_for(&r.conference).clone();
                        shard.send(ShardInput::RelayPeers { room: r.conference, peers }).await?;
                    }
                    None => {}
                }
            }
        }
    }
}
