//! A minimal W3C WebDriver client for chromedriver: sessions, navigation,
//! scripts and console logs. Only what the tests use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// Plain HTTP/1.1 JSON client. No proxy: everything it talks to is on
/// 127.0.0.1 inside the test's namespace.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    pub fn new(timeout: Duration) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        Http { agent }
    }

    /// GET `url`: status and body text.
    pub fn get(&self, url: &str) -> Result<(u16, String)> {
        let mut res = self
            .agent
            .get(url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .read_to_string()
            .with_context(|| format!("GET {url}: body"))?;
        Ok((status, body))
    }

    fn json(&self, method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let res = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            ("POST", Some(b)) => self.agent.post(url).send_json(b),
            ("POST", None) => self.agent.post(url).send_json(json!({})),
            _ => bail!("unsupported method {method}"),
        };
        let mut res = res.with_context(|| format!("{method} {url}"))?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{method} {url}: body"))?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: not JSON: {}", truncate(&text, 300)))?;
        Ok((status, value))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A chromedriver endpoint.
#[derive(Clone)]
pub struct WebDriver {
    base: String,
    http: Http,
}

/// How to start one browser.
pub struct BrowserOptions {
    pub chromium: PathBuf,
    pub user_data_dir: PathBuf,
    /// Added to the standard flags.
    pub extra_args: Vec<String>,
}

/// Flags for headless Chromium as root inside a namespace with only `lo`
/// (shared/reference/machine.md), with fake camera/microphone and autoplay.
pub fn chromium_args(user_data_dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        // Several browsers share two cores; keep timers running at full rate
        // in every window.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--window-size=1280,800",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", user_data_dir.display()));
    args
}

impl WebDriver {
    pub fn new(base: impl Into<String>, http: Http) -> WebDriver {
        WebDriver {
            base: base.into(),
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a command; returns its `value` or the WebDriver error.
    pub fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, mut v) = self.http.json(method, &self.url(path), body)?;
        let value = v.get_mut("value").map(Value::take).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let error = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        Err(anyhow!(
            "WebDriver {method} {path}: {status} {error}: {}",
            truncate(message, 2000)
        ))
    }

    /// True once chromedriver accepts sessions.
    pub fn ready(&self) -> Result<bool> {
        let v = self.command("GET", "/status", None)?;
        Ok(v.get("ready").and_then(Value::as_bool).unwrap_or(false))
    }

    pub fn new_session(&self, label: &str, opts: &BrowserOptions) -> Result<Browser> {
        std::fs::create_dir_all(&opts.user_data_dir)
            .with_context(|| format!("creating {}", opts.user_data_dir.display()))?;
        let mut args = chromium_args(&opts.user_data_dir);
        args.extend(opts.extra_args.iter().cloned());
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": opts.chromium,
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "script": 30_000, "pageLoad": 30_000 },
                }
            }
        });
        let v = self
            .command("POST", "/session", Some(&caps))
            .with_context(|| format!("starting browser {label}"))?;
        let id = v
            .get("sessionId")
            .and_then(Value::as_str)
            .context("new session: no sessionId")?;
        Ok(Browser {
            driver: self.clone(),
            id: id.to_string(),
            label: label.to_string(),
            user_data_dir: opts.user_data_dir.clone(),
            closed: false,
            quit_on_drop: true,
        })
    }
}

/// One browser (a WebDriver session). Dropping it quits the browser unless
/// [`Browser::keep_open_on_drop`] handed that job to someone else.
pub struct Browser {
    driver: WebDriver,
    id: String,
    label: String,
    user_data_dir: PathBuf,
    closed: bool,
    quit_on_drop: bool,
}

impl Browser {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn session_id(&self) -> &str {
        &self.id
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let path = format!("/session/{}{}", self.id, path);
        self.driver
            .command(method, &path, body)
            .with_context(|| format!("browser {}", self.label))
    }

    /// Navigates to `url`. chromedriver gives up on a renderer that is slow
    /// to answer while the 2-core machine is busy with other browsers
    /// ("Timed out receiving message from renderer", seen at 4.5 s with
    /// four browsers open, 2026-12-03): that one error is retried once.
    pub fn goto(&self, url: &str) -> Result<()> {
        let body = json!({ "url": url });
        match self.cmd("POST", "/url", Some(&body)) {
            Err(e) if format!("{e:#}").contains("Timed out receiving message from renderer") => {
                eprintln!(
                    "browser {}: navigation timed out in the renderer ({e:#}); retrying once",
                    self.label
                );
                std::thread::sleep(std::time::Duration::from_secs(1));
                self.cmd("POST", "/url", Some(&body))?;
            }
            r => {
                r?;
            }
        }
        Ok(())
    }

    /// Runs `script` as a function body with `args`; returns its result. A
    /// returned Promise is awaited (W3C "execute script").
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` with a callback as its last argument; returns what the
    /// script passed to the callback.
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Evaluates a JavaScript expression (which may be a Promise) and returns
    /// its value. A rejected promise or a thrown error becomes an `Err` with
    /// the JavaScript message.
    pub fn eval(&self, expr: &str) -> Result<Value> {
        let script = format!(
            "const done = arguments[arguments.length - 1];\n\
             Promise.resolve().then(() => ({expr}))\n\
             .then((v) => done({{ ok: v === undefined ? null : v }}), (e) => done({{ err: String((e && e.stack) || e) }}));"
        );
        let mut v = self.execute_async(&script, vec![])?;
        if let Some(err) = v.get("err").and_then(Value::as_str) {
            bail!("browser {}: `{expr}` failed: {err}", self.label);
        }
        Ok(v.get_mut("ok").map(Value::take).unwrap_or(Value::Null))
    }

    /// Browser console messages since the last call (chromedriver's log
    /// endpoint, enabled by `goog:loggingPrefs`).
    pub fn console_log(&self) -> Result<Vec<String>> {
        let v = self.cmd("POST", "/se/log", Some(&json!({ "type": "browser" })))?;
        let entries = v.as_array().cloned().unwrap_or_default();
        Ok(entries
            .iter()
            .map(|e| {
                let level = e.get("level").and_then(Value::as_str).unwrap_or("?");
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                format!("[{level}] {msg}")
            })
            .collect())
    }

    /// Dropping this handle leaves the browser running: the owner of the
    /// session (the test `Env`) quits it later, after it had the chance to
    /// collect diagnostics from it.
    pub fn keep_open_on_drop(&mut self) {
        self.quit_on_drop = false;
    }

    /// Quits the browser now.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let r = self.cmd("DELETE", "", None).map(|_| ());
        let _ = std::fs::remove_dir_all(&self.user_data_dir);
        r
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.quit_on_drop {
            return;
        }
        if let Err(e) = self.close() {
            eprintln!("warning: closing browser {}: {e:#}", self.label);
        }
    }
}
