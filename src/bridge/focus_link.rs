//! The bridge's side of `tern.bridge.v1` on a real gRPC stream. What to
//! register, when to report and what a command becomes is the node's
//! [`FocusLink`] policy (`tern_sfu::node::focus_link`); this task opens the
//! stream when the policy asks, moves its messages and hands commands to the
//! shards and the relay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tern_proto::bridge::v1 as bpb;
use tern_sfu::node::{FocusAction, FocusLink, FocusOrder};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tracing::{info, warn};

use super::app::App;
use super::msg::ShardMsg;
use super::status::totals;

pub use tern_sfu::node::focus_link::API_VERSION;

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

pub async fn run(app: Arc<App>, focus_url: String, secret: String, reg: bpb::Register) {
    let mut link = FocusLink::new(reg, Instant::now());
    loop {
        // Wait until the policy asks for a connection.
        loop {
            link.handle_timeout(Instant::now());
            if let Some(FocusAction::Connect) = link.poll_action() {
                break;
            }
            let at = link
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(far);
            tokio::time::sleep_until(at).await;
        }
        if let Err(e) = session(&app, &mut link, &focus_url, &secret).await {
            warn!(focus = %focus_url, error = %e, "focus link down");
        }
        link.disconnected(Instant::now());
        app.focus_registered.store(false, Ordering::SeqCst);
    }
}

async fn session(
    app: &Arc<App>,
    link: &mut FocusLink,
    url: &str,
    secret: &str,
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
    link.connected(Instant::now(), &totals(app));
    // The registration goes out first, before the stream is attached.
    send_actions(link, &tx).await?;
    let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    info!(focus = %url, "registered with the focus");
    loop {
        if app.shutting_down.load(Ordering::SeqCst) {
            link.set_shutting_down();
        }
        let at = link
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(far);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                let now = Instant::now();
                if link.report_due(now) {
                    link.report(now, &totals(app));
                }
                link.handle_timeout(now);
            }
            cmd = inbound.message() => {
                let Some(cmd) = cmd? else { return Ok(()) };
                if let Some(bpb::focus_command::Cmd::Registered(r)) = &cmd.cmd {
                    info!(focus_id = %r.focus_id, "focus accepted registration");
                }
                let was_draining = link.draining();
                let handled = link.handle_command(cmd).map_err(anyhow::Error::msg);
                app.focus_registered.store(link.is_registered(), Ordering::SeqCst);
                match handled? {
                    Some(order) => carry_out(app, order).await?,
                    None if link.draining() != was_draining => {
                        info!(draining = link.draining(), "drain set by the focus");
                        app.draining.store(link.draining(), Ordering::SeqCst);
                    }
                    None => {}
                }
            }
        }
        send_actions(link, &tx).await?;
    }
}

async fn send_actions(
    link: &mut FocusLink,
    tx: &mpsc::Sender<bpb::BridgeMessage>,
) -> anyhow::Result<()> {
    while let Some(a) = link.poll_action() {
        match a {
            FocusAction::Send(m) => tx.send(m).await?,
            // Asked only while disconnected.
            FocusAction::Connect => {}
        }
    }
    Ok(())
}

async fn carry_out(app: &App, order: FocusOrder) -> anyhow::Result<()> {
    if let FocusOrder::RelayPeers { room, peers } = &order {
        let Some(relay) = app.relay.get() else {
            warn!(conference = %room, "the focus names relay peers but relaying is not configured here");
            return Ok(());
        };
        relay.set_room_peers(room, peers);
    }
    let shard = app.shard_for(order.room()).clone();
    shard.send(ShardMsg::Core(order.into_shard_input())).await?;
    Ok(())
}
