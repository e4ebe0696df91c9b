//! Who speaks, in real browsers: three participants in headless Chromium,
//! each with a fake microphone playing a WAV file the test writes (Chromium
//! loops it). Bob talks (a voiced signal), Alice is digital silence; the
//! bridge's dominant speaker detection must name Bob to everyone, list him
//! as speaking, and every page must mark his tile. Carol then joins late,
//! with a talking file but her microphone muted (`?mic=off`: silence on the
//! wire), and must be told too. Then Bob mutes and Carol unmutes: the
//! dominant speaker and the marks must follow. Last, Alice's speaker view
//! and pinning, driven through the page's buttons.
//!
//! Alice receives with one slot of each kind (`?slots=1`), so one of the
//! two others has no video slot on her page: that tile must say "not shown";
//! and her one audio slot must pass from Bob to Carol once Bob is done.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh):
//! `cargo nextest run --test browser_speakers`.

mod support;

use std::f64::consts::PI;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;
use support::wav::{fake_mic, write_wav};
use support::{Check, Participant, TernState, Tile, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// From the first speech (or a mute/unmute) to every page showing who
/// speaks. The bridge decides every 300 ms and needs about a second of
/// speech history; the rest is slack for a loaded two-core machine.
const SPEECH_TIMEOUT: Duration = Duration::from_secs(20);

const RATE: u32 = 48_000;

/// Digital silence: all zeros.
fn silence(seconds: f64) -> Vec<i16> {
    vec![0; (seconds * f64::from(RATE)) as usize]
}

/// Something a speech detector takes for talking: syllables at 4 Hz, each
/// a voiced sound (a 150–250 Hz fundamental that falls a little, with
/// twelve harmonics at 1/k) of 200 ms at about -20 dBFS with 20 ms ramps,
/// then 50 ms of quiet room noise at about -55 dBFS before the next one.
fn speech(seconds: f64) -> Vec<i16> {
    const SYLLABLE: f64 = 0.25;
    const RAMP: f64 = 0.02;
    const VOICED: f64 = 0.20;
    const HARMONICS: usize = 12;
    const PITCHES: [f64; 8] = [180.0, 215.0, 160.0, 235.0, 195.0, 170.0, 245.0, 155.0];
    let rate = f64::from(RATE);
    // RMS of sum(sin(k x) / k) is sqrt(sum(1/k^2) / 2).
    let harmonic_rms = ((1..=HARMONICS).map(|k| 1.0 / (k * k) as f64).sum::<f64>() / 2.0).sqrt();
    let voiced_gain = 10f64.powf(-20.0 / 20.0) / harmonic_rms;
    // Uniform noise in [-1, 1] has an RMS of 1/sqrt(3).
    let noise_gain = 10f64.powf(-55.0 / 20.0) * 3f64.sqrt();
    let mut noise_state: u32 = 0x1234_5678;
    let mut phase = 0.0f64;
    (0..(seconds * rate) as usize)
        .map(|i| {
            let t = i as f64 / rate;
            let n = (t / SYLLABLE) as usize;
            let within = t - n as f64 * SYLLABLE;
            let f0 = PITCHES[n % PITCHES.len()] * (1.0 - 0.08 * within / SYLLABLE);
            phase = (phase + 2.0 * PI * f0 / rate) % (2.0 * PI);
            let envelope = if within < RAMP {
                (0.5 * PI * within / RAMP).sin().powi(2)
            } else if within < VOICED - RAMP {
                1.0
            } else if within < VOICED {
                (0.5 * PI * (within - (VOICED - RAMP)) / RAMP).cos().powi(2)
            } else {
                0.0
            };
            let voiced: f64 = (1..=HARMONICS)
                .map(|k| (k as f64 * phase).sin() / k as f64)
                .sum();
            noise_state = noise_state
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223);
            let noise = f64::from(noise_state >> 8) / f64::from(1u32 << 23) - 1.0;
            let x = envelope * voiced_gain * voiced + (1.0 - envelope) * noise_gain * noise;
            (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// What each page must show about speech right now.
struct Expect<'a> {
    dominant: &'a str,
    /// Participants that must be in `speaking` (and marked speaking).
    speaking: &'a [&'a str],
    /// Participants that must not be.
    silent: &'a [&'a str],
}

/// Whether `st` and the page's tiles agree with `want`; what differs if not.
/// `me` is this page's own participant id.
fn check_page(me: &str, st: &TernState, tiles: &[Tile], want: &Expect) -> Vec<String> {
    let mut wrong = Vec::new();
    if st.dominant_speaker.as_deref() != Some(want.dominant) {
        wrong.push(format!(
            "state: dominant {:?}, want {}",
            st.dominant_speaker, want.dominant
        ));
    }
    if st.recent_speakers.first().map(String::as_str) != Some(want.dominant) {
        wrong.push(format!("state: recent {:?}", st.recent_speakers));
    }
    for id in want.speaking {
        if !st.is_speaking(id) {
            wrong.push(format!("state: {id} not speaking ({:?})", st.speaking));
        }
    }
    for id in want.silent {
        if st.is_speaking(id) {
            wrong.push(format!("state: silent {id} speaking ({:?})", st.speaking));
        }
    }
    for t in tiles {
        let Some(id) = t.participant.as_deref() else {
            wrong.push(format!("tile {:?} has no data-participant", t.name));
            continue;
        };
        let who = if id == me {
            format!("own tile {id}")
        } else {
            format!("tile {id}")
        };
        let dominant = id == want.dominant;
        if t.has("dominant") != dominant || t.dominant_badge != dominant {
            wrong.push(format!(
                "{who}: dominant class {} badge {}, want {dominant}",
                t.has("dominant"),
                t.dominant_badge
            ));
        }
        if want.speaking.contains(&id) && !t.has("speaking") {
            wrong.push(format!("{who}: not marked speaking ({:?})", t.classes));
        }
        if want.silent.contains(&id) && t.has("speaking") {
            wrong.push(format!("{who}: marked speaking ({:?})", t.classes));
        }
    }
    for id in want
        .speaking
        .iter()
        .chain(want.silent)
        .chain([&want.dominant])
    {
        if !tiles.iter().any(|t| t.participant.as_deref() == Some(id)) {
            wrong.push(format!("no tile for {id}"));
        }
    }
    wrong
}

/// Waits until every page in `pages` (participant, own id) agrees with
/// `want`; returns how long that took.
fn wait_pages(what: &str, pages: &[(&Participant, &str)], want: &Expect) -> Result<Duration> {
    let start = Instant::now();
    for (p, me) in pages {
        let remaining = SPEECH_TIMEOUT.saturating_sub(start.elapsed());
        wait_until(&format!("{}: {what}", p.name), remaining, || {
            let wrong = check_page(me, &p.state()?, &p.tiles()?, want);
            if wrong.is_empty() {
                Ok(Check::Done(()))
            } else {
                Ok(Check::NotYet(wrong.join("; ")))
            }
        })?;
    }
    Ok(start.elapsed())
}

/// Clicks the element `selector` on `p`'s page.
fn click(p: &Participant, selector: &str) -> Result<()> {
    p.browser.execute(
        "const el = document.querySelector(arguments[0]);\n\
         if (!el) throw new Error('no element ' + arguments[0]);\n\
         el.click();",
        vec![json!(selector)],
    )?;
    Ok(())
}

/// The participant on `p`'s large tile: from the state and from the DOM
/// (which must agree: at most one tile featured, and only in the speaker
/// view).
fn featured(p: &Participant) -> Result<Option<String>> {
    let st = p.state()?;
    let tiles = p.tiles()?;
    let in_dom: Vec<&Tile> = tiles.iter().filter(|t| t.has("featured")).collect();
    ensure!(
        in_dom.len() <= 1,
        "{}: several featured tiles {in_dom:?}",
        p.name
    );
    let dom = in_dom.first().and_then(|t| t.participant.clone());
    ensure!(
        dom == st.featured,
        "{}: state features {:?}, the page {dom:?}",
        p.name,
        st.featured
    );
    let layout = p
        .browser
        .eval("document.getElementById('grid').dataset.layout")?;
    ensure!(
        layout.as_str() == st.layout.as_deref(),
        "{}: grid layout {layout}, state {:?}",
        p.name,
        st.layout
    );
    Ok(dom)
}

#[test]
fn browser_dominant_speaker_and_speaking_marks_follow_who_talks() {
    run_in_netns(
        "browser_dominant_speaker_and_speaking_marks_follow_who_talks",
        |env| {
            env.start_bridge()?;
            let quiet = env.dir().join("silence.wav");
            let talk = env.dir().join("speech.wav");
            write_wav(&quiet, RATE, &silence(2.0))?;
            write_wav(&talk, RATE, &speech(4.0))?;
            let room = "e2e-speakers";

            // Alice (silent) first, then Bob (talking): Bob's speech starts
            // with everybody present.
            let alice = env.join_with_args(room, "alice", "slots=1", &[&fake_mic(&quiet)])?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob = env.join_with_args(room, "bob", "", &[&fake_mic(&talk)])?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            let bob_joined = Instant::now();
            alice.wait_sees(&["bob"], CONNECT_TIMEOUT)?;

            let bob_talks = Expect {
                dominant: &bob_id,
                speaking: &[&bob_id],
                silent: &[&alice_id],
            };
            let took = wait_pages(
                "Bob is the dominant speaker and speaking",
                &[(&alice, &alice_id), (&bob, &bob_id)],
                &bob_talks,
            )?;
            println!(
                "Bob dominant and speaking on Alice's and his own page {:?} after his join ({took:?} of waiting)",
                bob_joined.elapsed()
            );

            // Carol joins while Bob talks, her microphone muted.
            let carol = env.join_with_args(room, "carol", "mic=off", &[&fake_mic(&talk)])?;
            let carol_id = carol.wait_connected(CONNECT_TIMEOUT)?;
            for p in [&alice, &bob, &carol] {
                let others: Vec<&str> = ["alice", "bob", "carol"]
                    .into_iter()
                    .filter(|n| *n != p.name)
                    .collect();
                p.wait_sees(&others, CONNECT_TIMEOUT)?;
            }
            let bob_talks = Expect {
                dominant: &bob_id,
                speaking: &[&bob_id],
                silent: &[&alice_id, &carol_id],
            };
            let pages = [
                (&alice, alice_id.as_str()),
                (&bob, &bob_id),
                (&carol, &carol_id),
            ];
            let took = wait_pages(
                "Bob is the dominant speaker (late joiner too)",
                &pages,
                &bob_talks,
            )?;
            println!(
                "late joiner Carol and everyone else show Bob as dominant and speaking ({took:?})"
            );

            // Alice has one video slot: Bob (the first to publish) has it,
            // Carol's tile says "not shown" (and has her name).
            wait_until("Alice shows Carol as not shown", CONNECT_TIMEOUT, || {
                let tiles = alice.tiles()?;
                let find = |id: &str| tiles.iter().find(|t| t.participant.as_deref() == Some(id));
                let (Some(b), Some(c)) = (find(&bob_id), find(&carol_id)) else {
                    return Ok(Check::NotYet(format!("tiles {tiles:?}")));
                };
                if !b.has("not-shown")
                    && c.has("not-shown")
                    && c.placeholder.as_deref() == Some("not shown")
                    && c.name == "carol"
                {
                    Ok(Check::Done(()))
                } else {
                    Ok(Check::NotYet(format!("bob {b:?}, carol {c:?}")))
                }
            })?;

            // Bob stops, Carol starts.
            bob.browser
                .execute("return window.tern.toggleMic();", vec![])?;
            carol
                .browser
                .execute("return window.tern.toggleMic();", vec![])?;
            let carol_talks = Expect {
                dominant: &carol_id,
                speaking: &[&carol_id],
                silent: &[&alice_id, &bob_id],
            };
            let took = wait_pages("Carol took over", &pages, &carol_talks)?;
            println!(
                "Bob muted, Carol unmuted: every page shows Carol as dominant and only her speaking after {took:?}"
            );
            for p in [&alice, &bob, &carol] {
                let st = p.state()?;
                ensure!(
                    st.recent_speakers
                        .starts_with(&[carol_id.clone(), bob_id.clone()]),
                    "{}: recent speakers {:?}, want Carol then Bob",
                    p.name,
                    st.recent_speakers
                );
            }

            // Alice's one audio slot follows: Carol's voice, once Bob's talk
            // interval has run out, and it plays (its energy grows).
            let mut first_energy: Option<f64> = None;
            let switched = Instant::now();
            wait_until(
                "Alice's audio slot carries Carol and her audio plays",
                SPEECH_TIMEOUT,
                || {
                    let slots = alice.state()?.slots;
                    // Only a slot that carries Carol's audio gives this.
                    let energy = alice
                        .stats()?
                        .get(&carol_id)
                        .and_then(|s| s.audio.as_ref())
                        .map(|a| a.total_audio_energy);
                    match (energy, first_energy) {
                        (Some(e), Some(f)) if e > f => return Ok(Check::Done(())),
                        (Some(e), None) if e > 0.0 => first_energy = Some(e),
                        _ => {}
                    }
                    Ok(Check::NotYet(format!(
                        "slots {slots:?}, Carol's audio energy {energy:?}"
                    )))
                },
            )?;
            println!(
                "Alice's one audio slot carries Carol and plays her {:?} after the pages showed her dominant",
                switched.elapsed()
            );

            // Alice's speaker view: the dominant speaker (Carol) on the large
            // tile, even without a video slot; pinning Bob puts him there.
            ensure!(featured(&alice)?.is_none(), "grid view features nobody");
            click(&alice, "#btn-layout")?;
            ensure!(
                alice.state()?.layout.as_deref() == Some("speaker"),
                "the layout button switches to the speaker view"
            );
            ensure!(
                featured(&alice)?.as_deref() == Some(carol_id.as_str()),
                "speaker view features the dominant speaker"
            );
            click(
                &alice,
                &format!(".tile[data-participant=\"{bob_id}\"] button.pin"),
            )?;
            let st = alice.state()?;
            ensure!(
                st.pinned.as_deref() == Some(bob_id.as_str()),
                "pinned {:?}",
                st.pinned
            );
            ensure!(
                featured(&alice)?.as_deref() == Some(bob_id.as_str()),
                "the pinned participant has the large tile"
            );
            ensure!(
                alice.tile(&bob_id)?.has("pinned"),
                "Bob's tile is marked pinned"
            );
            click(
                &alice,
                &format!(".tile[data-participant=\"{bob_id}\"] button.pin"),
            )?;
            ensure!(alice.state()?.pinned.is_none(), "the pin button unpins");
            ensure!(
                featured(&alice)?.as_deref() == Some(carol_id.as_str()),
                "unpinned: the dominant speaker again"
            );
            click(&alice, "#btn-layout")?;
            ensure!(featured(&alice)?.is_none(), "back in the grid view");
            ensure!(
                alice.state()?.layout.as_deref() == Some("grid"),
                "the layout button switches back to the grid"
            );
            Ok(())
        },
    );
}
