//! Bandwidth-driven allocation seen from real Chromium browsers: a receiver
//! behind a slow link gets a lower simulcast layer (and, when even the lowest
//! does not fit, a tile that says so), and a bridge's camera cap lowers what
//! Chromium encodes (`send_limits`, docs/signalling.md).
//!
//! The slow link: everything in the test's namespace talks over `lo`, so the
//! receiver's downlink is shaped there. An HTB class with the chosen rate
//! (and a short byte FIFO, ~0.4 s of queue) takes every UDP packet sent to
//! the receiver's own media port (read from its selected ICE candidate
//! pair); all other traffic on `lo` goes through an unlimited default class.
//! netem is missing on this kernel (shared/reference/machine.md), HTB and a
//! u32 filter are not.
//!
//! Same harness and requirements as tests/browser_e2e.rs: root,
//! `scripts/install-test-deps.sh`; `cargo nextest run --test browser_bandwidth`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use support::tern_process::TernCommand;
use support::{Check, Env, Participant, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Long enough for Chromium's send-side estimate to ramp up to the 720p
/// layer on a loaded two-core machine.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(45);
/// The shaped downlink of test a: the 180p layer and audio fit, 360p
/// (up to 500 kbps) and 720p do not.
const SLOW_LINK_KBIT: u32 = 450;
/// How long the bridge may take to fit the receiver onto the slow link.
const DOWNSWITCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest the receiver's video may stand still, on the slow link.
const MAX_STALL_MS: f64 = 2000.0;
/// The camera cap of test b, and how far above it Chromium may send
/// (payload bytes; encoders overshoot for a moment after keyframes).
const CAMERA_CAP_KBPS: u64 = 200;
const CAP_TOLERANCE: f64 = 1.3;

// ---------------------------------------------------------------------------
// The shaped link
// ---------------------------------------------------------------------------

/// An HTB root on `lo` that limits UDP to one port; removed on drop. Only
/// one exists at a time (the root qdisc of `lo` in this test's namespace).
struct Shaper {
    port: u16,
}

const SHAPED_CLASS: &str = "1:20";

fn tc(args: &[&str]) -> Result<String> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .with_context(|| format!("running tc {args:?}"))?;
    ensure!(
        out.status.success(),
        "tc {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Shaper {
    /// From now on UDP to 127.0.0.1:`port` leaves `lo` at `kbit` kbit/s.
    fn limit(port: u16, kbit: u32) -> Result<Shaper> {
        tc(&[
            "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10",
        ])?;
        // From here on Drop removes the root again.
        let shaper = Shaper { port };
        tc(&[
            "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate",
            "10gbit", "quantum", "200000",
        ])?;
        let rate = format!("{kbit}kbit");
        tc(&[
            "class",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "classid",
            SHAPED_CLASS,
            "htb",
            "rate",
            &rate,
            "ceil",
            &rate,
            "burst",
            "4kb",
        ])?;
        // ~0.4 s of queue at 450 kbit/s: congestion shows as delay, then loss,
        // as on a real access link (the default FIFO of 1000 packets would
        // queue for half a minute).
        tc(&[
            "qdisc",
            "add",
            "dev",
            "lo",
            "parent",
            SHAPED_CLASS,
            "handle",
            "20:",
            "bfifo",
            "limit",
            "24000",
        ])?;
        tc(&[
            "filter",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "protocol",
            "17",
            "0xff",
            "match",
            "ip",
            "dport",
            &port.to_string(),
            "0xffff",
            "flowid",
            SHAPED_CLASS,
        ])?;
        Ok(shaper)
    }

    fn set_rate(&self, kbit: u32) -> Result<()> {
        let rate = format!("{kbit}kbit");
        tc(&[
            "class",
            "change",
            "dev",
            "lo",
            "parent",
            "1:",
            "classid",
            SHAPED_CLASS,
            "htb",
            "rate",
            &rate,
            "ceil",
            &rate,
            "burst",
            "4kb",
        ])?;
        Ok(())
    }

    /// (bytes, packets, dropped) that went through the shaped class.
    fn counters(&self) -> Result<(u64, u64, u64)> {
        let text = tc(&["-s", "class", "show", "dev", "lo", "classid", SHAPED_CLASS])?;
        // " Sent 1905228 bytes 1534 pkt (dropped 1318, overlimits ..."
        let words: Vec<&str> = text.split_whitespace().collect();
        let after = |key: &str| -> Option<u64> {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.trim_end_matches(',').parse().ok()
        };
        let bytes = after("Sent").with_context(|| format!("tc class stats: {text}"))?;
        let packets = words
            .iter()
            .position(|w| *w == "pkt")
            .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
            .with_context(|| format!("tc class stats: {text}"))?;
        let dropped = after("(dropped").unwrap_or(0);
        Ok((bytes, packets, dropped))
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if let Err(e) = tc(&["qdisc", "del", "dev", "lo", "root"]) {
            eprintln!("warning: removing the shaper for port {}: {e:#}", self.port);
        }
    }
}

// ---------------------------------------------------------------------------
// What the pages report
// ---------------------------------------------------------------------------

/// The local UDP port of `p`'s selected ICE candidate pair (where the
/// bridge sends its media), and a description for the log.
fn media_port(p: &Participant) -> Result<(u16, Value)> {
    let v = p.browser.eval(
        "(async () => {\n\
           const r = await window.tern.pc().getStats();\n\
           let pair = null;\n\
           r.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId); });\n\
           if (!pair) r.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });\n\
           if (!pair) return null;\n\
           const l = r.get(pair.localCandidateId), m = r.get(pair.remoteCandidateId);\n\
           return { port: l.port, local: `${l.address}:${l.port}`, remote: `${m.address}:${m.port}`, protocol: l.protocol };\n\
         })()",
    )?;
    let port = v
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("{}: no selected candidate pair: {v}", p.name))?;
    ensure!(
        v["protocol"] == json!("udp"),
        "{}: media is not on UDP: {v}",
        p.name
    );
    Ok((port, v))
}

