//! Rights carried by tokens, on a real focus and bridge: a viewer (the
//! focus API's `ROLE_VIEWER`, `/join?role=viewer`) receives the room but
//! cannot publish, neither by an offer declaring sources nor by WHIP, and
//! each refusal says why; roles the API does not know are refused.

mod native;

use std::time::Duration;

use native::cluster_procs::{API, allocate, start_bridge, start_focus, wait_online};
use native::focus_api::api;
use native::{eventually, request};
use tern::client::{Client, ClientOptions};
use tern_proto::focus::v1 as fpb;

fn signal_addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()
        .expect("signal url address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_receives_the_room_but_cannot_publish() {
    let (_focus, grpc, focus_http) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_bridge, bridge_http) = start_bridge("auth-a", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;

    let alice = allocate(&mut api, "webinar", "alice", "eu").await;
    let speaker = Client::connect(ClientOptions::new(
        signal_addr(&alice.signal_url),
        alice.token,
    ))
    .await
    .expect("alice publishes");

    let viewer = api
        .allocate(fpb::AllocateRequest {
            conference: "webinar".into(),
            participant: "vic".into(),
            display_name: "Vic".into(),
            region: "eu".into(),
            role: fpb::Role::Viewer as i32,
            video_codec: String::new(),
            options: None,
        })
        .await
        .expect("a viewer is placed")
        .into_inner();
    let bridge = signal_addr(&viewer.signal_url);

    // Publishing with the viewer's token: refused, with the reason.
    let refused = Client::connect(ClientOptions::new(bridge, viewer.token.clone()))
        .await
        .err()
        .expect("a viewer's offer declaring sources is refused");
    let why = format!("{refused:#}");
    assert!(why.contains("publish_not_allowed"), "{why}");

    // Receiving only: fine, and alice's camera and microphone arrive.
    let mut o = ClientOptions::new(bridge, viewer.token.clone());
    o.audio = false;
    o.video = Vec::new();
    let watcher = Client::connect(o).await.expect("a viewer receives");
    eventually(
        "the viewer receives alice's media",
        Duration::from_secs(10),
        || {
            let st = watcher.state();
            (st.received_for("alice/camera").len() > 30 && st.received_for("alice/mic").len() > 30)
                .then_some(())
        },
    )
    .await;
    assert!(
        speaker.state().errors.is_empty(),
        "alice was disturbed: {:?}",
        speaker.state().errors
    );

    // WHIP with the viewer's token: 403 before anything joins.
    let (status, _, body) = request(
        "POST",
        &format!("http://{bridge_http}/whip/webinar"),
        &[
            ("content-type", "application/sdp"),
            ("authorization", &format!("Bearer {}", viewer.token)),
        ],
        "v=0\r\n",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("publish_not_allowed"), "{body}");

    // The browser client's way in takes the role too, and only known ones.
    let (status, _, body) = request(
        "GET",
        &format!("http://{focus_http}/join?room=webinar&name=v2&role=viewer"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let claims = tern::auth::TokenKeys::new(native::cluster_procs::AUTH)
        .verify(&token)
        .expect("a valid token");
    assert!(!claims.may_publish(), "{claims:?}");
    let (status, _, body) = request(
        "GET",
        &format!("http://{focus_http}/join?room=webinar&name=v3&role=admin"),
        &[],
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("role \\\"admin\\\""), "{body}");
    let bad = api
        .allocate(fpb::AllocateRequest {
            conference: "webinar".into(),
            participant: "mallory".into(),
            display_name: String::new(),
            region: "eu".into(),
            role: 7,
            video_codec: String::new(),
            options: None,
        })
        .await
        .expect_err("an unknown role");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
}
