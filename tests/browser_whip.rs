//! WHIP and WHEP clients written by others, in real browsers, in a room
//! with a browser participant on the Tern client: Chromium pages publish
//! and watch with medooze's whip-whep library (npm `whip-whep` 1.2.0,
//! fetched by scripts/install-test-deps.sh into target/whip-whep), which
//! knows nothing of Tern beyond the endpoint URL and a bearer token.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root): `cargo nextest run --test browser_whip`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use support::{Check, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

fn library(file: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/whip-whep/package")
        .join(file);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (scripts/install-test-deps.sh fetches it)",
            path.display()
        )
    })
}

/// The library's module, imported into the page from a blob URL.
const IMPORT: &str =
    "const mod = await import(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));";

/// Inbound video and audio of the page's `window.pc`.
const INBOUND: &str = r#"
    return (async () => {
        const out = { video: null, audio: null };
        (await window.pc.getStats()).forEach((r) => {
            if (r.type !== 'inbound-rtp') return;
            if (r.kind === 'video') out.video = { frames: r.framesDecoded || 0, width: r.frameWidth || 0, height: r.frameHeight || 0 };
            if (r.kind === 'audio') out.audio = { packets: r.packetsReceived || 0, energy: r.totalAudioEnergy || 0 };
        });
        return out;
    })();
"#;

