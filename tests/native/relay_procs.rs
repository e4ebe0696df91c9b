//! Relay clusters as real processes: a CA and bridge certificates made with
//! `tern ca`, a focus with the split strategy (each participant of a
//! conference on another bridge, so every call crosses the relay), bridges
//! with `[relay]` configured, and participants joined through the focus API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tern::client::{Client, ClientOptions};
use tern_proto::focus::v1 as fpb;

use super::cluster_procs::{start_bridge_with, start_focus};
use super::focus_api::Api;
use super::tern_process::{Tern, TernCommand, quoted};

pub fn tern(args: &[&str]) {
    let out = TernCommand::new(args).run(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "tern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate for bridge `id` from the CA in `dir/ca`, written to `out`
/// (`out/<id>.pem`, `out/<id>-key.pem`).
pub fn issue(dir: &Path, id: &str, out: &Path) {
    tern(&[
        "ca",
        "issue",
        "--ca",
        &dir.join("ca").display().to_string(),
        "--id",
        id,
        "--out",
        &out.display().to_string(),
    ]);
}

/// A CA in `dir/ca` and certificates for `ids` in `dir/certs`.
pub fn pki(dir: &Path, ids: &[&str]) {
    tern(&["ca", "init", "--out", &dir.join("ca").display().to_string()]);
    for id in ids {
        issue(dir, id, &dir.join("certs"));
    }
}

/// A focus placing each participant of a conference on another bridge.
pub fn start_split_focus() -> (Tern, SocketAddr) {
    let (focus, grpc, _) = start_focus(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[("TERN_FOCUS_STRATEGY", quoted("split"))],
    );
    (focus, grpc)
}

/// Bridge `id` (region "eu") with the relay credentials `pki` made for it,
/// plus `extra` environment; returns it and its HTTP address.
pub fn start_bridge(
    id: &str,
    focus_grpc: SocketAddr,
    pki: &Path,
    extra: &[(&str, String)],
) -> (Tern, SocketAddr) {
    let certs = pki.join("certs");
    let mut env = vec![
        ("TERN_RELAY_LISTEN", quoted("127.0.0.1:0")),
        (
            "TERN_RELAY_CA_CERT",
            quoted(pki.join("ca/ca.pem").display()),
        ),
        (
            "TERN_RELAY_CERT",
            quoted(certs.join(format!("{id}.pem")).display()),
        ),
        (
            "TERN_RELAY_KEY",
            quoted(certs.join(format!("{id}-key.pem")).display()),
        ),
    ];
    env.extend(extra.iter().cloned());
    start_bridge_with(id, "eu", focus_grpc, &env)
}

/// Wait until `n` bridges are online with a relay address.
pub async fn wait_online(api: &mut Api, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bs = api
            .list_bridges(fpb::ListBridgesRequest {})
            .await
            .expect("list bridges")
            .into_inner()
            .bridges;
        if bs
            .iter()
            .filter(|b| b.online && !b.relay_addr.is_empty())
            .count()
            >= n
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "bridges: {bs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `who` joins conference "mesh" where the focus places it; returns the
/// connected client and its bridge's id.
pub async fn join(api: &mut Api, who: &str) -> (Client, String) {
    join_conference(api, "mesh", who).await
}

/// `who` joins `conference` where the focus places it.
pub async fn join_conference(api: &mut Api, conference: &str, who: &str) -> (Client, String) {
    join_conference_as(api, conference, who, "camera").await
}

/// [`join_conference`], publishing its video as `video_source` ("camera"
/// or "screen").
pub async fn join_conference_as(
    api: &mut Api,
    conference: &str,
    who: &str,
    video_source: &str,
) -> (Client, String) {
    let a = api
        .allocate(fpb::AllocateRequest {
            conference: conference.into(),
            participant: who.into(),
            display_name: who.into(),
            region: "eu".into(),
            role: fpb::Role::Participant as i32,
            video_codec: String::new(),
            options: None,
        })
        .await
        .unwrap_or_else(|s| panic!("allocate {who}: {s}"))
        .into_inner();
    let addr: SocketAddr = a
        .signal_url
        .trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()
        .expect("signal url");
    let mut opts = ClientOptions::new(addr, a.token.clone());
    opts.video_source = video_source.into();
    let c = Client::connect(opts)
        .await
        .expect("participant joins its bridge");
    (c, a.bridge_id)
}
