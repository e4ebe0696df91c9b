//! Interop with an independent WebRTC stack: a Python aiortc listener
//! (tests/interop/aiortc_listener.py, written from docs/signalling.md alone)
//! with 2 audio receive slots, against a real `tern bridge` and 4 native
//! talkers taking turns: each turn, the listener's slots carry the talker
//! within a second, the talker's packets arrive on that slot, and
//! `dominant_speaker` names the talker.
//!
//! Needs Python 3 with aiortc and websockets in a venv
//! (`scripts/install-test-deps.sh` makes it; `TERN_AIORTC_PYTHON` points at
//! another interpreter). Skips only when there is no `python3` at all.

mod native;
#[path = "interop/script.rs"]
mod script;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use native::SECRET;
use native::tern_process::TernCommand;
use script::{Script, aiortc_python};
use serde_json::Value;
use tern::auth::TokenKeys;
use tern::client::{Client, ClientOptions};
use tern_peer::Talk;
use tern_peer::synth::audio_tag;

const ROOM: &str = "interop";
const TALKERS: [&str; 4] = ["t1", "t2", "t3", "t4"];
/// Who speaks, in turn. The listener's 2 slots start on the first two to
/// join (nobody has spoken yet), so every turn is a talker without a slot:
/// t3 and t4, then t1 and t2 (displaced meanwhile), then t3 again.
const ORDER: [usize; 5] = [2, 3, 0, 1, 2];
const TURN: Duration = Duration::from_secs(3);
/// From the last talker's join to the first turn.
const LEAD: Duration = Duration::from_secs(2);
const SLOTS: usize = 2;
/// How long after a turn starts the listener's slots must carry the talker.
const SWITCH_WITHIN: f64 = 1.0;
/// How long after a turn starts `dominant_speaker` must name the talker.
const DOMINANT_WITHIN: f64 = 2.0;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Which source each mid carries at time `t`, from the `slots` messages.
fn slots_at(slots: &[Value], t: f64) -> Vec<(String, Option<String>)> {
    let mut now = Vec::new();
    for s in slots {
        if s[0].as_f64().expect("time") > t {
            break;
        }
        now = s[1]
            .as_object()
            .expect("mid map")
            .iter()
            .map(|(mid, src)| (mid.clone(), src.as_str().map(str::to_string)))
            .collect();
    }
    now
}

/// The mid carrying `source` at time `t`.
fn mid_of(slots: &[Value], t: f64, source: &str) -> Option<String> {
    slots_at(slots, t)
        .into_iter()
        .find(|(_, s)| s.as_deref() == Some(source))
        .map(|(mid, _)| mid)
}

