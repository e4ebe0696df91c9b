//! The video codec a bridge forwards is configurable (`media.codecs`):
//! Chromium participants on a `tern dev` cluster configured for H.264 send
//! and decode H.264 (simulcast included), as getStats' codec says.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root): `cargo nextest run --test browser_codecs`.

mod support;

use std::time::Duration;

use anyhow::{Result, ensure};
use support::{Check, Participant, run_in_netns, wait_two_bridges_online, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// The mime types of the page's inbound and outbound video (getStats).
fn video_codecs(p: &Participant) -> Result<(Vec<String>, Vec<String>)> {
    p.codecs("video")
}

/// Two participants join `room` (with `query` on the page URL), decode each
/// other's camera, and send and receive only `mime` ("video/H264").
fn call_uses_codec(env: &support::Env, room: &str, query: &str, mime: &str) -> Result<()> {
    let alice = env.join(room, &format!("{room}-alice"), query)?;
    let bob = env.join(room, &format!("{room}-bob"), query)?;
    let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
    let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
    for (p, from) in [(&alice, &bob_id), (&bob, &alice_id)] {
        let got = wait_until(
            &format!("{} decodes {from}'s camera", p.name),
            MEDIA_TIMEOUT,
            || {
                let stats = p.stats()?;
                Ok(
                    match stats.get(from.as_str()).and_then(|s| s.video.clone()) {
                        Some(v) if v.frames_decoded >= 30 && v.frame_height > 0 => Check::Done(v),
                        other => Check::NotYet(format!("{other:?}")),
                    },
                )
            },
        )?;
        println!("{} decodes {from}: {got:?}", p.name);
    }
    for p in [&alice, &bob] {
        let (inbound, outbound) = video_codecs(p)?;
        println!("{}: receives {inbound:?}, sends {outbound:?}", p.name);
        ensure!(
            !inbound.is_empty() && inbound.iter().all(|m| m.eq_ignore_ascii_case(mime)),
            "{} decodes {inbound:?}, not {mime}",
            p.name
        );
        ensure!(
            !outbound.is_empty() && outbound.iter().all(|m| m.eq_ignore_ascii_case(mime)),
            "{} sends {outbound:?}, not {mime}",
            p.name
        );
        // Simulcast: a stream per rid (VP9 and AV1 included, which
        // Chromium would otherwise send as one SVC stream). Chromium turns
        // the top one on only once its estimate allows, so two may be all
        // that flow yet.
        ensure!(
            outbound.len() >= 2,
            "{} sends {} video stream(s), not simulcast",
            p.name,
            outbound.len()
        );
    }
    Ok(())
}

#[test]
fn a_bridge_configured_for_h264_carries_h264_between_chromium_participants() {
    run_in_netns(
        "a_bridge_configured_for_h264_carries_h264_between_chromium_participants",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"h264\"]")])?;
            call_uses_codec(env, "h264-room", "", "video/H264")
        },
    );
}

/// VP9 with `?svc=0`: simulcast, as for VP8 (the default is SVC, below).
#[test]
fn a_bridge_configured_for_vp9_carries_vp9_simulcast_between_chromium_participants() {
    run_in_netns(
        "a_bridge_configured_for_vp9_carries_vp9_simulcast_between_chromium_participants",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"vp9\"]")])?;
            call_uses_codec(env, "vp9-room", "svc=0", "video/VP9")
        },
    );
}

/// Waits until `p` decodes `from`'s camera with `ok(frame height)`.
fn decodes_camera(
    p: &Participant,
    from: &str,
    what: &str,
    ok: impl Fn(u32) -> bool,
) -> Result<support::VideoStats> {
    wait_until(
        &format!("{} decodes {from}'s camera {what}", p.name),
        Duration::from_secs(40),
        || {
            let stats = p.stats()?;
            Ok(match stats.get(from).and_then(|s| s.video.clone()) {
                Some(v) if v.frames_decoded >= 30 && ok(v.frame_height) => Check::Done(v),
                other => Check::NotYet(format!("{other:?}")),
            })
        },
    )
}

/// VP9 goes as SVC by default: Chromium sends one L3T3_KEY stream, and the
/// bridge gives each receiver the spatial layers up to the one it asks for
/// (`sfu/src/core/svc.rs`), leaving out the packets above. Two receivers of
/// one publisher, one asking for 180p and one for 720p, decode different
/// heights from the same stream.
#[test]
fn each_receiver_of_a_vp9_svc_stream_decodes_the_spatial_layer_it_asks_for() {
    run_in_netns(
        "each_receiver_of_a_vp9_svc_stream_decodes_the_spatial_layer_it_asks_for",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"vp9\"]")])?;
            svc_receivers_decode_their_layers(env, "svc-room", false)
        },
    );
}

/// The same across the relay: the whole SVC stream crosses to the other
/// bridge, which chooses for its own receiver.
#[test]
fn a_vp9_svc_stream_crosses_the_relay_whole_and_each_bridge_chooses_layers() {
    run_in_netns(
        "a_vp9_svc_stream_crosses_the_relay_whole_and_each_bridge_chooses_layers",
        |env| {
            let dev = env.start_bridge_with_env(&[
                ("TERN_MEDIA_CODECS", "[\"opus\", \"vp9\"]"),
                ("TERN_FOCUS_STRATEGY", "\"split\""),
            ])?;
            ensure!(dev.is_focus(), "this test needs the focus and two bridges");
            wait_two_bridges_online(&dev)?;
            svc_receivers_decode_their_layers(env, "svc-relay", true)
        },
    );
}

