//! What an operator's tooling meets, on real processes: the bridge's and
//! the focus's health and readiness endpoints, the status and loss gauges
//! a bridge exports, the focus's metrics after real allocations, and logs
//! that a file or a collector can read (no colour codes; JSON on request).

mod native;

use std::time::Duration;

use futures_util::SinkExt;
use native::cluster_procs::{API, allocate, start_bridge, start_focus, wait_online};
use native::focus_api::api;
use native::raw_ws::{expect_error, raw_ws_at};
use native::tern_process::{TernCommand, http_get};
use native::{Bridge, eventually, metric};
use tern_proto::focus::v1 as fpb;
use tokio_tungstenite::tungstenite::Message;

fn status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_is_ready_only_while_registered_and_not_draining_and_stays_live_throughout() {
    let (focus, grpc, focus_http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_bridge, http) = start_bridge("ops-a", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    eventually("the bridge is ready", Duration::from_secs(5), || {
        (status(http, "/ready").0 == 200).then_some(())
    })
    .await;
    assert_eq!(status(http, "/health"), (200, "ok\n".into()));
    let (code, body) = status(focus_http, "/ready");
    assert_eq!(
        (code, body.as_str()),
        (200, "ready (1 operational bridges)\n")
    );
    eventually("the bridge's status gauges", Duration::from_secs(5), || {
        (metric(http, "tern_bridge_focus_connected", "") == 1.0
            && metric(http, "tern_bridge_healthy", "") == 1.0
            && metric(http, "tern_bridge_info", "region=\"eu\"") == 1.0)
            .then_some(())
    })
    .await;

    // A token handed out just before the drain.
    let late = allocate(&mut api, "ops-room", "late", "eu").await;
    api.drain_bridge(fpb::DrainBridgeRequest {
        bridge_id: "ops-a".into(),
    })
    .await
    .expect("drain");
    eventually(
        "draining makes the bridge unready",
        Duration::from_secs(5),
        || (status(http, "/ready") == (503, "draining\n".into())).then_some(()),
    )
    .await;
    // Nobody new joins a draining bridge, the WebSocket way as WHIP's.
    let mut ws = raw_ws_at(http).await;
    ws.send(Message::Text(
        serde_json::json!({"type": "join", "version": 1, "token": late.token})
            .to_string()
            .into(),
    ))
    .await
    .expect("send join");
    let message = expect_error(&mut ws, "shutting_down").await;
    assert!(message.contains("draining"), "{message}");
    assert_eq!(status(http, "/health").0, 200, "draining is not ill health");
    eventually("tern_bridge_draining", Duration::from_secs(3), || {
        (metric(http, "tern_bridge_draining", "") == 1.0).then_some(())
    })
    .await;

    api.undrain_bridge(fpb::DrainBridgeRequest {
        bridge_id: "ops-a".into(),
    })
    .await
    .expect("undrain");
    eventually(
        "undraining makes it ready again",
        Duration::from_secs(5),
        || (status(http, "/ready").0 == 200).then_some(()),
    )
    .await;

    // The focus goes away: the bridge still works for whoever is on it
    // (live) but must not be sent anyone new (not ready).
    drop(focus);
    eventually(
        "losing the focus makes the bridge unready",
        Duration::from_secs(5),
        || {
            (status(http, "/ready") == (503, "not registered with the focus\n".into()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(status(http, "/health").0, 200);
    eventually(
        "tern_bridge_focus_connected drops",
        Duration::from_secs(3),
        || (metric(http, "tern_bridge_focus_connected", "") == 0.0).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_counts_allocations_failures_bridges_and_participants() {
    let (_focus, grpc, focus_http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_eu, _) = start_bridge("ops-eu", "eu", grpc);
    let (us, _) = start_bridge("ops-us", "us", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 2).await;
    // Before anything happens every counter is already there, at zero.
    assert_eq!(metric(focus_http, "tern_focus_allocations_total", ""), 0.0);
    assert_eq!(
        metric(
            focus_http,
            "tern_focus_allocation_failures_total",
            "reason=\"codec_mismatch\""
        ),
        0.0
    );
    for who in ["p1", "p2", "p3"] {
        allocate(&mut api, "room", who, "eu").await;
    }
    let bad = |codec: &str| fpb::AllocateRequest {
        conference: "room".into(),
        participant: format!("p-{codec}"),
        display_name: String::new(),
        region: "eu".into(),
        role: fpb::Role::Participant as i32,
        video_codec: codec.into(),
        options: None,
    };
    // The conference took no codec; naming one now is fine, then another
    // is refused. An unknown codec name is invalid.
    api.allocate(bad("vp8")).await.expect("first named codec");
    let refused = api.allocate(bad("h264")).await.expect_err("codec mismatch");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let invalid = api
        .allocate(bad("theora"))
        .await
        .expect_err("invalid codec");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    assert_eq!(metric(focus_http, "tern_focus_allocations_total", ""), 4.0);
    assert_eq!(
        metric(
            focus_http,
            "tern_focus_allocation_failures_total",
            "reason=\"codec_mismatch\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            focus_http,
            "tern_focus_allocation_failures_total",
            "reason=\"invalid\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            focus_http,
            "tern_focus_allocation_duration_seconds_count",
            ""
        ),
        6.0
    );
    assert!(
        metric(
            focus_http,
            "tern_focus_allocation_duration_seconds_bucket",
            "le=\"+Inf\""
        ) == 6.0,
        "a histogram with buckets, not a summary"
    );
    eventually("gauges published", Duration::from_secs(3), || {
        (metric(focus_http, "tern_focus_participants", "") == 4.0
            && metric(focus_http, "tern_focus_conferences", "") == 1.0
            && metric(focus_http, "tern_focus_bridges", "state=\"operational\"") == 2.0)
            .then_some(())
    })
    .await;

    drop(us);
    eventually(
        "a killed bridge counts as failed in its region",
        Duration::from_secs(6),
        || {
            let failed = "region=\"us\",state=\"failed\"";
            let up = "region=\"us\",state=\"operational\"";
            (metric(focus_http, "tern_focus_bridges", failed) == 1.0
                && metric(focus_http, "tern_focus_bridges", up) == 0.0)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_losing_packets_shows_in_the_downlink_loss_histogram_and_a_clean_one_does_not() {
    let bridge = Bridge::start(&[]);
    let _clean = bridge.join("loss", "alice").await;
    // Bob's own shell throws away every 5th original RTP packet it gets.
    let _lossy = bridge
        .join_with("loss", "bob", |o| o.drop_every_nth_inbound = Some(5))
        .await;
    // Each session reports every 5 s; the shard exports every second.
    let (lossless, lossy) = eventually(
        "loss observations from both receivers",
        Duration::from_secs(20),
        || {
            let lossless = bridge.metric("tern_downlink_loss_ratio_bucket", "le=\"0.005\"");
            let lossy = bridge.metric("tern_downlink_loss_ratio_count", "")
                - bridge.metric("tern_downlink_loss_ratio_bucket", "le=\"0.1\"");
            (lossless >= 1.0 && lossy >= 1.0).then_some((lossless, lossy))
        },
    )
    .await;
    assert!(
        bridge.metric("tern_uplink_loss_ratio_count", "") >= 2.0,
        "uplink observed too"
    );
    println!("downlink observations: {lossless} lossless, {lossy} above 10 %");
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal_and_are_json_on_request() {
    let bridge = Bridge::start(&[]);
    eventually_sync(|| bridge.output().contains("bridge ready"));
    let text = bridge.output();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in a piped log:\n{text}"
    );
    drop(bridge);

    let bridge = Bridge::start(&[("TERN_LOG_FORMAT", "json")]);
    eventually_sync(|| bridge.output().contains("bridge ready"));
    let out = bridge.output();
    let logs: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "bridge ready" && l["level"] == "INFO"),
        "no JSON 'bridge ready' line in:\n{out}"
    );

    let refused = TernCommand::new(&["bridge"])
        .env("TERN_LOG_FORMAT", "xml")
        .run(Duration::from_secs(10));
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("TERN_LOG_FORMAT=\"xml\""), "{err}");
}

fn eventually_sync(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}