/// RTP packets received on `mid` between `from` and `to` (getStats).
fn packets_between(stats: &[Value], mid: &str, from: f64, to: f64) -> u64 {
    let count_at = |t: f64| {
        stats
            .iter()
            .take_while(|s| s[0].as_f64().expect("time") <= t)
            .last()
            .and_then(|s| s[1][mid].as_u64())
            .unwrap_or(0)
    };
    count_at(to) - count_at(from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_listener_hears_whoever_speaks() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: no python3 on PATH; this test needs Python 3 with aiortc (scripts/install-test-deps.sh)"
        );
        return;
    }
    let python = aiortc_python();
    let probe = Command::new(&python)
        .args(["-c", "import aiortc, websockets"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "{} cannot import aiortc and websockets ({other:?}): run scripts/install-test-deps.sh \
             (or set TERN_AIORTC_PYTHON to a Python that has them)",
            python.display()
        ),
    }

    let bridge = TernCommand::new(&["bridge", "--dev-tokens"])
        .env("TERN_AUTH_SECRET", SECRET)
        .env("TERN_BRIDGE_HTTP_LISTEN", "\"127.0.0.1:0\"")
        .env("TERN_BRIDGE_MEDIA_LISTEN", "\"127.0.0.1:0\"")
        .env("TERN_LOG", "info,str0m=warn,dimpl=warn")
        .start();
    let http = bridge.addr_after("http://");

    let bridge = http.to_string();
    let slots = SLOTS.to_string();
    let mut listener = Script::start(
        "aiortc_listener.py",
        &[
            "--bridge", &bridge, "--room", ROOM, "--name", "listener", "--slots", &slots,
        ],
    )
    .expect("the aiortc listener starts");
    listener
        .wait_line("connected ", Duration::from_secs(60))
        .expect("the listener connects");

    // The talkers join; each is silent (digital silence) outside its turns.
    // A talk schedule counts from the talker's own start, so turns are
    // offset by when each joined.
    let keys = TokenKeys::new(SECRET);
    let first_turn_in = LEAD + Duration::from_millis(500) * TALKERS.len() as u32;
    let t0 = Instant::now();
    let t0_unix = unix_now();
    let turn_start = |k: usize| first_turn_in + TURN * k as u32;
    let mut talkers: Vec<Client> = Vec::new();
    for (i, name) in TALKERS.iter().enumerate() {
        let joined_at = t0.elapsed();
        let turns = ORDER
            .iter()
            .enumerate()
            .filter(|&(_, &who)| who == i)
            .map(|(k, _)| (turn_start(k) - joined_at, turn_start(k) + TURN - joined_at))
            .collect();
        let mut o = ClientOptions::new(http, keys.mint(ROOM, name, Some(name), 600));
        o.video = vec![];
        o.video_slots = 0;
        o.audio_slots = 1;
        o.seed = 1000 + i as u64;
        o.talk = Some(Talk { turns, quiet: 127 });
        let c = Client::connect(o)
            .await
            .unwrap_or_else(|e| panic!("{name} could not join: {e:#}"));
        talkers.push(c);
    }
    assert!(
        t0.elapsed() < first_turn_in,
        "talkers took {:?} to join",
        t0.elapsed()
    );
    let end = turn_start(ORDER.len()) + Duration::from_millis(500);
    tokio::time::sleep(end.saturating_sub(t0.elapsed())).await;
    let result = listener
        .finish(Duration::from_secs(30))
        .expect("the listener's result");
    drop(talkers);

    let slots = result["slots"].as_array().expect("slots");
    let stats = result["stats"].as_array().expect("stats");
    let dominant = result["dominant_speaker"]
        .as_array()
        .expect("dominant_speaker");
    let errors = result["errors"].as_array().expect("errors");
    assert!(errors.is_empty(), "errors from the bridge: {errors:?}");
    assert_eq!(result["mids"].as_array().map(Vec::len), Some(SLOTS));

    for (k, &who) in ORDER.iter().enumerate() {
        let name = TALKERS[who];
        let source = format!("{name}/mic");
        let from = t0_unix + turn_start(k).as_secs_f64();
        let to = from + TURN.as_secs_f64();
        // Speech moves it: no slot carried it just before its turn.
        assert_eq!(
            mid_of(slots, from - 0.05, &source),
            None,
            "turn {k}: {source} had a slot before its turn: {:?}",
            slots_at(slots, from - 0.05)
        );
        // When a slot first carries the talker during its turn.
        let switch = std::iter::once(from)
            .chain(
                slots
                    .iter()
                    .map(|s| s[0].as_f64().expect("time"))
                    .filter(|&t| t > from && t < to),
            )
            .find(|&t| mid_of(slots, t, &source).is_some());
        let Some(switch) = switch else {
            panic!(
                "turn {k}: no slot carried {source} during its turn; slots then: {:?}",
                slots_at(slots, to)
            );
        };
        let latency = switch - from;
        let mid = mid_of(slots, switch, &source).expect("found above");
        // Packets on that slot during the rest of the turn, from getStats
        // and from the talker's tag at the end of each payload.
        let packets = packets_between(stats, &mid, switch, to);
        let tag = format!("{:08x}", audio_tag(1000 + who as u64));
        let tagged = result["tags"][&mid]
            .as_array()
            .expect("tags of the mid")
            .iter()
            .filter(|p| {
                let t = p[0].as_f64().expect("time");
                t >= switch && t < to && p[1].as_str() == Some(tag.as_str())
            })
            .count();
        let named = dominant.iter().find(|d| {
            let t = d[0].as_f64().expect("time");
            t >= from && t < from + DOMINANT_WITHIN && d[1].as_str() == Some(name)
        });
        let named_after = named.map(|d| d[0].as_f64().expect("time") - from);
        eprintln!(
            "turn {k} {name}: slot {mid} after {latency:.2} s, {packets} packets ({tagged} with its tag), dominant after {named_after:.2?} s"
        );
        assert!(
            latency <= SWITCH_WITHIN,
            "turn {k}: {source} got a slot {latency:.2} s into its turn"
        );
        // 50 packets a second; most of the turn is left after the switch.
        let expect = ((to - switch) * 50.0 * 0.6) as u64;
        assert!(
            packets >= expect,
            "turn {k}: {packets} packets on slot {mid} carrying {source}, expected at least {expect}"
        );
        assert!(
            tagged as u64 >= expect,
            "turn {k}: {tagged} packets on slot {mid} with {name}'s tag {tag}, expected at least {expect}"
        );
        assert!(
            named.is_some(),
            "turn {k}: no dominant_speaker naming {name} within {DOMINANT_WITHIN} s of its turn: {dominant:?}"
        );
    }
}
