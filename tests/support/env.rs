//! What runs inside the namespace: chromedriver, `tern dev`, and the browsers
//! the test opens. Everything binds to 127.0.0.1 of the namespace, so fixed
//! ports are fine: each test has a namespace of its own.
//!
//! `tern dev` comes in two shapes, and the harness works with both:
//! - **focus** (current): a focus on the `--http` address (browser client,
//!   `GET /join`, `GET /api/bridges`, `/health`) and two bridges as its
//!   children, regions `local-a` (HTTP port + 1, the `--media` port) and
//!   `local-b` (HTTP port + 2, media port + 1). It prints
//!   `tern dev: focus pid P http A grpc A` and
//!   `tern dev: bridge ID pid P http A media A` on stdout.
//! - **standalone** (older): one bridge on the `--http` address serving the
//!   client, `/signal` and `/dev/token`; `GET /join` is 404 there.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::participant::Participant;
use super::tern_process::{Tern, TernCommand, strip_ansi};
use super::wait::{Check, wait_until};
use super::webdriver::{Browser, BrowserOptions, Http, WebDriver};

pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const CHROMEDRIVER_PORT: u16 = 9515;
const BRIDGE_HTTP: &str = "127.0.0.1:8080";
const BRIDGE_MEDIA: &str = "127.0.0.1:10000";

/// A child process other than `tern` (chromedriver; `tern` itself starts
/// through `tern_process`), killed (and reaped) on drop, with its output in a
/// file.
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

/// One bridge that a focus-shaped `tern dev` started (from its stdout line
/// `tern dev: bridge ID pid P http A media A`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevBridge {
    pub id: String,
    pub pid: u32,
    pub http: String,
    pub media: String,
}

/// Which shape of `tern dev` answered (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevShape {
    Focus,
    Standalone,
}

/// A running `tern dev`: the process the browsers' pages come from (the
/// focus, or the one standalone bridge).
pub struct Bridge {
    process: RefCell<Tern>,
    base: String,
    shape: Cell<DevShape>,
    http: Http,
}

impl Bridge {
    pub fn shape(&self) -> DevShape {
        self.shape.get()
    }

    pub fn is_focus(&self) -> bool {
        self.shape.get() == DevShape::Focus
    }

    /// The bridges `tern dev` says it started (focus shape; empty otherwise).
    pub fn dev_bridges(&self) -> Vec<DevBridge> {
        parse_dev_bridges(&self.process.borrow().output())
    }

    /// The focus's pid, from `tern dev: focus pid P ...`.
    pub fn focus_pid(&self) -> Option<u32> {
        let text = self.process.borrow().output();
        text.lines().find_map(|line| {
            let rest = &line[line.find("tern dev: focus ")? + "tern dev: focus ".len()..];
            let mut words = rest.split_whitespace();
            (words.next()? == "pid").then_some(())?;
            words.next()?.parse().ok()
        })
    }

    /// `GET /api/bridges` of the focus: what it knows about each bridge.
    pub fn api_bridges(&self) -> Result<Value> {
        let url = self.url("/api/bridges");
        let (status, body) = self.http.get(&url)?;
        anyhow::ensure!(status == 200, "GET {url}: {status} {}", body.trim());
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
    }

    /// `kill -9` the bridge `id` (a child of `tern dev`); returns what was killed.
    pub fn kill_bridge(&self, id: &str) -> Result<DevBridge> {
        self.signal_bridge(id, "-KILL")
    }

