//! A mixed room in real browsers: three headless Chromium pages open
//! `/room/NAME?mode=mixed` on `tern dev` (a focus and two bridges), each
//! with a fake microphone playing a tone of its own. Each page must receive
//! exactly one audio stream, play it as the room's sound, and what it plays
//! (read with WebAudio's analyser in the page) must carry the other two
//! tones and not its own. Each must also receive exactly one video stream,
//! the composite (H.264, 640x360), decode it, and be told the layout.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh):
//! `cargo nextest run --test browser_mixing`.

mod support;

use std::f64::consts::PI;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::wav::{fake_mic, write_wav};
use support::{CONNECT_TIMEOUT, Check, Participant, run_in_netns, wait_until};

const RATE: u32 = 48_000;
const TONES: [(&str, f64); 3] = [("alice", 500.0), ("bob", 700.0), ("carol", 1100.0)];
/// Each page's fake camera: one colour (Y, U, V), far apart.
const COLOURS: [(u8, u8, u8); 3] = [(81, 90, 240), (145, 54, 34), (41, 240, 110)];
/// From connected to the mix carrying the others: Chromium's jitter buffer,
/// the mixer's, and the analyser's smoothing, on a loaded two-core machine.
const MIX_TIMEOUT: Duration = Duration::from_secs(20);

/// Two seconds of a sine at -20 dBFS (a whole number of cycles: the file
/// loops without a click).
fn tone(hz: f64) -> Vec<i16> {
    let amplitude = 32767.0 * 10f64.powf(-20.0 / 20.0) * 2f64.sqrt();
    (0..2 * RATE as usize)
        .map(|i| (amplitude * (2.0 * PI * hz * i as f64 / f64::from(RATE)).sin()) as i16)
        .collect()
}

/// A Y4M file of one colour, 320x240 at 15 fps (Chromium's fake camera
/// loops it).
fn write_y4m(path: &std::path::Path, (y, u, v): (u8, u8, u8)) -> Result<()> {
    let (w, h) = (320usize, 240usize);
    let mut out = format!("YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..15 {
        out.extend_from_slice(b"FRAME\n");
        out.extend(std::iter::repeat_n(y, w * h));
        out.extend(std::iter::repeat_n(u, w * h / 4));
        out.extend(std::iter::repeat_n(v, w * h / 4));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// A colour's RGB as a browser shows it (BT.601, limited range).
fn rgb((y, u, v): (u8, u8, u8)) -> [f64; 3] {
    let (y, u, v) = (
        1.164 * (f64::from(y) - 16.0),
        f64::from(u) - 128.0,
        f64::from(v) - 128.0,
    );
    [y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u].map(|c| c.clamp(0.0, 255.0))
}

/// The mean RGB of each tile of the composite as the page shows it now
/// (drawn into a canvas), with the participant the layout puts there.
fn tile_colours(p: &Participant) -> Result<Vec<(String, [f64; 3])>> {
    let v = p.browser.eval(
        "(() => {\n\
           const el = document.getElementById('mix-video');\n\
           const st = window.tern.state();\n\
           if (!st.composite || !el.videoWidth) return [];\n\
           const c = document.createElement('canvas');\n\
           c.width = st.composite.width; c.height = st.composite.height;\n\
           const g = c.getContext('2d');\n\
           g.drawImage(el, 0, 0, c.width, c.height);\n\
           return st.composite.tiles.map((t) => {\n\
             const d = g.getImageData(t.x + 16, t.y + 16, t.width - 32, t.height - 32).data;\n\
             const s = [0, 0, 0];\n\
             for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; }\n\
             const n = d.length / 4;\n\
             return [t.participant, s.map((x) => x / n)];\n\
           });\n\
         })()",
    )?;
    let mut out = Vec::new();
    for t in v.as_array().cloned().unwrap_or_default() {
        let who = t[0].as_str().unwrap_or_default().to_string();
        let c: Vec<f64> = t[1]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(-1.0)).collect())
            .unwrap_or_default();
        if c.len() == 3 {
            out.push((who, [c[0], c[1], c[2]]));
        }
    }
    Ok(out)
}

/// The level (dB) of each tone in what the page's mix element plays, from an
/// AnalyserNode the first call attaches to it; `None` until the page has a
/// mix.
fn mix_levels(p: &Participant) -> Result<Option<Vec<f64>>> {
    let hz: Vec<String> = TONES.iter().map(|t| t.1.to_string()).collect();
    let expr = format!(
        "(async () => {{\n\
           const el = document.getElementById('mix-audio');\n\
           if (!el || !el.srcObject) return null;\n\
           if (!window.__mix) {{\n\
             const ctx = new AudioContext();\n\
             await ctx.resume();\n\
             const an = ctx.createAnalyser();\n\
             an.fftSize = 16384;\n\
             an.smoothingTimeConstant = 0.3;\n\
             ctx.createMediaStreamSource(el.srcObject).connect(an);\n\
             window.__mix = {{ ctx, an }};\n\
           }}\n\
           const {{ ctx, an }} = window.__mix;\n\
           const data = new Float32Array(an.frequencyBinCount);\n\
           an.getFloatFrequencyData(data);\n\
           return [{}].map((hz) => {{\n\
             const i = Math.round(hz * an.fftSize / ctx.sampleRate);\n\
             return Math.max(data[i - 1], data[i], data[i + 1]);\n\
           }});\n\
         }})()",
        hz.join(", ")
    );
    let v = p.browser.eval(&expr)?;
    if v.is_null() {
        return Ok(None);
    }
    let levels = v
        .as_array()
        .context("levels")?
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY))
        .collect();
    Ok(Some(levels))
}

