//! HTTP: the browser client, the signalling WebSocket, /metrics, /health and
//! (under `tern dev`) token minting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tern_sfu::signal::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, Rejection, ServerMessage, parse_client_message,
};
use tracing::{Instrument, debug, info, info_span};

use super::app::{App, JoinError, Joined};
use super::msg::{ShardMsg, count_error};
use tern_sfu::limits::{RATE_ERROR_EVERY, SIGNAL_BURST, SIGNAL_RATE, TokenBucket};
use tern_sfu::node::ShardInput;

const INDEX_HTML: &str = include_str!("../web/index.html");
const TERN_JS: &str = include_str!("../web/tern.js");
const CHAT_JS: &str = include_str!("../web/chat.js");
const RECORDING_JS: &str = include_str!("../web/recording.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// How long a new WebSocket may take to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames above this are cut off by the WebSocket layer itself; below it the
/// protocol's own limit applies with a precise error.
const WS_FRAME_LIMIT: usize = 1 << 20;
/// Read buffer per signalling connection; longer messages are read in several
/// chunks. After the SDP offer (a few KiB, read into a buffer of its own
/// length that goes with it) a connection carries JSON messages of a few
/// hundred bytes; 4 KiB kept ~6 KB per participant (heaptrack, meetings).
const WS_BUFFER: usize = 1024;

/// The browser client's pages and assets; the focus serves them too.
pub(crate) fn client_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/room/{room}", get(index))
        .route("/static/tern.js", get(js))
        .route("/static/chat.js", get(chat_js))
        .route("/static/recording.js", get(recording_js))
        .route("/static/style.css", get(css))
}

pub fn router(app: Arc<App>) -> Router {
    let mut r = client_routes()
        .route("/signal", get(signal))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(super::whip::routes());
    if app.dev {
        r = r.route("/dev/token", get(dev_token));
    }
    r.with_state(app)
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        TERN_JS,
    )
}

async fn recording_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        RECORDING_JS,
    )
}

async fn chat_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CHAT_JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

/// Liveness: 200 while the process works, draining and shutting down
/// included (an orchestrator must not restart a bridge that is emptying
/// itself); 503 when a shard has stalled.
async fn health(State(app): State<Arc<App>>) -> Response {
    match super::status::live(&app) {
        Ok(()) if app.shutting_down.load(Ordering::SeqCst) => {
            (StatusCode::OK, "ok (shutting down)\n").into_response()
        }
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Readiness: 200 when the bridge takes new participants; 503 with the
/// reason (stalled shard, shutting down, draining, not registered with its
/// focus) otherwise.
async fn ready(State(app): State<Arc<App>>) -> Response {
    match super::status::ready(&app) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    room: String,
    name: Option<String>,
}

/// Only under `tern dev`: anyone who can reach the bridge gets a token.
async fn dev_token(State(app): State<Arc<App>>, Query(q): Query<TokenQuery>) -> Response {
    let name = q
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "guest".into());
    let participant = crate::auth::new_participant_id(&name);
    let token = app.keys.mint(
        &q.room,
        &participant,
        Some(&name.chars().take(64).collect::<String>()),
        app.cfg.auth.token_ttl_secs,
    );
    // The room is checked when the token is used; say so now too.
    if let Err(r) = app.keys.verify(&token) {
        return (StatusCode::BAD_REQUEST, r.message).into_response();
    }
    let ice_servers: Vec<_> =
        crate::auth::turn_credentials(&app.cfg.turn, &participant, crate::auth::unix_now())
            .into_iter()
            .collect();
    axum::Json(serde_json::json!({
        "token": token,
        "participant": participant,
        "ice_servers": ice_servers,
    }))
    .into_response()
}

async fn signal(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let slot = app.signal_slot(peer.ip());
    // The library's default 128 KiB read and write buffers are allocated
    // per connection and kept for its whole life: they were the largest
    // item of a bridge's memory per endpoint after the RTX caches, for a
    // channel that carries a few KiB of SDP and small JSON messages.
    ws.max_message_size(WS_FRAME_LIMIT)
        .max_frame_size(WS_FRAME_LIMIT)
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_FRAME_LIMIT * 2)
        .on_upgrade(move |socket| async move {
            match slot {
                Some(slot) => session(app, socket, slot).await,
                None => {
                    let max = app.cfg.bridge.max_signal_connections_per_ip;
                    refuse(
                        socket,
                        Rejection::new(
                            ErrorCode::TooManyConnections,
                            format!(
                                "{} already holds {max} signalling connections to this bridge (bridge.max_signal_connections_per_ip)",
                                peer.ip()
                            ),
                        ),
                    )
                    .await
                }
            }
        })
}

