//! Browser participants when something under them fails: their signalling
//! socket drops, their bridge is killed, their bridge drains. Real Chromium
//! against `tern dev`, each test in its own network namespace (see
//! `support`); run with `cargo nextest run --test browser_recovery`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::{
    CONNECT_TIMEOUT, Check, Participant, all_see_and_hear_each_other, run_in_netns,
    wait_two_bridges_online, wait_until,
};

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
/// After a move to another bridge: `p` reconnected, shows no error, and is
/// still the same participant (`ids`: name -> id before the move).
fn moved_as_itself(
    p: &Participant,
    st: &support::TernState,
    ids: &BTreeMap<String, String>,
) -> Result<()> {
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
    Ok(())
}

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
/// `ids`: every participant's name -> id; `p` watches all the others.
fn start_recovery_monitor(
    p: &Participant,
    ids: &BTreeMap<String, String>,
    left_bridge: &str,
) -> Result<()> {
    let others: Vec<&String> = ids
        .iter()
        .filter(|(n, _)| **n != p.name)
        .map(|(_, id)| id)
        .collect();
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
                start_recovery_monitor(p, &ids, &doomed)?;
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
                moved_as_itself(p, st, &ids)?;
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
                start_recovery_monitor(p, &ids, &draining)?;
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
                moved_as_itself(p, &st, &ids)?;
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