    /// Send `signal` (e.g. `-TERM`) to the bridge `id`.
    pub fn signal_bridge(&self, id: &str, signal: &str) -> Result<DevBridge> {
        let bridges = self.dev_bridges();
        let b = bridges
            .iter()
            .find(|b| b.id == id)
            .with_context(|| format!("tern dev printed no bridge {id:?}; it printed {bridges:?}"))?
            .clone();
        let status = Command::new("kill")
            .args([signal, &b.pid.to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill {signal} {} ({id}) failed", b.pid);
        Ok(b)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.borrow().log_tail(lines)
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

    /// Starts `tern dev` and waits until it can place participants: `GET
    /// /health` answers 200, then `GET /join` answers 200 (focus shape, at
    /// least one bridge registered) or 404 (standalone bridge).
    pub fn start_bridge(&self) -> Result<std::rc::Rc<Bridge>> {
        self.start_bridge_with_env(&[])
    }

    /// [`Self::start_bridge`] with extra environment for `tern dev` and its
    /// children (e.g. `TERN_FOCUS_STRATEGY`).
    pub fn start_bridge_with_env(&self, vars: &[(&str, &str)]) -> Result<std::rc::Rc<Bridge>> {
        let http = BRIDGE_HTTP.parse().context("BRIDGE_HTTP")?;
        // It logs per TERN_LOG (inherited from the test's environment).
        let process = TernCommand::new(&["dev", "--http", BRIDGE_HTTP, "--media", BRIDGE_MEDIA])
            .envs(vars)
            .log_in(&self.dir)
            .ready_on_health(http)
            .ready_within(Duration::from_secs(30))
            // Env prints it with the browsers' state (dump_diagnostics).
            .no_log_on_failure()
            .try_start()?;
        let bridge = std::rc::Rc::new(Bridge {
            process: RefCell::new(process),
            base: format!("http://{BRIDGE_HTTP}"),
            shape: Cell::new(DevShape::Standalone),
            http: self.http.clone(),
        });
        // Diagnostics from here on, even if the wait below fails.
        *self.bridge.borrow_mut() = Some(bridge.clone());
        let join = bridge.url("/join?room=probe&name=probe");
        let shape = wait_until(
            "tern dev GET /join = 200 (focus with a bridge) or 404 (standalone bridge)",
            Duration::from_secs(30),
            || {
                bridge.check_alive()?;
                match self.http.get(&join) {
                    Ok((200, _)) => Ok(Check::Done(DevShape::Focus)),
                    Ok((404, _)) => Ok(Check::Done(DevShape::Standalone)),
                    Ok((status, body)) => Ok(Check::NotYet(format!("{status} {}", body.trim()))),
                    Err(e) => Ok(Check::NotYet(format!("{e:#}"))),
                }
            },
        )?;
        bridge.shape.set(shape);
        println!(
            "tern dev is up ({shape:?}); bridges: {:?}",
            bridge.dev_bridges()
        );
        Ok(bridge)
    }

    /// The running `tern dev`, if started.
    pub fn dev(&self) -> Option<std::rc::Rc<Bridge>> {
        self.bridge.borrow().clone()
    }

    /// `name{...}` summed over every bridge of the running `tern dev` (its
    /// real /metrics) and over the label sets whose text contains
    /// `label_filter` (e.g. `direction="in"`).
    pub fn bridges_metric(&self, name: &str, label_filter: &str) -> Result<f64> {
        let dev = self.dev().context("no tern dev running")?;
        let mut total = 0.0;
        for b in dev.dev_bridges() {
            let url = format!("http://{}/metrics", b.http);
            let (status, body) = self.http.get(&url)?;
            anyhow::ensure!(status == 200, "GET {url}: {status}");
            total += body
                .lines()
                .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label_filter))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(total)
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
        self.join_with_args(room, name, query, &[])
    }

    /// [`Self::join`] in a browser started with `extra_args` added to the
    /// standard flags (e.g. `--use-file-for-fake-audio-capture=PATH`).
    pub fn join_with_args(
        &self,
        room: &str,
        name: &str,
        query: &str,
        extra_args: &[&str],
    ) -> Result<Participant> {
        let bridge = self
            .bridge
            .borrow()
            .clone()
            .context("start_bridge() first")?;
        let browser = self.browser(name, extra_args)?;
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
            if bridge.is_focus() {
                match bridge.api_bridges() {
                    Ok(v) => eprintln!("==== focus GET /api/bridges\n{v:#}"),
                    Err(e) => eprintln!("==== focus GET /api/bridges failed: {e:#}"),
                }
            }
            eprintln!(
                "==== tern dev log (last 300 lines)\n{}",
                bridge.log_tail(300)
            );
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

/// `tern dev: bridge ID pid P http A media A` lines, in order.
fn parse_dev_bridges(log: &str) -> Vec<DevBridge> {
    let mut out: Vec<DevBridge> = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find("tern dev: bridge ") else {
            continue;
        };
        let words: Vec<&str> = line[at + "tern dev: bridge ".len()..]
            .split_whitespace()
            .collect();
        let field = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
        };
        let (Some(id), Some(pid), Some(http), Some(media)) = (
            words.first().map(|w| w.to_string()),
            field("pid").and_then(|p| p.parse().ok()),
            field("http"),
            field("media"),
        ) else {
            continue;
        };
        let b = DevBridge {
            id,
            pid,
            http,
            media,
        };
        // A restarted bridge prints again: keep the latest line per id.
        out.retain(|o| o.id != b.id);
        out.push(b);
    }
    out
}

/// Waits until `tern dev` printed both bridges and the focus lists both
/// online; returns the printed bridges.
pub fn wait_two_bridges_online(dev: &Bridge) -> Result<Vec<DevBridge>> {
    wait_until(
        "tern dev started two bridges and the focus lists both online",
        Duration::from_secs(30),
        || {
            let printed = dev.dev_bridges();
            let api = dev.api_bridges()?;
            let online = api
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|b| b.get("online").and_then(Value::as_bool) == Some(true))
                        .count()
                })
                .unwrap_or(0);
            if printed.len() >= 2 && online >= 2 {
                Ok(Check::Done(printed))
            } else {
                Ok(Check::NotYet(format!(
                    "printed {printed:?}; GET /api/bridges {api}"
                )))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tern_dev_bridge_lines() {
        let log = "\u{1b}[2m2026\u{1b}[0m INFO starting\n\
                   tern dev: focus pid 10 http 127.0.0.1:8080 grpc 127.0.0.1:7000\n\
                   tern dev: bridge local-a-1f pid 11 http 127.0.0.1:8081 media 127.0.0.1:10000\n\
                   tern dev: bridge local-b-2e pid 12 http 127.0.0.1:8082 media 127.0.0.1:10001\n\
                   tern dev: bridge broken pid x http y media z\n";
        let got = parse_dev_bridges(&strip_ansi(log));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].id, "local-a-1f");
        assert_eq!(got[0].pid, 11);
        assert_eq!(got[1].http, "127.0.0.1:8082");
        assert_eq!(got[1].media, "127.0.0.1:10001");
    }
}
