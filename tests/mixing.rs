//! Mixed conferences with real processes: a focus and bridges, and native
//! participants that publish real Opus tones and real H.264 pictures of one
//! colour each, and decode what they hear and see.

mod native;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use native::cluster_procs::{API, start_bridge, start_focus, wait_online};
use native::focus_api::api;
use native::tern_process::quoted;
use native::{Bridge, eventually};
use tern::client::{Client, ClientOptions};
use tern_peer::tone;
use tern_proto::focus::v1 as fpb;
use tonic::Code;

const TONES: [(&str, f32); 4] = [("a", 500.0), ("b", 700.0), ("c", 1100.0), ("d", 1300.0)];
/// Each participant's picture: one colour (Y, U, V).
const COLOURS: [(u8, u8, u8); 4] = [
    (200, 60, 70),
    (80, 200, 40),
    (120, 90, 220),
    (230, 160, 110),
];

fn hz_of(name: &str) -> f32 {
    TONES.iter().find(|t| t.0 == name).map_or(0.0, |t| t.1)
}

fn signal_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()
        .expect("signal url address")
}

fn mixed(rate: u32) -> Option<fpb::ConferenceOptions> {
    Some(fpb::ConferenceOptions {
        mode: fpb::ConferenceMode::Mixed as i32,
        audio_sample_rate: rate,
        ..Default::default()
    })
}

fn request(conf: &str, who: &str, options: Option<fpb::ConferenceOptions>) -> fpb::AllocateRequest {
    fpb::AllocateRequest {
        conference: conf.into(),
        participant: who.into(),
        display_name: who.into(),
        region: "eu".into(),
        role: fpb::Role::Participant as i32,
        video_codec: String::new(),
        options,
    }
}

/// A participant sending its tone (audio only) and keeping what it hears,
/// with one audio receive slot, as the browser client offers in a mixed room.
fn tone_options(addr: SocketAddr, token: String, name: &str) -> ClientOptions {
    let mut o = ClientOptions::new(addr, token);
    o.video = vec![];
    o.audio_slots = 1;
    // A mixed room's video is H.264, which this participant does not
    // offer: it takes no video.
    o.video_slots = 0;
    o.tone_hz = Some(hz_of(name));
    o.record_audio = true;
    o.seed = name.bytes().map(u64::from).sum();
    o
}

/// [`tone_options`] with a picture as well: real H.264 of the
/// participant's colour, one 320x240 layer.
fn tone_and_picture(addr: SocketAddr, token: String, name: &str) -> ClientOptions {
    let mut o = tone_options(addr, token, name);
    let i = TONES.iter().position(|t| t.0 == name).unwrap_or(0);
    o.video = vec![tern_peer::synth::LayerSpec::new("q", 320, 240, 300_000)];
    o.h264_pattern = Some(COLOURS[i]);
    o.record_video = true;
    o.video_slots = 1;
    o
}

/// Whether the last composite `c` decoded shows everyone of `present` in
/// the tile the layout gives them (their colour within 10 per plane);
/// what is wrong if not.
fn composite_shows(c: &Client, present: &[&str]) -> Result<(), String> {
    use tern_mixer::video::h264::Depacketizer;
    use tern_mixer::video::{VideoCodec, VideoDecoder};
    let st = c.state();
    if st.video_packets.len() != 1 {
        return Err(format!("{} video streams", st.video_packets.len()));
    }
    let Some((_, _, tiles)) = st.composite.clone() else {
        return Err("no layout told".into());
    };
    let names: Vec<&str> = tiles.iter().map(|t| t.participant.as_str()).collect();
    if names != present {
        return Err(format!("layout {names:?}"));
    }
    let mut depack = Depacketizer::default();
    let mut decoder = tern_mixer::video::openh264::OpenH264
        .decoder()
        .map_err(|e| e.to_string())?;
    let mut last = None;
    for p in st.video_packets.values().flatten() {
        if let Some(au) = depack.push(p.seq as u16, p.ts, p.marker, &p.payload)
            && let Ok(Some(pic)) = decoder.decode(&au.annexb)
        {
            last = Some(pic);
        }
    }
    let pic = last.ok_or("nothing decoded")?;
    for t in &tiles {
        let i = TONES.iter().position(|x| x.0 == t.participant).unwrap_or(0);
        let want = COLOURS[i];
        let r = tern_mixer::video::layout::Rect {
            x: t.x + 8,
            y: t.y + 8,
            w: t.width - 16,
            h: t.height - 16,
        };
        let (y, u, v) = pic.mean(r);
        let off = |a: f64, b: u8| (a - f64::from(b)).abs();
        if off(y, want.0) > 10.0 || off(u, want.1) > 10.0 || off(v, want.2) > 10.0 {
            return Err(format!(
                "{}'s tile is ({y:.0}, {u:.0}, {v:.0}), want {want:?}",
                t.participant
            ));
        }
    }
    Ok(())
}

