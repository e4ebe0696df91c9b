//! `tern loadtest`: N publishers and M subscribers across R rooms, real
//! WebRTC (ICE, DTLS-SRTP) against a bridge, for a bounded time; then a
//! summary per room and overall (join time, received packets and bitrate,
//! loss, freezes, end-to-end delay from the timestamps publishers embed),
//! also as JSON. Freezes are counted twice: between complete frames, and
//! between frames the subscribers' decoders could show (`frz c/s`); the
//! PLIs those decoders sent are counted too.
//!
//! Each participant is one tokio task that owns its [`Peer`] outright (no
//! lock: nothing else touches it) and its own UDP socket; the runtime has
//! `--threads` workers so the whole tool can be pinned to one core with
//! `taskset` and measured (it reports its own CPU time too).
//!
//! Targets: Tern (`--target tern`): a focus (`tern dev`, `tern focus`),
//! which places each participant on a bridge through `/join` (in the region
//! `--publisher-region` / `--subscriber-region` ask for, so media can be
//! made to cross the relay between bridges), or one bridge (tokens from
//! `/dev/token`, or minted with `--secret`); or a Janus VideoRoom
//! (`--target janus`, see [`janus`]).
//!
//! A crate of its own so that it meets the bridge only where a user's
//! client would: signalling, `/join`, `/dev/token` and `/metrics`. It must
//! not link the bridge's shells; the one thing it borrows from the `tern`
//! binary, how `--secret` becomes a participant token, is handed to
//! [`main`] as a [`MintToken`].

pub mod ceiling;
pub mod histogram;
pub mod http;
pub mod janus;
pub mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tern_peer::synth::LayerSpec;
use tern_peer::{Pacing, Peer, PeerConfig, PeerOutput};
use tern_sfu::signal::{ClientMessage, ServerMessage};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use stats::{GroupSummary, PeerAcc, PeerReport};

/// Longest run accepted: the tool must stop by itself in bounded time.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Time allowed for one participant to connect, join and negotiate.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Received packets are folded into statistics this often.
const FOLD_EVERY: Duration = Duration::from_millis(250);
/// After the last join, media settles (keyframes, layer choice) before the
/// measurement window opens.
const WARMUP: Duration = Duration::from_secs(2);
/// Datagrams drained per wakeup of a participant's socket.
const RECV_BURST: usize = 64;
/// Janus room ids of a run are `run base + room index`, the base a multiple
/// of this.
const MAX_JANUS_ROOMS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A Tern bridge (`tern bridge` or `tern dev`).
    Tern,
    /// A Janus 1.1 VideoRoom, through its HTTP API.
    Janus,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What kind of server to load.
    #[arg(long, value_enum, default_value = "tern")]
    pub target: Target,
    /// The server's HTTP address: a Tern bridge's (signalling, /dev/token,
    /// /metrics) or Janus's HTTP API (e.g. http://198.18.0.1:8088/janus).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Mint tokens with this secret (`tern bridge`); without it tokens come
    /// from `/dev/token` (`tern dev`).
    #[arg(long, env = "TERN_AUTH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Publishers in total (spread round-robin over the rooms).
    #[arg(long, short = 'n', default_value_t = 2)]
    pub publishers: usize,
    /// Receive-only participants in total (spread over the rooms).
    #[arg(long, short = 'm', default_value_t = 4)]
    pub subscribers: usize,
    #[arg(long, short = 'r', default_value_t = 1)]
    pub rooms: usize,
    /// Seconds of measured media after everyone joined (plus a join ramp
    /// and a 2 s warm-up before it).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Milliseconds between two participants starting to join.
    #[arg(long, default_value_t = 20)]
    pub join_interval_ms: u64,
    /// Video receive slots per participant.
    #[arg(long, default_value_t = 4)]
    pub video_slots: usize,
    /// Audio receive slots per participant.
    #[arg(long, default_value_t = 4)]
    pub audio_slots: usize,
    /// Largest video height each receiver asks for (180, 360, 720).
    #[arg(long, default_value_t = 720)]
    pub max_height: u32,
    /// Publishers send only this many simulcast layers (1..=3, lowest first).
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Publishers write each video frame at once instead of pacing it as a
    /// browser does (libwebrtc's pacer: 2.5x the encoders' bitrate, served
    /// every 5 ms): the burst a frame makes at the server then grows with
    /// its size.
    #[arg(long)]
    pub burst: bool,
    /// Publishers receive too (an all-to-all meeting); otherwise they only send.
    #[arg(long)]
    pub publishers_receive: bool,
    /// This many of the subscribers (the last ones) count the media
    /// datagrams they get without decrypting or checking them: cheap enough
    /// that one load-tool core can keep a bridge busy. They count towards
    /// received packets and "media ok", not towards loss, delay or freezes,
    /// which come from the others.
    #[arg(long, default_value_t = 0)]
    pub count_only: usize,
    /// Worker threads of the load tool's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// PID of a server process: its CPU time and memory are then measured
    /// over the window (from /proc). Repeatable (e.g. both bridges of
    /// `tern dev`); `NAME=PID` names it, and a NAME that is the id of a
    /// bridge participants were placed on pairs that process's CPU with the
    /// bridge's relay counters.
    #[arg(long = "server-pid", value_name = "[NAME=]PID", value_parser = parse_server_pid)]
    pub server_pids: Vec<ServerPid>,
    /// Region publishers ask the focus for (`/join?region=`). Only through a
    /// focus; with `--subscriber-region` set to another region, every
    /// packet crosses the relay between two bridges.
    #[arg(long, value_name = "REGION")]
    pub publisher_region: Option<String>,
    /// Region receive-only participants ask the focus for.
    #[arg(long, value_name = "REGION")]
    pub subscriber_region: Option<String>,
    /// Also write the summary as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Local IP for media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
    /// Label for this run in the summary (e.g. "tern" / "janus").
    #[arg(long, default_value = "")]
    pub label: String,
    /// Instead of a load: measure the per-core ceiling (SRTP AES-256-GCM seal
    /// plus UDP send of 1,200-byte packets on this thread) for SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub ceiling: Option<f64>,
    /// With --ceiling: also send the batches round robin into 64 sockets a
    /// reader pinned to this core drains (what the bridge pays on loopback:
    /// delivery into read sockets and the reader's wakeups).
    #[arg(long, value_name = "CORE", requires = "ceiling")]
    pub ceiling_reader_core: Option<usize>,
}

/// A server process to measure: `PID` or `NAME=PID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPid {
    pub name: String,
    pub pid: u32,
}

