//! The relay mesh with real processes: a focus with the split strategy and
//! three bridges joined by QUIC relay connections (certificates from a CA
//! made with `tern ca`), native participants each on a different bridge.

mod native;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use native::CLUSTER_LOG;
use native::eventually;
use native::focus_api::{Api, api};
use native::tern_process::{Tern, TernCommand, quoted};
use tern::client::{Client, ClientOptions};
use tern_proto::focus::v1 as fpb;

const AUTH: &str = "relay-auth-secret";
const API: &str = "relay-api-secret";
const BRIDGE: &str = "relay-bridge-secret";

fn tern(args: &[&str]) {
    let out = TernCommand::new(args).run(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "tern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir/ca` and certificates for `ids` in `dir/certs`.
fn pki(dir: &Path, ids: &[&str]) {
    let ca = dir.join("ca");
    let certs = dir.join("certs");
    tern(&["ca", "init", "--out", &ca.display().to_string()]);
    for id in ids {
        tern(&[
            "ca",
            "issue",
            "--ca",
            &ca.display().to_string(),
            "--id",
            id,
            "--out",
            &certs.display().to_string(),
        ]);
    }
}

fn start_bridge(id: &str, focus_grpc: SocketAddr, pki: &Path) -> (Tern, SocketAddr) {
    let certs = pki.join("certs");
    let p = TernCommand::new(&["bridge"])
        .env("TERN_AUTH_SECRET", AUTH)
        .env("TERN_LOG", CLUSTER_LOG)
        .envs(&[
            ("TERN_BRIDGE_HTTP_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_BRIDGE_MEDIA_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_BRIDGE_ID", quoted(id)),
            ("TERN_BRIDGE_REGION", quoted("eu")),
            (
                "TERN_BRIDGE_FOCUS_URL",
                quoted(format!("http://{focus_grpc}")),
            ),
            ("TERN_BRIDGE_FOCUS_SECRET", quoted(BRIDGE)),
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
        ])
        .start();
    let http = p.addr_after("http://");
    (p, http)
}

/// Wait until `n` bridges are online with a relay address.
async fn wait_online(api: &mut Api, n: usize) {
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

async fn join(api: &mut Api, who: &str) -> (Client, String) {
    let a = api
        .allocate(fpb::AllocateRequest {
            conference: "mesh".into(),
            participant: who.into(),
            display_name: who.into(),
            region: "eu".into(),
            role: fpb::Role::Participant as i32,
            video_codec: String::new(),
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
    let c = Client::connect(ClientOptions::new(addr, a.token.clone()))
        .await
        .expect("participant joins its bridge");
    (c, a.bridge_id)
}

fn metric(http: SocketAddr, name: &str) -> f64 {
    let body = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("metrics body");
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_on_three_bridges_receive_each_other_through_the_relay_mesh() {
    let tmp = tempfile::Builder::new()
        .prefix("tern-relay-test-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    pki(&dir, &["a", "b", "c"]);
    let focus = TernCommand::new(&["focus"])
        .env("TERN_AUTH_SECRET", AUTH)
        .env("TERN_LOG", CLUSTER_LOG)
        .envs(&[
            ("TERN_FOCUS_API_SECRET", API.to_string()),
            ("TERN_FOCUS_BRIDGE_SECRET", BRIDGE.to_string()),
            ("TERN_FOCUS_GRPC_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_FOCUS_HTTP_LISTEN", quoted("127.0.0.1:0")),
            ("TERN_FOCUS_REGION", quoted("eu")),
            ("TERN_FOCUS_STRATEGY", quoted("split")),
        ])
        .start();
    let grpc = focus.addr_after("grpc http://");
    let bridges: Vec<(Tern, SocketAddr)> = ["a", "b", "c"]
        .iter()
        .map(|id| start_bridge(id, grpc, &dir))
        .collect();
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 3).await;

    let mut clients = Vec::new();
    let mut on = Vec::new();
    for who in ["p1", "p2", "p3"] {
        let (c, bridge) = join(&mut api, who).await;
        clients.push(c);
        on.push(bridge);
    }
    on.sort();
    assert_eq!(on, vec!["a", "b", "c"], "split puts each on its own bridge");
    let names = ["p1", "p2", "p3"];
    for (i, c) in clients.iter().enumerate() {
        for other in names.iter().filter(|n| **n != names[i]) {
            eventually(
                &format!("{} receives {other}'s video and audio", names[i]),
                Duration::from_secs(15),
                || {
                    let st = c.state();
                    let video = st.received_for(&format!("{other}/camera")).len();
                    let audio = st.received_for(&format!("{other}/mic")).len();
                    (video > 100 && audio > 50).then_some(())
                },
            )
            .await;
        }
    }
    // Relay traffic really crossed, and nothing was refused.
    for (_, http) in &bridges {
        assert!(metric(*http, "tern_relay_datagrams_total") > 100.0);
    }

    // Leaving and joining propagate across bridges.
    let p3 = clients.pop().expect("p3");
    p3.leave().await.expect("p3 leaves");
    for c in &clients {
        eventually("p3's leave seen elsewhere", Duration::from_secs(5), || {
            (!c.state().participants.contains_key("p3")).then_some(())
        })
        .await;
    }
    let (p4, _) = join(&mut api, "p4").await;
    for c in &clients {
        eventually(
            "p4 seen and received elsewhere",
            Duration::from_secs(15),
            || {
                let st = c.state();
                (st.participants.contains_key("p4") && st.received_for("p4/camera").len() > 50)
                    .then_some(())
            },
        )
        .await;
    }
    // A full mesh while the conference spans all three bridges.
    for (_, http) in &bridges {
        assert_eq!(metric(*http, "tern_relay_connections"), 2.0);
    }

    // Once nobody is left, the focus withdraws the relay peers and the
    // bridges let their connections go instead of keeping (and redialling)
    // them forever.
    p4.leave().await.expect("p4 leaves");
    for c in clients {
        c.leave().await.expect("leave");
    }
    for (_, http) in &bridges {
        eventually(
            "relay connections closed once no conference is shared",
            Duration::from_secs(20),
            || {
                (metric(*http, "tern_relay_connections") == 0.0
                    && metric(*http, "tern_relay_peers_wanted") == 0.0)
                    .then_some(())
            },
        )
        .await;
    }
}
