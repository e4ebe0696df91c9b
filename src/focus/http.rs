//! The focus's HTTP side: the browser client and its `/join` endpoint,
//! WHIP/WHEP forwarding (whip.rs), /metrics, /health (liveness) and /ready
//! (readiness).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tern_proto::focus::v1 as fpb;

use super::handle::{FocusHandle, Req};
use crate::bridge::http::client_routes;

pub fn router(h: FocusHandle, metrics: PrometheusHandle) -> Router {
    // The endpoints anyone may call without a secret: limited per address.
    let limited = Router::new()
        .route("/join", get(join))
        .merge(super::whip::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            h.http_limits.clone(),
            super::limits::limit,
        ));
    client_routes()
        .merge(limited)
        // Outside the per-address limit: every page polls it, and it
        // needs a valid participant token.
        .route(
            "/recording",
            get(super::recording_http::list).post(super::recording_http::start_or_stop),
        )
        .route("/api/bridges", get(bridges))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .with_state(h)
}

/// Readiness: the core answers within a second. It does not wait for
/// bridges: bridges reach the focus through the same service address, so
/// a focus that waited for them to be ready would never be.
async fn ready(State(h): State<FocusHandle>) -> Response {
    let asked = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        h.ask(|reply| Req::Bridges { reply }),
    )
    .await;
    match asked {
        Ok(Ok(bridges)) => {
            let up = bridges
                .iter()
                .filter(|b| b.online && b.state == tern_focus::BridgeState::Operational)
                .count();
            (
                StatusCode::OK,
                format!("ready ({up} operational bridges)\n"),
            )
                .into_response()
        }
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "focus core stopped\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "focus core busy for over 1 s\n",
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct JoinQuery {
    room: String,
    name: Option<String>,
    participant: Option<String>,
    region: Option<String>,
    /// The conference's video codec ("vp8", "vp9", "h264", "av1"; absent:
    /// any).
    codec: Option<String>,
    /// "viewer": a token that receives but may not publish; absent or
    /// "participant": may publish; "moderator": may also start and stop
    /// the room's recording.
    role: Option<String>,
    /// "mixed": create the room as a mixed conference (one mix received
    /// instead of everyone's streams); "forwarding" or absent: the room's
    /// mode, forwarding for a new room.
    mode: Option<String>,
    /// A mixed room's audio sample rate (Hz; absent: 16000).
    rate: Option<u32>,
    /// A mixed room's composite layout: "grid" (absent) or "speaker".
    composite: Option<String>,
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    super::handle::json_error(code, msg)
}

/// The browser client's way in (development and demos: anyone who reaches
/// this endpoint can join any room — production embeds call the gRPC API
/// with the API secret and hand out tokens themselves).
async fn join(State(h): State<FocusHandle>, Query(q): Query<JoinQuery>) -> Response {
    let name = q
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "guest".into());
    let participant = match q.participant.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => crate::auth::new_participant_id(&name),
    };
    let display: String = name.chars().take(64).collect();
    let role = match q.role.as_deref() {
        None | Some("" | "participant") => fpb::Role::Participant,
        Some("viewer") => fpb::Role::Viewer,
        Some("moderator") => fpb::Role::Moderator,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("role {other:?} is not \"participant\", \"viewer\" or \"moderator\""),
            );
        }
    };
    let layout = match q.composite.as_deref() {
        None | Some("" | "grid") => tern_focus::MixLayout::Grid,
        Some("speaker") => tern_focus::MixLayout::Speaker,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("composite {other:?} is not \"grid\" or \"speaker\""),
            );
        }
    };
    if q.composite.is_some() && q.mode.as_deref() != Some("mixed") {
        return error(StatusCode::BAD_REQUEST, "composite is for mode=mixed only");
    }
    let video = tern_focus::MixedVideo {
        layout,
        width: 0,
        height: 0,
    };
    let mode = match (q.mode.as_deref(), q.rate) {
        (None | Some(""), None) => None,
        (Some("forwarding"), None) => Some(tern_focus::ConferenceMode::Forwarding),
        (Some("mixed"), rate) => match super::grpc::mixed_mode(rate.unwrap_or(0), video) {
            Ok(m) => Some(m),
            Err(s) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    s.message().replace("options.audio_sample_rate", "rate"),
                );
            }
        },
        (None | Some("" | "forwarding"), Some(_)) => {
            return error(StatusCode::BAD_REQUEST, "rate is for mode=mixed only");
        }
        (Some(other), _) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode {other:?} is not \"forwarding\" or \"mixed\""),
            );
        }
    };
    match super::grpc::allocate(
        &h,
        q.room,
        participant.clone(),
        display,
        q.region.unwrap_or_default(),
        q.codec.as_deref().unwrap_or_default(),
        role,
        mode,
    )
    .await
    {
        Ok(a) => axum::Json(json!({
            "signal_url": a.signal_url,
            "token": a.token,
            "participant": participant,
            "bridge": a.bridge_id,
            "region": a.region,
            "ice_servers": a.ice_servers.iter().map(|s| json!({
                "urls": s.urls,
                "username": s.username,
                "credential": s.credential,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(s) => {
            let code = match s.code() {
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                // The room's codec or mode is another.
                tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(code, s.message())
        }
    }
}

/// The bridge table as JSON (dashboards, tests).
async fn bridges(State(h): State<FocusHandle>) -> Response {
    let Ok(views) = h.ask(|reply| Req::Bridges { reply }).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "focus is shutting down");
    };
    let list: Vec<_> = views
        .iter()
        .map(|v| {
            json!({
                "id": v.reg.id,
                "region": v.reg.region,
                "version": v.reg.version,
                "signal_url": v.reg.signal_url,
                "online": v.online,
                "state": format!("{:?}", v.state).to_lowercase(),
                "stress": v.stress,
                "endpoints": v.endpoints,
                "conferences": v.conferences,
                "last_failure": v.last_failure,
            })
        })
        .collect();
    axum::Json(list).into_response()
}
