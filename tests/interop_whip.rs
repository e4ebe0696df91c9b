//! WHIP and WHEP against a real `tern bridge`, with an independent WebRTC
//! stack: tests/interop/whip_client.py (aiortc, written from RFC 9725 and
//! docs/whip-whep.md alone) publishes through WHIP and watches through
//! WHEP, next to a participant on the bridge's own signalling; and the
//! HTTP side refuses what it must with the status RFC 9725 names.
//!
//! Needs Python 3 with aiortc in a venv (`scripts/install-test-deps.sh`
//! makes it; `TERN_AIORTC_PYTHON` points at another interpreter).

mod native;
#[path = "interop/script.rs"]
mod script;

use std::time::{Duration, Instant};

use native::{Bridge, SECRET, WHIP_OFFER as SDP_SENDONLY, header, request};
use script::{Script, aiortc_python};
use tern::auth::TokenKeys;

const ROOM: &str = "whip";

/// `tern_sfu::sdp_audit` on the offer and answer a whip_client.py result
/// carries.
fn audit(result: &serde_json::Value, who: &str) {
    let offer = result["offer"].as_str().unwrap_or_default();
    let answer = result["answer"].as_str().unwrap_or_default();
    assert!(
        offer.contains("m=") && answer.contains("m="),
        "{who}: no SDP in {result}"
    );
    let findings = tern_sfu::sdp_audit::audit_answer(offer, answer);
    assert!(
        findings.is_empty(),
        "{who}'s answer: {findings:#?}\n{offer}\n{answer}"
    );
}

