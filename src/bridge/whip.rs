//! WHIP (RFC 9725) and WHEP over HTTP: a client POSTs one SDP offer with a
//! bearer token and gets the answer back; the bridge then holds the
//! participant like any other until the client DELETEs its session URL or
//! its media stops. See docs/whip-whep.md.
//!
//! The shell only translates: the offer becomes `join` + `offer` to the
//! conference's shard (sources from [`tern_sfu::whip::sources_from_offer`]
//! for WHIP, none for WHEP), the core's answer or refusal becomes the HTTP
//! response, and the core's other messages are read and dropped (a WHIP or
//! WHEP client has no channel to receive them).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tern_sfu::node::ShardInput;
use tern_sfu::signal::{ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, Rejection, ServerMessage};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span};

use super::app::{App, HttpSession, JoinError, Joined};
use super::msg::{ShardMsg, count_error};

/// How long the core may take to answer an offer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of the two protocols a session speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Ingest: the client publishes.
    Whip,
    /// Egress: the client receives; optionally one chosen source on stage.
    Whep(Option<String>),
}

impl Protocol {
    fn as_str(&self) -> &'static str {
        match self {
            Protocol::Whip => "whip",
            Protocol::Whep(_) => "whep",
        }
    }
}

/// Longest `?source=` accepted (ids are `participant/name`).
const MAX_SOURCE_ID: usize = 200;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/whip", post(whip).options(options))
        .route("/whip/{room}", post(whip_room).options(options))
        .route("/whep", post(whep).options(options))
        .route("/whep/{room}", post(whep_room).options(options))
        .route(
            "/whip/session/{id}",
            axum::routing::delete(end).patch(patch).options(options),
        )
        .route(
            "/whep/session/{id}",
            axum::routing::delete(end).patch(patch).options(options),
        )
}

async fn whip(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    start(app, Protocol::Whip, None, headers, body).await
}

async fn whip_room(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(app, Protocol::Whip, Some(room), headers, body).await
}

/// `?source=<source id>`: watch that source (on stage) rather than
/// whoever spoke last.
#[derive(Deserialize)]
struct WhepQuery {
    source: Option<String>,
}

async fn whep(
    State(app): State<Arc<App>>,
    Query(q): Query<WhepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(app, Protocol::Whep(q.source), None, headers, body).await
}

async fn whep_room(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    Query(q): Query<WhepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(app, Protocol::Whep(q.source), Some(room), headers, body).await
}

/// CORS preflight, and RFC 9725's way to ask what the endpoint accepts.
async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

/// Trickle ICE and ICE restarts are not supported: the bridge is ICE-lite
/// and finds the client's address from its connectivity checks, so the
/// client's candidates are never needed. RFC 9725 §4.3.1: 405.
async fn patch() -> Response {
    let mut r = (
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE and ICE restarts are not supported: send every candidate in the offer, or none (the bridge is ICE-lite)\n",
    )
        .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    cors(r.headers_mut());
    r
}

async fn end(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some((_, s)) = app.http_sessions.remove(&id) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no session {id}: it ended or never existed"),
        );
    };
    let _ = app
        .shard_for(&s.room)
        .send(ShardMsg::Core(ShardInput::Leave { id: s.endpoint }))
        .await;
    count_protocol(s.protocol, "deleted");
    let mut r = StatusCode::OK.into_response();
    cors(r.headers_mut());
    r
}

/// Methods a session URL takes (the endpoints themselves: POST, OPTIONS).
const SESSION_METHODS: &str = "POST, DELETE, PATCH, OPTIONS";

fn cors(h: &mut HeaderMap) {
    cors_for(h, SESSION_METHODS);
}

/// CORS for WHIP/WHEP (here and on the focus): any origin may publish or
/// watch with a token, and must see `Location`.
pub(crate) fn cors_for(h: &mut HeaderMap, methods: &'static str) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, if-match"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location"),
    );
}

fn refuse(status: StatusCode, message: String) -> Response {
    refusal(status, message, SESSION_METHODS)
}

