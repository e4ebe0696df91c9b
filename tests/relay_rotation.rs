//! Relay credentials change while bridges run: a rotated certificate is what
//! new connections see, a revoked bridge is refused both ways, and a bad set
//! of credentials is refused without touching the good one. First on the
//! transport (real QUIC over 127.0.0.1, in process), then in a cluster of
//! real processes where the bridge reloads the files itself.

mod native;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use native::cluster_procs::API;
use native::eventually;
use native::focus_api::api;
use native::relay_procs::{issue, join, pki, start_bridge, start_split_focus, wait_online};
use tern::relay_net::{
    BridgeId, ClusterCa, HandshakeError, RefusalReason, RelayConnection, RelayEndpoint,
};

const WAIT: Duration = Duration::from_secs(5);

fn id(s: &str) -> BridgeId {
    BridgeId::new(s).expect("valid id")
}

fn endpoint(ca: &ClusterCa, name: &str) -> RelayEndpoint {
    let identity = ca.issue(&id(name)).expect("issue");
    RelayEndpoint::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        identity,
        &ca.certificate(),
    )
    .expect("bind")
}

async fn accept(server: &RelayEndpoint) -> Result<RelayConnection, HandshakeError> {
    tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("an inbound handshake outcome in time")
        .expect("endpoint open")
}

/// `b` dials `a`; both sides' outcomes.
async fn dial(
    b: &RelayEndpoint,
    a: &RelayEndpoint,
) -> (
    Result<RelayConnection, HandshakeError>,
    Result<RelayConnection, HandshakeError>,
) {
    let addr = a.local_addr().expect("addr");
    tokio::join!(b.connect(addr, a.local_id()), accept(a))
}

/// The certificate the peer of `c` presented.
fn presented(c: &RelayConnection) -> Vec<u8> {
    c.connection()
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| chain.first().map(|c| c.to_vec()))
        .expect("a peer certificate")
}

#[tokio::test]
async fn new_connections_see_the_rotated_certificate_and_old_ones_stay_up() {
    let ca = ClusterCa::generate().expect("ca");
    let a = endpoint(&ca, "bridge-a");
    let b = endpoint(&ca, "bridge-b");
    let (out1, in1) = dial(&b, &a).await;
    let (out1, _in1) = (out1.expect("b connects"), in1.expect("a accepts"));
    let before = presented(&out1);

    let rotated = ca.issue(&id("bridge-a")).expect("issue again");
    a.reload(&rotated, &ca.certificate()).expect("reload");
    let (out2, in2) = dial(&b, &a).await;
    let (out2, _in2) = (
        out2.expect("b connects after rotation"),
        in2.expect("a accepts"),
    );
    let after = presented(&out2);
    assert_ne!(before, after, "the new connection saw the old certificate");
    assert_eq!(after, rotated.cert_chain()[0].to_vec());
    // The connection made before the rotation still carries datagrams.
    out1.connection()
        .send_datagram(bytes::Bytes::from_static(b"still here"))
        .expect("old connection open");
    assert!(out1.connection().close_reason().is_none());
}

#[tokio::test]
async fn a_reload_for_another_bridge_or_from_another_ca_changes_nothing() {
    let ca = ClusterCa::generate().expect("ca");
    let other = ClusterCa::generate().expect("other ca");
    let a = endpoint(&ca, "bridge-a");
    let b = endpoint(&ca, "bridge-b");
    let wrong_id = ca.issue(&id("bridge-c")).expect("issue");
    let e = a
        .reload(&wrong_id, &ca.certificate())
        .expect_err("another bridge's certificate")
        .to_string();
    assert!(e.contains("this endpoint is bridge bridge-a"), "{e}");
    let foreign = other.issue(&id("bridge-a")).expect("issue");
    let e = a
        .reload(&foreign, &ca.certificate())
        .expect_err("a certificate the CA did not issue")
        .to_string();
    assert!(e.contains("another CA"), "{e}");
    // Still the original credentials: b gets in.
    let (out, inb) = dial(&b, &a).await;
    out.expect("b connects");
    inb.expect("a accepts");
}

#[tokio::test]
async fn a_revoked_bridge_is_refused_in_both_directions_until_unrevoked() {
    let ca = ClusterCa::generate().expect("ca");
    let a = endpoint(&ca, "bridge-a");
    let b = endpoint(&ca, "bridge-b");
    a.set_revoked(HashSet::from(["bridge-b".to_string()]));
    assert!(a.is_revoked(&id("bridge-b")));

    // b dials a: a refuses b's certificate.
    let (_, inbound) = dial(&b, &a).await;
    let e = inbound.expect_err("a refuses a revoked bridge");
    assert_eq!(e.refusal_reason(), Some(RefusalReason::Revoked), "{e}");
    assert!(e.to_string().contains("bridge bridge-b is revoked"), "{e}");

    // a dials b: a refuses what b presents.
    let (outbound, _) = dial(&a, &b).await;
    let e = outbound.expect_err("a does not connect to a revoked bridge");
    assert_eq!(e.refusal_reason(), Some(RefusalReason::Revoked), "{e}");

    a.set_revoked(HashSet::new());
    let (out, inb) = dial(&b, &a).await;
    out.expect("b connects once unrevoked");
    inb.expect("a accepts once unrevoked");
}

