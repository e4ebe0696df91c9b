//! Recording a real meeting (issue 21): headless Chromium participants on
//! `tern dev` (a focus and two bridges, the split strategy so the meeting
//! spans both and crosses the relay), each with a fake microphone playing
//! its own tone and Chromium's fake camera. A moderator starts the
//! recording from the page (`window.tern.record`, what the Record button
//! calls), carol joins and leaves while it runs, bob mutes; the moderator
//! stops it after 20 s. Then the files are read with Debian's FFmpeg:
//! `ffprobe` reads each, `ffmpeg -v error` decodes every frame without a
//! complaint, each file spans its participant's presence (the metadata's,
//! within 0.5 s), and each participant's audio carries its tone and not
//! the others'.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh, which installs ffmpeg):
//! `cargo nextest run --test browser_recording`.

mod support;

use std::f64::consts::PI;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use support::ffmpeg::{RATE, decoded_frames, decodes_cleanly, packet_span, pcm, power_db};
use support::wav::{fake_mic, write_wav};
use support::{Bridge, CONNECT_TIMEOUT, Check, Env, Participant, run_in_netns, wait_until};

const TONES: [(&str, f64); 3] = [("alice", 500.0), ("bob", 700.0), ("carol", 1100.0)];

/// Two seconds of a sine at -20 dBFS (whole cycles: it loops cleanly).
fn tone(hz: f64) -> Vec<i16> {
    let amplitude = 32767.0 * 10f64.powf(-20.0 / 20.0) * 2f64.sqrt();
    (0..2 * RATE as usize)
        .map(|i| (amplitude * (2.0 * PI * hz * i as f64 / f64::from(RATE)).sin()) as i16)
        .collect()
}

fn join(env: &support::Env, room: &str, name: &str, query: &str) -> Result<Participant> {
    let hz = TONES
        .iter()
        .find(|t| t.0 == name)
        .map(|t| t.1)
        .context("a tone for each name")?;
    let wav = env.dir().join(format!("{name}.wav"));
    write_wav(&wav, RATE, &tone(hz))?;
    env.join_with_args(room, name, query, &[&fake_mic(&wav)])
}

/// `window.tern.record(on)` in the page: the recording's JSON, or the
/// refusal's text as `Err`.
fn record(p: &Participant, on: bool) -> Result<std::result::Result<Value, String>> {
    let v = p.browser.eval(&format!(
        "window.tern.record({on}).then((r) => ({{ ok: r }}), (e) => ({{ err: String(e.message || e) }}))"
    ))?;
    Ok(match v.get("ok") {
        Some(r) => Ok(r.clone()),
        None => Err(v["err"].as_str().unwrap_or("?").to_string()),
    })
}

/// The recording's metadata once it says the recording ended (the bridge
/// closes the files and writes its last version; the focus hears it in the
/// next report).
fn ended_metadata(dir: &std::path::Path, id: &str) -> Result<Value> {
    let meta_path = dir.join(id).join("metadata.json");
    wait_until(
        "the metadata says the recording ended",
        Duration::from_secs(10),
        || {
            let Ok(text) = std::fs::read_to_string(&meta_path) else {
                return Ok(Check::NotYet(format!("no {}", meta_path.display())));
            };
            let m: Value = serde_json::from_str(&text)?;
            Ok(if m["ended_ms"].is_i64() {
                Check::Done(m)
            } else {
                Check::NotYet("ended_ms not yet set".into())
            })
        },
    )
}

fn ms(v: &Value) -> Result<f64> {
    Ok(v.as_i64().with_context(|| format!("not a time: {v}"))? as f64 / 1000.0)
}

/// `tern dev` (a focus and two bridges, both online) recording into the
/// test's directory, with `vars` set besides: the dev handle and that
/// directory.
fn start_recording_cluster(
    env: &Env,
    vars: &[(&str, &str)],
) -> Result<(std::rc::Rc<Bridge>, std::path::PathBuf)> {
    let dir = env.dir().join("recordings");
    let dir_toml = format!("{:?}", dir.display().to_string());
    let mut all = vec![("TERN_BRIDGE_RECORDINGS_DIR", dir_toml.as_str())];
    all.extend_from_slice(vars);
    let dev = env.start_bridge_with_env(&all)?;
    ensure!(dev.is_focus(), "this test needs the focus and two bridges");
    support::wait_two_bridges_online(&dev)?;
    Ok((dev, dir))
}

