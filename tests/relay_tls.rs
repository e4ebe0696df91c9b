//! The relay mesh transport on real QUIC over 127.0.0.1: who gets in, who is
//! refused and why, and that full-size media datagrams fit from the first
//! packet. Plus `tern ca` and `tern check-config` as a real process.
//!
//! Every test runs on a current-thread runtime with a thread-local metrics
//! recorder, so the counters a test reads are the ones its own handshakes
//! incremented, even when tests share a process.

#[path = "support/tern_process.rs"]
mod tern_process;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use quinn::crypto::rustls::QuicClientConfig;
use tern::relay_net::tls::{self, ALPN};
use tern::relay_net::{
    BridgeId, BridgeIdentity, CaCertificate, ClusterCa, HandshakeError, MAX_RELAY_DATAGRAM,
    RefusalReason, RelayConnection, RelayEndpoint, RelayError,
};

const WAIT: Duration = Duration::from_secs(5);

fn id(s: &str) -> BridgeId {
    BridgeId::new(s).expect("valid id")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn endpoint(ca: &ClusterCa, name: &str) -> RelayEndpoint {
    let identity = ca.issue(&id(name)).expect("issue");
    RelayEndpoint::bind(loopback(), identity, &ca.certificate()).expect("bind")
}

/// Counter values since the last call: the debugging recorder's snapshot
/// resets counters, so each test reads once, after its handshakes.
struct Counters(Vec<(String, Labels, u64)>);

type Labels = Vec<(String, String)>;

fn counters(snap: &Snapshotter) -> Counters {
    Counters(
        snap.snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(k, _, _, v)| match v {
                DebugValue::Counter(c) => {
                    let key = k.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_string(), l.value().to_string()))
                        .collect();
                    Some((key.name().to_string(), labels, c))
                }
                _ => None,
            })
            .collect(),
    )
}

impl Counters {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(l, v)| ls.iter().any(|(kl, kv)| kl == l && kv == v))
            })
            .map(|(_, _, c)| c)
            .sum()
    }

    fn refused(&self, direction: &str, reason: &str) -> u64 {
        self.get(
            "tern_relay_handshakes_refused_total",
            &[("direction", direction), ("reason", reason)],
        )
    }

    fn accepted(&self) -> u64 {
        self.get("tern_relay_handshakes_total", &[])
    }
}

async fn accept(server: &RelayEndpoint) -> Result<RelayConnection, HandshakeError> {
    tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("an inbound handshake outcome in time")
        .expect("endpoint open")
}

/// Connects with a hand-made rustls client config, so tests can present what
/// a real bridge never would (no certificate, a foreign one, another ALPN),
/// and returns the server's verdict.
async fn raw_connect(
    server: &RelayEndpoint,
    server_id: &BridgeId,
    crypto: rustls::ClientConfig,
) -> (
    Result<RelayConnection, HandshakeError>,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let client = quinn::Endpoint::client(loopback()).expect("client endpoint");
    let config = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(crypto).expect("quic client config"),
    ));
    let addr = server.local_addr().expect("server address");
    let connecting = client
        .connect_with(config, addr, &server_id.dns_name())
        .expect("connect");
    let (verdict, conn) = tokio::join!(accept(server), async {
        let conn = connecting.await?;
        // Hold the connection until the server has decided.
        let _ = tokio::time::timeout(WAIT, conn.closed()).await;
        Ok(conn)
    });
    (verdict, conn)
}

fn no_cert_client(ca: &CaCertificate) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![ALPN.to_vec()];
    c
}

fn expect_refused(
    result: Result<RelayConnection, HandshakeError>,
    reason: RefusalReason,
) -> String {
    match result {
        Err(e) => {
            assert_eq!(e.refusal_reason(), Some(reason), "{e}");
            e.to_string()
        }
        Ok(c) => panic!(
            "expected refusal ({reason}), got a connection to {}",
            c.peer_id()
        ),
    }
}

