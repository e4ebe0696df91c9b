//! The relay shell: QUIC connections to peer bridges (one per pair), moving
//! control bytes through the Sans-IO [`Link`] and datagrams to and from the
//! shards that own the conferences. It decides nothing about media: who
//! gets what is the shards' cores' business (`tern_sfu::core::relay`).
//!
//! Who dials: of two bridges, the one with the smaller id; the other only
//! accepts. So a pair never ends up with two connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use metrics::Counter;
use tern_sfu::tern_relay::link::{Link, LinkConfig};
use tern_sfu::tern_relay::msg::relay_control::Msg;
use tern_sfu::tern_relay::wire::HEADER_LEN;
use tern_sfu::{PeerId, shard_of_conference_number};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::shard::ShardInput;
use crate::relay_net::{RelayConnection, RelayEndpoint};

/// Control messages queued per peer before the link counts as stuck.
const CONTROL_QUEUE: usize = 8192;
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
    want: mpsc::UnboundedSender<RoomPeers>,
    generation: AtomicU64,
    dropped_unknown: Counter,
    dropped_short: Counter,
    dropped_overload: Counter,
    pub oversize: Counter,
    pub send_failed: Counter,
}

/// The focus's word on one conference: the other bridges hosting it.
struct RoomPeers {
    room: String,
    peers: Vec<(String, SocketAddr)>,
}

impl RelayShared {
    /// The focus says these bridges (id, relay address) share `room` with
    /// us; an empty list: none any more. A peer stays connected while some
    /// room names it and is let go when none does.
    pub fn set_room_peers(&self, room: &str, peers: &[(String, String)]) {
        let peers = peers
            .iter()
            .filter_map(|(peer, addr)| match addr.parse::<SocketAddr>() {
                Ok(a) => Some((peer.clone(), a)),
                Err(e) => {
                    warn!(%peer, %addr, error = %e, "relay address from the focus does not parse");
                    None
                }
            })
            .collect();
        let _ = self.want.send(RoomPeers {
            room: room.to_string(),
            peers,
        });
    }

    /// Send a core's datagram to `peer`; too large for the path now → on
    /// the control stream instead (reliable, so never worse than a loss).
    pub fn send_datagram(&self, peer: &str, datagram: Arc<[u8]>) {
        let Some(pc) = self.conns.get(peer) else {
            self.send_failed.increment(1);
            return;
        };
        let fits = pc
            .conn
            .max_datagram_size()
            .is_some_and(|m| datagram.len() <= m);
        if !fits {
            self.oversize.increment(1);
            if pc
                .control
                .try_send(Msg::OversizeMedia(datagram.to_vec()))
                .is_err()
            {
                self.send_failed.increment(1);
            }
            return;
        }
        if pc.conn.send_datagram(Bytes::from_owner(datagram)).is_err() {
            self.send_failed.increment(1);
        }
    }

    pub fn send_control(&self, peer: &str, msg: Msg) {
        match self.conns.get(peer) {
            Some(pc) => {
                if pc.control.try_send(msg).is_err() {
                    warn!(%peer, "relay control queue full; closing the link");
                    pc.conn
                        .close(quinn::VarInt::from_u32(2), b"control queue full");
                }
            }
            None => self.send_failed.increment(1),
        }
    }
}

