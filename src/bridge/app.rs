//! The state the bridge's HTTP handlers and the focus link share: the
//! configuration, the shards' inboxes and spans, what the shards last said,
//! the relay's shared half, and the bridge's drain and shutdown flags.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;
use tern_sfu::EndpointId;
use tern_sfu::node::shard_of_room;
use tokio::sync::mpsc;
use tracing::Span;

use crate::auth::TokenKeys;
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
    pub metrics: PrometheusHandle,
    pub snapshots: shard::Snapshots,
    /// Set when the relay is configured (`[relay] listen`).
    pub relay: std::sync::OnceLock<Arc<relay::RelayShared>>,
    /// Live WHIP and WHEP sessions by resource id (their `Location`).
    pub http_sessions: dashmap::DashMap<String, HttpSession>,
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
