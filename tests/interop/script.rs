//! A Python script of `tests/interop/` run as a child of an interop test:
//! its stdout lines arrive on a channel, a line on its stdin asks it to
//! stop and print `result <json>`, and it is killed on drop. Shared by
//! tests/interop_aiortc.rs and tests/interop_browser.rs.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The interpreter with aiortc: `TERN_AIORTC_PYTHON`, else the venv
/// `scripts/install-test-deps.sh` makes under `target/`.
pub fn aiortc_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TERN_AIORTC_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aiortc-venv/bin/python")
}

pub struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Script {
    /// Start `tests/interop/<name>` with `args` under [`aiortc_python`];
    /// its stderr goes to the test's.
    pub fn start(name: &str, args: &[&str]) -> Result<Script> {
        let python = aiortc_python();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(name);
        let mut child = Command::new(&python)
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Script {
            name: name.to_string(),
            child,
            stdin,
            lines,
        })
    }

    /// The rest of the first stdout line starting with `prefix`; other
    /// lines are echoed.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.to_string());
                    }
                    eprintln!("{}: {l}", self.name);
                }
                Err(e) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!(
                        "no `{prefix}` line from {} within {timeout:?} ({e}; exit status {status:?}; its stderr is above)",
                        self.name
                    );
                }
            }
        }
    }

    /// Ask it to stop; its `result` JSON.
    pub fn finish(&mut self, timeout: Duration) -> Result<Value> {
        if let Some(mut stdin) = self.stdin.take() {
            // A closed pipe means it already ended; wait_line says so.
            let _ = writeln!(stdin, "stop");
        }
        let json = self.wait_line("result ", timeout)?;
        serde_json::from_str(&json).with_context(|| format!("{}'s result", self.name))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
