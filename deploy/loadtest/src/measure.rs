//! Samples taken at the edges of the measurement window: a server's
//! `/metrics` page, each placed bridge's, and a process's CPU time and
//! memory from /proc. Raw samples only; the `run` module turns their
//! differences into the summary.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use crate::args::Target;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::http;

pub(crate) async fn scrape(ctx: &Ctx) -> Option<String> {
    if ctx.args.target != Target::Tern {
        return None;
    }
    let (status, body) = http::request(ctx.server, "GET", "/metrics", None, Duration::from_secs(5))
        .await
        .ok()?;
    (status == 200).then_some(body)
}

/// Each placed bridge's `/metrics`, by bridge id (those that answer).
pub(crate) async fn scrape_bridges(
    placed: &BTreeMap<String, (String, Option<SocketAddr>)>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (id, (_, http)) in placed {
        let Some(addr) = http else {
            continue;
        };
        if let Ok((200, body)) =
            http::request(*addr, "GET", "/metrics", None, Duration::from_secs(5)).await
        {
            out.insert(id.clone(), body);
        }
    }
    out
}

/// CPU time and memory of a process from /proc.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    pub(crate) cpu_secs: f64,
    /// Of which in user space (the rest is the kernel's: syscalls, the
    /// network stack).
    pub(crate) user_cpu_secs: f64,
    pub(crate) rss_kib: u64,
}

pub(crate) fn proc_sample(pid: u32) -> Result<ProcSample> {
    let read = |path: String| {
        std::fs::read_to_string(&path).map_err(|source| Error::Io {
            what: format!("reading {path}"),
            source,
        })
    };
    let stat = read(format!("/proc/{pid}/stat"))?;
    let malformed = || Error::MalformedProc {
        path: format!("/proc/{pid}/stat"),
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(malformed)?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(malformed)
    };
    let user_cpu_secs = ticks(11)? / 100.0;
    let cpu_secs = user_cpu_secs + ticks(12)? / 100.0;
    let status = read(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu_secs,
        user_cpu_secs,
        rss_kib,
    })
}