#[test]
fn browser_meeting_is_recorded_per_participant_into_files_ffmpeg_decodes_with_each_tone() {
    run_in_netns(
        "browser_meeting_is_recorded_per_participant_into_files_ffmpeg_decodes_with_each_tone",
        |env| {
            let (_dev, dir) =
                start_recording_cluster(env, &[("TERN_FOCUS_STRATEGY", "\"split\"")])?;
            let room = "e2e-recorded";
            let alice = join(env, room, "alice", "role=moderator")?;
            let bob = join(env, room, "bob", "")?;
            // Participant ids are the focus's (the name and a suffix).
            let mut names = std::collections::BTreeMap::new();
            for p in [&alice, &bob] {
                names.insert(p.wait_connected(CONNECT_TIMEOUT)?, p.name.clone());
            }
            alice.wait_sees(&["bob"], CONNECT_TIMEOUT)?;
            // Only a moderator's token may start it.
            match record(&bob, true)? {
                Err(why) => ensure!(why.contains("only a moderator"), "bob refused: {why}"),
                Ok(r) => bail!("bob, not a moderator, started a recording: {r}"),
            }
            let started =
                record(&alice, true)?.map_err(|e| anyhow::anyhow!("alice's start refused: {e}"))?;
            let t0 = Instant::now();
            let id = started["recording_id"]
                .as_str()
                .context("recording_id")?
                .to_string();
            println!("recording {id} on {}", started["bridge"]);
            match record(&alice, true)? {
                Err(why) => ensure!(
                    why.contains("already being recorded"),
                    "second start: {why}"
                ),
                Ok(r) => bail!("a second recording started: {r}"),
            }
            // Everyone sees that the room is recorded.
            wait_until(
                "bob's page shows the recording",
                Duration::from_secs(8),
                || {
                    let st = bob.browser.eval("window.tern.state().recording")?;
                    Ok(if st["active"]["recording_id"] == id.as_str() {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("{st}"))
                    })
                },
            )?;

            let at = |s: u64| t0 + Duration::from_secs(s);
            let sleep_until =
                |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
            sleep_until(at(4));
            let carol = join(env, room, "carol", "")?;
            names.insert(carol.wait_connected(CONNECT_TIMEOUT)?, carol.name.clone());
            // The meeting spans both bridges: one records, the relay brings
            // it the others' media.
            let mut on = std::collections::BTreeMap::new();
            for p in [&alice, &bob, &carol] {
                on.insert(p.name.clone(), p.state()?.bridge.context("no bridge")?);
            }
            let distinct: std::collections::BTreeSet<&String> = on.values().collect();
            ensure!(distinct.len() == 2, "participants on both bridges: {on:?}");
            println!("bridges: {on:?}");
            // Carol, joining while it runs, is told by her bridge too.
            let recorded = |p: &Participant| -> Result<Value> {
                Ok(p.browser.eval("window.tern.state().recording")?["active"].clone())
            };
            wait_until(
                "carol's page shows the recording",
                Duration::from_secs(5),
                || {
                    let st = recorded(&carol)?;
                    Ok(if st["recording_id"] == id.as_str() {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("{st}"))
                    })
                },
            )?;
            sleep_until(at(10));
            bob.browser.eval("window.tern.toggleMic()")?;
            sleep_until(at(14));
            carol.leave()?;
            sleep_until(at(20));
            let stopped =
                record(&alice, false)?.map_err(|e| anyhow::anyhow!("alice's stop refused: {e}"))?;
            ensure!(stopped["state"] == "stopped", "{stopped}");
            // Bob's page (the other participant, not the one who stopped it)
            // hears that it ended.
            wait_until(
                "bob's page shows no recording",
                Duration::from_secs(5),
                || {
                    let st = recorded(&bob)?;
                    Ok(if st.is_null() {
                        Check::Done(())
                    } else {
                        Check::NotYet(format!("{st}"))
                    })
                },
            )?;

            // The bridge closes the files and writes the metadata's last
            // version; the focus hears it in the next report.
            let meta = ended_metadata(&dir, &id)?;
            println!("metadata: {meta:#}");
            let files = meta["files"].as_array().context("files")?;
            ensure!(
                files.len() == 6,
                "audio and video of three participants: {files:#?}"
            );
            let stays = meta["participants"].as_array().context("participants")?;
            ensure!(stays.len() == 3, "three participants were there: {stays:?}");
            for f in files {
                let file = dir.join(&id).join(f["file"].as_str().context("file")?);
                let who = f["participant"].as_str().context("participant")?;
                let name = names
                    .get(who)
                    .with_context(|| format!("{who} is one of {names:?}"))?;
                let stay = stays
                    .iter()
                    .find(|s| s["participant"] == who)
                    .with_context(|| format!("{who} has a stay"))?;
                let (joined, left) = (ms(&stay["joined_ms"])?, ms(&stay["left_ms"])?);
                decodes_cleanly(&file)?;
                // Chromium sends RTCP sender reports: every track is placed
                // by them (its participant's audio and video as captured).
                ensure!(
                    f["timing"] == "sender_reports",
                    "{} placed by {}",
                    f["file"],
                    f["timing"]
                );
                let (first, last, packets) = packet_span(&file)?;
                println!(
                    "{}: {packets} packets {first:.2}-{last:.2} s, present {joined:.2}-{left:.2} s",
                    f["file"]
                );
                // Every file spans the presence: audio with silence before
                // its first packet and after its last (a late connection, a
                // mute), video black until the camera's first picture (up
                // to 0.7 s after arrival for carol, joining on the other
                // bridge: her connection, then her camera's first keyframe
                // across the relay).
                ensure!(
                    (first - joined).abs() <= 0.5 && (last - left).abs() <= 0.5,
                    "{}: {first:.2}-{last:.2} s does not span the presence {joined:.2}-{left:.2} s",
                    f["file"]
                );
                if f["kind"] == "video" {
                    // Every frame in the file decodes to a picture.
                    let (decoded, _) = decoded_frames(&file)?;
                    ensure!(
                        decoded == packets as u64,
                        "{}: {decoded} pictures from {packets} frames",
                        f["file"]
                    );
                    ensure!(
                        packets as f64 >= 10.0 * (left - joined),
                        "{}: {packets} frames in {:.1} s",
                        f["file"],
                        left - joined
                    );
                    continue;
                }
                // Its own tone dominates its audio (the first 4 s: before
                // bob's mute), every other one 20 dB or more under it.
                let x = pcm(&file)?;
                let head: Vec<f64> = x.iter().copied().take(4 * RATE as usize).collect();
                let levels: Vec<(&str, f64)> = TONES
                    .iter()
                    .map(|(n, hz)| (*n, power_db(&head, *hz)))
                    .collect();
                let (loudest, top) =
                    levels
                        .iter()
                        .copied()
                        .fold(
                            ("", f64::NEG_INFINITY),
                            |a, b| if b.1 > a.1 { b } else { a },
                        );
                ensure!(
                    loudest == name,
                    "{name}'s audio carries {loudest}'s tone: {levels:?}"
                );
                for (n, l) in &levels {
                    ensure!(
                        *n == loudest || top - l >= 20.0,
                        "{name}: {n}'s tone only {:.1} dB under its own: {levels:?}",
                        top - l
                    );
                }
            }
            Ok(())
        },
    );
}

