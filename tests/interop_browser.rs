//! Interop with an independent WebRTC stack, face to face with a browser: a
//! participant on aiortc (tests/interop/aiortc_peer.py, written from
//! docs/signalling.md alone; it publishes a 440 Hz Opus tone and 320x240
//! VP8 and receives with recvonly slots) and a participant in headless
//! Chromium (the browser client, fake camera and microphone) join one room
//! under `tern dev` and each decodes the other's video and audio.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh, which also makes the aiortc
//! venv): `cargo nextest run --test interop_browser`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use support::{Check, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// Where `tern dev` serves `/join` inside the namespace (tests/support/env.rs).
const FOCUS_HTTP: &str = "127.0.0.1:8080";

/// The interpreter with aiortc: `TERN_AIORTC_PYTHON`, else the venv
/// `scripts/install-test-deps.sh` makes under `target/`.
fn aiortc_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TERN_AIORTC_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aiortc-venv/bin/python")
}

/// The aiortc participant; killed on drop.
struct AiortcPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl AiortcPeer {
    fn start(room: &str, name: &str) -> Result<AiortcPeer> {
        let python = aiortc_python();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aiortc_peer.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--server", FOCUS_HTTP, "--room", room, "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(AiortcPeer {
            child,
            stdin,
            lines,
        })
    }

    /// The rest of the first line starting with `prefix`.
    fn wait_line(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_string());
                    }
                }
                Err(_) => bail!("the aiortc peer printed no '{prefix}' line within {timeout:?}"),
            }
        }
    }

    /// Tell it to stop; its result.
    fn finish(&mut self) -> Result<Value> {
        if let Some(mut stdin) = self.stdin.take() {
            // A closed pipe means it already ended; wait_line says so.
            let _ = writeln!(stdin, "stop");
        }
        let json = self.wait_line("result ", Duration::from_secs(20))?;
        serde_json::from_str(&json).context("the aiortc peer's result")
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
            if !aiortc_python().exists() {
                bail!(
                    "no aiortc interpreter at {} (scripts/install-test-deps.sh makes it)",
                    aiortc_python().display()
                );
            }
            env.start_bridge()?;
            let room = "interop-browser";
            let browser = env.join(room, "chromium", "")?;
            let chromium_id = browser.wait_connected(CONNECT_TIMEOUT)?;
            let mut peer = AiortcPeer::start(room, "aiortc")?;
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

            // aiortc, meanwhile, decodes Chromium's camera and microphone.
            std::thread::sleep(Duration::from_secs(4));
            let result = peer.finish()?;
            println!("aiortc result: {result}");
            ensure!(
                result["errors"].as_array().is_some_and(Vec::is_empty),
                "the bridge sent aiortc errors: {}",
                result["errors"]
            );
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
            Ok(())
        },
    );
}
