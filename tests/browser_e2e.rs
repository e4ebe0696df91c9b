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
use support::{Check, Env, Participant, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the simulcast test stays on a layer after switching to it.
const DWELL: Duration = Duration::from_secs(2);

/// Waits until `p` decodes video from, and hears, every participant in
/// `from` (name -> id): frames decoded and audio energy above zero and still
/// growing, and a non-zero audio level seen at least once (the fake
/// microphone beeps, so a level of zero means silence is arriving).
fn wait_receiving(
    p: &Participant,
    from: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    #[derive(Default)]
    struct Seen {
        first_frames: Option<u64>,
        first_energy: Option<f64>,
        frames: u64,
        energy: f64,
        max_level: f64,
        height: u32,
    }
    let mut seen: BTreeMap<&str, Seen> =
        from.keys().map(|n| (n.as_str(), Seen::default())).collect();
    let done = |s: &Seen| {
        s.first_frames.is_some_and(|f| s.frames > f)
            && s.first_energy.is_some_and(|e| s.energy > e)
            && s.max_level > 0.0
    };
    wait_until(
        &format!("{} receives video and audio from {:?}", p.name, from.keys()),
        timeout,
        || {
            let stats = p.stats()?;
            for (name, id) in from {
                let s = seen.get_mut(name.as_str()).context("name")?;
                let Some(peer) = stats.get(id) else { continue };
                if let Some(v) = &peer.video {
                    s.frames = v.frames_decoded;
                    s.height = v.frame_height;
                    if v.frames_decoded > 0 && s.first_frames.is_none() {
                        s.first_frames = Some(v.frames_decoded);
                    }
                }
                if let Some(a) = &peer.audio {
                    s.energy = a.total_audio_energy;
                    s.max_level = s.max_level.max(a.audio_level);
                    if a.total_audio_energy > 0.0 && s.first_energy.is_none() {
                        s.first_energy = Some(a.total_audio_energy);
                    }
                }
            }
            if seen.values().all(done) {
                return Ok(Check::Done(()));
            }
            let state: Vec<String> = seen
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{n}: frames {} (h {}), energy {:.4}, max level {:.4}",
                        s.frames, s.height, s.energy, s.max_level
                    )
                })
                .collect();
            Ok(Check::NotYet(format!(
                "{}; raw stats: {stats:?}",
                state.join("; ")
            )))
        },
    )?;
    for (n, s) in &seen {
        println!(
            "{} <- {n}: frames {} (h {}), audio energy {:.4}, max level {:.4}",
            p.name, s.frames, s.height, s.energy, s.max_level
        );
    }
    Ok(())
}

/// Everyone in `group` sees everyone else and receives their media.
fn all_see_and_hear_each_other(group: &[&Participant]) -> Result<()> {
    for p in group {
        let others: Vec<&str> = group
            .iter()
            .filter(|o| o.name != p.name)
            .map(|o| o.name.as_str())
            .collect();
        let ids = p.wait_sees(&others, CONNECT_TIMEOUT)?;
        wait_receiving(p, &ids, MEDIA_TIMEOUT)?;
    }
    Ok(())
}

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

/// What one participant got back, per other participant, after losing its
/// bridge: the time since the loss at which video frames were decoded again
/// (and kept coming) and audio was heard again.
#[derive(Debug, Default, Clone)]
struct Recovery {
    first_frames: Option<u64>,
    first_energy: Option<f64>,
    max_level: f64,
    video_at: Option<Duration>,
    audio_at: Option<Duration>,
}

impl Recovery {
    fn done(&self) -> Option<Duration> {
        Some(self.video_at?.max(self.audio_at?))
    }
}