#[tokio::test]
async fn bridges_from_one_ca_connect_and_exchange_stream_bytes_and_full_size_datagrams() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    let a = endpoint(&ca, "bridge-a");
    let b = endpoint(&ca, "bridge-b");
    let a_addr = a.local_addr().expect("addr");

    let a_id = id("bridge-a");
    let (outbound, inbound) = tokio::join!(b.connect(a_addr, &a_id), accept(&a));
    let outbound = outbound.expect("b connects to a");
    let inbound = inbound.expect("a accepts b");
    assert_eq!(outbound.peer_id().as_str(), "bridge-a");
    assert_eq!(inbound.peer_id().as_str(), "bridge-b");

    let payload: Vec<u8> = (0..MAX_RELAY_DATAGRAM).map(|i| (i % 251) as u8).collect();
    outbound
        .connection()
        .send_datagram(Bytes::from(payload.clone()))
        .expect("1,232-byte datagram accepted for sending");
    let got = tokio::time::timeout(WAIT, inbound.connection().read_datagram())
        .await
        .expect("datagram in time")
        .expect("datagram");
    assert_eq!(got.as_ref(), payload.as_slice());

    inbound
        .connection()
        .send_datagram(Bytes::from(payload.clone()))
        .expect("inbound side sends a full datagram too");
    let back = tokio::time::timeout(WAIT, outbound.connection().read_datagram())
        .await
        .expect("datagram in time")
        .expect("datagram");
    assert_eq!(back.len(), MAX_RELAY_DATAGRAM);

    // The control stream: b opens, a answers.
    let (mut send, mut recv) = outbound.connection().open_bi().await.expect("open bi");
    send.write_all(b"hello from b").await.expect("write");
    send.finish().expect("finish");
    let (mut a_send, mut a_recv) = tokio::time::timeout(WAIT, inbound.connection().accept_bi())
        .await
        .expect("stream in time")
        .expect("accept bi");
    let msg = a_recv.read_to_end(1024).await.expect("read");
    assert_eq!(msg, b"hello from b");
    a_send.write_all(b"hello from a").await.expect("write");
    a_send.finish().expect("finish");
    assert_eq!(recv.read_to_end(1024).await.expect("read"), b"hello from a");

    // Media never uses unidirectional streams; the peer must not be able to
    // open one.
    let uni = outbound.connection().open_uni();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), uni)
            .await
            .is_err(),
        "a unidirectional stream was allowed"
    );

    let c = counters(&snap);
    let handshakes = |d| c.get("tern_relay_handshakes_total", &[("direction", d)]);
    assert_eq!(handshakes("inbound"), 1);
    assert_eq!(handshakes("outbound"), 1);
    assert_eq!(c.get("tern_relay_handshakes_refused_total", &[]), 0);
}

