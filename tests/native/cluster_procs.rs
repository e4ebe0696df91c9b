//! A focus and bridges as real processes on 127.0.0.1, and the focus API
//! calls cluster tests share.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_proto::focus::v1 as fpb;

use super::CLUSTER_LOG;
use super::focus_api::Api;
use super::tern_process::{Tern, TernCommand, quoted};

pub const AUTH: &str = "cluster-auth-secret";
pub const API: &str = "cluster-api-secret";
pub const BRIDGE: &str = "cluster-bridge-secret";

pub fn start_focus(
    grpc: &str,
    http: &str,
    extra: &[(&str, String)],
) -> (Tern, SocketAddr, SocketAddr) {
    let mut env = vec![
        ("TERN_FOCUS_API_SECRET", API.to_string()),
        ("TERN_FOCUS_BRIDGE_SECRET", BRIDGE.to_string()),
        ("TERN_FOCUS_GRPC_LISTEN", quoted(grpc)),
        ("TERN_FOCUS_HTTP_LISTEN", quoted(http)),
        ("TERN_FOCUS_REGION", quoted("eu")),
    ];
    env.extend(extra.iter().cloned());
    let p = TernCommand::new(&["focus"])
        .env("TERN_AUTH_SECRET", AUTH)
        .env("TERN_LOG", CLUSTER_LOG)
        .envs(&env)
        .start();
    let grpc = p.addr_after("grpc http://");
    let http = p.addr_after(" http http://");
    (p, grpc, http)
}

pub fn start_bridge(id: &str, region: &str, focus_grpc: SocketAddr) -> (Tern, SocketAddr) {
    start_bridge_with(id, region, focus_grpc, &[])
}

pub fn start_bridge_with(
    id: &str,
    region: &str,
    focus_grpc: SocketAddr,
    extra: &[(&str, String)],
) -> (Tern, SocketAddr) {
    let p = TernCommand::new(&["bridge"])
        .env("TERN_AUTH_SECRET", AUTH)
        .env("TERN_LOG", CLUSTER_LOG)
        .envs(&[
            ("TERN_BRIDGE_HTTP_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_BRIDGE_MEDIA_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_BRIDGE_ID", quoted(id)),
            ("TERN_BRIDGE_REGION", quoted(region)),
            (
                "TERN_BRIDGE_FOCUS_URL",
                quoted(format!("http://{focus_grpc}")),
            ),
            ("TERN_BRIDGE_FOCUS_SECRET", quoted(BRIDGE)),
            ("TERN_BRIDGE_DRAIN_TIMEOUT_SECS", "5".into()),
        ])
        .envs(extra)
        .start();
    let http = p.addr_after("http://");
    (p, http)
}

pub async fn bridges(api: &mut Api) -> Vec<fpb::Bridge> {
    api.list_bridges(fpb::ListBridgesRequest {})
        .await
        .expect("list bridges")
        .into_inner()
        .bridges
}

pub async fn wait_online(api: &mut Api, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = bridges(api).await;
        if b.iter().filter(|b| b.online).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "bridges did not register: {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn allocate(api: &mut Api, conf: &str, who: &str, region: &str) -> fpb::AllocateResponse {
    api.allocate(fpb::AllocateRequest {
        conference: conf.into(),
        participant: who.into(),
        display_name: who.into(),
        region: region.into(),
        role: fpb::Role::Participant as i32,
        video_codec: String::new(),
        options: None,
    })
    .await
    .unwrap_or_else(|s| panic!("allocate {who}: {s}"))
    .into_inner()
}
