//! End-to-end tests with real Chromium browsers against `tern dev`.
//!
//! Each test runs in its own network namespace (see `support`), needs root
//! and `scripts/install-test-deps.sh`, and takes the browser-test lock, so
//! they never overlap. Run them with
//! `cargo test --test browser_e2e -- --test-threads=1` or
//! `cargo nextest run --test browser_e2e`; add `--nocapture` to watch.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::{
    CONNECT_TIMEOUT, Check, Env, MEDIA_TIMEOUT, Participant, all_see_and_hear_each_other,
    run_in_netns, wait_two_bridges_online, wait_until,
};

/// How long the simulcast test stays on a layer after switching to it.
const DWELL: Duration = Duration::from_secs(2);

#[test]
fn browser_three_participants_see_and_hear_each_other_and_late_joiner_and_leaver() {
    run_in_netns(
        "browser_three_participants_see_and_hear_each_other_and_late_joiner_and_leaver",
        |env| {
            // Joining and leaving, not bandwidth: with estimation on, a CPU-starved
            // host makes str0m's estimate collapse without loss (issue 16) and the
            // late joiner's slot is paused for bandwidth for most of the 30 s
            // window (failed twice so, 2026-12-03). browser_bandwidth tests that.
            env.start_bridge_with_env(&[("TERN_MEDIA_BANDWIDTH_ESTIMATION", "false")])?;
            let room = "e2e-three";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let carol = env.join(room, "carol", "")?;
            for p in [&alice, &bob, &carol] {
                p.wait_connected(CONNECT_TIMEOUT)?;
            }
            all_see_and_hear_each_other(&[&alice, &bob, &carol])?;
            println!("three participants: everyone sees and hears everyone");

            // A late joiner: everybody sees and hears dave, dave everybody.
            let dave = env.join(room, "dave", "")?;
            dave.wait_connected(CONNECT_TIMEOUT)?;
            all_see_and_hear_each_other(&[&alice, &bob, &carol, &dave])?;
            println!("late joiner: everyone sees and hears dave and dave everyone");
            // Chromium's transport-wide feedback confirms what it got, and
            // the bridge lets those packets go before the repair window
            // ends (`core/repair.rs`): on these clean links, most of them
            // (95 % here; not those sent before a receiver's first report
            // or awaiting the next).
            let kept = env.bridges_metric("tern_video_repair_copies_total", "outcome=\"kept\"")?;
            let released =
                env.bridges_metric("tern_video_repair_copies_total", "outcome=\"released\"")?;
            println!("repair copies: {kept} kept, {released} released on confirmation");
            ensure!(
                kept > 100.0 && released > 0.6 * kept,
                "copies released on the browsers' feedback: {released} of {kept}"
            );
            for p in [&alice, &bob, &carol, &dave] {
                // Which layers each browser encodes (CPU adaptation shows here).
                println!("{} publishes: {}", p.name, p.publish_stats()?);
            }

            // A leaver: gone from everyone's state and stats within 2 s, and the
            // slots that carried carol stop delivering frames.
            let carol_id = alice
                .state()?
                .remote_named("carol")
                .context("alice knows carol")?
                .id
                .clone();
            let stayers = [&alice, &bob, &dave];
            let mut carried: Vec<Vec<String>> = Vec::new();
            for p in stayers {
                let mids = p.state()?.slots_of(&carol_id);
                ensure!(
                    !mids.is_empty(),
                    "{} has no slot carrying {carol_id} before the leave",
                    p.name
                );
                carried.push(mids);
            }
            carol.leave()?;
            let left_at = Instant::now();
            let deadline = Duration::from_secs(2);
            for p in stayers {
                let remaining =
                    deadline.saturating_sub(left_at.elapsed()) + Duration::from_millis(1);
                wait_until(
                    &format!("{} no longer sees carol", p.name),
                    remaining,
                    || {
                        let st = p.state()?;
                        let stats = p.stats()?;
                        let in_state = st.remote.iter().any(|r| r.id == carol_id);
                        let in_stats = stats.contains_key(&carol_id);
                        let in_slots = !st.slots_of(&carol_id).is_empty();
                        if !in_state && !in_stats && !in_slots {
                            Ok(Check::Done(()))
                        } else {
                            Ok(Check::NotYet(format!(
                                "in state {in_state}, in stats {in_stats}, in slots {in_slots}"
                            )))
                        }
                    },
                )?;
            }
            println!("leaver: gone from all states after {:?}", left_at.elapsed());

            // From 2 s after the leave on, the old slots must be still.
            std::thread::sleep(deadline.saturating_sub(left_at.elapsed()));
            let before: Vec<Vec<support::SlotStats>> = stayers
                .iter()
                .map(|p| p.slot_stats())
                .collect::<Result<_>>()?;
            std::thread::sleep(Duration::from_secs(1));
            for ((p, mids), before) in stayers.iter().zip(&carried).zip(&before) {
                let after = p.slot_stats()?;
                for mid in mids {
                    let b = before
                        .iter()
                        .find(|s| &s.mid == mid)
                        .context("slot before")?;
                    let a = after.iter().find(|s| &s.mid == mid).context("slot after")?;
                    if a.source.is_some() {
                        // The bridge gave the slot to someone else: it may run again.
                        println!(
                            "{}: slot {mid} now carries {:?}, not checked",
                            p.name, a.source
                        );
                        continue;
                    }
                    ensure!(
                        a.frames_decoded == b.frames_decoded
                            && a.packets_received == b.packets_received,
                        "{}: slot {mid} that carried carol still receives 2 s after she left: {b:?} -> {a:?}",
                        p.name
                    );
                }
            }
            println!("leaver: no more media from carol 2 s after she left");

            // The others still get each other.
            all_see_and_hear_each_other(&[&alice, &bob, &dave])?;
            Ok(())
        },
    );
}