#[test]
fn browser_recording_bridge_killed_mid_recording_leaves_files_that_play_up_to_the_kill() {
    run_in_netns(
        "browser_recording_bridge_killed_mid_recording_leaves_files_that_play_up_to_the_kill",
        |env| {
            let (dev, dir) = start_recording_cluster(env, &[])?;
            let room = "e2e-recording-killed";
            let alice = join(env, room, "alice", "role=moderator")?;
            let bob = join(env, room, "bob", "")?;
            for p in [&alice, &bob] {
                p.wait_connected(CONNECT_TIMEOUT)?;
            }
            alice.wait_sees(&["bob"], CONNECT_TIMEOUT)?;
            let started =
                record(&alice, true)?.map_err(|e| anyhow::anyhow!("alice's start refused: {e}"))?;
            let id = started["recording_id"].as_str().context("id")?.to_string();
            let bridge = started["bridge"].as_str().context("bridge")?.to_string();
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs(8));
            dev.kill_bridge(&bridge)?;
            let ran = t0.elapsed().as_secs_f64();
            println!("killed {bridge} {ran:.1} s into recording {id}");

            // The focus says the recording failed with its bridge, and
            // carries the meeting's recording on on the other bridge (bob
            // is there).
            let (last, next) = wait_until(
                "the recording is reported failed and carried on",
                Duration::from_secs(15),
                || {
                    let list = alice.browser.eval(
                        "window.TernRecording.refresh().then(() => window.tern.state().recording.recordings)",
                    )?;
                    let all = list.as_array().cloned().unwrap_or_default();
                    let failed = all
                        .iter()
                        .find(|r| r["recording_id"] == id.as_str() && r["state"] == "failed");
                    let next = all
                        .iter()
                        .find(|r| r["continues"] == id.as_str() && r["state"] == "active");
                    Ok(match (failed, next) {
                        (Some(f), Some(n)) => Check::Done((f.clone(), n.clone())),
                        _ => Check::NotYet(format!("{list}")),
                    })
                },
            )?;
            let why = last["error"].as_str().unwrap_or_default();
            ensure!(why.contains(&bridge), "the reason names the bridge: {why}");
            ensure!(
                next["bridge"] != bridge.as_str(),
                "carried on elsewhere: {next}"
            );

            // What was flushed before the kill plays: each file has frames
            // up to at most a second before the kill (files are handed to
            // the kernel every 500 ms), and FFmpeg finds nothing wrong but,
            // at most, an end cut short.
            let rec = dir.join(&id);
            let mut files: Vec<_> = std::fs::read_dir(&rec)
                .with_context(|| format!("reading {}", rec.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "webm"))
                .collect();
            files.sort();
            let meta = std::fs::read_to_string(rec.join("metadata.json")).unwrap_or_default();
            println!("metadata: {meta}");
            ensure!(files.len() == 4, "audio and video of both: {files:?}");
            ensure!(
                rec.join("metadata.json").exists(),
                "the metadata was written"
            );
            // The metadata written before the kill (every 5 s) lists each
            // file with what it held then: some, and no more than it has.
            let m: Value = serde_json::from_str(&meta).context("metadata JSON")?;
            for f in m["files"].as_array().context("files")? {
                let name = f["file"].as_str().context("file")?;
                let len = std::fs::metadata(rec.join(name)).map_or(0, |m| m.len());
                let said = f["bytes"].as_u64().unwrap_or(0);
                ensure!(
                    said > 0 && said <= len,
                    "{name}: metadata says {said} bytes, the file has {len}"
                );
            }
            for f in &files {
                let (frames, said) = decoded_frames(f)?;
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
                let (first, last, _) = packet_span(f)?;
                println!(
                    "{name}: {frames} frames decoded, {first:.2}-{last:.2} s; ffprobe said {:?}",
                    said.trim()
                );
                for line in said.lines().filter(|l| !l.trim().is_empty()) {
                    ensure!(
                        line.contains("End of file")
                            || line.contains("truncat")
                            || line.contains("Read error")
                            || line.contains("ended prematurely"),
                        "{name}: FFmpeg complained of more than a cut end: {said}"
                    );
                }
                ensure!(
                    last >= ran - 1.5,
                    "{name}: plays to {last:.2} s of {ran:.1}"
                );
                let per_s = if name.contains("-video") { 10.0 } else { 45.0 };
                if (frames as f64) < per_s * (last - first) {
                    // Seen once in CI (0 frames of a camera file, FFmpeg
                    // silent at -v error): say what FFmpeg warns of and how
                    // the file begins, so a recurrence can be read.
                    bail!(
                        "{name}: {frames} frames decoded in {:.1} s; {}",
                        last - first,
                        support::ffmpeg::explain(f)
                    );
                }
            }
            Ok(())
        },
    );
}