pub fn parse_server_pid(s: &str) -> anyhow::Result<ServerPid> {
    let (name, pid) = match s.split_once('=') {
        Some((n, _)) if n.trim().is_empty() => {
            bail!("--server-pid {s:?}: the name before '=' is empty (expected NAME=PID)")
        }
        Some((n, p)) => (n.trim().to_string(), p),
        None => (String::new(), s),
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(ServerPid { name, pid }),
        _ => bail!("--server-pid {s:?}: expected a process id (PID or NAME=PID)"),
    }
}

/// Parse `http://IP:PORT[/path]` (or `IP:PORT`) into an address and a base path.
pub fn parse_server(s: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = s.strip_prefix("http://").unwrap_or(s);
    if rest.contains("://") {
        bail!("server {s:?}: only plain http:// is supported");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
        None => (rest, String::new()),
    };
    let addr = host.parse::<SocketAddr>().with_context(|| {
        format!("server {s:?}: expected http://IP:PORT (an IP address, not a host name)")
    })?;
    Ok((addr, path))
}

impl Args {
    /// The simulcast layer receivers want: the highest of the published
    /// layers whose height is within `--max-height` (the lowest if none is).
    pub fn wanted_layer(&self) -> u8 {
        LayerSpec::ladder()
            .iter()
            .take(self.layers)
            .rposition(|l| u32::from(l.height) <= self.max_height)
            .unwrap_or(0) as u8
    }

    /// Refuse impossible parameters before anything connects.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.publishers == 0 {
            bail!("--publishers must be at least 1: nobody would send media");
        }
        if self.rooms == 0 {
            bail!("--rooms must be at least 1");
        }
        if self.rooms > self.publishers {
            bail!(
                "--rooms {} exceeds --publishers {}: every room needs a publisher",
                self.rooms,
                self.publishers
            );
        }
        if self.duration.is_nan()
            || self.duration <= 0.0
            || self.duration > MAX_DURATION.as_secs_f64()
        {
            bail!(
                "--duration must be between 0 and {} seconds",
                MAX_DURATION.as_secs()
            );
        }
        if !(1..=3).contains(&self.layers) {
            bail!("--layers must be 1, 2 or 3");
        }
        if self.threads == 0 || self.threads > 64 {
            bail!("--threads must be between 1 and 64");
        }
        if self.count_only > self.subscribers {
            bail!(
                "--count-only {} exceeds --subscribers {}",
                self.count_only,
                self.subscribers
            );
        }
        if self.subscribers > 0 && self.video_slots + self.audio_slots == 0 {
            bail!("subscribers need receive slots (--video-slots/--audio-slots)");
        }
        if self.target == Target::Janus && self.publishers_receive {
            // A Janus publisher receives through a second PeerConnection (a
            // subscriber handle); a participant here is one Peer.
            bail!(
                "--publishers-receive is not supported with --target janus: use separate subscribers (-m)"
            );
        }
        if self.target == Target::Janus && self.rooms > MAX_JANUS_ROOMS {
            bail!("--rooms: at most {MAX_JANUS_ROOMS} with --target janus");
        }
        for (flag, region) in [
            ("--publisher-region", &self.publisher_region),
            ("--subscriber-region", &self.subscriber_region),
        ] {
            let Some(r) = region else {
                continue;
            };
            if r.trim().is_empty() {
                bail!(
                    "{flag} is empty: name a region the focus has bridges in (its /api/bridges lists them)"
                );
            }
            if self.target == Target::Janus {
                bail!("{flag} needs a Tern focus as --server: Janus has no regions");
            }
            if self.secret.is_some() {
                bail!(
                    "{flag} only means something through a focus, but --secret (or TERN_AUTH_SECRET) mints tokens for the one bridge at --server: drop the secret and point --server at the focus"
                );
            }
        }
        let mut pids: Vec<u32> = self.server_pids.iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        if pids.windows(2).any(|w| w[0] == w[1]) {
            bail!("--server-pid: the same process is given twice");
        }
        parse_server(&self.server)?;
        Ok(())
    }

    /// The region a participant asks the focus for, if any.
    fn region_for(&self, publish: bool) -> Option<&str> {
        if publish {
            self.publisher_region.as_deref()
        } else {
            self.subscriber_region.as_deref()
        }
    }
}

/// Mints a participant token for `--secret`: `(secret, room, participant)`.
/// The token format belongs to the bridge that verifies it (`tern::auth`),
/// so the binary supplies this rather than the load tool copying it.
pub type MintToken = fn(secret: &str, room: &str, participant: &str) -> String;

/// Entry point of `tern loadtest`: exits non-zero on bad parameters, an
/// unreachable server, or a run in which some receiver got no media.
pub fn main(args: Args, mint: MintToken) -> anyhow::Result<()> {
    if let Some(secs) = args.ceiling {
        if secs.is_nan() || secs <= 0.0 || secs > 600.0 {
            bail!("--ceiling takes 0..600 seconds");
        }
        let c = ceiling::measure(secs, args.ceiling_reader_core)?;
        let read = c
            .seal_and_sendmmsg_read_pps
            .map(|r| format!(", into read sockets {r:.0} pkt/s"))
            .unwrap_or_default();
        println!(
            "ceiling (one core): SRTP AES-256-GCM seal {:.0} pkt/s, UDP send {:.0} pkt/s, seal+send {:.0} pkt/s, seal+sendmmsg(32) {:.0} pkt/s{read} (1,200-byte packets)",
            c.seal_only_pps, c.send_only_pps, c.seal_and_send_pps, c.seal_and_sendmmsg_pps
        );
        if args.json.is_some() {
            println!("{}", serde_json::to_string(&c)?);
        }
        return Ok(());
    }
    args.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .thread_name("tern-load")
        .build()?;
    let summary = rt.block_on(run(args.clone(), mint))?;
    print!("{}", summary.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let o = &summary.overall;
    if o.receivers_with_media < o.expected_receivers || o.failed > 0 {
        bail!(
            "{} of {} receivers got media, {} participants failed",
            o.receivers_with_media,
            o.expected_receivers,
            o.failed
        );
    }
    Ok(())
}

/// The whole result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub label: String,
    pub target: Target,
    pub server: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub rooms: usize,
    /// Publishers paced their video (`--burst` turns it off).
    pub paced: bool,
    /// The measured steady-state window (seconds).
    pub window_secs: f64,
    pub overall: GroupSummary,
    pub per_room: std::collections::BTreeMap<String, GroupSummary>,
    /// The first `--server-pid` (kept for scripts that read one server).
    pub server_process: Option<ProcessUsage>,
    /// Every `--server-pid`.
    pub server_processes: Vec<ProcessUsage>,
    /// Bridges the focus placed participants on (joins through a focus).
    pub bridges: std::collections::BTreeMap<String, BridgeUsage>,
    /// Participants placed outside the region they asked for (the focus
    /// does that when the region's bridges are overloaded or missing).
    pub placed_elsewhere: usize,
    /// The simulcast layer (0 = lowest) receivers ask for: the highest one
    /// not above `--max-height` (Tern: a constraint; Janus: `substream`).
    /// What was really forwarded is `overall.video_layer_packets`.
    pub video_layer_requested: u8,
    /// Packets the server said it forwarded in the window (Tern `/metrics`).
    pub server_forwarded_packets: Option<f64>,
    /// Packets the server said it sent in the window (all datagrams).
    pub server_sent_packets: Option<f64>,
    /// The server's own forwarding delay over the window (Tern `/metrics`,
    /// `tern_forward_latency_seconds`: kernel receive to `sendmmsg`).
    pub server_forward_latency: Option<ForwardLatencySummary>,
    /// The load tool's own CPU seconds over the window.
    pub loadtool_cpu_secs: f64,
}

