//! A real focus and real bridges as separate processes on 127.0.0.1, with
//! native participants and the gRPC API.

mod native;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use native::cluster_procs::{
    API, AUTH, BRIDGE, allocate, bridges, start_bridge, start_bridge_with, start_focus, wait_online,
};
use native::eventually;
use native::focus_api::api;
use native::tern_process::TernCommand;
use tern::client::{Client, ClientOptions};
use tern_proto::bridge::v1 as bpb;
use tern_proto::focus::v1 as fpb;
use tonic::Code;

fn signal_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()
        .expect("signal url address")
}

async fn join(a: &fpb::AllocateResponse, video: bool) -> Client {
    let mut o = ClientOptions::new(signal_addr(&a.signal_url), a.token.clone());
    if !video {
        o.video = vec![];
    }
    Client::connect(o)
        .await
        .expect("participant joins its bridge")
}

fn clusterstatus(grpc: SocketAddr) -> String {
    let out = TernCommand::new(&[
        "clusterstatus",
        "--focus",
        &format!("http://{grpc}"),
        "--secret",
        API,
    ])
    .run(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn packets_from(c: &Client, source: &str) -> usize {
    c.state().received_for(source).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_follow_regions_and_a_killed_or_hung_bridge_is_failed_within_3s() {
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (mut eu1, _) = start_bridge("eu-1", "eu", grpc);
    let (eu2, _) = start_bridge("eu-2", "eu", grpc);
    let (_us1, _) = start_bridge("us-1", "us", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 3).await;

    // Regions: an EU participant lands in the EU, a US one in the US.
    let a = allocate(&mut api, "call", "alice", "eu").await;
    let u = allocate(&mut api, "other", "uma", "us").await;
    assert!(a.bridge_id.starts_with("eu-"), "{a:?}");
    assert_eq!(u.bridge_id, "us-1");
    // The next EU participant of the same conference joins alice's bridge.
    let b = allocate(&mut api, "call", "bob", "eu").await;
    assert_eq!(b.bridge_id, a.bridge_id);

    let alice = join(&a, true).await;
    let bob = join(&b, false).await;
    eventually("bob receives alice", Duration::from_secs(10), || {
        (packets_from(&bob, "alice/camera") > 30).then_some(())
    })
    .await;

    // kill -9 the bridge they are on.
    let (victim, survivor) = if a.bridge_id == "eu-1" {
        (&mut eu1, "eu-2")
    } else {
        (&mut { eu2 }, "eu-1")
    };
    let t = Instant::now();
    victim.signal("-KILL");
    let detected = loop {
        let bs = bridges(&mut api).await;
        if let Some(v) = bs.iter().find(|x| x.id == a.bridge_id && !x.online) {
            break (t.elapsed(), v.last_failure.clone());
        }
        assert!(t.elapsed() < Duration::from_secs(4), "not detected: {bs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        detected.0 <= Duration::from_secs(3),
        "detected after {:?}",
        detected.0
    );
    assert!(!detected.1.is_empty(), "a failure reason is kept");
    drop(alice);
    drop(bob);
    // They come back through the focus and land on the surviving EU bridge.
    let a2 = allocate(&mut api, "call", "alice", "eu").await;
    let b2 = allocate(&mut api, "call", "bob", "eu").await;
    assert_eq!(
        (a2.bridge_id.as_str(), b2.bridge_id.as_str()),
        (survivor, survivor)
    );
    let alice = join(&a2, true).await;
    let bob = join(&b2, false).await;
    eventually(
        "media again on the surviving bridge",
        Duration::from_secs(10),
        || (packets_from(&bob, "alice/camera") > 30).then_some(()),
    )
    .await;
    drop((alice, bob));

    // clusterstatus shows the dead bridge offline with its last failure.
    let table = clusterstatus(grpc);
    let row = table
        .lines()
        .find(|l| l.starts_with(&a.bridge_id))
        .unwrap_or_else(|| panic!("no row for {}: {table}", a.bridge_id));
    assert!(
        row.contains("offline") && row.contains("control stream"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("us-1") && l.contains("online")),
        "{table}"
    );

    // A bridge that hangs (SIGSTOP: the connection stays open) is failed by
    // the heartbeat timeout.
    let (hung, _) = start_bridge("eu-3", "eu", grpc);
    wait_online(&mut api, 3).await;
    let t = Instant::now();
    hung.signal("-STOP");
    loop {
        let bs = bridges(&mut api).await;
        if let Some(h) = bs.iter().find(|x| x.id == "eu-3" && !x.online) {
            assert!(h.last_failure.contains("no report"), "{h:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_millis(4500),
            "hang not detected: {bs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t.elapsed() <= Duration::from_millis(4000),
        "hang detected after {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_bad_bridges_get_precise_errors_and_disturb_nothing() {
    let (_focus, grpc, http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_b, _) = start_bridge("ok-1", "eu", grpc);
    let mut good = api(grpc, API).await;
    wait_online(&mut good, 1).await;

    // Credentials.
    let mut wrong = api(grpc, "nope").await;
    let e = wrong
        .list_bridges(fpb::ListBridgesRequest {})
        .await
        .expect_err("wrong secret");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("wrong API secret"), "{e}");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut anon = fpb::focus_client::FocusClient::new(channel.clone());
    let e = anon
        .list_bridges(fpb::ListBridgesRequest {})
        .await
        .expect_err("no secret");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("authorization"), "{e}");

    // Unknown things and malformed requests.
    let e = good
        .get_conference(fpb::GetConferenceRequest {
            conference: "ghost".into(),
        })
        .await
        .expect_err("unknown conference");
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "unknown conference ghost")
    );
    let e = good
        .end_conference(fpb::EndConferenceRequest {
            conference: "ghost".into(),
        })
        .await
        .expect_err("unknown conference");
    assert_eq!(e.code(), Code::NotFound);
    let e = good
        .drain_bridge(fpb::DrainBridgeRequest {
            bridge_id: "nope".into(),
        })
        .await
        .expect_err("unknown bridge");
    assert_eq!(e.code(), Code::NotFound);
    let e = good
        .allocate(fpb::AllocateRequest {
            conference: String::new(),
            participant: "p".into(),
            ..Default::default()
        })
        .await
        .expect_err("empty conference");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("conference"), "{e}");
    let e = good
        .allocate(fpb::AllocateRequest {
            conference: "c".into(),
            participant: "bad id!".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad participant id");
    assert_eq!(e.code(), Code::InvalidArgument);

    // Bridges: wrong secret, duplicate id, unsupported API version, no register.
    let attach = |secret: &'static str, reg: Option<bpb::Register>| {
        let channel = channel.clone();
        async move {
            let mut c = bpb::bridge_control_client::BridgeControlClient::with_interceptor(
                channel,
                move |mut r: tonic::Request<()>| {
                    r.metadata_mut()
                        .insert("x-tern-bridge-secret", secret.parse().expect("value"));
                    Ok(r)
                },
            );
            let first = reg.map(|r| bpb::BridgeMessage {
                msg: Some(bpb::bridge_message::Msg::Register(r)),
            });
            let stream = tokio_stream::iter(first.into_iter());
            c.attach(stream).await.map(|_| ())
        }
    };
    let reg = |id: &str, api_version: u32| bpb::Register {
        bridge_id: id.into(),
        region: "eu".into(),
        version: "0.1.0".into(),
        api_version,
        signal_url: "ws://127.0.0.1:1/signal".into(),
        max_packet_rate: 50_000,
        ..Default::default()
    };
    let e = attach("wrong", Some(reg("x", 1)))
        .await
        .expect_err("wrong bridge secret");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = attach(BRIDGE, Some(reg("ok-1", 1)))
        .await
        .expect_err("duplicate id");
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("ok-1"), "{e}");
    let e = attach(BRIDGE, Some(reg("v9", 9)))
        .await
        .expect_err("api version");
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = attach(BRIDGE, None).await.expect_err("no register");
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::DeadlineExceeded),
        "{e}"
    );

    // HTTP join refuses bad input with a reason.
    let body = native::http_get(http, "/join?room=bad%20room&name=x");
    assert!(body.contains("error") && body.contains("room"), "{body}");

    // Nothing of that disturbed the registered bridge or allocation.
    let bs = bridges(&mut good).await;
    assert_eq!(bs.len(), 1, "{bs:?}");
    assert!(bs[0].online && bs[0].id == "ok-1");
    let a = allocate(&mut good, "c", "p", "").await;
    assert_eq!(a.bridge_id, "ok-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_bridge_moves_its_participants_to_another() {
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_a, _) = start_bridge("a", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let first = allocate(&mut api, "room", "p1", "eu").await;
    let p1 = join(&first, false).await;
    let (_b, _) = start_bridge("b", "eu", grpc);
    wait_online(&mut api, 2).await;
    api.drain_bridge(fpb::DrainBridgeRequest {
        bridge_id: "a".into(),
    })
    .await
    .expect("drain");
    eventually("p1 told to move", Duration::from_secs(5), || {
        p1.state()
            .errors
            .iter()
            .any(|(c, _)| c == "move")
            .then_some(())
    })
    .await;
    let again = allocate(&mut api, "room", "p1", "eu").await;
    assert_eq!(again.bridge_id, "b", "draining a takes no one");
    let bs = bridges(&mut api).await;
    let a = bs.iter().find(|b| b.id == "a").expect("a");
    assert_eq!(a.state, fpb::BridgeState::Draining as i32);
    assert!(
        clusterstatus(grpc)
            .lines()
            .any(|l| l.starts_with("a ") && l.contains("yes"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_focus_restart_loses_no_media_and_rebuilds_the_same_conferences() {
    // A fixed port so the bridges find the restarted focus where it was.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let grpc_addr = probe.local_addr().expect("addr").to_string();
    drop(probe);
    let (focus, grpc, _) = start_focus(&grpc_addr, "127.0.0.1:0", &[]);
    let (_b, _) = start_bridge("b1", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let a = allocate(&mut api, "standup", "alice", "").await;
    let b = allocate(&mut api, "standup", "bob", "").await;
    let alice = join(&a, true).await;
    let bob = join(&b, false).await;
    eventually("call running", Duration::from_secs(10), || {
        (packets_from(&bob, "alice/camera") > 30).then_some(())
    })
    .await;
    // Let reports confirm both (the allocations stay visible meanwhile).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before: BTreeSet<String> = api
        .get_conference(fpb::GetConferenceRequest {
            conference: "standup".into(),
        })
        .await
        .expect("conference")
        .into_inner()
        .bridges
        .into_iter()
        .flat_map(|b| b.participants)
        .collect();
    assert_eq!(
        before,
        ["alice", "bob"].iter().map(|s| s.to_string()).collect()
    );

    let start = packets_from(&bob, "alice/camera");
    focus.signal("-KILL");
    drop(focus);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_focus2, grpc2, _) = start_focus(&grpc_addr, "127.0.0.1:0", &[]);
    assert_eq!(grpc2, grpc);
    let mut api = self::api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        match api
            .get_conference(fpb::GetConferenceRequest {
                conference: "standup".into(),
            })
            .await
        {
            Ok(c) => break c.into_inner(),
            Err(e) => assert!(Instant::now() < deadline, "conference not rebuilt: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rebuilt: BTreeSet<String> = after
        .bridges
        .into_iter()
        .flat_map(|b| b.participants)
        .collect();
    assert_eq!(rebuilt, before);
    // Media never stopped, and nothing was lost.
    let during = packets_from(&bob, "alice/camera") - start;
    assert!(
        during > 100,
        "media kept flowing through the restart: {during}"
    );
    let seqs: BTreeSet<u64> = bob
        .state()
        .received_for("alice/camera")
        .iter()
        .map(|r| r.seq)
        .collect();
    let (lo, hi) = (
        *seqs.first().expect("packets"),
        *seqs.last().expect("packets"),
    );
    assert_eq!((hi - lo + 1) as usize, seqs.len(), "no packet lost");
    let table = clusterstatus(grpc);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("b1") && l.contains("online") && l.contains(" 1 ")),
        "{table}"
    );
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_bridge_drains_it_through_the_focus_then_it_exits() {
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (mut leaving, _) = start_bridge("leaving", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let a = allocate(&mut api, "room", "p1", "eu").await;
    assert_eq!(a.bridge_id, "leaving");
    let p1 = join(&a, false).await;
    let (_staying, _) = start_bridge("staying", "eu", grpc);
    wait_online(&mut api, 2).await;

    let t = Instant::now();
    leaving.signal("-TERM");
    eventually("p1 told to move", Duration::from_secs(5), || {
        p1.state()
            .errors
            .iter()
            .any(|(c, _)| c == "move")
            .then_some(())
    })
    .await;
    let again = allocate(&mut api, "room", "p1", "eu").await;
    assert_eq!(again.bridge_id, "staying");
    // Empty now: it exits well before its 5 s drain deadline.
    let status = loop {
        if let Some(s) = leaving.try_wait() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "bridge did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// Which of `bridges` (id, HTTP address) a WHIP `Location` points at.
fn bridge_of<'a>(location: &str, bridges: &[(&'a str, SocketAddr)]) -> &'a str {
    bridges
        .iter()
        .find(|(_, http)| location.starts_with(&format!("http://{http}/whip/session/")))
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("Location {location} names none of {bridges:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_through_the_focus_lands_on_a_live_bridge_and_again_on_another_after_a_kill() {
    let (_focus, grpc, focus_http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (mut eu1, eu1_http) = start_bridge("eu-1", "eu", grpc);
    let (mut eu2, eu2_http) = start_bridge("eu-2", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 2).await;
    let bridges_http = [("eu-1", eu1_http), ("eu-2", eu2_http)];

    let token = tern::auth::TokenKeys::new(AUTH).mint("stream", "obs", Some("OBS"), 600);
    let bearer = format!("Bearer {token}");
    let post = |url: String, auth: String| {
        tokio::task::spawn_blocking(move || {
            native::request(
                "POST",
                &url,
                &[
                    ("content-type", "application/sdp"),
                    ("authorization", &auth),
                ],
                native::WHIP_OFFER,
            )
        })
    };
    let whip = format!("http://{focus_http}/whip/stream");

    // The focus refuses what it can judge itself, precisely.
    let (s, h, b) = post(whip.clone(), "Bearer nonsense".into())
        .await
        .expect("post");
    assert_eq!(
        (s, native::header(&h, "www-authenticate")),
        (401, Some("Bearer")),
        "{b}"
    );
    assert!(b.starts_with("invalid_token"), "{b}");
    let (s, _, b) = post(
        format!("http://{focus_http}/whip/elsewhere"),
        bearer.clone(),
    )
    .await
    .expect("post");
    assert_eq!(s, 403, "{b}");

    // Placed and forwarded: the bridge's answer, with a Location at the
    // bridge itself.
    let (s, h, answer) = post(whip.clone(), bearer.clone()).await.expect("post");
    assert_eq!(s, 201, "{answer}");
    assert_eq!(native::header(&h, "content-type"), Some("application/sdp"));
    assert!(answer.contains("a=end-of-candidates"), "{answer}");
    let first = native::header(&h, "location")
        .expect("Location")
        .to_string();
    let on = bridge_of(&first, &bridges_http);
    let placed: Vec<String> = bridges(&mut api)
        .await
        .into_iter()
        .filter(|b| b.endpoints > 0 || b.conferences > 0)
        .map(|b| b.id)
        .collect();
    println!("WHIP via the focus: {first} on {on}; focus sees load on {placed:?}");

    // Its bridge dies; the same focus URL places the encoder on the other.
    let (victim, survivor) = if on == "eu-1" {
        (&mut eu1, "eu-2")
    } else {
        (&mut eu2, "eu-1")
    };
    victim.signal("-KILL");
    let t = Instant::now();
    loop {
        let bs = bridges(&mut api).await;
        if bs.iter().any(|b| b.id == on && !b.online) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "not failed: {bs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, h, b) = post(whip.clone(), bearer.clone()).await.expect("post");
    assert_eq!(s, 201, "{b}");
    let second = native::header(&h, "location")
        .expect("Location")
        .to_string();
    assert_eq!(bridge_of(&second, &bridges_http), survivor);

    // The session ends at the bridge, where the Location points.
    let del = second.clone();
    let (s, _, b) = tokio::task::spawn_blocking(move || native::request("DELETE", &del, &[], ""))
        .await
        .expect("delete");
    assert_eq!(s, 200, "{b}");
    let metrics = native::http_get(focus_http, "/metrics");
    let created: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tern_focus_http_sessions_total{")
                && l.contains("protocol=\"whip\"")
                && l.contains("outcome=\"created\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(created, 2.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_keeps_the_video_codec_its_allocation_names() {
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_bridge, _) = start_bridge_with(
        "eu-1",
        "eu",
        grpc,
        &[("TERN_MEDIA_CODECS", "[\"opus\", \"vp8\", \"h264\"]".into())],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let request = |conference: &str, who: &str, codec: &str| fpb::AllocateRequest {
        conference: conference.into(),
        participant: who.into(),
        display_name: who.into(),
        region: "eu".into(),
        role: fpb::Role::Participant as i32,
        video_codec: codec.into(),
        options: None,
    };

    // A codec the focus does not know is refused, naming it.
    let e = api
        .allocate(request("x", "eve", "theora"))
        .await
        .expect_err("theora refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("theora"), "{}", e.message());

    // A VP8 conference: the test client (VP8 only) sends and receives.
    let a = api
        .allocate(request("vp8-call", "alice", "vp8"))
        .await
        .expect("allocate")
        .into_inner();
    let b = api
        .allocate(request("vp8-call", "bob", "vp8"))
        .await
        .expect("allocate")
        .into_inner();
    let _alice = join(&a, true).await;
    let bob = join(&b, false).await;
    eventually("bob receives alice's VP8", Duration::from_secs(10), || {
        (packets_from(&bob, "alice/camera") > 30).then_some(())
    })
    .await;

    // An H.264 conference on the same bridge: the same client's VP8-only
    // offer is refused with the reason; the VP8 call goes on.
    let c = api
        .allocate(request("h264-call", "carol", "h264"))
        .await
        .expect("allocate")
        .into_inner();
    assert_eq!(c.bridge_id, a.bridge_id, "one bridge hosts both");
    let o = ClientOptions::new(signal_addr(&c.signal_url), c.token.clone());
    let refusal = match Client::connect(o).await {
        Ok(_) => panic!("carol's VP8-only offer was taken by an H.264 conference"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        refusal.contains("bad_offer") && refusal.contains("H264"),
        "{refusal}"
    );
    let before = packets_from(&bob, "alice/camera");
    eventually("the VP8 call goes on", Duration::from_secs(10), || {
        (packets_from(&bob, "alice/camera") > before + 30).then_some(())
    })
    .await;

    // Audio only, carol is in: the conference stays H.264 while she is.
    let mut o = ClientOptions::new(signal_addr(&c.signal_url), c.token.clone());
    o.video = vec![];
    o.video_slots = 0;
    let carol = Client::connect(o).await.expect("an audio-only offer joins");

    // A later allocation naming another codec for the H.264 conference:
    // the focus refuses it, naming both; one naming none gets H.264.
    let e = api
        .allocate(request("h264-call", "dave", "vp8"))
        .await
        .expect_err("another codec for the conference");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(
        e.message().contains("h264") && e.message().contains("vp8"),
        "{}",
        e.message()
    );
    let f = api
        .allocate(request("h264-call", "fay", ""))
        .await
        .expect("allocate")
        .into_inner();
    let claims = tern::auth::TokenKeys::new(AUTH)
        .verify(&f.token)
        .expect("token");
    assert_eq!(claims.codec.as_deref(), Some("h264"));

    // A token from elsewhere naming another codec: the bridge refuses the
    // join itself, naming both.
    let token = tern::auth::TokenKeys::new(AUTH).mint_with_codec(
        "h264-call",
        "gus",
        None,
        600,
        Some("vp8"),
    );
    let mut o = ClientOptions::new(signal_addr(&c.signal_url), token);
    o.video = vec![];
    let e = match Client::connect(o).await {
        Ok(_) => panic!("gus joined an H.264 conference with a VP8 token"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("unsupported_codec") && e.contains("H264") && e.contains("VP8"),
        "{e}"
    );

    // Carol herself with such a token: refused, and her working connection
    // is not replaced by the refused one.
    let token = tern::auth::TokenKeys::new(AUTH).mint_with_codec(
        "h264-call",
        "carol",
        None,
        600,
        Some("vp8"),
    );
    let mut o = ClientOptions::new(signal_addr(&c.signal_url), token);
    o.video = vec![];
    assert!(
        Client::connect(o).await.is_err(),
        "carol rejoined with a VP8 token"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let errors = carol.state().errors.clone();
    assert!(
        errors.is_empty(),
        "carol's working connection was disturbed: {errors:?}"
    );
}