/// Installs a 100 ms poll of framesDecoded on slot `mid` in the page; the
/// result is read by [`read_gap_monitor`].
fn start_gap_monitor(p: &Participant, mid: &str) -> Result<()> {
    p.browser.execute(
        r#"
        const mid = arguments[0];
        if (window.__gapTimer) clearInterval(window.__gapTimer);
        const g = { mid, last: -1, lastChange: performance.now(), maxGap: 0, samples: 0, heights: {}, busy: false };
        window.__gap = g;
        window.__gapTimer = setInterval(async () => {
          if (g.busy) return;
          g.busy = true;
          try {
            const s = (await window.tern.slotStats([g.mid]))[0];
            const now = performance.now();
            if (!s) return;
            g.samples++;
            if (s.framesDecoded !== g.last) { g.last = s.framesDecoded; g.lastChange = now; }
            g.maxGap = Math.max(g.maxGap, now - g.lastChange);
            g.heights[s.frameHeight] = (g.heights[s.frameHeight] || 0) + 1;
          } finally {
            g.busy = false;
          }
        }, 100);
        "#,
        vec![json!(mid)],
    )?;
    Ok(())
}

fn read_gap_monitor(p: &Participant) -> Result<Value> {
    p.browser.execute(
        "const g = window.__gap; return { maxGapMs: g.maxGap, samples: g.samples, heights: g.heights, framesDecoded: g.last };",
        vec![],
    )
}

/// Waits until `p` decodes `publisher`'s camera at a height `ok` accepts.
fn wait_height(
    p: &Participant,
    publisher: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(u32) -> bool,
) -> Result<u32> {
    let mut last_frames = 0;
    wait_until(what, timeout, || {
        let stats = p.stats()?;
        let Some(v) = stats.get(publisher).and_then(|s| s.video.clone()) else {
            return Ok(Check::NotYet(format!(
                "no video from {publisher}: {stats:?}"
            )));
        };
        // Require fresh frames at that height, not a stale last value.
        let fresh = v.frames_decoded > last_frames;
        last_frames = v.frames_decoded;
        if fresh && ok(v.frame_height) {
            Ok(Check::Done(v.frame_height))
        } else {
            Ok(Check::NotYet(format!(
                "{}x{} after {} frames",
                v.frame_width, v.frame_height, v.frames_decoded
            )))
        }
    })
}

