//! The relay shell: QUIC connections to peer bridges (one per pair). Each
//! connection task moves bytes through a Sans-IO [`RelayConnection`] (the
//! link protocol and which shard each message belongs to) and one task
//! carries out the [`Mesh`] policy (who is dialled, when again, who is let
//! go). It decides nothing: media is the shards' cores' business
//! (`tern_sfu::core::relay`), routing and dialling the node's
//! (`tern_sfu::node`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use metrics::Counter;
use tern_sfu::PeerId;
use tern_sfu::node::backpressure::{self, Carriage};
use tern_sfu::node::{ConnEvent, Mesh, MeshAction, RelayConnection, RelayDrop, ShardInput};
use tern_sfu::tern_relay::msg::relay_control::Msg;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use super::msg::ShardMsg;
use crate::relay_net::{RelayConnection as QuicConnection, RelayEndpoint};

/// Datagrams taken from a connection in one go (one message per shard and
/// one core settle for all of them).
const DATAGRAM_BATCH: usize = 64;

/// A live connection, as the shards see it.
pub struct PeerConn {
    pub conn: quinn::Connection,
    pub control: mpsc::Sender<Msg>,
    generation: u64,
}

/// Shared by the shards (send side), the focus link (who to dial) and the
/// connection tasks. Written only when a connection comes or goes.
pub struct RelayShared {
    pub local_id: String,
    pub conns: DashMap<PeerId, PeerConn>,
    mesh: mpsc::UnboundedSender<MeshEvent>,
    generation: AtomicU64,
    dropped_unknown: Counter,
    dropped_short: Counter,
    dropped_overload: Counter,
    pub oversize: Counter,
    pub send_failed: Counter,
}

/// What the mesh task hears.
enum MeshEvent {
    /// The focus's word on one conference: the other bridges hosting it.
    RoomPeers {
        room: String,
        peers: Vec<(String, String)>,
    },
    /// A dialled connection came up; answer whether to keep it.
    Connected {
        peer: String,
        keep: oneshot::Sender<bool>,
    },
    DialFailed {
        peer: String,
    },
    /// A connection ended (dialled or accepted).
    Lost {
        peer: String,
    },
}

impl RelayShared {
    /// The focus says these bridges (id, relay address) share `room` with
    /// us; an empty list: none any more. A peer stays connected while some
    /// room names it and is let go when none does.
    pub fn set_room_peers(&self, room: &str, peers: &[(String, String)]) {
        let peers = peers
            .iter()
            .filter(|(peer, addr)| match addr.parse::<SocketAddr>() {
                Ok(_) => true,
                Err(e) => {
                    warn!(%peer, %addr, error = %e, "relay address from the focus does not parse");
                    false
                }
            })
            .cloned()
            .collect();
        let _ = self.mesh.send(MeshEvent::RoomPeers {
            room: room.to_string(),
            peers,
        });
    }

    /// Send a core's datagram to `peer`, carried as the node's
    /// [`backpressure::relay_carriage`] says for the path's size now.
    pub fn send_datagram(&self, peer: &str, datagram: Arc<[u8]>) {
        let Some(pc) = self.conns.get(peer) else {
            self.send_failed.increment(1);
            return;
        };
        match backpressure::relay_carriage(datagram.len(), pc.conn.max_datagram_size()) {
            Carriage::Datagram => {
                if pc.conn.send_datagram(Bytes::from_owner(datagram)).is_err() {
                    self.send_failed.increment(1);
                }
            }
            Carriage::ControlStream => {
                self.oversize.increment(1);
                drop(pc);
                self.send_control(peer, Msg::OversizeMedia(datagram.to_vec()));
            }
        }
    }

    /// A full queue fails the link as [`backpressure::relay_control_backlog`]
    /// says. The connection task may itself be blocked writing, so the
    /// close happens here rather than through it.
    pub fn send_control(&self, peer: &str, msg: Msg) {
        match self.conns.get(peer) {
            Some(pc) => {
                if pc.control.try_send(msg).is_err() {
                    let e = backpressure::relay_control_backlog();
                    warn!(%peer, error = %e, "closing the relay connection");
                    pc.conn
                        .close(quinn::VarInt::from_u32(2), e.to_string().as_bytes());
                }
            }
            None => self.send_failed.increment(1),
        }
    }
}

