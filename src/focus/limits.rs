//! Per-address limits on the focus's open HTTP endpoints: `/join` (which
//! hands out tokens) and WHIP/WHEP (which place and forward offers). Each
//! client address gets [`RATE`] requests a second with a burst of
//! [`BURST`]; beyond that, 429 with the reason, counted in
//! `tern_focus_rate_limited_total{path}`. The gRPC API is not limited
//! here: only the application, holding the API secret, can call it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tern_sfu::limits::KeyedBuckets;

/// Requests a second per client address, sustained...
pub const RATE: f64 = 10.0;
/// ...and at once (a page joining and re-joining, a WHIP client retrying).
pub const BURST: f64 = 20.0;
/// Addresses tracked at once (their buckets are small).
const MAX_ADDRESSES: usize = 100_000;

pub struct HttpLimits(Mutex<KeyedBuckets<IpAddr>>);

impl Default for HttpLimits {
    fn default() -> Self {
        Self(Mutex::new(KeyedBuckets::new(RATE, BURST, MAX_ADDRESSES)))
    }
}

impl HttpLimits {
    fn allow(&self, ip: IpAddr) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(&ip, Instant::now())
    }
}

/// The metric label of a limited path.
fn endpoint(path: &str) -> &'static str {
    if path.starts_with("/whip") {
        "whip"
    } else if path.starts_with("/whep") {
        "whep"
    } else {
        "join"
    }
}

pub fn register_at_zero() {
    for e in ["join", "whip", "whep"] {
        metrics::counter!("tern_focus_rate_limited_total", "path" => e).absolute(0);
    }
}

/// Middleware for the limited routes.
pub async fn limit(State(limits): State<Arc<HttpLimits>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && !limits.allow(ip)
    {
        let e = endpoint(req.uri().path());
        metrics::counter!("tern_focus_rate_limited_total", "path" => e).increment(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "error": format!("rate_limited: more than {RATE} requests a second (burst {BURST}) from {ip}; retry shortly")
            })),
        )
            .into_response();
    }
    next.run(req).await
}
