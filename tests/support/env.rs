//! What runs inside the namespace: chromedriver, the bridge, and the browsers
//! the test opens. Everything binds to 127.0.0.1 of the namespace, so fixed
//! ports are fine: each test has a namespace of its own.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::participant::Participant;
use super::wait::{Check, wait_until};
use super::webdriver::{Browser, BrowserOptions, Http, WebDriver};

pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const CHROMEDRIVER_PORT: u16 = 9515;
const BRIDGE_HTTP: &str = "127.0.0.1:8080";
const BRIDGE_MEDIA: &str = "127.0.0.1:10000";

/// A child process killed (and reaped) on drop, with its output in a file.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Result<Process> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("cloning log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Process { name, child, log })
    }

    /// Fails if the process already exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("try_wait")? {
            bail!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                tail(&self.log, 60)
            );
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    strip_ansi(&all[all.len().saturating_sub(lines)..].join("\n"))
}

/// Removes terminal colour sequences (`ESC [ ... m`) from log text.
fn strip_ansi(text: &str) -> String {
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

/// A running `tern dev`.
pub struct Bridge {
    process: RefCell<Process>,
    base: String,
}

impl Bridge {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.process.borrow().log, lines)
    }

    /// Fails if the bridge process died.
    pub fn check_alive(&self) -> Result<()> {
        self.process.borrow_mut().check_alive()
    }
}

/// The test's world inside the namespace.
pub struct Env {
    namespace: String,
    dir: PathBuf,
    http: Http,
    driver: WebDriver,
    _chromedriver: Process,
    bridge: RefCell<Option<std::rc::Rc<Bridge>>>,
    /// Every browser opened, for diagnostics: (label, session id).
    sessions: RefCell<Vec<(String, String)>>,
    next_browser: Cell<u32>,
}

impl Env {
    /// Starts chromedriver (inside the namespace we are already in); logs
    /// and browser profiles go to `dir`.
    pub fn new(namespace: &str, dir: PathBuf) -> Result<Env> {
        let http = Http::new(Duration::from_secs(60));
        // chromedriver binds to localhost only and, without --allowed-ips,
        // accepts local clients only.
        let chromedriver = Process::spawn(
            "chromedriver",
            Command::new("chromedriver").arg(format!("--port={CHROMEDRIVER_PORT}")),
            dir.join("chromedriver.log"),
        )?;
        let driver = WebDriver::new(
            format!("http://127.0.0.1:{CHROMEDRIVER_PORT}"),
            http.clone(),
        );
        let mut env = Env {
            namespace: namespace.to_string(),
            dir,
            http,
            driver,
            _chromedriver: chromedriver,
            bridge: RefCell::new(None),
            sessions: RefCell::new(Vec::new()),
            next_browser: Cell::new(0),
        };
        wait_until("chromedriver ready", Duration::from_secs(20), || {
            env._chromedriver.check_alive()?;
            match env.driver.ready() {
                Ok(true) => Ok(Check::Done(())),
                Ok(false) => Ok(Check::NotYet("not ready".into())),
                Err(e) => Ok(Check::NotYet(format!("{e:#}"))),
            }
        })?;
        Ok(env)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This test's scratch directory (removed with the namespace).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    /// Starts `tern dev` and waits for `GET /health` to answer 200.
    pub fn start_bridge(&self) -> Result<std::rc::Rc<Bridge>> {
        let exe = env!("CARGO_BIN_EXE_tern");
        let mut cmd = Command::new(exe);
        cmd.args(["dev", "--http", BRIDGE_HTTP, "--media", BRIDGE_MEDIA]);
        // The bridge logs per TERN_LOG (inherited from the test's environment).
        let process = Process::spawn("bridge (tern dev)", &mut cmd, self.dir.join("bridge.log"))?;
        let bridge = std::rc::Rc::new(Bridge {
            process: RefCell::new(process),
            base: format!("http://{BRIDGE_HTTP}"),
        });
        let health = bridge.url("/health");
        wait_until("bridge GET /health = 200", Duration::from_secs(30), || {
            bridge.check_alive()?;
            match self.http.get(&health) {
                Ok((200, _)) => Ok(Check::Done(())),
                Ok((status, body)) => Ok(Check::NotYet(format!("{status} {}", body.trim()))),
                Err(e) => Ok(Check::NotYet(format!("{e:#}"))),
            }
        })?;
        *self.bridge.borrow_mut() = Some(bridge.clone());
        Ok(bridge)
    }

    /// Opens a new browser (fresh profile) with `extra_args` added to the
    /// standard flags.
    pub fn browser(&self, label: &str, extra_args: &[&str]) -> Result<Browser> {
        let n = self.next_browser.get();
        self.next_browser.set(n + 1);
        let opts = BrowserOptions {
            chromium: PathBuf::from(CHROMIUM),
            user_data_dir: self.dir.join(format!("profile-{n}-{label}")),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        let mut browser = self.driver.new_session(label, &opts)?;
        // Quit in Env's drop, after a failing test dumped what it knew.
        browser.keep_open_on_drop();
        self.sessions
            .borrow_mut()
            .push((label.to_string(), browser.session_id().to_string()));
        Ok(browser)
    }

    /// Opens a browser on `/room/{room}?name={name}&{query}` of the running
    /// bridge.
    pub fn join(&self, room: &str, name: &str, query: &str) -> Result<Participant> {
        let bridge = self
            .bridge
            .borrow()
            .clone()
            .context("start_bridge() first")?;
        let browser = self.browser(name, &[])?;
        let mut url = bridge.url(&format!("/room/{room}?name={name}"));
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        browser.goto(&url)?;
        Ok(Participant::new(name, browser))
    }

    /// Prints what each browser and the bridge knew: called when a test fails.
    pub fn dump_diagnostics(&self) {
        for (label, session) in self.sessions.borrow().iter() {
            let path = format!("/session/{session}/execute/sync");
            let script = serde_json::json!({
                "script": "return window.tern ? { state: window.tern.state(), log: window.tern.log() } : { page: location.href };",
                "args": [],
            });
            match self.driver.command("POST", &path, Some(&script)) {
                Ok(v) => {
                    eprintln!("==== browser {label}: state");
                    eprintln!(
                        "{}",
                        serde_json::to_string_pretty(v.get("state").unwrap_or(&v))
                            .unwrap_or_default()
                    );
                    if let Some(log) = v.get("log").and_then(Value::as_array) {
                        eprintln!("==== browser {label}: client log");
                        for line in log {
                            eprintln!("  {}", line.as_str().unwrap_or(""));
                        }
                    }
                }
                Err(e) => {
                    eprintln!("==== browser {label}: gone ({e:#})");
                    continue;
                }
            }
            let log = self.driver.command(
                "POST",
                &format!("/session/{session}/se/log"),
                Some(&serde_json::json!({"type": "browser"})),
            );
            if let Ok(Value::Array(entries)) = log {
                eprintln!("==== browser {label}: console");
                for e in entries {
                    eprintln!(
                        "  {}",
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    );
                }
            }
        }
        if let Some(bridge) = self.bridge.borrow().as_ref() {
            eprintln!("==== bridge log (last 200 lines)\n{}", bridge.log_tail(200));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_diagnostics();
        }
        for (_, session) in self.sessions.borrow().iter() {
            // Already closed ones answer "invalid session id": fine.
            let _ = self
                .driver
                .command("DELETE", &format!("/session/{session}"), None);
        }
        // Processes die through their own Drop (the bridge once the last Rc
        // is gone); the directory goes with the namespace (NetNs).
    }
}