/// The tones in what `c` heard between `from` and `to`, from its one
/// audio stream.
fn heard(c: &Client, from: Instant, to: Instant) -> Vec<&'static str> {
    let st = c.state();
    assert!(
        st.audio_payloads.len() <= 1,
        "one audio stream, got {:?}",
        st.audio_payloads.keys().collect::<Vec<_>>()
    );
    let Some(packets) = st.audio_payloads.values().next() else {
        return Vec::new();
    };
    tone::tones_in(&tone::decode_window(packets, from, to), &TONES)
}

fn others(me: &str, present: &[&'static str]) -> Vec<&'static str> {
    present.iter().copied().filter(|n| *n != me).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_participants_hear_the_other_three_see_everyone_in_the_composite_and_joins_and_leaves_show_within_1s()
 {
    // The split strategy would put every participant on another bridge: a
    // mixed conference stays on one.
    let (_focus, grpc, focus_http) = start_focus(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[("TERN_FOCUS_STRATEGY", quoted("split"))],
    );
    let _b1 = start_bridge("eu-1", "eu", grpc);
    let _b2 = start_bridge("eu-2", "eu", grpc);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 2).await;

    // Only the first allocation says "mixed"; the others get the room's mode.
    let mut allocs = Vec::new();
    for (i, (name, _)) in TONES.iter().enumerate() {
        let options = if i == 0 { mixed(16_000) } else { None };
        let a = api
            .allocate(request("mix-room", name, options))
            .await
            .unwrap_or_else(|e| panic!("allocate {name}: {e}"))
            .into_inner();
        allocs.push((*name, a));
    }
    let bridge = &allocs[0].1.bridge_id;
    for (name, a) in &allocs {
        assert_eq!(
            &a.bridge_id, bridge,
            "{name} is on the conference's one bridge"
        );
    }
    // Asking for forwarding now is refused, and so is another rate or
    // another composite layout.
    for options in [
        Some(fpb::ConferenceOptions {
            mode: fpb::ConferenceMode::Forwarding as i32,
            ..Default::default()
        }),
        mixed(48_000),
        Some(fpb::ConferenceOptions {
            video_layout: fpb::VideoLayout::Speaker as i32,
            ..mixed(16_000).unwrap_or_default()
        }),
    ] {
        let e = api
            .allocate(request("mix-room", "eve", options))
            .await
            .expect_err("contradicting mode refused");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("mixed at 16000 Hz"), "{}", e.message());
    }

    // The same through /join, as the browser client asks.
    for (query, status, says) in [
        (
            "room=mix-room&name=f&mode=forwarding",
            409,
            "is mixed at 16000 Hz",
        ),
        ("room=other&name=f&mode=mixed&rate=44100", 400, "rate 44100"),
        (
            "room=other&name=f&composite=speaker",
            400,
            "for mode=mixed only",
        ),
        ("room=other&name=f&mode=bogus", 400, "bogus"),
        ("room=mix-room&name=g", 200, "token"),
    ] {
        let (got, _, body) =
            native::request("GET", &format!("http://{focus_http}/join?{query}"), &[], "");
        assert_eq!(got, status, "/join?{query}: {body}");
        assert!(body.contains(says), "/join?{query}: {body}");
    }

    let mut clients = Vec::new();
    for (name, a) in &allocs[..3] {
        let c = Client::connect(tone_and_picture(
            signal_addr(&a.signal_url),
            a.token.clone(),
            name,
        ))
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e:#}"));
        clients.push((*name, c));
    }
    let present = ["a", "b", "c"];
    for (name, c) in &clients {
        eventually(
            &format!("{name} hears {:?}", others(name, &present)),
            Duration::from_secs(10),
            || {
                let now = Instant::now();
                (heard(c, now - Duration::from_millis(500), now) == others(name, &present))
                    .then_some(())
            },
        )
        .await;
    }

    // d joins: within a second everyone hears it, and d hears everyone.
    let (name, a) = &allocs[3];
    let d = Client::connect(tone_and_picture(
        signal_addr(&a.signal_url),
        a.token.clone(),
        name,
    ))
    .await
    .expect("d joins");
    let joined = Instant::now();
    clients.push(("d", d));
    let all = ["a", "b", "c", "d"];
    // Within a second the composite shows d, in its tile, to everyone.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for (name, c) in &clients {
        assert_eq!(
            composite_shows(c, &all),
            Ok(()),
            "{name}'s composite 1 s after d joined"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A tone counts as there when it fills over a tenth of the window
    // (see `tone::tones_in`): in the mix by 1 s means there in 0.8-1.0 s.
    let window = (
        joined + Duration::from_millis(800),
        joined + Duration::from_millis(1_000),
    );
    for (name, c) in &clients {
        assert_eq!(
            heard(c, window.0, window.1),
            others(name, &all),
            "{name}, 0.8-1 s after d joined"
        );
    }

    // b leaves: within a second nobody hears it.
    let b = clients.remove(1).1;
    b.leave().await.expect("b leaves");
    let left = Instant::now();
    let still = ["a", "c", "d"];
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for (name, c) in &clients {
        assert_eq!(
            composite_shows(c, &still),
            Ok(()),
            "{name}'s composite 1 s after b left"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window = (
        left + Duration::from_millis(800),
        left + Duration::from_millis(1_000),
    );
    for (name, c) in &clients {
        assert_eq!(
            heard(c, window.0, window.1),
            others(name, &still),
            "{name}, 0.8-1 s after b left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_participant_is_dropped_from_the_mix_and_counted_and_the_others_keep_theirs()
{
    let bridge = Bridge::start(&[]);
    let token = |who: &str| {
        bridge.keys.mint_claims(&tern::auth::Claims {
            room: "m".into(),
            sub: who.into(),
            name: None,
            exp: tern::auth::unix_now() + 600,
            codec: None,
            publish: None,
            mix: Some(16_000),
            mix_video: None,
            moderator: None,
        })
    };
    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let c = Client::connect(tone_options(bridge.http, token(name), name))
            .await
            .expect("joins");
        clients.push((name, c));
    }
    let mut o = tone_options(bridge.http, token("x"), "x");
    o.tone_hz = None;
    o.corrupt_audio = true;
    let x = Client::connect(o).await.expect("x joins");
    eventually("x dropped from the mix", Duration::from_secs(10), || {
        (bridge.metric("tern_mixer_dropped_participants_total", "") >= 1.0).then_some(())
    })
    .await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let now = Instant::now();
    assert_eq!(heard(&clients[0].1, since, now), ["b"]);
    assert_eq!(heard(&clients[1].1, since, now), ["a"]);
    assert_eq!(
        heard(&x, since, now),
        ["a", "b"],
        "x still hears the others"
    );

    // A forwarding token for the mixed room is refused, with the reason.
    let refusal =
        match Client::connect(ClientOptions::new(bridge.http, bridge.token("m", "f"))).await {
            Ok(_) => panic!("a forwarding token joined a mixed room"),
            Err(e) => format!("{e:#}"),
        };
    assert!(refusal.contains("conference_mode"), "{refusal}");
    eventually("the refusal counted", Duration::from_secs(5), || {
        (bridge.metric("tern_joins_refused_total", "conference_mode") == 1.0).then_some(())
    })
    .await;
}

/// Benchmark, not a test of behaviour (`cargo test --release --test mixing
/// -- --ignored --nocapture bench_composite_latency`; BENCHMARKS.md): the
/// composite's capture-to-decode latency. A publisher switches its picture
/// between two colours every 500 ms; a receiver in the same process decodes
/// the composite as it arrived and notes when the publisher's tile first
/// shows the new colour. Both clocks are this process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_composite_latency() {
    use tern_mixer::video::h264::Depacketizer;
    use tern_mixer::video::{VideoCodec, VideoDecoder};
    let bridge = Bridge::start(&[]);
    let token = |who: &str| {
        bridge.keys.mint_claims(&tern::auth::Claims {
            room: "lat".into(),
            sub: who.into(),
            name: None,
            exp: tern::auth::unix_now() + 600,
            codec: None,
            publish: None,
            mix: Some(16_000),
            mix_video: None,
            moderator: None,
        })
    };
    let (white, black) = ((235u8, 128u8, 128u8), (16u8, 128u8, 128u8));
    let mut o = tone_and_picture(bridge.http, token("a"), "a");
    o.h264_pattern = Some(white);
    o.h264_alternate = Some((black, Duration::from_millis(500)));
    let publisher = Client::connect(o).await.expect("a joins");
    let receiver = Client::connect(tone_and_picture(bridge.http, token("b"), "b"))
        .await
        .expect("b joins");
    tokio::time::sleep(Duration::from_secs(22)).await;
    let switches: Vec<(Instant, (u8, u8, u8))> = publisher.state().pattern_switches().to_vec();
    let st = receiver.state();
    let (_, _, tiles) = st.composite.clone().expect("layout");
    let tile = tiles
        .iter()
        .find(|t| t.participant == "a")
        .expect("a's tile");
    let r = tern_mixer::video::layout::Rect {
        x: tile.x + 8,
        y: tile.y + 8,
        w: tile.width - 16,
        h: tile.height - 16,
    };
    let mut depack = Depacketizer::default();
    let mut decoder = tern_mixer::video::openh264::OpenH264
        .decoder()
        .expect("decoder");
    // (arrival of the picture's last packet, the tile's luma).
    let mut shown: Vec<(Instant, f64)> = Vec::new();
    for p in st.video_packets.values().flatten() {
        if let Some(au) = depack.push(p.seq as u16, p.ts, p.marker, &p.payload)
            && let Ok(Some(pic)) = decoder.decode(&au.annexb)
        {
            shown.push((p.at, pic.mean(r).0));
        }
    }
    let mut lat: Vec<f64> = Vec::new();
    // Skip the first seconds (joining, first keyframes).
    for (at, colour) in switches.iter().skip(4) {
        let want = f64::from(colour.0);
        if let Some((seen, _)) = shown
            .iter()
            .find(|(t, y)| t >= at && (y - want).abs() < 30.0)
        {
            lat.push(seen.duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "composite latency over {} switches: min {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} pictures decoded)",
        lat.len(),
        lat[0],
        q(0.5),
        q(0.99),
        lat[lat.len() - 1],
        shown.len()
    );
}

/// Benchmark, not a test of behaviour (`cargo test --release --test mixing
/// -- --ignored --nocapture bench_mixed_participant_cpu`; BENCHMARKS.md):
/// the bridge's CPU per mixed participant, audio only and audio + video.
/// Eight native participants in one mixed room, each sending a tone (and a
/// 320x240 H.264 picture), all talking; the bridge process's CPU over 10 s
/// after 3 s of warm-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_mixed_participant_cpu() {
    const N: usize = 8;
    for video in [false, true] {
        let bridge = Bridge::start(&[]);
        let token = |who: &str| {
            bridge.keys.mint_claims(&tern::auth::Claims {
                room: "cpu".into(),
                sub: who.into(),
                name: None,
                exp: tern::auth::unix_now() + 600,
                codec: None,
                publish: None,
                mix: Some(16_000),
                mix_video: None,
                moderator: None,
            })
        };
        let mut clients = Vec::new();
        for i in 0..N {
            let name = TONES[i % TONES.len()].0;
            let who = format!("p{i}");
            let mut o = if video {
                tone_and_picture(bridge.http, token(&who), name)
            } else {
                tone_options(bridge.http, token(&who), name)
            };
            o.record_audio = false;
            o.record_video = false;
            clients.push(Client::connect(o).await.expect("joins"));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (t0, c0) = (Instant::now(), native::cpu_secs(bridge.pid()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (t1, c1) = (Instant::now(), native::cpu_secs(bridge.pid()));
        let cores = (c1 - c0) / t1.duration_since(t0).as_secs_f64();
        println!(
            "{N} mixed participants, {}: bridge {cores:.3} cores, {:.1} ms CPU per participant-second, {:.0} participants per core",
            if video { "audio + video" } else { "audio only" },
            cores * 1000.0 / N as f64,
            N as f64 / cores
        );
    }
}

/// Tone power (dB) of each of `TONES` in `x` (48 kHz samples).
fn tone_levels(x: &[f64]) -> Vec<(&'static str, f64)> {
    TONES
        .iter()
        .map(|(n, hz)| (*n, native::ffmpeg::power_db(x, f64::from(*hz))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_mixed_conference_is_one_file_of_the_composite_and_the_mix_everyone_hears() {
    use native::ffmpeg::{RATE, decoded_frames_of, decodes_cleanly, packet_span_of, pcm, run};
    let dir = std::env::temp_dir().join(format!("tern-mixed-recording-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = quoted(dir.display().to_string());
    let _b = native::cluster_procs::start_bridge_with(
        "mix-rec",
        "eu",
        grpc,
        &[("TERN_BRIDGE_RECORDINGS_DIR", dir_toml)],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let mut clients = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let options = if i == 0 { mixed(16_000) } else { None };
        let a = api
            .allocate(request("mix-rec-room", name, options))
            .await
            .unwrap_or_else(|e| panic!("allocate {name}: {e}"))
            .into_inner();
        let c = Client::connect(tone_and_picture(
            signal_addr(&a.signal_url),
            a.token.clone(),
            name,
        ))
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e:#}"));
        clients.push((name, c));
    }
    let present = ["a", "b", "c"];
    for (name, c) in &clients {
        eventually(
            &format!("{name} hears {:?}", others(name, &present)),
            Duration::from_secs(10),
            || {
                let now = Instant::now();
                (heard(c, now - Duration::from_millis(500), now) == others(name, &present))
                    .then_some(())
            },
        )
        .await;
    }
    let r = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "mix-rec-room".into(),
        })
        .await
        .expect("a mixed conference is recorded")
        .into_inner();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = clients.remove(2).1;
    c.leave().await.expect("c leaves");
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.stop_recording(fpb::StopRecordingRequest {
        conference: "mix-rec-room".into(),
    })
    .await
    .expect("stop");

    let rec = dir.join(&r.recording_id);
    let meta = eventually("the metadata says it ended", Duration::from_secs(5), || {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rec.join("metadata.json")).ok()?).ok()?;
        m["ended_ms"].is_i64().then_some(m)
    })
    .await;
    println!("metadata: {meta:#}");
    let files = meta["files"].as_array().expect("files");
    assert_eq!(
        files.len(),
        1,
        "one file for the whole conference: {meta:#}"
    );
    let f = &files[0];
    assert_eq!(f["kind"], "mix");
    assert_eq!(f["codec"], "H.264+Opus");
    assert_eq!(f["timing"], "mixer");
    let stays = meta["participants"].as_array().expect("participants");
    assert_eq!(stays.len(), 3, "everyone's presence is listed: {stays:?}");
    let file = rec.join(f["file"].as_str().expect("name"));
    assert_eq!(
        std::fs::metadata(&file).map(|m| m.len()).ok(),
        f["bytes"].as_u64(),
        "the metadata says what was written"
    );

    // Two streams: the composite and the mix.
    let out = run(std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file))
    .expect("ffprobe reads it");
    let streams = String::from_utf8_lossy(&out.stdout).to_string();
    println!("streams: {streams}");
    let lines: Vec<&str> = streams.lines().collect();
    assert_eq!(lines.len(), 2, "{streams}");
    assert!(
        lines[0].starts_with("h264,") && !lines[0].contains(",0,"),
        "{streams}"
    );
    assert!(lines[1].starts_with("opus"), "{streams}");
    decodes_cleanly(&file).expect("every frame decodes without a complaint");
    let span = (ms_of(f, "started_ms"), ms_of(f, "ended_ms"));
    let (v_first, v_last, v_packets) = packet_span_of(&file, "v:0").expect("video packets");
    let (a_first, a_last, _) = packet_span_of(&file, "a:0").expect("audio packets");
    println!(
        "video {v_first:.2}-{v_last:.2} s ({v_packets} pictures), audio {a_first:.2}-{a_last:.2} s, recorded {:.2}-{:.2} s",
        span.0, span.1
    );
    let dur = span.1 - span.0;
    println!(
        "mix file: {:.0} kB/s for the whole conference",
        f["bytes"].as_f64().unwrap_or(0.0) / dur / 1000.0
    );
    for (what, first, last) in [("video", v_first, v_last), ("audio", a_first, a_last)] {
        assert!(
            first - span.0 <= 0.5 && (span.1 - last) <= 0.5,
            "{what} spans the recording: {first:.2}-{last:.2} of {:.2}-{:.2}",
            span.0,
            span.1
        );
    }
    let (decoded, said) = decoded_frames_of(&file, "v:0").expect("count");
    assert_eq!(decoded, v_packets as u64, "every picture decodes: {said}");
    assert!(
        v_packets as f64 >= 5.0 * dur,
        "{v_packets} pictures in {dur:.1} s"
    );

    // The mix is everyone's: a, b and c while c was there (1-3 s in),
    // then a and b (c left 4 s in); d (never there) is the floor.
    let x = pcm(&file).expect("audio decodes");
    let at = |s: f64| ((s - a_first).max(0.0) * f64::from(RATE)) as usize;
    let window = |from: f64, to: f64| &x[at(from).min(x.len())..at(to).min(x.len())];
    let before = tone_levels(window(1.0, 3.0));
    let after = tone_levels(window(5.0, 6.5));
    println!("tones 1-3 s: {before:?}; 5-6.5 s: {after:?}");
    let level = |v: &[(&str, f64)], n: &str| v.iter().find(|t| t.0 == n).map_or(f64::NAN, |t| t.1);
    for n in ["a", "b", "c"] {
        assert!(
            level(&before, n) >= level(&before, "d") + 20.0,
            "{n} in the mix while there: {before:?}"
        );
    }
    for n in ["a", "b"] {
        assert!(
            level(&after, n) >= level(&after, "d") + 20.0,
            "{n} in the mix: {after:?}"
        );
    }
    assert!(
        level(&after, "c") <= level(&after, "a") - 20.0,
        "c is gone from the mix once it left: {after:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn ms_of(f: &serde_json::Value, key: &str) -> f64 {
    f[key].as_i64().unwrap_or_else(|| panic!("{key} in {f}")) as f64 / 1000.0
}