/// A plain-text refusal with CORS, and `WWW-Authenticate` on a 401.
pub(crate) fn refusal(status: StatusCode, message: String, methods: &'static str) -> Response {
    let mut r = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    cors_for(r.headers_mut(), methods);
    r
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// A refusal the core or the token check made, counted like one over the
/// WebSocket.
fn refuse_with(protocol: &Protocol, r: Rejection) -> Response {
    count_error(r.code);
    count_session(protocol, r.code.as_str());
    let status = StatusCode::from_u16(tern_sfu::whip::http_status(r.code))
        .unwrap_or(StatusCode::BAD_REQUEST);
    refuse(status, format!("{}: {}", r.code.as_str(), r.message))
}

fn count_session(protocol: &Protocol, outcome: &'static str) {
    count_protocol(protocol.as_str(), outcome);
}

fn count_protocol(protocol: &'static str, outcome: &'static str) {
    metrics::counter!("tern_http_sessions_total", "protocol" => protocol, "outcome" => outcome)
        .increment(1);
}

async fn start(
    app: Arc<App>,
    protocol: Protocol,
    path_room: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        count_session(&protocol, "bad_request");
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be an SDP offer with content-type application/sdp, not {content_type:?}"
            ),
        );
    }
    let Some(token) = bearer(&headers) else {
        count_session(&protocol, "invalid_token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_token: no `Authorization: Bearer <token>` header (tokens come from the focus: GET /join or the Allocate API)".into(),
        );
    };
    let claims = match app.keys.verify(token) {
        Ok(c) => c,
        Err(r) => return refuse_with(&protocol, r),
    };
    if matches!(protocol, Protocol::Whip) && !claims.may_publish() {
        return refuse_with(
            &protocol,
            Rejection::new(
                ErrorCode::PublishNotAllowed,
                "this token does not allow publishing (a viewer): WHIP refused; watch with WHEP",
            ),
        );
    }
    if let Some(room) = path_room.filter(|r| *r != claims.room) {
        count_session(&protocol, "wrong_room");
        return refuse(
            StatusCode::FORBIDDEN,
            format!("the token is for room {:?}, not {room:?}", claims.room),
        );
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return refuse_with(
            &protocol,
            Rejection::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "the offer is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                    body.len()
                ),
            ),
        );
    }
    let Ok(sdp) = String::from_utf8(body.to_vec()) else {
        return refuse_with(
            &protocol,
            Rejection::new(ErrorCode::BadOffer, "the offer is not UTF-8 text"),
        );
    };
    if let Protocol::Whep(Some(source)) = &protocol
        && (source.is_empty() || source.len() > MAX_SOURCE_ID)
    {
        return refuse_with(
            &protocol,
            Rejection::new(
                ErrorCode::BadMessage,
                format!(
                    "?source= must name a source id (participant/name) of 1 to {MAX_SOURCE_ID} bytes"
                ),
            ),
        );
    }
    let sources = match &protocol {
        Protocol::Whip => {
            let s = tern_sfu::whip::sources_from_offer(&sdp);
            if s.is_empty() {
                return refuse_with(
                    &protocol,
                    Rejection::new(
                        ErrorCode::BadOffer,
                        "a WHIP offer must send audio or video (no m-section is sendonly or sendrecv); to receive, use WHEP",
                    ),
                );
            }
            s
        }
        // A WHEP client only watches, whatever directions its offer has.
        Protocol::Whep(_) => Vec::new(),
    };
    if app.shutting_down.load(Ordering::SeqCst) || app.draining.load(Ordering::SeqCst) {
        return refuse_with(
            &protocol,
            Rejection::new(
                ErrorCode::ShuttingDown,
                "the bridge is shutting down or draining; ask the focus for another",
            ),
        );
    }

    let gone = || {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bridge is stopping".into(),
        )
    };
    let Joined { id, shard, mut rx } = match app.join(&claims).await {
        Ok(j) => j,
        Err(JoinError::Refused(r)) => return refuse_with(&protocol, r),
        Err(JoinError::Stopping) => return gone(),
    };
    let leave = move |shard: mpsc::Sender<ShardMsg>| async move {
        let _ = shard.send(ShardMsg::Core(ShardInput::Leave { id })).await;
    };
    if shard
        .send(ShardMsg::Core(ShardInput::Message {
            id,
            msg: ClientMessage::Offer { sdp, sources },
        }))
        .await
        .is_err()
    {
        return gone();
    }
    if let Protocol::Whep(Some(source)) = &protocol {
        let on_stage = ClientMessage::Constraints {
            default_max_height: None,
            max_height: Default::default(),
            last_n: None,
            selected: None,
            on_stage: Some(vec![source.clone()]),
            on_stage_max_height: None,
        };
        if shard
            .send(ShardMsg::Core(ShardInput::Message { id, msg: on_stage }))
            .await
            .is_err()
        {
            return gone();
        }
    }
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        while let Some(m) = rx.recv().await {
            match *m {
                ServerMessage::Answer { sdp } => return Ok(sdp),
                ServerMessage::Error { code, message } => {
                    return Err(Rejection::new(code, message));
                }
                _ => {}
            }
        }
        Err(Rejection::new(
            ErrorCode::ShuttingDown,
            "the bridge closed the session before answering",
        ))
    })
    .await;
    let answer = match answer {
        Ok(Ok(sdp)) => sdp,
        Ok(Err(r)) => {
            leave(shard).await;
            return refuse_with(&protocol, r);
        }
        Err(_) => {
            leave(shard).await;
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            );
        }
    };

    // 128 random bits: knowing the URL is what lets a client end the session.
    let resource = format!("{:032x}", rand::random::<u128>());
    app.http_sessions.insert(
        resource.clone(),
        HttpSession {
            protocol: protocol.as_str(),
            endpoint: id,
            room: claims.room.clone(),
        },
    );
    count_session(&protocol, "created");
    let span = info_span!(parent: app.shard_span(&claims.room), "endpoint", %id, room = %claims.room, participant = %claims.sub, protocol = protocol.as_str());
    let held = app.clone();
    let key = resource.clone();
    tokio::spawn(
        async move {
            info!("session started");
            // What the core says to a participant is for clients with a
            // signalling channel; this one has none. A fatal error or a
            // move ends it; so does the core dropping the endpoint (DELETE,
            // media timeout, replaced).
            while let Some(m) = rx.recv().await {
                match *m {
                    ServerMessage::Error { code, .. } if code.is_fatal() => break,
                    ServerMessage::Move { .. } => break,
                    _ => {}
                }
            }
            held.http_sessions.remove(&key);
            leave(shard).await;
            info!("session ended");
        }
        .instrument(span),
    );

    let location = format!("/{}/session/{resource}", protocol.as_str());
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    cors(h);
    r
}