/// Quantiles of the bridge's forwarding delay, from its histogram's change
/// over the window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ForwardLatencySummary {
    pub packets: f64,
    pub p50_secs: f64,
    pub p99_secs: f64,
    pub mean_secs: f64,
}

impl ForwardLatencySummary {
    /// From two `/metrics` pages (start and end of the window).
    pub fn between(start: &str, end: &str) -> Option<Self> {
        const NAME: &str = "tern_forward_latency_seconds";
        let buckets = histogram::buckets_between(start, end, NAME);
        let packets = buckets.last()?.1;
        let sum = http::metric_sum(end, &format!("{NAME}_sum"))
            - http::metric_sum(start, &format!("{NAME}_sum"));
        Some(Self {
            packets,
            p50_secs: histogram::quantile(&buckets, 0.5)?,
            p99_secs: histogram::quantile(&buckets, 0.99)?,
            mean_secs: sum / packets,
        })
    }
}

/// One bridge of a run through a focus: who was placed on it and what its
/// `/metrics` counted over the window. The bridge exports its counters once
/// a second, so each edge of the window is exact to about a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BridgeUsage {
    pub region: String,
    /// Its HTTP address, from the signalling URL the focus returned.
    pub http: Option<SocketAddr>,
    pub publishers: usize,
    pub subscribers: usize,
    pub rtp_forwarded: Option<f64>,
    pub relay_datagrams_out: Option<f64>,
    pub relay_datagrams_in: Option<f64>,
    pub relay_datagrams_dropped: Option<f64>,
    /// Its process, when a `--server-pid NAME=PID` names this bridge.
    pub process: Option<ProcessUsage>,
    /// Relay datagrams sent plus received per CPU-second of the process.
    pub relay_datagrams_per_cpu_sec: Option<f64>,
    /// Its own forwarding delay over the window.
    pub forward_latency: Option<ForwardLatencySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub pid: u32,
    /// The NAME of `--server-pid NAME=PID` (empty without one).
    pub name: String,
    pub cpu_secs: f64,
    /// CPU seconds per wall second (1.0 = one busy core).
    pub busy_cores: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (RSS with everyone connected − RSS before anyone joined) / participants
    /// (those placed on it, for a process named after a bridge).
    pub rss_per_endpoint_kib: f64,
    /// Server CPU seconds per million packets delivered to participants.
    pub cpu_secs_per_million_delivered: f64,
}

impl Summary {
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== tern loadtest {}: {} publishers{}, {} subscribers, {} rooms against {} {} ({:.1} s measured)",
            self.label,
            self.publishers,
            if self.paced { " (paced)" } else { " (bursts)" },
            self.subscribers,
            self.rooms,
            serde_json::to_string(&self.target).unwrap_or_default(),
            self.server,
            self.window_secs
        );
        let _ = writeln!(
            s,
            "{:<10} {:>5} {:>6} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7} {:>5} {:>8} {:>8} {:>8}",
            "room",
            "peers",
            "failed",
            "media ok",
            "join p50",
            "rx pkt/s",
            "kbps/rx",
            "loss %",
            "frz c/s",
            "PLIs",
            "delay50",
            "delay99",
            "delaymax"
        );
        let row = |s: &mut String, name: &str, g: &GroupSummary| {
            let ms = |p: &Option<stats::Percentiles>, f: fn(&stats::Percentiles) -> f64| {
                p.as_ref().map_or("-".into(), |p| format!("{:.1}ms", f(p)))
            };
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:>6} {:>9} {:>9} {:>10.0} {:>9.0} {:>7.3} {:>7} {:>5} {:>8} {:>8} {:>8}",
                name,
                g.participants,
                g.failed,
                format!("{}/{}", g.receivers_with_media, g.expected_receivers),
                ms(&g.join_ms, |p| p.p50),
                g.received_packets_per_sec,
                g.received_kbps_per_receiver,
                g.loss_percent,
                format!("{}/{}", g.freezes, g.shown_freezes),
                g.plis_sent,
                ms(&g.delay_ms, |p| p.p50),
                ms(&g.delay_ms, |p| p.p99),
                ms(&g.delay_ms, |p| p.max),
            );
        };
        for (room, g) in &self.per_room {
            row(&mut s, room, g);
        }
        row(&mut s, "overall", &self.overall);
        let ladder = LayerSpec::ladder();
        let layer_name = |l: u8| {
            ladder
                .get(usize::from(l))
                .map_or(format!("layer {l}"), |s| {
                    format!("{}p ({})", s.height, s.rid)
                })
        };
        let video: u64 = self.overall.video_layer_packets.values().sum();
        if video > 0 {
            let shares: Vec<String> = self
                .overall
                .video_layer_packets
                .iter()
                .map(|(&l, &n)| {
                    format!("{} {:.1} %", layer_name(l), n as f64 * 100.0 / video as f64)
                })
                .collect();
            let _ = writeln!(
                s,
                "video layers forwarded: {} (asked for {}{})",
                shares.join(", "),
                layer_name(self.video_layer_requested),
                match self.target {
                    Target::Janus => format!(", Janus substream {}", self.video_layer_requested),
                    Target::Tern => String::new(),
                }
            );
        }
        for p in &self.server_processes {
            let name = if p.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.name)
            };
            let per_endpoint = if p.rss_per_endpoint_kib.is_finite() {
                format!(" ({:.0} KiB per endpoint)", p.rss_per_endpoint_kib)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "server pid {}{name}: {:.2} CPU-s ({:.2} busy cores), {:.1} CPU-s per million delivered packets, RSS {} → {} KiB{per_endpoint}",
                p.pid,
                p.cpu_secs,
                p.busy_cores,
                p.cpu_secs_per_million_delivered,
                p.rss_before_kib,
                p.rss_after_kib,
            );
        }
        let per_s =
            |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}", v / self.window_secs));
        for (id, b) in &self.bridges {
            let cpu = match (&b.process, b.relay_datagrams_per_cpu_sec) {
                (Some(p), Some(r)) => format!(
                    ", {:.2} busy cores, {r:.0} relay datagrams per CPU-s",
                    p.busy_cores
                ),
                (Some(p), None) => format!(", {:.2} busy cores", p.busy_cores),
                _ => String::new(),
            };
            let delay = b.forward_latency.map_or(String::new(), |l| {
                format!(
                    "; forwarding delay p50 {:.0} µs, p99 {:.0} µs",
                    l.p50_secs * 1e6,
                    l.p99_secs * 1e6
                )
            });
            let _ = writeln!(
                s,
                "bridge {id} ({}): {} publishers, {} subscribers; per s: {} RTP forwarded, relay datagrams {} out / {} in / {} dropped{cpu}{delay}",
                b.region,
                b.publishers,
                b.subscribers,
                per_s(b.rtp_forwarded),
                per_s(b.relay_datagrams_out),
                per_s(b.relay_datagrams_in),
                per_s(b.relay_datagrams_dropped),
            );
        }
        if self.placed_elsewhere > 0 {
            let _ = writeln!(
                s,
                "warning: the focus placed {} participants outside the region they asked for",
                self.placed_elsewhere
            );
        }
        if let (Some(f), Some(sent)) = (self.server_forwarded_packets, self.server_sent_packets) {
            let _ = writeln!(
                s,
                "server metrics: {:.0} RTP forwarded/s, {:.0} datagrams sent/s",
                f / self.window_secs,
                sent / self.window_secs
            );
        }
        if let Some(l) = &self.server_forward_latency {
            let _ = writeln!(
                s,
                "bridge forwarding delay (kernel receive → sendmmsg return): p50 {:.0} µs, p99 {:.0} µs, mean {:.0} µs over {:.0} packets",
                l.p50_secs * 1e6,
                l.p99_secs * 1e6,
                l.mean_secs * 1e6,
                l.packets,
            );
        }
        let _ = writeln!(
            s,
            "load tool: {:.2} CPU-s ({:.2} busy cores)",
            self.loadtool_cpu_secs,
            self.loadtool_cpu_secs / self.window_secs
        );
        for e in self.overall.errors.iter().take(10) {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }
}