/// Forwards UDP between the first client that sends to it and `target`,
/// delaying each datagram by `delay`.
async fn delay_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    let socket = Arc::new(
        tokio::net::UdpSocket::bind(loopback())
            .await
            .expect("proxy"),
    );
    let addr = socket.local_addr().expect("proxy address");
    tokio::spawn(async move {
        let mut client = None;
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let to = if from == target {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                target
            };
            let (data, socket) = (buf[..n].to_vec(), socket.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&data, to).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn full_size_datagram_fits_right_after_the_handshake() {
    let ca = ClusterCa::generate().expect("ca");
    let a = endpoint(&ca, "bridge-a");
    let b = endpoint(&ca, "bridge-b");
    // MTU discovery probes from the moment a side's handshake completes; on
    // bare loopback the first probe is acknowledged within a millisecond and
    // would hide the initial MTU. Behind a 100 ms round trip the accepting
    // side is still at its initial MTU when accept() hands it over.
    let via = delay_proxy(a.local_addr().expect("addr"), Duration::from_millis(50)).await;
    let a_id = id("bridge-a");
    let (outbound, (inbound, inbound_max)) = tokio::join!(b.connect(via, &a_id), async {
        let c = accept(&a).await.expect("accept");
        let max = c.max_datagram_size();
        (c, max)
    });
    let outbound = outbound.expect("connect");

    // quinn's default initial MTU leaves 1162 bytes here; the relay needs an
    // RTP packet plus its header to fit from the first media packet on.
    let max = inbound_max.expect("datagrams enabled");
    assert!(
        max >= MAX_RELAY_DATAGRAM,
        "max datagram right after accept: {max}"
    );
    let payload = Bytes::from(vec![7u8; MAX_RELAY_DATAGRAM]);
    inbound
        .connection()
        .send_datagram(payload.clone())
        .expect("a 1,232-byte datagram is accepted for sending");
    assert!(outbound.fits_relay_datagrams());
    outbound
        .connection()
        .send_datagram(payload.clone())
        .expect("and in the other direction");
    for (to, what) in [(&outbound, "outbound"), (&inbound, "inbound")] {
        let got = tokio::time::timeout(WAIT, to.connection().read_datagram())
            .await
            .unwrap_or_else(|_| panic!("datagram to the {what} side in time"))
            .expect("datagram");
        assert_eq!(got, payload);
    }
    // Nothing was lost to the large size: no black hole was detected.
    assert_eq!(outbound.connection().stats().path.black_holes_detected, 0);
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_as_unknown_ca() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    let rogue = ClusterCa::generate().expect("rogue ca");
    let server = endpoint(&ca, "bridge-a");
    // Trusts the cluster CA (so it accepts the server) but presents a
    // certificate for a plausible id from a CA the cluster never trusted.
    let intruder = rogue.issue(&id("bridge-b")).expect("issue");
    let crypto = tls::client_config(&intruder, &ca.certificate()).expect("client config");

    let (verdict, _) = raw_connect(&server, &id("bridge-a"), crypto).await;
    let msg = expect_refused(verdict, RefusalReason::UnknownCa);
    assert!(msg.contains("another CA"), "{msg}");
    let c = counters(&snap);
    assert_eq!(c.refused("inbound", "unknown_ca"), 1);
    assert_eq!(c.accepted(), 0);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    let server = endpoint(&ca, "bridge-a");

    let (verdict, _) =
        raw_connect(&server, &id("bridge-a"), no_cert_client(&ca.certificate())).await;
    expect_refused(verdict, RefusalReason::NoClientCert);
    let c = counters(&snap);
    assert_eq!(c.refused("inbound", "no_client_cert"), 1);
    assert_eq!(c.accepted(), 0);
}

#[tokio::test]
async fn peer_presenting_another_bridges_certificate_is_refused() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    // bridge-b's valid certificate answers at the address we were told is
    // bridge-c's.
    let impostor = endpoint(&ca, "bridge-b");
    let dialer = endpoint(&ca, "bridge-a");
    let addr = impostor.local_addr().expect("addr");

    let (expected, actual) = (id("bridge-c"), id("bridge-b"));
    let (outbound, inbound) = tokio::join!(dialer.connect(addr, &expected), accept(&impostor));
    let msg = expect_refused(outbound, RefusalReason::PeerIdMismatch);
    assert!(
        msg.contains("bridge-c") && msg.contains("bridge-b"),
        "{msg}"
    );
    // The impostor learns it was refused, through the alert we sent.
    expect_refused(inbound, RefusalReason::PeerRefused);
    let c = counters(&snap);
    assert_eq!(c.refused("outbound", "peer_id_mismatch"), 1);
    assert_eq!(c.refused("inbound", "peer_refused"), 1);
    assert_eq!(c.accepted(), 0);

    // The same endpoint reaches the right bridge when it asks for it.
    let (ok, accepted) = tokio::join!(dialer.connect(addr, &actual), accept(&impostor));
    assert_eq!(ok.expect("connect").peer_id().as_str(), "bridge-b");
    assert_eq!(accepted.expect("accept").peer_id().as_str(), "bridge-a");
}

#[tokio::test]
async fn wrong_application_protocol_is_refused() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    let server = endpoint(&ca, "bridge-a");
    let identity = ca.issue(&id("bridge-b")).expect("issue");
    let mut crypto = tls::client_config(&identity, &ca.certificate()).expect("client config");
    crypto.alpn_protocols = vec![b"tern-relay/0".to_vec()];

    let (verdict, client) = raw_connect(&server, &id("bridge-a"), crypto).await;
    expect_refused(verdict, RefusalReason::Alpn);
    assert!(client.is_err(), "client handshake must fail too");
    assert_eq!(counters(&snap).refused("inbound", "alpn"), 1);
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let ca = ClusterCa::generate().expect("ca");
    let server = endpoint(&ca, "bridge-a");
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let expired = ca
        .issue_valid(&id("bridge-b"), now - 30 * day, now - day)
        .expect("issue");
    let crypto = tls::client_config(&expired, &ca.certificate()).expect("client config");

    let (verdict, _) = raw_connect(&server, &id("bridge-a"), crypto).await;
    expect_refused(verdict, RefusalReason::Expired);
    assert_eq!(counters(&snap).refused("inbound", "expired"), 1);

    // A bridge given such a certificate refuses to start at all.
    let e = RelayEndpoint::bind(loopback(), expired, &ca.certificate())
        .expect_err("expired identity must not bind");
    assert!(matches!(e, RelayError::Identity { .. }), "{e}");
}

