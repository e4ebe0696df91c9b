//! WHIP and WHEP through the focus: one endpoint URL that stays the same
//! while bridges come and go. The focus checks the bearer token, places the
//! participant as `Allocate` does (region rules, stress, failed and
//! draining bridges avoided), and forwards the offer to the chosen bridge's
//! own WHIP/WHEP endpoint. The bridge's answer comes back as is, with its
//! `Location` made absolute, so the client ends the session at the bridge
//! itself; after a bridge failure, POSTing to the focus again places the
//! client on a healthy one. See docs/whip-whep.md.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::handle::FocusHandle;
use crate::bridge::whip::{bearer, cors_for, refusal};

/// How long the chosen bridge may take to answer (it answers in
/// milliseconds unless it is dying; then the client should retry here).
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The bridge refuses larger offers itself; this only bounds what the
/// focus buffers.
const MAX_BODY: usize = 256 * 1024;

/// One client for every forwarded offer: its pool keeps connections to
/// the bridges open between offers (a join burst does not pay a TCP
/// handshake per participant), and hyper retries a request whose pooled
/// connection turns out closed.
fn bridge_client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

pub fn routes() -> Router<FocusHandle> {
    Router::new()
        .route("/whip", post(whip).options(options))
        .route("/whip/{room}", post(whip_room).options(options))
        .route("/whep", post(whep).options(options))
        .route("/whep/{room}", post(whep_room).options(options))
}

async fn whip(
    State(h): State<FocusHandle>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(h, "whip", None, q, headers, body).await
}

async fn whip_room(
    State(h): State<FocusHandle>,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(h, "whip", Some(room), q, headers, body).await
}

async fn whep(
    State(h): State<FocusHandle>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(h, "whep", None, q, headers, body).await
}

async fn whep_room(
    State(h): State<FocusHandle>,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(h, "whep", Some(room), q, headers, body).await
}

async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(r.headers_mut());
    r.headers_mut()
        .insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

/// The focus's endpoints take only POST (sessions live on the bridges).
const METHODS: &str = "POST, OPTIONS";

fn cors(h: &mut HeaderMap) {
    cors_for(h, METHODS);
}

fn refuse(
    status: StatusCode,
    message: String,
    outcome: &'static str,
    kind: &'static str,
) -> Response {
    metrics::counter!("tern_focus_http_sessions_total", "protocol" => kind, "outcome" => outcome)
        .increment(1);
    refusal(status, message, METHODS)
}