/// Start accepting and dialling. Returns the shared half.
pub fn start(
    endpoint: Arc<RelayEndpoint>,
    local_id: String,
    shards: Vec<mpsc::Sender<ShardMsg>>,
) -> Arc<RelayShared> {
    let (mesh_tx, mesh_rx) = mpsc::unbounded_channel::<MeshEvent>();
    let dropped = |reason: &'static str| metrics::counter!("tern_relay_datagrams_dropped_total", "reason" => reason);
    let shared = Arc::new(RelayShared {
        local_id: local_id.clone(),
        conns: DashMap::new(),
        mesh: mesh_tx,
        generation: AtomicU64::new(0),
        dropped_unknown: dropped(RelayDrop::UnknownConference.as_str()),
        dropped_short: dropped(RelayDrop::Malformed.as_str()),
        dropped_overload: dropped("shard_overloaded"),
        oversize: metrics::counter!("tern_relay_oversize_total"),
        send_failed: dropped("no_connection"),
    });
    // Inbound connections.
    {
        let (endpoint, shared, shards) = (endpoint.clone(), shared.clone(), shards.clone());
        tokio::spawn(
            async move {
                while let Some(r) = endpoint.accept().await {
                    match r {
                        Ok(c) => {
                            let (shared, shards) = (shared.clone(), shards.clone());
                            tokio::spawn(
                                async move {
                                    let peer = c.peer_id().as_str().to_string();
                                    run_connection(c, shared.clone(), shards, false).await;
                                    let _ = shared.mesh.send(MeshEvent::Lost { peer });
                                }
                                .in_current_span(),
                            );
                        }
                        // Already logged and counted by the endpoint.
                        Err(e) => debug!(error = %e, "relay handshake refused"),
                    }
                }
            }
            .in_current_span(),
        );
    }
    tokio::spawn(run_mesh(endpoint, shared.clone(), shards, mesh_rx).in_current_span());
    shared
}

/// Carry out the mesh policy: dial when it says, report what came of it.
async fn run_mesh(
    endpoint: Arc<RelayEndpoint>,
    shared: Arc<RelayShared>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    mut events: mpsc::UnboundedReceiver<MeshEvent>,
) {
    let wanted_gauge = metrics::gauge!("tern_relay_peers_wanted");
    let mut mesh = Mesh::new(shared.local_id.clone());
    loop {
        let deadline = mesh
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                let now = Instant::now();
                match ev {
                    MeshEvent::RoomPeers { room, peers } => {
                        mesh.set_room_peers(now, &room, &peers);
                        wanted_gauge.set(mesh.wanted().count() as f64);
                    }
                    MeshEvent::Connected { peer, keep } => {
                        let _ = keep.send(mesh.connected(&peer));
                    }
                    MeshEvent::DialFailed { peer } => mesh.dial_failed(now, &peer),
                    MeshEvent::Lost { peer } => mesh.connection_lost(now, &peer),
                }
            }
            _ = tokio::time::sleep_until(deadline) => mesh.handle_timeout(Instant::now()),
        }
        while let Some(action) = mesh.poll_action() {
            match action {
                MeshAction::Dial { peer, addr } => {
                    tokio::spawn(
                        dial(endpoint.clone(), shared.clone(), shards.clone(), peer, addr)
                            .in_current_span(),
                    );
                }
                MeshAction::Close { peer, reason } => {
                    if let Some(pc) = shared.conns.get(peer.as_str()) {
                        info!(%peer, reason, "closing the relay connection");
                        pc.conn.close(quinn::VarInt::from_u32(4), reason.as_bytes());
                    }
                }
            }
        }
    }
}

/// One dial the mesh asked for; the connection runs here until it ends.
async fn dial(
    endpoint: Arc<RelayEndpoint>,
    shared: Arc<RelayShared>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    peer: String,
    addr: String,
) {
    let failed = |shared: &RelayShared, peer: String| {
        let _ = shared.mesh.send(MeshEvent::DialFailed { peer });
    };
    let (Ok(id), Ok(addr)) = (
        crate::relay_net::BridgeId::new(peer.clone()),
        addr.parse::<SocketAddr>(),
    ) else {
        warn!(%peer, %addr, "relay peer id or address is not valid; not dialling");
        return failed(&shared, peer);
    };
    match endpoint.connect(addr, &id).await {
        Ok(c) => {
            let (keep, kept) = oneshot::channel();
            let _ = shared.mesh.send(MeshEvent::Connected {
                peer: peer.clone(),
                keep,
            });
            if kept.await.unwrap_or(false) {
                run_connection(c, shared.clone(), shards, true).await;
                let _ = shared.mesh.send(MeshEvent::Lost { peer });
            } else {
                c.into_connection()
                    .close(quinn::VarInt::from_u32(4), b"no shared conference");
            }
        }
        Err(e) => {
            warn!(%peer, %addr, error = %e, "relay dial failed");
            failed(&shared, peer);
        }
    }
}

