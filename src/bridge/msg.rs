//! What the bridge's tasks send each other, in a module of its own so that
//! the signalling sessions (`http.rs`), the relay (`relay.rs`), the focus
//! link and the shard tasks (`shard.rs`) depend on it and not on each other.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tern_sfu::JoinRequest;
use tern_sfu::node::ShardInput;
use tern_sfu::signal::{ErrorCode, Rejection, ServerMessage};
use tokio::sync::{mpsc, oneshot};

/// What a shard task is sent: the core's inputs ([`ShardInput`], routed by
/// the node's rules), plus what needs the shell: client datagrams with their
/// kernel receive times, joins (which answer), and the final close.
pub enum ShardMsg {
    /// Client datagrams, each with its kernel receive time (since the Unix
    /// epoch) when the socket reports it.
    Datagrams(Vec<(SocketAddr, Bytes, Option<Duration>)>),
    /// Frames from ICE-TCP connections (bridge/tcp.rs) at the TCP
    /// candidate `local`, each with its connection's remote address.
    TcpDatagrams {
        local: SocketAddr,
        batch: Vec<(SocketAddr, Bytes)>,
    },
    Join {
        req: JoinRequest,
        tx: mpsc::Sender<Box<ServerMessage>>,
        reply: oneshot::Sender<Result<(), Rejection>>,
    },
    Core(ShardInput),
    /// Close every endpoint (the bridge is going away).
    Shutdown,
}

/// Count a signalling error sent to a client, by code
/// (`tern_signalling_errors_total{code}`).
pub(crate) fn count_error(code: ErrorCode) {
    metrics::counter!("tern_signalling_errors_total", "code" => code.as_str()).increment(1);
}
