//! Interop with an independent WebRTC stack, face to face with a browser: a
//! participant on aiortc (tests/interop/aiortc_peer.py, written from
//! docs/signalling.md alone; it publishes a 440 Hz Opus tone and 320x240
//! VP8 and receives with recvonly slots) and a participant in headless
//! Chromium (the browser client, fake camera and microphone) join one room
//! under `tern dev` and each decodes the other's video and audio; again in
//! an H.264 conference, where both send and decode H.264.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh, which also makes the aiortc
//! venv): `cargo nextest run --test interop_browser`.

#[path = "interop/script.rs"]
mod script;
mod support;

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use script::{Script, aiortc_python};
use serde_json::Value;
use support::{Check, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// Where `tern dev` serves `/join` inside the namespace (tests/support/env.rs).
const FOCUS_HTTP: &str = "127.0.0.1:8080";

/// The aiortc peer's slot carrying `source`, as (packets, frames, height).
fn slot_of(result: &Value, source: &str) -> Option<(u64, u64, u64)> {
    result["slots"].as_object()?.values().find_map(|s| {
        (s["source"].as_str() == Some(source)).then(|| {
            (
                s["packets"].as_u64().unwrap_or(0),
                s["frames"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
    })
}

#[test]
fn aiortc_and_chromium_participants_decode_each_others_audio_and_video() {
    run_in_netns(
        "aiortc_and_chromium_participants_decode_each_others_audio_and_video",
        |env| {
            env.start_bridge()?;
            face_to_face(env, "interop-browser", None)
        },
    );
}

/// The same in an H.264 conference on a cluster offering VP8 and H.264:
/// aiortc offers H.264 alone (libx264 in PyAV) and asks `/join` for an
/// H.264 conference, Chromium joins with `?codec=h264`, and both send and
/// decode H.264 (Chromium's getStats, the bridge's answer to aiortc).
#[test]
fn aiortc_and_chromium_exchange_h264_in_an_h264_conference() {
    run_in_netns(
        "aiortc_and_chromium_exchange_h264_in_an_h264_conference",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"vp8\", \"h264\"]")])?;
            face_to_face(env, "interop-h264", Some("h264"))
        },
    );
}

/// aiortc and Chromium join `room` (in a conference of `codec`, when one
/// is named) and each decodes the other's camera and microphone.
fn face_to_face(env: &support::Env, room: &str, codec: Option<&str>) -> anyhow::Result<()> {
    if !aiortc_python().exists() {
        bail!(
            "no aiortc interpreter at {} (scripts/install-test-deps.sh makes it)",
            aiortc_python().display()
        );
    }
    let query = codec.map(|c| format!("codec={c}")).unwrap_or_default();
    let browser = env.join(room, "chromium", &query)?;
    let chromium_id = browser.wait_connected(CONNECT_TIMEOUT)?;
    let mut args = vec!["--server", FOCUS_HTTP, "--room", room, "--name", "aiortc"];
    if let Some(c) = codec {
        args.extend(["--codec", c]);
    }
    let mut peer = Script::start("aiortc_peer.py", &args)?;
    let aiortc_id = peer.wait_line("joined ", CONNECT_TIMEOUT)?;
    peer.wait_line("connected ", CONNECT_TIMEOUT)?;
    println!("chromium {chromium_id}, aiortc {aiortc_id}");

    // Chromium decodes aiortc's 320x240 picture and plays its tone.
    let heard = wait_until(
        "Chromium decodes aiortc's camera (240 rows) and receives its tone with energy",
        MEDIA_TIMEOUT,
        || {
            let stats = browser.stats()?;
            let Some(s) = stats.get(&aiortc_id) else {
                return Ok(Check::NotYet(format!("nothing from aiortc: {stats:?}")));
            };
            let video_ok = s
                .video
                .as_ref()
                .is_some_and(|v| v.frames_decoded >= 30 && v.frame_height == 240);
            let audio_ok = s
                .audio
                .as_ref()
                .is_some_and(|a| a.packets_received >= 100 && a.total_audio_energy > 0.0);
            Ok(if video_ok && audio_ok {
                Check::Done(s.clone())
            } else {
                Check::NotYet(format!("{s:?}"))
            })
        },
    )?;
    println!("Chromium got from aiortc: {heard:?}");
    if let Some(c) = codec {
        let mime = format!("video/{c}");
        let (inbound, outbound) = browser.codecs("video")?;
        println!("Chromium receives {inbound:?}, sends {outbound:?}");
        ensure!(
            !inbound.is_empty() && inbound.iter().all(|m| m.eq_ignore_ascii_case(&mime)),
            "Chromium decodes {inbound:?}, not {mime}"
        );
        ensure!(
            !outbound.is_empty() && outbound.iter().all(|m| m.eq_ignore_ascii_case(&mime)),
            "Chromium sends {outbound:?}, not {mime}"
        );
    }

    // aiortc, meanwhile, decodes Chromium's camera and microphone.
    std::thread::sleep(Duration::from_secs(4));
    let result = peer.finish(Duration::from_secs(20))?;
    println!("aiortc result: {result}");
    ensure!(
        result["errors"].as_array().is_some_and(Vec::is_empty),
        "the bridge sent aiortc errors: {}",
        result["errors"]
    );
    if let Some(c) = codec {
        let chosen = &result["answer_video_codecs"];
        ensure!(
            chosen.as_array().is_some_and(|a| !a.is_empty()
                && a.iter()
                    .all(|n| n.as_str().is_some_and(|n| n.eq_ignore_ascii_case(c)))),
            "the bridge's answer to aiortc chose {chosen}, not {c} everywhere"
        );
    }
    let camera = format!("{chromium_id}/camera");
    let (packets, frames, height) = slot_of(&result, &camera)
        .with_context(|| format!("no aiortc slot carries {camera}: {result}"))?;
    ensure!(
        frames >= 30 && height > 0,
        "aiortc decoded {frames} frames ({packets} packets, height {height}) of {camera}"
    );
    let mic = format!("{chromium_id}/mic");
    let (packets, frames, _) = slot_of(&result, &mic)
        .with_context(|| format!("no aiortc slot carries {mic}: {result}"))?;
    ensure!(
        frames >= 100,
        "aiortc decoded {frames} audio frames ({packets} packets) of {mic}"
    );
    // Chromium sends Opus in RED; aiortc did not negotiate RED, so what it
    // decoded was each packet's primary block.
    let primary =
        env.bridges_metric("tern_audio_red_packets_total", "direction=\"out_primary\"")?;
    println!("RED packets forwarded to aiortc as their primary block: {primary}");
    ensure!(
        primary >= 100.0,
        "only {primary} RED packets went out as their primary block"
    );
    Ok(())
}