/// Alice publishes VP9 SVC; `large` asks for 720p, `small` for 180p. With
/// `relayed`, `large` must be on another bridge than alice.
fn svc_receivers_decode_their_layers(env: &support::Env, room: &str, relayed: bool) -> Result<()> {
    {
        {
            let alice = env.join(room, "alice", "")?;
            let large = env.join(room, "large", "maxh=720")?;
            let small = env.join(room, "small", "maxh=180")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            small.wait_connected(CONNECT_TIMEOUT)?;
            large.wait_connected(CONNECT_TIMEOUT)?;
            if relayed {
                let (a, l) = (alice.state()?.bridge, large.state()?.bridge);
                println!("alice on {a:?}, large on {l:?}");
                ensure!(
                    a.is_some() && a != l,
                    "alice and large share a bridge: {a:?}"
                );
            }
            let big = decodes_camera(&large, &alice_id, "at 360p or more", |h| h >= 360)?;
            println!("large decodes alice: {big:?}");
            let little = decodes_camera(&small, &alice_id, "at 180p or less", |h| h <= 180)?;
            println!("small decodes alice: {little:?}");
            // Both at once, and the small one still moving.
            std::thread::sleep(Duration::from_secs(2));
            let now_small = decodes_camera(&small, &alice_id, "at 180p or less", |h| h <= 180)?;
            let now_large = decodes_camera(&large, &alice_id, "at 360p or more", |h| h >= 360)?;
            ensure!(
                now_small.frames_decoded > little.frames_decoded,
                "small stopped decoding: {little:?} then {now_small:?}"
            );
            println!("after 2 s: small {now_small:?}, large {now_large:?}");
            let published = alice.publish_stats()?;
            let camera: Vec<&serde_json::Value> = published
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["source"] == "camera" && r["bytesSent"].as_u64().unwrap_or(0) > 0)
                .collect();
            println!("alice publishes {camera:?}");
            ensure!(
                camera.len() == 1 && camera[0]["scalabilityMode"] == "L3T3_KEY",
                "alice should send one L3T3_KEY stream: {camera:?}"
            );
            for p in [&small, &large] {
                let (inbound, _) = video_codecs(p)?;
                ensure!(
                    !inbound.is_empty()
                        && inbound.iter().all(|m| m.eq_ignore_ascii_case("video/VP9")),
                    "{} decodes {inbound:?}, not VP9",
                    p.name
                );
            }
            let skipped = env.bridges_metric("tern_svc_packets_skipped_total", "")?;
            println!("packets left out above a receiver's layer: {skipped}");
            ensure!(skipped > 0.0, "the bridge left nothing out");
            Ok(())
        }
    }
}

#[test]
fn a_bridge_configured_for_av1_carries_av1_between_chromium_participants() {
    run_in_netns(
        "a_bridge_configured_for_av1_carries_av1_between_chromium_participants",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"av1\"]")])?;
            call_uses_codec(env, "av1-room", "", "video/AV1")
        },
    );
}

#[test]
fn conferences_on_one_cluster_each_use_the_codec_their_join_names() {
    run_in_netns(
        "conferences_on_one_cluster_each_use_the_codec_their_join_names",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"vp8\", \"h264\"]")])?;
            // Chromium puts VP8 first (checked: without `codec=h264` this
            // room decodes VP8): the H.264 conference gets H.264 because its
            // codec narrowed what the bridge offers.
            call_uses_codec(env, "slides", "codec=h264", "video/H264")?;
            call_uses_codec(env, "standup", "codec=vp8", "video/VP8")
        },
    );
}

/// `tern_audio_red_packets_total{direction}` over every bridge.
fn red_packets(env: &support::Env, direction: &str) -> Result<u64> {
    Ok(env.bridges_metric(
        "tern_audio_red_packets_total",
        &format!("direction=\"{direction}\""),
    )? as u64)
}

/// Chromium offers Opus with RED (RFC 2198) after Opus; the bridge answers
/// with RED first, so Chromium sends RED, and the bridge forwards it as RED
/// to receivers that negotiated it (a receiver without RED gets the primary
/// block: aiortc in tests/interop_browser.rs). Chromium's getStats names
/// the codec inside (audio/opus) either way, so the bridge's counters say
/// what crossed it.
#[test]
fn chromium_participants_exchange_opus_with_red_redundancy() {
    run_in_netns(
        "chromium_participants_exchange_opus_with_red_redundancy",
        |env| {
            env.start_bridge()?;
            let room = "red-room";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            for (p, from) in [(&alice, &bob_id), (&bob, &alice_id)] {
                let got = wait_until(&format!("{} hears {from}", p.name), MEDIA_TIMEOUT, || {
                    let stats = p.stats()?;
                    Ok(
                        match stats.get(from.as_str()).and_then(|s| s.audio.clone()) {
                            Some(a) if a.packets_received >= 100 && a.total_audio_energy > 0.0 => {
                                Check::Done(a)
                            }
                            other => Check::NotYet(format!("{other:?}")),
                        },
                    )
                })?;
                println!("{} hears {from}: {got:?}", p.name);
            }
            let (red_in, red_out, primary) = (
                red_packets(env, "in")?,
                red_packets(env, "out_red")?,
                red_packets(env, "out_primary")?,
            );
            println!("RED packets: {red_in} in, {red_out} out as RED, {primary} out as primary");
            ensure!(
                red_in >= 100,
                "only {red_in} RED packets reached the bridge"
            );
            ensure!(
                red_out >= 100 && primary == 0,
                "RED forwarded {red_out} times as RED and {primary} as primary to receivers that all negotiated it"
            );
            Ok(())
        },
    );
}
