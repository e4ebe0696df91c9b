//! Recording (issue 21) on virtual time: a conference spread over two
//! relayed bridges recorded on one of them through the focus, with a join
//! and a leave while it runs. The files are the in-memory recordings
//! directory the simulator keeps per bridge (`SimBridge::recorded`); their
//! contents are synthetic VP8 and Opus-sized payloads, so what is checked
//! here is what was written where, when and from which layer; that real
//! media decodes is `record/tests/ffmpeg.rs`'s and the browser test's.

use std::time::Duration;

use serde_json::Value;
use tern_focus::{FocusConfig, FocusError, RecordingState, Strategy};
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn clean() -> LinkConfig {
    LinkConfig::latency(10)
}

fn cluster(seed: u64) -> Sim {
    let focus = FocusConfig {
        strategy: Strategy::RegionBased,
        ..FocusConfig::default()
    };
    let cfg = SimConfig::new(seed).with_focus(2, &["eu", "us"], focus);
    let mut sim = Sim::new(cfg);
    sim.run_until(secs(0.05));
    sim
}

/// A recorded file's blocks in file order: each one's time (ms) and frame.
/// Clusters (0x1F43B675, unknown size) carry a timestamp (0xE7), blocks
/// (0xA3) one relative to it.
fn blocks(file: &[u8]) -> Vec<(i64, &[u8])> {
    let mut out = Vec::new();
    let mut cluster = 0i64;
    let mut i = 0;
    while i + 4 <= file.len() {
        if file[i..i + 4] == [0x1F, 0x43, 0xB6, 0x75] {
            // Cluster, size 0x01FFFFFFFFFFFFFF (8 bytes), then its timestamp.
            let t = i + 12;
            if file.get(t) == Some(&0xE7) {
                let n = usize::from(file[t + 1] & 0x7f);
                cluster = file[t + 2..t + 2 + n]
                    .iter()
                    .fold(0i64, |a, &b| (a << 8) | i64::from(b));
                i = t + 2 + n;
                continue;
            }
        }
        if file[i] == 0xA3 {
            // Block: size (1-8 bytes, EBML), track 0x81, i16 time, flags.
            let lead = file[i + 1].leading_zeros() as usize + 1;
            if lead <= 8 && i + 1 + lead + 3 < file.len() {
                let mut size = u64::from(file[i + 1] & (0xff >> lead));
                for b in &file[i + 2..i + 1 + lead] {
                    size = (size << 8) | u64::from(*b);
                }
                let body = i + 1 + lead;
                let end = (body + size as usize).min(file.len());
                if file[body] == 0x81 {
                    let rel = i16::from_be_bytes([file[body + 1], file[body + 2]]);
                    out.push((cluster + i64::from(rel), &file[body + 4..end]));
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// The VP8 keyframes of a recorded file: each one's time (ms) and height
/// (a keyframe's frame tag has bit 0 clear, then the start code 9d 01 2a,
/// the 14-bit width and height, little-endian).
fn keyframes(file: &[u8]) -> Vec<(i64, u16)> {
    blocks(file)
        .into_iter()
        .filter(|(_, f)| f.len() >= 10 && f[0] & 1 == 0 && f[3..6] == [0x9d, 0x01, 0x2a])
        .map(|(t, f)| (t, u16::from_le_bytes([f[8], f[9]]) & 0x3fff))
        .collect()
}

fn block_times(file: &[u8]) -> Vec<i64> {
    blocks(file).into_iter().map(|(t, _)| t).collect()
}

/// For every frame of a recorded file that carries the synthetic sender's
/// block: where it was placed (ms) minus when it was captured on its
/// sender's clock (ms since the sender's generators started; audio and
/// video share that start).
fn placed_after_capture(file: &[u8]) -> Vec<f64> {
    blocks(file)
        .into_iter()
        .filter_map(|(t, frame)| {
            let b = tern_peer::synth::read_block(frame)?;
            Some(t as f64 - b.sent_us as f64 / 1000.0)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no frames");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn file_entry<'a>(meta: &'a Value, participant: &str, kind: &str) -> &'a Value {
    meta["files"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .find(|f| f["participant"] == participant && f["kind"] == kind)
        })
        .unwrap_or_else(|| panic!("no {kind} file of {participant} in {meta:#}"))
}

fn ms(v: &Value) -> f64 {
    v.as_i64().unwrap_or_else(|| panic!("not a time: {v}")) as f64 / 1000.0
}

#[test]
fn a_conference_over_two_bridges_is_recorded_whole_on_one_with_joins_and_leaves() {
    with_seed(seed_or(21), |seed| {
        let mut sim = cluster(seed);
        // Everyone watches thumbnails: the 720p layers only the recording
        // wants must still come from the publishers (sender constraints)
        // and across the relay (demand).
        for (name, region) in [("a", "eu"), ("b", "eu"), ("c", "us")] {
            let i = sim.add_peer_in(Some(region), name, |_| {}, clean(), clean());
            sim.set_max_height(i, None, 180);
        }
        sim.run_until(secs(3.0));
        // Nobody connected to a conference yet: a precise refusal.
        assert!(matches!(
            sim.start_recording("nobody-here"),
            Err(FocusError::UnknownConference(_))
        ));
        let started = sim.start_recording("sim").expect("start");
        let eu = sim.bridge_of("a");
        assert_eq!(
            started.bridge, sim.bridges[eu].id,
            "recorded where most participants are"
        );
        // One recording per conference at a time.
        match sim.start_recording("sim") {
            Err(FocusError::AlreadyRecording { id, .. }) => assert_eq!(id, started.id),
            other => panic!("a second start: {other:?}"),
        }
        sim.run_until(secs(6.0));
        // d joins on the other bridge, c leaves.
        let d = sim.add_peer_in(Some("us"), "d", |_| {}, clean(), clean());
        sim.set_max_height(d, None, 180);
        sim.run_until(secs(9.0));
        let c = sim.peer_index("c");
        sim.leave(c);
        sim.run_until(secs(12.0));
        // Every page says the meeting is recorded, on either bridge, d
        // (who joined on the other bridge after the start) included.
        for p in ["a", "b", "d"] {
            assert_eq!(
                sim.state(p).recording.as_deref(),
                Some(started.id.as_str()),
                "{p} is told"
            );
        }
        let active = sim.recordings(Some("sim"));
        assert_eq!(active[0].state, RecordingState::Active, "{active:?}");
        assert!(
            active[0].files >= 8,
            "four people's audio and video so far: {active:?}"
        );
        let stopped = sim.stop_recording("sim").expect("stop");
        assert_eq!(stopped.state, RecordingState::Stopped);
        assert!(matches!(
            sim.stop_recording("sim"),
            Err(FocusError::NotRecording(_))
        ));
        sim.run_until(secs(13.0));
        for p in ["a", "b", "d"] {
            assert_eq!(sim.state(p).recording, None, "{p} is told it ended");
        }

        let rec = &sim.bridges[eu].recorded;
        assert_eq!(rec.misordered, 0);
        let other = &sim.bridges[1 - eu].recorded;
        assert!(other.files.is_empty(), "only one bridge writes");
        let meta: Value =
            serde_json::from_str(&rec.metadata[&started.id]).expect("metadata is JSON");
        assert!(meta["ended_ms"].is_i64(), "{meta:#}");
        // Every file written is closed and listed; its frames are in it.
        let files = meta["files"].as_array().expect("files");
        assert_eq!(files.len(), 8, "{meta:#}");
        for f in files {
            let name = f["file"].as_str().expect("name");
            let key = (started.id.clone(), name.to_string());
            assert!(rec.closed.contains(&key), "{name} closed");
            assert_eq!(
                rec.files[&key].len() as u64,
                f["bytes"].as_u64().expect("bytes"),
                "{name}: what the metadata says is what was written"
            );
        }
        // Presence and tracks follow who was there (within 0.5 s), and
        // video was recorded at the top layer throughout, including the
        // remote participants' (the relay brought their 720p).
        let span = |p: &str| -> (f64, f64) {
            match p {
                // Recording from 3 s to 12 s; c leaves at 9 s, d joins at 6 s.
                "a" | "b" => (0.0, 9.0),
                "c" => (0.0, 6.0),
                _ => (3.0, 9.0),
            }
        };
        for p in ["a", "b", "c", "d"] {
            let (from, to) = span(p);
            let stay = meta["participants"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["participant"] == p))
                .unwrap_or_else(|| panic!("{p} present in {meta:#}"));
            assert!((ms(&stay["joined_ms"]) - from).abs() <= 0.5, "{p}: {stay}");
            assert!((ms(&stay["left_ms"]) - to).abs() <= 0.5, "{p}: {stay}");
            for kind in ["video", "audio"] {
                let f = file_entry(&meta, p, kind);
                let dur = ms(&f["ended_ms"]) - ms(&f["started_ms"]);
                assert!(
                    (dur - (to - from)).abs() <= 0.7,
                    "{p} {kind} lasts {dur:.2} s of {:.1}: {f}",
                    to - from
                );
                let per_s = if kind == "video" { 30.0 } else { 50.0 };
                let frames = f["frames"].as_f64().expect("frames");
                assert!(
                    frames >= 0.85 * per_s * (to - from),
                    "{p} {kind}: {frames} frames in {:.1} s",
                    to - from
                );
            }
            let video = file_entry(&meta, p, "video")["file"]
                .as_str()
                .expect("name");
            let bytes = &rec.files[&(started.id.clone(), video.to_string())];
            let times = block_times(bytes);
            assert!(times.len() > 100, "{p}: {} blocks found", times.len());
            // The picture starts with the participant (within 0.5 s of
            // its presence here; d's camera may come first: its presence
            // is when this bridge heard of it across the relay).
            let joined = stay["joined_ms"].as_i64().expect("joined");
            assert!(
                (times[0] - joined).abs() <= 500,
                "{p}: present from {joined} ms, video from {} ms",
                times[0]
            );
            assert!(
                times.windows(2).all(|w| w[1] > w[0]),
                "{p}: block times must increase: {:?}",
                times.windows(2).find(|w| w[1] <= w[0])
            );
            // It begins at whichever layer's keyframe came first and is at
            // 720p within a second, for good.
            let keys = keyframes(bytes);
            let top = keys
                .iter()
                .position(|&(_, h)| h == 720)
                .unwrap_or_else(|| panic!("{p}: never 720p: {keys:?}"));
            assert!(keys[top].0 - times[0] <= 1_000, "{p}: {keys:?}");
            assert!(keys[top..].iter().all(|&(_, h)| h == 720), "{p}: {keys:?}");
        }
    });
}

#[test]
fn a_write_that_fails_stops_the_recording_and_the_focus_says_why() {
    with_seed(seed_or(22), |seed| {
        let mut sim = cluster(seed);
        for name in ["a", "b"] {
            sim.add_peer_in(Some("eu"), name, |_| {}, clean(), clean());
        }
        sim.run_until(secs(2.0));
        let r = sim.start_recording("sim").expect("start");
        sim.run_until(secs(4.0));
        let b = sim.bridge_of("a");
        sim.give_node(
            b,
            tern_sfu::node::Input::RecordingFailed {
                room: "sim".into(),
                id: r.id.clone(),
                error: "No space left on device (os error 28)".into(),
            },
        );
        let written = sim.bridges[b]
            .recorded
            .files
            .values()
            .map(Vec::len)
            .sum::<usize>();
        assert!(written > 0, "it was writing");
        // The bridge reports once a second.
        sim.run_until(secs(6.0));
        let now = &sim.recordings(Some("sim"))[0];
        assert_eq!(now.state, RecordingState::Failed, "{now:?}");
        let why = now.error.as_deref().unwrap_or_default();
        assert!(why.contains("No space left on device"), "{why}");
        // It stopped cleanly: every file closed, nothing written since.
        let rec = &sim.bridges[b].recorded;
        let after = rec.files.values().map(Vec::len).sum::<usize>();
        assert!(after >= written);
        assert_eq!(rec.closed.len(), rec.files.len(), "every file closed");
        // The conference can be recorded again.
        let again = sim.start_recording("sim").expect("a new recording");
        assert_ne!(again.id, r.id);
    });
}

#[test]
fn a_recording_fails_with_its_bridge_and_carries_on_where_the_meeting_goes_on() {
    with_seed(seed_or(23), |seed| {
        let mut sim = cluster(seed);
        sim.add_peer_in(Some("eu"), "a", |_| {}, clean(), clean());
        sim.add_peer_in(Some("us"), "b", |_| {}, clean(), clean());
        sim.run_until(secs(2.0));
        let r = sim.start_recording("sim").expect("start");
        let b = sim
            .bridges
            .iter()
            .position(|x| x.id == r.bridge)
            .expect("its bridge");
        sim.run_until(secs(3.0));
        sim.kill_bridge(b);
        sim.run_until(secs(4.0));
        let list = sim.recordings(Some("sim"));
        let failed = list.iter().find(|x| x.id == r.id).expect("listed");
        assert_eq!(failed.state, RecordingState::Failed, "{failed:?}");
        assert!(
            failed
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("failed"),
            "{failed:?}"
        );
        // The meeting goes on on the other bridge, and so does its recording.
        let next = &list[0];
        assert_eq!(next.state, RecordingState::Active, "{list:?}");
        assert_eq!(next.continues.as_deref(), Some(r.id.as_str()));
        assert_eq!(next.bridge, sim.bridges[1 - b].id);
    });
}

#[test]
fn a_publishers_audio_and_video_are_placed_as_captured_though_its_video_arrives_later() {
    with_seed(seed_or(24), |seed| {
        let mut sim = cluster(seed);
        // a and c encode video 300 ms after capture (their audio leaves at
        // once); c is on the other bridge, so its sender reports must come
        // across the relay.
        let slow = |c: &mut tern_peer::PeerConfig| c.video_latency = Duration::from_millis(300);
        sim.add_peer_in(Some("eu"), "a", slow, clean(), clean());
        sim.add_peer_in(Some("eu"), "b", |_| {}, clean(), clean());
        sim.add_peer_in(Some("us"), "c", slow, LinkConfig::latency(40), clean());
        sim.run_until(secs(2.0));
        let started = sim.start_recording("sim").expect("start");
        let eu = sim.bridge_of("a");
        assert_eq!(started.bridge, sim.bridges[eu].id);
        sim.run_until(secs(12.0));
        sim.stop_recording("sim").expect("stop");
        sim.run_until(secs(13.0));
        let rec = &sim.bridges[eu].recorded;
        let meta: Value =
            serde_json::from_str(&rec.metadata[&started.id]).expect("metadata is JSON");
        let file = |p: &str, kind: &str| -> &Vec<u8> {
            let f = file_entry(&meta, p, kind);
            assert_eq!(f["timing"], "sender_reports", "{p} {kind}: {f}");
            let name = f["file"].as_str().expect("name");
            &rec.files[&(started.id.clone(), name.to_string())]
        };
        for p in ["a", "b", "c"] {
            let audio = median(placed_after_capture(file(p, "audio")));
            let video = median(placed_after_capture(file(p, "video")));
            // Placed by arrival, a's and c's video would be 300 ms late.
            assert!(
                (video - audio).abs() <= 10.0,
                "{p}: audio placed {audio:.1} ms after its capture, video {video:.1} ms"
            );
        }
    });
}

#[test]
fn a_publisher_whose_clocks_disagree_is_placed_by_arrival_and_the_others_are_not() {
    with_seed(seed_or(25), |seed| {
        let mut sim = cluster(seed);
        // a's video sender reports run 10 s behind its audio's.
        let broken = |c: &mut tern_peer::PeerConfig| c.video_clock_behind = Duration::from_secs(10);
        sim.add_peer_in(Some("eu"), "a", broken, clean(), clean());
        sim.add_peer_in(Some("eu"), "b", |_| {}, clean(), clean());
        sim.run_until(secs(2.0));
        let started = sim.start_recording("sim").expect("start");
        let eu = sim.bridge_of("a");
        sim.run_until(secs(8.0));
        sim.stop_recording("sim").expect("stop");
        sim.run_until(secs(9.0));
        let rec = &sim.bridges[eu].recorded;
        let meta: Value =
            serde_json::from_str(&rec.metadata[&started.id]).expect("metadata is JSON");
        let timing = |p: &str, kind: &str| file_entry(&meta, p, kind)["timing"].clone();
        // Whichever of a's tracks was placed first set its offset; the
        // other, 10 s off it, is placed by arrival (and still recorded).
        let a = [timing("a", "audio"), timing("a", "video")];
        assert!(
            a.contains(&Value::from("arrival")) && a.contains(&Value::from("sender_reports")),
            "{a:?}"
        );
        for kind in ["audio", "video"] {
            assert_eq!(timing("b", kind), "sender_reports");
            let f = file_entry(&meta, "a", kind);
            assert!(f["frames"].as_u64().unwrap_or(0) > 100, "{f}");
        }
        assert_eq!(sim.core_of(eu).stats().recording_tracks_by_arrival, 1);
    });
}

#[test]
fn a_recording_carries_on_on_the_other_bridge_when_its_bridge_empties() {
    with_seed(seed_or(26), |seed| {
        let mut sim = cluster(seed);
        for (name, region) in [("a", "eu"), ("b", "eu"), ("c", "us")] {
            sim.add_peer_in(Some(region), name, |_| {}, clean(), clean());
        }
        sim.run_until(secs(3.0));
        let first = sim.start_recording("sim").expect("start");
        let eu = sim.bridge_of("a");
        let us = sim.bridge_of("c");
        assert_eq!(first.bridge, sim.bridges[eu].id);
        sim.run_until(secs(6.0));
        // Everyone on the recording bridge leaves; c goes on.
        for p in ["a", "b"] {
            let i = sim.peer_index(p);
            sim.leave(i);
        }
        sim.run_until(secs(12.0));
        let list = sim.recordings(Some("sim"));
        assert_eq!(list.len(), 2, "{list:?}");
        let (next, old) = (&list[0], &list[1]);
        assert_eq!(old.state, RecordingState::Stopped, "{list:?}");
        assert_eq!(next.state, RecordingState::Active, "{list:?}");
        assert_eq!(next.bridge, sim.bridges[us].id);
        assert_eq!(next.continues.as_deref(), Some(first.id.as_str()));
        // c's page says recorded throughout: now the new recording.
        assert_eq!(sim.state("c").recording.as_deref(), Some(next.id.as_str()));
        sim.stop_recording("sim").expect("stop");
        sim.run_until(secs(13.0));
        // The us bridge wrote c's audio and video from the hand-over on.
        let rec = &sim.bridges[us].recorded;
        let meta: Value = serde_json::from_str(&rec.metadata[&next.id]).expect("metadata");
        for kind in ["audio", "video"] {
            let f = file_entry(&meta, "c", kind);
            let dur = ms(&f["ended_ms"]) - ms(&f["started_ms"]);
            assert!(dur >= 4.0, "c's {kind} from the hand-over to the stop: {f}");
        }
        assert_eq!(sim.state("c").recording, None);
    });
}

/// A recorded camera whose frame is lost for good (its publisher's uplink
/// loses half its packets for 1.5 s, more than retransmission repairs in
/// time) stands still only until the keyframe the bridge asks for: the top
/// layer is wanted by the recording alone (everyone watches thumbnails),
/// so no receiver would ask, and the publisher's own next keyframe is
/// seconds away.
#[test]
fn a_recorded_camera_that_loses_a_frame_for_good_asks_for_a_keyframe_itself() {
    with_seed(seed_or(31), |seed| {
        let mut sim = cluster(seed);
        for name in ["a", "b"] {
            let i = sim.add_peer_in(Some("eu"), name, |_| {}, clean(), clean());
            sim.set_max_height(i, None, 180);
        }
        sim.run_until(secs(2.0));
        let started = sim.start_recording("sim").expect("start");
        let a = sim.peer_index("a");
        sim.run_until(secs(4.0));
        sim.set_uplink(
            a,
            LinkConfig {
                loss: 0.5,
                ..clean()
            },
        );
        sim.run_until(secs(5.5));
        sim.set_uplink(a, clean());
        sim.run_until(secs(8.0));
        sim.stop_recording("sim").expect("stop");
        sim.run_until(secs(9.0));
        let eu = sim.bridge_of("a");
        let rec = &sim.bridges[eu].recorded;
        let meta: Value =
            serde_json::from_str(&rec.metadata[&started.id]).expect("metadata is JSON");
        let f = file_entry(&meta, "a", "video");
        let name = f["file"].as_str().expect("name").to_string();
        let times = block_times(&rec.files[&(started.id.clone(), name)]);
        // Recording from 2 s: the loss from 2.0 s into it to 3.5 s.
        let gaps: Vec<(i64, i64)> = times
            .windows(2)
            .map(|w| (w[0], w[1] - w[0]))
            .filter(|(_, d)| *d > 300)
            .collect();
        eprintln!(
            "a's video: {} frames, gaps over 300 ms: {gaps:?}",
            times.len()
        );
        // It stood still (the loss was not all repaired) and went on within
        // half a second of the loss's end, to the end of the recording.
        // Without asking, it stopped at the first frame lost for good: the
        // publisher's next keyframe was due after the recording ended.
        assert!(!gaps.is_empty(), "a frame was lost for good");
        assert!(
            gaps.iter().all(|(at, d)| at + d <= 4_000),
            "a's camera file resumed over 0.5 s after the loss ended: {gaps:?}"
        );
        let last = times.last().copied().unwrap_or(0);
        assert!(last >= 5_500, "written to the end: {last} ms");
    });
}