/// The shard a room is pinned to (same rule as `App::shard_for`).
pub fn shard_index(room: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    room.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// Start accepting and dialling. Returns the shared half.
pub fn start(
    endpoint: RelayEndpoint,
    local_id: String,
    shards: Vec<mpsc::Sender<ShardInput>>,
) -> Arc<RelayShared> {
    let (want_tx, mut want_rx) = mpsc::unbounded_channel::<RoomPeers>();
    let dropped = |reason: &'static str| metrics::counter!("tern_relay_datagrams_dropped_total", "reason" => reason);
    let shared = Arc::new(RelayShared {
        local_id: local_id.clone(),
        conns: DashMap::new(),
        want: want_tx,
        generation: AtomicU64::new(0),
        dropped_unknown: dropped("unknown_conference"),
        dropped_short: dropped("malformed"),
        dropped_overload: dropped("shard_overloaded"),
        oversize: metrics::counter!("tern_relay_oversize_total"),
        send_failed: dropped("no_connection"),
    });
    let endpoint = Arc::new(endpoint);
    // Inbound connections.
    {
        let (endpoint, shared, shards) = (endpoint.clone(), shared.clone(), shards.clone());
        tokio::spawn(async move {
            while let Some(r) = endpoint.accept().await {
                match r {
                    Ok(c) => {
                        tokio::spawn(run_connection(c, shared.clone(), shards.clone(), false));
                    }
                    // Already logged and counted by the endpoint.
                    Err(e) => debug!(error = %e, "relay handshake refused"),
                }
            }
        });
    }
    // Outbound: one dialler per wanted peer with a larger id; peers no room
    // names any more are let go.
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            let wanted_gauge = metrics::gauge!("tern_relay_peers_wanted");
            let mut rooms: HashMap<String, Vec<(String, SocketAddr)>> = HashMap::new();
            let mut wanted: HashMap<String, SocketAddr> = HashMap::new();
            let mut dialling: HashMap<String, (SocketAddr, Arc<AtomicBool>)> = HashMap::new();
            while let Some(RoomPeers { room, peers }) = want_rx.recv().await {
                if peers.is_empty() {
                    rooms.remove(&room);
                } else {
                    rooms.insert(room, peers);
                }
                let now: HashMap<String, SocketAddr> = rooms.values().flatten().cloned().collect();
                for (peer, addr) in &wanted {
                    if now.get(peer) == Some(addr) {
                        continue;
                    }
                    if let Some((_, stop)) = dialling.remove(peer) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if !now.contains_key(peer)
                        && let Some(pc) = shared.conns.get(peer.as_str())
                    {
                        info!(%peer, "no shared conference left; closing the relay connection");
                        pc.conn
                            .close(quinn::VarInt::from_u32(4), b"no shared conference");
                    }
                }
                for (peer, &addr) in &now {
                    if peer.as_str() <= shared.local_id.as_str() || dialling.contains_key(peer) {
                        continue;
                    }
                    let stop = Arc::new(AtomicBool::new(false));
                    dialling.insert(peer.clone(), (addr, stop.clone()));
                    let (endpoint, shared, shards) =
                        (endpoint.clone(), shared.clone(), shards.clone());
                    tokio::spawn(dial_loop(
                        endpoint,
                        shared,
                        shards,
                        peer.clone(),
                        addr,
                        stop,
                    ));
                }
                wanted = now;
                wanted_gauge.set(wanted.len() as f64);
            }
        });
    }
    shared
}

