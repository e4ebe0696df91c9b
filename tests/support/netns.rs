//! The private network namespace and the re-exec of a test inside it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::env::Env;

/// Set (to the namespace's name) in the child that runs a test body inside
/// the namespace. The harness's variables are not named `TERN_*`: the bridge
/// inherits our environment and refuses `TERN_*` variables it does not know.
pub const NETNS_ENV: &str = "E2E_NETNS";

/// Set (to the scratch directory: logs, browser profiles) in that child.
pub const WORKDIR_ENV: &str = "E2E_WORKDIR";

/// Printed by the child when the test body finished without error. The parent
/// requires it, so a test name that matches nothing in the child (libtest
/// exits 0 after running zero tests) cannot pass by accident.
const DONE_MARKER: &str = "tern-e2e: test body passed";
/// How the child starts the line that says why its test failed.
const FAILED_PREFIX: &str = "==== test failed: ";

/// Namespace names start with this, then `<pid>-<n>`.
const PREFIX: &str = "tern-e2e-";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A network namespace with only `lo` up, and a scratch directory for what
/// runs inside. Dropping it kills every process still inside, deletes the
/// namespace and the directory (kept when `E2E_KEEP` is set).
pub struct NetNs {
    name: String,
    dir: PathBuf,
}

impl NetNs {
    pub fn create() -> Result<NetNs> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        reap_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, Drop cleans up even if the rest fails.
        let dir = std::env::temp_dir().join(&name);
        let ns = NetNs { name, dir };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        std::fs::create_dir_all(&ns.dir)
            .with_context(|| format!("creating {}", ns.dir.display()))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip netns exec NAME program`: the program runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Processes currently inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        pids_in(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        destroy(&self.name);
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn pids_in(name: &str) -> Vec<u32> {
    match Command::new("ip").args(["netns", "pids", name]).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills what runs inside `name` (only processes this harness started can be
/// there) and deletes the namespace.
fn destroy(name: &str) {
    for _ in 0..20 {
        let pids = pids_in(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = run(Command::new("ip").args(["netns", "del", name])) {
        eprintln!("warning: could not delete network namespace {name}: {e:#}");
    }
}

/// Deletes namespaces left behind by earlier test processes that died
/// without cleaning up (their pid, part of the name, no longer exists).
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            eprintln!("removing stale network namespace {name}");
            destroy(name);
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs `body` inside a fresh network namespace, see the module docs of
/// `support`. `test_name` must be the libtest name of the calling test.
pub fn run_in_netns(test_name: &str, body: impl FnOnce(&Env) -> Result<()>) {
    if let (Ok(ns), Some(dir)) = (std::env::var(NETNS_ENV), std::env::var_os(WORKDIR_ENV)) {
        run_body(&ns, PathBuf::from(dir), body);
        return;
    }
    let result = run_child(test_name);
    if let Err(e) = result {
        panic!("{test_name}: {e:#}");
    }
}

/// Inside the namespace: set up the environment, run the body, dump
/// diagnostics if it failed.
fn run_body(ns: &str, dir: PathBuf, body: impl FnOnce(&Env) -> Result<()>) {
    let env = Env::new(ns, dir).expect("setting up the test environment inside the namespace");
    let result = body(&env);
    if let Err(e) = &result {
        eprintln!("\n{FAILED_PREFIX}{e:#}\n");
        env.dump_diagnostics();
    }
    drop(env);
    if let Err(e) = result {
        panic!("{e:#}");
    }
    println!("{DONE_MARKER}");
}

/// Outside the namespace: lock, create the namespace, re-run this test inside.
fn run_child(test_name: &str) -> Result<()> {
    preflight()?;
    let _lock = serial_lock()?;
    let ns = NetNs::create().context("creating the network namespace (are we root?)")?;
    let exe = std::env::current_exe().context("locating the test binary")?;
    let timeout = std::env::var("E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);

    let mut child = ns
        .command(&exe)
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, ns.name())
        .env(WORKDIR_ENV, ns.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} inside {}", exe.display(), ns.name()))?;

    // Forward the child's output through println!/eprintln! so libtest
    // captures it like the test's own output (shown on failure or with
    // --nocapture).
    let stdout = forward(child.stdout.take().context("child stdout")?, false);
    let stderr = forward(child.stderr.take().context("child stderr")?, true);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the test child")? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let saw_marker = stdout.join().map(|(m, _)| m).unwrap_or(false);
    let reason = stderr.join().ok().and_then(|(_, r)| r);
    drop(ns);

    let reason = reason.unwrap_or_else(|| "no `==== test failed` line".into());
    match status {
        None => {
            record_failure(test_name, &format!("timed out after {timeout:?}; {reason}"));
            bail!("timed out after {timeout:?} (set E2E_TIMEOUT_SECS to change)")
        }
        Some(s) if !s.success() => {
            record_failure(test_name, &reason);
            bail!("the test failed inside the namespace ({s}): {reason}; its output is above")
        }
        Some(_) if !saw_marker => bail!(
            "the child ran no test named {test_name:?}: the name passed to run_in_netns must be the test's name"
        ),
        Some(_) => Ok(()),
    }
}

/// One line per failed test in `target/test-failures.log`, which
/// scripts/test.sh prints at the end of the run.
fn record_failure(test_name: &str, reason: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-failures.log");
    if let Ok(mut f) = File::options().create(true).append(true).open(path) {
        let _ = writeln!(f, "{test_name}: {reason}");
    }
}

/// Copies lines from `pipe` to our stdout/stderr; returns whether the done
/// marker went by, and the last `==== test failed: ` reason.
fn forward(
    pipe: impl Read + Send + 'static,
    to_stderr: bool,
) -> thread::JoinHandle<(bool, Option<String>)> {
    thread::spawn(move || {
        let mut saw_marker = false;
        let mut reason = None;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            saw_marker |= line.trim() == DONE_MARKER;
            if let Some(r) = line.strip_prefix(FAILED_PREFIX) {
                reason = Some(r.chars().take(400).collect());
            }
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        (saw_marker, reason)
    })
}

/// Browser tests start several Chromiums each: never run two at once, whether
/// they share a process (cargo test) or not (nextest). An advisory file lock
/// covers both.
fn serial_lock() -> Result<File> {
    let path = std::env::temp_dir().join("tern-browser-e2e.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Fails early, with the fix, when the machine lacks what the tests need.
fn preflight() -> Result<()> {
    let missing: Vec<&str> = [
        super::env::CHROMIUM,
        "/usr/bin/chromedriver",
        "/usr/sbin/ip",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists() && which(p).is_none())
    .collect();
    ensure!(
        missing.is_empty(),
        "missing {missing:?}: run scripts/install-test-deps.sh"
    );
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let name = Path::new(program).file_name()?;
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}