/// The receive slot (mid) that carries `publisher`'s camera for `p`, once
/// frames from it are decoded at a height `ok` accepts.
fn wait_height(
    p: &Participant,
    publisher: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(u32) -> bool,
) -> Result<(String, u32)> {
    let mut last_frames = 0;
    wait_until(what, timeout, || {
        let stats = p.stats()?;
        let Some(v) = stats.get(publisher).and_then(|s| s.video.clone()) else {
            return Ok(Check::NotYet(format!(
                "no video from {publisher}: {stats:?}"
            )));
        };
        // Fresh frames at that height, not a stale last value.
        let fresh = v.frames_decoded > last_frames;
        last_frames = v.frames_decoded;
        if fresh && ok(v.frame_height) {
            Ok(Check::Done((v.mid.clone(), v.frame_height)))
        } else {
            Ok(Check::NotYet(format!(
                "{}x{} after {} frames",
                v.frame_width, v.frame_height, v.frames_decoded
            )))
        }
    })
}

/// Starts sampling slot `mid`'s inbound-rtp every 100 ms in the page: the
/// longest time framesDecoded stood still and the heights seen, since the
/// last [`reset_monitor`]. Read with [`read_monitor`].
fn start_monitor(p: &Participant, mid: &str) -> Result<()> {
    p.browser.execute(
        r#"
        const mid = arguments[0];
        if (window.__bwTimer) clearInterval(window.__bwTimer);
        const m = { mid, frames: -1, lastChange: performance.now(), maxGap: 0, samples: 0, heights: {}, height: 0, busy: false };
        window.__bw = m;
        window.__bwTimer = setInterval(async () => {
          if (m.busy) return;
          m.busy = true;
          try {
            const s = (await window.tern.slotStats([m.mid]))[0];
            const now = performance.now();
            if (!s) return;
            m.samples++;
            if (s.framesDecoded !== m.frames) { m.frames = s.framesDecoded; m.lastChange = now; }
            m.maxGap = Math.max(m.maxGap, now - m.lastChange);
            m.height = s.frameHeight;
            m.heights[s.frameHeight] = (m.heights[s.frameHeight] || 0) + 1;
          } finally {
            m.busy = false;
          }
        }, 100);
        "#,
        vec![json!(mid)],
    )?;
    Ok(())
}

/// Starts a new measuring period of the monitor (the frame counter carries on).
fn reset_monitor(p: &Participant) -> Result<()> {
    p.browser.execute(
        "const m = window.__bw; m.maxGap = 0; m.samples = 0; m.heights = {}; m.lastChange = performance.now();",
        vec![],
    )?;
    Ok(())
}

#[derive(Debug)]
struct Monitor {
    max_gap_ms: f64,
    samples: u64,
    frames: u64,
    height: u32,
    /// Height -> samples at it, this period.
    heights: BTreeMap<u32, u64>,
}

