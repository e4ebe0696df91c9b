//! Signalling limits on a real bridge: a connection that floods messages
//! has the excess dropped and is told so (`rate_limited`, at most once a
//! second) while the others in its room carry on; an address holding as
//! many signalling connections as `bridge.max_signal_connections_per_ip`
//! allows is refused another (`too_many_connections`) until one closes; one
//! address calling the focus's `/join` too fast gets 429 and is counted,
//! and is served again once it slows down; one peer address calling the
//! focus's gRPC API past `focus.grpc_rate_burst` gets `RESOURCE_EXHAUSTED`
//! (before its secret is looked at), is counted, and is served again at
//! `focus.grpc_rate_limit`.

mod native;

use std::time::Duration;

use futures_util::SinkExt;
use native::cluster_procs::{API, start_bridge, start_focus};
use native::focus_api::{Api, api};
use native::raw_ws::{expect_closed, expect_error, next_json, raw_ws};
use native::{Bridge, eventually, http_get, metric, request};
use tern_proto::focus::v1 as fpb;
use tokio_tungstenite::tungstenite::Message;
use tonic::{Code, Status};

fn join_msg(token: &str) -> Message {
    Message::Text(
        serde_json::json!({"type": "join", "version": 1, "token": token})
            .to_string()
            .into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_connection_is_rate_limited_and_the_room_carries_on() {
    let bridge = Bridge::start(&[]);
    let alice = bridge.join("flood", "alice").await;
    let bob = bridge.join("flood", "bob").await;

    let mut ws = raw_ws(&bridge).await;
    ws.send(join_msg(&bridge.token("flood", "mallory")))
        .await
        .expect("send join");
    let joined = next_json(&mut ws).await.expect("joined");
    assert_eq!(joined["type"], "joined", "{joined}");
    let errors_before = bridge.metric("tern_signalling_errors_total", "code=\"rate_limited\"");
    // A message the bridge takes silently, so any error is the limit's.
    let flood = serde_json::json!({"type": "constraints", "default_max_height": 180}).to_string();
    for _ in 0..500 {
        ws.send(Message::Text(flood.clone().into()))
            .await
            .expect("send");
    }
    let why = expect_error(&mut ws, "rate_limited").await;
    assert!(why.contains("dropped"), "{why}");
    // Not fatal: the connection is still open and answers within budget
    // once the flood stops.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(Message::Text(
        serde_json::json!({"type": "constraints", "default_max_height": 180})
            .to_string()
            .into(),
    ))
    .await
    .expect("the connection is still open");
    // One error a second at most: 500 messages in well under a second
    // make one or two, not hundreds.
    let told =
        bridge.metric("tern_signalling_errors_total", "code=\"rate_limited\"") - errors_before;
    assert!(
        (1.0..=3.0).contains(&told),
        "rate_limited told {told} times"
    );

    // Alice and Bob never noticed.
    let before = alice.state().received_for("bob/camera").len();
    eventually("alice still receives bob", Duration::from_secs(5), || {
        (alice.state().received_for("bob/camera").len() > before + 30).then_some(())
    })
    .await;
    assert!(
        alice.state().errors.is_empty(),
        "{:?}",
        alice.state().errors
    );
    assert!(bob.state().errors.is_empty(), "{:?}", bob.state().errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_no_more_signalling_connections_than_the_limit() {
    let bridge = Bridge::start(&[("TERN_BRIDGE_MAX_SIGNAL_CONNECTIONS_PER_IP", "2")]);
    let alice = bridge.join("cap", "alice").await;
    let bob = bridge.join("cap", "bob").await;

    let mut third = raw_ws(&bridge).await;
    let why = expect_error(&mut third, "too_many_connections").await;
    assert!(
        why.contains("127.0.0.1") && why.contains("max_signal_connections_per_ip"),
        "{why}"
    );
    expect_closed(&mut third).await;

    // One leaves: its place is free again.
    bob.leave().await.expect("bob leaves");
    let mut ws = raw_ws(&bridge).await;
    ws.send(join_msg(&bridge.token("cap", "carol")))
        .await
        .expect("send join");
    let mut joined = None;
    for _ in 0..20 {
        match next_json(&mut ws).await {
            Some(m) if m["type"] == "joined" => {
                joined = Some(m);
                break;
            }
            Some(m) if m["type"] == "error" => {
                // The slot frees when bob's socket has closed on the
                // bridge's side; try again shortly.
                assert_eq!(m["code"], "too_many_connections", "{m}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                ws = raw_ws(&bridge).await;
                ws.send(join_msg(&bridge.token("cap", "carol")))
                    .await
                    .expect("send join");
            }
            Some(_) => {}
            None => panic!("closed without an answer"),
        }
    }
    assert!(joined.is_some(), "carol never joined after bob left");
    assert!(
        alice.state().errors.is_empty(),
        "{:?}",
        alice.state().errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_join_endpoint_is_limited_per_address() {
    let (_focus, grpc, http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_bridge, _) = start_bridge("limits-a", "eu", grpc);
    let join = |i: u32| {
        request(
            "GET",
            &format!("http://{http}/join?room=busy&name=p{i}"),
            &[],
            "",
        )
    };
    // The bridge may take a moment to register: until then /join is 503.
    eventually(
        "the focus places participants",
        Duration::from_secs(10),
        || (join(0).0 == 200).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statuses: Vec<u16> = (1..=40).map(|i| join(i).0).collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let served = statuses.iter().filter(|s| **s == 200).count();
    // A burst of 20 plus what refills while the 40 requests run.
    assert!(
        (15..=30).contains(&served) && limited + served == 40,
        "{statuses:?}"
    );
    let (_, _, body) = join(41);
    assert!(
        body.contains("rate_limited") && body.contains("127.0.0.1"),
        "{body}"
    );
    assert!(
        metric(http, "tern_focus_rate_limited_total", "path=\"join\"") >= limited as f64,
        "counted"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(join(42).0, 200, "served again after slowing down");
}

async fn list_bridges(api: &mut Api) -> Result<(), Status> {
    api.list_bridges(fpb::ListBridgesRequest {})
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_grpc_api_is_limited_per_peer_address() {
    // 5 calls a second, burst 10: small enough to cross in a test.
    let limit = [
        ("TERN_FOCUS_GRPC_RATE_LIMIT", "5".to_string()),
        ("TERN_FOCUS_GRPC_RATE_BURST", "10".to_string()),
    ];
    let (_focus, grpc, http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &limit);
    let counted = || metric(http, "tern_focus_rate_limited_total", "path=\"grpc\"");
    let page = http_get(http, "/metrics");
    assert!(
        page.contains("tern_focus_rate_limited_total{path=\"grpc\"} 0"),
        "registered at zero:\n{page}"
    );
    let mut api = api(grpc, API).await;
    // A second connection from the same address, without the API secret.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut anonymous = fpb::focus_client::FocusClient::new(channel);

    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for _ in 0..30 {
        results.push(list_bridges(&mut api).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The anonymous caller shares the address's bucket, and the limit comes
    // before the secret is checked.
    let mut anonymous_codes = Vec::new();
    for _ in 0..3 {
        let r = anonymous.list_bridges(fpb::ListBridgesRequest {}).await;
        anonymous_codes.push(r.expect_err("no secret").code());
    }

    let served = results.iter().filter(|r| r.is_ok()).count();
    // The burst, plus whatever refilled (5 a second) while the calls ran.
    let most = 10 + (5.0 * elapsed).ceil() as usize;
    assert!(
        results[..10].iter().all(Result::is_ok) && (10..=most).contains(&served),
        "{served} of 30 served in {elapsed:.3} s: {results:?}"
    );
    let refused: Vec<&Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for s in &refused {
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        let m = s.message();
        assert!(
            m.contains("rate_limited")
                && m.contains("5 gRPC calls a second (burst 10)")
                && m.contains("127.0.0.1")
                && m.contains("focus.grpc_rate_limit"),
            "{m}"
        );
    }
    assert!(
        anonymous_codes.contains(&Code::ResourceExhausted)
            && anonymous_codes
                .iter()
                .all(|c| matches!(c, Code::ResourceExhausted | Code::Unauthenticated)),
        "{anonymous_codes:?}"
    );
    let anonymous_refused = anonymous_codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!(
        counted(),
        (refused.len() + anonymous_refused) as f64,
        "every refusal counted"
    );

    // Slowed down to 4 calls a second, under the 5 refilled: all served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..8 {
        if let Err(s) = list_bridges(&mut api).await {
            panic!("call {i} at 4 a second refused: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        counted(),
        (refused.len() + anonymous_refused) as f64,
        "nothing more refused"
    );
}