#[test]
fn whip_and_whep_library_clients_in_chromium_exchange_media_with_a_browser_participant() {
    run_in_netns(
        "whip_and_whep_library_clients_in_chromium_exchange_media_with_a_browser_participant",
        |env| {
            let whip_js = library("whip.js")?;
            let whep_js = library("whep.js")?;
            let dev = env.start_bridge()?;
            let room = "whip-room";
            let alice = env.join(room, "alice", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;

            // Credentials for the WHIP publisher: the focus places it and
            // names the bridge (its signal_url); WHIP goes to that bridge.
            let (status, body) = env
                .http()
                .get(&dev.url(&format!("/join?room={room}&name=studio")))?;
            ensure!(status == 200, "GET /join: {status} {body}");
            let join: Value = serde_json::from_str(&body)?;
            let studio_id = join["participant"]
                .as_str()
                .context("participant")?
                .to_string();
            let token = join["token"].as_str().context("token")?.to_string();
            let bridge = join["signal_url"]
                .as_str()
                .context("signal_url")?
                .replace("ws://", "http://")
                .replace("/signal", "");
            println!("studio {studio_id} publishes to {bridge}");

            // The publisher: camera (320x240) and microphone, WHIPClient,
            // through the focus's stable URL (which forwards to the bridge;
            // the session's Location, and so the library's DELETE, goes to
            // the bridge itself, across origins).
            let publisher = env.browser("whip", &[])?;
            publisher.goto(&dev.url("/health"))?;
            let resource = publisher.execute(
                &format!(
                    r#"const [src, url, token] = arguments;
                    return (async () => {{
                        {IMPORT}
                        const stream = await navigator.mediaDevices.getUserMedia({{ audio: true, video: {{ width: 320, height: 240 }} }});
                        const pc = new RTCPeerConnection({{ bundlePolicy: 'max-bundle' }});
                        for (const t of stream.getTracks()) pc.addTransceiver(t, {{ direction: 'sendonly' }});
                        const whip = new mod.WHIPClient();
                        await whip.publish(pc, url, token);
                        window.pc = pc; window.whip = whip;
                        return String(whip.resourceURL);
                    }})();"#
                ),
                vec![
                    json!(whip_js),
                    json!(dev.url(&format!("/whip/{room}"))),
                    json!(token),
                ],
            )?;
            println!("WHIP resource: {resource}");
            ensure!(
                resource
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{bridge}/whip/session/"))),
                "WHIPClient's resource URL: {resource}"
            );

            // Alice, on the Tern client, decodes the WHIP camera and hears
            // its microphone.
            let got = wait_until(
                "alice decodes the WHIP publisher's 320x240 camera and hears it",
                MEDIA_TIMEOUT,
                || {
                    let stats = alice.stats()?;
                    let Some(s) = stats.get(&studio_id) else {
                        return Ok(Check::NotYet(format!("nothing from studio: {stats:?}")));
                    };
                    let video = s
                        .video
                        .as_ref()
                        .is_some_and(|v| v.frames_decoded >= 30 && v.frame_height == 240);
                    let audio = s
                        .audio
                        .as_ref()
                        .is_some_and(|a| a.packets_received >= 100 && a.total_audio_energy > 0.0);
                    Ok(if video && audio {
                        Check::Done(s.clone())
                    } else {
                        Check::NotYet(format!("{s:?}"))
                    })
                },
            )?;
            println!("alice got from the WHIP publisher: {got:?}");
            let studio = alice
                .state()?
                .remote
                .into_iter()
                .find(|r| r.id == studio_id)
                .context("alice does not list the studio")?;
            ensure!(
                studio.name == "studio",
                "alice shows it as {:?}",
                studio.name
            );

            // A WHEP viewer watching alice's camera by source id (her
            // simulcast layers are 180, 360 and 720 rows high, never the
            // studio's 240, so the picture says whose it is), and one that
            // takes the default (whoever spoke last: both fake microphones
            // beep).
            let alice_heights: &[u64] = &[180, 360, 720];
            let mut viewers = Vec::new();
            for (label, query, heights) in [
                (
                    "whep-source",
                    format!("?source={alice_id}/camera"),
                    Some(alice_heights),
                ),
                ("whep-default", String::new(), None),
            ] {
                let (status, body) = env
                    .http()
                    .get(&dev.url(&format!("/join?room={room}&name={label}")))?;
                ensure!(status == 200, "GET /join: {status} {body}");
                let join: Value = serde_json::from_str(&body)?;
                let token = join["token"].as_str().context("token")?.to_string();
                let viewer = env.browser(label, &[])?;
                viewer.goto(&format!("{bridge}/health"))?;
                viewer.execute(
                    &format!(
                        r#"const [src, url, token] = arguments;
                        return (async () => {{
                            {IMPORT}
                            const pc = new RTCPeerConnection({{ bundlePolicy: 'max-bundle' }});
                            pc.addTransceiver('audio', {{ direction: 'recvonly' }});
                            pc.addTransceiver('video', {{ direction: 'recvonly' }});
                            // Played, as a player would: Chromium only decodes
                            // audio (and counts its energy) that goes somewhere.
                            pc.ontrack = (e) => {{
                                const el = document.createElement(e.track.kind);
                                el.srcObject = new MediaStream([e.track]);
                                el.autoplay = true;
                                document.body.appendChild(el);
                            }};
                            const whep = new mod.WHEPClient();
                            await whep.view(pc, url, token);
                            window.pc = pc; window.whep = whep;
                            return String(whep.resourceURL);
                        }})();"#
                    ),
                    vec![
                        json!(whep_js),
                        json!(format!("{bridge}/whep{query}")),
                        json!(token),
                    ],
                )?;
                viewers.push((label, viewer, heights));
            }
            for (label, viewer, heights) in &viewers {
                let seen = wait_until(
                    &format!("{label} decodes video and hears audio"),
                    MEDIA_TIMEOUT,
                    || {
                        let s = viewer.execute(INBOUND, vec![])?;
                        let frames = s["video"]["frames"].as_u64().unwrap_or(0);
                        let h = s["video"]["height"].as_u64().unwrap_or(0);
                        let packets = s["audio"]["packets"].as_u64().unwrap_or(0);
                        let energy = s["audio"]["energy"].as_f64().unwrap_or(0.0);
                        let video = frames >= 30 && heights.is_none_or(|want| want.contains(&h));
                        Ok(if video && packets >= 100 && energy > 0.0 {
                            Check::Done(s)
                        } else {
                            Check::NotYet(s.to_string())
                        })
                    },
                )?;
                println!("{label}: {seen}");
            }

            // Ending the WHIP session (the library's DELETE) removes the
            // studio from the room; alice carries on undisturbed.
            publisher.execute("return window.whip.stop();", vec![])?;
            wait_until(
                "alice sees the studio leave",
                Duration::from_secs(5),
                || {
                    let st = alice.state()?;
                    Ok(if st.remote.iter().any(|r| r.id == studio_id) {
                        Check::NotYet(format!("{:?}", st.remote))
                    } else {
                        Check::Done(())
                    })
                },
            )?;
            for (_, viewer, _) in &viewers {
                viewer.execute("return window.whep.stop();", vec![])?;
            }
            let st = alice.state()?;
            ensure!(
                st.joined && st.pc == "connected" && st.errors.is_empty(),
                "alice disturbed: {st:?}"
            );
            if st.participant_id.as_deref() != Some(alice_id.as_str()) {
                bail!("alice's id changed: {:?}", st.participant_id);
            }
            Ok(())
        },
    );
}