/// Shared by every participant task of a run.
pub struct Ctx {
    args: Args,
    mint: MintToken,
    server: SocketAddr,
    base_path: String,
    /// Each publisher's generator start, by participant id: the zero of the
    /// send timestamps it embeds (all participants share this process's clock).
    starts: Mutex<HashMap<String, Instant>>,
    window: (Instant, Instant),
    progress: Progress,
    /// Janus target: feeds that are up, and the first room id of this run.
    directory: Arc<janus::Directory>,
    janus_room_base: u64,
    /// Bridges the focus placed participants on: id → (region, HTTP address).
    placements: Mutex<std::collections::BTreeMap<String, (String, Option<SocketAddr>)>>,
}

#[derive(Default)]
struct Progress {
    joined: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    rx_packets: AtomicU64,
}

impl Ctx {
    /// Where a room's media goes. Today: the one server given. With a focus,
    /// this asks it which bridge hosts the room.
    fn bridge_for(&self, _room: &str) -> SocketAddr {
        self.server
    }

    /// What a participant does in its Janus room.
    fn janus_plan(&self, spec: &Spec) -> janus::Plan {
        janus::Plan {
            room: self.janus_room_base + spec.room_index as u64,
            publish: spec.publish,
            room_publishers: spec.room_publishers,
            audio_slots: self.args.audio_slots,
            video_slots: self.args.video_slots,
            substream: self.args.wanted_layer(),
        }
    }

    fn start_of(&self, source: &str) -> Option<Instant> {
        let participant = source.split('/').next()?;
        lock(&self.starts).get(participant).copied()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only a panicking participant task can poison it; its data is still fine.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One participant to run.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    room: String,
    room_index: usize,
    /// Publishers in this participant's room.
    room_publishers: usize,
    publish: bool,
    receive: bool,
    /// Counts SRTP datagrams instead of decrypting them (`--count-only`).
    count_only: bool,
    start_at: Instant,
    seed: u64,
}

pub async fn run(args: Args, mint: MintToken) -> anyhow::Result<Summary> {
    args.validate()?;
    let (server, base_path) = parse_server(&args.server)?;
    // Fail fast and clearly if nothing answers there.
    preflight(&args, server, &base_path).await?;

    let total = args.publishers + args.subscribers;
    let t0 = Instant::now() + Duration::from_millis(100);
    let interval = Duration::from_millis(args.join_interval_ms);
    let ramp_end = t0 + interval * total as u32;
    let window_start = ramp_end + WARMUP;
    let window = (
        window_start,
        window_start + Duration::from_secs_f64(args.duration),
    );
    let room_name = |i: usize| format!("load-{i}");
    let mut specs = Vec::with_capacity(total);
    for i in 0..args.publishers {
        specs.push(Spec {
            name: format!("pub{i}"),
            room: room_name(i % args.rooms),
            room_index: i % args.rooms,
            room_publishers: 0,
            publish: true,
            receive: args.publishers_receive && args.publishers > args.rooms,
            count_only: false,
            start_at: t0,
            seed: 1000 + i as u64,
        });
    }
    for i in 0..args.subscribers {
        specs.push(Spec {
            name: format!("sub{i}"),
            room: room_name(i % args.rooms),
            room_index: i % args.rooms,
            room_publishers: 0,
            publish: false,
            receive: true,
            count_only: i >= args.subscribers - args.count_only.min(args.subscribers),
            start_at: t0,
            seed: 5000 + i as u64,
        });
    }
    // Publishers first, so subscribers see them at once.
    for (k, s) in specs.iter_mut().enumerate() {
        s.start_at = t0 + interval * k as u32;
    }
    // In an all-to-all meeting a publisher receives only when its room has
    // another publisher.
    let pubs_per_room = |room: &str| specs.iter().filter(|s| s.publish && s.room == room).count();
    let fix: Vec<bool> = specs
        .iter()
        .map(|s| s.receive && (!s.publish || pubs_per_room(&s.room) > 1))
        .collect();
    let counts: Vec<usize> = specs.iter().map(|s| pubs_per_room(&s.room)).collect();
    for ((s, r), n) in specs.iter_mut().zip(fix).zip(counts) {
        s.receive = r;
        s.room_publishers = n;
    }

    let ctx = Arc::new(Ctx {
        args: args.clone(),
        mint,
        server,
        base_path,
        starts: Mutex::new(HashMap::new()),
        window,
        progress: Progress::default(),
        directory: Arc::default(),
        janus_room_base: janus_room_base(),
        placements: Mutex::default(),
    });

    let proc_before: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_pid = std::process::id();
    let mut tasks = Vec::with_capacity(total);
    for s in specs {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(participant(ctx, s)));
    }
    let progress = tokio::spawn(print_progress(ctx.clone(), total));