/// Keep a connection to `peer` up: dial, run it, redial with backoff.
async fn dial_loop(
    endpoint: Arc<RelayEndpoint>,
    shared: Arc<RelayShared>,
    shards: Vec<mpsc::Sender<ShardInput>>,
    peer: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) {
    let Ok(id) = crate::relay_net::BridgeId::new(peer.clone()) else {
        warn!(%peer, "relay peer id is not a valid bridge id; not dialling");
        return;
    };
    let mut backoff = Duration::from_millis(100);
    // Stopping lets a live connection end by itself (it is closed by the
    // caller) so its clean-up — shards told the link is down — always runs.
    while !stop.load(Ordering::Relaxed) {
        match endpoint.connect(addr, &id).await {
            Ok(c) if !stop.load(Ordering::Relaxed) => {
                backoff = Duration::from_millis(100);
                run_connection(c, shared.clone(), shards.clone(), true).await;
            }
            Ok(c) => c
                .into_connection()
                .close(quinn::VarInt::from_u32(4), b"no shared conference"),
            Err(e) => warn!(%peer, %addr, error = %e, "relay dial failed"),
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    debug!(%peer, "relay dialler stopped");
}

fn broadcast(shards: &[mpsc::Sender<ShardInput>], make: impl Fn() -> ShardInput) {
    for s in shards {
        // Link state changes are rare and must not be lost: wait-free send
        // failing means the shard is gone or hopelessly behind.
        if s.try_send(make()).is_err() {
            warn!("shard queue full: relay link state change dropped");
        }
    }
}

async fn run_connection(
    c: RelayConnection,
    shared: Arc<RelayShared>,
    shards: Vec<mpsc::Sender<ShardInput>>,
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
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Msg>(CONTROL_QUEUE);
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
        let mut link = Link::new(
            LinkConfig::new(shared.local_id.clone()),
            peer.to_string(),
            Instant::now(),
        );
        let mut up = false;
        let mut rtt_told = None;
        // The peer's conference numbers → our shard.
        let mut theirs: HashMap<u32, usize> = HashMap::new();
        let mut buf = vec![0u8; 64 * 1024];
        let reason = loop {
            let mut write_error = None;
            while let Some(bytes) = link.poll_transmit() {
                if let Err(e) = send.write_all(&bytes).await {
                    write_error = Some(e);
                    break;
                }
            }
            if let Some(e) = write_error {
                break format!("control stream write: {e}");
            }
            if let Some(e) = link.error() {
                conn.close(quinn::VarInt::from_u32(3), e.to_string().as_bytes());
                break e.to_string();
            }
            if !up && link.is_ready() {
                up = true;
                info!("relay link ready");
                broadcast(&shards, || ShardInput::RelayLinkUp { peer: peer.clone() });
            }
            if up && link.rtt() != rtt_told {
                rtt_told = link.rtt();
                if let Some(rtt) = rtt_told {
                    broadcast(&shards, || ShardInput::RelayRtt {
                        peer: peer.clone(),
                        rtt,
                    });
                }
            }
            let deadline = tokio::time::Instant::from_std(link.poll_timeout());
            tokio::select! {
                read = recv.read(&mut buf) => match read {
                    Ok(Some(n)) => {
                        link.handle_stream(Instant::now(), &buf[..n]);
                        while let Some(m) = link.poll_message() {
                            if let Some(m) = m.msg {
                                route_control(&shared, &shards, &peer, &mut theirs, m);
                            }
                        }
                    }
                    Ok(None) => break "control stream finished".to_string(),
                    Err(e) => break format!("control stream: {e}"),
                },
                d = conn.read_datagram() => match d {
                    Ok(d) => {
                        link.handle_datagram_seen(Instant::now());
                        let mut batch = vec![d];
                        // What else already arrived joins this batch; an
                        // error shows up again on the next await.
                        while batch.len() < DATAGRAM_BATCH {
                            match ready_now(conn.read_datagram()) {
                                Some(Ok(d)) => batch.push(d),
                                _ => break,
                            }
                        }
                        route_datagrams(&shared, &shards, &peer, &theirs, batch);
                    }
                    Err(e) => break format!("connection: {e}"),
                },
                m = ctl_rx.recv() => match m {
                    Some(m) => {
                        link.send(m);
                        // Take what else is queued into the same write.
                        while let Ok(m) = ctl_rx.try_recv() {
                            link.send(m);
                        }
                    }
                    None => break "closed".to_string(),
                },
                _ = tokio::time::sleep_until(deadline) => link.handle_timeout(Instant::now()),
            }
        };
        live.decrement(1.0);
        warn!(%reason, "relay connection down");
        shared
            .conns
            .remove_if(&peer, |_, pc| pc.generation == generation);
        if up {
            broadcast(&shards, || ShardInput::RelayLinkDown { peer: peer.clone() });
        }
    }
    .instrument(span)
    .await
}

fn route_control(
    shared: &RelayShared,
    shards: &[mpsc::Sender<ShardInput>],
    peer: &PeerId,
    theirs: &mut HashMap<u32, usize>,
    m: Msg,
) {
    let n = shards.len();
    let shard = match &m {
        Msg::ConferenceJoined(c) => {
            let s = shard_index(&c.name, n);
            theirs.insert(c.number, s);
            Some(s)
        }
        Msg::ConferenceLeft(c) => theirs.remove(&c.number),
        Msg::ParticipantJoined(p) => theirs.get(&p.conference).copied(),
        Msg::ParticipantLeft(p) => theirs.get(&p.conference).copied(),
        Msg::Sources(s) => theirs.get(&s.conference).copied(),
        // These name our own numbers, which carry the shard.
        Msg::Demand(d) => Some(usize::from(shard_of_conference_number(d.conference))),
        Msg::KeyframeRequest(k) => Some(usize::from(shard_of_conference_number(k.conference))),
        Msg::Nack(k) => Some(usize::from(shard_of_conference_number(k.conference))),
        Msg::OversizeMedia(d) => conference_of(d).and_then(|c| theirs.get(&c).copied()),
        Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_) => None,
    };
    match shard.and_then(|s| shards.get(s)) {
        Some(tx) => {
            if tx
                .try_send(ShardInput::RelayControl {
                    peer: peer.clone(),
                    msg: m,
                })
                .is_err()
            {
                shared.dropped_overload.increment(1);
            }
        }
        None => shared.dropped_unknown.increment(1),
    }
}

fn conference_of(d: &[u8]) -> Option<u32> {
    (d.len() >= HEADER_LEN).then(|| u32::from_be_bytes([d[1], d[2], d[3], d[4]]))
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

/// Hand datagrams to the shards owning their conferences: one message per
/// shard for the whole batch.
fn route_datagrams(
    shared: &RelayShared,
    shards: &[mpsc::Sender<ShardInput>],
    peer: &PeerId,
    theirs: &HashMap<u32, usize>,
    batch: Vec<Bytes>,
) {
    let mut per_shard: Vec<Vec<Bytes>> = vec![Vec::new(); shards.len()];
    for d in batch {
        let Some(conf) = conference_of(&d) else {
            shared.dropped_short.increment(1);
            continue;
        };
        match theirs.get(&conf).and_then(|&s| per_shard.get_mut(s)) {
            Some(v) => v.push(d),
            None => shared.dropped_unknown.increment(1),
        }
    }
    for (tx, data) in shards.iter().zip(per_shard) {
        if data.is_empty() {
            continue;
        }
        let n = data.len() as u64;
        if tx
            .try_send(ShardInput::RelayDatagrams {
                peer: peer.clone(),
                data,
            })
            .is_err()
        {
            shared.dropped_overload.increment(n);
        }
    }
}