fn read_monitor(p: &Participant) -> Result<Monitor> {
    let v = p.browser.execute(
        "const m = window.__bw; return { maxGap: m.maxGap, samples: m.samples, frames: m.frames, height: m.height, heights: m.heights };",
        vec![],
    )?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("monitor: {k} in {v}"))
    };
    let heights = v
        .get("heights")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(h, n)| Some((h.parse().ok()?, n.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Monitor {
        max_gap_ms: num("maxGap")?,
        samples: num("samples")? as u64,
        frames: num("frames")?.max(0.0) as u64,
        height: num("height")? as u32,
        heights,
    })
}

/// One camera encoding as publishStats() reports it.
#[derive(Debug, Clone, Copy, Default)]
struct Encoding {
    bytes_sent: u64,
    frames_encoded: u64,
    frame_height: u64,
    /// What the client set with setParameters (None: no limit).
    max_bitrate: Option<u64>,
}

/// `p`'s outbound camera per encoding (rid, or "-" without simulcast).
fn encodings(p: &Participant) -> Result<BTreeMap<String, Encoding>> {
    let v = p.publish_stats()?;
    let list = v.as_array().with_context(|| format!("publishStats: {v}"))?;
    Ok(list
        .iter()
        .filter(|e| e["source"] == json!("camera"))
        .map(|e| {
            (
                e["rid"].as_str().unwrap_or("-").to_string(),
                Encoding {
                    bytes_sent: e["bytesSent"].as_u64().unwrap_or(0),
                    frames_encoded: e["framesEncoded"].as_u64().unwrap_or(0),
                    frame_height: e["frameHeight"].as_u64().unwrap_or(0),
                    max_bitrate: e["maxBitrate"].as_u64(),
                },
            )
        })
        .collect())
}

