//! `/recording`: the browser client's record button. A participant's
//! token says who and which room; only a moderator's (`Claims::moderator`,
//! from `role=moderator` or gRPC `ROLE_MODERATOR`) may start or stop.
//!
//! - `GET /recording` (any participant of the room): the room's
//!   recordings, newest first.
//! - `POST /recording?action=start|stop` (a moderator): the recording
//!   started or stopped; 409 when one already runs, 404 when none does.
//!
//! The token travels as `Authorization: Bearer <token>`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::handle::{FocusHandle, RecordingOp, Req, json_error as error, status};
use crate::auth::Claims;

#[derive(Deserialize)]
pub struct Action {
    action: Option<String>,
}

/// A refusal: the status and its reason (made a response by `error`).
type Refusal = (StatusCode, String);

fn claims(h: &FocusHandle, headers: &HeaderMap) -> Result<Claims, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer header with the participant's token is required".into(),
            )
        })?;
    h.keys.verify(token).map_err(|r| {
        (
            StatusCode::UNAUTHORIZED,
            format!("token refused: {}", r.message),
        )
    })
}

fn view_json(v: &tern_focus::RecordingView) -> Value {
    let pb = super::grpc::recording_pb(v);
    json!({
        "recording_id": pb.recording_id,
        "conference": pb.conference,
        "bridge": pb.bridge_id,
        "state": match v.state {
            tern_focus::RecordingState::Active => "active",
            tern_focus::RecordingState::Stopped => "stopped",
            tern_focus::RecordingState::Failed => "failed",
        },
        "started_unix_ms": pb.started_unix_ms,
        "ended_unix_ms": v.ended_unix_ms,
        "error": v.error,
        "files": pb.files,
        "bytes": pb.bytes,
        "continues": v.continues,
    })
}

async fn ask(h: &FocusHandle, op: RecordingOp) -> Result<Vec<tern_focus::RecordingView>, Refusal> {
    let r = h
        .ask(|reply| Req::Recording { op, reply })
        .await
        .map_err(|s| (StatusCode::SERVICE_UNAVAILABLE, s.message().to_string()))?;
    r.map_err(|e| {
        let s = status(e);
        let code = match s.code() {
            tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, s.message().to_string())
    })
}

pub async fn list(State(h): State<FocusHandle>, headers: HeaderMap) -> Response {
    let c = match claims(&h, &headers) {
        Ok(c) => c,
        Err((code, why)) => return error(code, why),
    };
    match ask(
        &h,
        RecordingOp::List {
            conference: Some(c.room),
        },
    )
    .await
    {
        Ok(views) => axum::Json(json!({
            "recordings": views.iter().map(view_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err((code, why)) => error(code, why),
    }
}

pub async fn start_or_stop(
    State(h): State<FocusHandle>,
    headers: HeaderMap,
    Query(q): Query<Action>,
) -> Response {
    let c = match claims(&h, &headers) {
        Ok(c) => c,
        Err((code, why)) => return error(code, why),
    };
    if c.moderator != Some(true) {
        return error(
            StatusCode::FORBIDDEN,
            "only a moderator may start or stop recording (the token has no moderator claim)",
        );
    }
    let op = match q.action.as_deref() {
        Some("start") => RecordingOp::Start {
            conference: c.room,
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        },
        Some("stop") => RecordingOp::Stop { conference: c.room },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("action {other:?} is not \"start\" or \"stop\""),
            );
        }
    };
    match ask(&h, op).await {
        Ok(views) => match views.first() {
            Some(v) => axum::Json(view_json(v)).into_response(),
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no recording in the answer",
            ),
        },
        Err((code, why)) => error(code, why),
    }
}
