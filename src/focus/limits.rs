//! Per-address limits on the focus's endpoints. The open HTTP ones,
//! `/join` (which hands out tokens) and WHIP/WHEP (which place and forward
//! offers): each client address gets [`RATE`] requests a second with a
//! burst of [`BURST`]; beyond that, 429 with the reason. Every gRPC call
//! (the API, the bridges' control streams, health), before its secret is
//! checked: `focus.grpc_rate_limit` a second per peer address with a burst
//! of `focus.grpc_rate_burst` (0: no limit); beyond that,
//! `RESOURCE_EXHAUSTED` with the reason. Both counted in
//! `tern_focus_rate_limited_total{path}` (`join`, `whip`, `whep`, `grpc`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tern_sfu::limits::KeyedBuckets;
use tonic::Status;

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
    for e in ["join", "whip", "whep", "grpc"] {
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

/// The per-peer-address limit on gRPC calls, as a tonic interceptor over
/// the whole server (so a peer without a secret is limited too). Clones
/// share one set of buckets.
#[derive(Clone)]
pub struct GrpcLimits(Option<Arc<Grpc>>);

struct Grpc {
    rate: u32,
    burst: u32,
    buckets: Mutex<KeyedBuckets<IpAddr>>,
}

impl GrpcLimits {
    /// `rate` calls a second per peer address, `burst` at once; a `rate`
    /// of 0 limits nothing.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self((rate > 0).then(|| {
            let buckets = KeyedBuckets::new(f64::from(rate), f64::from(burst), MAX_ADDRESSES);
            Arc::new(Grpc {
                rate,
                burst,
                buckets: Mutex::new(buckets),
            })
        }))
    }
}

impl tonic::service::Interceptor for GrpcLimits {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let (Some(l), Some(peer)) = (&self.0, req.remote_addr()) else {
            return Ok(req);
        };
        let ip = peer.ip();
        let allowed = l
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(&ip, Instant::now());
        if allowed {
            return Ok(req);
        }
        metrics::counter!("tern_focus_rate_limited_total", "path" => "grpc").increment(1);
        // An empty bucket holds a call again within one refill interval.
        let again_ms = 1000u32.div_ceil(l.rate);
        Err(Status::resource_exhausted(format!(
            "rate_limited: more than {} gRPC calls a second (burst {}) from {ip} \
             (focus.grpc_rate_limit, focus.grpc_rate_burst); retry in {again_ms} ms",
            l.rate, l.burst
        )))
    }
}
