//! The state the bridge's HTTP handlers and the focus link share: the
//! configuration, the shards' inboxes and spans, what the shards last said,
//! the relay's shared half, and the bridge's drain and shutdown flags.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;
use tern_sfu::node::shard_of_room;
use tern_sfu::signal::{Rejection, ServerMessage};
use tern_sfu::{EndpointId, JoinRequest};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::auth::{Claims, TokenKeys};
use crate::config::Config;

use super::msg::ShardMsg;
use super::{relay, shard};

/// State shared by the HTTP handlers.
pub struct App {
    pub cfg: Config,
    pub keys: TokenKeys,
    pub dev: bool,
    pub shards: Vec<mpsc::Sender<ShardMsg>>,
    /// Each shard task's span: a signalling session's span nests under its
    /// shard's.
    pub shard_spans: Vec<Span>,
    pub shutting_down: AtomicBool,
    /// The focus (or an operator through it) asked this bridge to drain.
    pub draining: AtomicBool,
    /// The focus accepted this bridge's registration on the current stream.
    pub focus_registered: AtomicBool,
    /// When the bridge started (the health watchdog's origin).
    pub started: std::time::Instant,
    pub metrics: PrometheusHandle,
    pub snapshots: shard::Snapshots,
    /// Set when the relay is configured (`[relay] listen`).
    pub relay: std::sync::OnceLock<Arc<relay::RelayShared>>,
    /// Live WHIP and WHEP sessions by resource id (their `Location`).
    pub http_sessions: dashmap::DashMap<String, HttpSession>,
    /// Open signalling WebSockets per client address
    /// (`bridge.max_signal_connections_per_ip`).
    pub signal_conns: dashmap::DashMap<std::net::IpAddr, usize>,
    /// The mixing workers (their CPU time is reported to the focus).
    pub mixing: super::mixing::Mixing,
}

/// One signalling connection counted against its address; uncounted when
/// dropped, however the session ends.
pub struct SignalSlot {
    app: Arc<App>,
    ip: std::net::IpAddr,
}

impl App {
    /// Count a signalling connection from `ip`, unless the address already
    /// holds the most the bridge allows.
    pub fn signal_slot(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SignalSlot> {
        let max = self.cfg.bridge.max_signal_connections_per_ip;
        let mut n = self.signal_conns.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(SignalSlot {
            app: self.clone(),
            ip,
        })
    }
}

impl Drop for SignalSlot {
    fn drop(&mut self) {
        self.app.signal_conns.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl App {
    /// Conferences are pinned to a shard by room name, so the media path of a
    /// conference never crosses threads or locks.
    pub fn shard_for(&self, room: &str) -> &mpsc::Sender<ShardMsg> {
        &self.shards[shard_of_room(room, self.shards.len())]
    }

    /// The span of the shard `room` is pinned to.
    pub fn shard_span(&self, room: &str) -> &Span {
        &self.shard_spans[shard_of_room(room, self.shard_spans.len())]
    }

    /// Join the participant a verified token names to its room's shard,
    /// with a fresh endpoint id and ICE password: the one way in for both
    /// signalling sessions (WebSocket) and WHIP/WHEP.
    pub async fn join(&self, claims: &Claims) -> Result<Joined, JoinError> {
        let video_codec = claims.video_codec().map_err(JoinError::Refused)?;
        let composite = claims.composite().map_err(JoinError::Refused)?;
        let id = EndpointId(rand::random::<u64>() >> 1);
        let shard = self.shard_for(&claims.room).clone();
        let (tx, rx) = mpsc::channel(tern_sfu::node::backpressure::SIGNAL_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let req = JoinRequest {
            id,
            room: claims.room.clone(),
            participant: claims.sub.clone(),
            name: claims.name.clone().unwrap_or_else(|| claims.sub.clone()),
            ice_password: format!("{:032x}", rand::random::<u128>()),
            video_codec,
            may_publish: claims.may_publish(),
            mix_rate: claims.mix,
            composite,
        };
        shard
            .send(ShardMsg::Join {
                req,
                tx,
                reply: reply_tx,
            })
            .await
            .map_err(|_| JoinError::Stopping)?;
        match reply_rx.await {
            Ok(Ok(())) => Ok(Joined { id, shard, rx }),
            Ok(Err(r)) => Err(JoinError::Refused(r)),
            Err(_) => Err(JoinError::Stopping),
        }
    }
}

/// A participant the shard took in.
pub struct Joined {
    pub id: EndpointId,
    /// Its shard's inbox: everything else it says goes there.
    pub shard: mpsc::Sender<ShardMsg>,
    /// What the core says to it.
    pub rx: mpsc::Receiver<Box<ServerMessage>>,
}

/// Why [`App::join`] did not.
pub enum JoinError {
    /// The shard refused (room full, overloaded, ...), with its reason.
    Refused(Rejection),
    /// The shard's task is gone: the bridge is stopping.
    Stopping,
}

/// A live WHIP or WHEP session (bridge/whip.rs), found by its unguessable
/// resource id.
#[derive(Debug, Clone)]
pub struct HttpSession {
    /// "whip" or "whep" (metrics label).
    pub protocol: &'static str,
    pub endpoint: EndpointId,
    pub room: String,
}