/// `ws://host:port/signal` -> `http://host:port` (`wss` -> `https`).
pub fn http_base(signal_url: &str) -> Option<String> {
    let (scheme, rest) = signal_url.split_once("://")?;
    let scheme = match scheme {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// A `Location` the bridge gave, absolute at the bridge.
pub fn absolute_location(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// `region=<r>` out of a raw query string (the rest goes to the bridge).
fn region_of(query: Option<&str>) -> String {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("region="))
        .unwrap_or_default()
        .to_string()
}

async fn forward(
    h: FocusHandle,
    kind: &'static str,
    path_room: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = bearer(&headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_token: no `Authorization: Bearer <token>` header (tokens come from GET /join or the Allocate API)".into(),
            "invalid_token",
            kind,
        );
    };
    let claims = match h.keys.verify(token) {
        Ok(c) => c,
        Err(r) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                format!("{}: {}", r.code.as_str(), r.message),
                r.code.as_str(),
                kind,
            );
        }
    };
    if let Some(room) = path_room.filter(|r| *r != claims.room) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("the token is for room {:?}, not {room:?}", claims.room),
            "wrong_room",
            kind,
        );
    }
    if body.len() > MAX_BODY {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "message_too_large: the offer is {} bytes; the limit is {MAX_BODY}",
                body.len()
            ),
            "message_too_large",
            kind,
        );
    }
    let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
    let placed = match super::grpc::allocate(
        &h,
        claims.room.clone(),
        claims.sub.clone(),
        name,
        region_of(query.as_deref()),
        claims.codec.as_deref().unwrap_or_default(),
        if claims.may_publish() {
            tern_proto::focus::v1::Role::Participant
        } else {
            tern_proto::focus::v1::Role::Viewer
        },
        claims
            .mix
            .map(|sample_rate| tern_focus::ConferenceMode::Mixed {
                sample_rate,
                video: claims
                    .mix_video
                    .as_ref()
                    .map(|v| tern_focus::MixedVideo {
                        layout: if v.layout == "speaker" {
                            tern_focus::MixLayout::Speaker
                        } else {
                            tern_focus::MixLayout::Grid
                        },
                        width: v.width,
                        height: v.height,
                    })
                    .unwrap_or_default(),
            }),
    )
    .await
    {
        Ok(a) => a,
        Err(s) => {
            let (status, outcome) = match s.code() {
                tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
                tonic::Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "no_bridge"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            return refuse(status, s.message().to_string(), outcome, kind);
        }
    };
    let Some(base) = http_base(&placed.signal_url) else {
        return refuse(
            StatusCode::BAD_GATEWAY,
            format!(
                "bridge {} registered signal URL {:?}, which names no HTTP address",
                placed.bridge_id, placed.signal_url
            ),
            "bad_gateway",
            kind,
        );
    };
    let mut url = format!("{base}/{kind}");
    if let Some(q) = &query {
        url.push('?');
        url.push_str(q);
    }
    let mut req = Request::builder().method(Method::POST).uri(&url);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v);
        }
    }
    let Ok(req) = req.body(Full::new(body)) else {
        return refuse(
            StatusCode::BAD_GATEWAY,
            format!("cannot build a request to {url}"),
            "bad_gateway",
            kind,
        );
    };
    let answered = tokio::time::timeout(BRIDGE_TIMEOUT, async {
        let res = bridge_client()
            .request(req)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, bytes))
    })
    .await;
    let (parts, bytes) = match answered {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!(
                    "bridge {} at {base} did not answer: {e}; retry",
                    placed.bridge_id
                ),
                "bad_gateway",
                kind,
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "bridge {} at {base} did not answer within {} s; retry",
                    placed.bridge_id,
                    BRIDGE_TIMEOUT.as_secs()
                ),
                "gateway_timeout",
                kind,
            );
        }
    };
    let outcome = if parts.status == StatusCode::CREATED {
        "created"
    } else {
        "refused_by_bridge"
    };
    metrics::counter!("tern_focus_http_sessions_total", "protocol" => kind, "outcome" => outcome)
        .increment(1);
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = parts.status;
    let out = r.headers_mut();
    for (name, v) in parts.headers.iter() {
        if name == header::LOCATION {
            if let Some(loc) = v.to_str().ok().map(|l| absolute_location(&base, l))
                && let Ok(v) = HeaderValue::from_str(&loc)
            {
                out.insert(header::LOCATION, v);
            }
        } else if matches!(
            name.as_str(),
            "content-type" | "www-authenticate" | "allow" | "accept-post" | "etag" | "link"
        ) {
            out.insert(name.clone(), v.clone());
        }
    }
    cors(out);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_url_names_the_bridges_http_base() {
        assert_eq!(
            http_base("ws://127.0.0.1:8081/signal").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            http_base("wss://b1.example.com/signal").as_deref(),
            Some("https://b1.example.com")
        );
        assert_eq!(http_base("http://x/signal"), None);
        assert_eq!(http_base("ws:///signal"), None);
        assert_eq!(http_base("garbage"), None);
    }

    #[test]
    fn relative_locations_become_absolute_at_the_bridge() {
        assert_eq!(
            absolute_location("http://10.0.0.2:8081", "/whip/session/ab"),
            "http://10.0.0.2:8081/whip/session/ab"
        );
        assert_eq!(
            absolute_location("http://10.0.0.2:8081", "https://elsewhere/x"),
            "https://elsewhere/x"
        );
    }

    #[test]
    fn the_region_is_read_from_the_query() {
        assert_eq!(region_of(Some("source=a/camera&region=eu")), "eu");
        assert_eq!(region_of(Some("source=a/camera")), "");
        assert_eq!(region_of(None), "");
    }
}