    // Sample the server and ourselves exactly at the window's edges.
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.0)).await;
    let server_at_start: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_at_start = proc_sample(self_pid);
    let metrics_at_start = scrape(&ctx).await;
    // Everyone joined during the ramp: the bridges they were placed on are
    // known now, and are scraped at both edges.
    let placed = lock(&ctx.placements).clone();
    let bridge_metrics_at_start = scrape_bridges(&placed).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.1)).await;
    let server_at_end: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_at_end = proc_sample(self_pid);
    let metrics_at_end = scrape(&ctx).await;
    let bridge_metrics_at_end = scrape_bridges(&placed).await;

    let mut reports = Vec::with_capacity(total);
    for t in tasks {
        match t.await {
            Ok(r) => reports.push(r),
            Err(e) => bail!("a participant task failed: {e}"),
        }
    }
    progress.abort();
    if args.target == Target::Janus {
        let rooms: Vec<u64> = (0..args.rooms as u64)
            .map(|i| ctx.janus_room_base + i)
            .collect();
        if let Err(e) = janus::destroy_rooms(server, &ctx.base_path, &rooms).await {
            eprintln!("warning: could not destroy the Janus rooms of this run: {e:#}");
        }
    }

    let window_len = window.1 - window.0;
    let overall = stats::summarise(&reports.iter().collect::<Vec<_>>(), window_len);
    let per_room = stats::by_room(&reports)
        .into_iter()
        .map(|(room, rs)| (room, stats::summarise(&rs, window_len)))
        .collect();
    let delivered = overall.received_packets as f64;
    let on_bridge = |name: &str| {
        reports
            .iter()
            .filter(|r| r.bridge.as_deref() == Some(name))
            .count()
    };
    let mut server_processes = Vec::new();
    for (i, p) in args.server_pids.iter().enumerate() {
        match (&proc_before[i], &server_at_start[i], &server_at_end[i]) {
            (Ok(b), Ok(st), Ok(e)) => {
                let cpu = e.cpu_secs - st.cpu_secs;
                // A process named after a bridge counts only the endpoints
                // placed on it (none: no per-endpoint figure).
                let endpoints = if p.name.is_empty() || placed.is_empty() {
                    total
                } else {
                    on_bridge(&p.name)
                };
                server_processes.push(ProcessUsage {
                    pid: p.pid,
                    name: p.name.clone(),
                    cpu_secs: cpu,
                    busy_cores: cpu / window_len.as_secs_f64(),
                    rss_before_kib: b.rss_kib,
                    rss_after_kib: e.rss_kib,
                    rss_per_endpoint_kib: if endpoints > 0 {
                        (e.rss_kib as f64 - b.rss_kib as f64) / endpoints as f64
                    } else {
                        f64::NAN
                    },
                    cpu_secs_per_million_delivered: if delivered > 0.0 {
                        cpu * 1e6 / delivered
                    } else {
                        f64::NAN
                    },
                });
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                eprintln!("warning: could not measure server process {}: {e:#}", p.pid);
            }
        }
    }
    let mut bridges = std::collections::BTreeMap::new();
    for (id, (region, http)) in &placed {
        let d = |name: &str, label: Option<(&str, &str)>| {
            let a = bridge_metrics_at_start.get(id)?;
            let b = bridge_metrics_at_end.get(id)?;
            Some(http::metric_sum_where(b, name, label) - http::metric_sum_where(a, name, label))
        };
        let mut u = BridgeUsage {
            region: region.clone(),
            http: *http,
            publishers: reports
                .iter()
                .filter(|r| r.publisher && r.bridge.as_deref() == Some(id))
                .count(),
            subscribers: reports
                .iter()
                .filter(|r| !r.publisher && r.bridge.as_deref() == Some(id))
                .count(),
            rtp_forwarded: d("tern_rtp_forwarded_total", None),
            relay_datagrams_out: d("tern_relay_datagrams_total", Some(("direction", "out"))),
            relay_datagrams_in: d("tern_relay_datagrams_total", Some(("direction", "in"))),
            relay_datagrams_dropped: d("tern_relay_datagrams_dropped_total", None),
            process: server_processes.iter().find(|p| p.name == *id).cloned(),
            relay_datagrams_per_cpu_sec: None,
            forward_latency: match (
                bridge_metrics_at_start.get(id),
                bridge_metrics_at_end.get(id),
            ) {
                (Some(a), Some(b)) => ForwardLatencySummary::between(a, b),
                _ => None,
            },
        };
        if let (Some(p), Some(o), Some(i)) =
            (&u.process, u.relay_datagrams_out, u.relay_datagrams_in)
            && p.cpu_secs > 0.0
        {
            u.relay_datagrams_per_cpu_sec = Some((o + i) / p.cpu_secs);
        }
        bridges.insert(id.clone(), u);
    }
    let placed_elsewhere = reports
        .iter()
        .filter(|r| matches!((&r.asked_region, &r.bridge_region), (Some(a), Some(b)) if a != b))
        .count();
    let delta = |name: &str| match (&metrics_at_start, &metrics_at_end) {
        (Some(a), Some(b)) => Some(http::metric_sum(b, name) - http::metric_sum(a, name)),
        _ => None,
    };
    Ok(Summary {
        label: args.label.clone(),
        target: args.target,
        server: args.server.clone(),
        publishers: args.publishers,
        subscribers: args.subscribers,
        paced: !args.burst,
        rooms: args.rooms,
        window_secs: window_len.as_secs_f64(),
        video_layer_requested: args.wanted_layer(),
        server_forwarded_packets: delta("tern_rtp_forwarded_total"),
        server_sent_packets: delta("tern_packets_sent_total"),
        server_forward_latency: match (&metrics_at_start, &metrics_at_end) {
            (Some(a), Some(b)) => ForwardLatencySummary::between(a, b),
            _ => None,
        },
        overall,
        per_room,
        server_process: server_processes.first().cloned(),
        server_processes,
        bridges,
        placed_elsewhere,
        loadtool_cpu_secs: match (self_at_start, self_at_end) {
            (Ok(a), Ok(b)) => b.cpu_secs - a.cpu_secs,
            _ => f64::NAN,
        },
    })
}

