//! `tern loadtest` as a user runs it: against a real `tern dev` process, and
//! with impossible parameters.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

struct Dev {
    child: Child,
    http: String,
}

impl Dev {
    fn start() -> Dev {
        let mut child = Command::new(TERN)
            .args(["dev", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
            .env("TERN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tern dev");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // `tern dev` prints a line per process, then
        // "tern dev ready: open http://ADDR/room/hello ...".
        let line = lines
            .by_ref()
            .map(|l| l.expect("read"))
            .find(|l| l.starts_with("tern dev ready"))
            .expect("tern dev never became ready");
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Dev { child, http }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SIGTERM lets `tern dev` stop its focus and bridges; kill if it hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `tern loadtest ARGS`, killing it if it outlives `limit`.
fn loadtest(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(TERN)
        .arg("loadtest")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern loadtest");
    let pid = child.id();
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        while started.elapsed() < limit {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A hang becomes a failure, not a stuck CI job.
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, Ordering::SeqCst);
    assert!(
        started.elapsed() < limit,
        "loadtest {args:?} ran past {limit:?}"
    );
    out
}

#[test]
fn every_subscriber_receives_media_from_a_dev_bridge_and_the_json_says_so() {
    let dev = Dev::start();
    let dir = std::env::temp_dir().join(format!("tern-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("summary.json");
    let server = format!("http://{}", dev.http);
    let out = loadtest(
        &[
            "--server",
            &server,
            "-n",
            "2",
            "-m",
            "3",
            "-r",
            "2",
            "-d",
            "2",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(40),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("overall"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid json");
    let o = &v["overall"];
    assert_eq!(o["participants"], 5);
    assert_eq!(o["failed"], 0);
    assert_eq!(o["expected_receivers"], 3);
    assert_eq!(o["receivers_with_media"], 3, "{o}");
    assert!(o["received_packets"].as_u64().unwrap_or(0) > 100, "{o}");
    assert!(o["delay_ms"]["p50"].as_f64().is_some(), "{o}");
    assert_eq!(v["per_room"].as_object().map(|m| m.len()), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_refused(args: &[&str], expect: &str) {
    let out = loadtest(args, Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
}

#[test]
fn impossible_parameters_unknown_targets_and_unreachable_servers_fail_fast() {
    assert_refused(&["-n", "0"], "--publishers must be at least 1");
    assert_refused(&["--target", "mediasoup"], "invalid value 'mediasoup'");
    assert_refused(&["-n", "1", "-r", "3"], "every room needs a publisher");
    // Nothing listens on port 1 of loopback.
    assert_refused(
        &["--server", "http://127.0.0.1:1", "-d", "1"],
        "is unreachable",
    );
}