/// Hand what the connection produced to the shards (and its drops to the
/// counters).
fn dispatch(
    rc: &mut RelayConnection,
    shared: &RelayShared,
    shards: &[mpsc::Sender<ShardMsg>],
    peer: &PeerId,
) {
    while let Some(e) = rc.poll_event() {
        match e {
            ConnEvent::Shard(s, input) => {
                let n = match &input {
                    ShardInput::RelayDatagrams { data, .. } => data.len() as u64,
                    _ => 1,
                };
                let sent = shards
                    .get(s)
                    .is_some_and(|tx| tx.try_send(ShardMsg::Core(input)).is_ok());
                if !sent {
                    shared.dropped_overload.increment(n);
                }
            }
            ConnEvent::Link(l) => {
                for s in shards {
                    // Link state changes are rare and must not be lost: a
                    // full queue means the shard is gone or hopelessly
                    // behind.
                    if s.try_send(ShardMsg::Core(l.input(peer))).is_err() {
                        warn!("shard queue full: relay link state change dropped");
                    }
                }
            }
            ConnEvent::Dropped { reason, count } => match reason {
                RelayDrop::UnknownConference => shared.dropped_unknown.increment(count),
                RelayDrop::Malformed => shared.dropped_short.increment(count),
            },
        }
    }
}

async fn run_connection(
    c: QuicConnection,
    shared: Arc<RelayShared>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    dialled: bool,
) {
    let peer: PeerId = Arc::from(c.peer_id().as_str());
    let span = info_span!("relay", peer = %peer);
    async move {
        let conn = c.into_connection();
        let streams = if dialled {
            conn.open_bi().await
        } else {
            conn.accept_bi().await
        };
        let (mut send, mut recv) = match streams {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "relay control stream failed");
                return;
            }
        };
        let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Msg>(backpressure::RELAY_CONTROL_QUEUE);
        if let Some(old) = shared.conns.insert(
            peer.clone(),
            PeerConn {
                conn: conn.clone(),
                control: ctl_tx,
                generation,
            },
        ) {
            old.conn.close(
                quinn::VarInt::from_u32(1),
                b"replaced by a newer connection",
            );
        }
        info!(dialled, remote = %conn.remote_address(), "relay connection up");
        let live = metrics::gauge!("tern_relay_connections");
        live.increment(1.0);
        let mut rc =
            RelayConnection::new(&shared.local_id, peer.clone(), shards.len(), Instant::now());
        let mut buf = vec![0u8; 64 * 1024];
        let reason = loop {
            let mut write_error = None;
            while let Some(bytes) = rc.poll_transmit() {
                if let Err(e) = send.write_all(&bytes).await {
                    write_error = Some(e);
                    break;
                }
            }
            if let Some(e) = write_error {
                break format!("control stream write: {e}");
            }
            dispatch(&mut rc, &shared, &shards, &peer);
            if let Some(e) = rc.error() {
                conn.close(quinn::VarInt::from_u32(3), e.to_string().as_bytes());
                break e.to_string();
            }
            let deadline = tokio::time::Instant::from_std(rc.poll_timeout());
            tokio::select! {
                read = recv.read(&mut buf) => match read {
                    Ok(Some(n)) => rc.handle_stream(Instant::now(), &buf[..n]),
                    Ok(None) => break "control stream finished".to_string(),
                    Err(e) => break format!("control stream: {e}"),
                },
                d = conn.read_datagram() => match d {
                    Ok(d) => {
                        let mut batch = vec![d];
                        // What else already arrived joins this batch; an
                        // error shows up again on the next await.
                        while batch.len() < DATAGRAM_BATCH {
                            match ready_now(conn.read_datagram()) {
                                Some(Ok(d)) => batch.push(d),
                                _ => break,
                            }
                        }
                        rc.handle_datagrams(Instant::now(), batch);
                    }
                    Err(e) => break format!("connection: {e}"),
                },
                m = ctl_rx.recv() => match m {
                    Some(m) => {
                        rc.send(m);
                        // Take what else is queued into the same write.
                        while let Ok(m) = ctl_rx.try_recv() {
                            rc.send(m);
                        }
                    }
                    None => break "closed".to_string(),
                },
                _ = tokio::time::sleep_until(deadline) => rc.handle_timeout(Instant::now()),
            }
        };
        live.decrement(1.0);
        warn!(%reason, "relay connection down");
        shared
            .conns
            .remove_if(&peer, |_, pc| pc.generation == generation);
        rc.closed();
        dispatch(&mut rc, &shared, &shards, &peer);
    }
    .instrument(span)
    .await
}

/// A future's output if it is ready now, without waiting for it.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