/// Replace `dst`'s certificate and key with those in `src` for `id`.
fn install(src: &std::path::Path, dst: &std::path::Path, src_id: &str, dst_id: &str) {
    for (from, to) in [
        (format!("{src_id}.pem"), format!("{dst_id}.pem")),
        (format!("{src_id}-key.pem"), format!("{dst_id}-key.pem")),
    ] {
        // Write aside and rename, as an operator (or a Secret update) does,
        // so the bridge never reads half a file.
        let tmp = dst.join(format!("{to}.new"));
        std::fs::copy(src.join(from), &tmp).expect("copy");
        std::fs::rename(&tmp, dst.join(to)).expect("rename");
    }
}

fn metric(http: SocketAddr, name: &str, filter: &str) -> f64 {
    native::metric(http, name, filter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_reloads_rotated_credentials_and_revocations_while_its_calls_go_on() {
    let tmp = tempfile::Builder::new()
        .prefix("tern-rotation-test-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    pki(&dir, &["a", "b"]);
    issue(&dir, "a", &dir.join("rotated"));
    issue(&dir, "c", &dir.join("wrong"));
    let revoked = dir.join("revoked-a.txt");
    std::fs::write(&revoked, "# nobody yet\n").expect("write revoked list");
    let fast = ("TERN_RELAY_RELOAD_INTERVAL_MS", "100".to_string());
    let (_focus, grpc) = start_split_focus();
    let (_a, a_http) = start_bridge(
        "a",
        grpc,
        &dir,
        &[
            fast.clone(),
            (
                "TERN_RELAY_REVOKED_FILE",
                format!("{:?}", revoked.display().to_string()),
            ),
        ],
    );
    let (_b, b_http) = start_bridge("b", grpc, &dir, &[fast]);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 2).await;
    let (p1, on1) = join(&mut api, "p1").await;
    let (p2, on2) = join(&mut api, "p2").await;
    assert_ne!(on1, on2, "split puts them on both bridges");
    let received = |c: &tern::client::Client, from: &str| {
        c.state().received_for(&format!("{from}/camera")).len()
    };
    eventually("p1 receives p2 across the relay", WAIT * 3, || {
        (received(&p1, "p2") > 50).then_some(())
    })
    .await;
    assert_eq!(metric(a_http, "tern_relay_revoked_bridges", ""), 0.0);

    // A certificate for another bridge: refused, the old one stays.
    let certs = dir.join("certs");
    install(&dir.join("wrong"), &certs, "c", "a");
    eventually("a refuses the wrong certificate", WAIT, || {
        (metric(a_http, "tern_relay_credential_reloads_total", "failed") >= 1.0).then_some(())
    })
    .await;
    // Now the rotated one.
    install(&dir.join("rotated"), &certs, "a", "a");
    eventually("a takes the rotated certificate", WAIT, || {
        (metric(a_http, "tern_relay_credential_reloads_total", "\"ok\"") == 1.0).then_some(())
    })
    .await;
    let flowing = received(&p1, "p2");
    eventually(
        "media still crosses on the connection made before",
        WAIT,
        || (received(&p1, "p2") > flowing + 50).then_some(()),
    )
    .await;

    // Revoke b on a: the connection closes and stays refused.
    std::fs::write(&revoked, "b\n").expect("revoke b");
    eventually("a closes and refuses b", WAIT * 3, || {
        (metric(a_http, "tern_relay_revoked_bridges", "") == 1.0
            && metric(a_http, "tern_relay_connections", "") == 0.0
            && metric(a_http, "tern_relay_handshakes_refused_total", "revoked") >= 1.0)
            .then_some(())
    })
    .await;
    let cut = received(&p1, "p2");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        received(&p1, "p2") < cut + 10,
        "media still crossed from a revoked bridge"
    );

    // Unrevoked: a new connection, made with a's rotated certificate (b
    // checks it against the CA and a's name), and media again.
    std::fs::write(&revoked, "").expect("unrevoke");
    let again = received(&p1, "p2");
    eventually(
        "the relay comes back with the rotated certificate",
        WAIT * 6,
        || {
            (metric(a_http, "tern_relay_connections", "") == 1.0
                && metric(b_http, "tern_relay_connections", "") == 1.0
                && received(&p1, "p2") > again + 50)
                .then_some(())
        },
    )
    .await;
    p1.leave().await.expect("leave");
    p2.leave().await.expect("leave");
}