/// A recorded meeting whose codec is VP9 (sent as `L3T3_KEY` SVC, the
/// browser client's default), then one whose codec is AV1, each across two
/// bridges (one camera comes to the recording over the relay): each camera's
/// file is the codec as sent, its top spatial layer for VP9 (the top layer
/// alone between keyframes; at a keyframe the layers it is predicted from
/// too, each its own block a millisecond before it), and FFmpeg reads and
/// decodes all of it without a complaint.
#[test]
fn browser_vp9_svc_and_av1_meetings_are_recorded_into_files_ffmpeg_decodes() {
    run_in_netns(
        "browser_vp9_svc_and_av1_meetings_are_recorded_into_files_ffmpeg_decodes",
        |env| {
            // Split: alice and bob on different bridges, so one camera
            // reaches the recording across the relay (an SVC stream whole).
            let (_dev, dir) = start_recording_cluster(
                env,
                &[
                    ("TERN_FOCUS_STRATEGY", "\"split\""),
                    ("TERN_MEDIA_CODECS", "[\"opus\", \"vp9\", \"av1\"]"),
                ],
            )?;
            for codec in ["vp9", "av1"] {
                let room = format!("e2e-recorded-{codec}");
                let alice = join(
                    env,
                    &room,
                    "alice",
                    &format!("role=moderator&codec={codec}"),
                )?;
                let bob = join(env, &room, "bob", &format!("codec={codec}"))?;
                for p in [&alice, &bob] {
                    p.wait_connected(CONNECT_TIMEOUT)?;
                }
                alice.wait_sees(&["bob"], CONNECT_TIMEOUT)?;
                let bridges: std::collections::BTreeSet<String> = [&alice, &bob]
                    .iter()
                    .filter_map(|p| p.state().ok().and_then(|s| s.bridge))
                    .collect();
                ensure!(bridges.len() == 2, "{codec}: on both bridges: {bridges:?}");
                let started = record(&alice, true)?
                    .map_err(|e| anyhow::anyhow!("alice's start refused: {e}"))?;
                let id = started["recording_id"].as_str().context("id")?.to_string();
                std::thread::sleep(Duration::from_secs(8));
                // The top layer each camera sends (SVC: its top spatial
                // layer's height), which its file must end up showing.
                let mut top = std::collections::BTreeMap::new();
                for p in [&alice, &bob] {
                    let stats = p.publish_stats()?;
                    let h = stats
                        .as_array()
                        .context("publishStats")?
                        .iter()
                        .filter(|e| e["source"] == "camera")
                        .filter_map(|e| e["frameHeight"].as_u64())
                        .max()
                        .context("no camera encoding")?;
                    top.insert(p.state()?.participant_id.context("id")?, (h, stats));
                }
                record(&alice, false)?.map_err(|e| anyhow::anyhow!("stop refused: {e}"))?;
                let meta = ended_metadata(&dir, &id)?;
                let files = meta["files"].as_array().context("files")?;
                ensure!(
                    files.len() == 4,
                    "{codec}: audio and video of both: {meta:#}"
                );
                for f in files {
                    let file = dir.join(&id).join(f["file"].as_str().context("file")?);
                    decodes_cleanly(&file)?;
                    if f["kind"] != "video" {
                        continue;
                    }
                    ensure!(
                        f["codec"] == codec.to_uppercase(),
                        "{}: {}",
                        f["file"],
                        f["codec"]
                    );
                    let probe = support::ffmpeg::run(
                        std::process::Command::new("ffprobe")
                            .args(["-v", "error", "-select_streams", "v:0"])
                            .args(["-show_entries", "stream=codec_name,width,height"])
                            .args(["-of", "csv=p=0"])
                            .arg(&file),
                    )?;
                    let said = String::from_utf8_lossy(&probe.stdout).trim().to_string();
                    let (decoded, _) = decoded_frames(&file)?;
                    let (first, last, packets) = packet_span(&file)?;
                    println!(
                        "{}: {said}, {packets} frames {first:.2}-{last:.2} s, {decoded} pictures decoded",
                        f["file"]
                    );
                    ensure!(
                        said.starts_with(codec),
                        "{}: ffprobe reads {said}",
                        f["file"]
                    );
                    ensure!(
                        packets as f64 >= 10.0 * (last - first) && last - first >= 6.0,
                        "{}: {packets} frames in {:.1} s",
                        f["file"],
                        last - first
                    );
                    ensure!(
                        decoded == packets as u64,
                        "{}: {decoded} pictures from {packets} frames",
                        f["file"]
                    );
                    // The top layer is what was recorded: the pictures of
                    // the last two seconds reach the height its publisher
                    // sent then.
                    let heights = support::ffmpeg::run(
                        std::process::Command::new("ffprobe")
                            .args(["-v", "error", "-select_streams", "v:0"])
                            .args(["-show_entries", "frame=height", "-of", "csv=p=0"])
                            .arg(&file),
                    )?;
                    let heights: Vec<u64> = String::from_utf8_lossy(&heights.stdout)
                        .lines()
                        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
                        .collect();
                    let tail = heights[heights.len().saturating_sub(40)..].iter().max();
                    let who = f["participant"].as_str().context("participant")?;
                    let (sent, stats) = top.get(who).context("a publisher")?;
                    println!("{who} sent {sent} high; the file ends at {tail:?}");
                    ensure!(
                        tail == Some(sent),
                        "{}: last pictures up to {tail:?} high, the camera's top layer {sent}: {stats}",
                        f["file"]
                    );
                }
                drop((alice, bob));
            }
            Ok(())
        },
    );
}