async fn preflight(args: &Args, server: SocketAddr, base: &str) -> anyhow::Result<()> {
    let path = match args.target {
        Target::Tern => "/health".to_string(),
        Target::Janus => format!("{base}/info"),
    };
    let (status, body) = http::request(server, "GET", &path, None, Duration::from_secs(5))
        .await
        .with_context(|| format!("server {} is unreachable", args.server))?;
    if status != 200 {
        let hint = match args.target {
            Target::Janus => " (Janus's API is usually at http://IP:8088/janus)",
            Target::Tern => "",
        };
        bail!(
            "server {} answered {path} with HTTP {status}{hint}",
            args.server
        );
    }
    if args.target == Target::Janus {
        let version = janus::check_info(&body)
            .with_context(|| format!("{} is not a usable Janus", args.server))?;
        eprintln!("Janus {version} at {}", args.server);
    }
    if args.publisher_region.is_some() || args.subscriber_region.is_some() {
        check_regions(args, server).await?;
    }
    Ok(())
}

/// How long to wait for bridges of the asked regions to register with a
/// focus that has just started (`tern dev` prints ready before its bridges'
/// first reports reach the focus).
const REGION_WAIT: Duration = Duration::from_secs(5);

/// The regions asked for must be ones the focus has an online bridge in:
/// otherwise it would quietly place everyone elsewhere.
async fn check_regions(args: &Args, server: SocketAddr) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct B {
        region: String,
        online: bool,
    }
    let asked = [
        ("--publisher-region", &args.publisher_region),
        ("--subscriber-region", &args.subscriber_region),
    ];
    let deadline = Instant::now() + REGION_WAIT;
    loop {
        let (status, body) =
            http::request(server, "GET", "/api/bridges", None, Duration::from_secs(5))
                .await
                .with_context(|| format!("asking {} for its bridges", args.server))?;
        if status != 200 {
            bail!(
                "--publisher-region/--subscriber-region need --server to be a focus (`tern dev`, `tern focus`), but {} answered /api/bridges with HTTP {status}",
                args.server
            );
        }
        let list: Vec<B> = serde_json::from_str(&body)
            .with_context(|| format!("{}/api/bridges is not a focus's bridge list", args.server))?;
        let mut known: Vec<&str> = list
            .iter()
            .filter(|b| b.online)
            .map(|b| b.region.as_str())
            .collect();
        known.sort_unstable();
        known.dedup();
        let missing = asked.iter().find_map(|(flag, region)| {
            region
                .as_deref()
                .filter(|r| !known.contains(r))
                .map(|r| (*flag, r))
        });
        let Some((flag, r)) = missing else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            bail!(
                "{flag} {r:?}: the focus has no online bridge there (regions: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first Janus room id of this run: rooms of an earlier run against the
/// same Janus (maybe killed before it could destroy them) are never reused.
fn janus_room_base() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Unique per second and process; below 2^53 (Janus's JSON numbers pass
    // through doubles in some clients).
    let run = (secs % 1_000_000) * 1000 + u64::from(std::process::id() % 1000) + 1;
    run * MAX_JANUS_ROOMS as u64
}

async fn scrape(ctx: &Ctx) -> Option<String> {
    if ctx.args.target != Target::Tern {
        return None;
    }
    let (status, body) = http::request(ctx.server, "GET", "/metrics", None, Duration::from_secs(5))
        .await
        .ok()?;
    (status == 200).then_some(body)
}

/// Each placed bridge's `/metrics`, by bridge id (those that answer).
async fn scrape_bridges(
    placed: &std::collections::BTreeMap<String, (String, Option<SocketAddr>)>,
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

async fn print_progress(ctx: Arc<Ctx>, total: usize) {
    let start = Instant::now();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = &ctx.progress;
        let rx = p.rx_packets.load(Ordering::Relaxed);
        let phase = if Instant::now() < ctx.window.0 {
            "joining/warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{:>5.1}s] {phase}: joined {}/{total}, connected {}, failed {}, received {} packets ({:.0}/s)",
            start.elapsed().as_secs_f64(),
            p.joined.load(Ordering::Relaxed),
            p.connected.load(Ordering::Relaxed),
            p.failed.load(Ordering::Relaxed),
            rx,
            (rx - last) as f64 / 2.0
        );
        last = rx;
    }
}

/// CPU time and memory of a process from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    cpu_secs: f64,
    rss_kib: u64,
}

fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))
    };
    let cpu_secs = (ticks(11)? + ticks(12)?) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample { cpu_secs, rss_kib })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a participant talks to the server.
enum Signalling {
    Tern(Box<Ws>),
    Janus(Box<janus::Session>),
}

/// Where the focus placed a participant: bridge id and its region.
type Placement = Option<(String, String)>;

/// A token and the signalling URL to use it at: through a focus's `/join`
/// (`tern dev`, `tern focus`; with the placement it chose), else a
/// standalone bridge's `/dev/token`, or minted with `--secret`.
async fn tern_token(ctx: &Ctx, spec: &Spec) -> anyhow::Result<(String, String, Placement)> {
    let own = format!("ws://{}/signal", ctx.bridge_for(&spec.room));
    if let Some(secret) = &ctx.args.secret {
        return Ok(((ctx.mint)(secret, &spec.room, &spec.name), own, None));
    }
    // Regions are validated non-empty; they go into a query string.
    let region = ctx
        .args
        .region_for(spec.publish)
        .map(|r| format!("&region={}", query_escape(r)))
        .unwrap_or_default();
    let join = format!(
        "/join?room={}&name={}&participant={}{region}",
        spec.room, spec.name, spec.name
    );
    let (status, body) = http::request(
        ctx.bridge_for(&spec.room),
        "GET",
        &join,
        None,
        Duration::from_secs(5),
    )
    .await?;
    if status == 200 {
        #[derive(serde::Deserialize)]
        struct J {
            token: String,
            signal_url: String,
            bridge: String,
            region: String,
        }
        let j: J = serde_json::from_str(&body).context("parsing /join")?;
        lock(&ctx.placements)
            .entry(j.bridge.clone())
            .or_insert_with(|| (j.region.clone(), bridge_http(&j.signal_url)));
        return Ok((j.token, j.signal_url, Some((j.bridge, j.region))));
    }
    if status != 404 {
        bail!("GET {join}: HTTP {status}: {}", body.trim());
    }
    let path = format!("/dev/token?room={}&name={}", spec.room, spec.name);
    let (status, body) = http::request(
        ctx.bridge_for(&spec.room),
        "GET",
        &path,
        None,
        Duration::from_secs(5),
    )
    .await?;
    if status != 200 {
        bail!(
            "GET {path}: HTTP {status} (is it `tern dev`? for `tern bridge` pass --secret): {}",
            body.trim()
        );
    }
    #[derive(serde::Deserialize)]
    struct T {
        token: String,
    }
    let t: T = serde_json::from_str(&body).context("parsing /dev/token")?;
    Ok((t.token, own, None))
}