async fn send(ws: &mut WebSocket, msg: &ServerMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => ws.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn refuse(mut ws: WebSocket, r: Rejection) {
    count_error(r.code);
    let _ = send(&mut ws, &r.into_message()).await;
    let _ = ws.close().await;
}

/// One signalling connection; `_slot` counts it against its address until
/// it ends.
async fn session(app: Arc<App>, mut ws: WebSocket, _slot: super::app::SignalSlot) {
    let first = match tokio::time::timeout(JOIN_TIMEOUT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            return refuse(
                ws,
                Rejection::new(ErrorCode::BadMessage, "expected a text frame with `join`"),
            )
            .await;
        }
        Ok(_) => return,
        Err(_) => {
            return refuse(
                ws,
                Rejection::new(ErrorCode::BadMessage, "no `join` within 10 s"),
            )
            .await;
        }
    };
    let token = match parse_client_message(&first) {
        Ok(ClientMessage::Join { version, token }) => {
            if version != PROTOCOL_VERSION {
                return refuse(
                    ws,
                    Rejection::new(
                        ErrorCode::UnsupportedVersion,
                        format!("protocol version {version} is not supported; this bridge speaks {PROTOCOL_VERSION}"),
                    ),
                )
                .await;
            }
            token
        }
        Ok(_) => {
            return refuse(
                ws,
                Rejection::new(ErrorCode::NotJoined, "the first message must be `join`"),
            )
            .await;
        }
        Err(r) => return refuse(ws, r).await,
    };
    let claims = match app.keys.verify(&token) {
        Ok(c) => c,
        Err(r) => return refuse(ws, r).await,
    };
    // Draining: participants here are being moved off, so nobody new
    // joins (a token the focus handed out just before the drain); behind a
    // focus the client asks it again and is placed elsewhere, as WHIP is.
    for (flag, what) in [
        (&app.shutting_down, "the bridge is shutting down"),
        (
            &app.draining,
            "the bridge is draining; ask the focus for another",
        ),
    ] {
        if flag.load(Ordering::SeqCst) {
            return refuse(ws, Rejection::new(ErrorCode::ShuttingDown, what)).await;
        }
    }

    let Joined { id, shard, mut rx } = match app.join(&claims).await {
        Ok(j) => j,
        Err(JoinError::Refused(r)) => return refuse(ws, r).await,
        Err(JoinError::Stopping) => return,
    };

    let span = info_span!(parent: app.shard_span(&claims.room), "endpoint", %id, room = %claims.room, participant = %claims.sub);
    async {
        // The join was the first message of the budget.
        let mut budget = TokenBucket::new(SIGNAL_RATE, SIGNAL_BURST);
        budget.take(Instant::now());
        let (mut dropped, mut told_at): (u64, Option<Instant>) = (0, None);
        loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(_))) if !budget.take(Instant::now()) => {
                        // Dropped unread; said once a second at most.
                        dropped += 1;
                        let now = Instant::now();
                        if told_at.is_none_or(|t| now.saturating_duration_since(t) >= RATE_ERROR_EVERY) {
                            told_at = Some(now);
                            let r = Rejection::new(
                                ErrorCode::RateLimited,
                                format!("more than {SIGNAL_RATE} signalling messages a second (burst {SIGNAL_BURST}): {dropped} dropped so far"),
                            );
                            count_error(r.code);
                            if !send(&mut ws, &r.into_message()).await {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Text(t))) => match parse_client_message(&t) {
                        Ok(msg) => {
                            if shard.send(ShardMsg::Core(ShardInput::Message { id, msg })).await.is_err() {
                                break;
                            }
                        }
                        Err(r) => {
                            let fatal = r.code.is_fatal();
                            count_error(r.code);
                            if !send(&mut ws, &r.into_message()).await || fatal {
                                break;
                            }
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        let r = Rejection::new(ErrorCode::BadMessage, "binary frames are not part of the protocol");
                        count_error(r.code);
                        if !send(&mut ws, &r.into_message()).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket error");
                        break;
                    }
                },
                outgoing = rx.recv() => match outgoing {
                    Some(msg) => {
                        let fatal = matches!(&*msg, ServerMessage::Error { code, .. } if code.is_fatal());
                        if !send(&mut ws, &msg).await || fatal {
                            break;
                        }
                    }
                    // The core closed the endpoint (leave, replaced, failure).
                    None => break,
                },
            }
        }
        let _ = shard.send(ShardMsg::Core(ShardInput::Leave { id })).await;
        let _ = ws.close().await;
        info!("signalling session ended");
    }
    .instrument(span)
    .await
}