/// Polls every participant in `group`, round robin, until each decodes
/// growing video from and hears every other one through a new session that
/// `rejoined` accepts, or `timeout` passes. Returns, per participant, when
/// it was back (measured from `since`) and its final state; a participant
/// that did not make it is missing from the map.
fn wait_recovered(
    group: &[&Participant],
    ids: &BTreeMap<String, String>,
    since: Instant,
    timeout: Duration,
    rejoined: impl Fn(&support::TernState) -> bool,
) -> Result<BTreeMap<String, (Duration, support::TernState)>> {
    let mut progress: BTreeMap<(String, String), Recovery> = BTreeMap::new();
    let mut back: BTreeMap<String, (Duration, support::TernState)> = BTreeMap::new();
    let mut last_seen: BTreeMap<String, String> = BTreeMap::new();
    while back.len() < group.len() && since.elapsed() < timeout {
        for p in group {
            if back.contains_key(&p.name) {
                continue;
            }
            let st = p.state()?;
            if !rejoined(&st) || st.pc != "connected" {
                last_seen.insert(
                    p.name.clone(),
                    format!(
                        "ws {} pc {} bridge {:?} reconnects {} attempts {} errors {:?}",
                        st.ws, st.pc, st.bridge, st.reconnects, st.reconnect_attempts, st.errors
                    ),
                );
                continue;
            }
            let stats = p.stats()?;
            let now = since.elapsed();
            let mut all = Some(Duration::ZERO);
            for other in group.iter().filter(|o| o.name != p.name) {
                let id = &ids[&other.name];
                let r = progress
                    .entry((p.name.clone(), other.name.clone()))
                    .or_default();
                if let Some(peer) = stats.get(id) {
                    if let Some(v) = &peer.video {
                        match r.first_frames {
                            None if v.frames_decoded > 0 => r.first_frames = Some(v.frames_decoded),
                            Some(f) if v.frames_decoded > f && r.video_at.is_none() => {
                                r.video_at = Some(now)
                            }
                            _ => {}
                        }
                    }
                    if let Some(a) = &peer.audio {
                        r.max_level = r.max_level.max(a.audio_level);
                        match r.first_energy {
                            None if a.total_audio_energy > 0.0 => {
                                r.first_energy = Some(a.total_audio_energy)
                            }
                            Some(e)
                                if a.total_audio_energy > e
                                    && r.max_level > 0.0
                                    && r.audio_at.is_none() =>
                            {
                                r.audio_at = Some(now)
                            }
                            _ => {}
                        }
                    }
                }
                all = match (all, r.done()) {
                    (Some(a), Some(d)) => Some(a.max(d)),
                    _ => None,
                };
            }
            match all {
                Some(at) => {
                    back.insert(p.name.clone(), (at, st));
                }
                None => {
                    let mine: Vec<String> = progress
                        .iter()
                        .filter(|((who, _), _)| who == &p.name)
                        .map(|((_, from), r)| format!("<- {from}: {r:?}"))
                        .collect();
                    last_seen.insert(
                        p.name.clone(),
                        format!(
                            "rejoined on {:?} (pc {}), media: {}",
                            st.bridge,
                            st.pc,
                            mine.join("; ")
                        ),
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in group {
        if !back.contains_key(&p.name) {
            println!(
                "{} not back after {:?}: {}",
                p.name,
                since.elapsed(),
                last_seen.get(&p.name).map(String::as_str).unwrap_or("?")
            );
        }
    }
    Ok(back)
}

/// The page's own view of what it sends: the track ids must survive a
/// reconnection (no second getUserMedia).
fn local_tracks(p: &Participant) -> Result<Vec<(String, Option<String>)>> {
    Ok(p.state()?
        .local
        .into_iter()
        .map(|s| (s.name, s.track_id))
        .collect())
}

/// A participant whose signalling socket drops (as on a network blip) joins
/// again on its own with the same camera and microphone tracks, and both
/// sides see and hear each other again. Works with either shape of `tern
/// dev`: behind the focus it re-joins through `/join` with its participant
/// id, on a standalone bridge through `/dev/token`.
#[test]
fn browser_participant_rejoins_on_its_own_when_its_signalling_socket_drops() {
    run_in_netns(
        "browser_participant_rejoins_on_its_own_when_its_signalling_socket_drops",
        |env| {
            let dev = env.start_bridge()?;
            let room = "e2e-drop";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            alice.wait_connected(CONNECT_TIMEOUT)?;
            bob.wait_connected(CONNECT_TIMEOUT)?;
            all_see_and_hear_each_other(&[&alice, &bob])?;
            let before = alice.state()?;
            let tracks = local_tracks(&alice)?;
            ensure!(
                tracks.len() == 2 && tracks.iter().all(|(_, id)| id.is_some()),
                "alice should send mic and camera: {tracks:?}"
            );

            alice.drop_signalling()?;
            let dropped = Instant::now();
            // Bob's view of alice: the same id behind a focus, a new one
            // (new /dev/token) on a standalone bridge; look her up by name.
            let alice_id = wait_until(
                "alice rejoined and bob sees her",
                Duration::from_secs(10),
                || {
                    let st = alice.state()?;
                    if st.reconnects < 1 || !st.joined {
                        return Ok(Check::NotYet(format!(
                            "alice: ws {} joined {} reconnects {}",
                            st.ws, st.joined, st.reconnects
                        )));
                    }
                    let id = st.participant_id.clone().context("alice id")?;
                    let b = bob.state()?;
                    if b.remote.iter().any(|r| r.id == id) {
                        Ok(Check::Done(id))
                    } else {
                        Ok(Check::NotYet(format!("bob sees {:?}", b.remote)))
                    }
                },
            )?;
            let bob_id = before
                .remote_named("bob")
                .context("alice knew bob")?
                .id
                .clone();
            let ids: BTreeMap<String, String> = [
                ("alice".to_string(), alice_id.clone()),
                ("bob".to_string(), bob_id),
            ]
            .into();
            let back = wait_recovered(
                &[&alice, &bob],
                &ids,
                dropped,
                Duration::from_secs(15),
                |st| st.joined,
            )?;
            for (name, (at, _)) in &back {
                println!(
                    "socket drop: {name} decodes and hears the other again {at:?} after the drop"
                );
            }
            ensure!(back.len() == 2, "not everyone got media back: {back:?}");
            let worst = back.values().map(|(at, _)| *at).max().unwrap_or_default();
            // The 5 s target is a benchmark figure (BENCHMARKS.md, "Recovery
            // times"); the test asserts recovery on its own, with room for a
            // slow, shared CI host.
            ensure!(
                worst <= Duration::from_secs(10),
                "media came back only {worst:?} after the drop (bound 10 s; target 5 s)"
            );

            let after = alice.state()?;
            ensure!(
                local_tracks(&alice)? == tracks,
                "alice's local tracks changed across the reconnection (a new getUserMedia?): {tracks:?} -> {:?}",
                after.local
            );
            ensure!(
                after.errors.is_empty(),
                "alice shows errors: {:?}",
                after.errors
            );
            ensure!(
                after.reconnects == 1,
                "alice reconnected {} times",
                after.reconnects
            );
            if dev.is_focus() {
                ensure!(
                    after.participant_id == before.participant_id,
                    "behind the focus alice keeps her id: {:?} -> {:?}",
                    before.participant_id,
                    after.participant_id
                );
            }
            // Nobody kept a ghost of the old session.
            let b = bob.state()?;
            ensure!(
                b.remote.len() == 1 && b.remote[0].id == alice_id,
                "bob should see exactly the new alice: {:?}",
                b.remote
            );
            Ok(())
        },
    );
}

/// Installs an in-page sampler (every 100 ms) that records, per remote id in
/// `others`, the wall-clock time (ms since the epoch; browsers and the test
/// share the machine's clock) at which video frames were decoded and kept
/// coming, and audio was heard, in a session not on bridge `left_bridge`.
/// Measuring in the page keeps WebDriver round trips out of the numbers.
fn start_recovery_monitor(p: &Participant, others: &[&String], left_bridge: &str) -> Result<()> {
    p.browser.execute(
        r#"
        const [others, leftBridge] = arguments;
        if (window.__recTimer) clearInterval(window.__recTimer);
        const rec = { per: {}, rejoinedAt: null, samples: 0, busy: false };
        for (const id of others) rec.per[id] = { firstFrames: null, firstEnergy: null, maxLevel: 0, videoAt: null, audioAt: null };
        window.__rec = rec;
        window.__recTimer = setInterval(async () => {
          if (rec.busy) return;
          rec.busy = true;
          try {
            const st = window.tern.state();
            if (!st.joined || !st.bridge || st.bridge === leftBridge || st.pc !== "connected") return;
            if (rec.rejoinedAt === null) rec.rejoinedAt = Date.now();
            const stats = await window.tern.stats();
            const now = Date.now();
            rec.samples++;
            for (const id of others) {
              const r = rec.per[id], s = stats[id] || {};
              if (s.video) {
                if (r.firstFrames === null) { if (s.video.framesDecoded > 0) r.firstFrames = s.video.framesDecoded; }
                else if (r.videoAt === null && s.video.framesDecoded > r.firstFrames) r.videoAt = now;
              }
              if (s.audio) {
                r.maxLevel = Math.max(r.maxLevel, s.audio.audioLevel);
                if (r.firstEnergy === null) { if (s.audio.totalAudioEnergy > 0) r.firstEnergy = s.audio.totalAudioEnergy; }
                else if (r.audioAt === null && s.audio.totalAudioEnergy > r.firstEnergy && r.maxLevel > 0) r.audioAt = now;
              }
            }
          } finally {
            rec.busy = false;
          }
        }, 100);
        "#,
        vec![json!(others), json!(left_bridge)],
    )?;
    Ok(())
}

/// What [`start_recovery_monitor`] saw: `(back_at_ms, rejoined_at_ms, raw)`
/// where `back_at_ms` (epoch ms) is set once video and audio from every
/// other participant are back.
fn read_recovery_monitor(p: &Participant) -> Result<(Option<f64>, Option<f64>, Value)> {
    let v = p.browser.execute("return window.__rec;", vec![])?;
    let per = v.get("per").and_then(Value::as_object).context("monitor")?;
    let mut back = Some(0.0f64);
    for r in per.values() {
        let at = |k: &str| r.get(k).and_then(Value::as_f64);
        back = match (back, at("videoAt"), at("audioAt")) {
            (Some(b), Some(v), Some(a)) => Some(b.max(v).max(a)),
            _ => None,
        };
    }
    let rejoined = v.get("rejoinedAt").and_then(Value::as_f64);
    Ok((back, rejoined, v))
}

/// Failover: three participants on one bridge; that bridge is killed with
/// SIGKILL (no `move`, no goodbye). Every participant notices, asks the
/// focus again (`/join` with its participant id), lands on the other bridge
/// and decodes video from and hears both others again within 5 s of the
/// kill, with no user action and the same local tracks.
/// Waits until `tern dev` printed both bridges and the focus lists both
/// online; returns the printed bridges.
fn wait_two_bridges_online(dev: &support::Bridge) -> Result<Vec<support::DevBridge>> {
    wait_until(
        "tern dev started two bridges and the focus lists both online",
        Duration::from_secs(30),
        || {
            let printed = dev.dev_bridges();
            let api = dev.api_bridges()?;
            let online = api
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|b| b.get("online").and_then(Value::as_bool) == Some(true))
                        .count()
                })
                .unwrap_or(0);
            if printed.len() >= 2 && online >= 2 {
                Ok(Check::Done(printed))
            } else {
                Ok(Check::NotYet(format!(
                    "printed {printed:?}; GET /api/bridges {api}"
                )))
            }
        },
    )
}

#[test]
fn browser_participants_reconnect_through_the_focus_when_their_bridge_is_killed() {
    run_in_netns(
        "browser_participants_reconnect_through_the_focus_when_their_bridge_is_killed",
        |env| {
            let dev = env.start_bridge()?;
            ensure!(
                dev.is_focus(),
                "`tern dev` answered GET /join with 404: it is the old single-bridge shape, \
                 this test needs the focus and two bridges"
            );
            // Somewhere to fail over to: both bridges started and registered.
            let bridges = wait_two_bridges_online(&dev)?;
            println!("bridges: {bridges:?}");

            let room = "e2e-failover";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let carol = env.join(room, "carol", "")?;
            let group = [&alice, &bob, &carol];
            let mut ids = BTreeMap::new();
            for p in group {
                ids.insert(p.name.clone(), p.wait_connected(CONNECT_TIMEOUT)?);
            }
            all_see_and_hear_each_other(&group)?;
            let mut first_bridge = None;
            let mut tracks = BTreeMap::new();
            for p in group {
                let st = p.state()?;
                ensure!(
                    st.mode.as_deref() == Some("focus"),
                    "{}: mode {:?}",
                    p.name,
                    st.mode
                );
                let b = st
                    .bridge
                    .clone()
                    .with_context(|| format!("{}: no bridge in state", p.name))?;
                match &first_bridge {
                    None => first_bridge = Some(b),
                    Some(f) => ensure!(
                        f == &b,
                        "one room should sit on one bridge: {} is on {b}, others on {f}",
                        p.name
                    ),
                }
                tracks.insert(p.name.clone(), local_tracks(p)?);
            }
            let doomed = first_bridge.context("no bridge")?;
            println!(
                "room {room} is on {doomed}; focus says: {}",
                dev.api_bridges()?
            );

            for p in group {
                let others: Vec<&String> = ids
                    .iter()
                    .filter(|(n, _)| **n != p.name)
                    .map(|(_, id)| id)
                    .collect();
                start_recovery_monitor(p, &others, &doomed)?;
            }
            let killed = dev.kill_bridge(&doomed)?;
            let killed_at = Instant::now();
            let killed_wall = std::time::SystemTime::now();
            let kill_ms = killed_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as f64)
                .unwrap_or(0.0);
            println!("killed {killed:?}");

            // Wait up to 30 s so a slow recovery still gets a number; the
            // target is 5 s, measured in the pages.
            let mut back: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            let mut last = BTreeMap::new();
            while back.len() < group.len() && killed_at.elapsed() < Duration::from_secs(30) {
                for p in group {
                    if back.contains_key(&p.name) {
                        continue;
                    }
                    let (at, rejoined, raw) = read_recovery_monitor(p)?;
                    if let Some(at) = at {
                        back.insert(
                            p.name.clone(),
                            (rejoined.unwrap_or(f64::NAN) - kill_ms, at - kill_ms),
                        );
                    } else {
                        last.insert(p.name.clone(), raw);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            for p in group {
                let st = p.state()?;
                match back.get(&p.name) {
                    Some((rejoined, at)) => println!(
                        "failover: {} media connected on {:?} {rejoined:.0} ms after the kill; video and audio from both others again {at:.0} ms after the kill ({} reconnect(s), {} attempt(s))",
                        p.name, st.bridge, st.reconnects, st.reconnect_attempts
                    ),
                    None => println!(
                        "failover: {} NOT back {:?} after the kill: {st:?}; monitor {}",
                        p.name,
                        killed_at.elapsed(),
                        last.get(&p.name).cloned().unwrap_or_default()
                    ),
                }
            }
            // Where the time went, from each client's log (browser and test
            // share the machine's clock).
            for p in group {
                let timeline = p.browser.execute(
                    r#"return window.tern.log()
                        .filter((l) => /session lost|connecting to|joined|offer sent|answer applied|pc (connected|failed)|slot \d+ ->/.test(l))
                        .map((l) => [Date.parse(l.slice(0, l.indexOf(" "))) - arguments[0], l.slice(l.indexOf(" ") + 1)])
                        .filter(([t]) => t >= 0)
                        .map(([t, l]) => `+${t} ms ${l.slice(0, 90)}`);"#,
                    vec![json!(kill_ms)],
                )?;
                let lines: Vec<&str> = timeline
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).take(12).collect())
                    .unwrap_or_default();
                println!("{} after the kill:\n  {}", p.name, lines.join("\n  "));
            }
            match dev.api_bridges() {
                Ok(v) => println!("focus after the kill: {v}"),
                Err(e) => println!("focus after the kill: GET /api/bridges failed: {e:#}"),
            }
            ensure!(
                back.len() == group.len(),
                "not everyone got media back within 30 s of the kill: back {:?}",
                back.keys().collect::<Vec<_>>()
            );
            let worst = back.values().map(|(_, at)| *at).fold(0.0, f64::max);
            // As above: 5 s is the target, measured in BENCHMARKS.md.
            ensure!(
                worst <= 10000.0,
                "media came back only {worst:.0} ms after the kill (bound 10 s; target 5 s)"
            );
            let survivors: Vec<&str> = bridges
                .iter()
                .filter(|b| b.id != doomed)
                .map(|b| b.id.as_str())
                .collect();
            for p in group {
                let st = &p.state()?;
                let now_on = st.bridge.as_deref().unwrap_or("");
                ensure!(
                    survivors.contains(&now_on),
                    "{} is on {now_on:?}, expected one of {survivors:?}",
                    p.name
                );
                ensure!(
                    st.reconnects >= 1,
                    "{}: reconnects {}",
                    p.name,
                    st.reconnects
                );
                ensure!(
                    st.errors.is_empty(),
                    "{} shows errors: {:?}",
                    p.name,
                    st.errors
                );
                ensure!(
                    st.participant_id.as_ref() == ids.get(&p.name),
                    "{} changed id: {:?} -> {:?}",
                    p.name,
                    ids.get(&p.name),
                    st.participant_id
                );
                ensure!(
                    local_tracks(p)? == tracks[&p.name],
                    "{}: local tracks changed across the failover (a new getUserMedia?)",
                    p.name
                );
            }
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

/// SIGTERM on a bridge under a focus means drain: the bridge tells its
/// participants to `move`, they re-join through the focus on the other bridge
/// by themselves, and the drained bridge exits.
#[test]
fn browser_participants_follow_move_when_their_bridge_drains_on_sigterm() {
    run_in_netns(
        "browser_participants_follow_move_when_their_bridge_drains_on_sigterm",
        |env| {
            let dev = env.start_bridge()?;
            ensure!(dev.is_focus(), "this test needs `tern dev` with a focus");
            wait_two_bridges_online(&dev)?;
            let room = "e2e-drain";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let group = [&alice, &bob];
            let mut ids = BTreeMap::new();
            for p in group {
                ids.insert(p.name.clone(), p.wait_connected(CONNECT_TIMEOUT)?);
            }
            all_see_and_hear_each_other(&group)?;
            let draining = alice.state()?.bridge.context("alice has no bridge")?;
            for p in group {
                let others: Vec<&String> = ids
                    .iter()
                    .filter(|(n, _)| **n != p.name)
                    .map(|(_, id)| id)
                    .collect();
                start_recovery_monitor(p, &others, &draining)?;
            }
            let signalled = dev.signal_bridge(&draining, "-TERM")?;
            let t = Instant::now();
            println!("SIGTERM to {signalled:?}");
            let mut back = BTreeMap::new();
            while back.len() < group.len() && t.elapsed() < Duration::from_secs(30) {
                for p in group {
                    if let (Some(at), _, _) = read_recovery_monitor(p)? {
                        back.entry(p.name.clone()).or_insert(at);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            ensure!(
                back.len() == group.len(),
                "not everyone got media back on another bridge: {:?}",
                back.keys().collect::<Vec<_>>()
            );
            println!("media back on the other bridge after {:?}", t.elapsed());
            for p in group {
                let st = p.state()?;
                ensure!(
                    st.bridge.as_deref().is_some_and(|b| b != draining),
                    "{} still on {:?}",
                    p.name,
                    st.bridge
                );
                ensure!(
                    st.reconnects >= 1,
                    "{}: reconnects {}",
                    p.name,
                    st.reconnects
                );
                ensure!(
                    st.errors.is_empty(),
                    "{} shows errors: {:?}",
                    p.name,
                    st.errors
                );
                ensure!(
                    st.participant_id.as_ref() == ids.get(&p.name),
                    "{} changed id",
                    p.name
                );
            }
            // The drained bridge leaves the cluster once it is empty.
            wait_until(
                "the drained bridge is gone",
                Duration::from_secs(15),
                || {
                    let api = dev.api_bridges()?;
                    let online = api
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .find(|b| b.get("id").and_then(Value::as_str) == Some(&draining))
                        })
                        .and_then(|b| b.get("online").and_then(Value::as_bool))
                        .unwrap_or(false);
                    Ok(if online {
                        Check::NotYet(api.to_string())
                    } else {
                        Check::Done(())
                    })
                },
            )?;
            Ok(())
        },
    );
}

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
