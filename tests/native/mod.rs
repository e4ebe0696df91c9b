//! Harness for tests with native (str0m) clients: the real `tern` binary as a
//! child process on 127.0.0.1, tokens minted with the secret it was given,
//! and a /metrics scraper.
#![allow(dead_code)] // Not every test crate uses every helper.

pub mod focus_api;
#[path = "../support/tern_process.rs"]
pub mod tern_process;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern::auth::TokenKeys;
use tern::client::{Client, ClientOptions};
use tern_process::{Tern, TernCommand};

pub const SECRET: &str = "native-test-secret";

/// `TERN_LOG` for cluster processes: our own info lines, libraries' warnings.
pub const CLUSTER_LOG: &str = "info,str0m=warn,dimpl=warn,h2=warn,tower=warn,quinn=warn";

pub struct Bridge {
    process: Tern,
    pub http: SocketAddr,
    pub media: SocketAddr,
    pub keys: TokenKeys,
}

impl Bridge {
    /// Start `tern bridge` on ephemeral loopback ports with extra env.
    pub fn start(extra_env: &[(&str, &str)]) -> Bridge {
        let process = TernCommand::new(&["bridge"])
            .env("TERN_AUTH_SECRET", SECRET)
            .env("TERN_BRIDGE_HTTP_LISTEN", "\"127.0.0.1:0\"")
            .env("TERN_BRIDGE_MEDIA_LISTEN", "\"127.0.0.1:0\"")
            .env("TERN_LOG", "info,str0m=warn,dimpl=warn")
            .envs(extra_env)
            .start();
        // "tern bridge ready: http://ADDR/ (media udp ADDR)"
        let http = process.addr_after("http://");
        let media = process.addr_after("media udp ");
        Bridge {
            process,
            http,
            media,
            keys: TokenKeys::new(SECRET),
        }
    }

    /// What the bridge process has written so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.process.output()
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
        self.process.signal("-TERM");
        self.process
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    }
}

/// The body of `GET path` over loopback (no client library needed).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    tern_process::http_get(addr, path)
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
        .1
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
