//! A mixed room in real browsers: three headless Chromium pages open
//! `/room/NAME?mode=mixed` on `tern dev` (a focus and two bridges), each
//! with a fake microphone playing a tone of its own. Each page must receive
//! exactly one audio stream, play it as the room's sound, and what it plays
//! (read with WebAudio's analyser in the page) must carry the other two
//! tones and not its own.
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
fn browser_mixed_room_each_page_plays_one_mix_of_the_others_tones() {
    run_in_netns(
        "browser_mixed_room_each_page_plays_one_mix_of_the_others_tones",
        |env| {
            env.start_bridge()?;
            let room = "e2e-mixed";
            let mut pages = Vec::new();
            for (name, hz) in TONES {
                let wav = env.dir().join(format!("{name}.wav"));
                write_wav(&wav, RATE, &tone(hz))?;
                let p = env.join_with_args(room, name, "mode=mixed", &[&fake_mic(&wav)])?;
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
            Ok(())
        },
    );
}
