//! The one way tests start the `tern` binary: a long-running `tern bridge |
//! focus | dev` ([`TernCommand::start`], a [`Tern`]) or a command that runs to
//! completion ([`TernCommand::run`]).
//!
//! A started process writes stdout and stderr to one log file, as a terminal
//! would show them; it is ready once a line of its stdout says so (or its
//! `/health` answers 200), and a failure to start names the process and shows
//! the end of its log. It is killed on drop (after SIGTERM and a grace period
//! if asked), and its scratch directory — log, and a `TMPDIR` of its own if
//! asked — goes with it. A test that fails prints the end of the log of every
//! process it had running.
//!
//! Shared by every test crate through `#[path]`; it depends on nothing else
//! in `tests/` so that each can include it alone.
#![allow(dead_code)] // Not every test crate uses every helper.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// A TOML string value for a `TERN_*` override.
pub fn quoted(a: impl std::fmt::Display) -> String {
    format!("\"{a}\"")
}

/// When a started process counts as ready.
#[derive(Clone, Debug)]
enum Ready {
    /// A line of its output starts with this ("tern bridge ready:").
    Line(String),
    /// `GET /health` at this address answers 200.
    Health(SocketAddr),
}

/// A `tern` command line being put together.
pub struct TernCommand {
    cmd: Command,
    name: String,
    ready: Ready,
    timeout: Duration,
    log_dir: Option<PathBuf>,
    own_tmpdir: bool,
    grace: Option<Duration>,
    dump_on_failure: bool,
    /// The subcommand, for the log file's name.
    first: String,
}

/// Numbers log files apart when several share a directory.
static LOGS: AtomicU32 = AtomicU32::new(0);

impl TernCommand {
    /// `tern ARGS`. Ready by default once it prints the line every
    /// long-running command prints: `tern <first arg> ready`.
    pub fn new<S: AsRef<str>>(args: &[S]) -> TernCommand {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        TernCommand::via(&[], &args)
    }

