//! Recording through the gRPC API with a real focus and real bridges
//! (processes on 127.0.0.1) and native participants: what the API answers,
//! precise refusals, the files a bridge writes, a bridge that cannot
//! record; and the benchmark of what recording costs
//! (`bench_recording_cost`, BENCHMARKS.md).

mod native;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use native::cluster_procs::{API, allocate, start_bridge_with, start_focus, wait_online};
use native::focus_api::{Api, api};
use tern::client::{Client, ClientOptions};
use tern_proto::focus::v1 as fpb;
use tonic::Code;

fn signal_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()
        .expect("signal url address")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

async fn join(api: &mut Api, conf: &str, who: &str) -> Client {
    let a = allocate(api, conf, who, "eu").await;
    let o = ClientOptions::new(signal_addr(&a.signal_url), a.token.clone());
    Client::connect(o).await.expect("participant joins")
}

async fn list(api: &mut Api, conf: &str) -> Vec<fpb::RecordingInfo> {
    api.list_recordings(fpb::ListRecordingsRequest {
        conference: conf.into(),
    })
    .await
    .expect("list")
    .into_inner()
    .recordings
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                bytes_under(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_starts_lists_and_stops_a_recording_with_precise_refusals() {
    let dir = temp_dir("grpc-recording");
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = format!("{:?}", dir.display().to_string());
    let (_b, _) = start_bridge_with(
        "rec-a",
        "eu",
        grpc,
        &[("TERN_BRIDGE_RECORDINGS_DIR", dir_toml)],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;

    let refused = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "nobody".into(),
        })
        .await
        .expect_err("no such conference");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    let _alice = join(&mut api, "rec", "alice").await;
    let _bob = join(&mut api, "rec", "bob").await;
    let r = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "rec".into(),
        })
        .await
        .expect("start")
        .into_inner();
    assert_eq!(r.state, fpb::RecordingState::Active as i32);
    assert_eq!(r.bridge_id, "rec-a");
    let again = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "rec".into(),
        })
        .await
        .expect_err("one at a time");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains(&r.recording_id),
        "names the running one: {}",
        again.message()
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = list(&mut api, "rec").await;
    assert_eq!(now.len(), 1);
    assert!(
        now[0].files >= 4 && now[0].bytes > 0,
        "reported: {:?}",
        now[0]
    );
    let stopped = api
        .stop_recording(fpb::StopRecordingRequest {
            conference: "rec".into(),
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(stopped.state, fpb::RecordingState::Stopped as i32);
    assert!(stopped.ended_unix_ms >= stopped.started_unix_ms + 3000);
    let none = api
        .stop_recording(fpb::StopRecordingRequest {
            conference: "rec".into(),
        })
        .await
        .expect_err("nothing to stop");
    assert_eq!(none.code(), Code::NotFound);

    // The files: every one the metadata lists, as long as it says.
    let rec = dir.join(&r.recording_id);
    native::eventually(
        "the files and the metadata agree",
        Duration::from_secs(5),
        || {
            let meta = std::fs::read_to_string(rec.join("metadata.json")).unwrap_or_default();
            let m: serde_json::Value = serde_json::from_str(&meta).unwrap_or_default();
            let files = m["files"].as_array().cloned().unwrap_or_default();
            (m["ended_ms"].is_i64()
                && files.len() == 4
                && files.iter().all(|f| {
                    let len = std::fs::metadata(rec.join(f["file"].as_str().unwrap_or("?")))
                        .map_or(0, |m| m.len());
                    len > 0 && Some(len) == f["bytes"].as_u64()
                }))
            .then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_without_a_recordings_directory_fails_the_recording_and_says_why() {
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (_b, _) = start_bridge_with("norec", "eu", grpc, &[]);
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let _alice = join(&mut api, "plain", "alice").await;
    api.start_recording(fpb::StartRecordingRequest {
        conference: "plain".into(),
    })
    .await
    .expect("the focus starts it");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = list(&mut api, "plain").await;
        if r[0].state == fpb::RecordingState::Failed as i32 {
            assert!(
                r[0].error.contains("recordings directory"),
                "the reason: {}",
                r[0].error
            );
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", r[0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a recording bridge given SIGTERM leaves: complete files and final
/// metadata. It passes without the shell's wait for the writer too (here
/// the writer is done long before the exit, which follows the endpoints'
/// departure by a report interval); the wait is for a slow disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_shut_down_while_recording_finishes_its_files_first() {
    let dir = temp_dir("shutdown-recording");
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = format!("{:?}", dir.display().to_string());
    let (mut bridge, _) = start_bridge_with(
        "rec-term",
        "eu",
        grpc,
        &[
            ("TERN_BRIDGE_RECORDINGS_DIR", dir_toml),
            ("TERN_BRIDGE_DRAIN_TIMEOUT_SECS", "1".into()),
        ],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let _alice = join(&mut api, "term", "alice").await;
    let _bob = join(&mut api, "term", "bob").await;
    let r = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "term".into(),
        })
        .await
        .expect("start")
        .into_inner();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGTERM: drain (nowhere to move them), close the endpoints, exit.
    bridge.signal("-TERM");
    let status = bridge.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "exited cleanly: {status:?}"
    );
    // Its last word is on disk: the metadata says the recording ended and
    // every file it lists holds the bytes it lists.
    let rec = dir.join(&r.recording_id);
    let meta = std::fs::read_to_string(rec.join("metadata.json")).expect("metadata");
    let m: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
    assert!(m["ended_ms"].is_i64(), "{m:#}");
    let files = m["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 4, "{m:#}");
    for f in files {
        let name = f["file"].as_str().unwrap_or("?");
        let len = std::fs::metadata(rec.join(name)).map_or(0, |m| m.len());
        assert!(f["ended_ms"].is_i64(), "{name} closed: {f}");
        assert_eq!(Some(len), f["bytes"].as_u64(), "{name}: {f}");
        assert!(len > 0, "{name} is empty");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory on a tmpfs of `kib` KiB (the machines run tests as root),
/// unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(name: &str, kib: u32) -> SmallDisk {
        let d = temp_dir(name);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&d)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a {kib} KiB tmpfs on {} (needs root)",
            d.display()
        );
        SmallDisk(d)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_recording_cleanly_and_the_meeting_goes_on() {
    // 256 KiB: a few seconds of two participants' media.
    let disk = SmallDisk::mount("full-disk", 256);
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = format!("{:?}", disk.0.display().to_string());
    let (_b, _) = start_bridge_with(
        "full",
        "eu",
        grpc,
        &[("TERN_BRIDGE_RECORDINGS_DIR", dir_toml)],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let alice = join(&mut api, "full", "alice").await;
    let _bob = join(&mut api, "full", "bob").await;
    // Another meeting on the same bridge, not recorded.
    let carol = join(&mut api, "other", "carol").await;
    let _dave = join(&mut api, "other", "dave").await;
    api.start_recording(fpb::StartRecordingRequest {
        conference: "full".into(),
    })
    .await
    .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let r = list(&mut api, "full").await;
        if r[0].state == fpb::RecordingState::Failed as i32 {
            break r[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "never filled the disk: {:?}",
            r[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failed.error.contains("No space left on device"),
        "the reason: {}",
        failed.error
    );
    // Both meetings still carry media after the failure.
    let got = |c: &Client| c.state().received.values().map(Vec::len).sum::<usize>();
    let (a0, c0) = (got(&alice), got(&carol));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a1, c1) = (got(&alice), got(&carol));
    assert!(
        a1 > a0 + 50 && c1 > c0 + 50,
        "alice {a0}->{a1}, carol {c0}->{c1}"
    );
    // A failed recording does not hold the conference: a new start is taken.
    let again = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "full".into(),
        })
        .await;
    assert!(again.is_ok(), "{again:?}");
}

/// Benchmark, not a test of behaviour (`cargo test --release --test
/// recording -- --ignored --nocapture bench_recording_cost`;
/// BENCHMARKS.md): the bridge's CPU and the disk bandwidth per recorded
/// participant. Eight native participants (Opus-sized audio and a
/// 180/360/720p VP8-sized simulcast camera each) in one room; the bridge
/// process's CPU over 8 s windows, alternately not recording and recording
/// (a new recording each time, 2 s after its start), three of each, and the
/// bytes written meanwhile; after 15 s for the estimates to climb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_recording_cost() {
    const N: usize = 8;
    const WINDOW: Duration = Duration::from_secs(8);
    let dir = temp_dir("bench-recording");
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = format!("{:?}", dir.display().to_string());
    let (bridge, _) = start_bridge_with(
        "bench",
        "eu",
        grpc,
        &[("TERN_BRIDGE_RECORDINGS_DIR", dir_toml)],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(join(&mut api, "bench", &format!("p{i}")).await);
    }
    // Until every receiver's estimate has climbed to 720p: the load is
    // flat from then on.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pid = bridge.pid();
    let (mut off, mut on, mut written) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t0, c0) = (Instant::now(), native::cpu_secs(pid));
        tokio::time::sleep(WINDOW).await;
        off.push((native::cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64());
        api.start_recording(fpb::StartRecordingRequest {
            conference: "bench".into(),
        })
        .await
        .expect("start");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (t0, c0, b0) = (Instant::now(), native::cpu_secs(pid), bytes_under(&dir));
        tokio::time::sleep(WINDOW).await;
        let secs = t0.elapsed().as_secs_f64();
        on.push((native::cpu_secs(pid) - c0) / secs);
        written.push((bytes_under(&dir) - b0) as f64 / secs);
        api.stop_recording(fpb::StopRecordingRequest {
            conference: "bench".into(),
        })
        .await
        .expect("stop");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{N} participants: bridge cores not recording {off:.3?} (mean {:.3}), recording {on:.3?} (mean {:.3}); \
         {:.2} ms CPU per recorded participant-second; {:.1} kB/s written per participant",
        mean(&off),
        mean(&on),
        (mean(&on) - mean(&off)) * 1000.0 / N as f64,
        mean(&written) / N as f64 / 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A conference whose video is H.264 (Safari's, or a room asked for it):
/// recorded as it is sent, into Matroska, which FFmpeg decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_conference_is_recorded_as_sent_into_matroska_that_decodes() {
    use native::ffmpeg::{decoded_frames_of, decodes_cleanly, packet_span_of};
    let dir = temp_dir("h264-recording");
    let (_focus, grpc, _) = start_focus("127.0.0.1:0", "127.0.0.1:0", &[]);
    let dir_toml = format!("{:?}", dir.display().to_string());
    let (_b, _) = start_bridge_with(
        "rec-h264",
        "eu",
        grpc,
        &[
            ("TERN_BRIDGE_RECORDINGS_DIR", dir_toml),
            ("TERN_MEDIA_CODECS", "[\"opus\", \"vp8\", \"h264\"]".into()),
        ],
    );
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 1).await;
    let mut clients = Vec::new();
    for (who, colour) in [("alice", (200, 60, 70)), ("bob", (80, 200, 40))] {
        let a = api
            .allocate(fpb::AllocateRequest {
                conference: "h264-room".into(),
                participant: who.into(),
                display_name: who.into(),
                region: "eu".into(),
                role: fpb::Role::Participant as i32,
                video_codec: "h264".into(),
                options: None,
            })
            .await
            .expect("allocate")
            .into_inner();
        let mut o = ClientOptions::new(signal_addr(&a.signal_url), a.token.clone());
        o.video = vec![tern_peer::synth::LayerSpec::new("q", 320, 240, 300_000)];
        o.h264_pattern = Some(colour);
        clients.push(Client::connect(o).await.expect("joins"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = api
        .start_recording(fpb::StartRecordingRequest {
            conference: "h264-room".into(),
        })
        .await
        .expect("start")
        .into_inner();
    tokio::time::sleep(Duration::from_secs(5)).await;
    api.stop_recording(fpb::StopRecordingRequest {
        conference: "h264-room".into(),
    })
    .await
    .expect("stop");
    let rec = dir.join(&r.recording_id);
    let meta = native::eventually("the metadata says it ended", Duration::from_secs(5), || {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rec.join("metadata.json")).ok()?).ok()?;
        m["ended_ms"].is_i64().then_some(m)
    })
    .await;
    let videos: Vec<&serde_json::Value> = meta["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["kind"] == "video")
        .collect();
    assert_eq!(videos.len(), 2, "both cameras: {meta:#}");
    for f in videos {
        assert_eq!(f["codec"], "H.264", "{f}");
        let name = f["file"].as_str().expect("name");
        assert!(name.ends_with(".mkv"), "{name}");
        let file = rec.join(name);
        decodes_cleanly(&file).expect("every picture decodes");
        let (first, last, packets) = packet_span_of(&file, "v:0").expect("packets");
        let (decoded, said) = decoded_frames_of(&file, "v:0").expect("count");
        println!("{name}: {packets} pictures {first:.2}-{last:.2} s, {decoded} decoded");
        assert_eq!(decoded, packets as u64, "{said}");
        assert!(
            last - first >= 4.0,
            "{name} spans the recording: {first:.2}-{last:.2}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