#[test]
fn browser_simulcast_receiver_switches_layers_without_freezing() {
    run_in_netns(
        "browser_simulcast_receiver_switches_layers_without_freezing",
        |env| {
            env.start_bridge()?;
            let room = "e2e-simulcast";
            // The fake camera captures 1280x720; simulcast is on by default.
            let publisher = env.join(room, "pub", "")?;
            let receiver = env.join(room, "sub", "")?;
            publisher.wait_connected(CONNECT_TIMEOUT)?;
            receiver.wait_connected(CONNECT_TIMEOUT)?;
            let pub_id = receiver
                .wait_sees(&["pub"], CONNECT_TIMEOUT)?
                .remove("pub")
                .context("pub id")?;

            receiver.set_max_height(None, 180)?;
            let h = wait_height(&receiver, &pub_id, "the 180p layer", MEDIA_TIMEOUT, |h| {
                (160..=200).contains(&h)
            })?;
            println!("asked for 180: decoding {h}p");
            let mid = receiver
                .stats()?
                .get(&pub_id)
                .and_then(|s| s.video.clone())
                .context("video stats")?
                .mid;

            // Nobody wants more than 180p: once the pause delay passed the
            // bridge tells the publisher so and Chrome stops encoding the
            // upper layers (sender constraints); asking for 720p below must
            // bring them back.
            let paused = wait_until(
                "the publisher to pause its upper layers",
                Duration::from_secs(10),
                || {
                    let told = publisher.state()?.sending_up_to.get("camera").copied();
                    let stats = publisher.publish_stats()?;
                    let upper_off = stats.as_array().is_some_and(|a| {
                        a.iter()
                            .filter(|e| matches!(e["rid"].as_str(), Some("h" | "f")))
                            .all(|e| e["active"] == json!(false))
                    });
                    Ok(if told == Some(180) && upper_off {
                        Check::Done(stats)
                    } else {
                        Check::NotYet(format!("told {told:?}, encodings {stats}"))
                    })
                },
            )?;
            println!("publisher paused its upper layers: {paused}");

            start_gap_monitor(&receiver, &mid)?;
            let switch_started = Instant::now();
            receiver.set_max_height(None, 720)?;
            let h = wait_height(
                &receiver,
                &pub_id,
                "a layer above 180p",
                MEDIA_TIMEOUT,
                |h| h > 200,
            )?;
            println!(
                "asked for 720: first decoded height above 200 is {h}p after {:?}",
                switch_started.elapsed()
            );
            // 720 needs the publisher's encoder (CPU, bandwidth estimate) to
            // produce the top layer: give it some time, only report the result.
            let top = wait_height(
                &receiver,
                &pub_id,
                "the 720p layer",
                Duration::from_secs(20),
                |h| h >= 700,
            );
            match &top {
                Ok(h) => println!("reached {h}p after {:?}", switch_started.elapsed()),
                Err(e) => println!("did not reach 720p: {e:#}"),
            }
            println!("publisher layers: {}", publisher.publish_stats()?);
            // Stay on the top layer a while: the monitor covers steady state too.
            std::thread::sleep(DWELL);

            // And back down.
            let down_started = Instant::now();
            receiver.set_max_height(None, 180)?;
            let h = wait_height(
                &receiver,
                &pub_id,
                "back to the 180p layer",
                MEDIA_TIMEOUT,
                |h| (160..=200).contains(&h),
            )?;
            println!(
                "asked for 180 again: decoding {h}p after {:?}",
                down_started.elapsed()
            );
            std::thread::sleep(DWELL);

            let gap = read_gap_monitor(&receiver)?;
            let stats = receiver.stats()?;
            println!("gap monitor: {gap}");
            println!("receiver stats for pub: {:?}", stats.get(&pub_id));
            let max_gap = gap
                .get("maxGapMs")
                .and_then(Value::as_f64)
                .context("maxGapMs")?;
            let samples = gap.get("samples").and_then(Value::as_u64).unwrap_or(0);
            ensure!(
                samples >= 20,
                "the in-page monitor took only {samples} samples"
            );
            ensure!(
                max_gap <= 1000.0,
                "video stalled for {max_gap:.0} ms while switching layers (limit 1000 ms): {gap}"
            );
            Ok(())
        },
    );
}

