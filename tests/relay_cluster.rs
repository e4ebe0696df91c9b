//! The relay mesh with real processes: a focus with the split strategy and
//! three bridges joined by QUIC relay connections (certificates from a CA
//! made with `tern ca`), native participants each on a different bridge.

mod native;

use std::net::SocketAddr;
use std::time::Duration;

use native::cluster_procs::API;
use native::eventually;
use native::focus_api::api;
use native::relay_procs::{join, pki, start_bridge, start_split_focus, wait_online};
use native::tern_process::Tern;

fn metric(http: SocketAddr, name: &str) -> f64 {
    native::metric(http, name, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_on_three_bridges_receive_each_other_through_the_relay_mesh() {
    let tmp = tempfile::Builder::new()
        .prefix("tern-relay-test-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    pki(&dir, &["a", "b", "c"]);
    let (_focus, grpc) = start_split_focus();
    let bridges: Vec<(Tern, SocketAddr)> = ["a", "b", "c"]
        .iter()
        .map(|id| start_bridge(id, grpc, &dir, &[]))
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