#[tokio::test]
async fn endpoint_refuses_to_start_with_a_foreign_identity() {
    let ca = ClusterCa::generate().expect("ca");
    let other = ClusterCa::generate().expect("other");
    let foreign: BridgeIdentity = other.issue(&id("bridge-a")).expect("issue");
    let e = RelayEndpoint::bind(loopback(), foreign, &ca.certificate())
        .expect_err("foreign identity must not bind")
        .to_string();
    assert!(e.contains("another CA"), "{e}");
}

// ---- `tern ca` and `tern check-config` as a real process ----

fn tern(args: &[&str]) -> std::process::Output {
    tern_process::TernCommand::new(args)
        .env_clear()
        .run(Duration::from_secs(30))
}

fn ok(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tern failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "tern should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn config(dir: &Path, name: &str, ca: &Path, cert: &Path, key: &Path) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[relay]\nlisten = \"127.0.0.1:7443\"\nca_cert = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn ca_cli_issues_certificates_that_check_config_accepts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let ca_dir = dir.join("ca");
    let bridges = dir.join("bridges");

    ok(&tern(&["ca", "init", "--out", &s(&ca_dir)]));
    assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    let again = failed(&tern(&["ca", "init", "--out", &s(&ca_dir)]));
    assert!(again.contains("already exists"), "{again}");

    ok(&tern(&[
        "ca",
        "issue",
        "--ca",
        &s(&ca_dir),
        "--id",
        "eu-1",
        "--out",
        &s(&bridges),
    ]));
    let cert = bridges.join("eu-1.pem");
    let key = bridges.join("eu-1-key.pem");
    assert_eq!(mode(&key), 0o600);
    let again = failed(&tern(&[
        "ca",
        "issue",
        "--ca",
        &s(&ca_dir),
        "--id",
        "eu-1",
        "--out",
        &s(&bridges),
    ]));
    assert!(again.contains("already exists"), "{again}");
    let bad = failed(&tern(&[
        "ca",
        "issue",
        "--ca",
        &s(&ca_dir),
        "--id",
        "EU_1",
        "--out",
        &s(&bridges),
    ]));
    assert!(bad.contains("invalid bridge id"), "{bad}");

    let good = config(dir, "good.toml", &ca_dir.join("ca.pem"), &cert, &key);
    let out = ok(&tern(&["check-config", &s(&good)]));
    assert!(
        out.contains("bridge eu-1 is trusted by the cluster CA"),
        "{out}"
    );

    // A certificate from another CA, correctly paired with its own key.
    let other = dir.join("other");
    ok(&tern(&["ca", "init", "--out", &s(&other)]));
    ok(&tern(&[
        "ca",
        "issue",
        "--ca",
        &s(&other),
        "--id",
        "eu-1",
        "--out",
        &s(&other),
    ]));
    let foreign = config(
        dir,
        "foreign.toml",
        &ca_dir.join("ca.pem"),
        &other.join("eu-1.pem"),
        &other.join("eu-1-key.pem"),
    );
    let err = failed(&tern(&["check-config", &s(&foreign)]));
    assert!(
        err.contains(&format!("relay.cert {}", other.join("eu-1.pem").display()))
            && err.contains(&format!(
                "is not trusted by relay.ca_cert {}",
                ca_dir.join("ca.pem").display()
            ))
            && err.contains("issued by another CA"),
        "{err}"
    );

    // Our certificate with someone else's key.
    let mismatched = config(
        dir,
        "mismatch.toml",
        &ca_dir.join("ca.pem"),
        &cert,
        &other.join("eu-1-key.pem"),
    );
    let err = failed(&tern(&["check-config", &s(&mismatched)]));
    assert!(
        err.contains("relay.key") && err.contains("is not the key of"),
        "{err}"
    );

    // A bridge certificate where the CA certificate belongs.
    let swapped = config(dir, "swapped.toml", &cert, &cert, &key);
    let err = failed(&tern(&["check-config", &s(&swapped)]));
    assert!(
        err.contains("relay.ca_cert") && err.contains("not a CA certificate"),
        "{err}"
    );
}
