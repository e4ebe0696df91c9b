//! Harness for tests with native (str0m) clients: the real `tern` binary as a
//! child process on 127.0.0.1, tokens minted with the secret it was given,
//! and a /metrics scraper.
#![allow(dead_code)] // Not every test crate uses every helper.

pub mod cluster_procs;
#[path = "../support/ffmpeg.rs"]
pub mod ffmpeg;
pub mod focus_api;
pub mod raw_ws;
pub mod relay_procs;
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

    /// The bridge process's id (CPU measurements).
    pub fn pid(&self) -> u32 {
        self.process.pid()
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
        metric(self.http, name, label_filter)
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        self.process.signal("-TERM");
        self.process
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    }
}

/// Sum of a metric over the label sets whose line contains `label_filter`,
/// from a real scrape of `addr`'s /metrics (a bridge's or the focus's).
pub fn metric(addr: SocketAddr, name: &str, label_filter: &str) -> f64 {
    http_get(addr, "/metrics")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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

/// (status, headers, body) of a request that may well be refused.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build()
        .into();
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = if body.is_empty() {
        agent.run(b.body(()).expect("request"))
    } else {
        agent.run(b.body(body.to_string()).expect("request"))
    };
    let mut res = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    (status, headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A minimal WHIP offer (Opus, sendonly) that parses; it never connects.
pub const WHIP_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
a=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

/// utime + stime of process `pid`, in seconds (100 ticks a second).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}