/// A bridge's HTTP address from its signalling URL (`ws://IP:PORT/signal`);
/// `None` for a host name (not resolved here) or another shape.
fn bridge_http(signal_url: &str) -> Option<SocketAddr> {
    let rest = signal_url
        .strip_prefix("ws://")
        .or_else(|| signal_url.strip_prefix("http://"))?;
    rest.split('/').next()?.parse().ok()
}

/// Percent-encode what is not unreserved in a URL query value.
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn participant(ctx: Arc<Ctx>, spec: Spec) -> PeerReport {
    tokio::time::sleep_until(tokio::time::Instant::from_std(spec.start_at)).await;
    let began = Instant::now();
    let mut report = PeerReport {
        name: spec.name.clone(),
        room: spec.room.clone(),
        publisher: spec.publish,
        receives: spec.receive,
        error: None,
        connect_time: None,
        first_media_time: None,
        acc: PeerAcc::default(),
        packets_sent: 0,
        plis_sent: 0,
        asked_region: ctx.args.region_for(spec.publish).map(str::to_string),
        bridge: None,
        bridge_region: None,
    };
    if let Err(e) = drive(&ctx, &spec, began, &mut report).await {
        ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
        report.error = Some(format!("{e:#}"));
    }
    report.first_media_time = report
        .acc
        .first_media
        .map(|t| t.saturating_duration_since(began));
    report
}

async fn drive(
    ctx: &Ctx,
    spec: &Spec,
    began: Instant,
    report: &mut PeerReport,
) -> anyhow::Result<()> {
    let args = &ctx.args;
    let socket = UdpSocket::bind(SocketAddr::new(args.bind_ip, 0)).await?;
    let mut cfg = PeerConfig::new(socket.local_addr()?);
    cfg.audio = spec.publish;
    cfg.video = if spec.publish {
        LayerSpec::ladder().into_iter().take(args.layers).collect()
    } else {
        vec![]
    };
    let (aslots, vslots) = if spec.receive {
        (args.audio_slots, args.video_slots)
    } else {
        (0, 0)
    };
    cfg.audio_slots = aslots;
    cfg.video_slots = vslots;
    // Answer keyframe requests after a realistic encoder delay.
    cfg.keyframe_response_delay = Duration::from_millis(20);
    cfg.seed = spec.seed;
    cfg.pacing = (!args.burst).then_some(Pacing::BROWSER);
    let start = Instant::now();
    let mut peer = Peer::new(cfg, start);

    let mut sig = tokio::time::timeout(JOIN_TIMEOUT, async {
        match args.target {
            Target::Tern => {
                let (token, url, placed) = tern_token(ctx, spec).await?;
                if let Some((bridge, region)) = placed {
                    report.bridge = Some(bridge);
                    report.bridge_region = Some(region);
                }
                let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .with_context(|| format!("connecting to {url}"))?;
                ws_send(&mut ws, &Peer::join(&token)).await?;
                anyhow::Ok(Signalling::Tern(Box::new(ws)))
            }
            Target::Janus => {
                let mut j = janus::Session::open(
                    ctx.server,
                    &ctx.base_path,
                    &spec.name,
                    ctx.janus_plan(spec),
                    ctx.directory.clone(),
                )
                .await?;
                // A subscriber waits here until its room's publishers are up.
                j.start(&mut peer, Instant::now()).await?;
                Ok(Signalling::Janus(Box::new(j)))
            }
        }
    })
    .await
    .map_err(|_| anyhow!("could not join within {JOIN_TIMEOUT:?}"))??;

    let mut registered = false;
    let mut buf = vec![0u8; 2048];
    let mut next_fold = Instant::now() + FOLD_EVERY;
    let end = ctx.window.1;
    let join_deadline = began + JOIN_TIMEOUT;
    loop {
        // Flush what the peer wants sent.
        while let Some(o) = peer.poll_output() {
            match o {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => {
                    let _ = socket.send_to(&contents, destination).await;
                }
                PeerOutput::Signal(m) => match &mut sig {
                    Signalling::Tern(ws) => ws_send(ws, &m).await?,
                    Signalling::Janus(j) => j.send(&mut peer, m).await?,
                },
            }
        }
        let st = peer.state();
        if let Some((code, msg)) = st.errors.first() {
            bail!("{code}: {msg}");
        }
        if st.closed {
            bail!("the server closed the connection");
        }
        let just_joined = !registered && st.joined;
        if report.connect_time.is_none() && st.connected {
            report.connect_time = Some(began.elapsed());
            ctx.progress.connected.fetch_add(1, Ordering::Relaxed);
            if spec.publish {
                // Send times are offsets from the generator's start.
                let id = st
                    .participant_id
                    .clone()
                    .unwrap_or_else(|| spec.name.clone());
                lock(&ctx.starts).insert(id, start);
            }
        }
        if just_joined {
            registered = true;
            ctx.progress.joined.fetch_add(1, Ordering::Relaxed);
            if spec.receive && matches!(sig, Signalling::Tern(_)) {
                // `--max-height` as a constraint, flushed right away (Janus
                // gets the layer as `substream` when subscribing).
                peer.set_max_height(None, args.max_height);
                continue;
            }
        }
        let now = Instant::now();
        if report.connect_time.is_none() && now > join_deadline {
            bail!("not connected within {JOIN_TIMEOUT:?}");
        }
        if now >= next_fold || now >= end {
            fold(ctx, &mut peer, report);
            next_fold = now + FOLD_EVERY;
        }
        if now >= end {
            break;
        }
        let wake = peer.poll_timeout().min(next_fold).min(end);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, src) = r?;
                let count_only = spec.count_only;
                on_datagram(ctx, &mut peer, report, src, &buf[..n], count_only);
                // Drain what else is queued before flushing once.
                for _ in 0..RECV_BURST {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, src)) => {
                            on_datagram(ctx, &mut peer, report, src, &buf[..n], count_only)
                        }
                        Err(_) => break,
                    }
                }
            }
            m = next_signal(&mut sig) => match (m?, &mut sig) {
                (Some(Incoming::Tern(msg)), _) => peer.handle_signal(Instant::now(), msg),
                (Some(Incoming::Janus(e)), Signalling::Janus(j)) => {
                    j.handle(&mut peer, Instant::now(), e).await?;
                }
                (Some(Incoming::Janus(_)), _) => {}
                (None, _) => bail!("the server closed the signalling connection"),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                peer.handle_timeout(Instant::now());
            }
        }
    }
    report.packets_sent = peer.state().packets_sent;
    report.plis_sent = peer.state().plis_sent_total();
    peer.leave();
    while let Some(o) = peer.poll_output() {
        if let PeerOutput::Signal(m) = o {
            match &mut sig {
                Signalling::Tern(ws) => {
                    let _ = ws_send(ws, &m).await;
                }
                Signalling::Janus(j) => {
                    let _ = j.send(&mut peer, m).await;
                }
            }
        }
    }
    match &mut sig {
        Signalling::Tern(ws) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), (**ws).close(None)).await;
        }
        Signalling::Janus(j) => j.close().await,
    }
    Ok(())
}