#[test]
fn whip_and_whep_refuse_what_rfc_9725_says_with_precise_reasons() {
    let bridge = Bridge::start(&[]);
    let http = bridge.http;
    let token = bridge.token(ROOM, "p");
    let bearer = format!("Bearer {token}");
    let sdp = [("content-type", "application/sdp")];
    let url = format!("http://{http}/whip");
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        extra.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    let call = |method: &str, url: &str, h: Vec<(&str, String)>, body: &str| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(method, url, &h, body)
    };

    // No token.
    let (s, h, b) = call("POST", &url, with(&sdp), SDP_SENDONLY);
    assert_eq!(s, 401, "{b}");
    assert_eq!(header(&h, "www-authenticate"), Some("Bearer"));
    assert!(b.contains("Authorization: Bearer"), "{b}");
    // A token signed with another secret.
    let forged = TokenKeys::new("another-secret-of-enough-length-000").mint(ROOM, "p", None, 600);
    let (s, _, b) = call(
        "POST",
        &url,
        with(&[
            ("content-type", "application/sdp"),
            ("authorization", &format!("Bearer {forged}")),
        ]),
        SDP_SENDONLY,
    );
    assert_eq!(s, 401, "{b}");
    assert!(b.starts_with("invalid_token"), "{b}");
    // Not SDP.
    let (s, _, b) = call(
        "POST",
        &url,
        with(&[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ]),
        "{}",
    );
    assert_eq!(s, 415, "{b}");
    // SDP that does not parse.
    let auth_sdp = with(&[
        ("content-type", "application/sdp"),
        ("authorization", &bearer),
    ]);
    let (s, _, b) = call("POST", &url, auth_sdp.clone(), "v=0\r\nm=video\r\n");
    assert_eq!(s, 400, "{b}");
    assert!(b.starts_with("bad_offer"), "{b}");
    // A WHIP offer that sends nothing.
    let (s, _, b) = call(
        "POST",
        &url,
        auth_sdp.clone(),
        &SDP_SENDONLY.replace("a=sendonly", "a=recvonly"),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("use WHEP"), "{b}");
    // A codec the bridge does not forward: named.
    let (s, _, b) = call(
        "POST",
        &url,
        auth_sdp.clone(),
        &SDP_SENDONLY.replace("opus/48000/2", "G722/8000"),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("offered [G722]"), "{b}");
    // The token's room is not the path's.
    let (s, _, b) = call(
        "POST",
        &format!("http://{http}/whep/elsewhere"),
        auth_sdp.clone(),
        SDP_SENDONLY,
    );
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("\"whip\""), "{b}");
    // A WHEP `?source=` that names nothing.
    let (s, _, b) = call(
        "POST",
        &format!("http://{http}/whep?source="),
        auth_sdp.clone(),
        SDP_SENDONLY,
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.starts_with("bad_message: ?source="), "{b}");
    // Sessions that do not exist; no trickle.
    let (s, _, _) = call(
        "DELETE",
        &format!("http://{http}/whip/session/0123"),
        vec![],
        "",
    );
    assert_eq!(s, 404);
    let (s, h, _) = call(
        "PATCH",
        &format!("http://{http}/whip/session/0123"),
        with(&[("content-type", "application/trickle-ice-sdpfrag")]),
        "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
    );
    assert_eq!(s, 405);
    assert_eq!(header(&h, "allow"), Some("DELETE, OPTIONS"));
    let (s, h, _) = call("OPTIONS", &url, vec![], "");
    assert_eq!(s, 204);
    assert_eq!(header(&h, "accept-post"), Some("application/sdp"));

    // Refusals were counted, and no session was created.
    let sessions = |outcome: &str| {
        bridge.metric(
            "tern_http_sessions_total",
            &format!("outcome=\"{outcome}\""),
        )
    };
    assert_eq!(sessions("created"), 0.0);
    assert_eq!(sessions("bad_offer"), 3.0);
    assert_eq!(sessions("invalid_token"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_over_whip_and_watches_over_whep_beside_a_signalling_participant() {
    assert!(
        aiortc_python().exists(),
        "{} is missing: run scripts/install-test-deps.sh (or set TERN_AIORTC_PYTHON)",
        aiortc_python().display()
    );
    let bridge = Bridge::start(&[]);
    let http = bridge.http;
    let keys = TokenKeys::new(SECRET);

    // A participant on the bridge's own signalling, receiving only.
    let watcher = bridge
        .join_with(ROOM, "watcher", |o| {
            o.audio = false;
            o.video = vec![];
            o.audio_slots = 2;
            o.video_slots = 2;
        })
        .await;

    let whip_url = format!("http://{http}/whip/{ROOM}");
    let pub_token = keys.mint(ROOM, "pub", Some("OBS"), 600);
    let mut publisher = Script::start(
        "whip_client.py",
        &["publish", "--url", &whip_url, "--token", &pub_token],
    )
    .expect("the WHIP publisher starts");
    let created = publisher
        .wait_line("created ", Duration::from_secs(30))
        .expect("the WHIP POST is answered with 201");
    assert!(
        created.starts_with(&format!("http://{http}/whip/session/")),
        "{created}"
    );
    publisher
        .wait_line("connected ", Duration::from_secs(30))
        .expect("the WHIP publisher connects");

    // The watcher sees the WHIP participant with a mic and a camera, and
    // gets packets from both.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (sources, audio, video) = {
            let st = watcher.state();
            (
                st.participants.get("pub").cloned(),
                st.received_for("pub/mic").len(),
                st.received_for("pub/camera").len(),
            )
        };
        if audio > 50 && video > 50 {
            assert_eq!(
                sources,
                Some(vec!["pub/mic".to_string(), "pub/camera".to_string()])
            );
            println!("watcher got {audio} audio and {video} video packets from the WHIP publisher");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watcher: sources {sources:?}, {audio} audio and {video} video packets from pub"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A WHEP viewer: one audio and one video stream, decoded.
    let view_token = keys.mint(ROOM, "viewer", Some("viewer"), 600);
    let whep_url = format!("http://{http}/whep");
    let mut viewer = Script::start(
        "whip_client.py",
        &["view", "--url", &whep_url, "--token", &view_token],
    )
    .expect("the WHEP viewer starts");
    viewer
        .wait_line("created ", Duration::from_secs(30))
        .expect("the WHEP POST is answered with 201");
    viewer
        .wait_line("connected ", Duration::from_secs(30))
        .expect("the WHEP viewer connects");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The viewer is a participant without sources.
    assert_eq!(
        watcher.state().participants.get("viewer").cloned(),
        Some(vec![])
    );
    let seen = viewer
        .finish(Duration::from_secs(30))
        .expect("the viewer's result");
    println!("WHEP viewer: {seen}");
    let video = &seen["decoded"]["video"];
    let audio = &seen["decoded"]["audio"];
    assert!(
        video["frames"].as_u64().unwrap_or(0) >= 30,
        "WHEP viewer decoded too few video frames: {seen}"
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240)),
        "{seen}"
    );
    assert!(
        audio["frames"].as_u64().unwrap_or(0) >= 100,
        "WHEP viewer decoded too little audio: {seen}"
    );
    assert_eq!(seen["delete"], 200, "{seen}");
    // The bridge's answer to aiortc's offer follows the offer/answer rules.
    audit(&seen, "viewer");
    assert_eq!(seen["delete_again"], 404, "{seen}");

    // Ending the WHIP session removes the participant at once.
    let done = publisher
        .finish(Duration::from_secs(30))
        .expect("the publisher's result");
    assert_eq!(done["delete"], 200, "{done}");
    audit(&done, "publisher");
    let deadline = Instant::now() + Duration::from_secs(5);
    while watcher.state().participants.contains_key("pub") {
        assert!(
            Instant::now() < deadline,
            "pub still present 5 s after its DELETE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        watcher.state().errors,
        Vec::<(String, String)>::new(),
        "the watcher was told errors"
    );
    for (protocol, outcome, n) in [
        ("whip", "created", 1.0),
        ("whep", "created", 1.0),
        ("whip", "deleted", 1.0),
        ("whep", "deleted", 1.0),
    ] {
        assert_eq!(
            bridge.metric(
                "tern_http_sessions_total",
                &format!("protocol=\"{protocol}\",outcome=\"{outcome}\""),
            ),
            n,
            "{protocol} {outcome}"
        );
    }
}