#[test]
fn browser_mixed_room_plays_one_mix_and_one_composite_with_everyone_in_their_tiles() {
    run_in_netns(
        "browser_mixed_room_plays_one_mix_and_one_composite_with_everyone_in_their_tiles",
        |env| {
            env.start_bridge()?;
            let room = "e2e-mixed";
            let mut pages = Vec::new();
            for (i, (name, hz)) in TONES.iter().enumerate() {
                let wav = env.dir().join(format!("{name}.wav"));
                write_wav(&wav, RATE, &tone(*hz))?;
                let y4m = env.dir().join(format!("{name}.y4m"));
                write_y4m(&y4m, COLOURS[i])?;
                let camera = format!("--use-file-for-fake-video-capture={}", y4m.display());
                let p =
                    env.join_with_args(room, name, "mode=mixed", &[&fake_mic(&wav), &camera])?;
                pages.push(p);
            }
            for p in &pages {
                p.wait_connected(CONNECT_TIMEOUT)?;
            }
            for (i, p) in pages.iter().enumerate() {
                let me = TONES[i].0;
                let want: Vec<&str> = TONES.iter().map(|t| t.0).filter(|n| *n != me).collect();
                let got = wait_until(
                    &format!("{me} plays a mix of {want:?}"),
                    MIX_TIMEOUT,
                    || {
                        let st = p.browser.eval("window.tern.state()")?;
                        if st["mixRate"].as_u64() != Some(16_000) || st["mixAttached"] != true {
                            return Ok(Check::NotYet(format!(
                                "mixRate {}, mixAttached {}",
                                st["mixRate"], st["mixAttached"]
                            )));
                        }
                        let Some(levels) = mix_levels(p)? else {
                            return Ok(Check::NotYet("no mix element stream".into()));
                        };
                        let max = levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        // A tone in the mix is within 10 dB of the loudest and
                        // well above the analyser's floor; one that is not is
                        // 30 dB or more below.
                        let present: Vec<&str> = TONES
                            .iter()
                            .zip(&levels)
                            .filter(|(_, l)| max > -70.0 && **l > max - 20.0)
                            .map(|(t, _)| t.0)
                            .collect();
                        if present == want {
                            Ok(Check::Done(levels))
                        } else {
                            Ok(Check::NotYet(format!(
                                "tones {present:?}, levels {levels:?} dB"
                            )))
                        }
                    },
                )?;
                println!(
                    "{me}'s mix: levels {got:?} dB at {:?} Hz",
                    TONES.map(|t| t.1)
                );
                let (inbound, _) = p.codecs("audio")?;
                ensure!(
                    inbound == ["audio/opus"],
                    "{me} receives exactly one Opus stream: {inbound:?}"
                );
            }
            // The composite: one H.264 stream of the grid, decoding at its
            // size, and the layout told with everyone in it.
            for (i, p) in pages.iter().enumerate() {
                let me = TONES[i].0;
                let decoded = wait_until(
                    &format!("{me} decodes the composite"),
                    MIX_TIMEOUT,
                    || {
                        let st = p.browser.eval("window.tern.state()")?;
                        let tiles = st["composite"]["tiles"].as_array().map_or(0, Vec::len);
                        let v = p.browser.eval(
                        "(async () => { const out = []; (await window.tern.pc().getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) > 0) out.push([r.framesDecoded, r.frameWidth, r.frameHeight]); }); return out; })()",
                    )?;
                        let streams = v.as_array().cloned().unwrap_or_default();
                        let ok = st["compositeAttached"] == true
                            && tiles == 3
                            && streams.len() == 1
                            && streams[0][0].as_u64().unwrap_or(0) >= 30
                            && streams[0][1] == 640
                            && streams[0][2] == 360;
                        if ok {
                            Ok(Check::Done(streams[0].clone()))
                        } else {
                            Ok(Check::NotYet(format!(
                                "attached {}, tiles {tiles}, decoding video streams {streams:?}",
                                st["compositeAttached"]
                            )))
                        }
                    },
                )?;
                println!("{me}'s composite: [frames, width, height] = {decoded}");
                let (inbound, _) = p.codecs("video")?;
                ensure!(
                    inbound == ["video/H264"],
                    "{me} receives one H.264 stream: {inbound:?}"
                );
                // Each tile shows its participant's camera colour: nearer to
                // it than to anyone else's.
                let ids: Vec<String> = {
                    let st = p.state()?;
                    TONES
                        .iter()
                        .map(|t| {
                            if t.0 == me {
                                st.participant_id.clone().unwrap_or_default()
                            } else {
                                st.remote_named(t.0)
                                    .map(|r| r.id.clone())
                                    .unwrap_or_default()
                            }
                        })
                        .collect()
                };
                let seen = wait_until(
                    &format!("{me}'s tiles show each camera"),
                    MIX_TIMEOUT,
                    || {
                        let tiles = tile_colours(p)?;
                        let dist = |a: [f64; 3], b: [f64; 3]| {
                            a.iter()
                                .zip(b)
                                .map(|(x, y)| (x - y).powi(2))
                                .sum::<f64>()
                                .sqrt()
                        };
                        let right = tiles.len() == 3
                            && tiles.iter().all(|(who, c)| {
                                let Some(k) = ids.iter().position(|id| id == who) else {
                                    return false;
                                };
                                (0..3).all(|j| {
                                    j == k || dist(*c, rgb(COLOURS[k])) < dist(*c, rgb(COLOURS[j]))
                                })
                            });
                        if right {
                            Ok(Check::Done(tiles))
                        } else {
                            Ok(Check::NotYet(format!("tiles {tiles:?}, ids {ids:?}")))
                        }
                    },
                )?;
                println!("{me}'s tiles: {seen:?}");
            }
            Ok(())
        },
    );
}