/// Checks the harness without the bridge: Chromium starts inside the
/// namespace through chromedriver, gets the fake camera and microphone, and
/// a loopback call between two peer connections in one page decodes video
/// and audio over 127.0.0.1.
#[test]
fn browser_harness_loopback_call_in_namespace() {
    run_in_netns("browser_harness_loopback_call_in_namespace", |env: &Env| {
        // The namespace really has nothing but loopback.
        let links = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()?;
        let links = String::from_utf8_lossy(&links.stdout).to_string();
        ensure!(
            links.lines().count() == 1 && links.contains(": lo:"),
            "expected only lo, got:\n{links}"
        );

        let browser = env.browser("loopback", &[])?;
        // Any http://127.0.0.1 page is a secure context (getUserMedia needs
        // one); chromedriver's own status page is there already.
        browser.goto("http://127.0.0.1:9515/status")?;
        let result = browser.eval(LOOPBACK_CALL_JS)?;
        println!("loopback call: {result}");
        let get = |k: &str| result.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        ensure!(
            get("captureHeight") == 720.0,
            "fake camera should capture 720p: {result}"
        );
        ensure!(get("framesDecoded") > 10.0, "no video decoded: {result}");
        ensure!(get("totalAudioEnergy") > 0.0, "no audio energy: {result}");
        let candidates = result
            .get("candidates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        ensure!(
            !candidates.is_empty() && candidates.iter().all(|c| c.as_str() == Some("127.0.0.1")),
            "media must use 127.0.0.1 only: {result}"
        );
        Ok(())
    });
}

const LOOPBACK_CALL_JS: &str = r#"(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  b.ontrack = (e) => {
    const el = document.createElement(e.track.kind);
    el.autoplay = true;
    el.srcObject = new MediaStream([e.track]);
    document.body.appendChild(el);
  };
  for (const t of stream.getTracks()) a.addTrack(t, stream);
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  await new Promise((r) => setTimeout(r, 4000));
  const out = { captureHeight: stream.getVideoTracks()[0].getSettings().height, candidates: [] };
  (await b.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") { out.framesDecoded = r.framesDecoded; out.frameHeight = r.frameHeight; }
    if (r.type === "inbound-rtp" && r.kind === "audio") { out.totalAudioEnergy = r.totalAudioEnergy; out.audioLevel = r.audioLevel; }
    if (r.type === "local-candidate") out.candidates.push(r.address);
  });
  a.close(); b.close();
  for (const t of stream.getTracks()) t.stop();
  return out;
})()"#;

#[test]
fn browser_participants_on_different_bridges_see_and_hear_each_other_through_the_relay() {
    run_in_netns(
        "browser_participants_on_different_bridges_see_and_hear_each_other_through_the_relay",
        |env| {
            // Split: the focus puts each participant of a room on another
            // bridge, so every call crosses the relay.
            let dev = env.start_bridge_with_env(&[("TERN_FOCUS_STRATEGY", "\"split\"")])?;
            ensure!(dev.is_focus(), "this test needs the focus and two bridges");
            wait_two_bridges_online(&dev)?;
            let room = "e2e-relay";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let carol = env.join(room, "carol", "")?;
            for p in [&alice, &bob, &carol] {
                p.wait_connected(CONNECT_TIMEOUT)?;
            }
            all_see_and_hear_each_other(&[&alice, &bob, &carol])?;
            let mut on = BTreeMap::new();
            for p in [&alice, &bob, &carol] {
                on.insert(p.name.clone(), p.state()?.bridge.context("no bridge")?);
            }
            let distinct: std::collections::BTreeSet<&String> = on.values().collect();
            ensure!(
                distinct.len() == 2,
                "participants spread over both bridges: {on:?}"
            );
            println!("relay: everyone sees and hears everyone across bridges {on:?}");

            // Leaving and joining cross the relay too.
            let carol_id = alice
                .state()?
                .remote_named("carol")
                .context("alice knows carol")?
                .id
                .clone();
            carol.leave()?;
            for p in [&alice, &bob] {
                wait_until(
                    &format!("{} no longer sees carol", p.name),
                    Duration::from_secs(3),
                    || {
                        let gone = !p.state()?.remote.iter().any(|r| r.id == carol_id);
                        Ok(if gone {
                            Check::Done(())
                        } else {
                            Check::NotYet("carol still listed".into())
                        })
                    },
                )?;
            }
            let dave = env.join(room, "dave", "")?;
            dave.wait_connected(CONNECT_TIMEOUT)?;
            all_see_and_hear_each_other(&[&alice, &bob, &dave])?;
            println!("relay: carol's leave and dave's join crossed bridges");
            Ok(())
        },
    );
}
