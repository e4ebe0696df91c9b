//! Harness for tests with native (str0m) clients: the real `tern` binary as a
//! child process on 127.0.0.1, tokens minted with the secret it was given,
//! and a /metrics scraper.
#![allow(dead_code)] // Not every test crate uses every helper.

pub mod process;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern::auth::TokenKeys;
use tern::client::{Client, ClientOptions};

pub const SECRET: &str = "native-test-secret";

pub struct Bridge {
    child: Child,
    pub http: SocketAddr,
    pub media: SocketAddr,
    pub keys: TokenKeys,
}

impl Bridge {
    /// Start `tern bridge` on ephemeral loopback ports with extra env.
    pub fn start(extra_env: &[(&str, &str)]) -> Bridge {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
        cmd.arg("bridge")
            .env("TERN_AUTH_SECRET", SECRET)
            .env("TERN_BRIDGE_HTTP_LISTEN", "\"127.0.0.1:0\"")
            .env("TERN_BRIDGE_MEDIA_LISTEN", "\"127.0.0.1:0\"")
            .env("TERN_LOG", "info,str0m=warn,dimpl=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tern bridge");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("bridge printed nothing")
            .expect("read stdout");
        // "tern bridge ready: http://ADDR/ (media udp ADDR)"
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no http address in {line:?}"));
        let media = line
            .split("media udp ")
            .nth(1)
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no media address in {line:?}"));
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Bridge {
            child,
            http,
            media,
            keys: TokenKeys::new(SECRET),
        }
    }

    pub fn token(&self, room: &str, participant: &str) -> String {
        self.keys.mint(room, participant, Some(participant), 600)
    }

    pub async fn join(&self, room: &str, participant: &str) -> Client {
        self.join_with(room, participant, |_| {}).await
    }

    pub async fn join_with(
        &self,
        room: &str,
        participant: &str,
        f: impl FnOnce(&mut ClientOptions),
    ) -> Client {
        let mut o = ClientOptions::new(self.http, self.token(room, participant));
        o.seed = participant.bytes().map(u64::from).sum();
        f(&mut o);
        Client::connect(o)
            .await
            .unwrap_or_else(|e| panic!("{participant} could not join: {e:#}"))
    }

    /// Sum of a metric over all label sets, from a real scrape.
    pub fn metric(&self, name: &str, label_filter: &str) -> f64 {
        let body = http_get(self.http, "/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over loopback (no client library needed).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Poll `f` until it returns Some or `timeout` passes.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
