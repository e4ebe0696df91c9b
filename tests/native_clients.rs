//! A real bridge process and native str0m participants on 127.0.0.1.

mod native;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use native::raw_ws::{expect_closed, expect_error, next_json, raw_ws};
use native::tern_process::TernCommand;
use native::{Bridge, eventually};
use tern::client::{Client, Received};
use tern_sfu::rewrite::ts_not_before;
use tokio_tungstenite::tungstenite::Message;

/// Frames (layer, frame number) fully received on one slot.
fn complete_frames(rx: &[Received]) -> usize {
    let mut seen: HashMap<(u8, u32), (u16, u16)> = HashMap::new();
    for r in rx {
        if let (Some(l), Some(f)) = (r.layer, r.frame) {
            let e = seen.entry((l, f)).or_insert((0, r.count));
            e.0 += 1;
        }
    }
    seen.values().filter(|(got, count)| got >= count).count()
}

/// Sequence numbers missing between the first and last received packet.
fn holes(rx: &[Received]) -> usize {
    let seqs: BTreeSet<u64> = rx.iter().map(|r| r.seq).collect();
    match (seqs.first(), seqs.last()) {
        (Some(&a), Some(&b)) => (b - a + 1) as usize - seqs.len(),
        _ => 0,
    }
}

async fn video_flowing(c: &Client, source: &str, frames: usize) {
    eventually(
        &format!("{frames} complete frames of {source}"),
        Duration::from_secs(10),
        || (complete_frames(c.state().received_for(source)) >= frames).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_receive_each_others_audio_and_video() {
    let bridge = Bridge::start(&[]);
    let alice = bridge.join("room1", "alice").await;
    let bob = bridge.join("room1", "bob").await;
    for (me, other) in [(&alice, "bob"), (&bob, "alice")] {
        let cam = format!("{other}/camera");
        let mic = format!("{other}/mic");
        video_flowing(me, &cam, 30).await;
        eventually(
            &format!("audio from {other}"),
            Duration::from_secs(5),
            || (me.state().received_for(&mic).len() > 50).then_some(()),
        )
        .await;
        let st = me.state();
        let levels: Vec<i8> = st
            .received_for(&mic)
            .iter()
            .filter_map(|r| r.audio_level)
            .collect();
        assert!(
            !levels.is_empty() && levels.iter().all(|&l| l == -30),
            "audio level forwarded: {levels:?}"
        );
    }
    assert!(bridge.metric("tern_rtp_forwarded_total", "") > 100.0);
}

/// Layers a receiver gets for a requested max height, given the ladder
/// 180/360/720 the test publisher sends.
fn expected_layer(max_height: u32) -> u8 {
    match max_height {
        h if h >= 720 => 2,
        h if h >= 360 => 1,
        _ => 0,
    }
}

/// Whatever sequence of layer switches a receiver asks for, what it gets is
/// one stream: sequence numbers step by one, timestamps never go back,
/// picture ids advance by at most one, and it ends on the layer it asked for.
#[test]
fn layer_switches_keep_outgoing_numbers_monotonic() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bridge = Bridge::start(&[]);
    let case = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let heights = prop::collection::vec(
        prop_oneof![Just(180u32), Just(360), Just(720), Just(200)],
        3..7,
    );
    runner
        .run(&heights, |schedule| {
            case.set(case.get() + 1);
            let rx = rt.block_on(async {
                let room = format!("switch-{}", case.get());
                let publisher = bridge
                    .join_with(&room, "pub", |o| {
                        o.audio = false;
                        o.keyframe_response_delay = Duration::from_millis(120);
                    })
                    .await;
                let sub = bridge
                    .join_with(&room, "sub", |o| {
                        o.audio = false;
                        o.video = vec![];
                    })
                    .await;
                video_flowing(&sub, "pub/camera", 10).await;
                for &h in &schedule {
                    sub.set_max_height(None, h);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                let want = expected_layer(*schedule.last().expect("non-empty"));
                eventually("final layer", Duration::from_secs(5), || {
                    let st = sub.state();
                    let rx = st.received_for("pub/camera");
                    (rx.last().and_then(|r| r.layer) == Some(want)).then_some(())
                })
                .await;
                let st = sub.state();
                let rx = st.received_for("pub/camera").to_vec();
                drop(st);
                drop(publisher);
                drop(sub);
                rx
            });
            prop_assert!(rx.len() > 50);
            let layers: BTreeSet<u8> = rx.iter().filter_map(|r| r.layer).collect();
            let distinct: BTreeSet<u8> = schedule.iter().map(|&h| expected_layer(h)).collect();
            prop_assert!(
                layers.len() >= distinct.len().min(2),
                "switched: {layers:?} for {schedule:?}"
            );
            for w in rx.windows(2) {
                let (a, b) = (w[0], w[1]);
                prop_assert_eq!(b.seq, a.seq + 1, "sequence steps by one");
                prop_assert!(
                    ts_not_before(b.ts, a.ts),
                    "timestamp went back: {} -> {}",
                    a.ts,
                    b.ts
                );
                if let (Some(pa), Some(pb)) = (a.pid, b.pid) {
                    prop_assert!(
                        pb == pa || pb == (pa + 1) & 0x7fff,
                        "picture id {} -> {}",
                        pa,
                        pb
                    );
                }
                if a.layer != b.layer {
                    prop_assert!(
                        b.keyframe,
                        "switch to layer {:?} not on a keyframe",
                        b.layer
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_nack_is_answered_from_the_bridge_cache() {
    // Estimation off: a layer switch down forgets the old layer's resends by
    // design (the receiver starts over at the new keyframe), so a loss just
    // before one is never repaired. On a CPU-starved host str0m's estimate
    // fell on this idle loopback link and switched the receiver down in most
    // runs (issue 16), which made this test about allocation, not repair.
    let bridge = Bridge::start(&[("TERN_MEDIA_BANDWIDTH_ESTIMATION", "false")]);
    let publisher = bridge.join_with("nack", "pub", |o| o.audio = false).await;
    // Every 40th packet towards the receiver is lost after the bridge.
    let sub = bridge
        .join_with("nack", "sub", |o| {
            o.audio = false;
            o.video = vec![];
            o.drop_every_nth_inbound = Some(40);
        })
        .await;
    video_flowing(&sub, "pub/camera", 60).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let st = sub.state();
    assert!(
        st.dropped_inbound().len() >= 5,
        "losses simulated: {}",
        st.dropped_inbound().len()
    );
    let rx = st.received_for("pub/camera");
    // Judge only packets sent more than a second ago, so each loss had a full
    // second to be repaired; a repair that arrives after the newest of those
    // still counts (cutting by arrival time instead would count a repair that
    // landed just after the cut as a hole).
    let cutoff = Instant::now() - Duration::from_millis(1000);
    let Some(newest_settled) = rx.iter().filter(|r| r.at < cutoff).map(|r| r.seq).max() else {
        panic!("no packets received more than a second ago");
    };
    let settled: Vec<Received> = rx
        .iter()
        .copied()
        .filter(|r| r.seq <= newest_settled)
        .collect();
    assert_eq!(holes(&settled), 0, "every lost packet was retransmitted");
    let losses = st.dropped_inbound().len() as f64;
    drop(st);
    // Answered from the source's one copy (`core/repair.rs`), as the
    // bridge's metrics count it.
    eventually("repairs counted", Duration::from_secs(5), || {
        let sent = bridge.metric("tern_video_repairs_total", "outcome=\"sent\"");
        (sent >= losses).then_some(())
    })
    .await;
    assert_eq!(
        bridge.metric("tern_video_repairs_total", "outcome=\"expired\""),
        0.0
    );
    assert_eq!(
        publisher.state().nacks_received(),
        0,
        "the publisher was never asked: repairs came from the bridge's cache"
    );
    // A frame's packets to one receiver left together as UDP GSO messages
    // (bridge/send.rs), and the receiver decrypted every one of them.
    let gso = bridge.metric("tern_udp_datagrams_sent_total", "path=\"gso\"");
    assert!(gso > 0.0, "GSO messages on loopback: {gso} datagrams");
    assert_eq!(bridge.metric("tern_udp_gso_refused_total", ""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_pli_reaches_publisher_throttled_and_aggregated() {
    // Constraints alone choose layers: a layer switch's own keyframe
    // requests (an estimate moving under a loaded machine's delays) would
    // count with the receivers' (4 passed once in a full CI run).
    let bridge = Bridge::start(&[("TERN_MEDIA_BANDWIDTH_ESTIMATION", "false")]);
    let publisher = bridge.join_with("pli", "pub", |o| o.audio = false).await;
    let receiver = |name: &'static str| {
        bridge.join_with("pli", name, |o| {
            o.audio = false;
            o.video = vec![];
        })
    };
    let a = receiver("a").await;
    let b = receiver("b").await;
    video_flowing(&a, "pub/camera", 20).await;
    video_flowing(&b, "pub/camera", 20).await;
    // Let switch-time requests settle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let total = |c: &Client| c.state().keyframe_requests.values().sum::<u64>();
    let slot_a = a.state().slot_of("pub/camera").expect("slot");
    let slot_b = b.state().slot_of("pub/camera").expect("slot");

    // Two receivers asking at the same moment cause one request upstream.
    let before = total(&publisher);
    a.request_keyframe(&slot_a);
    b.request_keyframe(&slot_b);
    eventually("PLI reaches the publisher", Duration::from_secs(2), || {
        (total(&publisher) > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(total(&publisher) - before, 1, "aggregated across receivers");

    // One receiver hammering: at most 3 per 10 s pass, at least 200 ms apart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = total(&publisher);
    for _ in 0..20 {
        a.request_keyframe(&slot_a);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let passed = total(&publisher) - before;
    assert!(
        (1..=2).contains(&passed),
        "throttled to the receiver budget: {passed} passed"
    );
    // Metrics are exported once a second.
    eventually("throttled requests counted", Duration::from_secs(3), || {
        (bridge.metric("tern_keyframe_requests_total", "outcome=\"throttled\"") >= 15.0)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_at_high_rate_do_not_disturb_a_running_call() {
    let bridge = Bridge::start(&[]);
    let _publisher = bridge.join_with("flood", "pub", |o| o.audio = false).await;
    let sub = bridge
        .join_with("flood", "sub", |o| {
            o.audio = false;
            o.video = vec![];
        })
        .await;
    video_flowing(&sub, "pub/camera", 20).await;
    let before_len = sub.state().received_for("pub/camera").len();
    let dropped_before = bridge.metric("tern_packets_dropped_total", "");

    // Three attackers, each a different kind of junk, ~15k datagrams/s in all.
    let media = bridge.media;
    let flood = tokio::task::spawn_blocking(move || {
        let socks: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut sent = 0u64;
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..150 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = 1 + (x % 1200) as usize;
                let mut junk: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
                let _ = socks[0].send_to(&junk, media);
                // Truncated STUN: a binding request header cut short.
                let mut stun = vec![0x00, 0x01, 0x00, 0x30, 0x21, 0x12, 0xa4, 0x42];
                stun.extend_from_slice(&x.to_be_bytes());
                stun.truncate(8 + (x % 12) as usize);
                let _ = socks[1].send_to(&stun, media);
                // RTP-shaped packets for SSRCs nobody announced.
                junk[0] = 0x80;
                if junk.len() < 12 {
                    junk.resize(12, 0);
                }
                let _ = socks[2].send_to(&junk, media);
                sent += 3;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        sent
    });
    // A participant whose own (authenticated) address sends garbage RTP.
    sub.inject_garbage(2000);
    let sent = flood.await.expect("flood");
    assert!(sent > 20_000, "flood too weak: {sent}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let st = sub.state();
    let during = &st.received_for("pub/camera")[before_len..];
    assert!(
        complete_frames(during) >= 80,
        "frames kept flowing: {}",
        complete_frames(during)
    );
    let lost = holes(during);
    assert!(
        (lost as f64) < 0.005 * during.len() as f64,
        "call loss during the flood: {lost} of {}",
        during.len()
    );
    drop(st);
    let dropped = bridge.metric("tern_packets_dropped_total", "") - dropped_before;
    assert!(
        dropped >= sent as f64 * 0.9,
        "junk was counted: {dropped} of {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signalling_gets_precise_errors_and_leaves_other_sessions_untouched() {
    // Constraints alone choose bob's layer (720p from the start): with the
    // estimate still climbing from its start, bob was on a lower layer in
    // about a third of runs and got ~70 packets in the second judged below.
    let bridge = Bridge::start(&[("TERN_MEDIA_BANDWIDTH_ESTIMATION", "false")]);
    let _alice = bridge.join_with("call", "alice", |o| o.audio = false).await;
    let bob = bridge.join_with("call", "bob", |o| o.video = vec![]).await;
    video_flowing(&bob, "alice/camera", 10).await;
    let progress = || bob.state().received_for("alice/camera").len();

    let join = |token: &str, version: u32| {
        serde_json::json!({"type": "join", "version": version, "token": token}).to_string()
    };
    // Invalid, expired, wrongly signed tokens and an unknown version.
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = tern::auth::Claims {
            room: "call".into(),
            sub: "mallory".into(),
            name: None,
            exp: tern::auth::unix_now() - 600,
            codec: None,
            publish: None,
            mix: None,
            mix_video: None,
            moderator: None,
        };
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(native::SECRET.as_bytes()),
        )
        .expect("encode")
    };
    let forged = tern::auth::TokenKeys::new("not-the-secret").mint("call", "mallory", None, 60);
    for (text, code) in [
        (join("garbage", 1), "invalid_token"),
        (join(&expired, 1), "token_expired"),
        (join(&forged, 1), "invalid_token"),
        (
            join(&bridge.token("call", "carol"), 2),
            "unsupported_version",
        ),
        (r#"{"type":"leave"}"#.to_string(), "not_joined"),
        ("{not json".to_string(), "bad_message"),
    ] {
        let mut ws = raw_ws(&bridge).await;
        ws.send(Message::Text(text.clone().into()))
            .await
            .expect("send");
        let msg = expect_error(&mut ws, code).await;
        assert!(!msg.is_empty(), "{code} has a reason");
        expect_closed(&mut ws).await;
    }

    // A joined session: malformed messages are answered, the session stays.
    let mut ws = raw_ws(&bridge).await;
    ws.send(Message::Text(join(&bridge.token("call", "dave"), 1).into()))
        .await
        .expect("send");
    loop {
        let m = next_json(&mut ws).await.expect("joined");
        if m["type"] == "joined" {
            break;
        }
    }
    for (text, code, needle) in [
        (
            r#"{"type":"constraints","default_max_height":"tall"}"#,
            "bad_message",
            "invalid type",
        ),
        (r#"{"type":"dance"}"#, "bad_message", "unknown variant"),
        (
            r#"{"type":"offer","sdp":"v=0 nonsense","sources":[]}"#,
            "bad_offer",
            "SDP",
        ),
        (
            r#"{"type":"source_state","name":"nope","muted":true}"#,
            "bad_message",
            "no source named nope",
        ),
    ] {
        ws.send(Message::Text(text.into())).await.expect("send");
        let msg = expect_error(&mut ws, code).await;
        assert!(msg.contains(needle), "{code}: {msg}");
    }
    // A well-formed offer whose video offers only codecs the bridge does not
    // forward (VP9, AV1): refused naming them, not answered with a section
    // nobody can receive.
    let fingerprint = (0..32)
        .map(|i| format!("{i:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let vp9_only = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 98 100",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        &format!("a=fingerprint:sha-256 {fingerprint}"),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:98 VP9/90000",
        "a=rtpmap:100 AV1/90000",
        "",
    ]
    .join("\r\n");
    let offer = serde_json::json!({"type": "offer", "sdp": vp9_only, "sources": [
        {"mid": "0", "name": "camera", "kind": "video"}
    ]});
    ws.send(Message::Text(offer.to_string().into()))
        .await
        .expect("send");
    let msg = expect_error(&mut ws, "bad_offer").await;
    assert!(
        msg.contains("offers no codec this bridge forwards") && msg.contains("VP9, AV1"),
        "bad_offer: {msg}"
    );
    // Still joined: a valid message gets no error, and others see dave.
    assert!(bob.state().participants.contains_key("dave"));
    // Oversized: refused and closed.
    let big = format!(
        r#"{{"type":"offer","sdp":"{}","sources":[]}}"#,
        "x".repeat(300 * 1024)
    );
    ws.send(Message::Text(big.into())).await.expect("send");
    expect_error(&mut ws, "message_too_large").await;
    expect_closed(&mut ws).await;
    eventually("dave's departure seen", Duration::from_secs(2), || {
        (!bob.state().participants.contains_key("dave")).then_some(())
    })
    .await;

    // The call carried on throughout, with nothing lost, and still does. (The
    // bad input above can take less than one frame interval, so progress is
    // judged over the next second and by the absence of gaps.)
    let mid = progress();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        progress() > mid + 100,
        "media still flowing: {mid} -> {}",
        progress()
    );
    assert_eq!(holes(bob.state().received_for("alice/camera")), 0);
    assert!(bridge.metric("tern_signalling_errors_total", "") >= 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_vanishing_participants_are_removed_for_the_others() {
    let bridge = Bridge::start(&[]);
    let alice = bridge.join("bye", "alice").await;
    let bob = bridge.join("bye", "bob").await;
    let carol = bridge.join("bye", "carol").await;
    video_flowing(&alice, "bob/camera", 5).await;
    video_flowing(&alice, "carol/camera", 5).await;

    let t = Instant::now();
    bob.leave().await.expect("leave");
    eventually("bob gone for alice", Duration::from_secs(2), || {
        let st = alice.state();
        (!st.participants.contains_key("bob") && st.slot_of("bob/camera").is_none()).then_some(())
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(2));

    // Carol's process dies: no leave, the socket just closes.
    carol.abort();
    eventually("carol gone for alice", Duration::from_secs(2), || {
        (!alice.state().participants.contains_key("carol")).then_some(())
    })
    .await;
    let frozen = alice.state().received_for("alice/none").len();
    assert_eq!(frozen, 0);
    // Shards export their gauges once a second.
    eventually(
        "tern_endpoints counts alice alone",
        Duration::from_secs(3),
        || (bridge.metric("tern_endpoints", "") == 1.0).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_exits_cleanly() {
    let bridge = Bridge::start(&[]);
    let alice = bridge.join("end", "alice").await;
    let state = || alice.state().errors.clone();
    assert!(bridge.terminate(), "exit status 0 after SIGTERM");
    eventually("shutting_down delivered", Duration::from_secs(2), || {
        state()
            .iter()
            .any(|(c, _)| c == "shutting_down")
            .then_some(())
    })
    .await;
}

#[test]
fn bad_config_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[bridge]\nregion = \"eu\"\nmedia_lisen = \"127.0.0.1:1\"\n",
    )
    .expect("write");
    let out = TernCommand::new(&["check-config", path.to_str().expect("utf-8 path")])
        .run(Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("media_lisen") && err.contains("line 3"),
        "{err}"
    );

    let out = TernCommand::new(&["bridge"])
        .env("TERN_MEDIA_CODECS", "[\"opus\", \"vp7\"]")
        .env("TERN_AUTH_SECRET", "x")
        .run(Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vp7") && err.contains("environment"), "{err}");
}

/// The harness's own failure path: a `tern` that exits during startup fails
/// the start with its name and the end of its output.
#[test]
fn a_tern_that_cannot_start_is_reported_with_its_output() {
    let e = TernCommand::new(&["bridge"])
        .env("TERN_AUTH_SECRET", "")
        .env("RUST_BACKTRACE", "0")
        .try_start()
        .err()
        .expect("a bridge without a secret does not start");
    let e = format!("{e:#}");
    assert!(
        e.contains("tern bridge exited during startup") && e.contains("auth.secret is empty"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_nest_bridge_shard_and_endpoint_spans() {
    let bridge = Bridge::start(&[("TERN_BRIDGE_SHARDS", "2")]);
    let alice = bridge.join("spans", "alice").await;
    alice.leave().await.expect("leave");
    let log = eventually(
        "the session's end in the bridge's log",
        Duration::from_secs(5),
        || {
            let log = native::tern_process::strip_ansi(&bridge.output());
            log.contains("signalling session ended").then_some(log)
        },
    )
    .await;
    // tracing's fmt layer writes the span stack outermost first:
    // `bridge{..}:shard{..}:endpoint{..}: target: message`.
    let nested = |line: &str, spans: &[&str]| {
        let mut at = 0;
        spans.iter().all(|s| match line[at..].find(s) {
            Some(i) => {
                at += i + s.len();
                true
            }
            None => false,
        })
    };
    let ended = log
        .lines()
        .find(|l| l.contains("signalling session ended"))
        .expect("found above");
    assert!(
        nested(
            ended,
            &["bridge{", "}:shard{index=", "}:endpoint{", "room=spans"]
        ),
        "a session's log line sits in its endpoint span inside its shard inside the bridge: {ended}"
    );
    let joined = log
        .lines()
        .find(|l| l.contains(": joined ") && l.contains("room=spans"))
        .unwrap_or_else(|| panic!("the core logs the join:\n{log}"));
    assert!(
        nested(joined, &["bridge{", "}:shard{index="]),
        "the core's log lines sit in their shard inside the bridge: {joined}"
    );
}