/// What each camera encoding of `p` sent over `window`: rid -> (kbit/s of
/// payload, frames encoded, last frame height).
fn measure_send_rates(
    p: &Participant,
    window: Duration,
) -> Result<BTreeMap<String, (f64, u64, u64)>> {
    let before = encodings(p)?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after = encodings(p)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut out = BTreeMap::new();
    for (rid, e) in &after {
        let e0 = before.get(rid).copied().unwrap_or_default();
        let kbps = e.bytes_sent.saturating_sub(e0.bytes_sent) as f64 * 8.0 / secs / 1000.0;
        out.insert(
            rid.clone(),
            (
                kbps,
                e.frames_encoded.saturating_sub(e0.frames_encoded),
                e.frame_height,
            ),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// a. A receiver behind a slow link
// ---------------------------------------------------------------------------

#[test]
// Ignored from 2026-12-03 to 12-04: on a loaded host the unshaped control's
// estimate fell below 720p and stayed there. The start-up probes were being
// voided by the first forwarded keyframe (patches/README.md, the pacer
// patch); with that fixed and a 1 Mbit/s start it passed 4 of 4 runs beside
// a fuzzer on the other core.
fn browser_receiver_behind_a_slow_link_gets_a_lower_layer_and_keeps_decoding() {
    run_in_netns(
        "browser_receiver_behind_a_slow_link_gets_a_lower_layer_and_keeps_decoding",
        |env: &Env| {
            env.start_bridge()?;
            let room = "bw-slow-link";
            // Both ask for 720p (the client's default is 360p); the publisher
            // sends the client's default simulcast, 180/360/720. The receiver
            // is there first: a publisher alone is told to send nothing after
            // 3 s, and once (publisher alone ~4 s) the bridge then told it
            // "up to 360p" and never offered 720p again (stuck for 45 s);
            // that is not what this test is about.
            let receiver = env.join(room, "sub", "maxh=720")?;
            receiver.wait_connected(CONNECT_TIMEOUT)?;
            let publisher = env.join(room, "pub", "maxh=720")?;
            publisher.wait_connected(CONNECT_TIMEOUT)?;
            let pub_id = receiver
                .wait_sees(&["pub"], CONNECT_TIMEOUT)?
                .remove("pub")
                .context("pub id")?;

            // Control: unshaped, the receiver gets the top layer.
            let started = Instant::now();
            let (mid, h) = wait_height(
                &receiver,
                &pub_id,
                "the 720p layer on the unshaped link",
                MEDIA_TIMEOUT,
                |h| h >= 700,
            )
            .inspect_err(|_| {
                println!("publisher layers: {:?}", publisher.publish_stats());
            })?;
            println!(
                "unshaped: decoding {h}p on slot {mid} after {:?}",
                started.elapsed()
            );
            start_monitor(&receiver, &mid)?;
            std::thread::sleep(Duration::from_secs(3));
            let before = read_monitor(&receiver)?;
            println!("unshaped, 3 s: {before:?}");
            // What the publisher encoded then tells a bridge that switched
            // down on its own from one following a publisher that stopped
            // its 720p layer (Chromium drops it when short of CPU: CI saw
            // this check fail once, alone on its machine, and pass alone
            // three times after).
            if before.height < 700 {
                bail!(
                    "the receiver left 720p on an unshaped link: {before:?}; publisher layers: {:?}",
                    publisher.publish_stats()
                );
            }

            // The slow link.
            let (port, pair) = media_port(&receiver)?;
            println!("receiver media: {pair}");
            let shaper = Shaper::limit(port, SLOW_LINK_KBIT)?;
            let shaped_at = Instant::now();
            reset_monitor(&receiver)?;
            let (_, h) = wait_height(
                &receiver,
                &pub_id,
                &format!("at most 360p behind a {SLOW_LINK_KBIT} kbit/s link"),
                DOWNSWITCH_TIMEOUT,
                |h| h <= 360,
            )?;
            let switched_after = shaped_at.elapsed();
            let transition = read_monitor(&receiver)?;
            println!(
                "shaped to {SLOW_LINK_KBIT} kbit/s: {h}p after {switched_after:?}; transition: {transition:?}"
            );

            // Steady state on the slow link: still decoding, never above
            // 360p, no long stall.
            reset_monitor(&receiver)?;
            let frames_before = read_monitor(&receiver)?.frames;
            std::thread::sleep(Duration::from_secs(10));
            let steady = read_monitor(&receiver)?;
            let (bytes, packets, dropped) = shaper.counters()?;
            println!(
                "shaped, 10 s later: {steady:?}; shaped class: {bytes} bytes, {packets} packets, {dropped} dropped"
            );
            println!("publisher layers: {}", publisher.publish_stats()?);
            ensure!(
                packets > 0,
                "nothing went through the shaped class: the filter missed port {port}"
            );
            ensure!(
                steady.samples >= 50,
                "the monitor took only {} samples",
                steady.samples
            );
            ensure!(
                steady.frames > frames_before + 50,
                "frames decoded went from {frames_before} to {} in 10 s on the slow link",
                steady.frames
            );
            ensure!(
                steady.heights.keys().all(|h| *h <= 360),
                "back above 360p on a {SLOW_LINK_KBIT} kbit/s link: {steady:?}"
            );
            ensure!(
                steady.max_gap_ms <= MAX_STALL_MS,
                "video stood still for {:.0} ms on the slow link (limit {MAX_STALL_MS} ms): {steady:?}",
                steady.max_gap_ms
            );
            ensure!(
                transition.max_gap_ms <= MAX_STALL_MS,
                "video stood still for {:.0} ms while the link slowed down (limit {MAX_STALL_MS} ms): {transition:?}",
                transition.max_gap_ms
            );
            // Nothing was paused: the lowest layer fits.
            let st = receiver.state()?;
            ensure!(
                st.suspended.is_empty(),
                "slots suspended on a link that fits 180p: {:?}",
                st.suspended
            );
            drop(shaper);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// A receiver whose link does not fit even the lowest layer
// ---------------------------------------------------------------------------

/// The starved downlink: audio fits, the 180p layer (up to 150 kbps) does not.
const STARVED_LINK_KBIT: u32 = 90;

#[test]
fn browser_receiver_on_a_starved_link_sees_its_tile_paused_for_low_bandwidth() {
    run_in_netns(
        "browser_receiver_on_a_starved_link_sees_its_tile_paused_for_low_bandwidth",
        |env: &Env| {
            env.start_bridge()?;
            let room = "bw-starved";
            let receiver = env.join(room, "sub", "")?;
            receiver.wait_connected(CONNECT_TIMEOUT)?;
            let publisher = env.join(room, "pub", "")?;
            publisher.wait_connected(CONNECT_TIMEOUT)?;
            let pub_id = receiver
                .wait_sees(&["pub"], CONNECT_TIMEOUT)?
                .remove("pub")
                .context("pub id")?;
            let (mid, h) = wait_height(&receiver, &pub_id, "video", MEDIA_TIMEOUT, |h| h > 0)?;
            println!("unshaped: decoding {h}p on slot {mid}");
            let tile = receiver.tile(&pub_id)?;
            ensure!(
                tile.bandwidth_paused.is_none(),
                "paused label before any shaping: {tile:?}"
            );

            let (port, pair) = media_port(&receiver)?;
            println!("receiver media: {pair}");
            let shaper = Shaper::limit(port, STARVED_LINK_KBIT)?;
            let shaped_at = Instant::now();
            let paused = wait_until(
                "the receiver's slot suspended for bandwidth, with the label on pub's tile",
                Duration::from_secs(30),
                || {
                    let st = receiver.state()?;
                    let tile = receiver.tile(&pub_id)?;
                    let paused = st.suspended.get(&mid).map(String::as_str) == Some("bandwidth")
                        && tile.bandwidth_paused.as_deref() == Some("paused: low bandwidth")
                        && tile.has("bandwidth-paused");
                    Ok(if paused {
                        Check::Done(tile)
                    } else {
                        Check::NotYet(format!(
                            "suspended {:?}, slots {:?}, tile {tile:?}",
                            st.suspended, st.slots
                        ))
                    })
                },
            )?;
            println!(
                "starved at {STARVED_LINK_KBIT} kbit/s: paused after {:?}: {paused:?}",
                shaped_at.elapsed()
            );
            // The slot still names the source: it is wanted, only paused.
            let st = receiver.state()?;
            ensure!(
                st.slots
                    .get(&mid)
                    .cloned()
                    .flatten()
                    .is_some_and(|s| s.starts_with(&format!("{pub_id}/"))),
                "the suspended slot no longer carries pub's camera: {:?}",
                st.slots
            );

            // The link comes back: video resumes, the label goes.
            shaper.set_rate(100_000)?;
            let freed_at = Instant::now();
            let frames0 = receiver
                .stats()?
                .get(&pub_id)
                .and_then(|s| s.video.clone())
                .map(|v| v.frames_decoded)
                .unwrap_or(0);
            wait_until(
                "video from pub again without the paused label",
                Duration::from_secs(45),
                || {
                    let st = receiver.state()?;
                    let tile = receiver.tile(&pub_id)?;
                    let frames = receiver
                        .stats()?
                        .get(&pub_id)
                        .and_then(|s| s.video.clone())
                        .map(|v| v.frames_decoded)
                        .unwrap_or(0);
                    Ok(
                        if st.suspended.is_empty()
                            && tile.bandwidth_paused.is_none()
                            && !tile.has("bandwidth-paused")
                            && frames > frames0 + 10
                        {
                            Check::Done(())
                        } else {
                            Check::NotYet(format!(
                                "suspended {:?}, tile {tile:?}, frames {frames0} -> {frames}",
                                st.suspended
                            ))
                        },
                    )
                },
            )?;
            println!("link restored: resumed after {:?}", freed_at.elapsed());
            drop(shaper);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// b. The bridge's camera cap lowers what Chromium sends
// ---------------------------------------------------------------------------

/// The control bridge of test b: standalone, default caps, its own ports.
const CONTROL_HTTP: &str = "127.0.0.1:8090";
const CONTROL_MEDIA: &str = "127.0.0.1:10090";

/// Publisher and receiver (both asking for 720p) in `room` on the client at
/// `base`; returns them once the receiver decodes the publisher's video, and
/// after `warmup` more (Chromium's send-side estimate ramps up).
fn publish_and_watch(
    env: &Env,
    base: &str,
    room: &str,
    tag: &str,
) -> Result<(Participant, Participant)> {
    let open = |name: &str| -> Result<Participant> {
        let browser = env.browser(name, &[])?;
        browser.goto(&format!("{base}/room/{room}?name={name}&maxh=720"))?;
        Ok(Participant::new(name, browser))
    };
    // The receiver first, as in the slow-link test.
    let receiver = open(&format!("sub-{tag}"))?;
    receiver.wait_connected(CONNECT_TIMEOUT)?;
    let publisher = open(&format!("pub-{tag}"))?;
    publisher.wait_connected(CONNECT_TIMEOUT)?;
    let pub_id = receiver
        .wait_sees(&[publisher.name.as_str()], CONNECT_TIMEOUT)?
        .remove(&publisher.name)
        .context("publisher id")?;
    wait_height(
        &receiver,
        &pub_id,
        "video from the publisher",
        MEDIA_TIMEOUT,
        |h| h > 0,
    )?;
    // All three encodings running (the top one's height is printed: CPU
    // adaptation may lower it on a busy machine).
    wait_until(
        &format!("{} encoding all three layers", publisher.name),
        MEDIA_TIMEOUT,
        || {
            let e = encodings(&publisher)?;
            Ok(
                if e.len() == 3 && e.values().all(|e| e.frames_encoded > 0) {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{e:?}"))
                },
            )
        },
    )?;
    Ok((publisher, receiver))
}

#[test]
// Ignored from 2026-12-03 to 12-04 for the same reason as the slow-link
// test above; 4 of 4 runs since the fix.
fn browser_camera_cap_lowers_what_chromium_sends() {
    run_in_netns(
        "browser_camera_cap_lowers_what_chromium_sends",
        |env: &Env| {
            let cap_bps = CAMERA_CAP_KBPS * 1000;
            let cap = CAMERA_CAP_KBPS.to_string();
            env.start_bridge_with_env(&[("TERN_MEDIA_CAMERA_MAX_KBPS", cap.as_str())])?;
            let control_http: std::net::SocketAddr = CONTROL_HTTP.parse()?;
            let _control = TernCommand::new(&["bridge", "--dev-tokens"])
                .env("TERN_BRIDGE_HTTP_LISTEN", CONTROL_HTTP)
                .env("TERN_BRIDGE_MEDIA_LISTEN", CONTROL_MEDIA)
                .env("TERN_AUTH_SECRET", "browser-bandwidth-control")
                .log_in(env.dir())
                .ready_on_health(control_http)
                .try_start()?;
            let warmup = Duration::from_secs(8);
            let window = Duration::from_secs(5);

            // Control: the bridge's default caps (2500 kbps) are above the
            // client's own maxBitrate for every layer.
            let (mut publisher, mut receiver) = publish_and_watch(
                env,
                &format!("http://{CONTROL_HTTP}"),
                "cap-control",
                "control",
            )?;
            let limits = publisher.state()?.send_limits;
            println!("control: send limits {limits:?}");
            std::thread::sleep(warmup);
            let control = measure_send_rates(&publisher, window)?;
            println!("control (default caps), kbit/s per rid over {window:?}: {control:?}");
            println!("control encodings: {}", publisher.publish_stats()?);
            let control_top = control.get("f").map(|f| f.0).context("no f encoding")?;
            ensure!(
                control_top >= 2.0 * CAMERA_CAP_KBPS as f64,
                "without a cap the top layer sent only {control_top:.0} kbit/s: that cannot tell a {CAMERA_CAP_KBPS} kbps cap from none"
            );
            publisher.browser.close()?;
            receiver.browser.close()?;

            // Capped: every encoding at or below the cap.
            let dev = env.dev().context("tern dev")?;
            let (publisher, receiver) = publish_and_watch(env, &dev.url(""), "cap", "capped")?;
            let limits = publisher.state()?.send_limits.context("no send_limits")?;
            ensure!(
                limits.camera == Some(cap_bps),
                "the capped bridge told camera {:?} bps, configured {cap_bps}",
                limits.camera
            );
            std::thread::sleep(warmup);
            let capped = measure_send_rates(&publisher, window)?;
            let max_bitrates: BTreeMap<String, Option<u64>> = encodings(&publisher)?
                .into_iter()
                .map(|(rid, e)| (rid, e.max_bitrate))
                .collect();
            println!(
                "capped at {CAMERA_CAP_KBPS} kbps, kbit/s per rid over {window:?}: {capped:?}"
            );
            println!("capped encodings: {}", publisher.publish_stats()?);
            ensure!(capped.len() == 3, "expected three encodings: {capped:?}");
            for (rid, (kbps, frames, height)) in &capped {
                ensure!(
                    *frames > 0,
                    "encoding {rid} encoded no frames in {window:?}: the check would be empty ({capped:?})"
                );
                ensure!(
                    *kbps <= CAP_TOLERANCE * CAMERA_CAP_KBPS as f64,
                    "encoding {rid} ({height}p) sent {kbps:.0} kbit/s, cap {CAMERA_CAP_KBPS} kbps (limit {:.0}); maxBitrate per rid: {max_bitrates:?}",
                    CAP_TOLERANCE * CAMERA_CAP_KBPS as f64
                );
            }
            let top = capped.get("f").map(|f| f.0).unwrap_or(0.0);
            println!(
                "top layer: {control_top:.0} kbit/s uncapped -> {top:.0} kbit/s capped at {CAMERA_CAP_KBPS}"
            );
            drop((publisher, receiver));
            Ok(())
        },
    );
}
