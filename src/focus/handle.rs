//! What the focus's gRPC and HTTP handlers share: the requests they send to
//! the task that owns the core, the handle they send them through, and the
//! mapping of core errors to gRPC status codes. A leaf: it starts no server
//! and knows no handler.

use std::collections::BTreeMap;

use tern_focus::{FocusError, Placement, Registration, Report};
use tern_proto::bridge::v1 as bpb;
use tern_proto::focus::v1 as fpb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;

use crate::auth::TokenKeys;

/// Commands for one bridge's control stream.
pub type CommandTx = mpsc::Sender<Result<bpb::FocusCommand, Status>>;

pub enum Req {
    Allocate {
        conference: String,
        participant: String,
        region: String,
        /// Empty: none named.
        video_codec: String,
        /// `None`: the conference's (forwarding for a new one).
        mode: Option<tern_focus::ConferenceMode>,
        reply: oneshot::Sender<Result<Placement, FocusError>>,
    },
    Register {
        reg: Registration,
        commands: CommandTx,
        reply: oneshot::Sender<Result<u64, FocusError>>,
    },
    Report {
        id: String,
        session: u64,
        report: Report,
    },
    Disconnect {
        id: String,
        session: u64,
        reason: String,
    },
    Drain {
        id: String,
        on: bool,
        reply: oneshot::Sender<Result<tern_focus::BridgeView, FocusError>>,
    },
    End {
        conference: String,
        reply: oneshot::Sender<Result<usize, FocusError>>,
    },
    Bridges {
        reply: oneshot::Sender<Vec<tern_focus::BridgeView>>,
    },
    /// Start, stop or list recordings: the one started or stopped, or the
    /// list.
    Recording {
        op: RecordingOp,
        reply: oneshot::Sender<Result<Vec<tern_focus::RecordingView>, FocusError>>,
    },
    Conference {
        name: String,
        reply: oneshot::Sender<Option<BTreeMap<String, std::collections::BTreeSet<String>>>>,
    },
}

pub enum RecordingOp {
    Start { conference: String, unix_ms: u64 },
    Stop { conference: String },
    List { conference: Option<String> },
}

/// What handlers share.
#[derive(Clone)]
pub struct FocusHandle {
    pub tx: mpsc::Sender<Req>,
    pub events: broadcast::Sender<fpb::ClusterEvent>,
    pub keys: TokenKeys,
    pub token_ttl: u64,
    pub api_secret: String,
    pub bridge_secret: String,
    pub focus_id: String,
    /// TURN servers whose credentials `Allocate` and `/join` hand out.
    pub turn: crate::config::TurnConfig,
    /// Per-address limits on `/join` and WHIP/WHEP (limits.rs).
    pub http_limits: std::sync::Arc<super::limits::HttpLimits>,
}

impl FocusHandle {
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Req) -> Result<T, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Status::unavailable("focus is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("focus is shutting down"))
    }
}

/// Map core errors to gRPC status codes with the core's precise message.
pub fn status(e: FocusError) -> Status {
    let msg = e.to_string();
    match e {
        FocusError::DuplicateBridge(_) => Status::already_exists(msg),
        FocusError::IncompatibleApi { .. }
        | FocusError::CodecMismatch { .. }
        | FocusError::ModeMismatch { .. }
        | FocusError::AlreadyRecording { .. }
        | FocusError::RecordingRefused { .. } => Status::failed_precondition(msg),
        FocusError::NotRecording(_) => Status::not_found(msg),
        FocusError::UnknownBridge(_) | FocusError::UnknownConference(_) => Status::not_found(msg),
        FocusError::NoBridge(_) => Status::unavailable(msg),
        FocusError::Invalid { .. } => Status::invalid_argument(msg),
    }
}

/// An HTTP refusal as the browser client reads it: `{"error": "..."}`.
pub fn json_error(
    code: axum::http::StatusCode,
    msg: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (code, axum::Json(serde_json::json!({ "error": msg.into() }))).into_response()
}