    /// `PREFIX... tern ARGS`, e.g. `ip netns exec NS tern loadtest ...`.
    pub fn via(prefix: &[&str], args: &[&str]) -> TernCommand {
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(TERN);
                c
            }
            None => Command::new(TERN),
        };
        cmd.args(args);
        let first = args.first().copied().unwrap_or_default();
        TernCommand {
            cmd,
            name: format!("tern {}", args.join(" ")),
            ready: Ready::Line(format!("tern {first} ready")),
            timeout: Duration::from_secs(60),
            log_dir: None,
            own_tmpdir: false,
            grace: None,
            dump_on_failure: true,
            first: first.to_string(),
        }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<K: AsRef<str>, V: AsRef<str>>(mut self, vars: &[(K, V)]) -> Self {
        for (k, v) in vars {
            self.cmd.env(k.as_ref(), v.as_ref());
        }
        self
    }

    /// Start from an empty environment.
    pub fn env_clear(mut self) -> Self {
        self.cmd.env_clear();
        self
    }

    /// Ready once `GET /health` at `http` answers 200, not on a line.
    pub fn ready_on_health(mut self, http: SocketAddr) -> Self {
        self.ready = Ready::Health(http);
        self
    }

    /// How long [`Self::start`] waits for readiness (default 60 s: `tern dev`
    /// alone may take 20 s per process it starts on a loaded machine).
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Write the log into `dir` (kept: the caller owns it) instead of a
    /// scratch directory removed on drop.
    pub fn log_in(mut self, dir: &Path) -> Self {
        self.log_dir = Some(dir.to_path_buf());
        self
    }

    /// Give the process an empty `TMPDIR` of its own ([`Tern::tmpdir`]),
    /// removed on drop.
    pub fn own_tmpdir(mut self) -> Self {
        self.own_tmpdir = true;
        self
    }

    /// On drop, SIGTERM first and wait up to `grace` before killing (`tern
    /// dev` stops its focus and bridges on SIGTERM).
    pub fn stop_gracefully(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Do not print the end of the log when the test fails (the caller
    /// prints its own diagnostics).
    pub fn no_log_on_failure(mut self) -> Self {
        self.dump_on_failure = false;
        self
    }

    /// Starts the process and waits until it is ready.
    pub fn try_start(mut self) -> Result<Tern> {
        let scratch = tempfile::Builder::new()
            .prefix("tern-test-")
            .tempdir()
            .context("creating a scratch directory")?;
        let log = self
            .log_dir
            .as_deref()
            .unwrap_or(scratch.path())
            .join(format!(
                "tern-{}-{}.log",
                self.first,
                LOGS.fetch_add(1, Ordering::Relaxed)
            ));
        let tmpdir = self.own_tmpdir.then(|| scratch.path().join("tmp"));
        if let Some(t) = &tmpdir {
            std::fs::create_dir(t).with_context(|| format!("creating {}", t.display()))?;
            self.cmd.env("TMPDIR", t);
        }
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // One open file for both: lines land in the order they were written.
        let err = out.try_clone().context("cloning the log file handle")?;
        let child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let mut tern = Tern {
            child,
            name: self.name,
            log,
            ready_line: String::new(),
            tmpdir,
            grace: self.grace,
            dump_on_failure: self.dump_on_failure,
            _scratch: scratch,
        };
        tern.wait_ready(&self.ready, self.timeout)?;
        Ok(tern)
    }

    /// [`Self::try_start`], panicking with the reason and the log's end.
    pub fn start(self) -> Tern {
        self.try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs to completion with stdout and stderr captured; killed, and the
    /// test failed, if it outlives `limit`.
    pub fn run(mut self, limit: Duration) -> Output {
        let child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
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
            "{} ran past {limit:?}",
            self.name
        );
        out
    }
}

/// A running `tern`, killed (and reaped) on drop.
pub struct Tern {
    child: Child,
    name: String,
    log: PathBuf,
    ready_line: String,
    tmpdir: Option<PathBuf>,
    grace: Option<Duration>,
    dump_on_failure: bool,
    _scratch: tempfile::TempDir,
}

impl Tern {
    fn wait_ready(&mut self, ready: &Ready, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match ready {
                Ready::Line(prefix) => {
                    if let Some(l) = self.output().lines().find(|l| l.starts_with(prefix)) {
                        self.ready_line = l.to_string();
                        return Ok(());
                    }
                }
                Ready::Health(http) => {
                    if http_get(*http, "/health").is_ok_and(|(status, _)| status == 200) {
                        return Ok(());
                    }
                }
            }
            if let Some(status) = self.child.try_wait().context("try_wait")? {
                bail!(
                    "{} exited during startup ({status}); its output (backtraces left out):\n{}",
                    self.name,
                    self.log_tail_without_backtrace(60)
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} was not ready ({ready:?}) within {timeout:?}; its output:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The line that made it ready (empty when ready on `/health`).
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// The address after `marker` in the ready line, e.g. "media udp ".
    pub fn addr_after(&self, marker: &str) -> SocketAddr {
        self.ready_line
            .split(marker)
            .nth(1)
            .and_then(|r| r.split(['/', ' ', ')']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address after {marker:?} in {:?}", self.ready_line))
    }

    /// Everything it wrote so far (stdout and stderr), colour codes removed.
    pub fn output(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The last `lines` lines of [`Self::output`].
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.output();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last `lines` of its output less backtrace frames: a process
    /// that fails at start-up prints its error and then a backtrace
    /// (`RUST_BACKTRACE` is on in tests) long enough to push the error out
    /// of a plain tail.
    pub fn log_tail_without_backtrace(&self, lines: usize) -> String {
        let text = self.output();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                let frame = t
                    .split_once(": ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                !(frame || t.starts_with("at "))
            })
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its own `TMPDIR`, if it was given one ([`TernCommand::own_tmpdir`]).
    pub fn tmpdir(&self) -> Option<&Path> {
        self.tmpdir.as_deref()
    }

    /// `kill SIG PID`, e.g. `signal("-STOP")`.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails, with the end of its log, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("try_wait")? {
            bail!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                self.log_tail(60)
            );
        }
        Ok(())
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        if self.dump_on_failure && std::thread::panicking() {
            eprintln!(
                "==== {} (pid {}), last 200 lines of its output\n{}",
                self.name,
                self.child.id(),
                self.log_tail(200)
            );
        }
        // A SIGSTOPped process must run again to die cleanly.
        self.signal("-CONT");
        if let Some(grace) = self.grace {
            self.signal("-TERM");
            self.wait_exit(grace);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over loopback: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {out:?}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Removes terminal colour sequences (`ESC [ ... m`) from log text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the final byte of the sequence.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