fn on_datagram(
    ctx: &Ctx,
    peer: &mut Peer,
    report: &mut PeerReport,
    src: SocketAddr,
    d: &[u8],
    count_only: bool,
) {
    let now = Instant::now();
    let in_window = now >= ctx.window.0 && now <= ctx.window.1;
    if in_window {
        report.acc.bytes += d.len() as u64;
    }
    // SRTP (RFC 7983: first byte 128..=191; RTCP has packet types 192..=223
    // in the second byte, and str0m still gets those and STUN/DTLS).
    let srtp = matches!(d, [b0, b1, ..] if (128..=191).contains(b0) && !(192..=223).contains(b1));
    if count_only && srtp {
        report.acc.first_media.get_or_insert(now);
        if in_window {
            report.acc.packets += 1;
            ctx.progress.rx_packets.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    peer.handle_datagram(now, src, d);
}

fn fold(ctx: &Ctx, peer: &mut Peer, report: &mut PeerReport) {
    let received = peer.take_received();
    for (mid, times) in peer.take_decoded() {
        report.acc.fold_shown(&mid, &times, ctx.window);
    }
    let slots = &peer.state().slots;
    let mut n = 0;
    for (mid, packets) in received {
        n += packets.len() as u64;
        let source = slots.get(&mid).cloned().flatten();
        let start = source.as_deref().and_then(|s| ctx.start_of(s));
        report
            .acc
            .fold(&mid, source.as_deref(), start, &packets, ctx.window);
    }
    ctx.progress.rx_packets.fetch_add(n, Ordering::Relaxed);
}

async fn ws_send(ws: &mut Ws, m: &ClientMessage) -> anyhow::Result<()> {
    ws.send(Message::Text(serde_json::to_string(m)?.into()))
        .await?;
    Ok(())
}

/// A message from the server, in its own protocol.
enum Incoming {
    Tern(ServerMessage),
    Janus(janus::Event),
}

async fn next_signal(sig: &mut Signalling) -> anyhow::Result<Option<Incoming>> {
    match sig {
        Signalling::Tern(ws) => loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Ok(Some(Incoming::Tern(serde_json::from_str(&t)?)));
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        },
        Signalling::Janus(j) => Ok(j.next().await?.map(Incoming::Janus)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["t"];
        v.extend_from_slice(extra);
        T::parse_from(v).a
    }

    #[test]
    fn impossible_parameters_are_refused_with_a_reason() {
        let e = args(&["--publishers", "0"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("publishers"), "{e}");
        let e = args(&["-n", "1", "--rooms", "2"])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string().contains("every room needs a publisher"),
            "{e}"
        );
        let e = args(&["--duration", "0"]).validate().expect_err("refused");
        assert!(e.to_string().contains("duration"), "{e}");
        let e = args(&["--server", "http://example.org:80"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("IP address"), "{e}");
        assert!(args(&[]).validate().is_ok());
    }

    #[test]
    fn receivers_ask_for_the_highest_published_layer_within_max_height() {
        assert_eq!(args(&[]).wanted_layer(), 2);
        assert_eq!(args(&["--max-height", "360"]).wanted_layer(), 1);
        assert_eq!(args(&["--max-height", "500"]).wanted_layer(), 1);
        assert_eq!(args(&["--max-height", "100"]).wanted_layer(), 0);
        assert_eq!(args(&["--layers", "2"]).wanted_layer(), 1);
        let e = args(&["--target", "janus", "--publishers-receive"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("--target janus"), "{e}");
    }

    #[test]
    fn regions_need_a_name_and_a_focus_and_server_pids_a_process_id() {
        let e = args(&["--subscriber-region", " "])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string().contains("--subscriber-region is empty"),
            "{e}"
        );
        let e = args(&["--target", "janus", "--publisher-region", "eu"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("needs a Tern focus"), "{e}");
        let e = args(&["--secret", "s", "--publisher-region", "eu"])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("only means something through a focus"),
            "{e}"
        );
        let ok = args(&["--publisher-region", "eu", "--subscriber-region", "us"]);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.region_for(true), Some("eu"));
        assert_eq!(ok.region_for(false), Some("us"));

        let both = args(&["--server-pid", "12", "--server-pid", "local-b=13"]);
        assert_eq!(
            both.server_pids,
            vec![
                ServerPid {
                    name: String::new(),
                    pid: 12
                },
                ServerPid {
                    name: "local-b".into(),
                    pid: 13
                }
            ]
        );
        assert!(both.validate().is_ok());
        let e = args(&["--server-pid", "12", "--server-pid", "a=12"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("given twice"), "{e}");
        for bad in ["=12", "x", "0", "a=", "a=-1"] {
            let e = parse_server_pid(bad).expect_err(bad);
            assert!(e.to_string().contains("--server-pid"), "{bad}: {e}");
        }
        assert_eq!(
            bridge_http("ws://127.0.0.1:8081/signal"),
            "127.0.0.1:8081".parse().ok()
        );
        assert_eq!(bridge_http("wss://bridge.example/signal"), None);
        assert_eq!(query_escape("eu west/1"), "eu%20west%2F1");
    }

    #[test]
    fn server_addresses_parse_with_and_without_a_path() {
        let (a, p) = parse_server("http://127.0.0.1:8088/janus/").expect("ok");
        assert_eq!((a.port(), p.as_str()), (8088, "/janus"));
        let (a, p) = parse_server("127.0.0.1:80").expect("ok");
        assert_eq!((a.port(), p.as_str()), (80, ""));
    }
}
